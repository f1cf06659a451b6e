"""Read a copy of an LMDB index in a child process, so that a damaged file that makes LMDB
crash (it trusts its page numbers: SIGBUS, SIGSEGV) kills the child, not the node.

`RaftLog` calls this only when `data.mdb` is not the file `raft-index.sums` recorded: after
a crash between a commit and its record, or after damage.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import lmdb

PROBE_TIMEOUT = 60.0


def probe_index(index_dir: Path, *, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when a copy of the index at `index_dir` reads back whole and takes a write;
    otherwise why not, in a few words."""
    with tempfile.TemporaryDirectory(prefix="dref-index-probe-") as scratch:
        shutil.copyfile(index_dir / "data.mdb", Path(scratch) / "data.mdb")
        try:
            result = subprocess.run(
                [sys.executable, "-P", __file__, scratch],  # -P: no package import, fast
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"reading it took over {timeout:.0f} s"
    if result.returncode == 0:
        return None
    if result.returncode < 0:
        return f"LMDB crashed reading it ({signal.Signals(-result.returncode).name})"
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else f"the probe exited with {result.returncode}"


def _read_everything(index_dir: str) -> None:
    """Visit every row of both tables, then commit one write (which reads the free list)."""
    env = lmdb.open(index_dir, max_dbs=2, map_size=1 << 30, sync=False, lock=False)
    try:
        with env.begin(write=True) as txn:
            for name in (b"entries", b"meta"):
                db = env.open_db(name, txn=txn, create=False)
                for _key, _value in txn.cursor(db=db):
                    pass
            meta = env.open_db(b"meta", txn=txn, create=False)
            txn.put(b"probe", bytes(64), db=meta)
    finally:
        env.close()


if __name__ == "__main__":
    try:
        _read_everything(sys.argv[1])
    except lmdb.Error as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
