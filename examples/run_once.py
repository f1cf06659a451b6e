"""Run once: several cron workers wake up for the same nightly job; exactly one runs it.

The lock makes the check-and-run atomic across workers; the done marker (a DRef keyed by
the run's date) makes the job run once per date even for a worker that starts after the
winner has finished and released the lock.
"""

from __future__ import annotations

import threading

from _common import open_context, say

WORKERS = 5
RUN_DATE = "2024-06-01"


def main() -> None:
    with open_context(__doc__) as ctx:
        job = f"nightly-report:{RUN_DATE}"
        done = ctx.ref(f"{job}:done", "")  # who ran it; "" = not yet
        done.set("")
        runs = ctx.ref(f"{job}:runs", 0)
        runs.set(0)
        start = threading.Barrier(WORKERS)

        def cron(name: str) -> None:
            start.wait()
            with ctx.lock(job, ttl=10, timeout=10):
                if done.get():
                    say(f"{name}: already done by {done.get()}, skipping")
                    return
                say(f"{name}: running {job}")
                runs.update(lambda n: n + 1)  # the job's work
                done.set(name)

        threads = [threading.Thread(target=cron, args=(f"cron-{i}",)) for i in range(WORKERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        count = runs.get()
        if count != 1:
            raise SystemExit(f"the job ran {count} times")
        say(f"{WORKERS} workers, the job ran exactly once (by {done.get()})")


if __name__ == "__main__":
    main()
