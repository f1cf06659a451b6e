"""DRefRaft / DRefNative servicers and the Client against real in-process `KeyValueNode`s
(real gRPC on 127.0.0.1, real data directories); the leader is discovered, never forced."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from polling import wait_for

from dref.backend import ChangeEvent, ChangeKind, Entry
from dref.errors import (
    DRefError,
    NoQuorumError,
    NotLeaderError,
    QuorumLostError,
    ValueTooLargeError,
)
from dref.raft.client import Client, Resync, Watch
from dref.wire.client_protocol import LEADER_ADDRESS_KEY, now_ms
from dref.wire.proto import dref_pb2 as up
from dref.wire.proto import dref_pb2_grpc as up_grpc


def raft_stub(address: str) -> up_grpc.DRefRaftStub:
    return up_grpc.DRefRaftStub(grpc.insecure_channel(address))


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def read_in_background(watch: Watch, count: int) -> tuple[list[object], threading.Event]:
    """Collect `watch`'s items in a thread; the event is set once `count` arrived or it ended."""
    items: list[object] = []
    done = threading.Event()

    def read() -> None:
        for item in watch:
            items.append(item)
            if len(items) == count:
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    return items, done


def lose_the_leader(cluster: Any) -> Any:
    """Stop two of three nodes; the survivor, once it knows no leader."""
    leader = cluster.leader()
    survivor = next(n for n in cluster.nodes.values() if n is not leader)
    for node_id in [i for i in cluster.nodes if i != survivor.node_id]:
        cluster.stop(node_id)
    wait_for(lambda: survivor.status().leader_id is None, 30, "the survivor forgets its leader")
    return survivor


def test_upstream_service_semantics(kv_cluster):
    leader = raft_stub(kv_cluster.leader().address)
    leader.SetElement(up.SetElementRequest(name="k", value=b"v"), timeout=5)
    assert leader.GetElement(up.GetElementRequest(name="k"), timeout=5).value == b"v"
    leader.SetElement(up.SetElementRequest(name="empty", value=b""), timeout=5)
    assert leader.GetElement(up.GetElementRequest(name="empty"), timeout=5).HasField("value")
    assert not leader.GetElement(up.GetElementRequest(name="nope"), timeout=5).HasField("value")
    created = leader.SetElementIfNotExist(
        up.SetElementIfNotExistRequest(name="k", value=b"x"), timeout=5
    ).created
    assert created is False
    leader.DeleteElement(up.DeleteElementRequest(name="k"), timeout=5)
    assert not leader.GetElement(up.GetElementRequest(name="k"), timeout=5).HasField("value")
    past = now_ms() - 1
    leader.SetElement(up.SetElementRequest(name="old", value=b"1", expireAt=past), timeout=5)
    assert not leader.GetElement(up.GetElementRequest(name="old"), timeout=5).HasField("value")
    # an expired, unreaped entry does not block set-if-absent (spec 7.13)
    request = up.SetElementIfNotExistRequest(name="old", value=b"2")
    assert leader.SetElementIfNotExist(request, timeout=5).created
    leader.ExpireElement(up.ExpireElementRequest(name="old", expireAt=past), timeout=5)
    assert not leader.GetElement(up.GetElementRequest(name="old"), timeout=5).HasField("value")
    leader.SendCommand(up.SendCommandRequest(id="x", payload=b"junk"), timeout=5)
    for node_id, address in kv_cluster.addresses.items():  # the peers, then the node's own id
        ids = raft_stub(address).GetEndpoints(up.GetEndpointsRequest(), timeout=5).ids
        assert list(ids) == [*(i for i in kv_cluster.addresses if i != node_id), node_id]


def test_error_mapping_is_upstreams_plus_the_leader_address(kv_cluster):
    leader = kv_cluster.leader()
    follower = raft_stub(kv_cluster.followers()[0].address)
    for call in (
        lambda: follower.SetElement(up.SetElementRequest(name="k"), timeout=5),
        lambda: follower.DeleteElement(up.DeleteElementRequest(name="k"), timeout=5),
        lambda: follower.ExpireElement(up.ExpireElementRequest(name="k"), timeout=5),
    ):
        error = rpc_error(call)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error.details() == f"not-leader:{leader.node_id}"
        assert (LEADER_ADDRESS_KEY, leader.address) in tuple(error.trailing_metadata())
    stub = raft_stub(leader.address)
    error = rpc_error(lambda: stub.SetElement(up.SetElementRequest(name=""), timeout=5))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_client_follows_the_address_hint_from_a_follower(kv_cluster):
    leader = kv_cluster.leader()
    follower = kv_cluster.followers()[-1]
    with Client([follower.address], timeout=10) as client:
        revision = client.set("a", b"1")
        assert client.leader_address == leader.address
        assert client.get("a") == Entry(b"1", revision)
        assert client.endpoints(follower.address)[-1] == follower.node_id
        assert client.status()["role"] == "leader"
        assert client.status(follower.address)["role"] == "follower"


def test_a_retry_policy_decides_whether_a_failed_call_is_tried_again(kv_cluster):
    follower = kv_cluster.followers()[-1]
    asked: list[tuple[type, bool]] = []

    def never(error: Exception, write: bool) -> bool:
        asked.append((type(error), write))
        return False

    with Client([follower.address], timeout=10, retry=never) as client, pytest.raises(
        NotLeaderError
    ):
        client.set("retry-policy", b"1")  # the follower's hint is not followed
    # asked about the call opening the client's session: resending it is safe (write=False)
    assert asked == [(NotLeaderError, False)]


def test_an_address_map_redirects_every_address_the_client_dials(kv_cluster):
    leader = kv_cluster.leader()
    alias = "127.0.0.1:1"  # nothing listens there
    with Client([alias], timeout=10, address_map={alias: leader.address}) as client:
        revision = client.set("mapped", b"1")  # would find nobody at the alias itself
        assert client.get("mapped") == Entry(b"1", revision)


def test_client_finds_the_leader_by_id_when_there_is_no_address_hint(make_kv_cluster):
    cluster = make_kv_cluster(3, leader_address_hint=False)
    leader = cluster.leader()
    followers = cluster.followers()
    error = rpc_error(
        lambda: raft_stub(followers[0].address).SetElement(
            up.SetElementRequest(name="k"), timeout=5
        )
    )
    assert error.details() == f"not-leader:{leader.node_id}"
    assert LEADER_ADDRESS_KEY not in dict(error.trailing_metadata() or ())
    with Client([*(f.address for f in followers), leader.address], timeout=10) as client:
        client.set("a", b"1")
        assert client.leader_address == leader.address


def test_client_gives_up_at_its_deadline_when_no_leader_is_known(make_kv_cluster):
    cluster = make_kv_cluster(3)
    addresses = list(cluster.addresses.values())
    survivor = lose_the_leader(cluster)
    stub = raft_stub(survivor.address)
    error = rpc_error(lambda: stub.DeleteElement(up.DeleteElementRequest(name="k"), timeout=5))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "not-leader:unknown",
    )
    assert LEADER_ADDRESS_KEY not in dict(error.trailing_metadata() or ())
    with Client([survivor.address], timeout=10) as client:
        started = time.monotonic()
        with pytest.raises(NoQuorumError, match="1 of 3 voters reachable"):
            client.set("a", b"1", timeout=1.0)
        assert time.monotonic() - started < 5
    with Client(addresses, timeout=10) as client:  # two of them refuse connections
        started = time.monotonic()
        with pytest.raises(NoQuorumError, match="1 of 3 voters reachable"):
            client.get("a", timeout=1.0)
        assert time.monotonic() - started < 5


def test_a_leader_that_loses_its_followers_answers_quorum_lost(make_kv_cluster):
    cluster = make_kv_cluster(3)
    leader = cluster.leader()
    stub = raft_stub(leader.address)
    stub.SetElement(up.SetElementRequest(name="k", value=b"before"), timeout=10)
    for follower in cluster.followers():
        cluster.stop(follower.node_id)
    started = time.monotonic()
    error = rpc_error(
        lambda: stub.SetElement(up.SetElementRequest(name="k", value=b"after"), timeout=20)
    )
    # quorum-lost while the proposal waits for the step-down; not-leader once it happened
    assert (error.code(), error.details()) in {
        (grpc.StatusCode.UNAVAILABLE, "quorum-lost"),
        (grpc.StatusCode.FAILED_PRECONDITION, "not-leader:unknown"),
    }
    assert time.monotonic() - started < 15  # never a deadline-exceeded hang
    with Client([leader.address], timeout=10) as client:
        for write in (
            lambda: client.compare_and_set("k", None, b"v", timeout=3),
            lambda: client.set("k", b"v", timeout=3),
        ):
            started = time.monotonic()
            with pytest.raises((QuorumLostError, NotLeaderError)):
                write()
            assert time.monotonic() - started < 6


def test_client_conditional_writes_and_revisions(kv_cluster):
    with Client([kv_cluster.leader().address]) as client:
        first = client.set_if_absent("lock", b"me", ttl=30)
        assert first is not None and client.set_if_absent("lock", b"you") is None
        entry = client.get("lock")
        assert entry == Entry(b"me", first)
        assert client.expire_if("lock", 30, entry)
        assert not client.expire_if("lock", 30, Entry(b"me", first + 100))
        assert client.compare_and_set("lock", Entry(b"other", first), b"x") is None
        second = client.compare_and_set("lock", entry, b"x")
        assert second is not None and second > first
        assert not client.compare_and_delete("lock", entry)
        assert client.compare_and_delete("lock", Entry(b"x", second))
        assert client.get("lock") is None
        deleted = client.delete("lock")
        assert deleted > second
        # an expired lock can be taken at once, without waiting for the reaper
        client.set("stale", b"old", ttl=0)
        assert client.set_if_absent("stale", b"new") is not None
        client.expire("stale", 0)
        assert client.get("stale") is None
        assert client.compare_and_set("stale", None, b"again") is not None


def test_client_errors(kv_cluster):
    with Client([kv_cluster.leader().address]) as client:
        with pytest.raises(ValueTooLargeError) as info:
            client.set("big", b"x" * 1001)
        assert info.value.limit == 1000
        client.set("big", b"x" * 1000)
        with pytest.raises(DRefError):
            client.get("")
        with pytest.raises(ValueError):
            client.watch()


def test_watch_streams_the_changes_of_its_names(kv_cluster):
    with Client([kv_cluster.leader().address]) as client:
        watch = client.watch("w", "v", timeout=5)
        items, done = read_in_background(watch, 3)
        rev = client.set("w", b"1")
        client.set("other", b"x")
        deleted = client.delete("w")
        later = client.set("v", b"2")
        assert done.wait(10), items
        assert items == [
            ChangeEvent("w", ChangeKind.SET, b"1", rev),
            ChangeEvent("w", ChangeKind.DELETE, None, deleted),
            ChangeEvent("v", ChangeKind.SET, b"2", later),
        ]
        watch.cancel()


def test_a_replacing_watch_takes_over_without_losing_or_repeating_a_change(kv_cluster):
    with Client([kv_cluster.leader().address]) as client:
        old = client.watch("x", timeout=5)
        old_items, old_ended = read_in_background(old, 1_000)
        writes = [client.set("x", str(i).encode()) for i in range(20)]
        new = client.watch("x", "y", replaces=old.watch_id, timeout=5)
        assert new.replaced and new.watch_id != old.watch_id
        assert old_ended.wait(10)  # the node ended the old stream
        new_items, new_done = read_in_background(new, 20 - len(old_items) + 21)
        writes += [client.set("x", str(i).encode()) for i in range(20, 40)]
        y = client.set("y", b"y")
        assert new_done.wait(10)
        x_revisions = [e.revision for e in [*old_items, *new_items] if e.name == "x"]
        assert x_revisions == writes
        assert new_items[-1] == ChangeEvent("y", ChangeKind.SET, b"y", y)
        # a Watch id this node does not know is no replacement
        other = client.watch("x", replaces=old.watch_id, timeout=5)
        assert not other.replaced
        other.cancel()
        new.cancel()


def test_a_snapshot_install_tells_the_watchers_to_resync(make_kv_cluster):
    cluster = make_kv_cluster(3, config={"snapshot_every": 20})
    lagging = cluster.followers()[0].node_id
    cluster.stop(lagging)
    with Client(list(cluster.addresses.values()), timeout=20) as client:
        for i in range(100):  # the others compact their logs past the lagging node's
            client.set(f"n{i}", b"x")
        others = list(cluster.nodes)
        for node_id in others:
            cluster.stop(node_id)
        node = cluster.start(lagging)
        with Client([node.address], timeout=20) as local:
            watch = local.watch("r", timeout=5)  # served with no leader around
            items, _ = read_in_background(watch, 100)
            for node_id in others:
                cluster.start(node_id)
            wait_for(lambda: items, 30, "RESYNC from the snapshot install")
            revision = client.set("r", b"1")
            change = ChangeEvent("r", ChangeKind.SET, b"1", revision)
            wait_for(lambda: change in items, 20, "the change after the install")
            watch.cancel()
            # RESYNC (a retried install may send another), then the change
            assert items[-1] == change and set(items[:-1]) == {Resync()}


def test_open_watches_are_capped_so_they_cannot_take_every_server_thread(make_kv_cluster):
    (node,) = make_kv_cluster(1, max_watches=2).nodes.values()
    with Client([node.address]) as client:
        first, second = client.watch("a", timeout=5), client.watch("b", "c", timeout=5)
        with pytest.raises(DRefError, match="too-many-watches"):
            client.watch("c", timeout=5)
        # a replacement takes the place of the stream it replaces: no extra slot
        second = client.watch("b", "c", "d", replaces=second.watch_id, timeout=5)
        assert second.replaced
        first.cancel()
        deadline = time.monotonic() + 10
        while True:  # the slot frees once the server notices the cancellation
            try:
                third = client.watch("c", timeout=5)
                break
            except DRefError:
                assert time.monotonic() < deadline
                time.sleep(0.02)  # a poll under a deadline
        second.cancel()
        third.cancel()


def test_a_node_at_its_watch_cap_is_skipped_for_another(make_kv_cluster):
    cluster = make_kv_cluster(3, max_watches=1)
    leader = cluster.leader()
    with Client([leader.address, *(f.address for f in cluster.followers())]) as client:
        first = client.watch("a", timeout=5)
        assert first.address == leader.address
        second = client.watch("a", timeout=5)
        assert second.address != leader.address
        items, done = read_in_background(second, 1)
        revision = client.set("a", b"1")
        assert done.wait(10)
        assert items == [ChangeEvent("a", ChangeKind.SET, b"1", revision)]
        first.cancel()
        second.cancel()
