"""A begun frame (or the TLS record carrying it) must finish within its deadline, while a
connection with nothing begun waits as its socket's timeout says (a node's keepalive)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from dref.wire.frames import FrameKind, FrameReader, FrameTimeout, encode_frame
from dref.wire.tls import TlsSession

GRACE = 0.3
"""The patched FRAME_TIMEOUT: short, so a stalled frame is dropped fast."""


@pytest.fixture
def pair(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[socket.socket, socket.socket]]:
    monkeypatch.setattr("dref.wire.frames.FRAME_TIMEOUT", GRACE)
    monkeypatch.setattr("dref.wire.tls.FRAME_TIMEOUT", GRACE)
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(30.0)  # the idle timeout: far above the grace
        yield left, right


def test_a_stalled_frame_is_dropped_after_the_grace(pair: tuple[socket.socket, socket.socket]):
    left, right = pair
    right.sendall(encode_frame(FrameKind.PING, b"abc")[:6])  # header and two bytes, then none
    start = time.monotonic()
    with pytest.raises(FrameTimeout, match="frame body arrived too slowly: 2 of 4 bytes"):
        FrameReader(left).read()
    assert GRACE <= time.monotonic() - start < GRACE + 5
    assert left.gettimeout() == 30.0  # the caller's timeout is restored


def test_an_idle_connection_times_out_as_its_socket_says(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    left.settimeout(GRACE / 2)
    with pytest.raises(TimeoutError) as raised:
        FrameReader(left).read()
    assert not isinstance(raised.value, FrameTimeout)
    right.sendall(encode_frame(FrameKind.PONG, b""))
    left.settimeout(30.0)
    assert FrameReader(left).read() == (FrameKind.PONG, b"")


def test_a_large_frame_in_time_is_read(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    payload = b"x" * (4 * 1024 * 1024)  # far more than a socketpair buffers: many recvs
    frame = encode_frame(FrameKind.ANSWERS, payload)
    writer = threading.Thread(target=right.sendall, args=(frame,))
    writer.start()
    assert FrameReader(left).read() == (FrameKind.ANSWERS, payload)
    writer.join(30)
    assert not writer.is_alive()
    assert left.gettimeout() == 30.0


def test_a_stalled_tls_record_is_dropped_after_the_grace(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    left, right = pair
    session = TlsSession(left, ssl.create_default_context(), server_hostname="node")
    right.sendall(bytes((0x16, 3, 3, 0, 100, 0)))  # a record of 100 bytes: its first one
    start = time.monotonic()
    with pytest.raises(FrameTimeout, match="TLS record"):
        session.recv(10)
    assert GRACE <= time.monotonic() - start < GRACE + 5
    assert left.gettimeout() == 30.0
