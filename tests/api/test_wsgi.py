"""examples/wsgi_app.py under real gunicorn with --preload and 4 workers (sync and
gthread), on Redis and on a Raft cluster: every flag flip reaches every worker, the
counter is exact, and the cron job runs once per period across all workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import dref
from dref.raft.node_process import free_ports

REPO = Path(__file__).resolve().parents[2]
WORKERS = 4
DEADLINE = 60.0

pytestmark = pytest.mark.slow


class Service:
    """A gunicorn process serving the example app, spoken to over HTTP."""

    def __init__(self, worker_class: str, env: dict[str, str], log: Path) -> None:
        (port,) = free_ports(1)
        self.base = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "gunicorn", "--preload", "-w", str(WORKERS)]
        command += ["-k", worker_class, "-b", f"127.0.0.1:{port}", "--chdir", str(REPO)]
        if worker_class == "gthread":
            command += ["--threads", "4"]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [*command, "examples.wsgi_app:app"],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                self.call("GET", "/count")
                return
            except OSError:
                assert self.process.poll() is None, f"gunicorn exited; see {log}"
                assert time.monotonic() < deadline, f"gunicorn did not serve; see {log}"
                time.sleep(0.1)  # a poll under a deadline

    def call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.base + path, method=method, data=b"")
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)


@pytest.fixture(params=["redis", "raft"])
def backend_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The app's environment for one backend, its names reset to a fresh start."""
    if request.param == "redis":
        env = {"DREF_BACKEND": "redis", "DREF_REDIS_URL": request.getfixturevalue("redis_url")}
        ctx = dref.redis(env["DREF_REDIS_URL"])
    else:
        addresses = request.getfixturevalue("raft_addresses")
        env = {"DREF_BACKEND": "raft", "DREF_ENDPOINTS": ",".join(addresses)}
        ctx = dref.raft_client(addresses, timeout=20)
    with ctx:
        ctx.ref("wsgi-counter", 0).set(0)
        ctx.ref("wsgi-flag", "off").set("off")
        ctx.ref("wsgi-cron-runs", []).set([])
    yield {**env, "DREF_CRON_SECONDS": "1"}


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_preloaded_workers_share_flag_counter_and_cron(backend_env, worker_class, tmp_path):
    service = Service(worker_class, backend_env, tmp_path / "gunicorn.log")
    try:
        pids = workers_seen(service)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: service.call("POST", "/hit"), range(200)))
        assert service.call("GET", "/count")["count"] == 200
        for value in ("on", "off", "on"):
            service.call("POST", f"/flag?value={value}")
            every_worker_sees(service, pids, value)
        runs = wait_for_cron_runs(service, 2)
        periods = [period for _, period in runs]
        assert len(periods) == len(set(periods))  # never twice in one period
    finally:
        service.stop()


def workers_seen(service: Service) -> set[int]:
    """The pids of all worker processes, learned from the answers they give."""
    pids: set[int] = set()
    deadline = time.monotonic() + DEADLINE
    while len(pids) < WORKERS:
        assert time.monotonic() < deadline, f"only workers {pids} answered"
        pids.add(service.call("GET", "/flag")["pid"])
    return pids


def every_worker_sees(service: Service, pids: set[int], value: str) -> None:
    """Poll until each worker has answered with `value` for the flag."""
    current: set[int] = set()
    deadline = time.monotonic() + DEADLINE
    while current != pids:
        assert time.monotonic() < deadline, f"workers {pids - current} never saw {value!r}"
        answer = service.call("GET", "/flag")
        if answer["flag"] == value:
            current.add(answer["pid"])


def wait_for_cron_runs(service: Service, count: int) -> list[list[int]]:
    deadline = time.monotonic() + DEADLINE
    while len(runs := service.call("GET", "/cron")["runs"]) < count:
        assert time.monotonic() < deadline, f"cron ran {len(runs)} times"
        time.sleep(0.1)  # a poll under a deadline
    return runs
