"""One replicator per peer: owns the channel to that peer and feeds answers back.

Requests are queued on the client's one PeerStream to the peer without blocking, so
several AppendEntries can be in flight at once (pipelining); a request that is lost (the
stream broke, or went unanswered past the RPC timeout) is dropped and the core's flow
control resends. Starting a call never blocks, so the consensus actor starts them
itself through `peer_client` (one thread hop less per RPC); `Deliver` remains for a
replicator whose client is already gone.
"""

from __future__ import annotations

import threading
from typing import Any

import pykka

from dref.actors.consensus.messages import Message
from dref.actors.node_messages import Connect, Deliver, PeerReply
from dref.actors.safe_tell import safe_tell
from dref.wire.consensus_service import PeerClient

_CLIENTS: dict[str, PeerClient] = {}
"""The PeerClient of every running replicator, by actor URN."""


def peer_client(replicator: pykka.ActorRef[Any]) -> PeerClient | None:
    """The client of a running replicator (its `send` is thread-safe), or None."""
    return _CLIENTS.get(replicator.actor_urn)


class ReplicatorActor(pykka.ThreadingActor):
    """Owns the PeerClient of one peer."""

    def __init__(self, client: PeerClient, *, node_id: str) -> None:
        super().__init__()
        self._client = client
        _CLIENTS[self.actor_urn] = client
        self._consensus: pykka.ActorRef[Any] | None = None
        self._thread_name = f"dref-replicator-{node_id}-to-{client.peer_id}"

    def on_start(self) -> None:
        threading.current_thread().name = self._thread_name

    def on_stop(self) -> None:
        _CLIENTS.pop(self.actor_urn, None)
        self._client.close()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Deliver):
            self._client.send(message.message, self._reply)
        elif isinstance(message, Connect):
            self._consensus = message.consensus
        return None

    def _reply(self, message: Message) -> None:
        safe_tell(self._consensus, PeerReply(message))
