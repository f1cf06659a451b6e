"""Cluster-wide locks with fencing tokens, acquired the way upstream DRef does (spec 1.4).

Acquire: write a random 8-byte token at the lock's name with create-if-absent and a TTL
(the lease). If the name is taken, subscribe to it, try again at once (so a release between
the first try and the subscription is not missed), then wait for its DELETE event (release
or expiry) before each further try. A slow safety-net retry (`retry_interval`) covers
backends that can lose events. When a leader change leaves the create's outcome unknown,
a read tells: our token there means we hold the lock (no lease is left behind to expire
on its own), anything else means try again.
A backend that fails or does not answer is tried again until the acquisition's deadline,
so running out of time is always a timeout; a create still unsettled then, and a release
whose outcome is unknown, are taken back by a background thread once the backend answers.
Closing the context fails waiting acquisitions at once (see `_Grant`).

While held, the context's one `LeaseKeeper` thread re-arms the lease every 0.8 x TTL with
a *conditional* expire, and a listener watches the name: a change that is not ours (a
delete, an expiry, another holder's write) or a failed keep-alive means the lock is lost.
Then `lock.lost` is set, `on_lost()` is called once (on a thread of its own, or in
`release()` when the loss is only found there), and leaving the `with` block raises
`LockStolenError`, even when the body succeeded. The body itself is not interrupted
(synchronous Python cannot do that safely): long bodies should check `lock.lost` between
steps. Release is a compare-and-delete, so it never removes a lock someone else now holds
(upstream deletes unconditionally, 7.23).

A lock that was free when asked for is watched only once held `WATCH_AFTER` seconds: then
its listener subscribes and the name is read once, for a change made before that. Every
write of a watched name costs a trip through the backend's event reader (on Redis, about as
much client CPU as the acquire and release themselves), and a lock released sooner is
checked by its release, a compare-and-delete that fails on any change since the grant; so
a loss in those first moments is reported when they end, or by the release.

`lock.fencing_token` is the revision of the acquiring write. Revisions only grow, so
tokens strictly increase across grants of one lock: hand it to the storage you protect
and let it refuse writes carrying an older token.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from dref.backend import MIN_CALL_TIMEOUT, Backend, ChangeEvent, ChangeKind, Entry
from dref.contracts.lock_stats import LockStats
from dref.errors import (
    BackendUnavailableError,
    ConfigError,
    ContextClosedError,
    DRefError,
    DRefTimeoutError,
    LockStolenError,
    LockTimeoutError,
    NoQuorumError,
)
from dref.wire.lock_token import encode_lock_token, new_lock_token

if TYPE_CHECKING:
    from dref.context import Context

__all__ = ["DEFAULT_LOCK_TIMEOUT", "Lock", "LockCounters"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_LOCK_TIMEOUT = 10.0
"""Default acquisition timeout in seconds."""

CLOSE_GRACE = 2.0
"""Seconds a closing context waits for an acquisition whose write is in flight, so that a
write which lands is undone before the backend closes (else its lease ends by TTL)."""

WATCH_AFTER = 0.05
"""Seconds a lock acquired without waiting is held before its listener subscribes; a loss
in that time is found then (or by the release, if that comes first)."""

_UNANSWERED = (DRefTimeoutError, BackendUnavailableError)
"""Backend failures after which a write may or may not have been applied."""


_log = logging.getLogger("dref.lock")


class LockCounters:
    """The `LockStats` of one context's locks, counted as they are granted, given up,
    released and lost (rare events: a plain lock keeps it thread-safe)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._stats = LockStats()

    def snapshot(self) -> LockStats:
        """A copy of the counters now."""
        with self._guard:
            return dataclasses.replace(self._stats)

    def granted(self) -> None:
        """An acquisition succeeded."""
        with self._guard:
            self._stats.grants += 1

    def timed_out(self) -> None:
        """An acquisition gave up (timed out, or a non-blocking try)."""
        with self._guard:
            self._stats.timeouts += 1

    def released(self) -> None:
        """The holder released a lock."""
        with self._guard:
            self._stats.releases += 1

    def lost(self) -> None:
        """A held lock was lost (reported once per grant)."""
        with self._guard:
            self._stats.losses += 1


class Lock:
    """A lock on `name`, shared by every process using the same backend.

    Use it as ``with ctx.lock("name") as lock:``, as a decorator ``@ctx.lock("name")``
    (each call takes the lock afresh, so decorated functions may run on many threads),
    or with `acquire()` / `release()` like `threading.Lock`. A `Lock` object is **not
    re-entrant** and serves one holder at a time: acquiring it again while held raises
    `RuntimeError`; create one object per thread that needs the lock.
    """

    def __init__(
        self,
        context: Context,
        name: str,
        *,
        ttl: float | None = None,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        on_lost: Callable[[], object] | None = None,
        retry_interval: float | None = None,
    ) -> None:
        lease = context.backend.default_ttl if ttl is None else ttl
        if lease > 0:
            lease = context.backend.effective_ttl(lease)
        if not lease > 0 or not timeout >= 0:
            raise ConfigError("a lock needs ttl > 0 and timeout >= 0")
        if retry_interval is not None and not retry_interval > 0:
            raise ConfigError("retry_interval must be positive")
        self._context = context
        self.name = name
        self.ttl: float = lease
        """Lease length in seconds as the backend grants it; re-armed every 0.8 x ttl."""
        self.timeout = timeout
        """Default acquisition timeout in seconds."""
        self.retry_interval: float = (
            max(1.0, lease / 2) if retry_interval is None else retry_interval
        )
        """Safety-net retry period while waiting, for backends that may lose events."""
        self.lost = threading.Event()
        """Set when the lock is lost while held; cleared by the next acquisition."""
        self._on_lost = on_lost
        self._guard = threading.Lock()
        self._grant: _Grant | None = None  # set while held
        self._busy = False  # acquiring or held
        self._token: int | None = None
        self._fencing_token: int | None = None

    def __repr__(self) -> str:
        return f"Lock({self.name!r}, held={self.locked()})"

    @property
    def fencing_token(self) -> int:
        """Revision of the write that granted the lock (the latest grant, if released)."""
        if self._fencing_token is None:
            raise RuntimeError(f"lock {self.name} has not been acquired")
        return self._fencing_token

    @property
    def token(self) -> int:
        """The random signed 64-bit value stored while held (upstream's lock value)."""
        if self._token is None:
            raise RuntimeError(f"lock {self.name} has not been acquired")
        return self._token

    def locked(self) -> bool:
        """True while this object holds the lock (even if it has been lost meanwhile)."""
        return self._grant is not None

    def acquire(self, blocking: bool = True, timeout: float | None = -1) -> bool:
        """Take the lock; True if taken, False if `timeout` s passed (as `threading.Lock`).

        `timeout` -1 or None means the lock's own timeout; `blocking=False` tries once.
        """
        limit = self.timeout if timeout is None or timeout < 0 else timeout
        if not blocking:
            limit = 0.0
        with self._guard:
            if self._busy:
                raise RuntimeError(f"lock {self.name} is already held by this object")
            self._busy = True
        grant: _Grant | None = None
        try:
            self.lost.clear()
            deadline = time.monotonic() + limit
            grant = _Grant(self, self._context._open_backend(), new_lock_token(), deadline)
            self._context._track(grant)  # while it waits, closing the context fails it
            revision = grant.acquire()
            if revision is not None and self._context.closed:  # closed while our write flew
                grant.withdraw()
                self._context._open_backend()  # raises ContextClosedError
        except BaseException:
            self._give_up(grant)
            raise
        if revision is None:
            self._give_up(grant)
            self._context._lock_counters.timed_out()
            return False
        self._context._lock_counters.granted()
        self._token, self._fencing_token = grant.token, revision
        with self._guard:
            self._grant = grant
        grant.start_keep_alive()
        self._context._track(self)
        self._context._untrack(grant)
        grant.settled.set()
        return True

    def release(self) -> None:
        """Give the lock up; raises `LockStolenError` if it was lost while held.

        Other release failures (backend unreachable) are logged: the lease then ends by TTL.
        """
        with self._guard:
            grant, self._grant = self._grant, None
            if grant is None:
                raise RuntimeError(f"release of lock {self.name}, which this object does not hold")
            self._busy = False
        self._context._untrack(self)
        self._context._lock_counters.released()
        grant.finish()
        if self.lost.is_set():
            raise LockStolenError(self.name, grant.token)

    def __enter__(self) -> Lock:
        if not self.acquire(timeout=self.timeout):
            raise LockTimeoutError(self.name, self.timeout)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.release()
        except LockStolenError as stolen:
            if exc is not None:
                raise stolen from exc
            raise

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate `fn` so each call runs while holding a fresh lock on this name."""

        @functools.wraps(fn)
        def locked_call(*args: P.args, **kwargs: P.kwargs) -> R:
            with self._fresh():
                return fn(*args, **kwargs)

        return locked_call

    def _fresh(self) -> Lock:
        return Lock(
            self._context,
            self.name,
            ttl=self.ttl,
            timeout=self.timeout,
            on_lost=self._on_lost,
            retry_interval=self.retry_interval,
        )

    def _give_up(self, grant: _Grant | None) -> None:
        """Undo a failed acquisition."""
        if grant is not None:
            grant.cancel_subscription()
            self._context._untrack(grant)
            grant.settled.set()
        with self._guard:
            self._busy = False

    def _abandon(self) -> None:
        """Release on context close: the holder, no longer protected, sees a loss."""
        with self._guard:
            grant = self._grant
        if grant is not None:
            grant.finish()
            grant.mark_lost()
            grant.report_lost()

    def _lost(self) -> None:
        """Called once per grant when it is lost."""
        self._context._lock_counters.lost()
        self.lost.set()
        if self._on_lost is not None:
            try:
                self._on_lost()
            except Exception:
                _log.exception("on_lost callback of lock %s failed", self.name)


class _Grant:
    """One acquisition of a lock: its subscription, its token and its keep-alive thread.

    While it waits, its context tracks it: `close()` fails it at once, after letting a
    write in flight come back (`settled`) so that it can be undone."""

    def __init__(self, lock: Lock, backend: Backend, token: int, deadline: float) -> None:
        self.lock = lock
        self.backend = backend
        self.token = token
        self.data = encode_lock_token(token)
        self.entry: Entry | None = None  # set once granted
        self._state = threading.Lock()
        self._highest_seen = 0  # highest event revision seen so far
        self._suspect = False  # an event without revision needs checking against the store
        self._lost = False
        self._lost_reported = False
        self._finished = False
        self._freed = threading.Event()  # while waiting: the name may be free now
        self._keeper = lock._context._lease_keeper
        self._last_renewed = 0.0  # monotonic time of the last re-arm that succeeded
        self._renew_at = 0.0  # monotonic time the next re-arm is due
        self._watch_at = 0.0  # monotonic time an unwatched grant subscribes (WATCH_AFTER)
        self._cancel: Callable[[], None] | None = None  # ends the subscription, once made
        limit = max(deadline - time.monotonic(), 0.0)
        self._deadline = deadline
        self._acquirer = threading.current_thread()
        self.settled = threading.Event()
        """Set once the acquisition returned or failed (`close` waits for it)."""
        self._maybe_ours = False  # a create whose outcome is unknown may have been applied
        self._shortest_call = MIN_CALL_TIMEOUT if limit == 0 else 0.05
        """A try-once acquisition gives its one call the usual minimum; a timed one keeps
        every call within its time."""

    def acquire(self) -> int | None:
        """Try until granted (returns the revision) or the deadline passes (None), whatever
        the backend does meanwhile (refuse, fail, not answer); ContextClosedError at once
        when the context closes."""
        deadline = self._deadline
        lock = self.lock
        while True:
            lock._context._open_backend()  # raises ContextClosedError once it closed
            self._freed.clear()
            revision = self._try_create(deadline)
            if revision is not None:
                with self._state:
                    self.entry = Entry(self.data, revision)
                    if self._highest_seen > revision:  # changed between our write and now
                        self._lost = True
                        lock.lost.set()
                return revision
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if self._maybe_ours:  # it may still land: take it back when it does
                    self._withdraw_later()
                return None
            if self._cancel is None:  # listen for the release, then try again at once
                self._subscribe(min(remaining / 2, MIN_CALL_TIMEOUT))
                continue
            self._freed.wait(min(remaining, lock.retry_interval))

    def _subscribe(self, timeout: float) -> bool:
        """Deliver the name's changes to `_on_event` from now on, waiting up to `timeout`
        for a backend that does not answer (the subscription resyncs when it does). False
        if the grant finished meanwhile (then nothing stays subscribed)."""
        cancel = self.backend.subscribe(
            self.lock.name,
            self._on_event,
            timeout=timeout,
            sees_own_writes=False,  # our own grant needs no event before we hold it
        )
        with self._state:
            if not self._finished:
                self._cancel = cancel
                return True
        cancel()
        return False

    def _call_timeout(self, deadline: float) -> float:
        return max(deadline - time.monotonic(), self._shortest_call)

    def _try_create(self, deadline: float) -> int | None:
        """One create-if-absent: the revision of our write, or None (the name is taken, or
        the backend failed or did not answer: the caller tries again until its deadline)."""
        lock = self.lock
        try:
            revision = self.backend.set_if_absent(
                lock.name, self.data, lock.ttl, timeout=self._call_timeout(deadline)
            )
        except NoQuorumError as exc:  # no leader applied it
            _log.debug("lock %s: no quorum, trying again: %s", lock.name, exc)
            return None
        except _UNANSWERED as exc:
            _log.debug("lock %s: create unanswered, checking: %s", lock.name, exc)
            self._maybe_ours = True
        else:
            if revision is not None or not self._maybe_ours:
                return revision
        return self._ours_after_unknown_outcome(deadline)

    def _ours_after_unknown_outcome(self, deadline: float) -> int | None:
        """After a create whose outcome is unknown (the leader changed under it): the
        revision of our write if the name holds our token, else None. The token is random,
        so a match is our own write; and a linearizable read served in a later term has
        settled every entry of earlier terms, so a miss means the write never happens."""
        try:
            entry = self.backend.get(self.lock.name, timeout=self._call_timeout(deadline))
        except _UNANSWERED as exc:
            _log.debug("lock %s: could not check our create yet: %s", self.lock.name, exc)
            return None
        if entry is not None and entry.value == self.data:
            return entry.revision
        self._maybe_ours = False
        return None

    def close(self) -> None:
        """The context is closing: fail this acquisition at once, and let a write in flight
        come back first (up to CLOSE_GRACE seconds) so that it can be undone."""
        self._freed.set()
        if threading.current_thread() is not self._acquirer:
            self.settled.wait(CLOSE_GRACE)

    def withdraw(self) -> None:
        """Delete our entry now (a grant its context no longer wants); later if that fails."""
        assert self.entry is not None
        try:
            self._delete_if_ours(self.entry)
        except DRefError:
            self._withdraw_later()

    def _withdraw_later(self) -> None:
        """Delete our token from the name once it appears there, trying for one lease: a
        write or release whose outcome is unknown leaves no lease to linger until its TTL."""
        threading.Thread(
            target=self._withdraw, name=f"dref-lock-withdraw:{self.lock.name}", daemon=True
        ).start()

    def _withdraw(self) -> None:
        lock = self.lock
        give_up = time.monotonic() + lock.ttl + MIN_CALL_TIMEOUT
        pause = threading.Event()
        while time.monotonic() < give_up:
            try:
                entry = self.backend.get(lock.name, timeout=MIN_CALL_TIMEOUT)
                if entry is None or entry.value != self.data:
                    return  # never landed, expired, or someone else's now
                if self.backend.compare_and_delete(lock.name, entry, timeout=MIN_CALL_TIMEOUT):
                    return
            except ContextClosedError:
                return
            except DRefError as exc:
                _log.debug("lock %s: withdrawal not done yet: %s", lock.name, exc)
            pause.wait(min(lock.ttl / 10, 0.5))  # a backoff between tries, not a sync
        _log.warning("lock %s: could not withdraw our token; its lease ends by TTL", lock.name)

    def start_keep_alive(self) -> None:
        """Hand the lease to the context's keeper: re-armed every 0.8 x ttl from now, and
        watched from WATCH_AFTER on if it is not yet."""
        self._last_renewed = time.monotonic()
        self._renew_at = self._last_renewed + 0.8 * self.lock.ttl
        self._watch_at = self._last_renewed + WATCH_AFTER
        self._keeper.keep(self, self._next_look())

    def _next_look(self) -> float:
        if self._cancel is None:
            return min(self._renew_at, self._watch_at)
        return self._renew_at

    def cancel_subscription(self) -> None:
        with self._state:
            cancel, self._cancel = self._cancel, None
        if cancel is not None:
            cancel()

    def mark_lost(self) -> None:
        with self._state:
            self._lost = True
        self.lock.lost.set()

    def finish(self) -> None:
        """Stop the keep-alive and the listener; delete the lock if it is still ours. A
        re-arm still running then finds the lease gone and, the grant finished, says
        nothing."""
        with self._state:
            if self._finished:
                return
            self._finished = True
            cancel, self._cancel = self._cancel, None
        self._keeper.drop(self)  # no re-arm from now on
        if cancel is not None:
            cancel()
        assert self.entry is not None
        if not self._lost:
            try:
                deleted = self._delete_if_ours(self.entry)
            except ContextClosedError as e:
                name = self.lock.name
                _log.warning("could not release lock %s (its lease ends by TTL): %s", name, e)
            except DRefError as e:
                _log.info("release of lock %s unanswered; retrying it: %s", self.lock.name, e)
                self._withdraw_later()
            else:
                if not deleted:  # the lease ran out and maybe someone else holds it now
                    self._lost = True
        self.report_lost()

    def _delete_if_ours(self, entry: Entry) -> bool:
        """Compare-and-delete our entry; False if the name no longer held it. A delete whose
        outcome is unknown (the leader changed under it) is settled by a read: our entry
        still there is deleted again; anything else means the lease is gone already."""
        try:
            return self.backend.compare_and_delete(self.lock.name, entry)
        except _UNANSWERED:
            if self.backend.get(self.lock.name) != entry:
                return True
            return self.backend.compare_and_delete(self.lock.name, entry)

    def _on_event(self, event: ChangeEvent) -> None:
        """Backend listener (must not block): wake waiters, detect loss while held."""
        ours = event.kind is ChangeKind.SET and event.value == self.data
        with self._state:
            if self.entry is None:
                self._highest_seen = max(self._highest_seen, event.revision)
                if event.kind is ChangeKind.DELETE or event.revision == 0:
                    self._freed.set()
                return
            if event.revision == 0:  # no revision (synthetic or foreign): verify
                if ours:
                    return
                self._suspect = True
            elif event.revision > self.entry.revision:
                self._lost = True
                self.lock.lost.set()
            else:
                return  # our own write, or older than it
        self._keeper.wake(self)

    def tick(self, now: float) -> float | None:
        """One look from the context's `LeaseKeeper`: re-arm the lease when due, or check
        it after a suspicious event; notice and report a loss. Returns when to look next,
        None once the grant is lost or finished."""
        lock = self.lock
        if self._cancel is None and now >= self._watch_at and not self._lost:
            self._watch(now)
        with self._state:
            ended = self._lost or self._finished
            suspect, self._suspect = self._suspect, False
        if not ended and (suspect or now >= self._renew_at):
            renewed = self._renew()
            if renewed is False or (renewed is None and now - self._last_renewed >= lock.ttl):
                with self._state:  # a release that finished meanwhile is not a loss
                    if not self._finished:
                        self._lost = True
                        lock.lost.set()
                ended = True
            elif renewed:
                self._last_renewed, self._renew_at = now, now + 0.8 * lock.ttl
            else:  # backend trouble: try again sooner
                self._renew_at = now + min(0.8 * lock.ttl, lock.ttl / 10)
        if not ended:
            return self._next_look()
        if self._lost and not self._lost_reported:  # on_lost() is the user's code: its own thread
            threading.Thread(
                target=self.report_lost, name=f"dref-lock-lost:{lock.name}", daemon=True
            ).start()
        return None

    def _watch(self, now: float) -> None:
        """Held for WATCH_AFTER: subscribe (waiting at most MIN_CALL_TIMEOUT for a backend
        that does not answer: the subscription resyncs once it does), then read the name
        once, since a change made between the grant and the subscription sent its event to
        nobody. A subscription that fails is tried again later; a read that fails leaves
        the check to a conditional re-arm at once, as after a suspicious event."""
        try:
            if not self._subscribe(MIN_CALL_TIMEOUT):
                return  # released meanwhile
        except DRefError as e:
            _log.warning("lock %s: cannot watch for its loss yet: %s", self.lock.name, e)
            self._watch_at = now + WATCH_AFTER
            return
        try:
            current = self.backend.get(self.lock.name, timeout=self.lock.ttl * 0.4)
        except DRefError as e:
            _log.debug("lock %s: could not read it to start watching: %s", self.lock.name, e)
            current = self.entry
            with self._state:
                self._suspect = True
        if current != self.entry:
            with self._state:  # a release that finished meanwhile is not a loss
                if self._finished:
                    return
                self._lost = True
            self.lock.lost.set()

    def _renew(self) -> bool | None:
        """True if re-armed, False if the lock is no longer ours, None if the call failed."""
        assert self.entry is not None
        try:
            return self.backend.expire(
                self.lock.name, self.lock.ttl, expected=self.entry, timeout=self.lock.ttl * 0.4
            )
        except DRefError as e:
            _log.warning("keep-alive of lock %s failed: %s", self.lock.name, e)
            return None

    def report_lost(self) -> None:
        """Tell the lock, once, that this grant was lost."""
        with self._state:
            if not self._lost or self._lost_reported:
                return
            self._lost_reported = True
        self.lock._lost()
