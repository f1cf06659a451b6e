"""The golden vectors: ours round-trip, upstream's all pass, and the command line reports both."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dref.compat
from dref.compat.vectors_io import VECTOR_FILES, check, generate

OWN_VECTORS = Path(dref.compat.__file__).parent / "vectors"
UPSTREAM_VECTORS = Path(
    os.environ.get(
        "DREF_UPSTREAM_VECTORS",
        Path(__file__).resolve().parents[2] / ".." / "shared" / "upstream-vectors",
    )
)


def _failures(results):
    return [r.line() for r in results if not r.ok]


def test_own_vectors_all_pass():
    results = check(OWN_VECTORS)
    assert _failures(results) == []
    assert len(results) >= 40


def test_committed_vectors_match_a_fresh_generation(tmp_path):
    generate(tmp_path)
    for name in VECTOR_FILES:
        assert (tmp_path / name).read_bytes() == (OWN_VECTORS / name).read_bytes(), name


def test_upstream_vectors_all_pass():
    if not UPSTREAM_VECTORS.is_dir():
        pytest.skip(f"upstream vectors not found at {UPSTREAM_VECTORS} (../shared is absent)")
    results = check(UPSTREAM_VECTORS)
    assert _failures(results) == []
    assert len(results) >= 14


def test_every_upstream_vector_is_also_in_ours():
    if not UPSTREAM_VECTORS.is_dir():
        pytest.skip(f"upstream vectors not found at {UPSTREAM_VECTORS} (../shared is absent)")
    ours = {(r.file, r.name) for r in check(OWN_VECTORS)}
    theirs = {(r.file, r.name) for r in check(UPSTREAM_VECTORS)}
    assert theirs <= ours


def test_high_bytes_differ_between_styles_and_decode_alike():
    document = json.loads((OWN_VECTORS / "vectors.json").read_text())
    rust = document["change_payload_high_bytes_rust"]["payload_hex"]
    scala = document["change_payload_high_bytes_scala"]["payload_hex"]
    assert rust != scala
    assert "cc80" in rust and "d080" in scala  # 0x80 as uint8 vs int8 (spec 2.4)


def test_a_tampered_vector_fails(tmp_path):
    shutil.copytree(OWN_VECTORS, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "voter_state_vectors.json"
    document = json.loads(path.read_text())
    document["vectors"][0]["hex"] = document["vectors"][0]["hex"][:-2] + "00"
    path.write_text(json.dumps(document))
    failed = _failures(check(tmp_path))
    assert len(failed) == 1 and "voter_state_vectors.json:term_7_no_vote" in failed[0]


def test_missing_file_and_unknown_kind_fail(tmp_path):
    (tmp_path / "vectors.json").write_text(
        json.dumps({"description": "x", "mystery": {"hex": "00"}})
    )
    failed = _failures(check(tmp_path))
    assert any("mystery" in line for line in failed)
    assert sum("file missing" in line for line in failed) == len(VECTOR_FILES) - 1


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dref.compat", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_check_prints_each_vector_and_a_summary(tmp_path):
    run = _cli("check", str(OWN_VECTORS))
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[-1].endswith("passed, 0 failed")
    assert all(line.startswith("PASS ") for line in lines[:-1])


def test_cli_check_exits_1_on_failure(tmp_path):
    shutil.copytree(OWN_VECTORS, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "vectors.json"
    document = json.loads(path.read_text())
    document["lock_value"]["hex"] = "000000000000002b"
    path.write_text(json.dumps(document))
    run = _cli("check", str(tmp_path))
    assert run.returncode == 1
    assert "FAIL vectors.json:lock_value" in run.stdout
    assert run.stdout.splitlines()[-1].endswith(", 1 failed")


def test_cli_generate_then_check(tmp_path):
    assert _cli("generate", str(tmp_path)).returncode == 0
    run = _cli("check", str(tmp_path))
    assert run.returncode == 0, run.stdout
