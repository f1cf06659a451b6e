"""Membership that follows DNS: the peers named by `DREF_NODE_SERVICES`, re-resolved every
`address_poll_interval` as upstream does (spec 4.9, "Address poll").

Upstream swaps its peer map for whatever discovery returns, so its quorum follows DNS
without consensus. Here the leader turns what it sees into ordinary membership changes,
one at a time, so every change is committed by the configuration in force: a new address
joins as a learner and becomes a voter once it has caught up; a voter whose address has
been missing from `DEPARTURE_POLLS` polls in a row is removed (so a DNS blip of one poll
removes nobody). A name that fails to resolve keeps the last answer and is logged once per
failure streak. Followers only watch: the membership entries carry every address.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dref.errors import DRefError
from dref.raft.config import resolve_service, service_peers

if TYPE_CHECKING:
    from dref.raft.node import Node

DEPARTURE_POLLS = 3
"""Polls in a row a voter's address must be missing from DNS before the leader removes it."""

logger = logging.getLogger("dref.raft.discovery")


class ServiceDiscovery:
    """Re-resolves `names` every `interval` seconds on its own thread and, while the node
    leads, adds and removes members to match (see the module docstring)."""

    def __init__(
        self,
        node: Node,
        names: Sequence[str],
        port: int,
        interval: float,
        *,
        own_host: str,
        resolve: Callable[[str], list[str]] = resolve_service,
    ) -> None:
        self._node = node
        self._names = tuple(names)
        self._port = port
        self._interval = interval
        self._own_host = own_host
        self._resolve = resolve
        self._last: dict[str, list[str]] = {}
        self._failing: set[str] = set()
        self._missing: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"dref-discovery-{node.node_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; a membership change in progress finishes (it has its own timeout)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll()
            except DRefError as error:  # a change refused or timed out: the next poll retries
                logger.warning("discovery: %s", error)
            except Exception:  # a bug, or the node closing under us: say so, keep polling
                if not self._stop.is_set():
                    logger.exception("discovery: poll failed")

    def discovered(self) -> dict[str, str]:
        """Resolve every name now: {peer id (its IP): "ip:port"}, this node left out. A name
        that fails keeps its previous answer."""
        for name in self._names:
            try:
                self._last[name] = self._resolve(name)
            except DRefError as error:
                if name not in self._failing:
                    logger.warning("discovery: %s; keeping its last answer", error)
                    self._failing.add(name)
                continue
            if name in self._failing:
                logger.info("discovery: %s resolves again", name)
                self._failing.discard(name)
        ips = [ip for answer in self._last.values() for ip in answer]
        found = service_peers(ips, self._port, self._own_host)
        found.pop(self._node.node_id, None)
        return found

    def poll(self) -> None:
        """One round: resolve, then (on the leader) make at most one membership change."""
        found = self.discovered()
        if self._stop.is_set() or not self._node.is_leader:
            self._missing.clear()  # a new leader starts counting afresh
            return
        membership = self._node.members().membership
        members = set(membership.members) - {self._node.node_id}
        for gone in set(self._missing) - members:
            del self._missing[gone]
        for node_id in members:
            self._missing[node_id] = 0 if node_id in found else self._missing.get(node_id, 0) + 1
        joining = sorted(set(found) - membership.voters)  # a learner left behind is promoted
        if joining:
            node_id = joining[0]
            logger.info("discovery: adding %s at %s", node_id, found[node_id])
            self._node.add_voter(node_id, found[node_id], timeout=max(30.0, 10 * self._interval))
            return
        departed = sorted(n for n, polls in self._missing.items() if polls >= DEPARTURE_POLLS)
        if departed:
            node_id = departed[0]
            logger.info(
                "discovery: removing %s (not in DNS for %d polls)", node_id, self._missing[node_id]
            )
            self._node.remove(node_id, timeout=max(30.0, 10 * self._interval))
            self._missing.pop(node_id, None)
