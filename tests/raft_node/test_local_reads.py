"""LocalReads: reads answered outside the applier only when the state machine is far
enough along (a published lease, or a confirmed read index)."""

from __future__ import annotations

from dref.actors.local_reads import LocalReads
from dref.actors.ticker import monotonic_ms


class Echo:
    """Answers every query with the number of commands applied so far."""

    def __init__(self) -> None:
        self.applied = 0

    def apply(self, command: bytes) -> bytes:
        self.applied += 1
        return b""

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        self.applied = 0

    def query(self, request: bytes) -> bytes:
        return request + b":%d" % self.applied


def test_confirmed_read_is_answered_only_once_applied_through_its_read_index() -> None:
    machine = Echo()
    local = LocalReads(machine, applied_index=4)
    assert local.query_applied(b"q", read_index=5) is None  # the applier answers it later
    machine.apply(b"x")
    local.applied_index = 5
    assert local.query_applied(b"q", read_index=5) == b"q:1"


def test_lease_read_needs_a_live_lease_and_the_commit_index_applied() -> None:
    local = LocalReads(Echo(), applied_index=3)
    assert local.try_query(b"q") is None  # no lease published
    local.publish(monotonic_ms() + 60_000, commit_index=4)
    assert local.try_query(b"q") is None  # commit 4 not applied yet
    local.applied_index = 4
    assert local.try_query(b"q") == b"q:0"
    local.withdraw()
    assert local.try_query(b"q") is None
    local.publish(monotonic_ms() - 1, commit_index=4)  # expired
    assert local.try_query(b"q") is None
