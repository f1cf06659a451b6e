"""Change streams and on_change subscriptions: broadcast, order, deletes, lag, timeouts."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import dref
from dref import Changed, Deleted, Lagged, Undecodable
from dref.backend import ChangeEvent, ChangeKind
from dref.changes import Event
from dref.local_backend import LocalBackend

CHANGES = 1_000


def test_two_subscribers_each_receive_every_change_in_revision_order(ctx: dref.Context) -> None:
    ref = ctx.ref("broadcast", -1)
    with ref.changes(timeout=10, buffer=2 * CHANGES) as a, ref.changes(
        timeout=10, buffer=2 * CHANGES
    ) as b:
        written = []
        for i in range(CHANGES):
            written.append(ref.set(i))
            if i % 100 == 99:
                written.append(ref.delete())
        for stream in (a, b):
            events = [stream.get(10) for _ in written]
            assert [e.revision for e in events] == written  # type: ignore[union-attr]
            values = [e.value for e in events if isinstance(e, Changed)]
            assert values == list(range(CHANGES))
            assert sum(isinstance(e, Deleted) for e in events) == CHANGES // 100
            with pytest.raises(dref.DRefTimeoutError):
                stream.get(0.05)


def test_no_replay_of_changes_before_subscribing(ctx: dref.Context) -> None:
    ref = ctx.ref("late", 0)
    ref.set(1)
    with ref.changes() as stream:
        revision = ref.set(2)
        assert stream.get(5) == Changed(2, revision)


def test_overflow_yields_one_lagged_marker_and_never_blocks_the_writer(
    ctx: dref.Context,
) -> None:
    ref = ctx.ref("lag", 0)
    with ref.changes(timeout=5, buffer=4) as stream:
        written = [ref.set(i) for i in range(1, 11)]  # nobody reads: must not block
        assert stream.get(5) == Lagged(missed=6, resume_after=written[0] - 1)
        rest = [stream.get(5) for _ in range(4)]
        assert [e.value for e in rest] == [7, 8, 9, 10]  # type: ignore[union-attr]
        assert ref.get() == 10
    with ref.changes(timeout=5, after=written[0] - 1) as resumed:  # what Lagged pointed at
        replayed = [resumed.get(5) for _ in written]
        assert [e.revision for e in replayed] == written  # type: ignore[union-attr]


def test_iteration_with_a_timeout_ends(ctx: dref.Context) -> None:
    ref = ctx.ref("iter", 0)
    stream = ref.changes(timeout=0.1)
    ref.set(1)
    ref.set(2)
    assert [e.value for e in stream] == [1, 2]  # type: ignore[union-attr]
    stream.close()


def test_close_ends_a_blocked_iteration(ctx: dref.Context) -> None:
    ref = ctx.ref("close-iter", 0)
    stream = ref.changes()  # no timeout: waits until an event or close()
    seen: list[Event[int]] = []
    started = threading.Event()

    def read() -> None:
        started.set()
        seen.extend(stream)

    thread = threading.Thread(target=read)
    thread.start()
    assert started.wait(5)
    stream.close()
    thread.join(10)
    assert not thread.is_alive()
    assert seen == []
    with pytest.raises(dref.ContextClosedError):
        stream.get(0)


def test_undecodable_value_arrives_as_an_event_and_the_stream_goes_on(
    ctx: dref.Context,
) -> None:
    ref = ctx.ref("typed", 0)
    with ref.changes(timeout=5) as stream:
        bad = ctx.backend.set("typed", b"\xc1")  # 0xc1 is never valid MsgPack
        good = ref.set(3)
        event = stream.get(5)
        assert isinstance(event, Undecodable)
        assert isinstance(event.error, dref.CodecError)
        assert (event.data, event.revision) == (b"\xc1", bad)
        assert stream.get(5) == Changed(3, good)


def test_on_change_callback_gets_every_event_until_cancelled(ctx: dref.Context) -> None:
    ref = ctx.ref("callback", 0)
    seen: list[Event[int]] = []
    done = threading.Event()

    def record(event: Event[int]) -> None:
        seen.append(event)
        if isinstance(event, Deleted):
            done.set()

    subscription = ref.on_change(record)
    first = ref.set(1)
    second = ref.set(2)
    deleted = ref.delete()
    assert done.wait(10)
    subscription.cancel()
    assert not subscription.active
    ref.set_if_not_exist(3)
    assert seen == [Changed(1, first), Changed(2, second), Deleted(deleted)]


def test_failing_callback_is_logged_and_the_subscription_continues(
    ctx: dref.Context, caplog: pytest.LogCaptureFixture
) -> None:
    ref = ctx.ref("flaky", 0)
    got = threading.Event()

    def callback(event: Event[int]) -> None:
        if isinstance(event, Changed) and event.value == 1:
            raise RuntimeError("boom")
        got.set()

    with ref.on_change(callback):
        ref.set(1)
        ref.set(2)
        assert got.wait(10)
    assert "boom" in caplog.text


def test_slow_callback_does_not_block_writers(ctx: dref.Context) -> None:
    ref = ctx.ref("slow", 0)
    release = threading.Event()
    events: list[Event[int]] = []

    def slow(event: Event[int]) -> None:
        release.wait(30)
        events.append(event)

    with ref.on_change(slow, buffer=2) as subscription:
        for i in range(20):
            ref.set(i)  # would hang here if the callback blocked the writer
        release.set()
    assert subscription.active is False
    assert ref.get() == 19


def test_changes_after_a_revision_replay_exactly_the_later_ones_then_live(
    ctx: dref.Context,
) -> None:
    ref = ctx.ref("resume", 0)
    other = ctx.ref("resume-other", 0)
    written = []
    for i in range(1, 8):
        written.append(ref.set(i))
        other.set(-i)  # changes of another name interleave, and must not appear
        if i == 4:
            written.append(ref.delete())
    start = written[2]
    with ref.changes(timeout=5, after=start) as stream:
        replayed = [stream.get(5) for _ in written[3:]]
        assert [e.revision for e in replayed] == written[3:]  # type: ignore[union-attr]
        assert [type(e) for e in replayed] == [Changed, Deleted, Changed, Changed, Changed]
        assert [e.value for e in replayed if isinstance(e, Changed)] == [4, 5, 6, 7]
        live = ref.set(100)
        assert stream.get(5) == Changed(100, live)
        with pytest.raises(dref.DRefTimeoutError):
            stream.get(0.1)  # no duplicate of anything replayed
        assert stream.last_revision == live


def test_changes_after_the_latest_revision_start_with_the_next_change(
    ctx: dref.Context,
) -> None:
    ref = ctx.ref("resume-now", 0)
    latest = ref.set(1)
    with ref.changes(timeout=5, after=latest) as stream:
        with pytest.raises(dref.DRefTimeoutError):
            stream.get(0.1)
        revision = ref.set(2)
        assert stream.get(5) == Changed(2, revision)


def test_on_change_after_a_revision_sees_each_revision_once(ctx: dref.Context) -> None:
    ref = ctx.ref("resume-cb", 0)
    first = ref.set(1)
    written = [ref.set(i) for i in range(2, 6)]
    seen: list[int] = []
    done = threading.Event()

    def record(event: Event[int]) -> None:
        seen.append(event.revision)  # type: ignore[union-attr]
        if len(seen) == 6:
            done.set()

    with ref.on_change(record, after=first):
        written += [ref.set(6), ref.set(7)]
        assert done.wait(10), seen
    assert seen == written


def test_a_resumable_stream_that_overflows_replays_instead_of_lagging(
    ctx: dref.Context,
) -> None:
    ref = ctx.ref("resume-lag", 0)
    start = ref.set(0)
    with ref.changes(timeout=5, buffer=2, after=start) as stream:
        written = [ref.set(i) for i in range(1, 9)]  # nobody reads: the buffer overflows
        events = [stream.get(5) for _ in written]
        assert [e.revision for e in events] == written  # type: ignore[union-attr]
        assert not any(isinstance(e, Lagged) for e in events)
        with pytest.raises(dref.DRefTimeoutError):
            stream.get(0.1)


def test_changes_after_take_only_a_revision(ctx: dref.Context) -> None:
    ref = ctx.ref("resume-arg", 0)
    with pytest.raises(TypeError, match="after takes a revision"):
        ref.changes(after="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        ref.changes(after=-1)


def test_history_that_was_dropped_is_a_compacted_error() -> None:
    with dref.local(history_revisions=3) as ctx:
        ref = ctx.ref("short", 0)
        written = [ref.set(i) for i in range(1, 7)]
        with pytest.raises(dref.CompactedError) as raised:
            ref.changes(after=written[0])
        assert raised.value.oldest_available == written[-3]
        with ref.changes(timeout=5, after=raised.value.oldest_available - 1) as stream:
            assert [stream.get(5).revision for _ in range(3)] == written[-3:]  # type: ignore[union-attr]


class _LosesEvents(LocalBackend):
    """A local backend whose listeners miss events while `losing` is set, and are then told
    by one `resync` event (as Raft and Redis do after a reconnect)."""

    def __init__(self) -> None:
        super().__init__()
        self.losing = False
        self._listeners: list[tuple[str, Callable[[ChangeEvent], None]]] = []

    def subscribe(self, name, listener, *, timeout=None, sees_own_writes=True):  # type: ignore[no-untyped-def]
        def lossy(event: ChangeEvent) -> None:
            if not self.losing:
                listener(event)

        self._listeners.append((name, listener))
        return super().subscribe(name, lossy, timeout=timeout, sees_own_writes=sees_own_writes)

    def reconnect(self) -> None:
        self.losing = False
        for name, listener in self._listeners:
            entry = self.get(name)
            assert entry is not None
            listener(ChangeEvent(name, ChangeKind.SET, entry.value, entry.revision, resync=True))


def test_a_resumable_stream_fills_what_its_backend_missed_from_the_history() -> None:
    backend = _LosesEvents()
    with dref.Context(backend) as ctx:
        ref = ctx.ref("lossy", 0)
        start = ref.set(0)
        with ref.changes(timeout=5, after=start) as stream, ref.changes(timeout=5) as plain:
            backend.losing = True
            missed = [ref.set(i) for i in (1, 2, 3)]
            backend.reconnect()
            live = ref.set(4)
            events = [stream.get(5) for _ in range(4)]
            assert [e.revision for e in events] == [*missed, live]  # type: ignore[union-attr]
            assert [e.value for e in events] == [1, 2, 3, 4]  # type: ignore[union-attr]
            with pytest.raises(dref.DRefTimeoutError):
                stream.get(0.1)
            # a plain stream only learns the state the resync reported, then live changes
            assert [plain.get(5), plain.get(5)] == [Changed(3, missed[-1]), Changed(4, live)]
