"""`Barrier` (wait until someone lifts it) and `DoubleBarrier` (start together, end together)."""

from __future__ import annotations

import time
import uuid
from types import TracebackType
from typing import Any

from dref.backend import call_timeout
from dref.context import Context
from dref.errors import ConfigError, DRefTimeoutError
from dref.recipes._waiting import NotYet, retry_on_change

__all__ = ["DEFAULT_BARRIER_TIMEOUT", "Barrier", "DoubleBarrier"]

DEFAULT_BARRIER_TIMEOUT = 10.0
"""How long a barrier call waits unless told otherwise (seconds)."""

State = dict[str, Any]


class Barrier:
    """A gate under `name` that one party raises (`create`) and lifts (`remove`) while any
    number of others `wait` for it to be lifted.

    Guarantee: `wait` returns only when it has seen the barrier down (never raised, or
    removed since), and every waiter returns after a `remove` unless the barrier was raised
    again before it looked (a waiter checks the value it reads, not the history).
    """

    def __init__(
        self, ctx: Context, name: str, *, timeout: float = DEFAULT_BARRIER_TIMEOUT
    ) -> None:
        self.name = name
        self.timeout = timeout
        """Default wait of `wait`, in seconds."""
        self._ref = ctx.ref(name, False)

    def __repr__(self) -> str:
        return f"Barrier({self.name!r})"

    def create(self) -> None:
        """Raise the barrier: later `wait` calls block until `remove`."""
        self._ref.set(True)

    def remove(self) -> None:
        """Lift the barrier: every waiter returns."""
        self._ref.set(False)

    def raised(self) -> bool:
        """True while the barrier stands."""
        return bool(self._ref.get_or(False))

    def wait(self, timeout: float | None = None) -> None:
        """Block until the barrier is down; `DRefTimeoutError` after `timeout` s (default
        `self.timeout`) if it still stands."""
        limit = self.timeout if timeout is None else timeout

        def down() -> None:
            if self.raised():
                raise NotYet()

        def timed_out() -> DRefTimeoutError:
            return DRefTimeoutError(f"barrier {self.name} still up after {limit:g} s")

        retry_on_change(self._ref, down, time.monotonic() + limit, timed_out)


class DoubleBarrier:
    """`count` participants `enter` together and `leave` together, round after round.

    Guarantee: `enter` returns once `count` participants have entered the current round
    (later ones pass at once), and `leave` returns once every participant that entered the
    round has left; the last one out starts the next round. A participant that gives up
    entering at its timeout is withdrawn, so it is not counted. There are no leases: a
    participant that dies inside a round holds the others until their timeouts.
    """

    def __init__(
        self,
        ctx: Context,
        name: str,
        count: int,
        *,
        identity: str | None = None,
        timeout: float = DEFAULT_BARRIER_TIMEOUT,
    ) -> None:
        if count < 1:
            raise ConfigError("a double barrier needs count >= 1")
        self.name = name
        self.count = count
        self.identity = identity or uuid.uuid4().hex
        """This participant's name in the shared state (unique per participant)."""
        self.timeout = timeout
        """Default wait of `enter` and `leave`, in seconds."""
        self._ref = ctx.ref(name, {"round": 0, "members": [], "ready": False})
        self._round: int | None = None  # the round entered, until left

    def __repr__(self) -> str:
        return f"DoubleBarrier({self.name!r}, {self.count}, identity={self.identity!r})"

    def enter(self, timeout: float | None = None) -> None:
        """Join the round and block until `count` participants have joined it;
        `DRefTimeoutError` (after withdrawing) if they do not within `timeout` s."""
        if self._round is not None:
            raise RuntimeError(f"{self!r} has entered already")
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit

        def join(state: State) -> tuple[int, State]:
            members = list(state["members"])
            if self.identity not in members:
                members.append(self.identity)
            ready = bool(state["ready"]) or len(members) >= self.count
            return state["round"], {"round": state["round"], "members": members, "ready": ready}

        joined = self._ref.modify(join, timeout=call_timeout(deadline))

        def opened() -> None:
            state = self._ref.get(timeout=call_timeout(deadline))
            if state["round"] == joined and not state["ready"]:
                raise NotYet()

        def timed_out() -> DRefTimeoutError:
            return DRefTimeoutError(
                f"double barrier {self.name}: fewer than {self.count} entered in {limit:g} s"
            )

        try:
            retry_on_change(self._ref, opened, deadline, timed_out)
        except DRefTimeoutError:
            if self._withdraw(joined):
                raise
        self._round = joined

    def _withdraw(self, joined: int) -> bool:
        """Leave a round that has not opened; False if it opened meanwhile (we are in)."""

        def step(state: State) -> tuple[bool, State]:
            if state["round"] != joined or state["ready"]:
                return False, state
            members = [m for m in state["members"] if m != self.identity]
            return True, {**state, "members": members}

        return self._ref.modify(step)

    def leave(self, timeout: float | None = None) -> None:
        """Leave the round and block until every participant has left it;
        `DRefTimeoutError` if some are still inside after `timeout` s."""
        if self._round is None:
            raise RuntimeError(f"{self!r} has not entered")
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        entered, self._round = self._round, None

        def depart(state: State) -> tuple[None, State]:
            members = [m for m in state["members"] if m != self.identity]
            if members or state["round"] != entered:
                return None, {**state, "members": members}
            return None, {"round": entered + 1, "members": [], "ready": False}

        self._ref.modify(depart, timeout=call_timeout(deadline))

        def emptied() -> None:
            if self._ref.get(timeout=call_timeout(deadline))["round"] == entered:
                raise NotYet()

        def timed_out() -> DRefTimeoutError:
            return DRefTimeoutError(
                f"double barrier {self.name}: others still inside after {limit:g} s"
            )

        retry_on_change(self._ref, emptied, deadline, timed_out)

    def __enter__(self) -> DoubleBarrier:
        self.enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.leave()
