"""`Election`: one leader at a time among many candidates, with fencing and loss callbacks."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from dref.backend import call_timeout
from dref.changes import Event
from dref.context import Context
from dref.errors import DRefError, DRefTimeoutError, LockTimeoutError
from dref.lock import DEFAULT_LOCK_TIMEOUT
from dref.ref import DRef

__all__ = ["Election", "LeaderChanges", "LeaderWatch"]

_log = logging.getLogger("dref.recipes.election")

Info = dict[str, Any]
"""What the leader publishes: {"identity": str, "fence": its fencing token}."""

_NOBODY: Info = {"identity": "", "fence": 0}


class _RawBytes:
    """The codec of a handle that only watches the lock's name: its value stays bytes."""

    def encode(self, value: bytes) -> bytes:
        return value

    def decode(self, data: bytes) -> bytes:
        return bytes(data)


class Election:
    """Candidates named `identity` compete for the lock `name`; its holder leads.

    Guarantee: leadership is a grant of the lock, so at most one candidate believes it leads
    while leases are honoured, and `fencing_token` strictly increases from one leadership to
    the next: pass it to what the leader writes to, so a paused former leader is refused.
    A leader whose lease is lost (stalled past its TTL, or its lock deleted) is told:
    `lost` is set and `on_lost()` runs once. `leader()` names the current leader by reading
    the lock's revision and the identity published under ``<name>:leader`` for that
    revision; it is None while nobody leads or a new leader has not yet published itself.
    One object is one candidate; create one per thread that campaigns.
    """

    def __init__(
        self,
        ctx: Context,
        name: str,
        identity: str,
        *,
        ttl: float | None = None,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        on_lost: Callable[[], object] | None = None,
    ) -> None:
        self.name = name
        self.identity = identity
        self.timeout = timeout
        """Default wait of `campaign`, in seconds."""
        self._lock = ctx.lock(name, ttl=ttl, timeout=timeout, on_lost=on_lost)
        self.lost: threading.Event = self._lock.lost
        """Set when leadership is lost without `resign`; cleared by the next `campaign`."""
        self._lock_ref = DRef(ctx, name, _RawBytes())  # reads and watches, never writes
        self._info = ctx.ref(f"{name}:leader", dict(_NOBODY))

    def __repr__(self) -> str:
        return f"Election({self.name!r}, {self.identity!r}, leading={self.is_leader()})"

    @property
    def ttl(self) -> float:
        """The leadership lease (seconds): how long a dead leader keeps others waiting."""
        return self._lock.ttl

    @property
    def fencing_token(self) -> int:
        """The token of this candidate's latest leadership (strictly increasing)."""
        return self._lock.fencing_token

    def is_leader(self) -> bool:
        """True while this candidate leads and has not lost the lease."""
        return self._lock.locked() and not self.lost.is_set()

    def campaign(self, timeout: float | None = None) -> int:
        """Block until this candidate leads; returns the fencing token.

        `LockTimeoutError` if it does not lead within `timeout` s (default `self.timeout`).
        """
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        if not self._lock.acquire(timeout=limit):
            raise LockTimeoutError(self.name, limit)
        fence = self._lock.fencing_token
        mine = {"identity": self.identity, "fence": fence}

        def publish(info: Info) -> Info:
            """Ours while the lock still holds our grant; a successor's record stays."""
            return mine if self._lock_ref.revision() == fence else info

        try:
            self._info.update(publish, timeout=call_timeout(deadline))
        except BaseException:
            self._step_down_quietly()
            raise
        return fence

    def _step_down_quietly(self) -> None:
        try:
            self._lock.release()
        except DRefError as e:
            _log.warning("%r could not step down after a failed campaign: %s", self, e)

    def resign(self) -> None:
        """Stop leading; `LockStolenError` if leadership had been lost meanwhile."""
        self._lock.release()

    def leader(self) -> str | None:
        """The identity of the current leader, or None."""
        fence = self._lock_ref.revision()
        if fence is None:
            return None
        info = self._info.get()
        return str(info["identity"]) if info["fence"] == fence else None

    def on_leader_change(self, callback: Callable[[str | None], object]) -> LeaderWatch:
        """Call `callback(leader)` with the current leader, then after every change of
        leader (None while there is none), on a thread of its own; `cancel()` the result."""
        return LeaderWatch(self, callback)

    def observe(self, timeout: float | None = None) -> LeaderChanges:
        """The current leader, then each new one, as an iterator that ends after `timeout` s
        (default `self.timeout`) without a change; close it (or use `with`) when done."""
        return LeaderChanges(self, self.timeout if timeout is None else timeout)

    def __enter__(self) -> Election:
        self.campaign()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.resign()

    def _watch(self, changed: Callable[[Event[Any]], object]) -> list[Callable[[], None]]:
        """Subscribe `changed` to the lock and the published record; the cancel functions."""
        return [self._lock_ref.on_change(changed).cancel, self._info.on_change(changed).cancel]


class LeaderWatch:
    """Calls a callback with each new leader of an election (see `on_leader_change`)."""

    def __init__(self, election: Election, callback: Callable[[str | None], object]) -> None:
        self._election = election
        self._callback = callback
        self._guard = threading.Lock()  # one check (and callback) at a time
        self._reported: list[str | None] = []  # the last leader reported, once there is one
        self._cancels = election._watch(lambda _event: self._check())
        self._check()

    def cancel(self) -> None:
        """Stop calling the callback."""
        for cancel in self._cancels:
            cancel()

    def __enter__(self) -> LeaderWatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()

    def _check(self) -> None:
        """Read the leader (after every change, so the last read is current) and report it
        if it differs from the last one reported."""
        with self._guard:
            try:
                leader = self._election.leader()
            except DRefError as e:
                _log.warning("could not read the leader of %s: %s", self._election.name, e)
                return
            if self._reported == [leader]:
                return
            self._reported = [leader]
            try:
                self._callback(leader)
            except Exception:
                _log.exception("leader callback of %s failed", self._election.name)


class LeaderChanges:
    """Iterator over an election's leaders (see `Election.observe`)."""

    def __init__(self, election: Election, timeout: float) -> None:
        self.timeout = timeout
        self._name = election.name
        self._leaders: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._watch = LeaderWatch(election, self._leaders.put)

    def get(self, timeout: float | None = None) -> str | None:
        """The next leader (None: nobody leads); `DRefTimeoutError` after `timeout` s."""
        limit = self.timeout if timeout is None else timeout
        try:
            return self._leaders.get(timeout=limit)
        except queue.Empty:
            raise DRefTimeoutError(f"no change of leader of {self._name} in {limit:g} s") from None

    def __iter__(self) -> Iterator[str | None]:
        return self

    def __next__(self) -> str | None:
        try:
            return self.get()
        except DRefTimeoutError:
            raise StopIteration from None

    def close(self) -> None:
        """Stop watching."""
        self._watch.cancel()

    def __enter__(self) -> LeaderChanges:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
