"""Leader election: workers compete for one lock; the holder leads, steps down, and another
worker takes over.

Each leadership term is a grant of the lock "leader", whose fencing token grows with
every term. The leader stamps its work with that token, so storage can refuse a stale
leader's writes. The lock's TTL is the failover time if a leader dies without stepping
down; here every leader steps down after its term and rests until another worker has
taken over (a waiter is woken by the release at once).
"""

from __future__ import annotations

import threading

from _common import open_context, say

import dref

WORKERS = 3
TERMS = 6
TICKS_PER_TERM = 3


def main() -> None:
    with open_context(__doc__) as ctx:
        journal = ctx.ref("leader-election:journal", [0, 0])  # [last fencing token, ticks]
        journal.set([0, 0])
        terms = ctx.ref("leader-election:terms", 0)
        terms.set(0)
        done = threading.Event()

        def do_work(worker: str, token: int) -> None:
            def stamp(entry: list[int]) -> list[int]:
                if token < entry[0]:
                    raise RuntimeError(f"{worker}: stale leader (token {token})")
                return [token, entry[1] + 1]

            journal.update(stamp)

        def worker(name: str) -> None:
            while not done.is_set():
                try:
                    with ctx.lock("leader-election:leader", ttl=2, timeout=0.5) as lock:
                        term = terms.update_and_get(lambda n: n + 1)
                        if term > TERMS:
                            done.set()
                            return
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

        threads = [threading.Thread(target=worker, args=(f"worker-{i}",)) for i in range(WORKERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        token, ticks = journal.get()
        say(f"{TERMS} terms, {ticks} ticks of leader work, last fencing token {token}")


if __name__ == "__main__":
    main()
