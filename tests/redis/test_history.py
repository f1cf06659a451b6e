"""The Redis backend's change history: a capped stream per name, expiries with revisions,
gaps reported as CompactedError, resync marking, and nothing new for upstream nodes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
import redis

from dref.backend import ChangeEvent, ChangeKind, Entry
from dref.errors import CompactedError, ConfigError, PermissionDeniedError
from dref.redis_backend import RedisBackend, history_key, revision_key
from dref.wire.change_payload import (
    ChangePayload,
    decode_change_payload,
    encode_change_payload,
)

DELETE, SET = ChangeKind.DELETE, ChangeKind.SET


def summary(events: list[ChangeEvent]) -> list[tuple[ChangeKind, bytes | None, int]]:
    return [(e.kind, e.value, e.revision) for e in events]


def wait_until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Poll `condition` until it holds; fail the test after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"not within {limit} s"
        time.sleep(0.01)  # polling under a deadline


def expire_now(raw: redis.Redis, name: str) -> None:
    """Let `name` expire by its TTL (shortened to 20 ms), as Redis does it: no script runs."""
    assert raw.pexpire(name, 20)
    wait_until(lambda: raw.exists(name) == 0)


@pytest.fixture
def quiet(redis_url: str) -> Iterator[RedisBackend]:
    """A backend that never subscribes, so no poll notices an expiry behind a test's back."""
    b = RedisBackend(redis_url, timeout=2.0)
    yield b
    b.close()


class Tap:
    """A plain redis-py subscriber of upstream's channel and ours, in publish order."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=5)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe("dref-change", "dref:change-rev")
        deadline = time.monotonic() + 5
        while self._client.pubsub_numsub("dref:change-rev")[0][1] < 1:
            self._pubsub.get_message(timeout=0.05)  # reads the subscribe confirmations
            assert time.monotonic() < deadline, "tap did not subscribe"

    def drain(self) -> list[tuple[bytes, bytes]]:
        """Every (channel, message) published so far: up to an end marker it publishes."""
        self._client.publish("dref-change", b"end-of-test")
        got: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=0.1)
            if message is None:
                continue
            if message["data"] == b"end-of-test":
                return got
            got.append((message["channel"], message["data"]))
        raise AssertionError(f"no end marker; got {got}")

    def close(self) -> None:
        self._pubsub.close()
        self._client.close()


@pytest.fixture
def tap(redis_url: str) -> Iterator[Tap]:
    t = Tap(redis_url)
    yield t
    t.close()


def test_history_is_exactly_the_writes_after_a_revision(quiet: RedisBackend) -> None:
    assert quiet.set("n", b"a") == 1
    assert quiet.set_if_absent("n", b"ignored") is None
    assert quiet.compare_and_set("n", Entry(b"other", 1), b"ignored") is None
    assert quiet.delete("n") == 2
    assert quiet.set_if_absent("n", b"b") == 3
    assert quiet.compare_and_set("n", Entry(b"b", 3), b"c") == 4
    assert not quiet.compare_and_delete("n", Entry(b"c", 3))
    assert quiet.compare_and_delete("n", Entry(b"c", 4))
    assert quiet.compare_and_set("n", None, msgpack.packb(41)) == 6
    assert quiet.increment("n", 1, "msgpack") == (42, 7)
    everything = [
        (SET, b"a", 1),
        (DELETE, None, 2),
        (SET, b"b", 3),
        (SET, b"c", 4),
        (DELETE, None, 5),
        (SET, msgpack.packb(41), 6),
        (SET, msgpack.packb(42), 7),
    ]
    assert summary(quiet.history("n", 0)) == everything
    assert summary(quiet.history("n", 3)) == everything[3:]
    assert quiet.history("n", 7) == []
    with pytest.raises(CompactedError) as beyond:  # the counter started again: a data loss
        quiet.history("n", 100)
    assert beyond.value.oldest_available == 1
    assert quiet.history("never-written", 0) == []
    assert all(e.name == "n" and not e.resync for e in quiet.history("n", 0))


def test_history_pages_by_limit(quiet: RedisBackend) -> None:
    for i in range(10):
        quiet.set("n", b"%d" % i)
    pages = []
    after = 0
    while page := quiet.history("n", after, limit=3):
        assert len(page) <= 3
        pages.append([e.revision for e in page])
        after = page[-1].revision
    assert pages == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]
    with pytest.raises(ValueError):
        quiet.history("n", 0, limit=0)


def test_trimmed_history_raises_compacted_with_the_oldest_kept(
    redis_url: str, raw: redis.Redis
) -> None:
    retention, writes = 5, 400  # MAXLEN ~ trims whole nodes (100 entries): keeps 5 or more
    small = RedisBackend(redis_url, timeout=2.0, history_revisions=retention)
    try:
        for i in range(writes):
            small.set("n", b"%d" % i)
        with pytest.raises(CompactedError) as caught:
            small.history("n", 0)
        oldest = caught.value.oldest_available
        assert (caught.value.name, caught.value.after) == ("n", 0)
        assert 1 < oldest <= writes - retention + 1
        assert raw.xlen(history_key("n")) == writes - oldest + 1
        with pytest.raises(CompactedError) as again:
            small.history("n", oldest - 2)
        assert again.value.oldest_available == oldest
        kept = small.history("n", oldest - 1, limit=writes)
        assert [e.revision for e in kept] == list(range(oldest, writes + 1))
        assert kept[-1].value == b"%d" % (writes - 1)
    finally:
        small.close()


def test_no_history_kept_raises_compacted_below_the_counter(
    redis_url: str, raw: redis.Redis
) -> None:
    none = RedisBackend(redis_url, timeout=2.0, history_revisions=0)
    try:
        for i in range(3):
            none.set("n", b"%d" % i)
        for after in range(3):
            with pytest.raises(CompactedError) as caught:
                none.history("n", after)
            assert caught.value.oldest_available == 4
        assert none.history("n", 3) == []
        assert raw.exists(history_key("n")) == 0
    finally:
        none.close()


def test_a_revision_missing_from_the_stream_is_a_gap(quiet: RedisBackend, raw: redis.Redis) -> None:
    quiet.set("n", b"1")
    raw.incr(revision_key("n"))  # revision 2 by a writer that kept no history
    quiet.set("n", b"3")
    quiet.set("n", b"4")
    assert summary(quiet.history("n", 0)) == [(SET, b"1", 1)]  # the page stops at the gap
    with pytest.raises(CompactedError) as caught:
        quiet.history("n", 1)
    assert caught.value.oldest_available == 3
    assert [e.revision for e in quiet.history("n", 2)] == [3, 4]


def test_expiry_is_one_delete_with_its_own_revision(
    redis_url: str, raw: redis.Redis, recorder: Any, tap: Tap
) -> None:
    first = RedisBackend(redis_url, timeout=2.0, poll_interval=0.1)
    second = RedisBackend(redis_url, timeout=2.0, poll_interval=0.1)
    try:
        first.set("lease", b"before")
        seen_first, seen_second = recorder(), recorder()
        first.subscribe("lease", seen_first)
        second.subscribe("lease", seen_second)
        assert first.set("lease", b"held", 5) == 2
        for events in (seen_first, seen_second):  # each watcher saw it present, revision 2
            events.wait_for(lambda e: len(e) == 1)
        expire_now(raw, "lease")
        for events in (seen_first, seen_second):  # both polls race to notice it
            events.wait_for(lambda e: any(x.kind is DELETE for x in e), timeout=5)
        assert first.set("lease", b"again") == 4  # published after any event of the expiry
        for events in (seen_first, seen_second):
            got = events.wait_for(lambda e: len(e) >= 3 and e[-1].value == b"again")
            assert summary(got) == [(SET, b"held", 2), (DELETE, None, 3), (SET, b"again", 4)]
            assert not any(e.resync for e in got)
        assert summary(first.history("lease", 1)) == [
            (SET, b"held", 2),
            (DELETE, None, 3),
            (SET, b"again", 4),
        ]
        messages = tap.drain()
        ours = [data for channel, data in messages if channel == b"dref:change-rev"]
        assert ours == [b"1:lease", b"2:lease", b"x3:lease", b"4:lease"]
        assert [channel for channel, _ in messages].count(b"dref-change") == 3  # the writes
    finally:
        first.close()
        second.close()


WRITES: dict[str, Callable[[RedisBackend], object]] = {
    "set": lambda b: b.set("n", b"b"),
    "set_if_absent": lambda b: b.set_if_absent("n", b"b"),
    "compare_and_set": lambda b: b.compare_and_set("n", None, b"b"),
    "modify_with_upstream_lock": lambda b: b.modify_with_upstream_lock("n", lambda old: b"b"),
    "delete": lambda b: b.delete("n"),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_write_after_an_unnoticed_expiry_records_it_first(
    quiet: RedisBackend, raw: redis.Redis, tap: Tap, write: str
) -> None:
    quiet.set("n", b"a", 5)
    expire_now(raw, "n")
    WRITES[write](quiet)
    after = (DELETE, None, 3) if write == "delete" else (SET, b"b", 3)
    assert summary(quiet.history("n", 0)) == [(SET, b"a", 1), (DELETE, None, 2), after]
    messages = tap.drain()
    ours = [data for channel, data in messages if channel == b"dref:change-rev"]
    assert b"x2:n" in ours and b"3:n" in ours
    payloads = [decode_change_payload(data) for ch, data in messages if ch == b"dref-change"]
    assert [p.name for p in payloads if p.name == b"n"] == [b"n", b"n"]  # the writes only


def test_a_history_read_records_a_pending_expiry_once(
    quiet: RedisBackend, raw: redis.Redis, tap: Tap
) -> None:
    quiet.set("n", b"a", 5)
    expire_now(raw, "n")
    assert summary(quiet.history("n", 1)) == [(DELETE, None, 2)]
    assert summary(quiet.history("n", 1)) == [(DELETE, None, 2)]
    assert quiet.get("n") is None
    assert raw.get(revision_key("n")) == b"2"
    messages = tap.drain()
    assert [data for channel, data in messages if channel == b"dref:change-rev"] == [
        b"1:n",
        b"x2:n",
    ]
    assert [channel for channel, _ in messages].count(b"dref-change") == 1


def test_upstream_values_and_deletes_keep_todays_events(
    backend: RedisBackend, raw: redis.Redis, recorder: Any
) -> None:
    raw.set("lock:upstream", b"\x01" * 8)  # written only by an upstream node: no history
    events = recorder()
    backend.subscribe("lock:upstream", events)
    expire_now(raw, "lock:upstream")
    got = events.wait_for(lambda e: len(e) >= 1, timeout=5)
    assert summary(got)[-1] == (DELETE, None, 0)
    assert raw.exists(history_key("lock:upstream")) == 0
    assert raw.get(revision_key("lock:upstream")) is None


def test_an_upstream_delete_is_reported_once_though_recorded_later(
    backend: RedisBackend, raw: redis.Redis, recorder: Any
) -> None:
    backend.set("n", b"a")
    events = recorder()
    backend.subscribe("n", events)
    # a write seen by the subscription first: the value stays present until then, so the
    # subscription's baseline read cannot find it absent (which would add a DELETE of its own)
    assert backend.set("n", b"a2") == 2
    events.wait_for(lambda e: len(e) == 1)
    with raw.pipeline(transaction=True) as pipe:  # an upstream delete (payload, no revision)
        pipe.delete("n")  # published at once: no poll finds it gone before its payload
        pipe.publish("dref-change", encode_change_payload(ChangePayload(b"n", b"", True)))
        pipe.execute()
    events.wait_for(lambda e: len(e) == 2)
    assert summary(backend.history("n", 2)) == [(DELETE, None, 3)]  # recorded now
    assert backend.set("n", b"b") == 4
    got = events.wait_for(lambda e: len(e) >= 3)
    assert summary(got) == [(SET, b"a2", 2), (DELETE, None, 0), (SET, b"b", 4)]


def test_a_deleted_counter_with_a_leftover_stream_does_not_break_writes(
    quiet: RedisBackend, raw: redis.Redis, tap: Tap
) -> None:
    for i in range(5):
        quiet.set("n", b"%d" % i)
    raw.delete(revision_key("n"))  # revisions start again below the stream's entries
    assert quiet.set("n", b"new") == 1
    assert raw.get("n") == b"new"
    assert summary(quiet.history("n", 0)) == [(SET, b"new", 1)]
    raw.set(history_key("m"), b"not a stream")
    assert quiet.set("m", b"v") == 1
    assert quiet.compare_and_delete("m", Entry(b"v", 1))
    assert summary(quiet.history("m", 0)) == [(SET, b"v", 1), (DELETE, None, 2)]
    messages = tap.drain()
    assert [channel for channel, _ in messages].count(b"dref-change") == 8


def test_a_user_without_stream_permissions_still_writes(
    redis_server: Any, redis_url: str, raw: redis.Redis
) -> None:
    rule = ["on", ">pw", "~n", "~dref:rev:{n}", "&*", "+@all", "-xadd", "-xrange"]
    raw.execute_command("ACL", "SETUSER", "narrow", *rule)
    raw.execute_command("ACL", "LOG", "RESET")
    user = RedisBackend(f"redis://narrow:pw@127.0.0.1:{redis_server.port}/0", timeout=2.0)
    try:
        assert user.set("n", b"a", 5) == 1
        expire_now(raw, "n")
        assert user.set_if_absent("n", b"b") == 2  # no history to record the expiry in
        assert user.delete("n") == 3
        assert raw.exists(history_key("n")) == 0
        refused = [entry for entry in raw.acl_log() if entry["object"] != "client|setinfo"]
        assert refused == []  # nothing refused, nothing logged
        with pytest.raises(PermissionDeniedError):
            user.history("n", 0)
    finally:
        user.close()
        raw.execute_command("ACL", "DELUSER", "narrow")


def test_reconnect_events_are_marked_resync(
    backend: RedisBackend, raw: redis.Redis, recorder: Any
) -> None:
    events = recorder()
    backend.set("n", b"v")
    backend.subscribe("n", events)
    assert backend.set("n", b"live") == 2
    events.wait_for(lambda e: len(e) == 1)
    with raw.pipeline(transaction=True) as pipe:  # drop our listener, then change quietly
        pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        pipe.set("n", b"missed")
        pipe.execute()
    got = events.wait_for(lambda e: len(e) == 2, timeout=10)
    assert (got[1].value, got[1].revision, got[1].resync) == (b"missed", 0, True)
    with raw.pipeline(transaction=True) as pipe:  # same value, but a revision was missed
        pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        pipe.incr(revision_key("n"))
        pipe.execute()
    got = events.wait_for(lambda e: len(e) == 3, timeout=10)
    assert (got[2].value, got[2].revision, got[2].resync) == (b"missed", 0, True)
    assert backend.set("n", b"after") == 4
    got = events.wait_for(lambda e: len(e) == 4)
    assert (got[3].value, got[3].revision, got[3].resync) == (b"after", 4, False)
    assert not got[0].resync


def test_history_names_are_reserved(quiet: RedisBackend) -> None:
    with pytest.raises(ConfigError):
        quiet.set("dref:history:{x}", b"1")
    with pytest.raises(ConfigError):
        quiet.history("dref:history:{x}", 0)
    with pytest.raises(ConfigError):
        RedisBackend("redis://127.0.0.1:1/0", history_revisions=-1)
