"""What a user's replicated state machine implements to run on the embedded Raft engine."""

from __future__ import annotations

from typing import IO, Protocol, runtime_checkable


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
        """The whole state as bytes (taken every `snapshot_every` entries); a large state
        should stream instead (`StreamingStateMachine`)."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot produced by `snapshot`."""
        ...

    def query(self, request: bytes) -> bytes:
        """Answer a read-only request from the current state (never changes state)."""
        ...


class StreamingStateMachine(StateMachine, Protocol):
    """Optionally, snapshots written to and read from files instead of bytes: the engine
    then keeps snapshots in files from end to end (taking, saving, sending, receiving,
    restoring), so a large state is never copied whole in memory. Same bytes as
    `snapshot` / `restore`."""

    def snapshot_to(self, out: IO[bytes]) -> None:
        """Write the whole state to `out` (a binary file; the engine makes it durable)."""
        ...

    def restore_from(self, source: IO[bytes]) -> None:
        """Replace the whole state with a snapshot read from `source` (a binary file)."""
        ...


class BatchStateMachine(StateMachine, Protocol):
    """Optionally, apply many committed commands at once (faster for some state machines)."""

    def apply_batch(self, commands: list[bytes]) -> list[bytes]:
        """Apply `commands` in order; one result per command."""
        ...
