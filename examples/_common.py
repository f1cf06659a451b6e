"""Shared by the examples: the backend to run on, and a print that keeps lines from
different threads apart.

Every example takes `--backend local|redis|raft`:

* `local` (default): in memory, this process only;
* `redis`: the server at `--redis URL` (default `$DREF_REDIS_URL`, else
  redis://127.0.0.1:6379/0); every process on that server shares the names;
* `raft`: the cluster at `--endpoints host:port,...` (default `$DREF_ENDPOINTS`, for
  example from `dref cluster up`); without endpoints, a one-node cluster embedded in this
  process, with its data in a temporary directory removed at exit.

`--backend redis://...` (a URL in place of the name) is accepted too.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
from collections.abc import Callable

import dref

BACKENDS = ("local", "redis", "raft")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--backend`, `--redis` and `--endpoints` to an example's command line."""
    parser.add_argument(
        "--backend",
        default=os.environ.get("DREF_BACKEND", "local"),
        help="local (default, in memory), redis or raft; a redis:// URL also works",
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get("DREF_REDIS_URL", DEFAULT_REDIS_URL),
        metavar="URL",
        help=f"Redis server of --backend redis (default $DREF_REDIS_URL or {DEFAULT_REDIS_URL})",
    )
    parser.add_argument(
        "--endpoints",
        default=os.environ.get("DREF_ENDPOINTS", ""),
        metavar="HOST:PORT,...",
        help="Raft cluster of --backend raft (default $DREF_ENDPOINTS; none: a one-node"
        " cluster embedded in this process)",
    )


def context_for(
    backend: str, redis_url: str = DEFAULT_REDIS_URL, endpoints: str = ""
) -> dref.Context:
    """Open the context of one backend (see the module docstring)."""
    if backend.startswith(("redis://", "rediss://", "unix://")):
        return dref.redis(backend)
    if backend == "local":
        return dref.local()
    if backend == "redis":
        return dref.redis(redis_url)
    if backend == "raft":
        addresses = [a.strip() for a in endpoints.split(",") if a.strip()]
        return dref.raft_client(addresses) if addresses else _embedded_raft()
    raise SystemExit(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def _embedded_raft() -> dref.Context:
    """A one-node Raft cluster in this process, in a directory removed at exit."""
    from dref.raft.node_process import free_ports

    data_dir = tempfile.mkdtemp(prefix="dref-example-")
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    (port,) = free_ports(1)
    return dref.raft(node_id="n1", listen=f"127.0.0.1:{port}", peers={}, data_dir=data_dir)


def open_context(
    description: str | None,
    extra_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[dref.Context, argparse.Namespace]:
    """Parse the command line (the backend, plus `extra_arguments`) and open the context."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_backend_arguments(parser)
    if extra_arguments is not None:
        extra_arguments(parser)
    args = parser.parse_args()
    return context_for(args.backend, args.redis, args.endpoints), args


def say(line: str) -> None:
    """Print one whole line (a plain print may interleave with other threads' output)."""
    print(line + "\n", end="", flush=True)
