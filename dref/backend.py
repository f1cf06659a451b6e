"""The byte-level contract every backend (local, Raft, Redis) implements.

Upstream's context contract (spec 1.2) extended with revisions: every write returns a
revision that only grows, and conditional writes compare against an `Entry` (value and
revision) so that updates are compare-and-set and lock release never deletes a lock that
someone else now holds. The backend-independent layer (`DRef`, `Lock`, change streams)
is written against this class only.
"""

from __future__ import annotations

import abc
import logging
import random
import time
from collections.abc import Callable

from dref.contracts.changes import (
    HISTORY_PAGE,
    ChangeEvent,
    ChangeKind,
    Entry,
    Listener,
    ListenerRegistry,
)
from dref.contracts.read_policy import ReadPolicyName, read_policy_name
from dref.errors import (
    ConfigError,
    DRefTimeoutError,
    LockTimeoutError,
    NotFoundError,
    ValueTooLargeError,
)
from dref.wire.encoded_int import add_to_encoded

__all__ = [
    "MIN_CALL_TIMEOUT",
    "Backend",
    "ChangeEvent",
    "ChangeKind",
    "Entry",
    "Listener",
    "ListenerRegistry",
    "ReadPolicyName",
    "call_timeout",
    "read_policy_name",
    "take_upstream_lock",
]


_log = logging.getLogger("dref")

DEFAULT_INCREMENT_TIMEOUT = 30.0
"""Seconds `Backend.increment` may take when given no timeout (as `DRef.modify`)."""
MIN_CALL_TIMEOUT = 1.0
"""Seconds a backend call made for a waiting caller gets at least, even when the caller's
own deadline is nearly up: a write cut short by its timeout may have happened anyway, which
is worse than an answer that comes a little late."""


def call_timeout(deadline: float) -> float:
    """The timeout of one backend call made before `deadline` (a time.monotonic value)."""
    return max(deadline - time.monotonic(), MIN_CALL_TIMEOUT)


def take_upstream_lock(
    backend: Backend, name: str, token: bytes, deadline: float, limit: float
) -> int:
    """Create upstream's modify lock ``lock:<name>`` holding `token` for `default_ttl`,
    trying again every 10-50 ms (upstream's Rust waiters poll every 50 ms) until `deadline`;
    returns the revision of the write, LockTimeoutError (naming `limit`) when time is up."""
    lock_name = "lock:" + name
    while True:
        revision = backend.set_if_absent(
            lock_name, token, backend.default_ttl, timeout=call_timeout(deadline)
        )
        if revision is not None:
            return revision
        pause = min(random.uniform(0.01, 0.05), deadline - time.monotonic())
        if pause <= 0:
            raise LockTimeoutError(lock_name, limit)
        time.sleep(pause)


class Backend(abc.ABC):
    """A byte-valued store keyed by name, with TTLs, revisions and change notifications.

    Every method is safe to call from any thread. `timeout` is in seconds; None means the
    backend's default operation timeout, never "wait forever". TTLs are in seconds; None
    means no expiry. A value whose TTL has passed is invisible at once, and its expiry is
    reported to listeners as a DELETE event.
    """

    default_ttl: float
    """Lease length used for locks, in seconds (upstream: local 5 s, Raft 10 s, Redis 20 s)."""

    max_value_size: int
    """Largest value in bytes that `set` accepts; larger raises ValueTooLargeError."""

    interop_locking: bool = False
    """Update values as upstream does (under the lock ``lock:<name>``) instead of by
    compare-and-set, for names that upstream nodes also update. See
    `modify_with_upstream_lock`."""

    def reopen_after_fork(self) -> Backend:
        """A backend with the same settings for a child process forked while this one was
        open: its own connections and threads, none of the parent's. Called in the child
        right after `fork()`; the parent's backend is then left untouched there (closing
        it would close connections the parent still uses)."""
        raise ConfigError(
            f"{type(self).__name__} cannot be used in a child process after fork():"
            " open the context after forking"
        )

    def check_value_size(self, name: str, value: bytes) -> None:
        """Raise ValueTooLargeError if `value` exceeds `max_value_size`."""
        if len(value) > self.max_value_size:
            raise ValueTooLargeError(name, len(value), self.max_value_size)

    def effective_ttl(self, ttl: float) -> float:
        """The lease the backend really grants for `ttl` (Redis: whole seconds, at least 1)."""
        return ttl

    def modify_with_upstream_lock(
        self, name: str, fn: Callable[[bytes | None], bytes], *, timeout: float | None = None
    ) -> int:
        """Upstream's `modify`: hold ``lock:<name>``, read, write `fn(old)`, release; returns
        the revision of the write. Only backends that offer `interop_locking` implement it."""
        raise NotImplementedError(f"{type(self).__name__} does not offer interop_locking")

    @abc.abstractmethod
    def set(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int:
        """Write unconditionally; returns the new revision. Emits SET."""

    @abc.abstractmethod
    def set_if_absent(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int | None:
        """Write only if `name` is absent; returns the new revision, or None if present."""

    @abc.abstractmethod
    def get(
        self, name: str, *, policy: ReadPolicyName = "linearizable", timeout: float | None = None
    ) -> Entry | None:
        """The current value and revision, or None if absent or expired; `policy` says how
        fresh (see `ReadPolicyName`)."""

    @abc.abstractmethod
    def delete(self, name: str, *, timeout: float | None = None) -> int:
        """Delete unconditionally (even if absent); returns the revision. Emits DELETE."""

    @abc.abstractmethod
    def compare_and_set(
        self,
        name: str,
        expected: Entry | None,
        value: bytes,
        ttl: float | None = None,
        *,
        timeout: float | None = None,
    ) -> int | None:
        """Write only if the current entry is `expected` (None: only if absent).

        Returns the new revision, or None when the current entry differs.
        """

    @abc.abstractmethod
    def compare_and_delete(
        self, name: str, expected: Entry, *, timeout: float | None = None
    ) -> bool:
        """Delete only if the current entry is `expected`; True if it deleted."""

    @abc.abstractmethod
    def expire(
        self,
        name: str,
        ttl: float,
        *,
        expected: Entry | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Re-arm the expiry of `name` to now + ttl (keep-alive); does not change revision.

        With `expected`, only if the current entry is `expected`. True if it re-armed.
        """

    def increment(
        self, name: str, delta: int, fmt: str, *, timeout: float | None = None
    ) -> tuple[int, int]:
        """Add `delta` to the integer stored under `name`, encoded as `fmt` ("msgpack" or
        "json"), as one write; returns (new value, revision). The new value has no TTL.
        Raises NotFoundError if absent, CodecError if it is not an integer. This default
        retries a compare-and-set; backends that can add in one step override it."""
        deadline = time.monotonic() + (DEFAULT_INCREMENT_TIMEOUT if timeout is None else timeout)
        while True:
            entry = self.get(name, timeout=call_timeout(deadline))
            if entry is None:
                raise NotFoundError(name)
            number, value = add_to_encoded(name, entry.value, delta, fmt)
            revision = self.compare_and_set(name, entry, value, timeout=call_timeout(deadline))
            if revision is not None:
                return number, revision
            if time.monotonic() >= deadline:
                raise DRefTimeoutError(f"increment of {name} lost every compare-and-set")

    @abc.abstractmethod
    def subscribe(
        self,
        name: str,
        listener: Listener,
        *,
        timeout: float | None = None,
        sees_own_writes: bool = True,
    ) -> Callable[[], None]:
        """Deliver every later change of `name` to `listener`, in revision order.

        Waits up to `timeout` seconds (None: the backend's timeout) for the subscription to
        be in place on the server; past that it returns anyway, and changes arrive once the
        backend is reachable, after a resync. With `sees_own_writes` (the default) a write
        made through this backend returns only once its event reached `listener`, where
        the backend must wait for that; False spares the wait (a lock's own listener needs
        no such guarantee). Returns a function that cancels the subscription.
        """

    @abc.abstractmethod
    def history(
        self, name: str, after: int, *, limit: int = HISTORY_PAGE, timeout: float | None = None
    ) -> list[ChangeEvent]:
        """The kept changes of `name` with a revision above `after`, oldest first, at most
        `limit` of them (ask again after the last one for more; an empty list means none
        yet). Raises CompactedError when changes after `after` are no longer all kept."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and stop background threads. Idempotent."""
