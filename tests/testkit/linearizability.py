"""Linearizability checker for key/value register histories (Wing-Gong/Lowe, as in Porcupine).

A history is a list of `Operation`s (write, read, compare-and-set) with invocation and
completion times; an operation whose outcome is unknown (the client timed out or its
node crashed) has `complete_ms=None` and may take effect at any point after its
invocation, or never. The history is split by key; each key is searched depth-first
over "which pending operation takes effect next", memoising (set of linearized
operations, model state) so each configuration is explored once. A time limit turns a
search that would take too long into an UNKNOWN verdict instead of a hang.
"""

from __future__ import annotations

import enum
import math
import time
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

States = frozenset[Hashable]
"""The set of register values the history so far allows (None = never written)."""


class OpKind(enum.Enum):
    """The register operations the model knows."""

    WRITE = "write"
    READ = "read"
    CAS = "cas"


@dataclass(frozen=True, slots=True)
class Operation:
    """One client call. WRITE: `value` written. READ: `value` returned (None = absent).

    CAS: `expected` -> `value`, `succeeded` True/False, or None when unknown.
    `complete_ms=None` means the outcome is unknown (it may or may not have happened).
    """

    kind: OpKind
    key: str
    invoke_ms: float
    complete_ms: float | None
    value: Hashable = None
    expected: Hashable = None
    succeeded: bool | None = None
    client: int = 0

    def describe(self) -> str:
        """A short human-readable form for anomaly reports."""
        end = "?" if self.complete_ms is None else f"{self.complete_ms:g}"
        span = f"[{self.invoke_ms:g}, {end}] client {self.client}"
        if self.kind is OpKind.WRITE:
            return f"write({self.value!r}) {span}"
        if self.kind is OpKind.READ:
            return f"read() -> {self.value!r} {span}"
        outcome = {True: "ok", False: "failed", None: "unknown"}[self.succeeded]
        return f"cas({self.expected!r} -> {self.value!r}) {outcome} {span}"


class Verdict(enum.Enum):
    """OK: linearizable. ANOMALY: provably not. UNKNOWN: the time limit ran out."""

    OK = "ok"
    ANOMALY = "anomaly"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict, and for an anomaly the key and operations that cannot be ordered."""

    verdict: Verdict
    key: str | None = None
    description: str = ""
    operations: tuple[Operation, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True only for a proven-linearizable history."""
        return self.verdict is Verdict.OK


def step(states: States, op: Operation) -> States:
    """Apply `op` to every possible register value; an empty result means impossible."""
    if op.kind is OpKind.WRITE:
        return frozenset((op.value,))
    if op.kind is OpKind.READ:
        return frozenset((op.value,)) if op.value in states else frozenset()
    if op.succeeded is True:
        return frozenset((op.value,)) if op.expected in states else frozenset()
    if op.succeeded is False:
        return states - {op.expected}
    return frozenset(op.value if s == op.expected else s for s in states)


class _Node:
    """A call or return event in the doubly linked event list Lowe's algorithm walks."""

    __slots__ = ("op_id", "is_call", "time", "match", "prev", "next")

    def __init__(self, op_id: int, is_call: bool, when: float) -> None:
        self.op_id = op_id
        self.is_call = is_call
        self.time = when
        self.match: _Node | None = None
        self.prev: _Node | None = None
        self.next: _Node | None = None


class _TimeUp(Exception):
    pass


def _event_list(ops: Sequence[Operation]) -> _Node:
    events: list[tuple[float, int, int, _Node]] = []
    for op_id, op in enumerate(ops):
        call = _Node(op_id, True, op.invoke_ms)
        ret = _Node(op_id, False, math.inf if op.complete_ms is None else op.complete_ms)
        call.match = ret
        # At equal times calls sort first: touching operations count as concurrent.
        events.append((call.time, 0, op_id, call))
        events.append((ret.time, 1, op_id, ret))
    events.sort(key=lambda e: e[:3])
    head = _Node(-1, False, -math.inf)
    last = head
    for *_, node in events:
        last.next, node.prev = node, last
        last = node
    return head


def _lift(call: _Node) -> None:
    ret = call.match
    assert call.prev is not None and ret is not None and ret.prev is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Node) -> None:
    ret = call.match
    assert call.prev is not None and ret is not None and ret.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


def check_key(ops: Sequence[Operation], deadline: float) -> tuple[bool, list[int], int]:
    """Search one key's history. Returns (ok, longest linearized prefix ids, stuck op id)."""
    head = _event_list(ops)
    states: States = frozenset((None,))
    linearized = 0
    seen: set[tuple[int, States]] = set()
    stack: list[tuple[_Node, States]] = []
    best: list[int] = []
    stuck = -1
    entry = head.next
    iterations = 0
    while head.next is not None:
        iterations += 1
        if iterations & 0x3FF == 0 and time.monotonic() > deadline:
            raise _TimeUp
        assert entry is not None
        if entry.is_call:
            after = step(states, ops[entry.op_id])
            if after:
                marked = linearized | (1 << entry.op_id)
                if (marked, after) not in seen:
                    seen.add((marked, after))
                    stack.append((entry, states))
                    states, linearized = after, marked
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
            continue
        if len(stack) > len(best):
            best = [call.op_id for call, _ in stack]
            stuck = entry.op_id
        if not stack:
            return False, best, stuck if stuck >= 0 else entry.op_id
        call, states = stack.pop()
        linearized &= ~(1 << call.op_id)
        _unlift(call)
        entry = call.next
    return True, [], -1


def check_history(operations: Iterable[Operation], time_limit_s: float = 10.0) -> CheckResult:
    """Check a register history key by key within `time_limit_s` seconds."""
    by_key: dict[str, list[Operation]] = defaultdict(list)
    for op in operations:
        by_key[op.key].append(op)
    deadline = time.monotonic() + time_limit_s
    for key in sorted(by_key):
        ops = by_key[key]
        try:
            ok, prefix, stuck = check_key(ops, deadline)
        except _TimeUp:
            return CheckResult(Verdict.UNKNOWN, key, f"time limit reached on key {key!r}")
        if not ok:
            return _anomaly(key, ops, prefix, stuck)
    return CheckResult(Verdict.OK)


def _anomaly(key: str, ops: Sequence[Operation], prefix: list[int], stuck: int) -> CheckResult:
    """Describe the failure: the longest valid order found and the op that cannot follow it."""
    shown = [ops[i] for i in prefix[-5:]]
    blocked = ops[stuck]
    lines = [f"key {key!r}: no linearization; longest valid order has {len(prefix)} ops"]
    lines += [f"  ... {op.describe()}" for op in shown]
    lines.append(f"  cannot be followed by: {blocked.describe()}")
    return CheckResult(Verdict.ANOMALY, key, "\n".join(lines), (*shown, blocked))
