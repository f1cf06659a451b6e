"""A leadership transfer in progress (kept by the core: it outlives the leader role)."""

from __future__ import annotations

from dataclasses import dataclass

from dref.actors.consensus.messages import RequestId


@dataclass(slots=True)
class PendingTransfer:
    """Answered by TransferCompleted once another leader is known, else a Refused Reject
    at `deadline_ms` (two election timeouts after the request)."""

    request_id: RequestId
    target: str
    deadline_ms: int
