"""Hostile input against a real in-process node: random and mutated bytes on its socket and
its gRPC methods get a typed error or a closed connection within a deadline, and after each
the node still serves a client and a known key is unchanged; a trickled frame and a host
opening too many connections are refused."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polling import wait_for

from dref.backend import Entry
from dref.raft.client import Client
from dref.wire.frames import (
    FRAME_TIMEOUT,
    ConnectionClosed,
    FrameKind,
    FrameReader,
    Hello,
    encode_frame,
)
from dref.wire.proto import dref_consensus_pb2, dref_native_pb2, dref_pb2
from dref.wire.proto import dref_native_pb2 as native
from dref.wire.proto import state_command_pb2 as sc

DEADLINE = 10.0
"""Seconds any one exchange may take; past it the node hung on hostile input."""
KNOWN, VALUE = "hostile-known-key-0123456789", b"must not change"
"""A key no seed names, so no single mutation of one can reach it."""
SCRATCH = "s"

HOSTILE = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
"""The node (a function-scoped fixture) is meant to live across examples: it must survive
them all."""

ADMIN_METHODS = {"TransferLeadership", "ChangeMembership"}
"""Left out: without TLS any caller may change membership (the README's trust model), so
random bytes decoding to a valid change would be an authorised change, not hostile input."""
STREAMING = {"Watch", "PeerStream", "Pipeline"}


def _unary_methods() -> list[MethodDescriptor]:
    """Every unary method of the node's gRPC services except the admin ones."""
    services = [
        *dref_pb2.DESCRIPTOR.services_by_name.values(),
        *dref_native_pb2.DESCRIPTOR.services_by_name.values(),
        *dref_consensus_pb2.DESCRIPTOR.services_by_name.values(),
    ]
    return [
        method
        for service in services
        for method in service.methods
        if method.name not in ADMIN_METHODS | STREAMING
    ]


UNARY = _unary_methods()


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def _seed(method: MethodDescriptor) -> bytes:
    """A valid request of `method` naming only SCRATCH (its fields by name where present)."""
    request = message_factory.GetMessageClass(method.input_type)()
    fields = request.DESCRIPTOR.fields_by_name
    if "name" in fields:
        request.name = SCRATCH
    if "value" in fields:
        request.value = b"v"
    return request.SerializeToString()


HELLO = Hello("client-hostile", "", role="client").encode()
"""A client's handshake, as `SocketPipeline` sends it."""


def _client_bytes() -> bytes:
    """What a real client sends first: its HELLO, then a frame of calls on SCRATCH."""
    calls = native.PipelineFrame(
        calls=[
            native.PipelineCall(id=1, set=sc.SetElementCommand(name=SCRATCH, value=b"v")),
            native.PipelineCall(id=2, get=native.NativeGetRequest(name=SCRATCH)),
        ]
    )
    return HELLO + encode_frame(FrameKind.REQUESTS, calls.SerializeToString())


@st.composite
def _mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """`valid` with one byte flipped, cut short, or with random bytes inserted."""
    at = draw(st.integers(0, len(valid) - 1))
    how = draw(st.sampled_from(["flip", "truncate", "insert"]))
    if how == "flip":
        return valid[:at] + bytes((valid[at] ^ draw(st.integers(1, 255)),)) + valid[at + 1 :]
    if how == "truncate":
        return valid[:at]
    return valid[:at] + draw(st.binary(min_size=1, max_size=64)) + valid[at:]


class Served:
    """A one-node cluster, its client, and the revision of KNOWN: checks it still serves."""

    def __init__(self, cluster: Any) -> None:
        self.node = cluster.leader()
        self.address = self.node.address
        self.client = Client([self.address], timeout=DEADLINE)
        self.revision = self.client.set(KNOWN, VALUE)
        self.socket_server = self.node.node.socket_server
        with self.socket_server._lock:
            self.connections = len(self.socket_server._connections)  # the client's own

    def check(self) -> None:
        """The node serves a write and a read, KNOWN is unchanged, and the hostile
        connections are gone."""
        assert self.client.set("probe", b"ok") > 0
        assert self.client.get(KNOWN) == Entry(VALUE, self.revision)

        def settled() -> bool:
            with self.socket_server._lock:
                return len(self.socket_server._connections) == self.connections

        wait_for(settled, DEADLINE, "the node closes the hostile connections")


@pytest.fixture
def served(make_kv_cluster: Any) -> Iterator[Served]:
    state = Served(make_kv_cluster(1))
    try:
        yield state
    finally:
        state.client.close()


def _exchange(port: int, data: bytes) -> list[tuple[FrameKind, bytes]]:
    """Send `data` on a new connection and half-close it; the frames the node answers
    before it closes the connection (fails if it does not within DEADLINE)."""
    frames: list[tuple[FrameKind, bytes]] = []
    deadline = time.monotonic() + DEADLINE
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the node refused and closed before taking it all
        reader = FrameReader(sock)
        for _ in range(1000):
            assert time.monotonic() < deadline, "the node kept the connection open"
            try:
                frames.append(reader.read())
            except (ConnectionClosed, ConnectionResetError):
                return frames
    raise AssertionError("the node sent over 1000 frames")


def _assert_typed(frames: list[tuple[FrameKind, bytes]]) -> None:
    """Every frame is a handshake, a refusal naming why, or answers with typed results."""
    for kind, payload in frames:
        assert kind in (FrameKind.HELLO, FrameKind.REFUSED, FrameKind.ANSWERS), kind
        if kind is FrameKind.REFUSED:
            assert payload.decode()
        elif kind is FrameKind.ANSWERS:
            for result in native.PipelineFrame.FromString(payload).results:
                if result.HasField("error"):
                    assert result.error.code in grpc.StatusCode.__members__


@HOSTILE
@given(data=st.binary(max_size=300))
def test_random_bytes_on_the_socket(served: Served, data: bytes) -> None:
    _assert_typed(_exchange(served.socket_server.port, data))
    served.check()


@HOSTILE
@given(data=_mutated(_client_bytes()))
def test_mutated_client_frames_on_the_socket(served: Served, data: bytes) -> None:
    _assert_typed(_exchange(served.socket_server.port, data))
    served.check()


@HOSTILE
@given(data=st.binary(max_size=200).map(lambda tail: HELLO + tail))
def test_random_bytes_after_a_valid_handshake(served: Served, data: bytes) -> None:
    _assert_typed(_exchange(served.socket_server.port, data))
    served.check()


def _call(channel: grpc.Channel, path: str, request: bytes) -> None:
    """One raw unary call: an answer or a typed status, never a hang or an unknown error."""
    call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    try:
        call(request, timeout=DEADLINE)
    except grpc.RpcError as error:
        assert error.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN), (
            path,
            error.code(),
            error.details(),
        )


@HOSTILE
@given(method=st.sampled_from(UNARY), request=st.binary(max_size=300))
def test_random_bytes_at_grpc_methods(served: Served, method: MethodDescriptor, request: bytes):
    with grpc.insecure_channel(served.address) as channel:
        _call(channel, _path(method), request)
    served.check()


@HOSTILE
@given(data=st.data())
def test_mutated_requests_at_grpc_methods(served: Served, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from([m for m in UNARY if _seed(m)]))
    request = data.draw(_mutated(_seed(method)))
    with grpc.insecure_channel(served.address) as channel:
        _call(channel, _path(method), request)
    served.check()


@HOSTILE
@given(frames=st.lists(st.binary(max_size=200), min_size=1, max_size=3))
def test_random_frames_on_a_pipeline_stream(served: Served, frames: list[bytes]) -> None:
    path = f"/{dref_native_pb2.DESCRIPTOR.services_by_name['DRefNative'].full_name}/Pipeline"
    with grpc.insecure_channel(served.address) as channel:
        stream = channel.stream_stream(path, request_serializer=None, response_deserializer=None)
        try:
            for answer in stream(iter(frames), timeout=DEADLINE):
                native.PipelineFrame.FromString(answer)
        except grpc.RpcError as error:
            assert error.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN)
    served.check()


def test_a_trickled_frame_is_dropped_within_the_frame_timeout(served: Served) -> None:
    """A valid HELLO, then a frame one byte a second: dropped FRAME_TIMEOUT after its
    first byte (plus a margin for a loaded machine), told why."""
    frame = encode_frame(FrameKind.REQUESTS, b"\x00" * 64)
    margin = 5.0
    with socket.create_connection(("127.0.0.1", served.socket_server.port), timeout=30) as sock:
        sock.sendall(HELLO)
        reader = FrameReader(sock)
        assert reader.read()[0] is FrameKind.HELLO
        start = time.monotonic()
        sock.settimeout(1.0)
        answer = None
        for byte in frame:  # bounded: the frame's length, one second each
            assert time.monotonic() - start < FRAME_TIMEOUT + margin, "the trickle was kept"
            try:
                sock.sendall(bytes((byte,)))
                answer = reader.read()  # waits up to a second: the trickle's pace
            except TimeoutError:
                continue
            except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
                break
            break
        elapsed = time.monotonic() - start
    assert answer is not None and answer[0] is FrameKind.REFUSED
    assert "arrived too slowly" in answer[1].decode()
    assert FRAME_TIMEOUT - 1 <= elapsed < FRAME_TIMEOUT + margin
    served.check()


def test_connections_per_host_are_capped(served: Served, monkeypatch: pytest.MonkeyPatch):
    """Past MAX_CONNECTIONS_PER_HOST from one address, a connection is refused by name."""
    cap = 4
    monkeypatch.setattr("dref.wire.node_socket.MAX_CONNECTIONS_PER_HOST", cap)
    port = served.socket_server.port
    held = [socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) for _ in range(cap)]
    try:
        # with the client's own connection, `held` already reached the cap: refused
        frames = _exchange(port, b"")
        assert frames and frames[0][0] is FrameKind.REFUSED
        assert "MAX_CONNECTIONS_PER_HOST" in frames[0][1].decode()
    finally:
        for sock in held:
            sock.close()
    served.check()


def test_calls_beyond_the_in_flight_cap_are_refused_on_an_open_connection(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_CALLS_IN_FLIGHT a call is answered RESOURCE_EXHAUSTED; the connection stays
    and serves the next frame (a cap of 0 refuses every call)."""
    monkeypatch.setattr("dref.raft.server.pipelines.MAX_CALLS_IN_FLIGHT", 0)
    call = native.PipelineCall(id=7, get=native.NativeGetRequest(name=SCRATCH))
    frame = encode_frame(FrameKind.REQUESTS, native.PipelineFrame(calls=[call]).SerializeToString())
    port = served.socket_server.port
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(HELLO)
        reader = FrameReader(sock)
        assert reader.read()[0] is FrameKind.HELLO
        for _ in range(2):
            sock.sendall(frame)
            kind, payload = reader.read()
            assert kind is FrameKind.ANSWERS
            (result,) = native.PipelineFrame.FromString(payload).results
            assert result.id == 7 and result.error.code == "RESOURCE_EXHAUSTED"
            assert "too-many-calls" in result.error.details
    monkeypatch.undo()
    served.check()


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _grpc_port_answers(host: str, port: int) -> bool:
    """Whether a fresh connection to the gRPC port gets the server's HTTP/2 settings."""
    with socket.create_connection((host, port), timeout=DEADLINE) as sock:
        try:
            sock.sendall(_HTTP2_PREFACE)
            return sock.recv(1024) != b""
        except ConnectionResetError:
            return False  # closed with a reset: refused


def test_grpc_connections_are_capped(make_kv_cluster: Any, monkeypatch: pytest.MonkeyPatch):
    """Past MAX_INCOMING_CONNECTIONS the gRPC port closes a new connection at once; when
    the holders leave, it serves again."""
    cap = 4
    monkeypatch.setattr("dref.raft.node.MAX_INCOMING_CONNECTIONS", cap)
    address = make_kv_cluster(1).leader().address
    host, _, port = address.rpartition(":")
    held = [socket.create_connection((host, int(port)), timeout=DEADLINE) for _ in range(cap)]
    try:
        assert not _grpc_port_answers(host, int(port)), "the node answered past its cap"
    finally:
        for sock in held:
            sock.close()
    # The server counts a connection until its poller sees the close: poll with raw
    # connections (a gRPC channel would back off for seconds after one refusal).
    wait_for(lambda: _grpc_port_answers(host, int(port)), DEADLINE, "the cap frees up")
    with Client([address], timeout=DEADLINE, transport="grpc") as client:
        wait_for(lambda: client.status(address)["node_id"], DEADLINE, "the node serves gRPC")
