"""The Client's multiplexed `DRefNative.Pipeline` (its gRPC transport) against real
in-process `KeyValueNode`s:
many threads share one stream and its frames, errors keep their types, not-leader hints
are followed, a node closing under waiting calls fails them as a unary call would, and
nodes that refuse pipelines are served by unary calls."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from polling import wait_for

from dref.backend import Entry
from dref.errors import (
    ContextClosedError,
    DRefError,
    ValueTooLargeError,
)
from dref.raft.client import Client
from dref.wire.proto import dref_native_pb2 as native
from dref.wire.proto import dref_native_pb2_grpc as native_grpc

CALLERS = 32
ROUNDS = 8
FIELDS = ("frames_sent", "calls_sent", "frames_received", "results_received")
SERVED = ("frames_in", "calls_in", "frames_out", "results_out")


def sent(client: Client) -> dict[str, int]:
    """The client's pipeline counters summed over every node (a leader may change)."""
    stats = client.pipeline_stats().values()
    return {field: sum(getattr(s, field) for s in stats) for field in FIELDS}


def served(cluster: Any) -> dict[str, int]:
    """The pipeline counters of every node of `cluster`, summed."""
    stats = [node.services.pipeline_stats() for node in cluster.nodes.values()]
    return {field: sum(getattr(s, field) for s in stats) for field in SERVED}


class Background:
    """`run()` on a thread; `outcome(timeout)` returns its result or raises its error."""

    def __init__(self, run: Callable[[], Any]) -> None:
        self._result: list[Any] = []
        self._done = threading.Event()

        def target() -> None:
            try:
                self._result.append((True, run()))
            except BaseException as exc:  # handed to the test thread
                self._result.append((False, exc))
            self._done.set()

        threading.Thread(target=target, daemon=True).start()

    def outcome(self, timeout: float) -> Any:
        assert self._done.wait(timeout), "the background call did not end"
        ok, value = self._result[0]
        if not ok:
            raise value
        return value


def test_concurrent_callers_share_one_stream_and_batch(kv_cluster):
    leader = kv_cluster.leader()
    before = served(kv_cluster)
    start = threading.Barrier(CALLERS)
    failures: list[BaseException] = []

    with Client([leader.address], transport="grpc", timeout=30) as client:
        client.set("counter", b"0")

        def caller(index: int) -> None:
            try:
                start.wait(30)
                name = f"caller-{index}"
                for round_ in range(ROUNDS):
                    value = f"{index}-{round_}".encode()
                    revision = client.set(name, value)
                    assert client.get(name) == Entry(value, revision)
                    newer = client.compare_and_set(name, Entry(value, revision), b"x")
                    assert newer is not None and newer > revision
                    assert client.compare_and_set(name, Entry(value, revision), b"y") is None
                    while True:  # increment the shared counter by compare-and-set
                        current = client.get("counter")
                        assert current is not None
                        bumped = str(int(current.value) + 1).encode()
                        if client.compare_and_set("counter", current, bumped) is not None:
                            break
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(CALLERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads)
        assert not failures, failures[:3]
        counter = client.get("counter")
        assert counter is not None and int(counter.value) == CALLERS * ROUNDS

        stats = sent(client)
    assert stats["calls_sent"] >= CALLERS * ROUNDS * 5
    assert stats["frames_sent"] < stats["calls_sent"], stats  # callers shared frames
    after = served(kv_cluster)
    assert after["calls_in"] - before["calls_in"] == stats["calls_sent"]
    results = after["results_out"] - before["results_out"]
    assert results == stats["results_received"] == stats["calls_sent"]
    assert after["frames_out"] - before["frames_out"] < results  # answers shared frames too


def test_a_call_to_a_follower_follows_the_hint_through_the_pipeline(kv_cluster):
    leader = kv_cluster.leader()
    follower = kv_cluster.followers()[0]
    before = follower.services.pipeline_stats().calls_in
    with Client([follower.address], transport="grpc") as client:
        revision = client.set("hinted", b"v")
        assert client.leader_address == leader.address
        assert client.get("hinted") == Entry(b"v", revision)
        assert client.set_if_absent("hinted", b"w") is None
        assert client.pipeline_stats()[follower.address].calls_sent >= 1
    assert follower.services.pipeline_stats().calls_in > before  # refused there, not-leader


def test_pipelined_errors_keep_their_types(kv_cluster):
    with Client([kv_cluster.leader().address], transport="grpc") as client:
        with pytest.raises(ValueTooLargeError) as info:
            client.set("big", b"x" * 1001)
        assert info.value.limit == 1000
        with pytest.raises(ValueTooLargeError):
            client.compare_and_set("big", None, b"x" * 1001)
        with pytest.raises(DRefError, match="name must not be empty"):
            client.get("")
        with pytest.raises(DRefError, match="name must not be empty"):
            client.delete("")
        with pytest.raises(DRefError, match="unknown read policy"):
            client.get("k", policy="eventually")
        assert sent(client)["results_received"] >= 5  # every call went on a pipeline


def test_every_operation_through_the_pipeline(kv_cluster):
    with Client([kv_cluster.leader().address], transport="grpc") as client:
        first = client.set_if_absent("ops", b"a", ttl=30)
        assert first is not None
        assert client.set_if_absent("ops", b"b") is None
        entry = Entry(b"a", first)
        assert client.expire_if("ops", 30, entry)
        assert not client.expire_if("ops", 30, Entry(b"a", first + 100))
        assert client.get("ops", policy="lease") == entry
        assert client.get("ops", policy="stale") is not None
        assert not client.compare_and_delete("ops", Entry(b"z", first))
        assert client.compare_and_delete("ops", entry)
        assert client.delete("ops") > first
        assert client.get("ops") is None
        assert sent(client)["results_received"] >= 10


def test_an_empty_call_gets_invalid_argument(kv_cluster):
    channel = grpc.insecure_channel(kv_cluster.leader().address)
    try:
        frame = native.PipelineFrame(calls=[native.PipelineCall(id=7)])
        replies = native_grpc.DRefNativeStub(channel).Pipeline(iter([frame]), timeout=10)
        results = [result for reply in replies for result in reply.results]
    finally:
        channel.close()
    assert [r.id for r in results] == [7]
    assert results[0].error.code == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("options", "code", "details"),
    [
        ({"pipeline": False}, grpc.StatusCode.UNIMPLEMENTED, ""),
        ({"max_pipelines": 0}, grpc.StatusCode.RESOURCE_EXHAUSTED, "too-many-pipelines"),
    ],
)
def test_a_node_refusing_pipelines_gets_unary_calls(make_kv_cluster, options, code, details):
    cluster = make_kv_cluster(1, **options)
    node = cluster.leader()
    channel = grpc.insecure_channel(node.address)
    try:
        frame = native.PipelineFrame(calls=[native.PipelineCall(id=1)])
        with pytest.raises(grpc.RpcError) as info:
            list(native_grpc.DRefNativeStub(channel).Pipeline(iter([frame]), timeout=10))
    finally:
        channel.close()
    assert info.value.code() == code and details in (info.value.details() or "")

    with Client([node.address], transport="grpc") as client:
        revision = client.set("k", b"v")
        assert client.get("k") == Entry(b"v", revision)
        newer = client.compare_and_set("k", Entry(b"v", revision), b"w")
        assert newer is not None
        assert client.compare_and_delete("k", Entry(b"w", newer))
        assert client.set_if_absent("k", b"again") is not None
        assert client.delete("k") > newer
        stats = client.pipeline_stats()[node.address]
    assert stats.calls_sent <= 1 and stats.results_received == 0  # the refused first call
    assert node.services.pipeline_stats().calls_in == 0


def test_a_node_closing_under_waiting_calls(make_kv_cluster):
    cluster = make_kv_cluster(3)
    leader = cluster.leader()
    others = [a for a in cluster.addresses.values() if a != leader.address]
    everyone = [leader.address, *others]  # reads go to the first address until a hint
    closing, staying = Client(everyone, timeout=60), Client(everyone, timeout=60)
    try:
        v0 = staying.set("k", b"v0")
        closing.get("k")
        base = leader.services.pipeline_stats()
        assert base.open == 2  # both clients' streams are at the leader
        for node_id in [i for i in cluster.nodes if i != leader.node_id]:
            cluster.stop(node_id)  # no quorum: the leader's calls wait

        cancelled = Background(lambda: closing.get("k"))
        write = Background(lambda: staying.set("k", b"v1", timeout=30))
        reads = [Background(lambda: staying.get("k")) for _ in range(2)]
        wait_for(
            lambda: leader.services.pipeline_stats().calls_in >= base.calls_in + 4,
            30,
            "the calls reach the leader",
        )

        closing.close()
        with pytest.raises(ContextClosedError):
            cancelled.outcome(30)
        wait_for(lambda: leader.services.pipeline_stats().open == 1, 30, "the stream ends")

        cluster.stop(leader.node_id)
        for node_id in cluster.addresses:
            if node_id != leader.node_id:
                cluster.start(node_id)
        # the write is resent in its session to whichever node leads next: applied once, or
        # still unanswered when its 30 s ran out (then it may or may not have been applied)
        try:
            written: Entry | None = Entry(b"v1", write.outcome(90))
        except DRefError as exc:
            assert "may or may not" in str(exc)
            written = None
        for read in reads:  # read elsewhere, once a leader is up
            assert read.outcome(90) in (Entry(b"v0", v0), written)
    finally:
        closing.close()
        staying.close()
