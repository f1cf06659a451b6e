"""A WSGI service on dref: a feature flag every worker follows, a cluster-wide counter,
and a job that runs once per minute across the whole cluster, whichever worker gets it.

    DREF_BACKEND=redis DREF_REDIS_URL=redis://127.0.0.1:6379/0 \\
        gunicorn --preload -w 4 examples.wsgi_app:app
    DREF_BACKEND=raft DREF_ENDPOINTS=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 \\
        gunicorn --preload -w 4 -k gthread --threads 4 examples.wsgi_app:app

Each worker process opens its context at its first request, after gunicorn forked it,
which works on every backend with or without `--preload` (a Raft context must not be
opened before `fork()`; see README "Fork").

    GET  /flag           {"pid": ..., "flag": "on"}   this worker's copy of the flag
    POST /flag?value=on  set the flag (every worker's copy follows through on_change)
    POST /hit            add one to the counter; {"count": n}
    GET  /count          {"count": n}
    GET  /cron           {"runs": [...]}  the (worker, minute) of every cron run so far
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import dref
from examples._common import DEFAULT_REDIS_URL, context_for

CRON_EVERY = float(os.environ.get("DREF_CRON_SECONDS", "60"))


def open_context() -> dref.Context:
    """The context named by DREF_BACKEND (local, redis or raft), with DREF_REDIS_URL or
    DREF_ENDPOINTS, as the other examples take them."""
    return context_for(
        os.environ.get("DREF_BACKEND", "local"),
        os.environ.get("DREF_REDIS_URL", DEFAULT_REDIS_URL),
        os.environ.get("DREF_ENDPOINTS", ""),
    )


class Worker:
    """What one worker process holds: its context, refs, its copy of the flag and its
    cron thread. Built at the first request of the process."""

    def __init__(self) -> None:
        self.ctx = open_context()
        self.counter = self.ctx.ref("wsgi-counter", 0)
        self.flag_ref = self.ctx.ref("wsgi-flag", "off")
        self.runs = self.ctx.ref("wsgi-cron-runs", [])
        self._flag_lock = threading.Lock()
        self.flag_ref.on_change(self._on_flag)  # subscribe first, then read: miss nothing
        with self._flag_lock:
            self.flag = self.flag_ref.get()
        threading.Thread(target=self._cron, name="wsgi-cron", daemon=True).start()

    def _on_flag(self, event: dref.Event[str]) -> None:
        value = event.value if isinstance(event, dref.Changed) else self.flag_ref.get()
        with self._flag_lock:
            self.flag = value

    def _cron(self) -> None:
        """Every CRON_EVERY seconds the job runs once in the whole cluster: workers race
        for the lock, and the holder runs the job only if the period has no run yet."""
        lock = self.ctx.lock("wsgi-cron", ttl=30)
        while True:
            period = int(time.time() // CRON_EVERY)
            if lock.acquire(blocking=False):
                try:
                    if period not in [run[1] for run in self.runs.get()]:
                        record = [os.getpid(), period]
                        self.runs.update(lambda runs, record=record: [*runs, record])
                finally:
                    lock.release()
            time.sleep(max(0.05, (period + 1) * CRON_EVERY - time.time()))


_worker: Worker | None = None
_worker_lock = threading.Lock()


def worker() -> Worker:
    global _worker
    with _worker_lock:
        if _worker is None:
            _worker = Worker()
        return _worker


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The WSGI entry point."""
    w = worker()
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/flag" and method == "GET":
        body: dict[str, Any] = {"pid": os.getpid(), "flag": w.flag}
    elif path == "/flag" and method == "POST":
        w.flag_ref.set(query.get("value", ["on"])[0])
        body = {"pid": os.getpid()}
    elif path == "/hit" and method == "POST":
        body = {"count": w.counter.update_and_get(lambda n: n + 1)}
    elif path == "/count":
        body = {"count": w.counter.get()}
    elif path == "/cron":
        body = {"runs": w.runs.get()}
    else:
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": "not found"}']
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
