"""`Semaphore`: at most `limit` holders at once, across processes, with leases for the dead."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from types import TracebackType

from dref.backend import call_timeout
from dref.context import Context
from dref.errors import ConfigError, DRefError, LockStolenError, LockTimeoutError
from dref.recipes._waiting import NotYet, retry_on_change
from dref.ref import DRef

__all__ = ["DEFAULT_SEMAPHORE_TIMEOUT", "DEFAULT_SEMAPHORE_TTL", "Semaphore"]

DEFAULT_SEMAPHORE_TIMEOUT = 10.0
"""How long `acquire` waits unless told otherwise (seconds)."""

DEFAULT_SEMAPHORE_TTL = 10.0
"""Lease of a holder (seconds): how long a dead holder's slot stays taken."""

Leases = dict[str, int]
"""The shared state: holder key -> lease end, in milliseconds of the Unix epoch."""

_log = logging.getLogger("dref.recipes.semaphore")


def _now_ms() -> int:
    return int(time.time() * 1000)


class Semaphore:
    """A counting semaphore under `name`: one ref holding ``{holder: lease_end_ms}``, changed
    only by compare-and-set, with expired leases dropped by every change.

    Guarantee: at no moment does the ref list more than `limit` live leases, and `acquire`
    returns only after adding ours, so at most `limit` holders run at once as long as each
    renews its lease in time. A holder renews every ttl / 3 on a thread of its own; if it
    finds its lease gone (it expired: the process stalled longer than its TTL), `lost` is
    set, `on_lost()` runs once, and `release()` raises `LockStolenError`. A holder that dies
    frees its slot when its lease ends.

    Clocks: lease ends are wall-clock times written by the holder and judged by the other
    processes, so hosts' clocks must agree to well within the TTL (NTP does); a clock that
    runs ahead drops others' leases early. Like `Lock`, one object serves one holder at a
    time; create one object per thread.
    """

    def __init__(
        self,
        ctx: Context,
        name: str,
        limit: int,
        *,
        ttl: float = DEFAULT_SEMAPHORE_TTL,
        timeout: float = DEFAULT_SEMAPHORE_TIMEOUT,
        identity: str | None = None,
        on_lost: Callable[[], object] | None = None,
    ) -> None:
        if limit < 1 or not ttl > 0:
            raise ConfigError("a semaphore needs limit >= 1 and ttl > 0")
        self.name = name
        self.limit = limit
        self.ttl = ttl
        self.timeout = timeout
        """Default wait of `acquire`, in seconds."""
        self.identity = identity or "holder"
        """Prefix of this object's holder keys, to tell holders apart when debugging."""
        self.lost = threading.Event()
        """Set when a held slot is lost (its lease ran out); cleared by the next `acquire`."""
        self._on_lost = on_lost
        self._ref: DRef[Leases] = ctx.ref(name, {})
        self._key: str | None = None  # while held
        self._token = 0  # random part of the latest key, reported by LockStolenError
        self._lost_guard = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Semaphore({self.name!r}, {self.limit}, held={self._key is not None})"

    def holders(self) -> list[str]:
        """The keys of the live leases now (at most `limit`)."""
        now = _now_ms()
        return [key for key, end in self._ref.get().items() if end > now]

    def acquire(self, timeout: float | None = None) -> None:
        """Take a slot, waiting up to `timeout` s (default `self.timeout`) for one to free;
        `LockTimeoutError` if none did."""
        if self._key is not None:
            raise RuntimeError(f"{self!r} is held already; use one object per holder")
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        token = secrets.randbits(63)
        key = f"{self.identity}#{token:x}"

        def take(leases: Leases) -> tuple[None, Leases]:
            now = _now_ms()
            live = {k: end for k, end in leases.items() if end > now}
            if len(live) >= self.limit:
                raise NotYet((min(live.values()) - now) / 1000)  # when the first lease ends
            live[key] = now + int(self.ttl * 1000)
            return None, live

        def try_take() -> None:
            self._ref.modify(take, timeout=call_timeout(deadline))

        retry_on_change(self._ref, try_take, deadline, lambda: LockTimeoutError(self.name, limit))
        self.lost.clear()
        self._key, self._token = key, token
        self._stop.clear()
        self._renewer = threading.Thread(
            target=self._renew_loop, args=(key,), name=f"dref-semaphore:{self.name}", daemon=True
        )
        self._renewer.start()

    def release(self) -> None:
        """Give the slot back; `LockStolenError` if it had been lost while held."""
        key, self._key = self._key, None
        if key is None:
            raise RuntimeError(f"release of {self!r}, which is not held")
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(self.ttl)
        try:
            present = self._ref.modify(lambda leases: (key in leases, _without(leases, key)))
        except DRefError as e:
            _log.warning("could not release %s (its lease ends by TTL): %s", self, e)
            return
        if not present:
            self._report_lost(key)
        if self.lost.is_set():
            raise LockStolenError(self.name, self._token)

    def _renew_loop(self, key: str) -> None:
        """Push our lease end forward every ttl / 3 until released or lost."""
        period = self.ttl / 3
        lease_end = time.monotonic() + self.ttl
        while not self._stop.wait(period):
            try:
                held = self._ref.modify(lambda leases: _renewed(leases, key, self.ttl), period)
            except DRefError as e:
                _log.warning("renewal of %s failed: %s", self, e)
                if time.monotonic() < lease_end:
                    continue
                held = False
            if not held:
                self._report_lost(key)
                return
            lease_end = time.monotonic() + self.ttl

    def _report_lost(self, key: str) -> None:
        """Set `lost` and run `on_lost`, once per grant (the renewer and `release` may race)."""
        with self._lost_guard:
            if self.lost.is_set():
                return
            self.lost.set()
        _log.warning("%s lost slot %s: its lease ran out", self, key)
        if self._on_lost is not None:
            try:
                self._on_lost()
            except Exception:
                _log.exception("on_lost callback of %s failed", self)

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _without(leases: Leases, key: str) -> Leases:
    now = _now_ms()
    return {k: end for k, end in leases.items() if k != key and end > now}


def _renewed(leases: Leases, key: str, ttl: float) -> tuple[bool, Leases]:
    """(still ours?, the leases with ours pushed to now + ttl and expired ones dropped)."""
    now = _now_ms()
    live = {k: end for k, end in leases.items() if end > now}
    if key not in live:
        return False, live
    live[key] = now + int(ttl * 1000)
    return True, live
