"""The `dref` command: one entry point whose subcommands live beside the parts they drive."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version


def _package_version() -> str:
    try:
        return version("dref-py")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every `dref` subcommand."""
    parser = argparse.ArgumentParser(prog="dref", description="dref-py command line")
    parser.add_argument("--version", action="version", version=f"dref-py {_package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    compat = commands.add_parser("compat", help="golden vectors: generate DIR | check DIR")
    compat.add_argument("compat_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "compat":
        from dref.compat.__main__ import main as compat_main

        return compat_main(args.compat_args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
