"""Combines concurrent read-modify-writes of one name by threads of one context.

Sixteen threads updating one counter, each with its own compare-and-set, mostly fail
against one another and retry: on Raft that was slower than one thread alone. Here the
first caller to find no combiner at work becomes it: it reads the value once, runs every
queued step in arrival order (each on the value the previous one produced), and writes
the last value with one compare-and-set. Each caller gets its own result, or its own
exception (its step then leaves the value unchanged). If another process wrote in
between, the combiner reads again and reruns the steps (a step may run more than once,
as with any compare-and-set update), taking in calls that queued meanwhile.

Steps work on encoded bytes, so refs of one name with different codecs combine too.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from dref.backend import Backend, call_timeout
from dref.errors import DRefTimeoutError, NotFoundError

Step = Callable[[bytes], "tuple[Any, bytes]"]
"""Old encoded value -> (the caller's result, new encoded value)."""

_BACKOFF_FIRST = 0.0005
_BACKOFF_MAX = 0.05


class _Call:
    __slots__ = ("step", "deadline", "result", "error", "done")

    def __init__(self, step: Step, deadline: float) -> None:
        self.step = step
        self.deadline = deadline
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False


class UpdateCombiner:
    """Runs the read-modify-writes of one name; see the module doc."""

    def __init__(self, name: str, backend: Callable[[], Backend]) -> None:
        self.name = name
        self._backend = backend
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Call] = []
        self._working = False

    def run(self, step: Step, limit: float) -> Any:
        """Apply `step` atomically and return its result; DRefTimeoutError after `limit` s."""
        call = _Call(step, time.monotonic() + limit)
        with self._cond:
            self._queue.append(call)
            while not call.done and self._working:
                remaining = call.deadline - time.monotonic()
                if remaining <= 0:
                    return self._give_up(call, limit)
                self._cond.wait(remaining)
            if not call.done:
                self._working = True
        if not call.done:
            try:
                self._combine()
            finally:
                with self._cond:
                    self._working = False
                    self._cond.notify_all()
        if call.error is not None:
            raise call.error
        return call.result

    def _give_up(self, call: _Call, limit: float) -> Any:
        """The caller's time is up while another thread combines (the lock is held)."""
        if call in self._queue:
            self._queue.remove(call)
            raise DRefTimeoutError(f"update of {self.name} did not start within {limit:g} s")
        raise DRefTimeoutError(
            f"update of {self.name} did not finish within {limit:g} s (it may still apply)"
        )

    def _combine(self) -> None:
        """Write every queued call's step with one compare-and-set, retrying on conflict."""
        batch: list[_Call] = []
        backoff = _BACKOFF_FIRST
        for _ in range(1_000_000):  # bounded by the calls' deadlines long before this
            with self._cond:
                batch += self._queue
                self._queue = []
            deadline = max(call.deadline for call in batch)
            try:
                if self._attempt(batch, deadline):
                    return
            except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
                self._finish(batch, error=exc)
                return
            pause = random.uniform(0, backoff)
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)  # randomised backoff against writers in other processes
            backoff = min(backoff * 2, _BACKOFF_MAX)
        error = DRefTimeoutError(f"update of {self.name} did not succeed in time")
        self._finish(batch, error=error)

    def _attempt(self, batch: list[_Call], deadline: float) -> bool:
        """One read, every step, one compare-and-set; True when it wrote (or had nothing to)."""
        backend = self._backend()
        entry = backend.get(self.name, timeout=call_timeout(deadline))
        if entry is None:
            self._finish(batch, error=NotFoundError(self.name))
            return True
        value = entry.value
        outcomes: list[tuple[Any, BaseException | None]] = []
        for call in batch:
            try:
                result, value = call.step(value)
            except Exception as exc:  # noqa: BLE001 - this caller's own failure
                outcomes.append((None, exc))
            else:
                outcomes.append((result, None))
        if any(error is None for _, error in outcomes):
            written = backend.compare_and_set(
                self.name, entry, value, None, timeout=call_timeout(deadline)
            )
            if written is None:
                return False
        with self._cond:
            for call, (result, error) in zip(batch, outcomes, strict=True):
                call.result, call.error, call.done = result, error, True
            self._cond.notify_all()
        return True

    def _finish(self, batch: list[_Call], *, error: BaseException) -> None:
        with self._cond:
            for call in batch:
                call.error, call.done = error, True
            self._cond.notify_all()

