"""Revisions, conditional writes and fenced locks: what the backend adds over upstream."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest
import redis

from dref.backend import Entry
from dref.errors import (
    ConfigError,
    ContextClosedError,
    LockStolenError,
    LockTimeoutError,
    ValueTooLargeError,
)
from dref.redis_backend import RedisBackend, revision_key, ttl_seconds


def test_ttl_rounding_matches_upstream() -> None:
    assert [ttl_seconds(t) for t in (0.1, 0.999, 1.0, 2.9, 30.0)] == [1, 1, 1, 2, 30]


def test_revisions_only_grow_across_delete_and_recreate(backend: RedisBackend) -> None:
    assert backend.set("n", b"a") == 1
    assert backend.set("n", b"a") == 2
    assert backend.delete("n") == 3
    assert backend.get("n") is None
    assert backend.delete("n") == 4
    assert backend.set_if_absent("n", b"b") == 5
    assert backend.set_if_absent("n", b"c") is None
    assert backend.get("n") == Entry(b"b", 5)


def test_compare_and_set_checks_value_and_revision(backend: RedisBackend) -> None:
    assert backend.compare_and_set("n", None, b"a") == 1
    assert backend.compare_and_set("n", None, b"b") is None
    assert backend.set("n", b"a") == 2
    assert backend.compare_and_set("n", Entry(b"a", 1), b"c") is None  # same bytes, stale
    assert backend.compare_and_set("n", Entry(b"x", 2), b"c") is None
    assert backend.compare_and_set("n", Entry(b"a", 2), b"c", 30) == 3
    assert backend.get("n") == Entry(b"c", 3)


def test_compare_and_delete_and_expire_only_when_current(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    rev = backend.set("n", b"a", 5)
    stale = Entry(b"a", rev - 1)
    assert not backend.expire("n", 60, expected=stale)
    assert raw.ttl("n") <= 5
    assert backend.expire("n", 60, expected=Entry(b"a", rev))
    assert raw.ttl("n") > 5
    assert not backend.compare_and_delete("n", stale)
    assert backend.compare_and_delete("n", Entry(b"a", rev))
    assert not backend.compare_and_delete("n", Entry(b"a", rev))
    assert not backend.expire("n", 5)
    assert not backend.expire("n", 5, expected=Entry(b"a", rev))
    assert backend.get("n") is None


def test_value_without_counter_has_revision_zero(backend: RedisBackend, raw: redis.Redis) -> None:
    raw.set("foreign", b"v")
    assert backend.get("foreign") == Entry(b"v", 0)
    assert backend.compare_and_set("foreign", Entry(b"v", 1), b"w") is None
    assert backend.compare_and_set("foreign", Entry(b"v", 0), b"w") == 1
    assert raw.get(revision_key("foreign")) == b"1"


def test_former_lock_holder_cannot_touch_new_holders_lock(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    token = b"\x00\x00\x00\x00\x00\x00\x00\x2a"
    old = backend.set_if_absent("lock:job", token, 10)
    assert old is not None
    raw.delete("lock:job")  # the lease ran out (simulated without waiting)
    new = backend.set_if_absent("lock:job", token, 10)  # even the very same token bytes
    assert new is not None and new > old  # the fencing token grows
    assert not backend.expire("lock:job", 60, expected=Entry(token, old))
    assert not backend.compare_and_delete("lock:job", Entry(token, old))
    assert backend.get("lock:job") == Entry(token, new)
    raw.set("lock:job", b"\x11" * 8)  # an upstream node took it over with a plain SET
    assert not backend.compare_and_delete("lock:job", Entry(token, new))
    assert raw.get("lock:job") == b"\x11" * 8


def test_lock_mutual_exclusion_with_growing_fencing_tokens(backend: RedisBackend) -> None:
    inside = 0
    tokens: list[int] = []
    guard = threading.Lock()
    errors: list[str] = []

    def worker(seed: int) -> None:
        nonlocal inside
        token = seed.to_bytes(8, "big")
        for _ in range(15):
            deadline = time.monotonic() + 10
            while (rev := backend.set_if_absent("lock:x", token, 5)) is None:
                if time.monotonic() > deadline:
                    errors.append("lock not acquired")
                    return
                time.sleep(0.001)  # contention back-off, not synchronisation
            with guard:
                inside += 1
                if inside != 1:
                    errors.append("two holders")
                tokens.append(rev)
                inside -= 1
            assert backend.compare_and_delete("lock:x", Entry(token, rev))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(tokens) == 90
    assert tokens == sorted(tokens) and len(set(tokens)) == 90


def test_threads_counting_with_compare_and_set(backend: RedisBackend) -> None:
    backend.set("counter", b"0")

    def worker() -> None:
        for _ in range(40):
            for _attempt in range(1000):
                entry = backend.get("counter")
                assert entry is not None
                new = str(int(entry.value) + 1).encode()
                if backend.compare_and_set("counter", entry, new) is not None:
                    break

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert backend.get("counter") == Entry(b"320", 321)


def test_modify_with_upstream_lock(backend: RedisBackend, raw: redis.Redis) -> None:
    def bump(old: bytes | None) -> bytes:
        return str(int(old or b"0") + 1).encode()

    def worker() -> None:
        for _ in range(20):
            backend.modify_with_upstream_lock("count", bump, timeout=20)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert raw.get("count") == b"120"
    assert raw.exists("lock:count") == 0


def test_modify_waits_for_upstream_lock_holder(backend: RedisBackend, raw: redis.Redis) -> None:
    raw.set("lock:count", b"\x01" * 8, nx=True, ex=30)  # an upstream node is in `modify`
    started = time.monotonic()
    with pytest.raises(LockTimeoutError):
        backend.modify_with_upstream_lock("count", lambda old: b"1", timeout=0.5)
    assert time.monotonic() - started < 1.5
    raw.delete("lock:count")
    backend.modify_with_upstream_lock("count", lambda old: b"1", timeout=2)
    assert raw.get("count") == b"1"


def test_modify_near_its_deadline_times_out_cleanly_when_redis_stalls(own_server: Any) -> None:
    """A call made just before the deadline still gets MIN_CALL_TIMEOUT: a Redis stall
    then ends the wait with LockTimeoutError, not 'a write may or may not have happened'
    (a lock write cut short at 1 ms could have taken the lock and left it behind)."""
    url = own_server.url
    held = redis.Redis.from_url(url)
    held.set("lock:count", b"\x01" * 8, nx=True, ex=30)  # an upstream node is in `modify`
    backend = RedisBackend(url, timeout=2.0)
    pid = own_server.process.pid
    stall = threading.Timer(0.45, os.kill, (pid, signal.SIGSTOP))
    resume = threading.Timer(0.75, os.kill, (pid, signal.SIGCONT))
    stall.start()
    resume.start()
    try:
        with pytest.raises(LockTimeoutError):
            backend.modify_with_upstream_lock("count", lambda old: b"1", timeout=0.5)
    finally:
        resume.join()
        os.kill(pid, signal.SIGCONT)  # whatever the timers managed
        backend.close()
        held.close()


def test_modify_refuses_to_write_after_losing_the_lock(
    backend: RedisBackend, raw: redis.Redis
) -> None:
    raw.set("count", b"5")

    def slow(old: bytes | None) -> bytes:
        raw.set("lock:count", b"\x02" * 8)  # our lease ran out and someone else holds it
        return b"6"

    with pytest.raises(LockStolenError):
        backend.modify_with_upstream_lock("count", slow, timeout=2)
    assert raw.get("count") == b"5"
    assert raw.get("lock:count") == b"\x02" * 8


def test_limits_and_configuration(redis_url: str, backend: RedisBackend) -> None:
    small = RedisBackend(redis_url, max_value_size=4)
    try:
        with pytest.raises(ValueTooLargeError):
            small.set("n", b"12345")
        with pytest.raises(ValueTooLargeError):
            small.compare_and_set("n", None, b"12345")
        assert small.set("n", b"1234") == 1
    finally:
        small.close()
    with pytest.raises(ConfigError):
        backend.set("dref:rev:{x}", b"1")
    with pytest.raises(ConfigError):
        RedisBackend(redis_url, style="java")
    with pytest.raises(ConfigError):
        RedisBackend("http://localhost:6379")
    with pytest.raises(ConfigError):
        RedisBackend(redis_url, ca_file="/nonexistent.pem")
    with pytest.raises(ConfigError):
        RedisBackend(redis_url, max_value_size=1 << 30)


def test_closed_backend_refuses_calls(redis_url: str) -> None:
    backend = RedisBackend(redis_url)
    backend.subscribe("n", lambda event: None)
    backend.close()
    backend.close()
    with pytest.raises(ContextClosedError):
        backend.get("n")
    with pytest.raises(ContextClosedError):
        backend.subscribe("n", lambda event: None)
    assert not [t for t in threading.enumerate() if t.name == "dref-redis-pubsub"]


def test_password_user_and_database_from_url(redis_server: Any, raw: redis.Redis) -> None:
    raw.execute_command("ACL", "SETUSER", "alice", "on", ">s3cret", "~*", "&*", "+@all")
    try:
        url = f"redis://alice:s3cret@127.0.0.1:{redis_server.port}/3"
        backend = RedisBackend(url, timeout=2)
        try:
            backend.set("in-db-3", b"v")
            db3 = redis.Redis(port=redis_server.port, db=3)
            assert db3.get("in-db-3") == b"v"
            db3.close()
            assert raw.get("in-db-3") is None
        finally:
            backend.close()
        wrong = RedisBackend(f"redis://alice:wrong@127.0.0.1:{redis_server.port}/0", timeout=2)
        try:
            with pytest.raises(ConfigError):
                wrong.get("x")
        finally:
            wrong.close()
    finally:
        raw.execute_command("ACL", "DELUSER", "alice")
