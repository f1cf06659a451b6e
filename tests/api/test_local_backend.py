"""LocalBackend specifics: inline expiry, expiry events, revisions, ordering, limits."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from dref.backend import ChangeEvent, ChangeKind, Entry
from dref.errors import ConfigError, ContextClosedError, ValueTooLargeError
from dref.local_backend import LocalBackend


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    b = LocalBackend()
    yield b
    b.close()


class Events:
    """A listener that lets a test wait for a number of events."""

    def __init__(self) -> None:
        self.items: list[ChangeEvent] = []
        self.cond = threading.Condition()

    def __call__(self, event: ChangeEvent) -> None:
        with self.cond:
            self.items.append(event)
            self.cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ChangeEvent]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= count, timeout), self.items
            return list(self.items)


def test_untouched_value_expires_with_a_delete_event(backend: LocalBackend) -> None:
    events = Events()
    backend.subscribe("k", events)
    written = backend.set("k", b"v", ttl=0.1)
    seen = events.wait_for(2)
    assert [e.kind for e in seen] == [ChangeKind.SET, ChangeKind.DELETE]
    assert seen[1].revision > written
    assert backend.get("k") is None


def test_expired_value_is_invisible_to_conditional_writes(backend: LocalBackend) -> None:
    events = Events()
    backend.subscribe("k", events)
    backend.set("k", b"old", ttl=0.05)
    events.wait_for(2)  # expired
    revision = backend.set_if_absent("k", b"new")
    assert revision is not None
    assert backend.get("k") == Entry(b"new", revision)


def test_expire_rearms_and_respects_expected(backend: LocalBackend) -> None:
    rev = backend.set("k", b"v", ttl=60)
    assert backend.expire("k", 60, expected=Entry(b"v", rev)) is True
    assert backend.expire("k", 60, expected=Entry(b"v", rev + 1)) is False
    assert backend.expire("k", 60, expected=Entry(b"other", rev)) is False
    assert backend.expire("absent", 60) is False
    assert backend.get("k") == Entry(b"v", rev)


def test_compare_and_set_and_delete(backend: LocalBackend) -> None:
    assert backend.compare_and_set("k", None, b"a") is not None
    first = backend.get("k")
    assert first is not None
    assert backend.compare_and_set("k", None, b"b") is None
    second = backend.compare_and_set("k", first, b"b")
    assert second is not None and second > first.revision
    assert backend.compare_and_set("k", first, b"c") is None
    assert backend.compare_and_delete("k", first) is False
    assert backend.compare_and_delete("k", Entry(b"b", second)) is True
    assert backend.get("k") is None


def test_delete_of_absent_name_emits_delete(backend: LocalBackend) -> None:
    events = Events()
    backend.subscribe("nothing", events)
    rev = backend.delete("nothing")
    assert events.wait_for(1) == [ChangeEvent("nothing", ChangeKind.DELETE, None, rev)]


def test_refused_set_if_absent_emits_nothing(backend: LocalBackend) -> None:
    events = Events()
    backend.subscribe("k", events)
    backend.set("k", b"a")
    assert backend.set_if_absent("k", b"b") is None
    backend.delete("k")
    assert [e.kind for e in events.wait_for(2)] == [ChangeKind.SET, ChangeKind.DELETE]
    assert len(events.items) == 2


def test_events_of_concurrent_writers_arrive_in_revision_order(backend: LocalBackend) -> None:
    events = Events()
    backend.subscribe("k", events)

    def write() -> None:
        for i in range(300):
            backend.set("k", str(i).encode())

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    revisions = [e.revision for e in events.wait_for(1200)]
    assert revisions == sorted(revisions) and len(set(revisions)) == 1200


def test_listener_may_read_the_backend(backend: LocalBackend) -> None:
    reads: list[Entry | None] = []
    backend.subscribe("k", lambda event: reads.append(backend.get("k")))
    rev = backend.set("k", b"v")
    assert reads == [Entry(b"v", rev)]


def test_limits_and_validation() -> None:
    small = LocalBackend(max_value_size=4)
    try:
        small.set("k", b"1234")
        with pytest.raises(ValueTooLargeError):
            small.set("k", b"12345")
        with pytest.raises(ValueTooLargeError):
            small.compare_and_set("k", None, b"12345")
        with pytest.raises(ConfigError):
            small.set("k", b"1", ttl=0)
        with pytest.raises(ConfigError):
            small.expire("k", -1)
    finally:
        small.close()


def test_close_stops_the_expiry_thread_and_refuses_calls() -> None:
    b = LocalBackend()
    thread = b._expiry
    b.close()
    b.close()
    assert not thread.is_alive()
    with pytest.raises(ContextClosedError):
        b.set("k", b"v")
    with pytest.raises(ContextClosedError):
        b.subscribe("k", lambda event: None)
