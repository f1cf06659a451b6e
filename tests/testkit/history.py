"""Client workers that record a register history for the linearizability checker.

Each `Worker` thread runs random writes, compare-and-sets and reads on a few keys through
its own `Client`, and records every call as an `Operation` with invocation and completion
times (`time.monotonic`, in ms since the `History` began). Every written value is unique
(``<worker>-<n>``), so a compare-and-set on the (value, revision) last seen is exactly a
compare-and-set on the value, which is what the checker's register model knows.

Outcomes: a write or compare-and-set that raised may or may not have happened, so it is
recorded as indeterminate (no completion time), except a not-leader failure of a client
that retries nothing else (`not_leader_is_definite`): that write is left out, so its value
must never be read. A compare-and-set that answered "not applied" is a definite failure;
a read that raised changed nothing and is not recorded.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from dref.backend import Entry
from dref.errors import DRefError, NotLeaderError
from dref.raft.client import Client
from testkit.linearizability import CheckResult, Operation, OpKind, check_history

__all__ = ["History", "LinearizabilityViolation", "Mix", "Worker", "final_reads", "run_workers"]

MAX_OPS_PER_WORKER = 100_000
"""Upper bound on one worker's calls, whatever its deadline."""


class LinearizabilityViolation(AssertionError):
    """A recorded history is not linearizable (or could not be proven so in time)."""


class History:
    """A thread-safe list of `Operation`s with times relative to its creation, and tallies."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._ops: list[Operation] = []
        self._where: dict[int, str] = {}
        self.tally: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def now_ms(self) -> float:
        """Milliseconds since this history began (monotonic clock)."""
        return (time.monotonic() - self._start) * 1000.0

    def record(
        self,
        op: Operation | None,
        outcome: str,
        error: Exception | None = None,
        where: str | None = None,
    ) -> None:
        """Add `op` (None: a failed read, only counted); `outcome` is ok/failed/indeterminate;
        `where` names the node that answered, if known."""
        with self._lock:
            if op is not None:
                self._ops.append(op)
                if where is not None:
                    self._where[id(op)] = where
            self.tally[outcome] += 1
            if error is not None:
                self.errors[type(error).__name__] += 1

    def operations(self) -> list[Operation]:
        """A copy of the recorded operations."""
        with self._lock:
            return list(self._ops)

    def where(self, op: Operation) -> str | None:
        """The node that answered `op` (the client's leader after the call), if known."""
        with self._lock:
            return self._where.get(id(op))

    def check(self, time_limit_s: float = 120.0) -> CheckResult:
        """Run the linearizability checker on everything recorded."""
        return check_history(self.operations(), time_limit_s)

    def summary(self) -> str:
        """One line of op counts for the CI log."""
        with self._lock:
            kinds = Counter(op.kind.value for op in self._ops)
            errors = ", ".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "none"
            by_kind = ", ".join(f"{k}={v}" for k, v in sorted(kinds.items()))
            return (
                f"{len(self._ops)} ops checked ({by_kind}); "
                f"ok={self.tally['ok']} failed={self.tally['failed']} "
                f"indeterminate={self.tally['indeterminate']}; errors: {errors}"
            )


@dataclass(frozen=True)
class Mix:
    """Relative weights of the operations a worker picks."""

    write: float = 1.0
    cas: float = 1.0
    read: float = 2.0


def _text(entry: Entry | None) -> str | None:
    return None if entry is None else entry.value.decode()


class Worker(threading.Thread):
    """One client thread: random ops on `keys` until `stop` is set or `deadline` passes."""

    def __init__(
        self,
        number: int,
        client: Client,
        history: History,
        keys: Sequence[str],
        stop: threading.Event,
        *,
        seed: int,
        deadline: float,
        op_timeout: float = 3.0,
        read_policy: str = "linearizable",
        mix: Mix | None = None,
        not_leader_is_definite: bool = False,
    ) -> None:
        super().__init__(name=f"jepsen-worker-{number}", daemon=True)
        self.number = number
        self.client = client
        self.history = history
        self.keys = list(keys)
        self.stop = stop
        self.rng = random.Random(seed)
        self.deadline = deadline
        self.op_timeout = op_timeout
        self.read_policy = read_policy
        self.mix = mix or Mix()
        self.not_leader_is_definite = not_leader_is_definite
        self.seen: dict[str, Entry | None] = {}
        self.written = 0

    def run(self) -> None:
        kinds = [OpKind.WRITE, OpKind.CAS, OpKind.READ]
        weights = [self.mix.write, self.mix.cas, self.mix.read]
        for _ in range(MAX_OPS_PER_WORKER):
            if self.stop.is_set() or time.monotonic() >= self.deadline:
                return
            kind = self.rng.choices(kinds, weights)[0]
            key = self.rng.choice(self.keys)
            if kind is OpKind.READ:
                self.read(key)
            elif kind is OpKind.WRITE:
                self.write(key)
            else:
                self.cas(key)

    def _value(self) -> str:
        self.written += 1
        return f"w{self.number}-{self.written}"

    def _surely_not_applied(self, error: DRefError) -> bool:
        """A not-leader answer is definite when the client retried only such answers (a
        strict-write client), so the write is left out of the history altogether."""
        return self.not_leader_is_definite and isinstance(error, NotLeaderError)

    def read(self, key: str) -> None:
        """A read with the worker's read policy."""
        start = self.history.now_ms()
        try:
            entry = self.client.get(key, policy=self.read_policy, timeout=self.op_timeout)
        except DRefError as error:
            self.history.record(None, "failed", error)
            return
        end = self.history.now_ms()
        self.seen[key] = entry
        op = Operation(OpKind.READ, key, start, end, value=_text(entry), client=self.number)
        self.history.record(op, "ok", where=self.client.leader_address)

    def write(self, key: str) -> None:
        """An unconditional write of a fresh value."""
        value = self._value()
        start = self.history.now_ms()
        try:
            revision = self.client.set(key, value.encode(), timeout=self.op_timeout)
        except DRefError as error:
            if self._surely_not_applied(error):
                self.history.record(None, "failed", error)  # its value must never be read
                return
            op = Operation(OpKind.WRITE, key, start, None, value=value, client=self.number)
            self.history.record(op, "indeterminate", error)
            return
        end = self.history.now_ms()
        self.seen[key] = Entry(value.encode(), revision)
        op = Operation(OpKind.WRITE, key, start, end, value=value, client=self.number)
        self.history.record(op, "ok", where=self.client.leader_address)

    def cas(self, key: str) -> None:
        """A compare-and-set from the entry this worker last read or wrote (a read first
        if it has none)."""
        if key not in self.seen:
            self.read(key)
            return
        expected = self.seen[key]
        value = self._value()
        start = self.history.now_ms()
        try:
            revision = self.client.compare_and_set(
                key, expected, value.encode(), timeout=self.op_timeout
            )
        except DRefError as error:
            op = Operation(OpKind.CAS, key, start, None, value, _text(expected), None, self.number)
            self.history.record(op, "indeterminate", error)
            return
        end = self.history.now_ms()
        applied = revision is not None
        op = Operation(OpKind.CAS, key, start, end, value, _text(expected), applied, self.number)
        self.history.record(op, "ok" if applied else "failed", where=self.client.leader_address)
        if revision is not None:
            self.seen[key] = Entry(value.encode(), revision)
        else:
            del self.seen[key]  # re-read before the next compare-and-set


def run_workers(
    history: History,
    clients: Callable[[int], Client],
    keys: Sequence[str],
    count: int,
    stop: threading.Event,
    *,
    seed: int,
    deadline: float,
    **options: object,
) -> list[Worker]:
    """Start `count` workers, worker i with client `clients(i)` and seed `seed + i`."""
    workers = [
        Worker(i, clients(i), history, keys, stop, seed=seed + i, deadline=deadline, **options)  # type: ignore[arg-type]
        for i in range(count)
    ]
    for worker in workers:
        worker.start()
    return workers


def final_reads(
    history: History, client: Client, keys: Iterable[str], *, timeout: float = 60.0
) -> dict[str, str | None]:
    """Read every key linearizably (retrying until `timeout`) and record the reads."""
    values: dict[str, str | None] = {}
    deadline = time.monotonic() + timeout
    for key in keys:
        for attempt in range(10_000):
            start = history.now_ms()
            remaining = deadline - time.monotonic()
            try:
                entry = client.get(key, timeout=max(0.5, min(10.0, remaining)))
            except DRefError:
                if remaining <= 0:
                    raise
                time.sleep(min(0.5, 0.05 * (attempt + 1)))  # backoff between bounded retries
                continue
            values[key] = _text(entry)
            read = Operation(
                OpKind.READ, key, start, history.now_ms(), value=values[key], client=-1
            )
            history.record(read, "ok")
            break
    return values
