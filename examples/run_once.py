"""Run once: cron workers on several hosts wake up for the same nightly job; exactly one
runs it.

The lock makes the check-and-run atomic across workers; the done marker (a DRef keyed by
the run's date, never reset) makes the job run once per date, even for a worker that
starts after the winner has finished and released the lock. Start several copies at once,
as cron does on several hosts:

    for host in 1 2 3; do python examples/run_once.py --backend redis & done; wait

Each prints whether one of its workers ran the job, and checks that the job ran exactly
once in the whole cluster.
"""

from __future__ import annotations

import argparse
import datetime
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from _common import open_context, say


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=5, help="cron threads in this process")
    parser.add_argument(
        "--date",
        default=datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        help="the run's date, which the job runs once for (default: today, UTC)",
    )


def main() -> None:
    ctx, args = open_context(__doc__, arguments)
    with ctx:
        job = f"nightly-report:{args.date}"
        done = ctx.ref(f"{job}:done", "")  # who ran it; "" = not yet (created if absent)
        runs = ctx.ref(f"{job}:runs", 0)  # how many times the job ran, cluster-wide
        here = f"{socket.gethostname()}/{os.getpid()}"
        start = threading.Barrier(args.workers)
        ran_here: list[str] = []

        def cron(name: str) -> None:
            start.wait()
            with ctx.lock(job, ttl=10, timeout=30):
                if done.get():
                    say(f"{name}: already done by {done.get()}, skipping")
                    return
                say(f"{name}: running {job}")
                runs.update(lambda n: n + 1)  # the job's work
                done.set(name)
                ran_here.append(name)

        names = [f"{here}/cron-{i}" for i in range(args.workers)]
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            list(pool.map(cron, names))  # re-raises a worker's error here
        count = runs.get()
        if count != 1:
            raise SystemExit(f"the job ran {count} times")
        where = "here" if ran_here else "elsewhere"
        say(f"{args.workers} workers, the job ran exactly once (by {done.get()}, {where})")


if __name__ == "__main__":
    main()
