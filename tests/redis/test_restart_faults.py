"""redis-server SIGKILLed and restarted on its port under writers, lock holders and
watchers: with AOF (appendfsync always) every documented guarantee holds across the
restart; without persistence the data and the revisions start again, and resumable change
streams report that with CompactedError instead of skipping the new revisions."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from raft_kv.polling import wait_for

import dref
from dref.context import Context
from dref.errors import BackendUnavailableError
from dref.redis_backend import revision_key
from dref.wire.msgpack_codec import MsgPackCodec
from testkit.workloads import CounterWorkload, LockWorkload, WatchWorkload, committed_history

pytestmark = pytest.mark.filterwarnings(
    "error::pytest.PytestUnhandledThreadExceptionWarning"  # an untyped error in a worker
)

AOF = ["--appendonly", "yes", "--appendfsync", "always"]
"""Every acknowledged write is on disk before Redis answers it."""

TIMEOUT = 1.0
"""Each context's call timeout: calls during the outage must fail within it."""

INTS = MsgPackCodec.for_value(0)
"""How `ctx.ref(name, 0)` encodes the watched integers."""

PROGRESS = (30, 5, 30)
"""Acknowledged increments, lock grants and watched writes each phase needs at least."""

RESTART_GRACE = 20.0
"""Longest time the workloads may take to make progress again after the restart."""


def contexts_on(url: str) -> Callable[[int], Context]:
    """Worker `i`'s context: its own connections and pub/sub thread, short timeouts."""
    return lambda _: dref.redis(url, timeout=TIMEOUT, poll_interval=0.2)


def fails_typed_in_time(call: Callable[[], object]) -> None:
    """`call()` raises BackendUnavailableError within the call timeout (plus slack)."""
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        call()
    assert time.monotonic() - started < TIMEOUT + 1.0


def kill_and_restart(server: Any, probe: Context) -> None:
    """SIGKILL redis-server, check calls made meanwhile fail typed and in time, start it
    again on the same port, and wait until a write goes through."""
    ref = probe.ref("probe", 0)  # writes its initial value: before the kill
    server.kill()
    fails_typed_in_time(ref.get)
    fails_typed_in_time(lambda: ref.set(1))
    fails_typed_in_time(lambda: ref.update(lambda v: v + 1))
    started = time.monotonic()
    assert not probe.lock("probe-lock", ttl=2.0, timeout=TIMEOUT).acquire()
    assert time.monotonic() - started < TIMEOUT + 1.0
    server.start()

    def writes() -> bool:
        try:
            ref.set(2)
            return True
        except BackendUnavailableError:
            return False

    wait_for(writes, RESTART_GRACE, "a write after the restart")


class Run:
    """A counter, a lock and a watched name, each worked on by threads of their own."""

    def __init__(self, url: str) -> None:
        self.context_for = contexts_on(url)
        self.stop = threading.Event()
        self.counter = CounterWorkload("counter")
        self.locks = LockWorkload("guarded", ttl=2.0, timeout=2 * TIMEOUT)
        self.watches = WatchWorkload(["watched"], streams=2, callbacks=1)
        self.threads: list[threading.Thread] = []

    def begin(self) -> None:
        self.threads += self.counter.begin(self.context_for, self.stop)
        self.threads += self.locks.start(self.context_for, self.stop)
        self.threads += self.watches.start(self.context_for, self.stop)

    def progress(self) -> tuple[int, int, int]:
        """Acknowledged increments, lock grants, acknowledged watched writes."""
        return (
            self.counter.acknowledged,
            len(self.locks.grants),
            len(self.watches.acknowledged["watched"]),
        )

    def wait_progress(self, what: str) -> None:
        """Wait until every workload did `PROGRESS` more acknowledged work (the run's
        length, counted rather than timed so a loaded machine only makes it slower)."""
        before = self.progress()
        wait_for(
            lambda: all(
                now >= then + more
                for now, then, more in zip(self.progress(), before, PROGRESS, strict=True)
            ),
            RESTART_GRACE,
            f"every workload progressing {what} (from {before}: {self.progress()})",
        )

    def end(self) -> None:
        """Stop the workers (the watchers go on until `close`)."""
        self.stop.set()
        for thread in self.threads:
            thread.join(10.0)
        assert not [t.name for t in self.threads if t.is_alive()], "a worker did not stop"

    def close(self) -> None:
        """Stop everything, the watchers included (idempotent)."""
        self.stop.set()
        self.watches.close()


def test_restart_with_aof_keeps_every_guarantee(start_server: Callable[..., Any]) -> None:
    server = start_server(config=AOF)
    run = Run(server.url)
    with run.context_for(0) as probe:
        try:
            run.begin()
            run.wait_progress("before the kill")
            kill_and_restart(server, probe)
            run.wait_progress("after the restart")
            run.end()
            print(run.counter.check(probe))  # acknowledged <= final <= acknowledged + unknown
            print(run.locks.check())  # tokens in real-time order, no interleaved increments
            print(run.watches.check(probe))  # acknowledged writes kept, streams exact
        finally:
            run.close()


def test_restart_without_persistence_starts_data_and_revisions_again(
    start_server: Callable[..., Any],
) -> None:
    server = start_server()
    run = Run(server.url)
    # A long past for the watched name (its counter set directly, as a million writes
    # would leave it): its streams reconnect long before the restarted counter passes
    # their last revision, the only case in which they can tell (README, "A Redis restart").
    far = 1_000_000
    with redis.Redis.from_url(server.url) as raw:
        raw.set(revision_key("watched"), far)
    with run.context_for(0) as probe:
        probe.ref("untouched", "").set("lost in the restart")
        try:
            run.begin()
            run.wait_progress("before the kill")
            newest_token = run.locks.store.newest
            killed = time.monotonic()
            kill_and_restart(server, probe)
            # The data is gone: `update` finds no value (NotFoundError, counted unknown)
            # until the application writes one again, and revisions start from 1.
            assert probe.backend.get("untouched") is None
            assert probe.backend.get("counter") is None
            acknowledged_before = run.counter.acknowledged
            probe.ref("counter", 0)  # writes its initial value again; the workers go on
            first = probe.backend.history("counter", 0, limit=1)[0]  # not `get`: they race it
            assert (first.revision, first.value) == (1, INTS.encode(0))
            run.wait_progress("after the restart")
            run.end()
            check_after_the_loss(run, probe, acknowledged_before, newest_token, killed)
            check_streams_report_the_reset(run.watches, probe, far)
        finally:
            run.close()


def check_after_the_loss(
    run: Run, probe: Context, acknowledged_before: int, newest_token: int, killed: float
) -> None:
    """No increment invented after the restart; fencing tokens started again, and the
    fenced store refused them (`newest_token`: the newest it had accepted before the
    kill), so no two holders' protected writes interleaved, at the price of refused work."""
    final = probe.ref("counter", 0).get()
    after_restart = run.counter.acknowledged - acknowledged_before
    assert final <= after_restart + run.counter.unknown, "an increment was invented"

    store = run.locks.store
    assert store.accepted == sorted(store.accepted)
    assert store.counter == sum(grant.increments for grant in run.locks.grants)
    restarted = [g for g in run.locks.grants if g.granted > killed]
    assert any(g.token <= newest_token for g in restarted), "tokens did not restart"
    assert all(g.increments == 0 for g in restarted if g.token < newest_token)


def check_streams_report_the_reset(watches: WatchWorkload, probe: Context, far: int) -> None:
    """Each watcher of `watched` delivered changes past revision `far` (before the kill),
    then exactly the new history from revision 1; resumable streams raised CompactedError
    in between (an on_change subscription logs it)."""
    history = committed_history(probe, "watched", 0, 30.0)
    assert history and history[-1].revision < far, "revisions did not start again"
    expected = [(e.revision, None if e.value is None else INTS.decode(e.value)) for e in history]
    for index, watcher in enumerate(watches.watchers["watched"]):
        wait_for(
            functools.partial(delivered_anew, watcher.seen, far, len(expected)),
            30.0,
            f"watcher {index} delivering the new history",
        )
        old = [(r, v) for r, v in watcher.seen if r > far]
        new = [(r, v) for r, v in watcher.seen if r < far]
        assert watcher.seen == old + new, f"watcher {index}: {watcher.seen}"
        assert [r for r, _ in old] == sorted({r for r, _ in old}), f"watcher {index}: {old}"
        assert new == expected, (
            f"watcher {index} delivered {new} after the restart; the history is {expected}"
        )
        if index < watches.streams:  # a stream, not an on_change callback
            failures = watcher.failures
            assert failures and all(f.startswith("CompactedError") for f in failures), (
                f"stream {index} did not report the reset as CompactedError: {failures}"
            )


def delivered_anew(seen: list[tuple[int, int | None]], far: int, wanted: int) -> bool:
    """Whether `wanted` of the delivered revisions are below `far`: from after the restart."""
    return sum(revision < far for revision, _ in seen) >= wanted
