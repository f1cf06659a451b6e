"""Each example runs to completion (exit 0) and prints its key line."""

from __future__ import annotations

import subprocess
import sys
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


SERVED = {"wsgi_app.py": "tests/api/test_wsgi.py", "kv_service": "tests/api/test_kv_service.py"}
"""Examples that are services, not scripts (a file or a folder): the test that runs each."""


def test_every_example_is_covered() -> None:
    examples = {
        p.name
        for p in EXAMPLES.iterdir()
        if (p.suffix == ".py" or p.is_dir()) and not p.name.startswith(("_", "."))
    }
    assert examples == set(EXPECTED) | set(SERVED)
    repo = EXAMPLES.parent
    assert all((repo / test).exists() for test in SERVED.values())


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=EXAMPLES.parent,
    )
    assert result.returncode == 0, result.stderr
    assert EXPECTED[script] in result.stdout, result.stdout
