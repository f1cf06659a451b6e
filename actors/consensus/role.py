"""The interface every role (follower, candidate, leader) implements for the core."""

from __future__ import annotations

from typing import Protocol

from dref.actors.consensus.config import ReadPolicy
from dref.actors.consensus.effects import NotLeader, QuorumLost
from dref.actors.consensus.messages import Message, RequestId


class RoleLogic(Protocol):
    """Handles the events the core routes to whichever role the node is in."""

    def tick(self) -> None:
        """Time advanced to `core.now_ms`."""

    def step(self, message: Message) -> None:
        """A message of the current term (vote requests are handled by the core)."""

    def propose(self, command: bytes, request_id: RequestId) -> None:
        """A client wants `command` replicated."""

    def read(self, request_id: RequestId, policy: ReadPolicy) -> None:
        """A client wants a linearizable read point."""

    def close(self, reason: NotLeader | QuorumLost) -> None:
        """The node leaves this role: fail whatever the role still holds."""
