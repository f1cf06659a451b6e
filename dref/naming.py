"""Names generated from the call site, for `Context.ref(None, initial)` (upstream's AutoId).

The name is ``"<module>:<line> (<hash>)"``, where `module` is the calling module's
``__name__`` and `hash` the lower-case hex SHA-256 of ``"<file name>:<line>"`` (the file's
base name, not its path, so that the same code deployed in different directories on
different hosts gets the same name). It is deterministic for a given source line, but
**not** interoperable: Scala hashes its whole stack trace and Rust its own file path
(spec 1.4), so values shared across languages need explicit names.
"""

from __future__ import annotations

import hashlib
import os
import sys

__all__ = ["call_site_name"]


def call_site_name(depth: int = 1) -> str:
    """The generated name of the call site `depth` frames above the caller of this function."""
    frame = sys._getframe(depth + 1)
    module = frame.f_globals.get("__name__", "?")
    line = frame.f_lineno
    file_name = os.path.basename(frame.f_code.co_filename)
    digest = hashlib.sha256(f"{file_name}:{line}".encode()).hexdigest()
    return f"{module}:{line} ({digest})"
