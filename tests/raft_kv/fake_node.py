"""A stand-in for `dref.raft.Node` for the service unit tests only: it applies proposals to
a real KeyValueStateMachine at once when it plays leader, and refuses like a follower
otherwise. Served on a real gRPC server on 127.0.0.1."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc

from dref.errors import NotLeaderError, QuorumLostError
from dref.storage.kv_state_machine import KeyValueStateMachine
from dref.wire.client_service import KeyValueServices


class FakeNode:
    def __init__(self, node_id: str, peer_ids: list[str], **service_options: Any) -> None:
        self.node_id = node_id
        self.state_machine = KeyValueStateMachine()
        self.leader: FakeNode | None = None  # None: leader unknown
        self.send_address_hint = True
        self.quorum_lost = False
        self.services = KeyValueServices(self.state_machine, peer_ids=peer_ids, **service_options)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self.services.register(self.server, self)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self.server.start()

    def _check(self) -> None:
        if self.leader is not self:
            hint = self.leader
            address = hint.address if hint is not None and self.send_address_hint else None
            raise NotLeaderError(hint.node_id if hint else None, address)
        if self.quorum_lost:
            raise QuorumLostError()

    def propose(self, command: bytes, *, timeout: float) -> bytes:
        self._check()
        return self.state_machine.apply(command)

    def read(self, request: bytes, *, policy: str = "linearizable", timeout: float) -> bytes:
        if policy != "stale":
            self._check()
        return self.state_machine.query(request)

    def status(self) -> dict[str, Any]:
        role = "leader" if self.leader is self else "follower"
        return {"node_id": self.node_id, "role": role, "term": 3}

    def close(self) -> None:
        self.services.close()
        self.server.stop(grace=None)
