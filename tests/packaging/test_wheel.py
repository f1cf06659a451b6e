"""The wheel puts only `dref` into site-packages, and a fresh virtualenv can import every part."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("dref_py-*.whl")
    return built


def test_wheel_holds_only_the_dref_package(wheel):
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        names = set(archive.namelist())
    assert {t for t in tops if not t.endswith(".dist-info")} == {"dref"}
    for expected in (
        "dref/actors/__init__.py",
        "dref/storage/__init__.py",
        "dref/wire/__init__.py",
        "dref/wire/proto/state_command.proto",
        "dref/wire/proto/dref_consensus_pb2.py",
        "dref/compat/vectors/vectors.json",
        "dref/py.typed",
    ):
        assert expected in names, expected
    shipped_tooling = [n for n in names if "testkit" in n or "/testing/" in n or "tests/" in n]
    assert not shipped_tooling, shipped_tooling
    assert "dref/raft/server/services.py" in names and "dref/contracts/changes.py" in names


def test_fresh_virtualenv_imports_every_part(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=600)
    code = (
        "import dref, dref.actors, dref.storage, dref.wire, dref.compat, dref.wire.proto.dref_pb2;"
        "print(dref.wire.__file__)"
    )
    run = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert str(env_dir) in run.stdout
