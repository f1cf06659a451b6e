"""The peer stream: many requests over one long-lived call, answers matched by id in order,
bad frames and strangers refused, stuck or broken streams replaced, and a fallback to
unary calls for peers without PeerStream. Real gRPC servers on loopback, no mocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import grpc
import pytest

from dref.actors.consensus.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    PreVote,
    PreVoteResponse,
)
from dref.wire.consensus_codec import NATIVE_SERVICE, encode_request
from dref.wire.consensus_service import CHANNEL_OPTIONS, ConsensusServicer, PeerClient
from dref.wire.peer_stream import PEER_STREAM_METHOD, PEER_STREAM_PATH, serve_peer_stream
from dref.wire.proto import dref_consensus_pb2 as pb

DEADLINE = 15.0


def _answer(message: Message) -> Message | None:
    """What the test node answers: enough to tell which request each reply is for."""
    if isinstance(message, Heartbeat):
        return HeartbeatResponse(sender="b", term=message.term, context=message.context)
    if isinstance(message, AppendEntries):
        return AppendEntriesResponse(
            sender="b", term=message.term, success=True, match_index=message.prev_index
        )
    if isinstance(message, PreVote):
        return PreVoteResponse(sender="b", term=message.term, granted=True)
    if isinstance(message, InstallSnapshot):
        return InstallSnapshotResponse(
            sender="b", term=message.term, match_index=message.last_index
        )
    return None


class Peer:
    """Node "b" (members a and b) serving on 127.0.0.1; its first `stuck` streams never answer."""

    def __init__(self, port: int = 0, *, peer_stream: bool = True, stuck: int = 0) -> None:
        self.streams = 0
        self.stuck_ended = threading.Event()
        self._stuck = stuck
        self._lock = threading.Lock()
        self.servicer = ConsensusServicer("b", frozenset({"a", "b"}), self._submit, timeout=5.0)
        self.server = grpc.server(ThreadPoolExecutor(max_workers=16), options=CHANNEL_OPTIONS)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        assert self.port
        if peer_stream:
            stream = grpc.stream_stream_rpc_method_handler(self._stream)
            self.server.add_generic_rpc_handlers(
                [grpc.method_handlers_generic_handler(NATIVE_SERVICE, {PEER_STREAM_METHOD: stream})]
            )
        self.server.add_generic_rpc_handlers(self.servicer.handlers(peer_stream=False))
        self.server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(grace=None).wait(timeout=5)

    def _submit(self, message: Message) -> Future[Message | None]:
        reply: Future[Message | None] = Future()
        reply.set_result(_answer(message))
        return reply

    def _stream(self, frames: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        with self._lock:
            self.streams += 1
            stuck = self.streams <= self._stuck
        if stuck:  # a silently stuck connection: reads nothing, answers nothing
            ended = threading.Event()
            context.add_callback(ended.set)
            ended.wait(DEADLINE)
            self.stuck_ended.set()
            return iter(())
        return serve_peer_stream(frames, context, self.servicer.admit, self._submit)


class Replies:
    """Collects replies (from any thread) and waits for them with a deadline."""

    def __init__(self) -> None:
        self.got: list[Message] = []
        self._cond = threading.Condition()

    def __call__(self, reply: Message) -> None:
        with self._cond:
            self.got.append(reply)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = DEADLINE) -> list[Message]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.got) >= count, timeout), self.got[-3:]
            return list(self.got)


def _heartbeat(context: int) -> Heartbeat:
    return Heartbeat(sender="a", term=1, commit=0, context=context)


def _until_answered(client: PeerClient, timeout: float = DEADLINE) -> int:
    """Send heartbeats until one is answered; how many were sent."""
    replies = Replies()
    deadline = time.monotonic() + timeout
    sent = 0
    while time.monotonic() < deadline:
        sent += 1
        client.send(_heartbeat(sent), replies)
        with replies._cond:
            if replies._cond.wait_for(lambda: bool(replies.got), 0.1):
                return sent
    raise AssertionError(f"no answer within {timeout}s ({sent} heartbeats sent)")


@pytest.fixture
def peer() -> Iterator[Peer]:
    started = Peer()
    yield started
    started.stop()


@pytest.fixture
def client_to() -> Iterator[Callable[..., PeerClient]]:
    clients: list[PeerClient] = []

    def make(peer: Peer, timeout: float = 5.0) -> PeerClient:
        clients.append(PeerClient("b", peer.address, timeout=timeout))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def test_many_requests_share_one_stream_and_answers_keep_their_order(peer, client_to) -> None:
    client = client_to(peer)
    replies = Replies()
    expected: list[tuple[type[Message], int]] = []
    for n in range(1, 601):
        if n % 3 == 0:
            client.send(
                AppendEntries(
                    sender="a", term=1, prev_index=n, prev_term=1, entries=(), leader_commit=0
                ),
                replies,
            )
            expected.append((AppendEntriesResponse, n))
        elif n % 7 == 0:
            client.send(PreVote(sender="a", term=n, last_log_index=0, last_log_term=0), replies)
            expected.append((PreVoteResponse, n))
        else:
            client.send(_heartbeat(n), replies)
            expected.append((HeartbeatResponse, n))
    got = replies.wait_for(len(expected))

    def key(reply: Message) -> tuple[type[Message], int]:
        if isinstance(reply, HeartbeatResponse):
            return HeartbeatResponse, reply.context
        if isinstance(reply, AppendEntriesResponse):
            return AppendEntriesResponse, reply.match_index
        return type(reply), reply.term

    assert [key(r) for r in got] == expected
    assert all(r.sender == "b" for r in got)
    assert peer.streams == 1
    assert client.streaming


def test_snapshots_travel_as_unary_calls(peer, client_to) -> None:
    client = client_to(peer)
    replies = Replies()
    snapshot = InstallSnapshot(
        sender="a",
        term=2,
        last_index=40,
        last_term=2,
        voters=frozenset({"a", "b"}),
        learners=frozenset(),
        offset=0,
        data=b"image",
        done=True,
    )
    client.send(snapshot, replies)
    (reply,) = replies.wait_for(1)
    assert isinstance(reply, InstallSnapshotResponse) and reply.match_index == 40
    assert peer.streams == 0


def _raw_stream(address: str, frames: list[bytes]) -> list[pb.PeerFrame]:
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(PEER_STREAM_PATH)(iter(frames), timeout=DEADLINE)
        return [pb.PeerFrame.FromString(data) for data in call]


def _frame(*envelopes: tuple[int, str, bytes]) -> bytes:
    frame = pb.PeerFrame()
    for ident, method, payload in envelopes:
        frame.envelopes.add(id=ident, method=method, payload=payload)
    return frame.SerializeToString()


def test_a_half_closed_stream_gets_every_answer_then_ends(peer) -> None:
    request = encode_request(_heartbeat(5)).SerializeToString()
    frames = _raw_stream(
        peer.address, [_frame((7, "Heartbeat", request), (9, "Heartbeat", request))]
    )
    answers = [envelope for frame in frames for envelope in frame.envelopes]
    assert sorted(envelope.id for envelope in answers) == [7, 9]
    for envelope in answers:
        assert envelope.method == "Heartbeat"
        assert pb.HeartbeatResponse.FromString(envelope.payload).context == 5


def test_unknown_sender_aborts_the_stream(peer) -> None:
    stranger = Heartbeat(sender="mallory", term=9, commit=0, context=1)
    frame = _frame((1, "Heartbeat", encode_request(stranger).SerializeToString()))
    with pytest.raises(grpc.RpcError) as caught:
        _raw_stream(peer.address, [frame])
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "mallory" in (caught.value.details() or "")
    own = Heartbeat(sender="b", term=9, commit=0, context=1)
    with pytest.raises(grpc.RpcError) as caught:
        _raw_stream(
            peer.address, [_frame((1, "Heartbeat", encode_request(own).SerializeToString()))]
        )
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    "frame",
    [
        b"\x0a\xff\xff\xff\xff",  # not a PeerFrame
        _frame((1, "Heartbeat", b"\x0a\xff\xff\xff\xff")),  # not a HeartbeatRequest
        _frame((1, "NoSuchMethod", b"")),
    ],
    ids=["frame", "payload", "method"],
)
def test_malformed_frames_abort_with_invalid_argument(peer, frame: bytes) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _raw_stream(peer.address, [frame])
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_a_stuck_stream_is_replaced_after_the_timeout(client_to) -> None:
    peer = Peer(stuck=1)
    try:
        client = client_to(peer, timeout=0.3)
        sent = _until_answered(client)
        assert sent > 1  # the first heartbeat went into the stuck stream
        assert peer.stuck_ended.wait(DEADLINE), "the stuck stream was never cancelled"
        assert peer.streams == 2
        replies = Replies()
        client.send(_heartbeat(1000), replies)
        assert replies.wait_for(1)[0].context == 1000
    finally:
        peer.stop()


def test_reconnects_to_a_restarted_peer(client_to) -> None:
    peer = Peer()
    client = client_to(peer, timeout=1.0)
    try:
        assert _until_answered(client) == 1
    finally:
        peer.stop()
    restarted = Peer(peer.port)
    try:
        _until_answered(client)
        assert restarted.streams >= 1
    finally:
        restarted.stop()


def test_falls_back_to_unary_calls_without_peer_stream(client_to) -> None:
    peer = Peer(peer_stream=False)
    try:
        client = client_to(peer)
        replies = Replies()
        for n in range(1, 21):
            client.send(_heartbeat(n), replies)
        got = replies.wait_for(20)
        assert sorted(r.context for r in got) == list(range(1, 21))  # none lost
        assert not client.streaming
        _until_answered(client)
    finally:
        peer.stop()


def test_send_after_close_raises_value_error(peer, client_to) -> None:
    client = client_to(peer)
    assert _until_answered(client) == 1
    client.close()
    with pytest.raises(ValueError):
        client.send(_heartbeat(1), Replies())
