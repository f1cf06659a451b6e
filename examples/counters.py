"""Cluster-wide counters: a thread pool handles requests and counts them in shared DRefs.

`update` is a compare-and-set loop, so concurrent increments from any thread (or any
process on the same backend) are never lost and no lock is held. A dict value keeps a
counter per status code in one atomic value.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from _common import open_context

REQUESTS = 400


def main() -> None:
    ctx, _ = open_context(__doc__)
    with ctx:
        total = ctx.ref("counters:requests", 0)
        by_status = ctx.ref("counters:by-status", {"200": 0, "404": 0, "500": 0})
        total.set(0)
        by_status.set({"200": 0, "404": 0, "500": 0})

        def handle(request_id: int) -> None:
            status = "500" if request_id % 50 == 0 else "404" if request_id % 10 == 0 else "200"
            total.update(lambda n: n + 1)
            by_status.update(lambda counts: {**counts, status: counts[status] + 1})

        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="request") as pool:
            list(pool.map(handle, range(REQUESTS)))

        counts = by_status.get()
        print(f"requests: {total.get()}")
        print("by status: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        if total.get() != REQUESTS or sum(counts.values()) != REQUESTS:
            raise SystemExit("lost an increment")
        print("no increment lost")


if __name__ == "__main__":
    main()
