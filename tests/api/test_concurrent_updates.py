"""Compare-and-set updates from many threads lose nothing, without any global lock.

Remote backends run fewer updates per thread (`scaled`): every update is a
network round trip, and the assertions stay exact."""

from __future__ import annotations

import threading
from collections.abc import Callable

import dref

THREADS = 32
UPDATES = 1_000


def increment_from_threads(counter: dref.DRef[int], threads: int, updates: int) -> None:
    """`threads` threads, started together, each adding 1 `updates` times; fails the test
    with the first error any of them met."""
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            start.wait(timeout=30)
            for _ in range(updates):
                counter.update(lambda n: n + 1)
        except BaseException as e:  # surfaced by the assertion below
            failures.append(e)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    assert not failures


def test_32_threads_times_1000_updates_count_exactly(
    ctx: dref.Context, scaled: Callable[[int], int]
) -> None:
    updates = scaled(UPDATES)
    counter = ctx.ref("counter", 0)
    increment_from_threads(counter, THREADS, updates)
    assert counter.get() == THREADS * updates


def test_updates_of_two_names_do_not_interfere(
    ctx: dref.Context, scaled: Callable[[int], int]
) -> None:
    updates = scaled(500)
    a, b = ctx.ref("a", 0), ctx.ref("b", 0)

    def bump(ref: dref.DRef[int]) -> None:
        for _ in range(updates):
            ref.update(lambda n: n + 1)

    threads = [threading.Thread(target=bump, args=(r,)) for r in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert (a.get(), b.get()) == (2 * updates, 2 * updates)


def test_updates_of_one_name_by_threads_of_one_context_are_combined(
    ctx: dref.Context, backend_name: str
) -> None:
    threads, updates = 16, 20
    counter = ctx.ref("combined", 0)
    first = counter.revision()
    assert first is not None
    increment_from_threads(counter, threads, updates)
    assert counter.get() == threads * updates
    if backend_name == "raft":  # round trips of milliseconds: callers queue up and combine
        writes = counter.revision() - first  # type: ignore[operator]
        assert writes < threads * updates / 2


def test_a_failing_function_fails_only_its_own_caller(ctx: dref.Context) -> None:
    counter = ctx.ref("partly", 0)
    errors: list[BaseException] = []

    def bad(n: int) -> int:
        raise ValueError("refused")

    def work(f: Callable[[int], int]) -> None:
        try:
            for _ in range(10):
                counter.update(f)
        except ValueError as e:
            errors.append(e)

    workers = [threading.Thread(target=work, args=(lambda n: n + 1,)) for _ in range(4)]
    workers.append(threading.Thread(target=work, args=(bad,)))
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=60)
    assert len(errors) == 1 and str(errors[0]) == "refused"
    assert counter.get() == 40
