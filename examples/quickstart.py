"""Quickstart: a shared counter, updated from several threads, a lock and a change stream.

It runs on `dref.local()` (in memory) by default. With `--backend redis` or
`--backend raft` (see `--help`) the same code coordinates every process on that backend.
"""

from __future__ import annotations

import threading

from _common import open_context

import dref


def main() -> None:
    ctx, _ = open_context(__doc__)
    with ctx:
        hits = ctx.ref("quickstart:hits", 0)  # created only if absent
        hits.set(0)

        with hits.changes(timeout=0.5, buffer=1024) as changes:
            def count_hits() -> None:
                for _ in range(100):
                    hits.update(lambda n: n + 1)  # atomic compare-and-set, from any thread

            workers = [threading.Thread(target=count_hits) for _ in range(4)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            print(f"counter after 4 threads x 100 updates: {hits.get()}")

            with ctx.lock("quickstart:report", ttl=5, timeout=5) as lock:
                print(f"took lock quickstart:report, fencing token {lock.fencing_token}")

            hits.delete()
            seen = list(changes)  # every change, in revision order; ends after 0.5 s idle
            updates = [e for e in seen if isinstance(e, dref.Changed)]
            print(f"watched {len(updates)} changes, last value {updates[-1].value}, "
                  f"then {type(seen[-1]).__name__}")


if __name__ == "__main__":
    main()
