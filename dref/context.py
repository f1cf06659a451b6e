"""`Context`: one backend plus everything opened on it (refs, locks, change streams).

Closing a context stops what it started: open change streams end, `on_change` threads
stop, held locks are released (their holders see a loss), and the backend is closed.

Fork: a context opened before `fork()` (gunicorn `--preload`, multiprocessing) reopens
itself in the child right after the fork: the child gets its own backend connections,
its change streams and `on_change` callbacks listen again (on new threads), and nothing
of the parent's (sockets, threads, locks) is used or closed by the child. Locks the
parent holds stay the parent's.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar, cast, overload

from dref.backend import Backend, ReadPolicyName, read_policy_name
from dref.changes import ChangeStream, Event, Subscription
from dref.combiner import UpdateCombiner
from dref.contracts.lock_stats import LockStats
from dref.errors import ContextClosedError, PermissionDeniedError, QuorumLostError
from dref.lease_keeper import LeaseKeeper
from dref.lock import DEFAULT_LOCK_TIMEOUT, Lock, LockCounters
from dref.naming import call_site_name
from dref.ref import DRef
from dref.wire.codec import Codec

__all__ = ["LOCK_PREFIX", "Context"]

T = TypeVar("T")

LOCK_PREFIX = "lock:"
"""Upstream's prefix for the lock that guards a value's `modify` (spec 1.3, 1.4)."""

_REQUIRED: Any = object()

_log = logging.getLogger("dref")

_CONTEXTS: weakref.WeakSet[Context] = weakref.WeakSet()
"""Every live context of this process, reopened in a forked child."""

_CREATE_ATTEMPTS = 3
"""How often `ref` asks to store its initial value when the outcome stays unknown."""


class _Closeable(Protocol):
    def close(self) -> None: ...


class Context:
    """A backend and the handles opened on it; use it as a context manager or `close()` it.

    Every method is thread-safe. After `close()`, every call on the context or on a handle
    made from it raises `ContextClosedError`.
    """

    def __init__(self, backend: Backend, *, read_policy: ReadPolicyName = "linearizable") -> None:
        self._backend = backend
        self._read_policy = read_policy_name(read_policy)
        self._guard = threading.Lock()
        self._closed = False
        self._open: set[object] = set()  # streams, subscriptions and held locks
        self._combiners: weakref.WeakValueDictionary[str, UpdateCombiner] = (
            weakref.WeakValueDictionary()
        )
        self._inherited: list[Backend] = []  # a parent's backends, never used or closed
        self._lock_counters = LockCounters()
        """What this context's locks did (`lock_stats`); its locks count into it."""
        self._lease_keeper = LeaseKeeper()
        """Keeps the leases of the locks this context holds alive (one thread for all)."""
        self._closed_because = "the context is closed"
        _CONTEXTS.add(self)

    @property
    def backend(self) -> Backend:
        """The byte-level backend (for tools and tests; applications use refs and locks)."""
        return self._backend

    @property
    def read_policy(self) -> ReadPolicyName:
        """How `DRef.get` reads when not told otherwise (see `dref.backend.ReadPolicyName`)."""
        return self._read_policy

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    @overload
    def ref(
        self,
        name: str | None,
        initial: T,
        *,
        codec: Codec[T] | None = None,
        style: Literal["rust", "scala"] = "rust",
        timeout: float | None = None,
    ) -> DRef[T]: ...

    @overload
    def ref(
        self,
        name: str | None = None,
        *,
        initial: T,
        codec: Codec[T] | None = None,
        style: Literal["rust", "scala"] = "rust",
        timeout: float | None = None,
    ) -> DRef[T]: ...

    def ref(
        self,
        name: str | None = None,
        initial: Any = _REQUIRED,
        *,
        codec: Codec[Any] | None = None,
        style: Literal["rust", "scala"] = "rust",
        timeout: float | None = None,
    ) -> DRef[Any]:
        """A handle on `name`, storing `initial` first only if the name is absent.

        `name=None` generates a name from the call site (see `dref.naming`: deterministic
        but not shared with Scala or Rust). The default codec is MsgPack inferred from
        `initial` (`MsgPackCodec.for_value`), writing bytes >= 0x80 in `style`. Storing
        `initial` is asked again (up to 3 times) when a leader change leaves its outcome
        unknown: either way the name exists afterwards, which is all `ref` promises.
        """
        if initial is _REQUIRED:
            raise TypeError("ref() needs an initial value")
        if name is None:
            name = call_site_name(1)
        if codec is None:
            from dref.wire.msgpack_codec import MsgPackCodec

            codec = MsgPackCodec.for_value(initial, style=style)
        self._store_if_absent(name, codec.encode(initial), timeout)
        return DRef(self, name, codec)

    def _store_if_absent(self, name: str, value: bytes, timeout: float | None) -> None:
        """`set_if_absent`, retried while its outcome is unknown (it is idempotent here)."""
        backend = self._open_backend()
        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            try:
                backend.set_if_absent(name, value, None, timeout=timeout)
                return
            except QuorumLostError:
                if attempt == _CREATE_ATTEMPTS:
                    raise
            except PermissionDeniedError:  # a read-only identity: enough if it exists
                if backend.get(name, timeout=timeout) is None:
                    raise
                return

    def lock(
        self,
        name: str,
        *,
        ttl: float | None = None,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        on_lost: Callable[[], object] | None = None,
        retry_interval: float | None = None,
    ) -> Lock:
        """A lock on `name` (not yet acquired); see `dref.lock.Lock`.

        `ttl` is the lease (default: the backend's `default_ttl`), `timeout` the default
        acquisition timeout, `on_lost` a callback run when a held lock is lost.
        """
        self._open_backend()
        return Lock(
            self, name, ttl=ttl, timeout=timeout, on_lost=on_lost, retry_interval=retry_interval
        )

    @staticmethod
    def lock_name_for(ref_name: str) -> str:
        """The name upstream uses for the lock guarding `modify` of `ref_name`: ``lock:<name>``.

        Our `DRef.modify` uses compare-and-set instead; take ``ctx.lock(lock_name_for(n))``
        around a get/set when Scala or Rust nodes update the same value under that lock.
        """
        return LOCK_PREFIX + ref_name

    def lock_stats(self) -> LockStats:
        """A copy of the lock counters of this context (grants, timeouts, releases, losses),
        for monitoring; `dref.raft.metrics.client_metrics(..., locks=ctx.lock_stats)`
        exports them."""
        return self._lock_counters.snapshot()

    def close(self) -> None:
        """Close open streams, stop callbacks, release held locks, close the backend.

        Idempotent.
        """
        with self._guard:
            if self._closed:
                return
            self._closed = True
            still_open, self._open = list(self._open), set()
        for item in still_open:
            if isinstance(item, Lock):
                item._abandon()
            else:
                cast(_Closeable, item).close()
        self._lease_keeper.close()
        self._backend.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- for DRef and Lock ---------------------------------------------------------------

    def _combiner(self, name: str) -> UpdateCombiner:
        """The one combiner of updates to `name` in this context (while any thread uses it)."""
        with self._guard:
            combiner = self._combiners.get(name)
            if combiner is None:
                combiner = self._combiners[name] = UpdateCombiner(name, self._open_backend)
            return combiner

    def _after_fork(self) -> None:
        """In a forked child, before anything else runs: fresh locks, the child's own
        backend, and its open change streams and subscriptions listening again."""
        self._guard = threading.Lock()
        self._combiners = weakref.WeakValueDictionary()
        self._lock_counters = LockCounters()  # a parent thread may have held the old one's lock
        self._lease_keeper = LeaseKeeper()  # its thread stayed in the parent, with its locks
        if self._closed:
            return
        inherited = self._backend
        self._inherited.append(inherited)
        self._backend = inherited.reopen_after_fork()
        still_open, self._open = self._open, set()
        for item in still_open:
            if isinstance(item, Subscription):
                item._restart(self._backend)
            elif isinstance(item, ChangeStream):
                item._reattach(self._backend)
            else:
                continue  # a lock the parent holds stays the parent's
            self._open.add(item)

    def _open_backend(self) -> Backend:
        if self._closed:
            raise ContextClosedError(self._closed_because)
        return self._backend

    def _track(self, item: object) -> None:
        with self._guard:
            if not self._closed:
                self._open.add(item)
                return
        if isinstance(item, Lock):  # closed while it was being acquired
            item._abandon()
        else:
            cast(_Closeable, item).close()

    def _untrack(self, item: object) -> None:
        with self._guard:
            self._open.discard(item)

    def _open_stream(
        self,
        name: str,
        decode: Callable[[bytes], T],
        timeout: float | None,
        buffer: int,
        after: int | None,
    ) -> ChangeStream[T]:
        stream = ChangeStream(
            self._open_backend(),
            name,
            decode,
            timeout=timeout,
            buffer=buffer,
            after=after,
            on_close=self._untrack,
        )
        self._track(stream)
        return stream

    def _open_subscription(
        self,
        name: str,
        decode: Callable[[bytes], T],
        callback: Callable[[Event[T]], object],
        buffer: int,
        after: int | None,
    ) -> Subscription[T]:
        stream = ChangeStream(self._open_backend(), name, decode, buffer=buffer, after=after)
        subscription = Subscription(stream, callback, on_cancel=self._untrack)
        self._track(subscription)
        return subscription


def _reopen_contexts_in_child() -> None:
    for context in list(_CONTEXTS):
        try:
            context._after_fork()
        except Exception as exc:  # noqa: BLE001 - the child goes on; calls name the cause
            _log.warning("a dref context is unusable in this forked child: %s", exc)
            context._closed = True
            context._closed_because = f"it could not be reopened after fork(): {exc}"


os.register_at_fork(after_in_child=_reopen_contexts_in_child)
