"""What the key/value client services and their clients agree on, apart from the protos.

Its own module so that clients need not import the servicers (which import the engine).
"""

from __future__ import annotations

import time

LEADER_ADDRESS_KEY = "dref-leader-address"
"""Trailing-metadata key carrying the leader's ``host:port`` on a not-leader error."""

DEFAULT_MAX_VALUE_SIZE = 1024 * 1024
"""Default largest value a node accepts: 1 MiB (every value is a replicated log entry)."""


def now_ms() -> int:
    """This machine's wall clock in Unix epoch milliseconds (upstream's time unit)."""
    return time.time_ns() // 1_000_000


RESERVED_PREFIX = "__dref/"
"""Names the nodes keep for themselves: clients may not read or write them."""
CLUSTER_ID_NAME = RESERVED_PREFIX + "cluster-id"
"""Where a cluster's id lives in its key/value state (so every snapshot carries it too)."""

