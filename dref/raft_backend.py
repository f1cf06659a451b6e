"""`RaftBackend`: the DRef `Backend` contract over a key/value Raft cluster, via `dref.raft.Client`.

Writes and reads go to the leader (linearizable reads). Revisions are the state machine's
(one counter for the whole cluster), so a lock's acquiring revision is a fencing token.
An expired value is invisible at once (reads hide it; conditional writes treat it as
absent), and the leader's TTL reaper deletes it soon after, which reaches listeners as a
DELETE event.

Subscriptions: ONE Watch stream per backend carries every subscribed name; the daemon
thread ``dref-raft-watch`` reads it from one node (the leader when known), which publishes
the changes it applies (spec 1.5). Subscribing a name the stream lacks opens a new stream
with the current names that replaces the old one on the node without losing or repeating
a change (events at or below the last revision delivered for a name are dropped, in case).
When the stream breaks or says RESYNC (the node installed a snapshot or the reader lagged),
or a replacement lands on another node, the thread reconnects and, for every name, delivers
the changes the leader's history keeps after the last revision delivered, so listeners miss
nothing. Where the history does not reach back that far, it re-reads the name and delivers
a synthetic event (revision of the stored entry; DELETE with revision 0 when absent; marked
`resync`) where it differs from the last one delivered, so listeners never stay behind
silently.

History (`history`) is read from the leader, linearizably: the changes its state machine
keeps (see `KeyValueStateMachine`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
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
from dref.contracts.changes import HISTORY_PAGE
from dref.errors import CompactedError, ConfigError, ContextClosedError, DRefError
from dref.raft.client import Client, Resync, Watch
from dref.wire.client_protocol import DEFAULT_MAX_VALUE_SIZE

__all__ = ["DEFAULT_TTL", "RaftBackend"]

DEFAULT_TTL = 10.0
"""Upstream's Raft lease for locks, in seconds (spec 1.7)."""

CATCH_UP = 2.0
"""Most seconds `close` spends bringing listeners up to date (changes the stream had yet
to deliver, like the release of a lock the closing context held)."""

SEE_OWN_WRITE = 1.0
"""Most seconds a write to a subscribed name waits for its event to reach the listeners."""

_log = logging.getLogger("dref.raft")
_Rev = TypeVar("_Rev", int, int | None)


class RaftBackend(Backend):
    """A `Backend` on a Raft cluster reached through `client` (closed with the backend)."""

    def __init__(
        self,
        client: Client,
        *,
        default_ttl: float = DEFAULT_TTL,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        on_close: Callable[[], object] | None = None,
    ) -> None:
        if default_ttl <= 0 or max_value_size <= 0:
            raise ConfigError("default_ttl and max_value_size must be positive")
        self.client = client
        self.default_ttl = default_ttl
        self.max_value_size = max_value_size
        self._on_close = on_close
        self._registry = ListenerRegistry()
        self._lock = threading.Lock()
        self._watcher: _Watcher | None = None
        self._closed = False

    # -- Backend -----------------------------------------------------------------------

    def set(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int:
        """Write unconditionally; returns the new revision."""
        self._check(name, value)
        return self._seen(name, self.client.set(name, value, ttl, timeout=timeout))

    def set_if_absent(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int | None:
        """Create only if absent or expired; the revision, or None."""
        self._check(name, value)
        return self._seen(name, self.client.set_if_absent(name, value, ttl, timeout=timeout))

    def reopen_after_fork(self) -> Backend:
        """Refused: gRPC cannot be used in a child forked while the parent had calls or
        streams in flight (its core aborts the child), and a Raft context always has a
        watch or pipeline stream open."""
        raise ConfigError(
            "a Raft context opened before fork() cannot be used in the child (gRPC does not"
            " survive fork): open it after forking, for example in gunicorn's post_fork hook"
            " or at the first request"
        )

    def get(
        self, name: str, *, policy: ReadPolicyName = "linearizable", timeout: float | None = None
    ) -> Entry | None:
        """The live entry, read as `policy` says: linearizable (ReadIndex on the leader),
        lease (the leader's lease), or stale (the applied state of the node asked)."""
        self._check(name)
        return self.client.get(name, policy=policy, timeout=timeout)

    def delete(self, name: str, *, timeout: float | None = None) -> int:
        """Delete even if absent; the revision of the delete."""
        self._check(name)
        return self._seen(name, self.client.delete(name, timeout=timeout))

    def increment(
        self, name: str, delta: int, fmt: str, *, timeout: float | None = None
    ) -> tuple[int, int]:
        """Add in the state machine as one replicated command (see `Backend.increment`)."""
        self._check(name)
        number, revision = self.client.increment(name, delta, fmt, timeout=timeout)
        self._seen(name, revision)
        return number, revision

    def compare_and_set(
        self,
        name: str,
        expected: Entry | None,
        value: bytes,
        ttl: float | None = None,
        *,
        timeout: float | None = None,
    ) -> int | None:
        """Write only if the live entry is `expected` (None: if absent)."""
        self._check(name, value)
        revision = self.client.compare_and_set(name, expected, value, ttl, timeout=timeout)
        return self._seen(name, revision)

    def compare_and_delete(
        self, name: str, expected: Entry, *, timeout: float | None = None
    ) -> bool:
        """Delete only if the live entry is `expected`."""
        self._check(name)
        return self.client.compare_and_delete(name, expected, timeout=timeout)

    def expire(
        self,
        name: str,
        ttl: float,
        *,
        expected: Entry | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Re-arm the expiry of the live entry (with `expected`: only if it is that one)."""
        self._check(name)
        return self.client.expire_if(name, ttl, expected, timeout=timeout)

    def history(
        self, name: str, after: int, *, limit: int = HISTORY_PAGE, timeout: float | None = None
    ) -> list[ChangeEvent]:
        """The leader's kept changes of `name` after revision `after` (see `Backend.history`)."""
        self._check(name)
        return self.client.history(name, after, limit=limit, timeout=timeout)

    def subscribe(
        self,
        name: str,
        listener: Listener,
        *,
        timeout: float | None = None,
        sees_own_writes: bool = True,
    ) -> Callable[[], None]:
        """Deliver later changes of `name`; returns once the node's stream carries it, or
        after `timeout` (None: the client's timeout) if the cluster does not answer: the
        watcher then resyncs on connecting. Writes wait for their events whatever
        `sees_own_writes` says."""
        self._check(name)
        with self._lock:
            if self._closed:
                raise ContextClosedError("the Raft backend is closed")
            remove = self._registry.add(name, listener)
            watcher = self._watcher
            if watcher is None:
                watcher = self._watcher = _Watcher(self)
                watcher.start()
        watcher.wait_started(self.client.timeout if timeout is None else timeout)
        watcher.cover(name)
        cancelled = threading.Event()

        def cancel() -> None:
            if cancelled.is_set():
                return
            cancelled.set()
            remove()
            with self._lock:
                idle = not self._registry.names() and self._watcher is watcher
                if idle:
                    self._watcher = None
            if idle:
                watcher.stop()

        return cancel

    def close(self) -> None:
        """Stop the watcher, bring listeners still subscribed up to date (a resync, at most
        `CATCH_UP` seconds), close the client, then run `on_close`. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.join(timeout=CATCH_UP)
            if not watcher.is_alive():  # else it still delivers: no second deliverer
                watcher.catch_up(time.monotonic() + CATCH_UP)
        self.client.close()
        if watcher is not None:
            watcher.join(timeout=5.0)
        if self._on_close is not None:
            self._on_close()

    # -- internals ----------------------------------------------------------------------

    def _check(self, name: str, value: bytes = b"") -> None:
        if self._closed:
            raise ContextClosedError("the Raft backend is closed")
        if not name:
            raise ConfigError("names must not be empty")
        self.check_value_size(name, value)

    def _seen(self, name: str, revision: _Rev) -> _Rev:
        """`revision` of a write to `name`, once this backend's listeners of `name` got its
        event (read your writes, as on the local backend; at most `SEE_OWN_WRITE` s)."""
        watcher = self._watcher
        if revision is not None and watcher is not None and name in watcher.carried():
            watcher.wait_published(name, revision, SEE_OWN_WRITE)
        return revision

    def _publish(self, event: ChangeEvent) -> None:
        self._registry.publish(event)

    def _names(self) -> list[str]:
        return self._registry.names()


_State = tuple[ChangeKind, bytes | None, int]


class _Watcher(threading.Thread):
    """Reads the backend's Watch stream, replacing it and resyncing (see the module doc)."""

    def __init__(self, backend: RaftBackend) -> None:
        super().__init__(name="dref-raft-watch", daemon=True)
        self._backend = backend
        self._stopped = threading.Event()
        self._connected = threading.Event()
        self._open_lock = threading.Lock()  # one stream opens at a time
        self._latest: Watch | None = None  # the newest stream (the next one replaces it)
        self._queued: deque[Watch] = deque()  # replacements the reader has yet to reach
        self._state_lock = threading.Condition()
        self._last: dict[str, _State] = {}  # per name: the last event delivered (or read)
        self._published: dict[str, int] = {}  # per name: the newest revision published

    def wait_started(self, timeout: float) -> None:
        self._connected.wait(timeout)

    def carried(self) -> frozenset[str]:
        """The names the current stream carries (none while disconnected)."""
        latest = self._latest
        return latest.names if latest is not None else frozenset()

    def wait_published(self, name: str, revision: int, timeout: float) -> None:
        """Wait until an event of `name` at `revision` or later went to the listeners (not
        on this thread: a listener's own write would wait for itself)."""
        if threading.current_thread() is self:
            return
        with self._state_lock:
            self._state_lock.wait_for(
                lambda: self._published.get(name, 0) >= revision or self._stopped.is_set(),
                timeout,
            )

    def cover(self, name: str) -> None:
        """Make the stream carry `name`: replace it by one with every subscribed name."""
        with self._open_lock:
            latest = self._latest
            if latest is None or name in latest.names or self._stopped.is_set():
                return  # not connected (connecting covers every name) or already carried
            names = {*self._backend._names(), name}
            try:
                watch = self._backend.client.watch(*names, replaces=latest.watch_id)
            except DRefError as exc:  # reconnect from scratch, with a resync
                _log.debug("re-opening the watch failed: %s", exc)
                self._latest = None
                latest.cancel()
                return
            if not watch.replaced:
                latest.cancel()  # on another node: the reader resyncs when it switches
            if self._stopped.is_set():
                watch.cancel()
                return
            self._latest = watch
            self._queued.append(watch)
        try:
            self._note(name, self._read(name))
        except DRefError as exc:  # without a baseline, the next resync only records one
            _log.debug("reading %s failed: %s", name, exc)

    def stop(self) -> None:
        """Ask the thread to end (join it to wait); never waits for a stream being opened."""
        self._stopped.set()
        with self._state_lock:
            self._state_lock.notify_all()  # writers waiting for their events
        latest = self._latest
        for watch in [*self._queued.copy(), *([latest] if latest else [])]:
            watch.cancel()

    def run(self) -> None:
        failures = 0
        watch: Watch | None = None
        while not self._stopped.is_set():
            try:
                if watch is None:
                    watch = self._connect()
                    self._connected.set()
                    failures = 0
                for item in watch:
                    if isinstance(item, Resync):
                        self._resync(watch.names)
                    else:
                        self._deliver(item, dedupe=True)
                watch = self._switch()
                if watch is not None and not watch.replaced:
                    self._resync(watch.names)
            except ContextClosedError:
                return
            except DRefError as exc:
                _log.debug("the watch broke: %s", exc)
                watch = None
            if watch is None:
                self._drop()
                self._connected.set()  # do not hold subscribe() up while the cluster is away
                failures += 1
                self._stopped.wait(min(2.0, 0.05 * 2 ** min(failures, 6)))  # reconnect backoff

    def _connect(self) -> Watch:
        """Open a stream with every subscribed name, then resync them all."""
        with self._open_lock:
            names = self._backend._names()
            if self._stopped.is_set() or not names:
                raise ContextClosedError("the watcher is stopped")
            watch = self._backend.client.watch(*names)
            self._latest = watch
        self._resync(watch.names)
        return watch

    def _switch(self) -> Watch | None:
        """The stream that replaced the one that just ended, if any."""
        with self._open_lock:
            if not self._queued:
                self._latest = None
                return None
            watch = self._queued.popleft()
            names = watch.names | (self._latest.names if self._latest else frozenset())
        with self._state_lock:
            self._last = {n: s for n, s in self._last.items() if n in names}
            self._published = {n: r for n, r in self._published.items() if n in names}
        return watch

    def _drop(self) -> None:
        with self._open_lock:
            for watch in [*self._queued, *([self._latest] if self._latest else [])]:
                watch.cancel()
            self._queued.clear()
            self._latest = None

    def catch_up(self, deadline: float) -> None:
        """After the thread ended: resync every subscribed name until `deadline`."""
        try:
            self._resync(frozenset(self._backend._names()), deadline)
        except DRefError as exc:
            _log.debug("catching up on close failed: %s", exc)

    def _read(self, name: str, timeout: float | None = None) -> _State:
        entry = self._backend.client.get(name, timeout=timeout)
        if entry is None:
            return (ChangeKind.DELETE, None, 0)
        return (ChangeKind.SET, entry.value, entry.revision)

    def _note(self, name: str, state: _State) -> None:
        """Remember a freshly read state of a newly carried name (unless newer is known)."""
        with self._state_lock:
            last = self._last.get(name)
            if last is None or state[2] > last[2]:
                self._last[name] = state

    def _resync(self, names: frozenset[str], deadline: float | None = None) -> None:
        """Bring `names` up to date (until `deadline`): deliver the changes the leader's
        history keeps after the last revision delivered; where it does not reach back,
        re-read and deliver a `resync` event if the state differs from the last delivered
        (a name read for the first time only sets the baseline)."""
        for name in names:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            with self._state_lock:
                last = self._last.get(name)
            if last is not None and last[2] > 0 and self._replay(name, last[2], deadline):
                continue
            current = self._read(name, remaining)
            with self._state_lock:
                last = self._last.get(name)
                if last is None:
                    self._last[name] = current
                    continue
            if current == last or current[0] is last[0] is ChangeKind.DELETE:
                continue
            resynced = ChangeEvent(name, current[0], current[1], current[2], resync=True)
            self._deliver(resynced, dedupe=False)

    def _replay(self, name: str, after: int, deadline: float | None) -> bool:
        """Deliver the kept changes of `name` after revision `after`; False when the
        history no longer reaches back that far."""
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            try:
                page = self._backend.client.history(name, after, timeout=remaining)
            except CompactedError:
                return False
            if not page:
                return True
            for event in page:
                self._deliver(event, dedupe=True)
            after = page[-1].revision

    def _deliver(self, event: ChangeEvent, *, dedupe: bool) -> None:
        with self._state_lock:
            last = self._last.get(event.name)
            if dedupe and last is not None and event.revision <= last[2]:
                return  # delivered already (or older than what a resync read)
            self._last[event.name] = (event.kind, event.value, event.revision)
        self._backend._publish(event)
        with self._state_lock:
            published = self._published.get(event.name, 0)
            self._published[event.name] = max(published, event.revision)
            self._state_lock.notify_all()
