"""Change events and their fan-out: what every backend reports and the node's state
machine emits (shared by the public API, the Raft server and storage)."""

from __future__ import annotations

import collections
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from dref.errors import CompactedError, ConfigError

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
    `resync` marks an event a backend made up after it may have missed changes (it
    reconnected, or its server installed a snapshot): the state it reports is current,
    but changes before it may be missing, so a resumable stream re-reads the history.
    """

    name: str
    kind: ChangeKind
    value: bytes | None
    revision: int
    resync: bool = False


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored value together with the revision of the write that stored it."""

    value: bytes
    revision: int


DEFAULT_HISTORY_REVISIONS = 10_000
"""Changes (of all names together) a backend keeps for resumable change streams."""

HISTORY_PAGE = 256
"""Most changes one `Backend.history` call returns; a reader asks again for the rest."""

HISTORY_PAGE_BYTES = 1 << 20
"""Most value bytes one history page carries (beyond its first change), so a page of
large values stays one modest message."""


class ChangeHistory:
    """The last `retention` changes of all names, found per name, for resumable streams.

    Revisions recorded must grow. Everything at or below `floor` may be missing: the
    revisions dropped for retention, and those before a restored snapshot (`reset`).
    Not thread-safe: its owner records and reads under its own lock.
    """

    def __init__(self, retention: int = DEFAULT_HISTORY_REVISIONS, floor: int = 0) -> None:
        if isinstance(retention, bool) or not isinstance(retention, int) or retention < 0:
            raise ConfigError(f"history_revisions must be an int >= 0, not {retention!r}")
        self.retention = retention
        self.floor = floor
        self._order: collections.deque[str] = collections.deque()
        self._by_name: dict[str, collections.deque[ChangeEvent]] = {}

    def record(self, event: ChangeEvent) -> None:
        """Keep `event`, dropping the oldest change when more than `retention` are kept."""
        self._by_name.setdefault(event.name, collections.deque()).append(event)
        self._order.append(event.name)
        while len(self._order) > self.retention:
            name = self._order.popleft()
            kept = self._by_name[name]
            self.floor = max(self.floor, kept.popleft().revision)
            if not kept:
                del self._by_name[name]

    def copy(self) -> ChangeHistory:
        """An independent copy (for a forked child's own backend)."""
        twin = ChangeHistory(self.retention, self.floor)
        twin._order = collections.deque(self._order)
        twin._by_name = {name: collections.deque(kept) for name, kept in self._by_name.items()}
        return twin

    def reset(self, floor: int) -> None:
        """Forget everything: the state jumped to revision `floor` (a snapshot)."""
        self._order.clear()
        self._by_name.clear()
        self.floor = floor

    def kept(self) -> list[ChangeEvent]:
        """Every kept change, oldest first (what a snapshot carries)."""
        pending = {name: iter(kept) for name, kept in self._by_name.items()}
        return [next(pending[name]) for name in self._order]

    def load(self, floor: int, changes: list[ChangeEvent]) -> None:
        """Replace everything with `changes` (oldest first) kept above `floor`, as `kept`
        returned them (the newest `retention` of them)."""
        self.reset(floor)
        for change in changes:
            self.record(change)

    def since(
        self,
        name: str,
        after: int,
        limit: int = HISTORY_PAGE,
        max_bytes: int = HISTORY_PAGE_BYTES,
    ) -> list[ChangeEvent]:
        """The first kept changes of `name` with a revision above `after`, oldest first:
        at most `limit`, and no more once their values exceed `max_bytes`. Raises
        CompactedError when changes after `after` may have been dropped."""
        if after < self.floor:
            raise CompactedError(name, after, self.floor + 1)
        newer: list[ChangeEvent] = []
        for event in reversed(self._by_name.get(name, ())):
            if event.revision <= after:
                break
            newer.append(event)
        newer.reverse()
        page: list[ChangeEvent] = []
        size = 0
        for event in newer[:limit]:
            if page and size + len(event.value or b"") > max_bytes:
                break
            size += len(event.value or b"")
            page.append(event)
        return page


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
