"""Change events and their fan-out: what every backend reports and the node's state
machine emits (shared by the public API, the Raft server and storage)."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

_log = logging.getLogger("dref")


class ChangeKind(enum.Enum):
    """What happened to a name."""

    SET = "set"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One change to one name, as a backend observed it.

    `value` is None for deletes. `revision` is the revision of the write that caused the
    change, or 0 when the backend cannot know it (a change written by an upstream node).
    """

    name: str
    kind: ChangeKind
    value: bytes | None
    revision: int


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored value together with the revision of the write that stored it."""

    value: bytes
    revision: int


Listener = Callable[[ChangeEvent], None]
"""Receives change events for one name. Called from a backend thread; must not block."""


class ListenerRegistry:
    """Listeners per name, for backends to fan events out to. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, list[Listener]] = {}

    def add(self, name: str, listener: Listener) -> Callable[[], None]:
        """Register `listener` for `name`; returns its cancel function (idempotent)."""
        with self._lock:
            self._by_name.setdefault(name, []).append(listener)

        def cancel() -> None:
            with self._lock:
                listeners = self._by_name.get(name)
                if listeners and listener in listeners:
                    listeners.remove(listener)
                    if not listeners:
                        del self._by_name[name]

        return cancel

    def names(self) -> list[str]:
        """Names that have at least one listener."""
        with self._lock:
            return list(self._by_name)

    def publish(self, event: ChangeEvent) -> None:
        """Call every listener of `event.name`; a failing listener never stops the rest."""
        with self._lock:
            listeners = list(self._by_name.get(event.name, ()))
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # one bad listener must not starve the others
                _log.exception("change listener failed for %s", event.name)
