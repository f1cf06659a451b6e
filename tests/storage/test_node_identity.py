"""`node-identity.json`: claimed on first start, checked on every later one, kept beside (never
inside) upstream's files, with room for a cluster id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dref.errors import ConfigError, NodeIdMismatchError, StorageError
from dref.storage.node_identity import (
    FILE_NAME,
    NodeIdentity,
    claim_identity,
    record_cluster_id,
    record_joining,
)


def test_the_first_start_records_the_node_id_and_a_null_cluster_id(tmp_path: Path) -> None:
    assert claim_identity(tmp_path / "d", "n1") == NodeIdentity("n1", None)
    document = json.loads((tmp_path / "d" / FILE_NAME).read_text())
    assert document == {"format": 1, "node_id": "n1", "cluster_id": None}
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [FILE_NAME]
    assert claim_identity(tmp_path / "d", "n1") == NodeIdentity("n1", None)


def test_another_node_id_is_refused_naming_both(tmp_path: Path) -> None:
    claim_identity(tmp_path, "n1")
    with pytest.raises(NodeIdMismatchError, match="belongs to node 'n1', not 'n3'") as info:
        claim_identity(tmp_path, "n3")
    assert (info.value.stored, info.value.configured) == ("n1", "n3")
    assert isinstance(info.value, ConfigError)
    assert json.loads((tmp_path / FILE_NAME).read_text())["node_id"] == "n1"


def test_a_recorded_cluster_id_is_read_and_kept(tmp_path: Path) -> None:
    document = {"format": 1, "node_id": "n1", "cluster_id": "c-42", "later": True}
    (tmp_path / FILE_NAME).write_text(json.dumps(document))
    assert claim_identity(tmp_path, "n1") == NodeIdentity("n1", "c-42")
    assert json.loads((tmp_path / FILE_NAME).read_text()) == document


def test_joining_is_recorded_kept_by_a_cluster_id_and_cleared(tmp_path: Path) -> None:
    claim_identity(tmp_path, "n4")
    assert record_joining(tmp_path, "n4", True) == NodeIdentity("n4", None, joining=True)
    assert json.loads((tmp_path / FILE_NAME).read_text())["joining"] is True
    record_cluster_id(tmp_path, "n4", "c-1")
    assert claim_identity(tmp_path, "n4") == NodeIdentity("n4", "c-1", joining=True)
    assert record_joining(tmp_path, "n4", False) == NodeIdentity("n4", "c-1")
    assert "joining" not in json.loads((tmp_path / FILE_NAME).read_text())


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"format": 2, "node_id": "n1"}', "unsupported format 2"),
        ('{"format": 1, "node_id": ""}', "node_id must be a non-empty string"),
        ('{"format": 1, "node_id": "n1", "cluster_id": 7}', "cluster_id must be a string"),
        ('{"format": 1, "node_id": "n1", "joining": 1}', "joining must be true or false"),
    ],
)
def test_a_damaged_file_is_a_storage_error_naming_it(
    tmp_path: Path, content: str, reason: str
) -> None:
    (tmp_path / FILE_NAME).write_text(content)
    with pytest.raises(StorageError, match=reason) as info:
        claim_identity(tmp_path, "n1")
    assert info.value.path == str(tmp_path / FILE_NAME)
