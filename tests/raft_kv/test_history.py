"""Change history on Raft: the state machine's kept changes, and a resumable change stream
that goes on through a SIGKILLed leader with no gap and no duplicate."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import dref
from dref.errors import DRefError
from dref.storage.kv_state_machine import KeyValueStateMachine
from dref.wire.proto.dref_native_pb2 import (
    HistoryQuery,
    KeyValueQuery,
    KeyValueQueryResult,
    WatchEvent,
)
from dref.wire.proto.raft_pb2 import KeyValueSnapshot


def history(sm: KeyValueStateMachine, name: str, after: int, limit: int = 0) -> Any:
    """The state machine's answer to a history query, decoded."""
    question = HistoryQuery(name=name, after=after, limit=limit)
    return KeyValueQueryResult.FromString(
        sm.query(KeyValueQuery(history=question).SerializeToString())
    )


def test_the_state_machine_answers_the_changes_of_one_name_after_a_revision(cmd):
    sm = KeyValueStateMachine()
    sm.apply(cmd.set_("a", b"1"))  # 1
    sm.apply(cmd.set_("b", b"x"))  # 2
    sm.apply(cmd.set_("a", b"2"))  # 3
    sm.apply(cmd.delete("a"))  # 4
    sm.apply(cmd.set_("a", b"3", 500))  # 5
    sm.apply(cmd.reap(["a"], 600))  # 6: expiry is a change too
    reply = history(sm, "a", 1)
    assert [(e.kind, e.value, e.revision) for e in reply.history] == [
        (WatchEvent.SET, b"2", 3),
        (WatchEvent.DELETE, b"", 4),
        (WatchEvent.SET, b"3", 5),
        (WatchEvent.DELETE, b"", 6),
    ]
    assert not reply.HasField("oldest_available")
    assert [e.revision for e in history(sm, "a", 3, limit=2).history] == [4, 5]
    assert list(history(sm, "a", 6).history) == []


def test_a_restored_snapshot_carries_the_history_within_the_retention(cmd):
    source = KeyValueStateMachine()
    for i in range(5):
        source.apply(cmd.set_("k", str(i).encode()))  # 1..5
    source.apply(cmd.delete("k"))  # 6
    restored = KeyValueStateMachine(history_revisions=3)
    restored.restore(source.snapshot())
    assert history(restored, "k", 2).oldest_available == 4  # only the newest 3 are kept
    kept = history(restored, "k", 3).history
    assert [(e.kind, e.value, e.revision) for e in kept] == [
        (WatchEvent.SET, b"3", 4),
        (WatchEvent.SET, b"4", 5),
        (WatchEvent.DELETE, b"", 6),
    ]
    restored.apply(cmd.set_("k", b"7"))  # 7: the oldest kept one goes
    assert history(restored, "k", 3).oldest_available == 5
    assert [e.revision for e in history(restored, "k", 4).history] == [5, 6, 7]
    again = KeyValueStateMachine()
    again.restore(restored.snapshot())  # a snapshot of a restored one says the same
    assert [e.revision for e in history(again, "k", 4).history] == [5, 6, 7]


def test_a_snapshot_without_history_starts_it_at_its_revision(cmd):
    """Upstream's snapshots carry no history: older requests learn the oldest kept."""
    source = KeyValueStateMachine()
    for i in range(5):
        source.apply(cmd.set_("k", str(i).encode()))
    snap = KeyValueSnapshot.FromString(source.snapshot())
    snap.ClearField("history")
    snap.ClearField("history_floor")
    restored = KeyValueStateMachine()
    restored.restore(snap.SerializeToString())
    assert history(restored, "k", 4).oldest_available == 6
    assert list(history(restored, "k", 5).history) == []


def read_until(stream: Any, revision: int, timeout: float) -> list[tuple[int, int]]:
    """(revision, value) of the stream's events up to `revision`, within `timeout` s."""
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout
    while (not seen or seen[-1][0] < revision) and time.monotonic() < deadline:
        event = stream.get(max(deadline - time.monotonic(), 0.001))
        assert isinstance(event, dref.Changed), event
        seen.append((event.revision, event.value))
    return seen


def check_exactly_once(seen: list[tuple[int, int]], acknowledged: list[int]) -> None:
    revisions = [revision for revision, _ in seen]
    assert revisions == sorted(set(revisions)), "a revision came twice or out of order"
    assert set(acknowledged) <= set(revisions), "an acknowledged write was missed"
    values = [value for _, value in seen]
    assert values == sorted(values) and len(set(values)) == len(values)


def test_streams_go_on_through_a_killed_leader_without_gap_or_duplicate(make_cluster):
    cluster = make_cluster(3, heartbeat_ms=50, election_ms=1000)
    cluster.leader()
    ctx = dref.raft_client(list(cluster.addresses.values()), timeout=20)
    try:
        ref = ctx.ref("feed", 0)
        start = ref.set(0)
        acknowledged: list[int] = []
        killed = threading.Event()
        stop = threading.Event()

        def write() -> None:
            for i in range(1, 61):  # bounded: 60 writes, each within the ref's timeout
                if stop.is_set():
                    return
                try:
                    acknowledged.append(ref.set(i))
                except DRefError:
                    pass  # may or may not have been applied: the stream shows which
                if i == 20:
                    killed.wait(30)

        with ref.changes(timeout=30, after=start) as stream, ref.changes(timeout=30) as plain:
            writer = threading.Thread(target=write, name="history-writer")
            writer.start()
            try:
                deadline = time.monotonic() + 30
                while len(acknowledged) < 20 and time.monotonic() < deadline:
                    time.sleep(0.01)  # a poll under a deadline
                leader = cluster.leader()
                cluster.processes[leader].kill()
                killed.set()
                writer.join(120)
                assert not writer.is_alive()
                check_exactly_once(read_until(stream, acknowledged[-1], 60), acknowledged)
                # a plain stream's watcher also replays the history after reconnecting
                check_exactly_once(read_until(plain, acknowledged[-1], 60), acknowledged)
            finally:
                stop.set()
                killed.set()
                writer.join(120)
        assert len(acknowledged) >= 40
    finally:
        ctx.close()


def test_dref_node_history_revisions_0_keeps_no_history(cluster_type, tmp_path):
    cluster = cluster_type(
        tmp_path,
        1,
        extra_args=lambda _node_id: ["--history-revisions", "0"],
        heartbeat_ms=50,
        election_ms=1000,
    )
    try:
        cluster.start_all()
        cluster.leader()
        with dref.raft_client(list(cluster.addresses.values()), timeout=20) as ctx:
            ref = ctx.ref("none-kept", 0)
            first = ref.set(1)
            latest = ref.set(2)
            with pytest.raises(dref.CompactedError) as raised:
                ref.changes(after=first)
            assert raised.value.oldest_available > latest  # (the node writes its own keys too)
            with ref.changes(timeout=10, after=latest) as stream:  # from now on works
                revision = ref.set(3)
                assert stream.get(10) == dref.Changed(3, revision)
    finally:
        cluster.stop()


def test_a_plain_stream_receives_every_change_made_while_its_watch_was_cut(make_cluster):
    """The watcher reconnects and replays the history: three writes made while its only
    connection was partitioned arrive as three events, not as one resync of the last."""
    from dref.raft.client import Client
    from dref.raft_backend import RaftBackend
    from tests.testkit.fault_proxy import FaultProxy

    cluster = make_cluster(1, heartbeat_ms=50, election_ms=1000)
    cluster.leader()
    (address,) = cluster.addresses.values()
    host, port = address.rsplit(":", 1)
    with FaultProxy((host, int(port)), seed=3) as proxy, dref.raft_client(
        [address], timeout=20
    ) as writer_ctx:
        via_proxy = f"127.0.0.1:{proxy.port}"
        client = Client([via_proxy], timeout=5, transport="grpc", address_map={address: via_proxy})
        with dref.Context(RaftBackend(client)) as reader_ctx:
            reader = reader_ctx.ref("cut", 0)
            writer = writer_ctx.ref("cut", 0)
            with reader.changes(timeout=30) as stream:
                before = writer.set(1)
                assert stream.get(30) == dref.Changed(1, before)
                proxy.partition()
                proxy.reset()  # the watch stream breaks; reconnecting stalls until heal
                missed = [writer.set(i) for i in (2, 3, 4)]
                proxy.heal()
                events = [stream.get(30) for _ in missed]
                assert events == [
                    dref.Changed(v, r) for v, r in zip((2, 3, 4), missed, strict=True)
                ]
