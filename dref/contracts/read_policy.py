"""Read policy names: how fresh a read must be (the public API, the client and the node)."""

from __future__ import annotations

from typing import Literal, get_args

from dref.errors import ConfigError

ReadPolicyName = Literal["linearizable", "lease", "stale"]
"""How fresh a read must be: linearizable (sees every write acknowledged before it began),
lease (the Raft leader answers from its lease, trusting bounded clock drift), or stale (any
state a node has applied). Local and Redis have one copy, so every policy reads it."""


def read_policy_name(policy: object) -> ReadPolicyName:
    """`policy` checked as a read policy name; ConfigError naming the valid ones otherwise."""
    if policy not in get_args(ReadPolicyName):
        valid = ", ".join(repr(p) for p in get_args(ReadPolicyName))
        raise ConfigError(f"read policy must be one of {valid}, not {policy!r}")
    return policy  # type: ignore[return-value]
