"""Compare-and-set updates from many threads lose nothing, without any global lock."""

from __future__ import annotations

import threading

import dref

THREADS = 32
UPDATES = 1_000


def test_32_threads_times_1000_updates_count_exactly(ctx: dref.Context) -> None:
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


def test_updates_of_two_names_do_not_interfere(ctx: dref.Context) -> None:
    a, b = ctx.ref("a", 0), ctx.ref("b", 0)

    def bump(ref: dref.DRef[int]) -> None:
        for _ in range(500):
            ref.update(lambda n: n + 1)

    threads = [threading.Thread(target=bump, args=(r,)) for r in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert (a.get(), b.get()) == (1000, 1000)
