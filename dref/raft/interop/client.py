"""`UpstreamClient`: calls `DRefRaft` on a cluster that speaks upstream's protocol, routed as
upstream's Raft context routes them (spec 4.11), but always within the caller's timeout.

Only the leader serves (followers answer `not-leader:<id>`), so the client remembers the
leader's address and follows hints; node ids map to addresses through `GetEndpoints`,
whose last id is the responder's own. A `not-leader` answer or a refused connection means
the call did nothing, so it is retried at once elsewhere; `quorum-lost` or a lost reply
after a write was sent may hide an applied write (spec 7.2), so such a write is retried
too (every upstream write is idempotent except a set-if-absent's answer) and, when time
runs out, the error says it may or may not have been applied.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import grpc

from dref.errors import BackendUnavailableError, DRefTimeoutError
from dref.wire.consensus_service import CHANNEL_OPTIONS
from dref.wire.proto import dref_pb2 as rpb
from dref.wire.proto.dref_pb2_grpc import DRefRaftStub
from dref.wire.reconnect import RECONNECT_OPTIONS

__all__ = ["UpstreamClient"]

_NOT_LEADER_PAUSE = 0.03  # upstream's 30 ms before retrying elsewhere
_TRANSPORT_PAUSE = 0.05  # upstream's 50 ms after a transport error
_NOT_CONNECTED = "failed to connect to all addresses"
_OPTIONS = [*CHANNEL_OPTIONS, *RECONNECT_OPTIONS]


class UpstreamClient:
    """Thread-safe; one channel per address, shared by every caller."""

    def __init__(self, addresses: list[str], *, timeout: float = 10.0) -> None:
        if not addresses:
            raise ValueError("UpstreamClient needs at least one address")
        self.timeout = timeout
        self.addresses = tuple(dict.fromkeys(addresses))
        self._lock = threading.Lock()
        self._stubs: dict[str, tuple[grpc.Channel, DRefRaftStub]] = {}
        self._address_of: dict[str, str] = {}
        """Node id -> address, learned from GetEndpoints."""
        self._leader: str | None = None
        self._learned_at = -1e9
        self._rotation = itertools.cycle(self.addresses)

    @property
    def leader_address(self) -> str | None:
        """The address that last answered as leader (None until one did, or after a
        refusal)."""
        return self._leader

    def call(
        self,
        method: str,
        request: Any,
        *,
        timeout: float | None = None,
        resend_unknown: bool = True,
    ) -> Any:
        """Call DRefRaft `method` on the leader; DRefTimeoutError when no leader answered
        within `timeout` (its message says whether a write may have been applied). Without
        `resend_unknown`, a call that may have been applied is not resent: it raises
        BackendUnavailableError saying so, for the caller to check."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        address = self._leader or self._next_address()
        maybe_applied = False
        last_error = "no node answered"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                unknown = " (a write may or may not have been applied)" if maybe_applied else ""
                raise DRefTimeoutError(
                    f"{method}: no leader answered within {limit:g} s{unknown}; last: {last_error}"
                )
            try:
                reply = getattr(self._stub(address), method)(request, timeout=left)
            except grpc.RpcError as exc:
                details = exc.details() or ""
                last_error = f"{address}: {exc.code().name} {details}"
                if details.startswith("not-leader:"):
                    address = self._hinted(details.partition(":")[2].strip())
                    pause = _NOT_LEADER_PAUSE
                elif details.startswith("no-leader:"):
                    address, pause = self._next_address(), _NOT_LEADER_PAUSE
                elif exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    if _NOT_CONNECTED not in details:
                        if not resend_unknown:
                            raise BackendUnavailableError(
                                f"{method} may or may not have been applied: {last_error}"
                            ) from None
                        maybe_applied = True
                    address, pause = self._next_address(), _TRANSPORT_PAUSE
                else:
                    raise BackendUnavailableError(f"{method} failed: {last_error}") from None
                with self._lock:
                    self._leader = None
                time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
                continue
            with self._lock:
                self._leader = address
            return reply

    def _hinted(self, hint: str) -> str:
        """The address of the leader a follower named, else the next address to try."""
        if hint and hint != "unknown":
            if hint not in self._address_of and time.monotonic() - self._learned_at > 1.0:
                self._learn_ids()  # at most once a second: a dead node costs a timeout
            if hint in self._address_of:
                return self._address_of[hint]
        return self._next_address()

    def _learn_ids(self) -> None:
        """Ask every address for its id (the last of its GetEndpoints answer)."""
        self._learned_at = time.monotonic()
        for address in self.addresses:
            try:
                ids = self._stub(address).GetEndpoints(rpb.GetEndpointsRequest(), timeout=0.5).ids
            except grpc.RpcError:
                continue
            if ids:
                with self._lock:
                    self._address_of[ids[-1]] = address

    def _next_address(self) -> str:
        with self._lock:
            return next(self._rotation)

    def _stub(self, address: str) -> DRefRaftStub:
        with self._lock:
            if address not in self._stubs:
                channel = grpc.insecure_channel(address, options=_OPTIONS)
                self._stubs[address] = (channel, DRefRaftStub(channel))
            return self._stubs[address][1]

    def close(self) -> None:
        with self._lock:
            for channel, _ in self._stubs.values():
                channel.close()
            self._stubs.clear()
