"""`node-identity.json`: which node a data directory belongs to.

Upstream's files have no room for it and must stay byte-identical, so it lives in this side
file, written once on a node's first start in the directory (a directory from before the
file existed is claimed the same way):

    {"format": 1, "node_id": "n1", "cluster_id": null}

`"joining": true` is added while a node that started empty with --join waits to be seen as
a learner (see `JoinCheck`), so a restart in between keeps checking.
`cluster_id` is the id of the cluster the directory belongs to: null (or absent) until the
node first applies the id its cluster's leader created (`record_cluster_id`), then kept for
good; peers compare it in their handshake, so a directory of another cluster cannot join.
A node started on the directory with another node id is refused with NodeIdMismatchError,
so a copied or mixed-up directory cannot make one node vote with another's term and log.
Keys other than these are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dref.errors import NodeIdMismatchError, StorageError
from dref.storage.durable_file import ensure_directory, read_if_exists, write_atomically

FILE_NAME = "node-identity.json"
FORMAT = 1


@dataclass(frozen=True)
class NodeIdentity:
    """The node a data directory belongs to, and its cluster (None: not recorded yet)."""

    node_id: str
    cluster_id: str | None = None
    joining: bool = False
    """Started empty with --join and not yet admitted as a learner."""


def encode_identity(identity: NodeIdentity) -> bytes:
    """The file's content for `identity` (JSON, one line, newline-terminated)."""
    document: dict[str, object] = {
        "format": FORMAT,
        "node_id": identity.node_id,
        "cluster_id": identity.cluster_id,
    }
    if identity.joining:
        document["joining"] = True
    return (json.dumps(document) + "\n").encode()


def decode_identity(data: bytes, path: str) -> NodeIdentity:
    """Parse the file's content; StorageError naming `path` when it is not a valid identity."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise StorageError(path, 0, f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise StorageError(path, 0, "not a JSON object")
    if document.get("format") != FORMAT:
        raise StorageError(path, 0, f"unsupported format {document.get('format')!r}, expected 1")
    node_id, cluster_id = document.get("node_id"), document.get("cluster_id")
    if not isinstance(node_id, str) or not node_id:
        raise StorageError(path, 0, f"node_id must be a non-empty string, got {node_id!r}")
    if cluster_id is not None and not isinstance(cluster_id, str):
        raise StorageError(path, 0, f"cluster_id must be a string or null, got {cluster_id!r}")
    joining = document.get("joining", False)
    if not isinstance(joining, bool):
        raise StorageError(path, 0, f"joining must be true or false, got {joining!r}")
    return NodeIdentity(node_id, cluster_id, joining)


def claim_identity(directory: Path, node_id: str) -> NodeIdentity:
    """The identity recorded in `directory`, recording `node_id` there on first start;
    NodeIdMismatchError when the directory belongs to another node."""
    ensure_directory(directory)
    path = directory / FILE_NAME
    data = read_if_exists(path)
    if data is None:
        identity = NodeIdentity(node_id)
        write_atomically(path, encode_identity(identity))
        return identity
    identity = decode_identity(data, str(path))
    if identity.node_id != node_id:
        raise NodeIdMismatchError(str(directory), identity.node_id, node_id)
    return identity


def record_cluster_id(directory: Path, node_id: str, cluster_id: str) -> NodeIdentity:
    """Record that `directory` belongs to cluster `cluster_id` (once); StorageError if it
    is recorded as another cluster's (its log and its identity disagree)."""
    path = directory / FILE_NAME
    data = read_if_exists(path)
    current = NodeIdentity(node_id) if data is None else decode_identity(data, str(path))
    if current.cluster_id == cluster_id:
        return current
    if current.cluster_id is not None:
        raise StorageError(
            str(path),
            0,
            f"the directory belongs to cluster {current.cluster_id!r}, but its log to"
            f" cluster {cluster_id!r}",
        )
    identity = NodeIdentity(current.node_id, cluster_id, current.joining)
    write_atomically(path, encode_identity(identity))
    return identity


def record_joining(directory: Path, node_id: str, joining: bool) -> NodeIdentity:
    """Record whether the node waits to be admitted as a learner (see the module doc)."""
    path = directory / FILE_NAME
    data = read_if_exists(path)
    current = NodeIdentity(node_id) if data is None else decode_identity(data, str(path))
    updated = NodeIdentity(current.node_id, current.cluster_id, joining)
    if updated != current:
        write_atomically(path, encode_identity(updated))
    return updated
