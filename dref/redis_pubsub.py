"""The Redis backend's pub/sub connection, read straight from its socket.

Every write publishes two messages that every subscribed process receives, its own
included. redis-py's `PubSub` spends some 45 us of Python on each (a poll, retry and
health-check wrappers, dict building), which made a lock's acquire plus release cost more
in the listener thread than in the caller. Here redis-py still opens the connection (TCP
or Unix socket, TLS, AUTH, SELECT, client name), and this reads the RESP2 push frames of
a subscribed connection (`message`, `subscribe`, `pong`) from a buffer, a few
microseconds each: RESP2 arrays, or RESP3 pushes and plain ping replies when the URL
asks for `protocol=3`.
"""

from __future__ import annotations

import select
import ssl
import time
from typing import NamedTuple

import redis
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoPermissionError,
    RedisError,
    ResponseError,
)

from dref.redis_resp import pack_command

__all__ = ["PubSubConnection", "PushMessage"]

_READ_SIZE = 1 << 16
_ONE_LINE_REPLIES = (b"+", b":", b"_", b"#", b",")
"""RESP types of one line: a subscribed RESP3 connection may answer commands with them."""
_CRLF = b"\r\n"


class PushMessage(NamedTuple):
    """One frame: `kind` is b"message" (channel, payload), b"subscribe" (channel, count),
    b"pong" (b"", the ping's tag), or another push or reply kind, which callers skip."""

    kind: bytes
    channel: bytes
    data: bytes | int


class PubSubConnection:
    """A connection of `pool`'s kind, subscribed and read by one thread; `close()` it."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._connection = pool.connection_class(**pool.connection_kwargs)
        self._connection.connect()
        sock = self._connection._sock
        if sock is None:
            raise ConnectionError("Redis pub/sub connection did not open")
        self._sock = sock
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        self._buffer = bytearray()
        self._offset = 0

    def subscribe(self, *channels: bytes) -> None:
        """Ask for `channels`; each confirmation arrives as a b"subscribe" message."""
        self._send("SUBSCRIBE", *channels)

    def ping(self, tag: str = "") -> None:
        """Ask for a b"pong" message carrying `tag` (answered after everything before it)."""
        self._send("PING", tag)

    def get_message(self, timeout: float) -> PushMessage | None:
        """The next frame, waiting at most `timeout` seconds for it; None if none came.
        Redis's error replies raise as redis-py's exceptions do; a closed connection
        raises ConnectionError."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._parse()
            if message is not None:
                return message
            remaining = deadline - time.monotonic()
            if not self._fill(max(remaining, 0.0)) and remaining <= 0:
                return None

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self._connection.disconnect()

    def _send(self, *args: str | bytes) -> None:
        self._connection.send_packed_command(pack_command(args), check_health=False)

    def _fill(self, wait: float) -> bool:
        """Read what has arrived, waiting up to `wait` s for it; False if nothing came."""
        sock = self._sock
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
        if not pending and not self._poller.poll(wait * 1000):
            return False
        try:
            data = sock.recv(_READ_SIZE)
        except (BlockingIOError, TimeoutError, ssl.SSLWantReadError):
            return False  # a partial TLS record: the rest comes with the next wait
        if not data:
            raise ConnectionError("Redis closed the pub/sub connection")
        if self._offset > len(self._buffer) // 2:
            del self._buffer[: self._offset]
            self._offset = 0
        self._buffer += data
        return True

    def _parse(self) -> PushMessage | None:
        """The frame at the read position, or None while it is incomplete."""
        buffer, start = self._buffer, self._offset
        line_end = buffer.find(_CRLF, start)
        if line_end < 0:
            return None
        marker = buffer[start : start + 1]
        if marker == b"-":
            self._offset = line_end + 2
            raise _error(buffer[start + 1 : line_end].decode(errors="replace"))
        if marker in _ONE_LINE_REPLIES:  # RESP3 answers a PING without a tag with +PONG
            self._offset = line_end + 2
            text = bytes(buffer[start + 1 : line_end])
            return PushMessage(b"pong" if text == b"PONG" else b"reply", b"", text)
        if marker == b"$":  # RESP3's answer to a PING with a tag
            size = int(buffer[start + 1 : line_end])
            body = line_end + 2
            if len(buffer) < body + size + 2:
                return None
            self._offset = body + size + 2
            return PushMessage(b"pong", b"", bytes(buffer[body : body + size]))
        if marker not in (b"*", b">"):
            raise ConnectionError(f"unexpected pub/sub reply {bytes(buffer[start:line_end])!r}")
        count = int(buffer[start + 1 : line_end])
        items: list[bytes | int] = []
        position = line_end + 2
        for _ in range(count):
            line_end = buffer.find(_CRLF, position)
            if line_end < 0:
                return None
            kind = buffer[position : position + 1]
            if kind == b":":
                items.append(int(buffer[position + 1 : line_end]))
                position = line_end + 2
            elif kind == b"$":
                size = int(buffer[position + 1 : line_end])
                body = line_end + 2
                if len(buffer) < body + size + 2:
                    return None
                items.append(bytes(buffer[body : body + size]))
                position = body + size + 2
            else:
                raise ConnectionError(f"unexpected pub/sub item {bytes(kind)!r}")
        self._offset = position
        return _message(items)


def _message(items: list[bytes | int]) -> PushMessage:
    """A frame's items as a `PushMessage` (a pong's single item is its tag); a frame of
    another shape (a RESP3 push this reader does not use) keeps only its kind."""
    kind = items[0] if items else b""
    if not isinstance(kind, bytes):
        raise ConnectionError(f"unexpected pub/sub frame {items!r}")
    if kind == b"pong" and len(items) == 2 and isinstance(items[1], bytes):
        return PushMessage(kind, b"", items[1])
    if len(items) == 3 and isinstance(items[1], bytes):
        return PushMessage(kind, items[1], items[2])
    return PushMessage(kind, b"", b"")


def _error(text: str) -> RedisError:
    """Redis's error reply as the exception redis-py would raise for it."""
    if text.startswith("NOPERM"):
        return NoPermissionError(text)
    if text.startswith(("NOAUTH", "WRONGPASS")):
        return AuthenticationError(text)
    return ResponseError(text)
