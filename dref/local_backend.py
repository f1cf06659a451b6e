"""The in-memory backend behind `dref.local()`: one process, nothing to run.

Unlike upstream's local context (spec 1.6, 7.27), an expired value is invisible at once
(every operation checks the deadline inline, on the monotonic clock), and expiry is
reported as a DELETE event: a value found expired by an operation is removed there, and
one daemon thread, ``dref-local-expiry``, sleeps until the earliest deadline and removes
values nobody touched. Every change, expiry included, takes the next value of one global
revision counter, so revisions only grow. The last `history_revisions` changes stay in
memory for resumable change streams (`history`).

Listeners are called synchronously by the writing thread, in revision order: a writer
hands over from the store lock to a publish lock before it lets the next writer in, so
readers never wait for listeners. Listeners must not block and must not write to this
backend (they may read).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dref.backend import (
    Backend,
    ChangeEvent,
    ChangeKind,
    Entry,
    Listener,
    ListenerRegistry,
    ReadPolicyName,
)
from dref.contracts.changes import DEFAULT_HISTORY_REVISIONS, HISTORY_PAGE, ChangeHistory
from dref.errors import ConfigError, ContextClosedError, NotFoundError
from dref.wire.encoded_int import add_to_encoded

__all__ = ["DEFAULT_MAX_VALUE_SIZE", "LocalBackend"]

DEFAULT_MAX_VALUE_SIZE = 64 * 1024 * 1024
"""Default limit for one value: 64 MiB."""

EXPIRY_THREAD_NAME = "dref-local-expiry"

_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class _Item:
    value: bytes
    revision: int
    deadline: float | None  # time.monotonic() value, None = never expires


class LocalBackend(Backend):
    """A `Backend` held in this process's memory; see the module docstring."""

    def __init__(
        self,
        *,
        default_ttl: float = 5.0,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        history_revisions: int = DEFAULT_HISTORY_REVISIONS,
    ) -> None:
        if default_ttl <= 0:
            raise ConfigError("default_ttl must be positive")
        if max_value_size <= 0:
            raise ConfigError("max_value_size must be positive")
        self.default_ttl = default_ttl
        self.max_value_size = max_value_size
        self._items: dict[str, _Item] = {}
        self._revision = 0
        self._lock = threading.Lock()
        self._deadline_changed = threading.Condition(self._lock)
        self._publish_lock = threading.Lock()
        self._deadlines: list[tuple[float, int, str]] = []  # heap of (deadline, revision, name)
        self._registry = ListenerRegistry()
        self._history = ChangeHistory(history_revisions)
        self._closed = False
        self._expiry = threading.Thread(
            target=self._expire_loop, name=EXPIRY_THREAD_NAME, daemon=True
        )
        self._expiry.start()

    # -- Backend -----------------------------------------------------------------------

    def reopen_after_fork(self) -> LocalBackend:
        """The child's own copy of the values (one process's memory, as after any fork),
        with fresh locks and expiry thread. Runs while the child has no other thread."""
        copy = LocalBackend(
            default_ttl=self.default_ttl,
            max_value_size=self.max_value_size,
            history_revisions=self._history.retention,
        )
        copy._items = dict(self._items)
        copy._revision = self._revision
        copy._history = self._history.copy()
        copy._deadlines = list(self._deadlines)
        return copy

    def set(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int:
        """Write unconditionally; returns the new revision."""
        self._check_write(name, value, ttl)

        def op(events: list[ChangeEvent]) -> int:
            return self._store(name, value, ttl, events)

        return self._run(name, op)

    def set_if_absent(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int | None:
        """Write only if `name` is absent (or expired); returns the revision or None."""
        self._check_write(name, value, ttl)

        def op(events: list[ChangeEvent]) -> int | None:
            if name in self._items:
                return None
            return self._store(name, value, ttl, events)

        return self._run(name, op)

    def get(
        self, name: str, *, policy: ReadPolicyName = "linearizable", timeout: float | None = None
    ) -> Entry | None:
        """The live value and its revision, or None (one copy: every policy reads it)."""

        def op(events: list[ChangeEvent]) -> Entry | None:
            item = self._items.get(name)
            return None if item is None else Entry(item.value, item.revision)

        return self._run(name, op)

    def delete(self, name: str, *, timeout: float | None = None) -> int:
        """Delete, even if absent (spec 1.2); returns the revision of the delete."""

        def op(events: list[ChangeEvent]) -> int:
            return self._remove(name, events)

        return self._run(name, op)

    def compare_and_set(
        self,
        name: str,
        expected: Entry | None,
        value: bytes,
        ttl: float | None = None,
        *,
        timeout: float | None = None,
    ) -> int | None:
        """Write only if the live entry equals `expected` (None: only if absent)."""
        self._check_write(name, value, ttl)

        def op(events: list[ChangeEvent]) -> int | None:
            if not self._matches(name, expected):
                return None
            return self._store(name, value, ttl, events)

        return self._run(name, op)

    def increment(
        self, name: str, delta: int, fmt: str, *, timeout: float | None = None
    ) -> tuple[int, int]:
        """Add `delta` to the stored integer in one step (see `Backend.increment`)."""

        def op(events: list[ChangeEvent]) -> tuple[int, int]:
            item = self._items.get(name)
            if item is None:
                raise NotFoundError(name)
            number, value = add_to_encoded(name, item.value, delta, fmt)
            return number, self._store(name, value, None, events)

        return self._run(name, op)

    def compare_and_delete(
        self, name: str, expected: Entry, *, timeout: float | None = None
    ) -> bool:
        """Delete only if the live entry equals `expected`."""

        def op(events: list[ChangeEvent]) -> bool:
            if not self._matches(name, expected):
                return False
            self._remove(name, events)
            return True

        return self._run(name, op)

    def expire(
        self,
        name: str,
        ttl: float,
        *,
        expected: Entry | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Move the deadline of a live value to now + ttl; no event, same revision."""
        _check_ttl(ttl)

        def op(events: list[ChangeEvent]) -> bool:
            item = self._items.get(name)
            if item is None or (expected is not None and not self._matches(name, expected)):
                return False
            deadline = time.monotonic() + ttl
            self._items[name] = _Item(item.value, item.revision, deadline)
            self._schedule(deadline, item.revision, name)
            return True

        return self._run(name, op)

    def subscribe(
        self,
        name: str,
        listener: Listener,
        *,
        timeout: float | None = None,
        sees_own_writes: bool = True,
    ) -> Callable[[], None]:
        """Call `listener` for every later change of `name`, in revision order (at once:
        nothing to wait for)."""
        with self._lock:
            self._check_open()
            return self._registry.add(name, listener)

    def history(
        self, name: str, after: int, *, limit: int = HISTORY_PAGE, timeout: float | None = None
    ) -> list[ChangeEvent]:
        """The kept changes of `name` after revision `after` (see `Backend.history`)."""
        with self._lock:
            self._check_open()
            return self._history.since(name, after, limit)

    def close(self) -> None:
        """Stop the expiry thread and refuse further calls. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._deadline_changed.notify_all()
        if threading.current_thread() is not self._expiry:
            self._expiry.join()

    # -- internals: every operation runs under the store lock ----------------------------

    def _run(self, name: str, op: Callable[[list[ChangeEvent]], _R]) -> _R:
        """Run `op` serialised, after dropping `name` if it expired; then publish in order."""
        events: list[ChangeEvent] = []
        with self._lock:
            self._check_open()
            self._drop_if_expired(name, time.monotonic(), events)
            result = op(events)
            if not events:
                return result
            self._publish_lock.acquire()  # taken before the store lock is let go: keeps order
        self._publish(events)
        return result

    def _publish(self, events: list[ChangeEvent]) -> None:
        """Deliver `events`, then release the publish lock taken by the caller."""
        try:
            for event in events:
                self._registry.publish(event)
        finally:
            self._publish_lock.release()

    def _check_open(self) -> None:
        if self._closed:
            raise ContextClosedError("the local backend is closed")

    def _check_write(self, name: str, value: bytes, ttl: float | None) -> None:
        if ttl is not None:
            _check_ttl(ttl)
        self.check_value_size(name, value)

    def _next_revision(self) -> int:
        self._revision += 1
        return self._revision

    def _matches(self, name: str, expected: Entry | None) -> bool:
        item = self._items.get(name)
        if expected is None or item is None:
            return expected is None and item is None
        return item.revision == expected.revision and item.value == expected.value

    def _store(
        self, name: str, value: bytes, ttl: float | None, events: list[ChangeEvent]
    ) -> int:
        revision = self._next_revision()
        value = bytes(value)
        deadline = None if ttl is None else time.monotonic() + ttl
        self._items[name] = _Item(value, revision, deadline)
        if deadline is not None:
            self._schedule(deadline, revision, name)
        self._note(events, ChangeEvent(name, ChangeKind.SET, value, revision))
        return revision

    def _remove(self, name: str, events: list[ChangeEvent]) -> int:
        self._items.pop(name, None)
        revision = self._next_revision()
        self._note(events, ChangeEvent(name, ChangeKind.DELETE, None, revision))
        return revision

    def _note(self, events: list[ChangeEvent], event: ChangeEvent) -> None:
        """Keep `event` in the history and queue it for the listeners."""
        self._history.record(event)
        events.append(event)

    def _schedule(self, deadline: float, revision: int, name: str) -> None:
        heapq.heappush(self._deadlines, (deadline, revision, name))
        if self._deadlines[0][0] == deadline:
            self._deadline_changed.notify()

    def _drop_if_expired(self, name: str, now: float, events: list[ChangeEvent]) -> None:
        item = self._items.get(name)
        if item is not None and item.deadline is not None and item.deadline <= now:
            self._remove(name, events)

    def _expire_loop(self) -> None:
        """Body of the expiry thread: sleep until the earliest deadline, drop what is due."""
        while True:
            events: list[ChangeEvent] = []
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, _, name = heapq.heappop(self._deadlines)
                    self._drop_if_expired(name, now, events)  # stale heap entries do nothing
                if not events:
                    wait = self._deadlines[0][0] - now if self._deadlines else None
                    self._deadline_changed.wait(wait)
                    continue
                self._publish_lock.acquire()
            self._publish(events)


def _check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ConfigError(f"ttl must be a positive number of seconds, not {ttl!r}")
