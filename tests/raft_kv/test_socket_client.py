"""The Client on the node's socket (its default transport) against real in-process
`KeyValueNode`s: all threads share one connection, a node without a socket is served
over gRPC, bad client frames are refused while the node keeps serving, and a broken
connection fails a waiting write as "may or may not have been applied"."""

from __future__ import annotations

import socket
import threading

import pytest
from polling import wait_for

from dref.backend import Entry
from dref.errors import ConfigError
from dref.raft.client import Client
from dref.raft.socket_pipeline import SocketPipeline
from dref.wire.frames import FrameKind, FrameReader, Hello, encode_frame
from dref.wire.proto import dref_native_pb2 as native

CALLERS = 32
ROUNDS = 10


def _pipeline(client: Client, address: str) -> SocketPipeline:
    pipeline = client._node(address).pipeline
    assert isinstance(pipeline, SocketPipeline)
    return pipeline


def test_threads_share_one_connection_and_counts_are_exact(make_kv_cluster):
    cluster = make_kv_cluster(3)
    leader = cluster.leader()
    start = threading.Barrier(CALLERS)
    failures: list[BaseException] = []
    with Client([leader.address], timeout=30) as client:
        client.set("counter", b"0")

        def caller() -> None:
            try:
                start.wait(30)
                for _ in range(ROUNDS):
                    while True:
                        current = client.get("counter")
                        assert current is not None
                        bumped = str(int(current.value) + 1).encode()
                        if client.compare_and_set("counter", current, bumped) is not None:
                            break
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads)
        assert not failures, failures[:3]
        assert client.get("counter").value == str(CALLERS * ROUNDS).encode()  # type: ignore[union-attr]
        pipeline = _pipeline(client, leader.address)
        stats = pipeline.snapshot()
        assert stats.streams == 1  # one connection for every thread
        assert stats.results_received == stats.calls_sent >= CALLERS * ROUNDS * 2
        assert pipeline._fallback.snapshot().streams == 0  # gRPC was never used
        served = leader.services.pipeline_stats()
        assert served.open == 1
        assert served.results_out >= stats.calls_sent


def test_a_node_without_a_socket_is_served_over_grpc(make_kv_cluster):
    cluster = make_kv_cluster(1, {"peer_transport": "grpc"})
    node = cluster.leader()
    with Client([node.address]) as client:
        revision = client.set("k", b"v")
        assert client.get("k") == Entry(b"v", revision)
        pipeline = _pipeline(client, node.address)
        # the session's opening, the set and the get all went on the gRPC stream
        assert pipeline._fallback.snapshot().calls_sent == 3


def _client_connection(port: int) -> tuple[socket.socket, FrameReader]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(Hello("client-test", "", role="client").encode())
    reader = FrameReader(sock)
    kind, payload = reader.read()
    assert kind is FrameKind.HELLO
    return sock, reader


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (encode_frame(FrameKind.REQUESTS, b"\xff\xff"), "malformed PipelineFrame"),
        (encode_frame(FrameKind.ANSWERS, b""), "unexpected ANSWERS frame from a client"),
    ],
)
def test_bad_client_frames_are_refused_and_the_node_keeps_serving(make_kv_cluster, frame, reason):
    cluster = make_kv_cluster(1)
    node = cluster.leader()
    port = node.node.socket_server.port
    sock, reader = _client_connection(port)
    with sock:
        sock.sendall(frame)
        kind, payload = reader.read()
        assert kind is FrameKind.REFUSED and reason in payload.decode()
    sock, reader = _client_connection(port)
    with sock:  # a call with no operation is answered with an error, not a dropped link
        call = native.PipelineFrame(calls=[native.PipelineCall(id=9)])
        sock.sendall(encode_frame(FrameKind.REQUESTS, call.SerializeToString()))
        kind, payload = reader.read()
        assert kind is FrameKind.ANSWERS
        (result,) = native.PipelineFrame.FromString(payload).results
        assert result.id == 9 and result.error.code == "INVALID_ARGUMENT"
    with Client([node.address]) as client:
        assert client.set("still", b"serving") > 0


def test_a_write_cut_off_with_its_connection_is_resent_and_applied_once(make_kv_cluster):
    """The write waits at a leader without quorum when its connection is reset: the client
    resends it in its session on a new connection, so once the quorum is back both copies
    in the leader's log commit and the state machine applies one."""
    from tests.testkit.fault_proxy import FaultProxy

    cluster = make_kv_cluster(3)
    leader = cluster.leader()
    host, port = leader.address.rsplit(":", 1)
    with FaultProxy((host, int(port)), seed=5) as proxy:
        via_proxy = f"127.0.0.1:{proxy.port}"
        client = Client(
            [via_proxy], timeout=30, transport="grpc", address_map={leader.address: via_proxy}
        )
        with client:
            created = client.set("n", b"\x00")  # MsgPack 0
            stopped = [i for i in cluster.nodes if i != leader.node_id]
            for node_id in stopped:
                cluster.stop(node_id)  # no quorum: the write waits at the leader
            outcome: list[object] = []

            def write() -> None:
                try:
                    outcome.append(client.increment("n", 1, "msgpack", timeout=60))
                except BaseException as exc:
                    outcome.append(exc)

            base = leader.services.pipeline_stats().calls_in
            writer = threading.Thread(target=write)
            writer.start()
            wait_for(
                lambda: leader.services.pipeline_stats().calls_in > base, 15, "the write arrives"
            )
            proxy.reset()  # the connection drops under the waiting write
            wait_for(
                lambda: leader.services.pipeline_stats().calls_in > base + 1,
                30,
                "the write is resent",
            )
            for node_id in stopped:
                cluster.start(node_id)
            writer.join(90)
            assert not writer.is_alive()
            assert outcome == [(1, outcome[0][1])], outcome  # type: ignore[index]
            assert client.stats().unknown_outcomes == 0
            assert len(client.history("n", created)) == 1  # applied once


def test_a_local_client_uses_the_nodes_unix_socket(make_kv_cluster, tmp_path):
    path = tmp_path / "n1.sock"
    path.touch()  # not a socket: the node refuses to replace it
    with pytest.raises(ConfigError, match="is not a socket"):
        make_kv_cluster(1, {"unix_socket": str(path)})
    path.unlink()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # left behind by a dead node: replaced
    stale.close()
    cluster = make_kv_cluster(1, {"unix_socket": str(path)})
    node = cluster.leader()
    with Client([node.address], unix_sockets={node.address: str(path)}) as client:
        revision = client.set("k", b"v")
        assert client.get("k") == Entry(b"v", revision)
        connection = _pipeline(client, node.address)._connection
        assert connection is not None and connection._sock.family == socket.AF_UNIX
    with Client([node.address], unix_sockets={node.address: str(tmp_path / "none")}) as client:
        assert client.get("k") == Entry(b"v", revision)  # no such socket: TCP instead
        connection = _pipeline(client, node.address)._connection
        assert connection is not None and connection._sock.family == socket.AF_INET
