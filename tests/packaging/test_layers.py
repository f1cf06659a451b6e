"""Imports only point down the layers of the house plan, and shared contracts import
nothing but each other.

Layers, top to bottom: the public API (`dref/*.py`, `dref.compat`) -> `dref.raft` ->
`dref.actors` (outside the core) -> `dref.storage` -> `dref.wire` -> the pure core
`dref.actors.consensus`. Storage may use wire (it stores wire formats), never the other
way. `dref.contracts` and `dref.errors` are contracts every layer may use. Every import
counts: module level, inside functions, and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
import configparser
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

LAYERS = (
    ("public API", ("dref", "dref.compat")),
    ("dref.raft", ("dref.raft",)),
    ("dref.actors", ("dref.actors",)),
    ("dref.storage", ("dref.storage",)),
    ("dref.wire", ("dref.wire",)),
    ("the consensus core", ("dref.actors.consensus",)),
)
CONTRACTS = ("dref.contracts", "dref.errors")


def package_dirs() -> dict[str, Path]:
    """Import package -> folder, from setup.cfg's package_dir (as the wheel maps them)."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    mapping = {}
    for line in config["options"]["package_dir"].strip().splitlines():
        package, folder = (part.strip() for part in line.split("="))
        mapping[package] = REPO / folder
    return mapping


def modules() -> Iterator[tuple[str, Path]]:
    """(module name, file) of every project module but generated protobuf code."""
    seen: set[Path] = set()
    roots = sorted(package_dirs().items(), key=lambda item: -len(item[0]))
    for package, folder in roots:
        for path in sorted(folder.rglob("*.py")):
            if path in seen or "_pb2" in path.name:
                continue
            seen.add(path)
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join([package, *parts]), path


def imported(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, module) of every project import in `path`, relative ones resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            yield node.lineno, base


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> int | None:
    """The index of `name`'s layer (0 = top), None for contracts and outside modules."""
    if not within(name, "dref") or any(within(name, c) for c in CONTRACTS):
        return None
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if within(name, prefix) and (best is None or len(prefix) > len(best[1])):
                best = (index, prefix)
    return best[0] if best else None


def test_every_module_is_found():
    names = {name for name, _ in modules()}
    assert {"dref.ref", "dref.raft.node", "dref.actors.ready", "dref.storage.raft_log"} <= names
    assert "dref.actors.consensus.raft" in names and "dref.wire.consensus_codec" in names


def test_imports_only_point_down_the_layers():
    upward = []
    for module, path in modules():
        own = layer_of(module)
        if own is None:
            continue
        for line, target in imported(path, module):
            other = layer_of(target)
            if other is not None and other < own:
                where = f"{path.relative_to(REPO)}:{line}"
                upward.append(f"{module} -> {target} ({LAYERS[own][0]} above: {where})")
    assert not upward, "imports pointing up a layer:\n" + "\n".join(upward)


def test_contracts_import_nothing_of_the_project_but_contracts():
    leaks = []
    for module, path in modules():
        if not any(within(module, c) for c in CONTRACTS):
            continue
        for line, target in imported(path, module):
            if within(target, "dref") and not any(within(target, c) for c in CONTRACTS):
                leaks.append(f"{module} -> {target} ({path.relative_to(REPO)}:{line})")
    assert not leaks, "contracts importing the project:\n" + "\n".join(leaks)


def test_the_checker_sees_an_upward_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from dref.raft.node import Node\n")
    ((line, target),) = list(imported(probe, "dref.wire.probe"))
    assert (line, target) == (2, "dref.raft.node")
    assert layer_of(target) < layer_of("dref.wire.probe")  # type: ignore[operator]
