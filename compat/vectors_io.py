"""Write this implementation's golden vectors, and check any vectors folder against our codecs.

Both directions per vector: our encoder must give exactly the stored bytes, and our
decoder must read the stored bytes back as the stored value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import cases
from .vector_kinds import KEYED_FILES, LISTED_FILES, VectorKind, kind_of_keyed_vector

_DESCRIPTIONS = {
    "vectors.json": "MsgPack values, lock tokens and change payloads, as dref-py encodes them.",
    "consensus_vectors.json": "StateCommand and ClusterSnapshot protobuf bytes, from dref-py.",
    "snapshot_vectors.json": "state-snapshot (DRFS) file bytes, as dref-py writes them.",
    "voter_state_vectors.json": "voter-state (DRFT) file bytes, as dref-py writes them.",
    "command_log_vectors.json": "command-log (DRFL) file bytes, as dref-py writes them.",
}

_KEYED_CASES = {"vectors.json": cases.VALUE_CASES, "consensus_vectors.json": cases.CONSENSUS_CASES}
_LISTED_CASES = {
    "snapshot_vectors.json": cases.SNAPSHOT_CASES,
    "voter_state_vectors.json": cases.VOTER_STATE_CASES,
    "command_log_vectors.json": cases.COMMAND_LOG_CASES,
}

VECTOR_FILES = (*KEYED_FILES, *LISTED_FILES)


@dataclass(frozen=True)
class VectorResult:
    """The outcome of checking one vector."""

    file: str
    name: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        status = "PASS" if self.ok else "FAIL"
        return f"{status} {self.file}:{self.name}" + (f": {self.detail}" if self.detail else "")


def generate(out_dir: Path) -> list[Path]:
    """Write the five vector files produced by our encoders into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name in VECTOR_FILES:
        document: dict[str, Any] = {"description": _DESCRIPTIONS[file_name]}
        if file_name in _KEYED_CASES:
            for name, case in _KEYED_CASES[file_name].items():
                kind = kind_of_keyed_vector(name)
                document[name] = (
                    case
                    if kind is None
                    else {**case, kind.hex_field: kind.encode(name, case).hex()}
                )
        else:
            kind = LISTED_FILES[file_name]
            document["vectors"] = [
                {**case, kind.hex_field: kind.encode(case["name"], case).hex()}
                for case in _LISTED_CASES[file_name]
            ]
        path = out_dir / file_name
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _check_one(file_name: str, name: str, case: Any, kind: VectorKind | None) -> VectorResult:
    try:
        if kind is None:
            ok = isinstance(case, str) and bool(case)
            return VectorResult(file_name, name, ok, "" if ok else "constant is not a string")
        stored = bytes.fromhex(case[kind.hex_field])
        encoded = kind.encode(name, case)
        if encoded != stored:
            return VectorResult(
                file_name, name, False, f"encoder gave {encoded.hex()}, stored {stored.hex()}"
            )
        difference = kind.decoded(name, case, stored)
        return VectorResult(file_name, name, difference is None, difference or "")
    except Exception as error:  # any failure of one vector is reported, never fatal
        return VectorResult(file_name, name, False, f"{type(error).__name__}: {error}")


def check(vectors_dir: Path) -> list[VectorResult]:
    """Check every vector of the five files in `vectors_dir`; a missing file is a failure."""
    results = []
    for file_name in VECTOR_FILES:
        path = vectors_dir / file_name
        if not path.is_file():
            results.append(VectorResult(file_name, "*", False, "file missing"))
            continue
        document = json.loads(path.read_text(encoding="utf-8"))
        if file_name in LISTED_FILES:
            listed_kind = LISTED_FILES[file_name]
            for case in document.get("vectors", []):
                results.append(_check_one(file_name, case.get("name", "?"), case, listed_kind))
            continue
        for name, case in document.items():
            if name == "description":
                continue
            try:
                kind = kind_of_keyed_vector(name)
            except ValueError as error:
                results.append(VectorResult(file_name, name, False, str(error)))
                continue
            results.append(_check_one(file_name, name, case, kind))
    return results
