"""Running the real `dref` command as a subprocess, in an environment free of the caller's
DREF_* variables."""

from __future__ import annotations

import os
import subprocess
import sys

DREF = [sys.executable, "-m", "dref.cli"]


def cli_env(**variables: str) -> dict[str, str]:
    """This process's environment without any DREF_* variable, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DREF_")}
    return {**env, **variables}


def run_dref(
    *args: str | bytes, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run `dref ARGS...` to its end."""
    return subprocess.run(
        [*DREF, *args],
        env=cli_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
