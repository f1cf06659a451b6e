"""`InteropBackend`: the DRef API on a Raft cluster that speaks upstream's protocol (interop
mode), through upstream's client service `DRefRaft` only.

Upstream's protocol has no revisions, no conditional writes and no history, so this backend
does what upstream does and says where it differs from native mode (README "Interop mode"):

* revisions are 0 everywhere: writes return 0, entries carry 0, locks have no fencing token;
* `update` / `modify` hold upstream's lock ``lock:<name>`` (`interop_locking`), and
  `compare_and_set` does too, so they exclude each other and upstream's `modify`, not a
  plain `set`;
* compare-and-delete and a conditional expire read, compare, then write: a lock released
  at the very moment its lease passes to another holder can still delete the new holder's
  lock, as upstream's unconditional release always can (spec 7.23);
* change streams follow the changes a node in this process applies (`dref.raft(...,
  interop=True, isolate=False)`, as upstream's embedded nodes do); otherwise they poll
  each watched name through the leader every 500 ms (as upstream's detectors poll), so
  changes between two polls fold into one event; a change to the value it already has is
  not reported, and no stream resumes from a revision (`ref.changes(after=...)` raises
  ConfigError);
* every read is linearizable (a ReadIndex round on the leader); the read policy is ignored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from dref.backend import (
    Backend,
    ChangeEvent,
    ChangeKind,
    Entry,
    Listener,
    ListenerRegistry,
    ReadPolicyName,
    call_timeout,
    take_upstream_lock,
)
from dref.contracts.changes import HISTORY_PAGE
from dref.errors import ConfigError, DRefError, LockStolenError
from dref.raft.interop.client import UpstreamClient
from dref.storage.kv_state_machine import KeyValueStateMachine
from dref.wire.lock_token import decode_lock_token, encode_lock_token, new_lock_token
from dref.wire.proto import dref_pb2 as rpb

__all__ = ["InteropBackend"]

_log = logging.getLogger("dref.interop")

DEFAULT_POLL_INTERVAL = 0.5
"""Seconds between reads of each watched name (upstream's detectors poll every 500 ms)."""


class InteropBackend(Backend):
    """A `Backend` over `DRefRaft` calls to an upstream-protocol cluster."""

    interop_locking = True

    def __init__(
        self,
        client: UpstreamClient,
        *,
        default_ttl: float,
        max_value_size: int,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        on_close: Callable[[], object] | None = None,
        node_state: KeyValueStateMachine | None = None,
    ) -> None:
        """`node_state`: the state machine of an interop node in this process, whose
        applied changes then feed change streams (as upstream's embedded nodes do)
        instead of polling."""
        self._client = client
        self._node_state = node_state
        self.default_ttl = default_ttl
        self.max_value_size = max_value_size
        self._poll_interval = poll_interval
        self._on_close = on_close
        self._listeners = ListenerRegistry()
        self._seen: dict[str, bytes | None] = {}
        """The last value each watched name was reported with (None: absent)."""
        self._seen_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._closed = False
        self._cancel_resync = (
            node_state.add_resync_listener(self._resync) if node_state is not None else None
        )

    # -- writes -------------------------------------------------------------------------

    def set(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int:
        self.check_value_size(name, value)
        request = rpb.SetElementRequest(name=name, value=value)
        if ttl is not None:
            request.expireAt = _expire_at(ttl)
        self._client.call("SetElement", request, timeout=timeout)
        self._report(name, value)
        return 0

    def set_if_absent(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int | None:
        self.check_value_size(name, value)
        request = rpb.SetElementIfNotExistRequest(name=name, value=value)
        if ttl is not None:
            request.expireAt = _expire_at(ttl)
        # Not resent after an unknown outcome: a resend would answer "exists" for our own
        # write; the caller checks instead (a lock compares its random token).
        reply = self._client.call(
            "SetElementIfNotExist", request, timeout=timeout, resend_unknown=False
        )
        if not reply.created:
            return None
        self._report(name, value)
        return 0

    def delete(self, name: str, *, timeout: float | None = None) -> int:
        self._client.call("DeleteElement", rpb.DeleteElementRequest(name=name), timeout=timeout)
        self._report(name, None)
        return 0

    def compare_and_set(
        self,
        name: str,
        expected: Entry | None,
        value: bytes,
        ttl: float | None = None,
        *,
        timeout: float | None = None,
    ) -> int | None:
        """Under ``lock:<name>``: write only if the value is still `expected`'s."""
        self.check_value_size(name, value)
        written: list[int] = []

        def replace(current: bytes | None) -> bytes | None:
            if current != (None if expected is None else expected.value):
                return None
            written.append(self.set(name, value, ttl, timeout=timeout))
            return value

        self._under_modify_lock(name, replace, timeout)
        return written[0] if written else None

    def compare_and_delete(
        self, name: str, expected: Entry, *, timeout: float | None = None
    ) -> bool:
        current = self.get(name, timeout=timeout)
        if current is None or current.value != expected.value:
            return False
        self.delete(name, timeout=timeout)
        return True

    def expire(
        self,
        name: str,
        ttl: float,
        *,
        expected: Entry | None = None,
        timeout: float | None = None,
    ) -> bool:
        current = self.get(name, timeout=timeout)
        if current is None or (expected is not None and current.value != expected.value):
            return False
        request = rpb.ExpireElementRequest(name=name, expireAt=_expire_at(ttl))
        self._client.call("ExpireElement", request, timeout=timeout)
        return True

    def modify_with_upstream_lock(
        self, name: str, fn: Callable[[bytes | None], bytes], *, timeout: float | None = None
    ) -> int:
        def write(current: bytes | None) -> bytes:
            value = fn(current)
            self.set(name, value, timeout=timeout)
            return value

        self._under_modify_lock(name, write, timeout)
        return 0

    def _under_modify_lock(
        self,
        name: str,
        step: Callable[[bytes | None], bytes | None],
        timeout: float | None,
    ) -> None:
        """Hold ``lock:<name>``, read `name`, run `step(value)`, release (upstream's modify).
        LockStolenError if the lock was lost before `step` wrote."""
        limit = self._client.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        lock_name = "lock:" + name
        token = encode_lock_token(new_lock_token())
        take_upstream_lock(self, name, token, deadline, limit)
        held = Entry(token, 0)
        try:
            current = self.get(name, timeout=call_timeout(deadline))
            if self.get(lock_name, timeout=call_timeout(deadline)) != held:
                raise LockStolenError(lock_name, decode_lock_token(token))
            step(None if current is None else current.value)
        finally:
            try:
                self.compare_and_delete(lock_name, held, timeout=call_timeout(deadline))
            except DRefError:
                _log.warning("could not release %s; it expires by its TTL", lock_name)

    # -- reads --------------------------------------------------------------------------

    def get(
        self, name: str, *, policy: ReadPolicyName = "linearizable", timeout: float | None = None
    ) -> Entry | None:
        reply = self._client.call("GetElement", rpb.GetElementRequest(name=name), timeout=timeout)
        return Entry(reply.value, 0) if reply.HasField("value") else None

    def history(
        self, name: str, after: int, *, limit: int = HISTORY_PAGE, timeout: float | None = None
    ) -> list[ChangeEvent]:
        raise ConfigError(
            "change streams cannot resume from a revision in interop mode: upstream's"
            " protocol keeps no history (use native mode for ref.changes(after=...))"
        )

    # -- change streams -----------------------------------------------------------------

    def subscribe(
        self,
        name: str,
        listener: Listener,
        *,
        timeout: float | None = None,
        sees_own_writes: bool = True,
    ) -> Callable[[], None]:
        """Changes of `name` as this process's node applies them, when it has one here;
        else read every `poll_interval`. Own writes are reported as they return."""
        with self._seen_lock:
            known = name in self._seen
        if not known and self._node_state is not None:
            stored = self._node_state.entry(name)
            alive = stored is not None and stored.live_at(int(time.time() * 1000))
            with self._seen_lock:
                self._seen.setdefault(name, stored.value if alive and stored else None)
        elif not known:
            try:
                entry = self.get(name, timeout=timeout)
            except DRefError as exc:  # the poller keeps trying
                _log.debug("first read of watched %s failed: %s", name, exc)
            else:
                with self._seen_lock:
                    self._seen.setdefault(name, None if entry is None else entry.value)
        cancel = self._listeners.add(name, listener)
        if self._node_state is None:
            self._start_poller()
            return cancel
        cancel_node = self._node_state.listeners.add(name, self._from_node)

        def cancel_both() -> None:
            cancel_node()
            cancel()
            if name not in self._listeners.names():
                with self._seen_lock:
                    self._seen.pop(name, None)

        return cancel_both

    def _from_node(self, event: ChangeEvent) -> None:
        """A change the node here applied (its revisions are its own: reported as 0)."""
        self._report(event.name, event.value if event.kind is ChangeKind.SET else None)

    def _resync(self) -> None:
        """The node here installed a snapshot (no events for what it replaced): report
        each watched name as it now is."""
        assert self._node_state is not None
        now = int(time.time() * 1000)
        for name in self._listeners.names():
            stored = self._node_state.entry(name)
            self._report(name, stored.value if stored and stored.live_at(now) else None)

    def _report(self, name: str, value: bytes | None) -> None:
        """Tell a watched name's listeners about a change, once per distinct value."""
        with self._seen_lock:
            if name not in self._seen or self._seen[name] == value:
                return
            self._seen[name] = value
        self._listeners.publish(_event(name, value))

    def _start_poller(self) -> None:
        with self._seen_lock:
            if self._poller is not None or self._closed:
                return
            self._poller = threading.Thread(
                target=self._poll, name="dref-interop-poll", daemon=True
            )
            self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(self._poll_interval):
            watched = self._listeners.names()
            with self._seen_lock:
                for name in set(self._seen) - set(watched):
                    del self._seen[name]
            for name in watched:
                try:
                    entry = self.get(name, timeout=max(self._poll_interval, 1.0))
                except DRefError as exc:
                    _log.debug("poll of %s failed: %s", name, exc)
                    continue
                self._report(name, None if entry is None else entry.value)

    def reopen_after_fork(self) -> Backend:
        return InteropBackend(
            UpstreamClient(list(self._client.addresses), timeout=self._client.timeout),
            default_ttl=self.default_ttl,
            max_value_size=self.max_value_size,
            poll_interval=self._poll_interval,
        )

    def close(self) -> None:
        with self._seen_lock:
            if self._closed:
                return
            self._closed = True
            poller = self._poller
        self._stop.set()
        if poller is not None:
            poller.join(timeout=5)
        if self._cancel_resync is not None:
            self._cancel_resync()
        self._client.close()
        if self._on_close is not None:
            self._on_close()


def _expire_at(ttl: float) -> int:
    """Upstream's expiry: the caller's wall clock plus the TTL, in Unix ms (spec 4.11)."""
    return int(time.time() * 1000 + ttl * 1000)


def _event(name: str, value: bytes | None) -> ChangeEvent:
    if value is None:
        return ChangeEvent(name, ChangeKind.DELETE, None, 0)
    return ChangeEvent(name, ChangeKind.SET, value, 0)
