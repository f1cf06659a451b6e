"""`LockStats`: what one context's locks did, for the public API and client metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LockStats:
    """Counters since the context opened: `grants` acquisitions that succeeded, `timeouts`
    that gave up (timed out, or a non-blocking try found the lock held), `releases` by the
    holder, `losses` of held locks (deleted, expired or taken from under their holder)."""

    grants: int = 0
    timeouts: int = 0
    releases: int = 0
    losses: int = 0
