"""`Queue`: a small first-in first-out queue shared by every process, each item taken once."""

from __future__ import annotations

import time
from typing import Any

from dref.backend import call_timeout
from dref.context import Context
from dref.errors import DRefTimeoutError
from dref.recipes._waiting import NotYet, retry_on_change
from dref.ref import DRef

__all__ = ["DEFAULT_QUEUE_TIMEOUT", "TAKE_TIMEOUT", "Queue"]

DEFAULT_QUEUE_TIMEOUT = 10.0
"""How long `get` waits for an item unless told otherwise (seconds)."""
TAKE_TIMEOUT = 10.0
"""Once an item is there, the write that takes it may run this long (seconds) even past
`get`'s own timeout: a take cut short by its timeout may still apply, and the item would
then be removed without anyone receiving it."""


class Queue:
    """A FIFO queue kept as one list under `name`; `put` appends, `get` takes the head.

    Guarantee: items come out in the order their `put` calls took effect, and each item is
    returned by exactly one `get`, across all threads and processes (both are one
    compare-and-set of the whole list). A call that raises `BackendUnavailableError` may or
    may not have taken effect (on Raft, `QuorumLostError`): a `get` failing so may have
    removed an item that nobody receives, so delivery is at most once when the backend fails.

    Size: every call reads and writes the whole list, so keep the queue small (hundreds of
    items, not millions). Its encoded size is capped by the backend's `max_value_size`
    (1 MiB on Raft, 8 MiB on Redis by default); a `put` beyond it raises
    `ValueTooLargeError`. Items are MsgPack values (None, bools, numbers, str, lists, dicts);
    upstream's MsgPack writes `bytes` as arrays, so they come back as lists of ints.
    """

    def __init__(self, ctx: Context, name: str, *, timeout: float = DEFAULT_QUEUE_TIMEOUT) -> None:
        self.name = name
        self.timeout = timeout
        """Default wait of `get`, in seconds."""
        self._ref: DRef[list[Any]] = ctx.ref(name, [])

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    def put(self, item: Any, timeout: float | None = None) -> None:
        """Append `item` at the tail (`timeout`: how long to retry under contention)."""
        self._ref.update(lambda items: [*items, item], timeout)

    def get(self, timeout: float | None = None) -> Any:
        """Remove and return the head, waiting up to `timeout` s (default `self.timeout`) for
        one to arrive; `DRefTimeoutError` if the queue stayed empty. Taking an item that is
        there may take longer, up to `TAKE_TIMEOUT`, so it is not lost halfway."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit

        def take(items: list[Any]) -> tuple[Any, list[Any]]:
            if not items:
                raise NotYet()
            return items[0], items[1:]

        def timed_out() -> DRefTimeoutError:
            return DRefTimeoutError(f"queue {self.name} stayed empty for {limit:g} s")

        def try_take() -> Any:
            return self._ref.modify(take, timeout=max(call_timeout(deadline), TAKE_TIMEOUT))

        return retry_on_change(self._ref, try_take, deadline, timed_out)

    def __len__(self) -> int:
        """How many items wait in the queue now."""
        return len(self._ref.get())
