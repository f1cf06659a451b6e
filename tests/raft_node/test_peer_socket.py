"""The native socket transport between nodes: handshake refusals on both sides, torn,
oversized and malformed frames, a peer that stops reading, resets mid-frame, reconnects,
the gRPC fallback, and whole clusters replicating over it. Real sockets on loopback."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from node_cluster import Cluster, wait_until

from dref.actors.consensus.messages import Heartbeat, HeartbeatResponse, Message
from dref.actors.peer_links import PeerLinks
from dref.errors import ConfigError
from dref.raft.config import NodeConfig
from dref.wire.consensus_codec import Rpc, encode_request
from dref.wire.consensus_service import ConsensusServicer
from dref.wire.frames import (
    MAX_FRAME_BYTES,
    ConnectionClosed,
    FrameKind,
    FrameReader,
    Hello,
    encode_frame,
)
from dref.wire.node_socket import FrameSender, NodeSocketServer, PeerSocketClient
from dref.wire.proto import dref_consensus_pb2 as pb

DEADLINE = 15.0


def _heartbeat_answer(message: Message) -> Future[Message | None]:
    reply: Future[Message | None] = Future()
    if isinstance(message, Heartbeat):
        reply.set_result(HeartbeatResponse(sender="b", term=message.term, context=message.context))
    else:
        reply.set_result(None)
    return reply


@pytest.fixture
def server() -> Iterator[NodeSocketServer]:
    """Node "b" of cluster "c1" (members a and b), answering heartbeats."""
    servicer = ConsensusServicer("b", frozenset({"a", "b"}), _heartbeat_answer, timeout=5.0)
    started = NodeSocketServer("b", "127.0.0.1", 0, cluster_id=lambda: "c1", stall_timeout=2.0)
    started.serve(servicer.admit, _heartbeat_answer)
    yield started
    started.close()


def _dial(server: NodeSocketServer, hello: Hello) -> tuple[socket.socket, FrameReader]:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
    sock.sendall(hello.encode())
    return sock, FrameReader(sock)


def _requests_frame(*messages: Message) -> bytes:
    frame = pb.PeerFrame()
    for ident, message in enumerate(messages, start=1):
        payload = encode_request(message).SerializeToString()
        frame.envelopes.add(id=ident, method=Rpc.HEARTBEAT.value.method, payload=payload)
    return encode_frame(FrameKind.REQUESTS, frame.SerializeToString())


def _client(server: NodeSocketServer, node_id: str, peer_id: str, **kw: object) -> PeerSocketClient:
    port = server.port
    return PeerSocketClient(node_id, peer_id, "127.0.0.1", lambda: port, timeout=2.0, **kw)  # type: ignore[arg-type]


def _heartbeat(term: int = 1, context: int = 7) -> Heartbeat:
    return Heartbeat(sender="a", term=term, commit=0, context=context)


def _assert_serves(server: NodeSocketServer) -> None:
    """A well-behaved peer still gets its answers."""
    sock, reader = _dial(server, Hello("a", "b", "c1"))
    with sock:
        assert reader.read()[0] is FrameKind.HELLO
        sock.sendall(_requests_frame(_heartbeat(context=42)))
        kind, payload = reader.read()
        assert kind is FrameKind.ANSWERS
        envelope = pb.PeerFrame.FromString(payload).envelopes[0]
        assert envelope.id == 1
        assert pb.HeartbeatResponse.FromString(envelope.payload).context == 42


# ------------------------------------------------------------------- handshake


def test_answers_requests_after_a_handshake(server: NodeSocketServer) -> None:
    sock, reader = _dial(server, Hello("a", "b", "c1"))
    with sock:
        kind, payload = reader.read()
        assert kind is FrameKind.HELLO
        hello = Hello.decode(payload)
        assert (hello.node_id, hello.expects, hello.cluster_id) == ("b", "a", "c1")
        sock.sendall(_requests_frame(_heartbeat(context=1), _heartbeat(context=2)))
        contexts: list[int] = []
        while len(contexts) < 2:
            kind, payload = reader.read()
            assert kind is FrameKind.ANSWERS
            for envelope in pb.PeerFrame.FromString(payload).envelopes:
                contexts.append(pb.HeartbeatResponse.FromString(envelope.payload).context)
        assert sorted(contexts) == [1, 2]


@pytest.mark.parametrize(
    ("hello", "reason"),
    [
        (Hello("a", "b", "other-cluster"), "belongs to cluster 'other-cluster'"),
        (Hello("a", "c", "c1"), "this is node 'b', not 'c'"),
        (Hello("a", "b", "c1", protocol=99), "protocol version 99 is not supported"),
        (Hello("b", "b", "c1"), "cannot connect to itself"),
    ],
)
def test_server_refuses_a_bad_handshake_with_the_reason(
    server: NodeSocketServer, hello: Hello, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    sock, reader = _dial(server, hello)
    with sock, caplog.at_level(logging.WARNING, logger="dref.raft"):
        kind, payload = reader.read()
        assert kind is FrameKind.REFUSED
        assert reason in payload.decode()
        with pytest.raises((ConnectionClosed, OSError)):
            reader.read()
    assert reason in caplog.text
    _assert_serves(server)


def test_client_refuses_a_node_of_another_id_or_cluster(
    server: NodeSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Both ends say why: the dialer's log names the id it found, and how it was refused."""
    with caplog.at_level(logging.WARNING, logger="dref.raft"):
        wrong_id = _client(server, "a", "x")  # "b" answers where "x" was expected
        other_cluster = _client(server, "a", "b", cluster_id=lambda: "c2")
        try:
            wait_until(lambda: "not 'x'" in caplog.text and "'c2'" in caplog.text, DEADLINE)
        finally:
            wrong_id.close()
            other_cluster.close()
    assert not wrong_id.connected.is_set() and not other_cluster.connected.is_set()
    assert "this is node 'b', not 'x'" in caplog.text
    assert "belongs to cluster 'c2'" in caplog.text  # the server's refusal of the dialer


def test_a_silent_connection_is_dropped_after_the_handshake_timeout(
    server: NodeSocketServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dref.wire.node_socket.HANDSHAKE_TIMEOUT", 0.3)
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        assert sock.recv(100) == b""  # sent nothing: closed by the server
    _assert_serves(server)


def test_a_stalled_handshake_frame_is_dropped_after_the_frame_timeout(
    server: NodeSocketServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dref.wire.frames.FRAME_TIMEOUT", 0.3)
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
        sock.sendall(b"\x00\x00")  # two bytes of a header, then nothing
        kind, payload = FrameReader(sock).read()
        assert kind is FrameKind.REFUSED and "arrived too slowly" in payload.decode()
        assert sock.recv(100) == b""  # then closed
    _assert_serves(server)


# ---------------------------------------------------------------------- frames


def test_oversized_frame_is_refused_and_the_node_keeps_serving(server: NodeSocketServer) -> None:
    sock, reader = _dial(server, Hello("a", "b", "c1"))
    with sock:
        assert reader.read()[0] is FrameKind.HELLO
        sock.sendall(struct.pack(">I", MAX_FRAME_BYTES + 1))
        kind, payload = reader.read()
        assert kind is FrameKind.REFUSED
        assert f"frame of {MAX_FRAME_BYTES + 1} bytes" in payload.decode()
    _assert_serves(server)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (encode_frame(FrameKind.REQUESTS, b"\xff\xff\xff"), "malformed PeerFrame"),
        (b"\x00\x00\x00\x01\x09", "unknown frame kind 9"),
        (encode_frame(FrameKind.ANSWERS, b""), "unexpected ANSWERS frame"),
    ],
)
def test_malformed_frames_are_refused(server: NodeSocketServer, frame: bytes, reason: str) -> None:
    sock, reader = _dial(server, Hello("a", "b", "c1"))
    with sock:
        assert reader.read()[0] is FrameKind.HELLO
        sock.sendall(frame)
        kind, payload = reader.read()
        assert kind is FrameKind.REFUSED and reason in payload.decode()
    _assert_serves(server)


def test_a_stranger_is_refused(server: NodeSocketServer) -> None:
    """The handshake names a member, but a request's sender is not one."""
    sock, reader = _dial(server, Hello("a", "b", "c1"))
    with sock:
        assert reader.read()[0] is FrameKind.HELLO
        stranger = Heartbeat(sender="mallory", term=1, commit=0, context=1)
        sock.sendall(_requests_frame(stranger))
        kind, payload = reader.read()
        assert kind is FrameKind.REFUSED and "unknown peer id 'mallory'" in payload.decode()
    _assert_serves(server)


def test_torn_frame_then_reset_leaves_the_server_serving(server: NodeSocketServer) -> None:
    sock, reader = _dial(server, Hello("a", "b", "c1"))
    assert reader.read()[0] is FrameKind.HELLO
    frame = _requests_frame(_heartbeat())
    sock.sendall(frame[: len(frame) // 2])
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST in the middle of a frame
    _assert_serves(server)


def test_frame_reader_reports_a_torn_frame() -> None:
    left, right = socket.socketpair()
    with left, right:
        frame = encode_frame(FrameKind.HELLO, b"0123456789")
        left.sendall(frame[:7])
        left.close()
        with pytest.raises(ConnectionClosed, match="after 3 of 11 bytes of a frame body"):
            FrameReader(right).read()


# ---------------------------------------------------------------- slow peers


def test_a_peer_that_stops_reading_never_blocks_the_sender() -> None:
    """Sends return at once, the backlog is bounded, and the stall is detected."""
    left, right = socket.socketpair()
    broken = threading.Event()
    sender = FrameSender(
        left,
        name="test",
        stall_timeout=0.5,
        on_broken=lambda reason: broken.set(),
        max_backlog=1 << 20,
    )
    frame = encode_frame(FrameKind.REQUESTS, b"x" * 65536)
    try:
        started = time.monotonic()
        results = [sender.send(frame) for _ in range(200)]  # 13 MB to a reader reading nothing
        assert time.monotonic() - started < 2.0
        assert results[0] and not results[-1]  # the first went out, the last was dropped
        assert broken.wait(DEADLINE)
    finally:
        sender.close()
        left.close()
        right.close()


def test_frames_sent_while_one_is_in_flight_arrive_whole_and_in_order() -> None:
    left, right = socket.socketpair()
    sender = FrameSender(left, name="test", stall_timeout=5.0, on_broken=lambda reason: None)
    count = 300
    frames = [encode_frame(FrameKind.ANSWERS, i.to_bytes(4, "big") * 4096) for i in range(count)]

    def send_all(part: list[bytes]) -> None:
        for frame in part:
            assert sender.send(frame)

    threads = [threading.Thread(target=send_all, args=(frames[i::3],)) for i in range(3)]
    for thread in threads:
        thread.start()
    reader = FrameReader(right)
    right.settimeout(DEADLINE)
    seen = [reader.read()[1] for _ in range(count)]
    for thread in threads:
        thread.join(DEADLINE)
    sender.close()
    left.close()
    right.close()
    assert sorted(seen) == sorted(f[5:] for f in frames)  # every frame whole
    for i in range(3):  # each thread's frames in the order it sent them
        mine = [s for s in seen if int.from_bytes(s[:4], "big") % 3 == i]
        assert mine == [f[5:] for f in frames[i::3]]


# ------------------------------------------------------------------- the link


def test_link_reconnects_after_the_connection_is_reset(server: NodeSocketServer) -> None:
    answers: list[Message] = []
    got = threading.Event()

    def on_reply(message: Message) -> None:
        answers.append(message)
        got.set()

    client = _client(server, "a", "b", cluster_id=lambda: "c1")
    try:
        assert client.connected.wait(DEADLINE)
        client.send(_heartbeat(context=1), on_reply)
        assert got.wait(DEADLINE)
        server.close()  # every connection reset; the port is gone too
        wait_until(lambda: not client.connected.is_set(), DEADLINE, "the link noticing")
        servicer = ConsensusServicer("b", frozenset({"a", "b"}), _heartbeat_answer, timeout=5.0)
        again = NodeSocketServer("b", "127.0.0.1", server.port, cluster_id=lambda: "c1")
        again.serve(servicer.admit, _heartbeat_answer)
        try:
            got.clear()
            assert client.connected.wait(DEADLINE)
            client.send(_heartbeat(context=2), on_reply)
            assert got.wait(DEADLINE)
        finally:
            again.close()
    finally:
        client.close()
    assert [m.context for m in answers] == [1, 2]  # type: ignore[attr-defined]


# ------------------------------------------------------------------- clusters


def _links_of(node: object) -> dict[str, object]:
    links = node._transports[0]  # type: ignore[attr-defined]
    assert isinstance(links, PeerLinks)
    return {peer: link for peer, (_, link) in links._links.items()}


def test_cluster_replicates_over_sockets(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path).start_all()
    try:
        leader = cluster.leader()
        for i in range(50):
            leader.propose(f"item-{i}".encode(), timeout=10)
        cluster.wait_applied(50)
        for node in cluster.nodes.values():
            for link in _links_of(node).values():
                assert isinstance(link, PeerSocketClient)
                assert link.connected.is_set() and link._fallback_link is None
    finally:
        cluster.close()


def test_mixed_cluster_falls_back_to_grpc_for_a_peer_without_a_socket(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    grpc_only = {"n3"}
    try:
        for node_id in cluster.ids:
            if node_id in grpc_only:
                cluster.options["peer_transport"] = "grpc"
            cluster.start(node_id)
            cluster.options.pop("peer_transport", None)
        leader = cluster.leader()
        for i in range(20):
            leader.propose(f"item-{i}".encode(), timeout=10)
        cluster.wait_applied(20)
        link = _links_of(cluster.nodes["n1"])["n3"]
        assert isinstance(link, PeerSocketClient) and link._fallback_link is not None
        assert _links_of(cluster.nodes["n1"])["n2"]._fallback_link is None  # type: ignore[attr-defined]
    finally:
        cluster.close()


def test_a_used_peer_port_fails_at_once_naming_it(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cluster = Cluster(tmp_path, size=1, peer_listen=f"127.0.0.1:{port}")
        started = time.monotonic()
        with pytest.raises(ConfigError, match=f"cannot listen on node socket 127.0.0.1:{port}"):
            cluster.start("n1")
        assert time.monotonic() - started < 1.0


def test_peer_transport_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="peer_transport must be one of socket, grpc"):
        NodeConfig("n1", "127.0.0.1:0", {}, tmp_path, peer_transport="udp")
    with pytest.raises(ConfigError, match="peer_listen must be 'host:port'"):
        NodeConfig("n1", "127.0.0.1:0", {}, tmp_path, peer_listen="nowhere")
