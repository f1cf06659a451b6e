"""Shared by the examples: `--backend local` (default) or `--backend redis://host:port/db`,
and a print that keeps lines from different threads apart."""

from __future__ import annotations

import argparse

import dref


def open_context(description: str | None) -> dref.Context:
    """Parse `--backend` from the command line and open that context."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backend", default="local", help='"local" or a redis:// URL')
    backend = parser.parse_args().backend
    if backend == "local":
        return dref.local()
    return dref.redis(backend)


def say(line: str) -> None:
    """Print one whole line (a plain print may interleave with other threads' output)."""
    print(line + "\n", end="", flush=True)
