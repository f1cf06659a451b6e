"""`RemovalNotice`: what a removed node learns when it asks a member for a vote."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RemovalNotice:
    """Member `told_by` answered our vote request: its committed configuration, set by the
    entry at `config_index`, leaves us out. A committed configuration is final, so a node
    told this stops campaigning until its own log reaches a configuration at least as new
    (a leader adding it back replicates one)."""

    told_by: str
    config_index: int
