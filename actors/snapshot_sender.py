"""The snapshot sender: carries a leader's InstallSnapshot chunks to followers.

A chunk is up to `snapshot_chunk_bytes` (1 MiB by default): encoding and sending it on the
consensus actor's thread would delay ticks, heartbeats and commits. So the consensus actor
hands every InstallSnapshot to this actor, which encodes and sends it on its own thread
over its own channel per peer (a big transfer never queues behind or in front of
heartbeats). The core keeps one chunk in flight per follower and resumes from the last
acknowledged offset when an answer does not come, so a lost call is simply dropped here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pykka

from dref.actors.consensus.messages import InstallSnapshot, Message
from dref.actors.node_messages import Connect, PeerReply
from dref.actors.safe_tell import safe_tell
from dref.wire.consensus_service import PeerClient

logger = logging.getLogger("dref.raft")


@dataclass(frozen=True)
class SendChunk:
    """Send this InstallSnapshot chunk to `peer`."""

    peer: str
    message: InstallSnapshot


class SnapshotSenderActor(pykka.ThreadingActor):
    """See the module doc. `addresses` is the node's live member address map."""

    def __init__(self, addresses: Mapping[str, str], *, node_id: str, timeout: float) -> None:
        super().__init__()
        self._addresses = addresses
        self._timeout = timeout
        self._clients: dict[str, tuple[str, PeerClient]] = {}
        self._consensus: pykka.ActorRef[Any] | None = None
        self._thread_name = f"dref-snapshot-sender-{node_id}"

    def on_start(self) -> None:
        threading.current_thread().name = self._thread_name

    def on_stop(self) -> None:
        for _, client in self._clients.values():
            client.close()
        self._clients.clear()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, SendChunk):
            self._send(message)
        elif isinstance(message, Connect):
            self._consensus = message.consensus
        return None

    def _send(self, chunk: SendChunk) -> None:
        client = self._client(chunk.peer)
        if client is None:
            logger.debug("snapshot chunk for %s dropped: no known address", chunk.peer)
            return
        try:
            client.send(chunk.message, self._reply)
        except ValueError:  # the channel closed under us: the core resends later
            self._clients.pop(chunk.peer, None)

    def _client(self, peer: str) -> PeerClient | None:
        """The channel to `peer`, reopened when its address changed."""
        address = self._addresses.get(peer)
        if address is None:
            return None
        known = self._clients.get(peer)
        if known is not None and known[0] == address:
            return known[1]
        if known is not None:
            known[1].close()
        client = PeerClient(peer, address, timeout=self._timeout)
        self._clients[peer] = (address, client)
        return client

    def _reply(self, message: Message) -> None:
        safe_tell(self._consensus, PeerReply(message))
