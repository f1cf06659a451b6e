"""Change streams and on_change subscriptions: broadcast, order, deletes, lag, timeouts."""

from __future__ import annotations

import threading

import pytest

import dref
from dref import Changed, Deleted, Lagged, Undecodable
from dref.changes import Event

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
        for i in range(1, 11):
            ref.set(i)  # nobody reads: must not block
        assert stream.get(5) == Lagged(missed=6)
        rest = [stream.get(5) for _ in range(4)]
        assert [e.value for e in rest] == [7, 8, 9, 10]  # type: ignore[union-attr]
        assert ref.get() == 10


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
