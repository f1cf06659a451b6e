"""The snapshot sender: carries a leader's InstallSnapshot chunks to followers.

A chunk is up to `snapshot_chunk_bytes` (1 MiB by default): encoding and sending it on the
consensus actor's thread would delay ticks, heartbeats and commits. So the consensus actor
hands every InstallSnapshot to this actor, which encodes and sends it on its own thread
through its own transport, whose channels carry nothing else (a big transfer never queues
behind or in front of heartbeats). The core keeps one chunk in flight per follower and
resumes from the last acknowledged offset when an answer does not come, so a lost call
is simply dropped here.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import pykka

from dref.actors.consensus.messages import InstallSnapshot
from dref.actors.transport import PeerTransport

logger = logging.getLogger("dref.raft")


@dataclass(frozen=True)
class SendChunk:
    """Send this InstallSnapshot chunk to `peer`."""

    peer: str
    message: InstallSnapshot


class SnapshotSenderActor(pykka.ThreadingActor):
    """See the module doc. `transport` is this actor's own (its channels carry only
    snapshot chunks); answers go back to the consensus actor through it."""

    def __init__(self, transport: PeerTransport, *, node_id: str) -> None:
        super().__init__()
        self._transport = transport
        self._thread_name = f"dref-snapshot-sender-{node_id}"

    def on_start(self) -> None:
        threading.current_thread().name = self._thread_name

    def on_stop(self) -> None:
        self._transport.close()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, SendChunk):
            self._transport.send(message.peer, message.message)
        return None
