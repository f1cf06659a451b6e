"""`PubSubConnection` reads a real server's pub/sub frames whole and in order: large
payloads split across reads, many frames in one read, ping tags, error replies, a closed
connection, and RESP3."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.exceptions import ConnectionError, ResponseError

from dref.redis_pubsub import PubSubConnection, PushMessage

WAIT = 10.0


def _subscribed(url: str, channel: bytes) -> PubSubConnection:
    connection = PubSubConnection(redis.ConnectionPool.from_url(url))
    connection.subscribe(channel)
    assert connection.get_message(WAIT) == PushMessage(b"subscribe", channel, 1)
    return connection


@pytest.mark.parametrize("options", ["", "?protocol=3"])
def test_payloads_of_every_size_arrive_whole_and_in_order(redis_url: str, raw: Any, options):
    connection = _subscribed(redis_url + options, b"reader-test")
    sizes = [0, 1, 2, 100, 65_535, 65_536 + 10, 300_000, 7]
    payloads = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    try:
        with raw.pipeline(transaction=False) as pipe:  # many frames in one read
            for payload in payloads:
                pipe.publish("reader-test", payload)
            pipe.execute()
        connection.ping("after")
        got = [connection.get_message(WAIT) for _ in payloads]
        assert got == [PushMessage(b"message", b"reader-test", p) for p in payloads]
        assert connection.get_message(WAIT) == PushMessage(b"pong", b"", b"after")
        assert connection.get_message(0.05) is None  # nothing more: no message made up
        if options:  # RESP3 answers other commands on a subscribed connection as usual
            connection._send("GET", "reader-test-absent")
            assert connection.get_message(WAIT) == PushMessage(b"reply", b"", b"")
    finally:
        connection.close()


def test_an_error_reply_raises_and_a_closed_connection_says_so(redis_url: str, raw: Any):
    connection = _subscribed(redis_url + "?protocol=2", b"reader-errors")
    try:
        connection._send("GET", "x")  # not allowed on a subscribed RESP2 connection
        with pytest.raises(ResponseError, match="only"):
            connection.get_message(WAIT)
        raw.client_kill_filter(_type="pubsub")
        with pytest.raises(ConnectionError, match="closed"):
            for _ in range(100):
                connection.get_message(WAIT)
    finally:
        connection.close()
