"""One `dref node --interop` process among scripted upstream peers (spec sections 3-5): what
it answers as follower and voter, what it sends as leader and in what order, and its three
files byte for byte across SIGKILL and restart. Expected bytes are built here from the
spec's layouts, not with the project's encoders."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from dref.raft.node_process import NodeProcess, free_ports, node_arguments
from dref.wire.proto import dref_consensus_pb2 as cpb
from dref.wire.proto import dref_pb2 as rpb
from dref.wire.proto import raft_pb2
from dref.wire.proto import state_command_pb2 as sc
from testkit.upstream_peer import ScriptedPeer, client_stub, consensus_stub

NODE = "7"


def _set(name: str, value: bytes) -> bytes:
    return sc.StateCommand(
        set_element=sc.SetElementCommand(name=name, value=value)
    ).SerializeToString()


def _voter_state(term: int, voted_for: str | None) -> bytes:
    if voted_for is None:
        return b"DRFT\x01" + struct.pack(">Qi", term, -1)
    return b"DRFT\x01" + struct.pack(">Qi", term, len(voted_for)) + voted_for.encode()


def _command_log(commit: int, *records: tuple[int, bytes]) -> bytes:
    body = b"".join(struct.pack(">Qi", seq, len(cmd)) + cmd for seq, cmd in records)
    return b"DRFL\x01" + struct.pack(">Q", commit) + body


def _poll(check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.02)


class InteropHarness:
    """Two scripted peers ("101", "102") and node "7" as a real process."""

    def __init__(self, tmp_path: Path, *, election_ms: int, heartbeat_ms: int = 50) -> None:
        self.data_dir = tmp_path / "node"
        self.peers = [ScriptedPeer("101"), ScriptedPeer("102")]
        self.listen = f"127.0.0.1:{free_ports(1)[0]}"
        self.election_ms = election_ms
        self.heartbeat_ms = heartbeat_ms
        self.process: NodeProcess | None = None
        self.log = tmp_path / "node.log"

    def start(self) -> None:
        peers = {peer.node_id: peer.address for peer in self.peers}
        arguments = node_arguments(
            NODE,
            self.listen,
            peers,
            self.data_dir,
            heartbeat_ms=self.heartbeat_ms,
            election_ms=self.election_ms,
        )
        self.process = NodeProcess([*arguments, "--interop"], log=self.log)
        self.node = consensus_stub(self.listen)
        self.client = client_stub(self.listen)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()

    def file(self, name: str) -> bytes:
        return (self.data_dir / name).read_bytes()

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
        for peer in self.peers:
            peer.close()


@pytest.fixture
def quiet(tmp_path: Path) -> Iterator[InteropHarness]:
    """The node among peers that refuse it PreVotes: it stays a follower."""
    harness = InteropHarness(tmp_path, election_ms=600)
    for peer in harness.peers:
        peer.grant_pre_votes = False
    harness.start()
    yield harness
    harness.close()


@pytest.fixture
def electing(tmp_path: Path) -> Iterator[InteropHarness]:
    """The node among peers that grant every PreVote and vote: it becomes leader."""
    harness = InteropHarness(tmp_path, election_ms=300)
    harness.start()
    yield harness
    harness.close()


def test_follower_stores_applies_and_recovers_upstreams_files(quiet: InteropHarness) -> None:
    node = quiet.node
    beat = node.Heartbeat(cpb.HeartbeatRequest(leader_id="101", term=3, commit_seq=0))
    assert (beat.acknowledged, beat.term) == (True, 3)
    assert quiet.file("voter-state") == _voter_state(3, None)
    one, two = _set("k", b"v1"), _set("k2", b"v2")
    gap = node.AppendEntries(cpb.AppendEntriesRequest(leader_id="101", term=3, command=one, seq=2))
    assert (gap.success, gap.term) == (False, 3)
    for seq, command, commit in ((1, one, 0), (2, two, 1)):
        reply = node.AppendEntries(
            cpb.AppendEntriesRequest(
                leader_id="101", term=3, command=command, seq=seq, commit_seq=commit
            )
        )
        assert (reply.success, reply.term) == (True, 3)
    assert quiet.file("command-log") == _command_log(1, (1, one), (2, two))
    node.Heartbeat(cpb.HeartbeatRequest(leader_id="101", term=3, commit_seq=2))
    assert quiet.file("command-log") == _command_log(2, (1, one), (2, two))
    stale = node.AppendEntries(
        cpb.AppendEntriesRequest(leader_id="102", term=2, command=one, seq=3, commit_seq=2)
    )
    assert (stale.success, stale.term) == (False, 3)

    endpoints = quiet.client.GetEndpoints(rpb.GetEndpointsRequest())
    assert list(endpoints.ids) == ["101", "102", NODE]  # self last
    for call in (
        lambda: quiet.client.GetElement(rpb.GetElementRequest(name="k")),
        lambda: quiet.client.SetElement(rpb.SetElementRequest(name="k", value=b"x")),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert refused.value.details() == "not-leader:101"

    quiet.kill()
    quiet.start()  # recovery (spec 4.2): the log is replayed, the next seq is 3
    assert quiet.file("voter-state") == _voter_state(3, None)
    again = node = quiet.node
    reply = again.AppendEntries(
        cpb.AppendEntriesRequest(leader_id="101", term=3, command=one, seq=2, commit_seq=2)
    )
    assert not reply.success
    entries = [raft_pb2.KVEntry(key="x", value=b"y", expireAt=1_700_000_000)]
    installed = node.InstallSnapshot(
        cpb.InstallSnapshotRequest(
            leader_id="101", term=3, snapshot=cpb.ClusterSnapshot(entries=entries), last_seq=5
        )
    )
    assert (installed.success, installed.term) == (True, 3)
    payload = cpb.ClusterSnapshot(entries=entries, last_seq=5).SerializeToString()
    assert quiet.file("state-snapshot") == b"DRFS\x01" + struct.pack(">i", len(payload)) + payload
    assert quiet.file("command-log") == _command_log(2)  # truncated through 5, commit kept
    six = _set("k6", b"v6")
    reply = node.AppendEntries(
        cpb.AppendEntriesRequest(leader_id="101", term=3, command=six, seq=6, commit_seq=5)
    )
    assert reply.success

    quiet.kill()
    quiet.start()  # the snapshot (5) plus the log (6, uncommitted) give last_seq 6
    node = quiet.node
    seven = _set("k7", b"v7")
    assert not node.AppendEntries(
        cpb.AppendEntriesRequest(leader_id="101", term=3, command=seven, seq=6)
    ).success
    assert node.AppendEntries(
        cpb.AppendEntriesRequest(leader_id="101", term=3, command=seven, seq=7, commit_seq=7)
    ).success
    assert quiet.file("command-log") == _command_log(7, (6, six), (7, seven))


def test_voter_answers_and_persists_as_upstream(quiet: InteropHarness) -> None:
    node = quiet.node
    pre = node.RequestPreVote(cpb.PreVoteRequest(candidate_id="101", term=1, last_seq=0))
    assert (pre.granted, pre.term) == (True, 0)
    assert not (quiet.data_dir / "voter-state").exists()  # a PreVote changes nothing
    pre = node.RequestPreVote(cpb.PreVoteRequest(candidate_id="101", term=0, last_seq=0))
    assert not pre.granted

    vote = node.RequestVote(cpb.VoteRequest(candidate_id="101", term=1, last_seq=0))
    assert (vote.granted, vote.term) == (True, 1)
    assert quiet.file("voter-state") == _voter_state(1, "101")
    assert not node.RequestVote(cpb.VoteRequest(candidate_id="102", term=1)).granted
    assert node.RequestVote(cpb.VoteRequest(candidate_id="101", term=1)).granted  # idempotent

    node.Heartbeat(cpb.HeartbeatRequest(leader_id="101", term=1))
    sticky = node.RequestPreVote(cpb.PreVoteRequest(candidate_id="102", term=2, last_seq=0))
    assert (sticky.granted, sticky.term) == (False, 1)  # a live leader is known
    read = node.ReadIndex(cpb.ReadIndexRequest(leader_id="101", term=1))
    assert (read.granted, read.term) == (True, 1)
    assert not node.ReadIndex(cpb.ReadIndexRequest(leader_id="102", term=1)).granted

    assert node.RequestVote(cpb.VoteRequest(candidate_id="102", term=2)).granted
    assert quiet.file("voter-state") == _voter_state(2, "102")
    quiet.kill()
    quiet.start()
    node = quiet.node
    refused = node.RequestVote(cpb.VoteRequest(candidate_id="101", term=2))
    assert (refused.granted, refused.term) == (False, 2)  # the vote survived the SIGKILL

    assert node.AppendEntries(
        cpb.AppendEntriesRequest(leader_id="102", term=2, command=_set("a", b"1"), seq=1)
    ).success
    behind = node.RequestVote(cpb.VoteRequest(candidate_id="101", term=3, last_seq=0))
    assert (behind.granted, behind.term) == (False, 3)  # only last_seq is compared
    assert quiet.file("voter-state") == _voter_state(3, None)


def test_leader_sends_what_upstream_sends_in_order(electing: InteropHarness) -> None:
    first, second = electing.peers
    for peer in electing.peers:
        peer.wait_for("Heartbeat")
        methods = peer.methods()
        start = methods.index("RequestPreVote")
        assert methods[start : start + 4] == [
            "RequestPreVote",
            "RequestVote",
            "InstallSnapshot",
            "Heartbeat",
        ]
        pre = peer.requests("RequestPreVote")[0]
        vote = peer.requests("RequestVote")[0]
        assert (pre.candidate_id, pre.term, vote.term) == (NODE, 1, 1)
        snapshot = peer.requests("InstallSnapshot")[0]
        assert (snapshot.leader_id, snapshot.term, snapshot.last_seq) == (NODE, 1, 0)
    assert electing.file("voter-state") == _voter_state(1, NODE)

    client = electing.client
    for seq, value in ((1, b"a"), (2, b"b")):
        client.SetElement(rpb.SetElementRequest(name="k", value=value))
        sent = first.wait_for("AppendEntries", lambda r, s=seq: r.seq == s)
        assert (sent.leader_id, sent.term, sent.commit_seq) == (NODE, 1, seq - 1)
        assert sent.command == _set("k", value)
        first.wait_for("Heartbeat", lambda r, s=seq: r.commit_seq == s)
    assert electing.file("command-log") == _command_log(
        2, (1, _set("k", b"a")), (2, _set("k", b"b"))
    )
    got = client.GetElement(rpb.GetElementRequest(name="k"))
    assert got.HasField("value") and got.value == b"b"
    assert first.wait_for("ReadIndex").leader_id == NODE
    assert not client.GetElement(rpb.GetElementRequest(name="absent")).HasField("value")

    for peer in electing.peers:  # fewer than a quorum store seq 3: rolled back, snapshots sent
        peer.append_success = False
        peer.forget()
    with pytest.raises(grpc.RpcError) as lost:
        client.SetElement(rpb.SetElementRequest(name="k", value=b"c"))
    assert (lost.value.code(), lost.value.details()) == (grpc.StatusCode.UNAVAILABLE, "quorum-lost")
    second.wait_for("InstallSnapshot", lambda r: r.last_seq == 2)
    assert electing.file("command-log") == _command_log(
        2, (1, _set("k", b"a")), (2, _set("k", b"b"))
    )
    first.append_success = True
    client.SetElement(rpb.SetElementRequest(name="k", value=b"d"))  # 2 of 3 store it
    assert first.wait_for("AppendEntries", lambda r: r.command == _set("k", b"d")).seq == 3

    soon = int(time.time() * 1000) + 150  # the TTL reaper deletes it with DeleteIfExpired
    client.SetElement(rpb.SetElementRequest(name="ttl", value=b"t", expireAt=soon))
    reaped = first.wait_for(
        "AppendEntries",
        lambda r: sc.StateCommand.FromString(r.command).WhichOneof("op") == "delete_if_expired",
    )
    assert sc.StateCommand.FromString(reaped.command).delete_if_expired.name == "ttl"

    for peer in electing.peers:
        assert peer.native_fields() == []  # nothing of native mode reaches upstream peers
        peer.grant_pre_votes = False  # so that it stays a follower once it steps down
    first.term = 9  # a reply with a newer term: step down, persisted, no leader known
    _poll(lambda: electing.file("voter-state") == _voter_state(9, None))
    assert electing.file("voter-state") == _voter_state(9, None)
    with pytest.raises(grpc.RpcError) as demoted:
        client.SetElement(rpb.SetElementRequest(name="k", value=b"e"))
    assert demoted.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert demoted.value.details() == "not-leader:unknown"


def test_new_leader_drops_its_unapplied_tail(tmp_path: Path) -> None:
    """Scala's newest engine: a node that wins an election discards what it stored beyond
    last_applied, then installs its state on every peer. This is how upstream's protocol
    loses a write whose commit Heartbeat never arrived (tests/jepsen/test_interop.py)."""
    harness = InteropHarness(tmp_path, election_ms=300)
    for peer in harness.peers:
        peer.grant_pre_votes = False
    harness.start()
    try:
        node = harness.node
        one, two = _set("k", b"1"), _set("k", b"2")
        for seq, command in ((1, one), (2, two)):
            stored = node.AppendEntries(
                cpb.AppendEntriesRequest(leader_id="101", term=1, command=command, seq=seq)
            )
            assert stored.success
        node.Heartbeat(cpb.HeartbeatRequest(leader_id="101", term=1, commit_seq=1))
        assert harness.file("command-log") == _command_log(1, (1, one), (2, two))
        for peer in harness.peers:  # the leader falls silent and the node may now win
            peer.forget()
            peer.grant_pre_votes = True
        first = harness.peers[0]
        vote = first.wait_for("RequestVote")
        assert (vote.term, vote.last_seq) == (2, 2)  # it campaigns with seq 2 stored
        snapshot = first.wait_for("InstallSnapshot")
        assert (snapshot.term, snapshot.last_seq) == (2, 1)  # seq 2 is gone
        assert list(snapshot.snapshot.entries) == [raft_pb2.KVEntry(key="k", value=b"1")]
        assert harness.file("command-log") == _command_log(1, (1, one))
    finally:
        harness.close()


def test_a_snapshot_larger_than_grpcs_default_message_cap(quiet: InteropHarness) -> None:
    entries = [raft_pb2.KVEntry(key=f"k{i}", value=bytes(64 * 1024)) for i in range(96)]
    request = cpb.InstallSnapshotRequest(
        leader_id="101", term=2, snapshot=cpb.ClusterSnapshot(entries=entries), last_seq=9
    )
    assert request.ByteSize() > 6 * 1024 * 1024  # gRPC refuses more than 4 MiB by default
    assert quiet.node.InstallSnapshot(request, timeout=30).success
    saved = cpb.ClusterSnapshot.FromString(quiet.file("state-snapshot")[9:])
    assert (len(saved.entries), saved.last_seq) == (96, 9)
