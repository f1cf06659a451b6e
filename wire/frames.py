"""Length-prefixed frames of the native socket protocol, and its handshake.

A frame is a 4-byte big-endian body length, then the body: one kind byte and its payload.
Requests and answers travel as `PeerFrame` protobufs (the envelopes PeerStream carries),
so the consensus codec is shared with gRPC. A connection opens with one HELLO each way
(JSON: protocol version, role, cluster id, sender's id, the node id it expects to reach);
a side that refuses sends REFUSED with the reason, then closes. A node PINGs a connection
that sent nothing for its keepalive interval and drops it if no frame follows within half
of it, so a client or peer that stopped (SIGSTOP, a frozen VM) gives its thread back.
A frame, once its first byte arrived, must keep arriving at `MIN_FRAME_RATE` after a
`FRAME_TIMEOUT` grace (a minimum rate rather than a flat deadline, so a 64 MiB frame from
a slow link is fine while a one-byte-a-second trickle is dropped after the grace).
Peers (role "peer") send consensus requests; clients (role "client") send
`PipelineFrame`s of key/value calls.
"""

from __future__ import annotations

import enum
import json
import struct
import time
from dataclasses import dataclass
from typing import Protocol

from dref.errors import CodecError

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 64 * 1024 * 1024
"""Largest frame body accepted; snapshots travel in chunks far below it."""
FRAME_TIMEOUT = 5.0
"""Seconds of grace a frame has once its first byte arrived, before `MIN_FRAME_RATE` counts."""
MIN_FRAME_RATE = 256 * 1024
"""Bytes per second a started frame must average after the grace: byte n of a frame must
have arrived `FRAME_TIMEOUT + n / MIN_FRAME_RATE` seconds after its first (a 64 MiB frame
may take 261 s, far above loopback's or a 2 Mbit/s link's needs)."""
_HEADER = struct.Struct(">I")


class FrameKind(enum.IntEnum):
    HELLO = 1
    REFUSED = 2
    REQUESTS = 3
    ANSWERS = 4
    PING = 5
    """Sent by a node on a connection idle for its keepalive interval; answered by PONG."""
    PONG = 6


class FrameError(CodecError):
    """A frame that breaks the protocol (too large, unknown kind, bad handshake)."""


class FrameTimeout(FrameError):
    """A frame (or the TLS record carrying it) arrived slower than `MIN_FRAME_RATE` allows."""


class ConnectionClosed(ConnectionError):
    """The other side closed the connection (possibly in the middle of a frame)."""


def encode_frame(kind: FrameKind, payload: bytes) -> bytes:
    """One frame's bytes: the length header, the kind byte, the payload."""
    return _HEADER.pack(len(payload) + 1) + bytes((kind,)) + payload


class Receiver(Protocol):
    """A blocking byte source: a socket, or TLS over one (`dref.wire.tls.TlsSession`)."""

    def recv(self, count: int, /) -> bytes: ...

    def gettimeout(self) -> float | None: ...

    def settimeout(self, value: float | None, /) -> None: ...


class FrameReader:
    """Reads whole frames from a blocking socket (or TLS over one), one `recv` per chunk.

    The socket's own timeout bounds the wait for a frame's first byte (a node's keepalive);
    the rest of the frame must follow at `MIN_FRAME_RATE` after `FRAME_TIMEOUT`, or `read`
    raises FrameTimeout, so a trickle cannot hold a connection's thread.
    """

    def __init__(self, sock: Receiver, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self._sock = sock
        self._max = max_bytes
        self._buffer = bytearray()
        self._begun: float | None = None  # when the frame being read showed its first byte

    def read(self) -> tuple[FrameKind, bytes]:
        """The next frame; raises ConnectionClosed or FrameError (the connection is unusable),
        or the socket's TimeoutError while no byte of a frame has arrived."""
        idle = self._sock.gettimeout()
        if self._begun is None and self._buffer:
            self._begun = time.monotonic()
        try:
            header = self._take(_HEADER.size, "header")
            (length,) = _HEADER.unpack(header)
            if length == 0 or length > self._max:
                raise FrameError(f"frame of {length} bytes (limit {self._max})")
            body = self._take(length, "body")
        finally:
            if self._sock.gettimeout() != idle:
                self._sock.settimeout(idle)
        self._begun = None
        try:
            kind = FrameKind(body[0])
        except ValueError:
            raise FrameError(f"unknown frame kind {body[0]}") from None
        return kind, bytes(body[1:])

    def _take(self, count: int, part: str) -> bytes:
        buffer = self._buffer
        while len(buffer) < count:
            begun = self._begun
            if begun is not None:
                self._limit_wait(begun, len(buffer), count, part)
            try:
                chunk = self._sock.recv(max(65536, count - len(buffer)))
            except TimeoutError:
                if begun is None:
                    raise  # idle between frames: the caller's timeout
                raise self._too_slow(begun, len(buffer), count, part) from None
            if not chunk:
                torn = f" after {len(buffer)} of {count} bytes of a frame {part}" if buffer else ""
                raise ConnectionClosed(f"connection closed{torn}")
            if begun is None:
                self._begun = time.monotonic()
            buffer += chunk
        taken = bytes(buffer[:count])
        del buffer[:count]
        return taken

    def _limit_wait(self, begun: float, have: int, count: int, part: str) -> None:
        """Let the next `recv` wait only until the started frame falls below the rate."""
        left = begun + FRAME_TIMEOUT + have / MIN_FRAME_RATE - time.monotonic()
        if left <= 0:
            raise self._too_slow(begun, have, count, part)
        self._sock.settimeout(left)

    def _too_slow(self, begun: float, have: int, count: int, part: str) -> FrameTimeout:
        return FrameTimeout(
            f"a frame {part} arrived too slowly: {have} of {count} bytes in"
            f" {time.monotonic() - begun:.1f} s (at least {MIN_FRAME_RATE} bytes/s after"
            f" {FRAME_TIMEOUT:g} s)"
        )


@dataclass(frozen=True)
class Hello:
    """Who is calling whom: the first frame each side sends."""

    node_id: str
    expects: str
    """The node id the sender believes it reached ("" when answering)."""
    cluster_id: str = ""
    """Empty while the sender does not know its cluster's id."""
    protocol: int = PROTOCOL_VERSION
    role: str = "peer"
    """"peer" (another node) or "client"."""
    address: str = ""
    """A peer's own "host:port" for clients, as it advertises it: what a node names in a
    not-leader hint, rather than the address it dials that peer at."""

    def encode(self) -> bytes:
        body = {
            "protocol": self.protocol,
            "role": self.role,
            "node_id": self.node_id,
            "expects": self.expects,
            "cluster_id": self.cluster_id,
            "address": self.address,
        }
        return encode_frame(FrameKind.HELLO, json.dumps(body).encode())

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        try:
            body = json.loads(payload)
            hello = cls(
                node_id=body["node_id"],
                expects=body["expects"],
                cluster_id=body.get("cluster_id", ""),
                protocol=body["protocol"],
                role=body.get("role", "peer"),
                address=body.get("address", ""),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise FrameError(f"malformed handshake: {exc}") from None
        fields = (hello.node_id, hello.expects, hello.cluster_id, hello.role, hello.address)
        if not all(isinstance(f, str) for f in fields) or not isinstance(hello.protocol, int):
            raise FrameError("malformed handshake: wrong field types")
        return hello


def refusal(reason: str) -> bytes:
    """A REFUSED frame: why this side will not talk on the connection."""
    return encode_frame(FrameKind.REFUSED, reason.encode())
