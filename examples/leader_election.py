"""Leader election: workers compete for one lock; the holder leads, steps down, and another
worker takes over.

Each leadership term is a grant of the lock "leader", whose fencing token grows with
every term. The leader stamps its work with that token, so storage can refuse a stale
leader's writes. The lock's TTL is the failover time if a leader dies without stepping
down; here every leader steps down after its term and rests until another worker has
taken over (a waiter is woken by the release at once).

Run several copies at once, and the workers of every process compete:

    for host in 1 2 3; do python examples/leader_election.py --backend redis & done; wait

Every process ends when all terms are over, and reports how many it led.
"""

from __future__ import annotations

import argparse
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from _common import open_context, say

import dref

TICKS_PER_TERM = 3


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=3, help="worker threads in this process")
    parser.add_argument("--terms", type=int, default=6, help="leadership terms in all")
    parser.add_argument(
        "--name", default="leader-election", help="the election (a fresh name starts over)"
    )


def main() -> None:
    ctx, args = open_context(__doc__, arguments)
    with ctx:
        # Created if absent, never reset: every process of the election shares them.
        journal = ctx.ref(f"{args.name}:journal", [0, 0])  # [last fencing token, ticks]
        terms = ctx.ref(f"{args.name}:terms", 0)
        done = threading.Event()
        led_here: list[int] = []

        def do_work(worker: str, token: int) -> None:
            def stamp(entry: list[int]) -> list[int]:
                if token < entry[0]:
                    raise RuntimeError(f"{worker}: stale leader (token {token})")
                return [token, entry[1] + 1]

            journal.update(stamp)

        def worker(name: str) -> None:
            while not done.is_set():
                try:
                    with ctx.lock(f"{args.name}:leader", ttl=2, timeout=0.5) as lock:
                        term = terms.update_and_get(lambda n: n + 1)
                        if term > args.terms:
                            done.set()
                            return
                        led_here.append(term)
                        say(f"{name} is leader for term {term} "
                            f"(fencing token {lock.fencing_token})")
                        for _ in range(TICKS_PER_TERM):
                            do_work(name, lock.fencing_token)
                        next_term = terms.changes(timeout=2)  # watch before letting go
                        say(f"{name} steps down")
                except dref.LockTimeoutError:
                    continue  # someone else is leading; try again
                with next_term:  # rest until another worker has taken over
                    next(iter(next_term), None)

        names = [f"{os.getpid()}/worker-{i}" for i in range(args.workers)]
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            list(pool.map(worker, names))  # re-raises a worker's error (a stale leader) here
        token, ticks = journal.get()
        say(f"{args.terms} terms, {ticks} ticks of leader work, last fencing token {token};"
            f" {len(led_here)} led here")


if __name__ == "__main__":
    main()
