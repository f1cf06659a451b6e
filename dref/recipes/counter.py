"""`Counter`: a shared integer whose increments are never lost."""

from __future__ import annotations

from dref.context import Context

__all__ = ["Counter"]


class Counter:
    """An integer under `name`, changed by compare-and-set with retry.

    Guarantee: every `increment`/`decrement` that returns is applied exactly once, so the
    value is the exact sum of them, whatever the number of threads and processes. A call
    that raises `BackendUnavailableError` may or may not have been applied (on Raft,
    `QuorumLostError`: the outcome is unknown); one that raises `DRefTimeoutError` under
    extreme contention was not applied.
    """

    def __init__(self, ctx: Context, name: str, initial: int = 0) -> None:
        self.name = name
        self._ref = ctx.ref(name, initial)

    def __repr__(self) -> str:
        return f"Counter({self.name!r})"

    def increment(self, n: int = 1, timeout: float | None = None) -> int:
        """Add `n`; returns the new value (`timeout`: how long to retry under contention)."""
        return self._ref.update_and_get(lambda value: value + n, timeout)

    def decrement(self, n: int = 1, timeout: float | None = None) -> int:
        """Subtract `n`; returns the new value."""
        return self.increment(-n, timeout)

    def value(self, timeout: float | None = None) -> int:
        """The current value."""
        return self._ref.get(timeout)
