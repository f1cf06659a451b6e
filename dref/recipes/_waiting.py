"""Retrying a step each time a ref changes, until it succeeds or a deadline passes.

Every recipe that blocks (a queue that is empty, a semaphore that is full, a barrier that
stands) does it the same way: try; if the step cannot succeed yet, subscribe to the ref's
changes and try again (so a change between the first try and the subscription is not
missed), then wait for the next change before each further try. A step may ask to be
retried after some time even without a change (a lease that runs out writes nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from dref.changes import DEFAULT_BUFFER, ChangeStream
from dref.errors import DRefTimeoutError
from dref.ref import DRef

__all__ = ["NotYet", "retry_on_change"]

R = TypeVar("R")

_MIN_PAUSE = 0.001
"""Shortest wait before a timed retry, so a wake-up time just passed cannot make a busy loop."""


class NotYet(Exception):
    """Raised by a step that cannot succeed in the current state; `retry_in` (seconds), if
    given, is when the state may allow it without any write (a lease running out)."""

    def __init__(self, retry_in: float | None = None) -> None:
        super().__init__("not yet")
        self.retry_in = retry_in


def retry_on_change(
    ref: DRef[Any],
    step: Callable[[], R],
    deadline: float,
    timed_out: Callable[[], DRefTimeoutError],
) -> R:
    """Run `step` until it returns instead of raising `NotYet`, waking on each change of
    `ref`; raise `timed_out()` once `deadline` (a `time.monotonic` value) has passed."""
    try:
        return step()
    except NotYet:
        pass
    with ref.changes() as stream:
        while True:
            try:
                return step()
            except NotYet as not_yet:
                retry_in = not_yet.retry_in
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise timed_out()
            if retry_in is not None:
                remaining = min(remaining, max(retry_in, _MIN_PAUSE))
            _await_change(stream, remaining)


def _await_change(stream: ChangeStream[Any], timeout: float) -> None:
    """Wait up to `timeout` s for a change, then drop the burst queued behind it: one retry
    reads the latest state, however many writes led to it."""
    try:
        stream.get(timeout)
    except DRefTimeoutError:
        return
    for _ in range(DEFAULT_BUFFER):
        try:
            stream.get(0)
        except DRefTimeoutError:
            return
