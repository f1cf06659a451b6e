"""`RaftBackend`: the DRef `Backend` contract over a key/value Raft cluster, via `dref.raft.Client`.

Writes and reads go to the leader (linearizable reads). Revisions are the state machine's
(one counter for the whole cluster), so a lock's acquiring revision is a fencing token.
An expired value is invisible at once (reads hide it; conditional writes treat it as
absent), and the leader's TTL reaper deletes it soon after, which reaches listeners as a
DELETE event.

Subscriptions: one Watch stream per subscribed name, read by a daemon thread
``dref-raft-watch:<name>``, on one node (the leader when known), which publishes the
changes it applies (spec 1.5). When the stream breaks or says RESYNC (the node installed a
snapshot or the reader lagged), the thread reconnects, re-reads the name and delivers a
synthetic event (revision of the stored entry; DELETE with revision 0 when absent) if it
differs from the last one delivered, so listeners never stay behind silently.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dref.backend import Backend, ChangeEvent, ChangeKind, Entry, Listener, ListenerRegistry
from dref.errors import ConfigError, ContextClosedError, DRefError, ValueTooLargeError
from dref.raft.client import Client, Resync, Watch
from dref.wire.client_service import DEFAULT_MAX_VALUE_SIZE

__all__ = ["DEFAULT_TTL", "RaftBackend"]

DEFAULT_TTL = 10.0
"""Upstream's Raft lease for locks, in seconds (spec 1.7)."""

_log = logging.getLogger("dref.raft")


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
        self._watchers: dict[str, _Watcher] = {}
        self._closed = False

    # -- Backend -----------------------------------------------------------------------

    def set(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int:
        """Write unconditionally; returns the new revision."""
        self._check(name, value)
        return self.client.set(name, value, ttl, timeout=timeout)

    def set_if_absent(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int | None:
        """Create only if absent or expired; the revision, or None."""
        self._check(name, value)
        return self.client.set_if_absent(name, value, ttl, timeout=timeout)

    def get(self, name: str, *, timeout: float | None = None) -> Entry | None:
        """Linearizable read of the live entry."""
        self._check(name)
        return self.client.get(name, timeout=timeout)

    def delete(self, name: str, *, timeout: float | None = None) -> int:
        """Delete even if absent; the revision of the delete."""
        self._check(name)
        return self.client.delete(name, timeout=timeout)

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
        return self.client.compare_and_set(name, expected, value, ttl, timeout=timeout)

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

    def subscribe(self, name: str, listener: Listener) -> Callable[[], None]:
        """Deliver later changes of `name`; returns once the node's stream is live (or,
        if the cluster is unreachable, at once: the watcher then resyncs on connecting)."""
        self._check(name)
        with self._lock:
            if self._closed:
                raise ContextClosedError("the Raft backend is closed")
            remove = self._registry.add(name, listener)
            watcher = self._watchers.get(name)
            if watcher is None:
                watcher = self._watchers[name] = _Watcher(self, name)
                watcher.start()
        watcher.wait_started(self.client.timeout)
        cancelled = threading.Event()

        def cancel() -> None:
            if cancelled.is_set():
                return
            cancelled.set()
            remove()
            with self._lock:
                if name not in self._registry.names() and self._watchers.get(name) is watcher:
                    del self._watchers[name]
                    watcher.stop()

        return cancel

    def close(self) -> None:
        """Stop every watcher, close the client, then run `on_close`. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watchers = list(self._watchers.values())
            self._watchers.clear()
        for watcher in watchers:
            watcher.stop()
        self.client.close()
        for watcher in watchers:
            watcher.join(timeout=5.0)
        if self._on_close is not None:
            self._on_close()

    # -- internals ----------------------------------------------------------------------

    def _check(self, name: str, value: bytes = b"") -> None:
        if self._closed:
            raise ContextClosedError("the Raft backend is closed")
        if not name:
            raise ConfigError("names must not be empty")
        if len(value) > self.max_value_size:
            raise ValueTooLargeError(name, len(value), self.max_value_size)

    def _publish(self, event: ChangeEvent) -> None:
        self._registry.publish(event)


class _Watcher(threading.Thread):
    """Reads one name's Watch stream, reconnecting and resyncing (see the module doc)."""

    def __init__(self, backend: RaftBackend, name: str) -> None:
        super().__init__(name=f"dref-raft-watch:{name}", daemon=True)
        self._backend = backend
        self._name = name
        self._stopped = threading.Event()
        self._started = threading.Event()
        self._watch: Watch | None = None
        self._last: tuple[ChangeKind, bytes | None, int] | None = None

    def wait_started(self, timeout: float) -> None:
        self._started.wait(timeout)

    def stop(self) -> None:
        self._stopped.set()
        watch = self._watch
        if watch is not None:
            watch.cancel()

    def run(self) -> None:
        client = self._backend.client
        first = True
        failures = 0
        while not self._stopped.is_set():
            try:
                self._watch = client.watch(self._name)
                if self._stopped.is_set():
                    self._watch.cancel()
                    return
                if first:
                    self._last = self._baseline()
                else:
                    self._resync()
                self._started.set()
                first = False
                failures = 0
                for item in self._watch:
                    if isinstance(item, Resync):
                        self._resync()
                    else:
                        self._deliver(item)
            except ContextClosedError:
                return
            except DRefError as exc:
                _log.debug("watch of %s broke: %s", self._name, exc)
            self._started.set()  # do not hold subscribe() up while the cluster is away
            first = False
            failures += 1
            self._stopped.wait(min(2.0, 0.05 * 2 ** min(failures, 6)))  # reconnect backoff

    def _baseline(self) -> tuple[ChangeKind, bytes | None, int]:
        entry = self._backend.client.get(self._name)
        if entry is None:
            return (ChangeKind.DELETE, None, 0)
        return (ChangeKind.SET, entry.value, entry.revision)

    def _resync(self) -> None:
        """Re-read the name; deliver a synthetic event if it differs from the last one."""
        current = self._baseline()
        last = self._last
        if last is not None and (current == last or current[0] is last[0] is ChangeKind.DELETE):
            return
        self._deliver(ChangeEvent(self._name, current[0], current[1], current[2]))

    def _deliver(self, event: ChangeEvent) -> None:
        self._last = (event.kind, event.value, event.revision)
        self._backend._publish(event)
