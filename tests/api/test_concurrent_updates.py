"""Compare-and-set updates from many threads lose nothing, without any global lock.

Remote backends run fewer updates per thread (`scaled`): every update is a
network round trip, and the assertions stay exact."""

from __future__ import annotations

import threading
from collections.abc import Callable

import dref

THREADS = 32
UPDATES = 1_000


def test_32_threads_times_1000_updates_count_exactly(
    ctx: dref.Context, scaled: Callable[[int], int]
) -> None:
    updates = scaled(UPDATES)
    counter = ctx.ref("counter", 0)
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            start.wait(timeout=30)
            for _ in range(updates):
                counter.update(lambda n: n + 1)
        except BaseException as e:  # surfaced by the assertion below
            failures.append(e)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures
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
