"""DRefRaft / DRefNative servicers and the Client, over real gRPC on 127.0.0.1, with fake
node objects standing in for the Raft runtime (the cluster tests use real nodes)."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from dref.backend import ChangeEvent, ChangeKind, Entry
from dref.errors import DRefError, NotLeaderError, QuorumLostError, ValueTooLargeError
from dref.raft.client import Client, Resync
from dref.wire.client_service import LEADER_ADDRESS_KEY, now_ms
from dref.wire.proto import dref_pb2 as up
from dref.wire.proto import dref_pb2_grpc as up_grpc


def raft_stub(address: str) -> up_grpc.DRefRaftStub:
    return up_grpc.DRefRaftStub(grpc.insecure_channel(address))


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_upstream_service_semantics(fake_cluster):
    leader = raft_stub(fake_cluster[0].address)
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
    assert list(leader.GetEndpoints(up.GetEndpointsRequest(), timeout=5).ids) == ["n2", "n3", "n1"]
    follower = raft_stub(fake_cluster[2].address)
    ids = follower.GetEndpoints(up.GetEndpointsRequest(), timeout=5).ids
    assert list(ids) == ["n1", "n2", "n3"]


def test_error_mapping_is_upstreams_plus_the_leader_address(fake_cluster):
    n1, n2, _ = fake_cluster
    follower = raft_stub(n2.address)
    error = rpc_error(lambda: follower.SetElement(up.SetElementRequest(name="k"), timeout=5))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "not-leader:n1"
    assert (LEADER_ADDRESS_KEY, n1.address) in tuple(error.trailing_metadata())
    error = rpc_error(lambda: follower.GetElement(up.GetElementRequest(name="k"), timeout=5))
    assert error.details() == "not-leader:n1"
    n2.leader = None
    error = rpc_error(lambda: follower.DeleteElement(up.DeleteElementRequest(name="k"), timeout=5))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "not-leader:unknown",
    )
    n1.quorum_lost = True
    leader = raft_stub(n1.address)
    error = rpc_error(lambda: leader.SetElement(up.SetElementRequest(name="k"), timeout=5))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, "quorum-lost")
    error = rpc_error(lambda: leader.SetElement(up.SetElementRequest(name=""), timeout=5))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_client_follows_the_address_hint_from_a_follower(fake_cluster):
    n1, _, n3 = fake_cluster
    with Client([n3.address], timeout=10) as client:
        revision = client.set("a", b"1")
        assert client.leader_address == n1.address
        assert client.get("a") == Entry(b"1", revision)
        assert client.endpoints(n3.address)[-1] == "n3"
        assert client.status()["role"] == "leader"
        assert client.status(n3.address)["role"] == "follower"


def test_client_finds_the_leader_by_id_when_there_is_no_address_hint(fake_cluster):
    n1, n2, n3 = fake_cluster
    for node in fake_cluster:
        node.send_address_hint = False
    with Client([n2.address, n3.address, n1.address], timeout=10) as client:
        client.set("a", b"1")
        assert client.leader_address == n1.address


def test_client_gives_up_at_its_deadline_when_no_leader_is_known(fake_cluster):
    for node in fake_cluster:
        node.leader = None
    with Client([n.address for n in fake_cluster], timeout=10) as client:
        started = time.monotonic()
        with pytest.raises(NotLeaderError):
            client.set("a", b"1", timeout=1.0)
        assert time.monotonic() - started < 5


def test_client_conditional_writes_and_revisions(fake_cluster):
    with Client([fake_cluster[0].address]) as client:
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


def test_client_errors(fake_cluster):
    small = fake_cluster[0]
    small.services.max_value_size = 10
    with Client([small.address]) as client:
        with pytest.raises(ValueTooLargeError) as info:
            client.set("big", b"x" * 11)
        assert info.value.limit == 10
        with pytest.raises(DRefError):
            client.get("")
        small.quorum_lost = True
        with pytest.raises(QuorumLostError):
            client.compare_and_set("k", None, b"v")
        with pytest.raises(QuorumLostError):
            client.set("k", b"v", timeout=0.5)


def test_watch_streams_changes_and_resync(fake_cluster):
    leader = fake_cluster[0]
    with Client([leader.address]) as client:
        watch = client.watch("w", timeout=5)
        items: list[object] = []
        done = threading.Event()

        def read() -> None:
            for item in watch:
                items.append(item)
                if len(items) == 3:
                    done.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        rev = client.set("w", b"1")
        client.set("other", b"x")
        deleted = client.delete("w")
        leader.state_machine.restore(leader.state_machine.snapshot())
        assert done.wait(10)
        assert items == [
            ChangeEvent("w", ChangeKind.SET, b"1", rev),
            ChangeEvent("w", ChangeKind.DELETE, None, deleted),
            Resync(),
        ]
        watch.cancel()
        reader.join(10)
        assert not reader.is_alive()


def test_open_watches_are_capped_so_they_cannot_take_every_server_thread(fake_cluster):
    leader = fake_cluster[0]
    leader.services._watch_slots = threading.BoundedSemaphore(2)
    with Client([leader.address]) as client:
        first, second = client.watch("a", timeout=5), client.watch("b", timeout=5)
        with pytest.raises(DRefError, match="too-many-watches"):
            client.watch("c", timeout=5)
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
