"""`--tls-cert FILE --tls-key FILE --tls-ca FILE`: the same three options, with the same
`DREF_TLS_CERT` / `DREF_TLS_KEY` / `DREF_TLS_CA` fallbacks, on every `dref` command that
talks to a node (and on `dref node` itself, where a config file's `tls_cert`, `tls_key`
and `tls_ca` keys sit between the two)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from dref.wire.tls import TLS, tls_from_options

TLS_OPTIONS = (
    ("cert", "--tls-cert", "DREF_TLS_CERT", "this party's certificate (PEM)"),
    ("key", "--tls-key", "DREF_TLS_KEY", "its private key (PEM)"),
    ("ca", "--tls-ca", "DREF_TLS_CA", "the cluster CA's certificate (PEM)"),
)
"""(field, option, environment variable, help) of each TLS file."""


def add_tls_arguments(parser: argparse.ArgumentParser | Any) -> None:
    """Add the three TLS options to a parser (or an argument group)."""
    for field, option, variable, text in TLS_OPTIONS:
        help_text = f"mutual TLS: {text}; also ${variable}"
        parser.add_argument(option, dest=f"tls_{field}", metavar="FILE", help=help_text)


def tls_of(args: argparse.Namespace, settings: Mapping[str, Any] | None = None) -> TLS | None:
    """The TLS files from the options, else `settings` (a config file), else the
    environment; None when none of the three is given anywhere."""
    cert, key, ca = (
        getattr(args, f"tls_{field}", None)
        or (settings or {}).get(f"tls_{field}")
        or os.environ.get(variable)
        for field, _, variable, _ in TLS_OPTIONS
    )
    return tls_from_options(cert, key, ca, "--tls-cert, --tls-key and --tls-ca")
