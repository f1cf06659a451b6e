"""How fast a gRPC channel tries again to reach a node that was down.

gRPC's default backoff grows to 120 s between connection attempts, so a peer (or a node a
client talks to) that was down for a while stayed unreachable for up to two minutes after
it came back: its heartbeats, votes and a transfer's election were lost meanwhile. Raft
needs it back within a few heartbeats; an attempt per half second to a dead loopback or
LAN address costs nothing.
"""

from __future__ import annotations

RECONNECT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]
"""Channel options: the first retry after 100 ms, growing to one every 500 ms at most."""
