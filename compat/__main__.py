"""`python -m dref.compat generate DIR` / `python -m dref.compat check DIR`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .vectors_io import check, generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dref.compat",
        description="Produce dref-py's golden vectors, or check a vectors folder against them.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("generate", help="write our five vector files into DIR").add_argument(
        "dir", type=Path
    )
    commands.add_parser("check", help="verify every vector in DIR both ways").add_argument(
        "dir", type=Path
    )
    args = parser.parse_args(argv)
    if args.command == "generate":
        for path in generate(args.dir):
            print(path)
        return 0
    if not args.dir.is_dir():
        print(f"{args.dir}: no such folder", file=sys.stderr)
        return 2
    results = check(args.dir)
    for result in results:
        print(result.line())
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
