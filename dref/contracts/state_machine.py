"""What a user's replicated state machine implements to run on the embedded Raft engine."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class StateMachine(Protocol):
    """A deterministic state machine: the same commands in the same order give the same state.

    The engine never runs two of these methods at once (they may run on different engine
    threads, one at a time), and `query` should be quick: confirmed reads are answered on
    the consensus thread. `apply` must not read clocks, random numbers or anything else
    that differs between nodes.
    """

    def apply(self, command: bytes) -> bytes:
        """Apply one committed command; the result goes back to the proposer."""
        ...

    def snapshot(self) -> bytes:
        """The whole state as bytes (taken every `snapshot_every` entries)."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot produced by `snapshot`."""
        ...

    def query(self, request: bytes) -> bytes:
        """Answer a read-only request from the current state (never changes state)."""
        ...


class BatchStateMachine(StateMachine, Protocol):
    """Optionally, apply many committed commands at once (faster for some state machines)."""

    def apply_batch(self, commands: list[bytes]) -> list[bytes]:
        """Apply `commands` in order; one result per command."""
        ...
