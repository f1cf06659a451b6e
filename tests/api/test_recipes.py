"""`dref.recipes` on every backend, from many threads: each recipe's guarantee is asserted
(one leader at a time with growing tokens, at most `limit` holders, exact counts, every
queue item exactly once, barriers that release all waiters)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

import dref
from dref.errors import DRefTimeoutError, LockStolenError, LockTimeoutError
from dref.recipes import Barrier, Counter, DoubleBarrier, Election, Queue, Semaphore

JOIN = 120.0
"""Upper bound on any test thread's life (seconds)."""


def run_threads(count: int, work: Callable[[int], None]) -> None:
    """Run `work(i)` for i in range(count) on threads started together; re-raise the first
    failure; fail if any thread is still running after `JOIN` seconds."""
    start = threading.Barrier(count)
    failures: list[BaseException] = []

    def body(i: int) -> None:
        try:
            start.wait(timeout=30)
            work(i)
        except BaseException as e:  # re-raised below, in the test's thread
            failures.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=JOIN)
    assert not any(t.is_alive() for t in threads), "a worker thread did not finish"
    if failures:
        raise failures[0]


def in_background(work: Callable[[], None]) -> Callable[[], None]:
    """Start `work` on a thread; returns a join that re-raises its failure in the caller."""
    failures: list[BaseException] = []

    def body() -> None:
        try:
            work()
        except BaseException as e:  # re-raised by join
            failures.append(e)

    thread = threading.Thread(target=body)
    thread.start()

    def join() -> None:
        thread.join(timeout=JOIN)
        assert not thread.is_alive(), "a background thread did not finish"
        if failures:
            raise failures[0]

    return join


class Occupancy:
    """Counts who is inside a critical section now, and the most ever inside at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.inside = 0
        self.most = 0

    def enter(self) -> None:
        with self._guard:
            self.inside += 1
            self.most = max(self.most, self.inside)

    def leave(self) -> None:
        with self._guard:
            self.inside -= 1


# -- Counter ---------------------------------------------------------------------------------


def test_counter_from_sixteen_threads_counts_exactly(
    ctx: dref.Context, scaled: Callable[[int], int]
) -> None:
    rounds = scaled(300)
    counter = Counter(ctx, "hits")

    def work(i: int) -> None:
        for _ in range(rounds):
            counter.increment(2)
            counter.decrement()

    run_threads(16, work)
    assert counter.value() == 16 * rounds


def test_counter_keeps_an_existing_value_and_returns_new_values(ctx: dref.Context) -> None:
    assert Counter(ctx, "c", initial=5).increment() == 6
    again = Counter(ctx, "c", initial=100)  # the name exists: the initial value is ignored
    assert again.decrement(3) == 3
    assert again.value() == 3


# -- Queue -----------------------------------------------------------------------------------


def test_queue_delivers_every_item_once_in_order(
    ctx: dref.Context, scaled: Callable[[int], int]
) -> None:
    producers, consumers, per_producer = 4, 8, scaled(200) + 2
    total = producers * per_producer
    queue = Queue(ctx, "jobs")
    received: list[list[list[int]]] = [[] for _ in range(consumers)]
    done = threading.Event()
    taken = Counter(ctx, "jobs-taken")

    def work(i: int) -> None:
        if i < producers:
            for n in range(per_producer):
                queue.put([i, n])
            return
        mine = received[i - producers]
        deadline = time.monotonic() + JOIN / 2
        while not done.is_set() and time.monotonic() < deadline:
            try:
                mine.append(queue.get(timeout=0.5))
            except DRefTimeoutError:
                continue
            if taken.increment() == total:
                done.set()

    run_threads(producers + consumers, work)
    everything = sorted(tuple(item) for mine in received for item in mine)
    assert everything == sorted((p, n) for p in range(producers) for n in range(per_producer))
    for mine in received:  # FIFO: a consumer sees each producer's items in put order
        for p in range(producers):
            ns = [n for q, n in mine if q == p]
            assert ns == sorted(ns)
    assert len(queue) == 0


def test_queue_get_waits_for_a_put_and_times_out_when_empty(ctx: dref.Context) -> None:
    queue = Queue(ctx, "q")
    started = time.monotonic()
    with pytest.raises(DRefTimeoutError, match="queue q stayed empty"):
        queue.get(timeout=0.3)
    assert time.monotonic() - started >= 0.3
    got: list[object] = []
    join_consumer = in_background(lambda: got.append(queue.get(timeout=30)))
    queue.put({"job": "a", "args": [1, 2]})
    join_consumer()
    assert got == [{"job": "a", "args": [1, 2]}]
    queue.put("x")
    queue.put(None)
    assert (len(queue), queue.get(), queue.get(), len(queue)) == (2, "x", None, 0)


def test_queue_refuses_growth_past_the_backend_size_limit() -> None:
    with dref.local(max_value_size=1000) as ctx:
        queue = Queue(ctx, "small")
        with pytest.raises(dref.ValueTooLargeError):
            for _ in range(20):  # bounded: 20 x 100 bytes is past 1000
                queue.put("x" * 100)
        assert 0 < len(queue) < 20


# -- Semaphore -------------------------------------------------------------------------------


def test_semaphore_never_admits_more_than_its_limit(
    ctx: dref.Context, scaled: Callable[[int], int]
) -> None:
    rounds = scaled(100) + 1
    limit = 3
    occupancy = Occupancy()

    def work(i: int) -> None:
        semaphore = Semaphore(ctx, "pool", limit, ttl=30, identity=f"w{i}", timeout=60)
        for _ in range(rounds):
            with semaphore:
                occupancy.enter()
                assert len(semaphore.holders()) <= limit
                occupancy.leave()

    run_threads(12, work)
    assert 1 <= occupancy.most <= limit
    assert Semaphore(ctx, "pool", limit).holders() == []


def test_semaphore_admits_limit_holders_together_and_times_out_the_next(
    ctx: dref.Context,
) -> None:
    limit = 3
    all_in = threading.Barrier(limit + 1)
    let_go = threading.Event()

    def hold(i: int) -> None:
        with Semaphore(ctx, "slots", limit, ttl=30, timeout=30):
            all_in.wait(timeout=30)  # fails unless `limit` hold it at the same time
            assert let_go.wait(timeout=30)

    join_holders = in_background(lambda: run_threads(limit, hold))
    try:
        all_in.wait(timeout=30)
        extra = Semaphore(ctx, "slots", limit, ttl=30)
        with pytest.raises(LockTimeoutError):
            extra.acquire(timeout=0.3)
    finally:
        let_go.set()
        join_holders()
    extra.acquire(timeout=10)  # freed by the releases
    extra.release()


def test_semaphore_holder_whose_lease_vanishes_is_told(ctx: dref.Context) -> None:
    lost = threading.Event()
    semaphore = Semaphore(ctx, "leases", 2, ttl=2, on_lost=lost.set)
    semaphore.acquire(timeout=10)
    ctx.ref("leases", {}).set({})  # as if its lease had expired and been pruned
    assert lost.wait(10), "the renewal did not notice the lease was gone"
    assert semaphore.lost.is_set()
    with pytest.raises(LockStolenError):
        semaphore.release()
    semaphore.acquire(timeout=10)  # the object is reusable; `lost` is cleared
    assert not semaphore.lost.is_set()
    semaphore.release()


def test_semaphore_lease_of_a_silent_holder_expires(ctx: dref.Context) -> None:
    ends = time.time() * 1000 + 800  # a holder that will never renew nor release
    ctx.ref("reclaim", {}).set({"dead#1": int(ends)})
    semaphore = Semaphore(ctx, "reclaim", 1, ttl=30)
    semaphore.acquire(timeout=20)  # woken when the dead lease ends, not by any write
    assert time.time() * 1000 >= ends - 50
    assert [key.split("#")[0] for key in semaphore.holders()] == ["holder"]
    semaphore.release()


# -- Election --------------------------------------------------------------------------------


def test_election_has_one_leader_at_a_time_with_increasing_tokens(
    ctx: dref.Context, scaled: Callable[[int], int]
) -> None:
    terms = scaled(40) + 1
    occupancy = Occupancy()
    tokens: list[int] = []

    def candidate(i: int) -> None:
        election = Election(ctx, "leader", f"c{i}", ttl=30, timeout=90)
        for _ in range(terms):
            token = election.campaign()
            occupancy.enter()
            tokens.append(token)  # in leadership order: leaders never overlap
            assert election.is_leader() and election.fencing_token == token
            assert election.leader() == f"c{i}"
            occupancy.leave()
            election.resign()

    run_threads(8, candidate)
    assert occupancy.most == 1
    assert len(tokens) == 8 * terms
    assert all(a < b for a, b in zip(tokens, tokens[1:], strict=False)), tokens


def test_election_observers_see_each_leader_and_its_resignation(ctx: dref.Context) -> None:
    first, second = Election(ctx, "e", "first", ttl=30), Election(ctx, "e", "second", ttl=30)
    seen: list[str | None] = []
    changed = threading.Condition()

    def record(leader: str | None) -> None:
        with changed:
            seen.append(leader)
            changed.notify_all()

    def wait_seen(expected: list[str | None]) -> None:
        with changed:
            assert changed.wait_for(lambda: seen == expected, timeout=20), seen

    with first.observe(timeout=20) as leaders, first.on_leader_change(record):
        wait_seen([None])
        assert next(leaders) is None
        with first:
            wait_seen([None, "first"])
            assert next(leaders) == "first"
            assert second.leader() == "first"
            with pytest.raises(LockTimeoutError):
                second.campaign(timeout=0.3)
        wait_seen([None, "first", None])
        assert next(leaders) is None
        second.campaign(timeout=10)
        wait_seen([None, "first", None, "second"])
        assert next(leaders) == "second"
        assert second.fencing_token > first.fencing_token
        second.resign()
        wait_seen([None, "first", None, "second", None])


def test_election_leader_that_loses_its_lease_is_told_and_fenced_out(ctx: dref.Context) -> None:
    lost = threading.Event()
    old = Election(ctx, "fenced", "old", ttl=30, on_lost=lost.set)
    old_token = old.campaign(timeout=10)
    ctx.backend.delete("fenced")  # the lease vanishes, as when a paused leader's TTL ends
    assert lost.wait(10) and old.lost.is_set() and not old.is_leader()
    new = Election(ctx, "fenced", "new", ttl=30)
    assert new.campaign(timeout=10) > old_token
    assert old.leader() == "new"
    with pytest.raises(LockStolenError):
        old.resign()
    new.resign()
    assert new.leader() is None


# -- Barrier and DoubleBarrier ---------------------------------------------------------------


def test_barrier_holds_waiters_until_removed(ctx: dref.Context) -> None:
    barrier = Barrier(ctx, "gate")
    barrier.wait(timeout=1)  # never raised: open
    barrier.create()
    assert barrier.raised()
    with pytest.raises(DRefTimeoutError, match="barrier gate still up"):
        barrier.wait(timeout=0.3)
    released = Counter(ctx, "released")
    waiting = threading.Barrier(9)

    def waiter(i: int) -> None:
        waiting.wait(timeout=30)
        Barrier(ctx, "gate").wait(timeout=60)
        released.increment()

    join_waiters = in_background(lambda: run_threads(8, waiter))
    waiting.wait(timeout=30)
    assert released.value() == 0  # nobody passes while it stands
    barrier.remove()
    join_waiters()
    assert released.value() == 8


def test_double_barrier_starts_and_ends_rounds_together(ctx: dref.Context) -> None:
    count, rounds = 6, 2
    calls = {"enter": 0, "leave": 0}
    guard = threading.Lock()

    def participant(i: int) -> None:
        barrier = DoubleBarrier(ctx, "rounds", count, identity=f"p{i}", timeout=60)
        for r in range(1, rounds + 1):
            with guard:
                calls["enter"] += 1
            barrier.enter()
            with guard:  # nobody passes enter before all of this round called it
                assert calls["enter"] >= count * r
            with guard:
                calls["leave"] += 1
            barrier.leave()
            with guard:  # nobody passes leave before all of this round called it
                assert calls["leave"] >= count * r

    run_threads(count, participant)
    assert calls == {"enter": count * rounds, "leave": count * rounds}


def test_double_barrier_entrant_that_times_out_is_withdrawn(ctx: dref.Context) -> None:
    early = DoubleBarrier(ctx, "pair", 2, identity="early")
    with pytest.raises(DRefTimeoutError, match="fewer than 2 entered"):
        early.enter(timeout=0.3)
    late = DoubleBarrier(ctx, "pair", 2, identity="late")
    with pytest.raises(DRefTimeoutError):  # "early" withdrew, so "late" is alone
        late.enter(timeout=0.3)
    run_threads(2, lambda i: (early, late)[i].enter(timeout=30))
    run_threads(2, lambda i: (early, late)[i].leave(timeout=30))


def test_recipes_refuse_impossible_configurations(ctx: dref.Context) -> None:
    with pytest.raises(dref.ConfigError):
        Semaphore(ctx, "none", 0)
    with pytest.raises(dref.ConfigError):
        DoubleBarrier(ctx, "nobody", 0)
