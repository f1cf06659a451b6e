"""The one exception for a request refused before it runs, carrying the gRPC status, and
what both peer transports share in refusing a node: the cluster id check and its log."""

from __future__ import annotations

import logging
import threading

import grpc


class CallRefused(Exception):
    """A request refused before it runs (bad bytes, unknown sender, empty name, value too
    large, ...): the status code and details the caller gets, whether as an aborted unary
    call, an aborted stream, or one pipelined call's CallError."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


CLUSTER_ID_METADATA = "dref-cluster-id"
"""The gRPC metadata key in which a peer states its cluster id (the socket sends it in Hello)."""


def other_cluster(node_id: str, theirs: str, ours: str) -> str | None:
    """Why node `node_id` of cluster `theirs` is refused here in cluster `ours`; None when
    either id is empty (a node not yet in a cluster, or an upstream node) or they agree."""
    if ours and theirs and theirs != ours:
        return f"node {node_id!r} belongs to cluster {theirs!r}; this is cluster {ours!r}"
    return None


class RefusalLog:
    """Logs each distinct refusal once: a refused peer retries forever, and the operator
    needs one clear line, not one per retry."""

    _LIMIT = 64

    def __init__(self, node_id: str, logger: logging.Logger) -> None:
        self._node_id = node_id
        self._logger = logger
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, reason: str) -> None:
        with self._lock:
            if reason in self._seen or len(self._seen) >= self._LIMIT:
                return
            self._seen.add(reason)
        self._logger.warning("%s: %s", self._node_id, reason)
