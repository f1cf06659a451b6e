"""Each example runs to completion (exit 0) and prints its key line, on every backend;
`run_once.py` and `leader_election.py` also run as several processes at once, as they
would on several hosts, and the job runs exactly once / every term has one leader."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED = {
    "quickstart.py": "counter after 4 threads x 100 updates: 400",
    "leader_election.py": "6 terms, 18 ticks of leader work",
    "feature_flags.py": "all 3 workers run with Flags(dark_mode=True, new_checkout=True",
    "run_once.py": "5 workers, the job ran exactly once",
    "counters.py": "no increment lost",
    "notifications.py": "delivered 5 of 5 notifications in order: True",
}

SERVED = {
    "wsgi_app.py": "tests/api/test_wsgi.py",
    "kv_service": "tests/api/test_kv_service.py",
    "interop_demo.py": "tests/interop/test_interop_api.py",
}
"""Examples run by a test of their own (a file or a folder): services, and the interop
demo, which needs an interop cluster."""

DEADLINE = 90.0
"""Seconds one example process may take (a loaded CI box; they take 0.2-4 s here)."""


def test_every_example_is_covered() -> None:
    examples = {
        p.name
        for p in EXAMPLES.iterdir()
        if (p.suffix == ".py" or p.is_dir()) and not p.name.startswith(("_", "."))
    }
    assert examples == set(EXPECTED) | set(SERVED)
    repo = EXAMPLES.parent
    assert all((repo / test).exists() for test in SERVED.values())


def backend_arguments(backend: str, request: pytest.FixtureRequest) -> list[str]:
    """The command line that puts an example on this test session's server of `backend`;
    "embedded" is `--backend raft` without endpoints (a one-node cluster in the process)."""
    if backend == "redis":
        return ["--backend", "redis", "--redis", request.getfixturevalue("redis_url")]
    if backend == "raft":
        addresses = request.getfixturevalue("raft_addresses")
        return ["--backend", "raft", "--endpoints", ",".join(addresses)]
    if backend == "embedded":
        return ["--backend", "raft"]
    return ["--backend", backend]


def fresh_names(script: str) -> list[str]:
    """Arguments that give a script's shared state names no earlier run used."""
    unique = uuid.uuid4().hex[:12]
    return {"run_once.py": ["--date", unique], "leader_election.py": ["--name", unique]}.get(
        script, []
    )


def start(script: str, arguments: list[str]) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DREF_")}
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=EXAMPLES.parent,
        env=environment,
    )


def finish(process: subprocess.Popen[str]) -> str:
    """The process's output, once it has exited 0."""
    try:
        out, err = process.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"example still running after {DEADLINE} s:\n{out}\n{err}")
    assert process.returncode == 0, f"exit {process.returncode}:\n{out}\n{err}"
    return out


@pytest.mark.parametrize("backend", ["local", "redis", "raft"])
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script: str, backend: str, request: pytest.FixtureRequest) -> None:
    arguments = backend_arguments(backend, request) + fresh_names(script)
    out = finish(start(script, arguments))
    assert EXPECTED[script] in out, out


def test_an_example_on_an_embedded_raft_node(request: pytest.FixtureRequest) -> None:
    out = finish(start("quickstart.py", backend_arguments("embedded", request)))
    assert EXPECTED["quickstart.py"] in out, out


def test_the_backend_is_checked(request: pytest.FixtureRequest) -> None:
    process = start("counters.py", ["--backend", "etcd"])
    _, err = process.communicate(timeout=DEADLINE)
    assert process.returncode != 0
    assert "--backend must be one of local, redis, raft, got 'etcd'" in err


PROCESSES = 3


@pytest.mark.parametrize("backend", ["redis", "raft"])
def test_run_once_in_several_processes_runs_the_job_once(
    backend: str, request: pytest.FixtureRequest
) -> None:
    arguments = backend_arguments(backend, request) + fresh_names("run_once.py")
    outs = [finish(p) for p in [start("run_once.py", arguments) for _ in range(PROCESSES)]]
    text = "".join(outs)
    assert len(re.findall(r": running nightly-report:", text)) == 1, text
    assert all("5 workers, the job ran exactly once" in out for out in outs), text
    assert sum(", here)" in out for out in outs) == 1, text
    assert text.count("skipping") == PROCESSES * 5 - 1, text


@pytest.mark.parametrize("backend", ["redis", "raft"])
def test_leader_election_in_several_processes_gives_each_term_one_leader(
    backend: str, request: pytest.FixtureRequest
) -> None:
    arguments = backend_arguments(backend, request) + fresh_names("leader_election.py")
    outs = [finish(p) for p in [start("leader_election.py", arguments) for _ in range(PROCESSES)]]
    text = "".join(outs)
    assert all("6 terms, 18 ticks of leader work" in out for out in outs), text
    led = [int(m) for m in re.findall(r"; (\d+) led here", text)]
    assert sum(led) == 6, text
    grants = sorted(
        (int(term), int(token))
        for term, token in re.findall(r"is leader for term (\d+) \(fencing token (\d+)\)", text)
    )
    assert [term for term, _ in grants] == [1, 2, 3, 4, 5, 6], text
    tokens = [token for _, token in grants]
    assert tokens == sorted(set(tokens)), f"fencing tokens must grow with the term: {grants}"
