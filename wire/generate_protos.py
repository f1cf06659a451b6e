"""Regenerate `wire/proto/*_pb2*.py` and `.pyi` from the `.proto` files with grpcio-tools.

The protos import each other as `dref/wire/proto/<file>.proto`, so the generated modules
import `dref.wire.proto.<x>_pb2` and register unique descriptor names. Run
`python -m dref.wire.generate_protos` (writes in place) or `... --out DIR` (for the test).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent / "proto"
PROTO_FILES = (
    "state_command.proto",
    "raft.proto",
    "dref_consensus.proto",
    "dref.proto",
    "dref_native.proto",
)
_IMPORT_PREFIX = Path("dref") / "wire" / "proto"


def generate(out_dir: Path, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Generate the modules for every proto in `proto_dir` into `out_dir`; returns their paths."""
    from grpc_tools import protoc  # dev extra only

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "in"
        gen = Path(tmp) / "out"
        (root / _IMPORT_PREFIX).mkdir(parents=True)
        gen.mkdir()
        for name in PROTO_FILES:
            shutil.copyfile(proto_dir / name, root / _IMPORT_PREFIX / name)
        include = str(Path(protoc.__file__).parent / "_proto")
        args = [
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{include}",
            f"--python_out={gen}",
            f"--pyi_out={gen}",
            f"--grpc_python_out={gen}",
            *(str(_IMPORT_PREFIX / name) for name in PROTO_FILES),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed; see its output above")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for produced in sorted((gen / _IMPORT_PREFIX).iterdir()):
            target = out_dir / produced.name
            shutil.copyfile(produced, target)
            written.append(target)
        return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROTO_DIR, help="output folder")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
