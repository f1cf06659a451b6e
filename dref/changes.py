"""Change streams: every change of one name, decoded, in revision order, to every subscriber.

A `ChangeStream` subscribes a bounded buffer to the backend when it is created. The
backend's listener only appends raw events to the buffer, so a slow reader never blocks a
writer. Values are decoded on the reader's thread.

Without `after`, a stream starts at "now": when the buffer is full the oldest pending
events are dropped and the reader next receives one `Lagged(missed, resume_after)`.

With `after=REVISION` it is resumable: it first replays the backend's kept history of
changes after that revision, then live ones, each revision exactly once. Whenever it may
have missed something (its buffer overflowed, or the backend reconnected or its server
installed a snapshot, which the backend marks with a `resync` event) it reads the history
again from the last revision it delivered and drops live events it already delivered. If
the history no longer reaches back that far, the reader gets `CompactedError`.

A value the codec cannot decode does not end the stream: it arrives as `Undecodable`,
carrying the `CodecError` and the raw bytes, so one bad write (say, by a node with another
schema) is visible to the reader and the stream goes on.

`Subscription` runs a callback for each event on its own daemon thread, fed by a stream.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

from dref.backend import Backend, ChangeEvent, ChangeKind, call_timeout
from dref.errors import CodecError, CompactedError, ContextClosedError, DRefError, DRefTimeoutError

__all__ = [
    "DEFAULT_BUFFER",
    "ChangeStream",
    "Changed",
    "Deleted",
    "Event",
    "Lagged",
    "Subscription",
    "Undecodable",
]

T = TypeVar("T")

DEFAULT_BUFFER = 256
"""Events a stream holds for its reader before it drops the oldest (upstream Rust: 256)."""

_log = logging.getLogger("dref.changes")


@dataclass(frozen=True)
class Changed(Generic[T]):
    """The value was written; `revision` is the revision of that write."""

    value: T
    revision: int


@dataclass(frozen=True)
class Deleted:
    """The value was deleted or expired; `revision` is the revision of the delete."""

    revision: int


@dataclass(frozen=True)
class Lagged:
    """The reader fell behind and `missed` events were dropped; re-read with `get()`, or
    open `changes(after=resume_after)` to receive them (None: the drop carried no
    revision, as changes written by upstream nodes do not)."""

    missed: int
    resume_after: int | None = None


@dataclass(frozen=True)
class Undecodable:
    """A value was written that the codec could not decode; `error` says why."""

    error: CodecError
    data: bytes
    revision: int


Event = Changed[T] | Deleted | Lagged | Undecodable
"""Everything a change stream yields."""


class ChangeStream(Generic[T]):
    """Changes of one name, read with `get(timeout)`, `for event in stream`, or as a context.

    Iteration waits at most `timeout` seconds (given at creation) for each event and ends
    when none arrives in time, or when the stream is closed; with `timeout=None` it waits
    until the next event or until `close()` is called (from any thread). With `after`, the
    stream is resumable (see the module doc); creating it raises `CompactedError` when the
    backend no longer keeps every change after that revision.
    """

    def __init__(
        self,
        backend: Backend,
        name: str,
        decode: Callable[[bytes], T],
        *,
        timeout: float | None = None,
        buffer: int = DEFAULT_BUFFER,
        after: int | None = None,
        on_close: Callable[[ChangeStream[T]], None] | None = None,
    ) -> None:
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        if after is not None:
            if isinstance(after, bool) or not isinstance(after, int):
                raise TypeError(f"after takes a revision (an int), not {type(after).__name__}")
            if after < 0:
                raise ValueError(f"after must be a revision >= 0, not {after}")
        self.name = name
        self.timeout = timeout
        self._backend = backend
        self._decode = decode
        self._capacity = buffer
        self._pending: collections.deque[ChangeEvent] = collections.deque()
        self._missed = 0
        self._closed = False
        self._ready = threading.Condition(threading.Lock())
        self._reading = threading.Lock()  # one reader at a time: replay state is the reader's
        self._on_close = on_close
        self._resumable = after is not None
        self._last = after
        """The revision of the last event delivered (or skipped past): replays start here."""
        self._replay: collections.deque[ChangeEvent] = collections.deque()
        self._needs_history = self._resumable
        self._cancel = backend.subscribe(name, self._push)
        if self._resumable:
            start = time.monotonic()
            try:
                self._read_history(None if timeout is None else start + timeout, retry=False)
            except BaseException:
                self.close()
                raise

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    @property
    def last_revision(self) -> int | None:
        """The revision of the last event delivered (for a resumable stream: where it
        would resume), or None before the first one."""
        return self._last

    def get(self, timeout: float | None = None) -> Event[T]:
        """The next event; waits at most `timeout` s (None: the stream's own timeout; if
        that is None too, until an event arrives or `close()` is called).

        Raises `DRefTimeoutError` when the time is up and `ContextClosedError` once closed;
        a resumable stream raises `CompactedError` when history it needs is gone (it then
        goes on from the oldest change still kept).
        """
        if timeout is None:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._reading.acquire(timeout=-1 if deadline is None else max(timeout or 0, 0)):
            raise DRefTimeoutError(f"no change of {self.name} within {timeout:g} s")
        try:
            while True:
                if self._needs_history and not self._replay and not self._closed:
                    self._read_history(deadline, retry=True)
                raw = self._next_raw(deadline, timeout)
                if raw is None:
                    continue
                if isinstance(raw, Lagged):
                    return raw
                if raw.revision:
                    self._last = raw.revision
                return self._to_event(raw)
        finally:
            self._reading.release()

    def next(self, timeout: float | None = None) -> Event[T]:
        """Same as `get`: the next event within `timeout` seconds."""
        return self.get(timeout)

    def __iter__(self) -> Iterator[Event[T]]:
        return self

    def __next__(self) -> Event[T]:
        try:
            return self.get()
        except (DRefTimeoutError, ContextClosedError):
            raise StopIteration from None

    def close(self) -> None:
        """Unsubscribe, drop pending events and wake any reader. Idempotent."""
        with self._ready:
            if self._closed:
                return
            self._closed = True
            self._pending.clear()
            self._replay.clear()
            self._ready.notify_all()
        self._cancel()
        if self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> ChangeStream[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _reattach(self, backend: Backend) -> None:
        """In a child forked while this stream was open: listen on the child's backend.
        Runs while the child has no other thread (the parent's listener is not ours)."""
        self._ready = threading.Condition(threading.Lock())
        self._reading = threading.Lock()
        self._backend = backend
        if not self._closed:
            self._cancel = backend.subscribe(self.name, self._push)
            self._needs_history = self._resumable

    def _push(self, event: ChangeEvent) -> None:
        """The backend listener: buffer the raw event, dropping the oldest when full."""
        with self._ready:
            if self._closed:
                return
            if len(self._pending) >= self._capacity:
                dropped = self._pending.popleft()
                if self._last is None and dropped.revision and not self._missed:
                    self._last = dropped.revision - 1  # nothing delivered yet: resume here
                self._missed += 1
            self._pending.append(event)
            self._ready.notify()

    def _next_raw(
        self, deadline: float | None, timeout: float | None
    ) -> ChangeEvent | Lagged | None:
        """The next replayed or live event to deliver, a `Lagged`, or None when the
        history must be read again first. Waits for a live event until `deadline`."""
        with self._ready:
            while True:
                if self._closed:
                    raise ContextClosedError(f"the change stream of {self.name} is closed")
                if self._replay:
                    return self._replay.popleft()
                if self._missed:
                    missed, self._missed = self._missed, 0
                    if self._resumable:
                        self._needs_history = True
                        return None
                    return Lagged(missed, self._last)
                if self._needs_history:
                    return None
                while self._pending:
                    raw = self._pending.popleft()
                    if not self._resumable:
                        return raw
                    if raw.resync:
                        self._needs_history = True
                        return None
                    if raw.revision == 0 or self._last is None or raw.revision > self._last:
                        return raw
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise DRefTimeoutError(f"no change of {self.name} within {timeout:g} s")
                self._ready.wait(remaining)

    def _read_history(self, deadline: float | None, *, retry: bool) -> None:
        """Queue the next page of kept changes after the last delivered revision; clears
        `_needs_history` once a page comes back empty. With `retry`, failures are retried
        until `deadline` (None: until the stream closes)."""
        assert self._last is not None
        pause = 0.05
        while True:
            try:
                page = self._backend.history(
                    self.name,
                    self._last,
                    timeout=None if deadline is None else call_timeout(deadline),
                )
            except CompactedError as exc:
                self._last = exc.oldest_available - 1  # go on from what is kept
                raise
            except DRefError as exc:
                if not retry:
                    raise
                if self._closed:
                    return
                if deadline is not None and time.monotonic() + pause >= deadline:
                    raise DRefTimeoutError(
                        f"the change history of {self.name} could not be read: {exc}"
                    ) from exc
                _log.debug("reading the change history of %s failed: %s", self.name, exc)
                with self._ready:
                    self._ready.wait(pause)  # close() wakes it
                pause = min(pause * 2, 1.0)
                continue
            with self._ready:
                if page:
                    self._replay.extend(page)
                else:
                    self._needs_history = False
            return

    def _to_event(self, raw: ChangeEvent) -> Event[T]:
        if raw.kind is ChangeKind.DELETE or raw.value is None:
            return Deleted(raw.revision)
        try:
            return Changed(self._decode(raw.value), raw.revision)
        except CodecError as e:
            return Undecodable(e, raw.value, raw.revision)


class Subscription(Generic[T]):
    """A callback run for every event of a stream, on its own daemon thread, until `cancel()`.

    A slow callback delays only its own events (which may then arrive as `Lagged`); an
    exception in the callback is logged and the subscription goes on.
    """

    def __init__(
        self,
        stream: ChangeStream[T],
        callback: Callable[[Event[T]], object],
        *,
        on_cancel: Callable[[Subscription[T]], None] | None = None,
    ) -> None:
        self._stream = stream
        self._callback = callback
        self._on_cancel = on_cancel
        self._thread = threading.Thread(
            target=self._run, name=f"dref-on-change:{stream.name}", daemon=True
        )
        self._thread.start()

    @property
    def active(self) -> bool:
        """True until `cancel()` was called."""
        return not self._stream.closed

    def cancel(self, timeout: float | None = 5.0) -> None:
        """Stop delivering events and wait up to `timeout` s for a running callback to return."""
        self._stream.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self._on_cancel is not None:
            self._on_cancel(self)

    def close(self) -> None:
        """Same as `cancel()`."""
        self.cancel()

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()

    def _restart(self, backend: Backend) -> None:
        """In a child forked while this subscription was active: the callback thread did
        not survive the fork, so start the child's own on the child's backend."""
        self._stream._reattach(backend)
        if self.active:
            self._thread = threading.Thread(
                target=self._run, name=self._thread.name, daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                event = self._stream.get()
            except CompactedError as exc:  # the stream goes on from the oldest kept change
                _log.warning("on_change of %s missed changes: %s", self._stream.name, exc)
                continue
            except (DRefTimeoutError, ContextClosedError):
                return
            try:
                self._callback(event)
            except Exception:  # a failing callback must not end the subscription
                _log.exception("on_change callback failed for %s", self._stream.name)
