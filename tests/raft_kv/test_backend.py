"""The DRef API (refs, CAS updates, locks, change streams, TTLs) on `dref.raft(...)`."""

from __future__ import annotations

import threading
import time

import dref
from dref.backend import ChangeEvent, ChangeKind
from dref.raft_backend import RaftBackend

THREADS = 8
UPDATES = 25


def test_updates_from_8_threads_count_exactly(embedded):
    _, ctx = embedded
    counter = ctx.ref("counter", 0)
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            start.wait(timeout=30)
            for _ in range(UPDATES):
                counter.update(lambda n: n + 1)
        except BaseException as e:  # surfaced by the assertion below
            failures.append(e)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures
    assert counter.get() == THREADS * UPDATES


def test_lock_excludes_and_hands_out_growing_fencing_tokens(embedded):
    _, ctx = embedded
    backend = ctx.backend
    assert isinstance(backend, RaftBackend) and backend.default_ttl == 10.0
    tokens: list[int] = []
    inside = threading.Lock()
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                with ctx.lock("job", timeout=60) as lock:
                    assert inside.acquire(blocking=False), "two holders at once"
                    entry = backend.get("job")
                    assert entry is not None and entry.revision == lock.fencing_token
                    tokens.append(lock.fencing_token)
                    inside.release()
        except BaseException as e:  # surfaced below
            failures.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures
    assert len(tokens) == 12 and tokens == sorted(tokens) and len(set(tokens)) == 12


def test_change_stream_sees_sets_and_deletes(embedded):
    _, ctx = embedded
    ref = ctx.ref("watched", 0)
    with ref.changes(timeout=20) as stream:
        revision = ref.set(5)
        assert stream.get() == dref.Changed(5, revision)
        ref.delete()
        assert isinstance(stream.get(), dref.Deleted)


def test_a_value_expires_and_listeners_get_the_delete(embedded):
    _, ctx = embedded
    backend = ctx.backend
    events: list[ChangeEvent] = []
    got_delete = threading.Event()

    def listener(event: ChangeEvent) -> None:
        events.append(event)
        if event.kind is ChangeKind.DELETE:
            got_delete.set()

    cancel = backend.subscribe("ttl", listener)
    try:
        revision = backend.set("ttl", b"v", 0.3)
        assert got_delete.wait(20)
        assert events[0] == ChangeEvent("ttl", ChangeKind.SET, b"v", revision)
        assert events[-1].revision > revision
        assert backend.get("ttl") is None
        # once a lock's lease has run out it can be taken again at once
        assert backend.set_if_absent("lock:x", b"a", 0.2) is not None
        deadline = time.monotonic() + 20
        while backend.get("lock:x") is not None:
            assert time.monotonic() < deadline
        assert backend.set_if_absent("lock:x", b"b", 10) is not None
    finally:
        cancel()


def test_100_subscriptions_share_one_watch_stream_and_all_get_their_events(kv_cluster):
    names = [f"many-{i}" for i in range(100)]
    with dref.raft_client(list(kv_cluster.addresses.values()), timeout=20) as ctx:
        backend = ctx.backend
        got: dict[str, list[ChangeEvent]] = {name: [] for name in names}
        all_in = threading.Event()

        def listener(event: ChangeEvent) -> None:
            got[event.name].append(event)
            if all(got.values()):
                all_in.set()

        cancels = [backend.subscribe(name, listener) for name in names]
        watchers = [t for t in threading.enumerate() if t.name.startswith("dref-raft-watch")]
        assert len(watchers) == 1
        revisions = {name: backend.set(name, name.encode()) for name in names}
        assert all_in.wait(30), [name for name, events in got.items() if not events]
        for name in names:
            assert got[name] == [ChangeEvent(name, ChangeKind.SET, name.encode(), revisions[name])]
        for cancel in cancels:
            cancel()
        deadline = time.monotonic() + 10
        while any(t.name.startswith("dref-raft-watch") for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the watcher outlived its last subscription"
            time.sleep(0.02)  # a poll under a deadline
