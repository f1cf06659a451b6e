"""A Redis that is down, hung or restarted: typed errors within the timeout, then recovery."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from dref.backend import ChangeKind, Entry
from dref.errors import BackendUnavailableError
from dref.redis_backend import RedisBackend


def timed_failure(call: Any, limit: float) -> None:
    """`call()` raises BackendUnavailableError, and does so within `limit` seconds."""
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        call()
    assert time.monotonic() - started < limit


def test_nothing_listening(recorder: Any) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        backend = RedisBackend(f"redis://127.0.0.1:{port}/0", timeout=1.0)
        try:
            timed_failure(lambda: backend.get("n"), 2.0)
            timed_failure(lambda: backend.set("n", b"v"), 2.0)
            started = time.monotonic()
            backend.subscribe("n", recorder())  # returns after the timeout; resyncs later
            assert time.monotonic() - started < 2.0
        finally:
            backend.close()
    assert not [t for t in threading.enumerate() if t.name == "dref-redis-pubsub"]


def test_hung_server_times_out(own_server: Any) -> None:
    backend = RedisBackend(own_server.url, timeout=1.0)
    try:
        backend.set("n", b"v")
        os.kill(own_server.process.pid, signal.SIGSTOP)
        try:
            timed_failure(lambda: backend.get("n", timeout=0.2), 0.7)  # the reply's bound
            timed_failure(lambda: backend.get("n"), 2.0)  # reconnecting: the backend timeout
        finally:
            os.kill(own_server.process.pid, signal.SIGCONT)
        assert backend.get("n") is not None
    finally:
        backend.close()


def test_restart_mid_stream(own_server: Any, recorder: Any) -> None:
    backend = RedisBackend(own_server.url, timeout=1.0, poll_interval=0.2)
    events = recorder()
    try:
        backend.set("n", b"before")
        backend.subscribe("n", events)
        backend.set("n", b"live")
        events.wait_for(lambda e: len(e) == 1)
        own_server.kill()
        timed_failure(lambda: backend.get("n"), 2.0)
        timed_failure(lambda: backend.set("n", b"lost"), 2.0)
        timed_failure(lambda: backend.compare_and_delete("n", Entry(b"x", 1)), 2.0)
        own_server.start()  # same port, no persistence: the value is gone
        got = events.wait_for(lambda e: len(e) == 2, timeout=15)
        assert (got[1].kind, got[1].revision) == (ChangeKind.DELETE, 0)  # the resync's event
        deadline = time.monotonic() + 10
        while True:  # the pool reconnects by itself
            try:
                revision = backend.set("n", b"after")
                break
            except BackendUnavailableError:
                assert time.monotonic() < deadline
        got = events.wait_for(lambda e: len(e) == 3)
        assert (got[2].kind, got[2].value, got[2].revision) == (ChangeKind.SET, b"after", revision)
    finally:
        backend.close()
    assert not [t for t in threading.enumerate() if t.name == "dref-redis-pubsub"]


def test_close_during_outage_does_not_hang(own_server: Any, recorder: Any) -> None:
    backend = RedisBackend(own_server.url, timeout=1.0)
    backend.subscribe("n", recorder())
    own_server.kill()
    started = time.monotonic()
    backend.close()
    assert time.monotonic() - started < 3.0
    assert not [t for t in threading.enumerate() if t.name == "dref-redis-pubsub"]
