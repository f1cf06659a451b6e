"""Change events: order, revisions, expiry polling, bad payloads, resync after reconnect."""

from __future__ import annotations

import threading
from typing import Any

import redis

from dref.backend import ChangeEvent, ChangeKind
from dref.redis_backend import RedisBackend

DELETE, SET = ChangeKind.DELETE, ChangeKind.SET


def summary(events: list[ChangeEvent]) -> list[tuple[ChangeKind, bytes | None, int]]:
    return [(e.kind, e.value, e.revision) for e in events]


def real(events: list[ChangeEvent]) -> list[ChangeEvent]:
    """Without the DELETE a subscription may get when its baseline read finds no value."""
    if events and events[0].kind is DELETE and events[0].revision == 0:
        return events[1:]
    return events


def test_own_writes_arrive_in_order_with_revisions(backend: RedisBackend, recorder: Any) -> None:
    events = recorder()
    backend.subscribe("n", events)
    backend.set("n", b"a")
    backend.set_if_absent("n", b"ignored")
    backend.compare_and_set("n", None, b"ignored")
    backend.set("n", b"b")
    backend.delete("n")
    backend.set_if_absent("n", b"c")
    got = events.wait_for(lambda e: len(real(e)) == 4)
    assert summary(real(got)) == [
        (SET, b"a", 1),
        (SET, b"b", 2),
        (DELETE, None, 3),
        (SET, b"c", 4),
    ]


def test_only_the_subscribed_name_and_cancel(backend: RedisBackend, recorder: Any) -> None:
    backend.set("n", b"start")
    first, second = recorder(), recorder()
    cancel_first = backend.subscribe("n", first)
    backend.subscribe("n", second)
    backend.set("other", b"x")
    backend.set("n", b"1")
    second.wait_for(lambda e: len(e) == 1)
    cancel_first()
    cancel_first()
    backend.set("n", b"2")
    assert [e.value for e in second.wait_for(lambda e: len(e) == 2)] == [b"1", b"2"]
    assert [e.value for e in first.events] == [b"1"]


def test_expiry_is_reported_by_the_poll(backend: RedisBackend, recorder: Any) -> None:
    events = recorder()
    backend.set("lease", b"held")
    backend.subscribe("lease", events)
    backend.set("lease", b"held", 1.0)
    got = events.wait_for(lambda e: len(e) == 2, timeout=6)
    # the expiry is recorded in the history and so takes a revision of its own
    assert summary(got) == [(SET, b"held", 2), (DELETE, None, 3)]


def test_vanish_without_event_is_reported(
    backend: RedisBackend, raw: redis.Redis, recorder: Any
) -> None:
    events = recorder()
    raw.set("lock:upstream", b"\x01" * 8)  # an upstream holder
    backend.subscribe("lock:upstream", events)
    with raw.pipeline(transaction=True) as pipe:  # baseline read or not, it vanishes now
        pipe.delete("lock:upstream")
        pipe.execute()
    got = events.wait_for(lambda e: len(e) >= 1, timeout=5)
    assert summary(got)[-1] == (DELETE, None, 0)


def test_undecodable_messages_are_dropped(
    backend: RedisBackend, raw: redis.Redis, recorder: Any
) -> None:
    events = recorder()
    backend.set("n", b"0")
    backend.subscribe("n", events)
    raw.publish("dref-change", b"\xc1 not msgpack")
    raw.publish("dref-change", b"\x83\xa4name\x91\x6e")  # truncated record
    raw.publish("dref:change-rev", b"not-a-number:n")
    backend.set("n", b"1")
    got = events.wait_for(lambda e: len(e) == 1)
    assert summary(got) == [(SET, b"1", 2)]


def test_resync_after_pubsub_reconnect(
    backend: RedisBackend, raw: redis.Redis, recorder: Any
) -> None:
    events = recorder()
    backend.set("n", b"before")
    backend.subscribe("n", events)
    with raw.pipeline(transaction=True) as pipe:  # drop our listener, then change quietly
        pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        pipe.set("n", b"missed")
        pipe.execute()
    got = events.wait_for(lambda e: len(e) == 1, timeout=10)
    assert summary(got) == [(SET, b"missed", 0)]
    backend.set("n", b"after")
    got = events.wait_for(lambda e: len(e) == 2)
    assert summary(got)[1] == (SET, b"after", 2)


def test_listener_runs_on_the_named_thread(backend: RedisBackend, recorder: Any) -> None:
    names: list[str] = []
    seen = threading.Event()

    def listener(event: ChangeEvent) -> None:
        names.append(threading.current_thread().name)
        seen.set()

    backend.set("n", b"x")
    backend.subscribe("n", listener)
    backend.set("n", b"y")
    assert seen.wait(5)
    assert names == ["dref-redis-pubsub"]


def test_a_name_subscribed_again_soon_needs_no_new_baseline_and_misses_nothing(
    own_server: Any, recorder: Any
) -> None:
    """A lock taken in a loop subscribes to its name each time: within the linger the
    watcher keeps tracking the name, so no baseline read (MGET) is sent again, and a
    change made while nobody listened does not come back as a stale event."""
    backend = RedisBackend(own_server.url, timeout=2.0)
    admin = own_server.client()
    try:
        first = recorder()
        cancel = backend.subscribe("n", first)
        backend.set("n", b"a")
        first.wait_for(lambda e: any(event.value == b"a" for event in e))
        cancel()
        backend.set("n", b"idle")  # nobody listens
        admin.config_resetstat()
        second = recorder()
        backend.subscribe("n", second)
        revision = backend.set("n", b"b")
        got = second.wait_for(lambda e: any(event.value == b"b" for event in e))
        assert summary(got) == [(SET, b"b", revision)]
        assert "cmdstat_mget" not in admin.info("commandstats")
    finally:
        admin.close()
        backend.close()
