"""The simulator's clients: a key/value register workload and its recorded history."""

from __future__ import annotations

import random
from dataclasses import dataclass

from testkit.linearizability import Operation, OpKind


@dataclass(slots=True)
class ClientOp:
    """One client call in flight or finished; becomes an `Operation` for the checker."""

    op_id: int
    client: int
    kind: OpKind
    key: str
    invoke_ms: int
    node: str
    value: int | None = None
    expected: int | None = None
    complete_ms: int | None = None
    succeeded: bool | None = None
    outcome: str = "pending"
    """pending | ok | failed (definitely had no effect) | unknown (may or may not have)."""

    def command(self) -> bytes:
        """The bytes replicated for a write or cas: just the op id (details live here)."""
        return str(self.op_id).encode()

    def to_operation(self) -> Operation | None:
        """The checker's view; None when the op provably never took effect or saw nothing."""
        if self.outcome == "failed" or self.outcome == "pending":
            return None
        if self.outcome == "unknown":
            if self.kind is OpKind.READ:
                return None
            return Operation(
                self.kind, self.key, self.invoke_ms, None, self.value, self.expected, None,
                self.client,
            )
        return Operation(
            self.kind, self.key, self.invoke_ms, self.complete_ms, self.value, self.expected,
            self.succeeded, self.client,
        )


class Workload:
    """Chooses each client's next operation: writes, compare-and-sets and reads."""

    def __init__(self, rng: random.Random, keys: int) -> None:
        self.rng = rng
        self.keys = [f"k{i}" for i in range(keys)]
        self.last_seen: dict[str, int | None] = {}

    def next_op(self, op_id: int, client: int, now_ms: int, node: str) -> ClientOp:
        """A fresh operation; CAS expects a value recently seen so it sometimes succeeds."""
        rng = self.rng
        key = rng.choice(self.keys)
        roll = rng.random()
        if roll < 0.4:
            return ClientOp(op_id, client, OpKind.WRITE, key, now_ms, node, value=op_id)
        if roll < 0.6:
            expected = self.last_seen.get(key)
            return ClientOp(
                op_id, client, OpKind.CAS, key, now_ms, node, value=op_id, expected=expected
            )
        return ClientOp(op_id, client, OpKind.READ, key, now_ms, node)

    def observed(self, op: ClientOp) -> None:
        """Remember values clients saw, to aim later CAS operations."""
        if op.kind is OpKind.READ or op.succeeded is not False:
            self.last_seen[op.key] = op.value
