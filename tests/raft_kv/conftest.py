"""Fixtures of the key/value Raft suite: command builders and real `dref node` clusters."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_HERE = Path(__file__).resolve().parent


def _load(name: str) -> ModuleType:
    """Import a helper module of this folder by path (the suite runs in importlib mode)."""
    spec = importlib.util.spec_from_file_location(f"raft_kv_{name}", _HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def cmd() -> ModuleType:
    """Builders of encoded commands, queries and results (commands.py)."""
    return _load("commands")


@pytest.fixture
def fake_cluster() -> Iterator[list[Any]]:
    """Three FakeNodes (fake_node.py) on real gRPC servers; n1 leads."""
    fake = _load("fake_node")
    ids = ["n1", "n2", "n3"]
    nodes = [fake.FakeNode(i, [p for p in ids if p != i]) for i in ids]
    for node in nodes:
        node.leader = nodes[0]
    yield nodes
    for node in nodes:
        node.close()
