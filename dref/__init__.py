"""dref-py: distributed references, locks and change streams for synchronous Python.

Start with a context (`local()` in memory, `redis(url)` on a Redis server, `raft(...)`
on an embedded Raft node, `raft_client(addresses)` on a running Raft cluster), then make
refs (`ctx.ref`), locks (`ctx.lock`) and change streams (`ref.changes()`) from it.
Backend packages (redis, grpc, lmdb, pykka) are imported only when first used.
"""

from __future__ import annotations

from typing import Any

from dref.backend import ReadPolicyName
from dref.changes import Changed, ChangeStream, Deleted, Event, Lagged, Subscription, Undecodable
from dref.context import Context
from dref.contracts.lock_stats import LockStats
from dref.errors import (
    BackendUnavailableError,
    CodecError,
    CompactedError,
    ConfigError,
    ContextClosedError,
    DataDirInUseError,
    DRefError,
    DRefTimeoutError,
    LeaderTransferError,
    LockStolenError,
    LockTimeoutError,
    MembershipError,
    NodeIdMismatchError,
    NoQuorumError,
    NotFoundError,
    NotLeaderError,
    PermissionDeniedError,
    QuorumLostError,
    StorageError,
    ValueTooLargeError,
)
from dref.local_backend import LocalBackend
from dref.lock import Lock
from dref.ref import DRef
from dref.wire.codec import Codec
from dref.wire.json_codec import JsonCodec
from dref.wire.msgpack_codec import MsgPackCodec
from dref.wire.tls import TLS

__all__ = [
    "BackendUnavailableError",
    "ChangeStream",
    "Changed",
    "Codec",
    "CodecError",
    "CompactedError",
    "ConfigError",
    "Context",
    "ContextClosedError",
    "DRef",
    "DRefError",
    "DRefTimeoutError",
    "DataDirInUseError",
    "Deleted",
    "Event",
    "JsonCodec",
    "Lagged",
    "LeaderTransferError",
    "Lock",
    "LockStats",
    "LockStolenError",
    "LockTimeoutError",
    "MembershipError",
    "MsgPackCodec",
    "NodeIdMismatchError",
    "NoQuorumError",
    "NotFoundError",
    "NotLeaderError",
    "PermissionDeniedError",
    "QuorumLostError",
    "StorageError",
    "TLS",
    "Subscription",
    "Undecodable",
    "ValueTooLargeError",
    "local",
    "raft",
    "raft_client",
    "redis",
]


def local(*, read_policy: ReadPolicyName = "linearizable", **options: Any) -> Context:
    """A context on a fresh in-memory backend (`LocalBackend(**options)`: `default_ttl`,
    `max_value_size`), for tests and single-process programs."""
    return Context(LocalBackend(**options), read_policy=read_policy)


def redis(url: str, **options: Any) -> Context:
    """A context on the Redis server at `url` (`dref.redis_backend.RedisBackend` options)."""
    try:
        from dref.redis_backend import redis_context
    except ModuleNotFoundError as missing:
        if missing.name != "redis":
            raise
        raise ConfigError(
            "dref.redis needs the redis package: pip install 'dref-py[redis]'"
        ) from None
    return redis_context(url, **options)


def embedded_raft_context(**options: Any) -> Context:
    """What calling `dref.raft(...)` runs: a context on a node embedded here
    (`dref.raft_context.raft_context`)."""
    from dref.raft_context import raft_context

    return raft_context(**options)


def raft_client(addresses: list[str], **options: Any) -> Context:
    """A context on a running Raft cluster reachable at some of `addresses` ("host:port")."""
    from dref.raft_context import raft_client_context

    return raft_client_context(addresses, **options)


def __getattr__(name: str) -> Any:
    """Import `dref.raft` (the engine, and the `dref.raft(...)` context factory) on first use."""
    if name == "raft":
        import dref.raft

        return dref.raft
    raise AttributeError(f"module 'dref' has no attribute {name!r}")
