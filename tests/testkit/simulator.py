"""Deterministic cluster simulator for `RaftCore`: one seed drives every choice.

N nodes, each a `RaftCore` with a `FakeDisk` (a crash loses unsynced writes and the node
restarts from what is durable) and its own drifting clock; a network that drops,
delays, duplicates and reorders messages and can be partitioned; clients running a
key/value workload. A chaos phase injects faults, then a quiet phase heals everything.
Admin seeds (`SimConfig.for_admin_seed`) also transfer leadership and change membership
(one server at a time, learners first, often killing the leader right after) at random.
Each node runs its core inside the same `ReadyStep` as the node runtime (without reply
slots: answers travel as messages) and sends through a `PeerTransport` (`SimTransport`),
so reply routing and durability ordering (a send marked after-persist waits for its
batch's fsync) are covered by every seed.
Safety properties are checked as the run goes (`SafetyMonitor`) and the client history
is checked for linearizability at the end. Any failure raises `SimulationFailure` naming
the seed and the command that replays it.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dref.actors.consensus.config import RaftConfig, ReadPolicy
from dref.actors.consensus.durable_state import DurableState, Snapshot
from dref.actors.consensus.effects import NotLeader, QuorumLost, Refused
from dref.actors.consensus.log_entry import EntryKind
from dref.actors.consensus.membership import ChangeAction, MembershipChange
from dref.actors.consensus.messages import InstallSnapshot, Message
from dref.actors.consensus.node_state import Role
from dref.actors.consensus.raft import RaftCore
from dref.actors.node_messages import ApplyEntries, RestoreState, TakeSnapshotNow
from dref.actors.ready import Committed, ReadAt, Ready, ReadyStep, Transferred
from testkit.linearizability import OpKind, check_history
from testkit.sim_disk import FakeDisk
from testkit.sim_invariants import SafetyMonitor
from testkit.sim_workload import ClientOp, Workload

REPLAY_HINT = "DREF_SIM_SEED={seed} pytest tests/consensus/test_simulation.py -k replay"
ADMIN_REPLAY_HINT = (
    "DREF_SIM_ADMIN_SEED={seed} pytest tests/consensus/test_simulation_admin.py -k replay"
)

CoreFactory = Callable[..., RaftCore]
"""Builds a node's core; tests swap in a deliberately broken subclass."""
SimStep = ReadyStep[None, int]
"""A node's Ready step; callers are client op ids (admin requests: negative ids)."""
StepFactory = Callable[[RaftCore], SimStep]
"""Wraps a node's core in its Ready step; tests swap in a deliberately broken one."""


def message_step(core: RaftCore) -> SimStep:
    """The Ready step as a message transport uses it: every answer is a message."""
    return ReadyStep(core, reply_slots=False)

(
    _DELIVER,
    _TICK,
    _SYNC,
    _CLIENT,
    _TIMEOUT,
    _CRASH,
    _RESTART,
    _PARTITION,
    _HEAL,
    _PAUSE,
    _SUBMIT,
    _TRANSFER,
    _MEMBERSHIP,
    _KILL,
    _PROPOSE,
) = range(15)
_FAULTS = (_CRASH, _PARTITION, _HEAL, _PAUSE, _TRANSFER, _MEMBERSHIP, _KILL)


class SimulationFailure(AssertionError):
    """A seed broke a safety property or produced a non-linearizable history."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """The shape of one simulated run; `for_seed` randomizes it per seed."""

    nodes: int = 3
    clients: int = 3
    keys: int = 2
    chaos_ms: int = 700
    quiet_ms: int = 600
    tick_ms: int = 5
    min_delay_ms: int = 1
    max_delay_ms: int = 8
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    max_sync_delay_ms: int = 3
    clock_drift: float = 0.01
    crashes: bool = False
    partitions: bool = False
    pauses: bool = False
    faults: int = 3
    lease_reads: bool = True
    initial_voters: int = 0
    """How many of the nodes form the first configuration (0: all); the rest wait to join."""
    transfers: int = 0
    """Leadership transfers requested at random times of the chaos phase."""
    membership_changes: int = 0
    """Membership changes requested at random times of the chaos phase."""
    blank_start: bool = False
    """Start each node as `dref node` would: guarded (`BlankStart`) when its disk was never
    used, on the first start and after `wipe`."""
    raft: RaftConfig = field(
        default_factory=lambda: RaftConfig(
            heartbeat_interval_ms=15,
            election_timeout_ms=80,
            max_clock_drift_ms=10,
            snapshot_every=0,
        )
    )

    @classmethod
    def for_admin_seed(cls, rng: random.Random) -> SimConfig:
        """A random run that also transfers leadership and grows/shrinks the cluster."""
        base = cls.for_seed(rng)
        return replace(
            base,
            nodes=5,
            initial_voters=rng.choice((1, 2, 3)),
            transfers=rng.randrange(0, 6),
            membership_changes=rng.randrange(4, 14),
            chaos_ms=1000,
            # A removed node may still campaign (without PreVote) until its removal commits and
            # split the votes: seed 581 needed ~2 s (25 election timeouts) to elect a leader.
            quiet_ms=3000,
        )

    @classmethod
    def for_seed(cls, rng: random.Random) -> SimConfig:
        """A random mix of cluster size, fault kinds and batching settings."""
        base = cls()
        raft = replace(
            base.raft,
            max_inflight=rng.choice((1, 4)),
            max_entries_per_message=rng.choice((1, 3, 16)),
            snapshot_every=rng.choice((0, 0, 4, 15)),
            snapshot_chunk_bytes=rng.choice((1 << 20, 8, 24)),
            pre_vote=rng.random() < 0.85,
            check_quorum=rng.random() < 0.85,
        )
        return replace(
            base,
            nodes=rng.choice((3, 3, 5)),
            keys=rng.choice((1, 2, 3)),
            max_delay_ms=rng.choice((2, 6, 15)),
            max_sync_delay_ms=rng.choice((0, 3, 15)),
            drop_rate=rng.choice((0.0, 0.02, 0.1)),
            duplicate_rate=rng.choice((0.0, 0.03)),
            crashes=rng.random() < 0.6,
            partitions=rng.random() < 0.6,
            pauses=rng.random() < 0.3,
            faults=rng.randrange(1, 7),
            raft=raft,
        )


@dataclass(slots=True)
class SimNode:
    """One node: its core, disk, clock, state machine and the requests it holds."""

    node_id: str
    disk: FakeDisk
    clock_offset: int
    clock_rate: float
    core: RaftCore | None = None
    step: SimStep | None = None
    transport: SimTransport | None = None
    issued_batch: int = 0
    """The last storage batch this node's step handed out (all of it is on the disk queue)."""
    kv: dict[str, int] = field(default_factory=dict)
    applied_index: int = 0
    applied_term: int = 0
    accepted: dict[int, tuple[int, int]] = field(default_factory=dict)
    reads: list[tuple[int, int]] = field(default_factory=list)
    sync_scheduled: bool = False
    seen_leader_term: int = -1
    paused_until: int = 0
    last_tick_ms: int = 0
    """Local time of the core's last tick: a later tick after a pause reports the stall."""
    batch: list[ClientOp] = field(default_factory=list)
    """Writes gathered for one `propose_many` turn (as the node runtime batches callers)."""
    started_before: bool = False
    """The disk has been used (as a data directory holding node-identity.json)."""

    def local_time(self, now_ms: int) -> int:
        """This node's clock reading: offset and a small rate error."""
        return self.clock_offset + int(now_ms * self.clock_rate)


class SimTransport:
    """A node's `PeerTransport` on the simulated network: `send` hands the message to the
    simulation, which drops, delays, duplicates or delivers it as the seed decides."""

    def __init__(self, simulation: Simulation, node_id: str) -> None:
        self._simulation = simulation
        self._node_id = node_id
        self._peers: frozenset[str] | None = None  # None: every node (no PeerSet here)
        self._closed = False

    def send(self, peer: str, message: Message) -> None:
        if self._closed or (self._peers is not None and peer not in self._peers):
            return
        self._simulation.transmit(self._node_id, peer, message)

    def set_peers(self, addresses: Mapping[str, str]) -> None:
        self._peers = frozenset(addresses)

    def close(self) -> None:
        self._closed = True


class Simulation:
    """One seeded run. `run()` returns a summary or raises `SimulationFailure`."""

    def __init__(
        self,
        seed: int,
        config: SimConfig | None = None,
        core_factory: CoreFactory = RaftCore,
        *,
        admin: bool = False,
        step_factory: StepFactory = message_step,
    ) -> None:
        self.seed = seed
        self.step_factory = step_factory
        self.rng = random.Random(seed)
        if config is None:
            config = (SimConfig.for_admin_seed if admin else SimConfig.for_seed)(self.rng)
        self.config = config
        self.core_factory = core_factory
        self.now = 0
        self._queue: list[tuple[int, int, int, Any, Any]] = []
        self._seq = 0
        self.ids = [f"n{i}" for i in range(self.config.nodes)]
        self.initial_voters = self.ids[: self.config.initial_voters or self.config.nodes]
        self.monitor = SafetyMonitor(frozenset(self.initial_voters))
        self.workload = Workload(self.rng, self.config.keys)
        self.replay_hint = ADMIN_REPLAY_HINT if admin else REPLAY_HINT
        self.admin_ids = 0
        self.admin_outcomes: dict[int, str] = {}
        """Admin request (negative id) -> "pending", "ok", "refused" or "unknown"."""
        drift = self.config.clock_drift
        self.nodes = {
            node_id: SimNode(
                node_id,
                FakeDisk(),
                self.rng.randrange(0, 1000),
                self.rng.uniform(1 - drift, 1 + drift),
            )
            for node_id in self.ids
        }
        self.blocked: set[tuple[str, str]] = set()
        self.partition_number = 0
        self.ops: dict[int, ClientOp] = {}
        self.client_op: dict[int, ClientOp | None] = {}
        self.leader_hint: str | None = None
        """The node most recently seen becoming leader (the nemesis aims at it)."""
        self.believed_leader: dict[int, str] = {}
        """Each client's own idea of the leader, updated only by what nodes tell it."""
        self.messages = 0
        self.snapshot_chunks = 0
        """InstallSnapshot chunks delivered that continue a snapshot (offset > 0)."""
        self.snapshots_installed = 0

    # ------------------------------------------------------------------- running

    def run(self) -> dict[str, int]:
        """Run chaos then quiet phases and check everything; raise on any violation."""
        try:
            self._run()
        except AssertionError as failure:
            raise SimulationFailure(
                f"seed {self.seed} failed ({self.config}):\n{failure}\n"
                f"replay: {self.replay_hint.format(seed=self.seed)}"
            ) from failure
        done = sum(1 for op in self.ops.values() if op.outcome == "ok")
        admin_ok = sum(1 for outcome in self.admin_outcomes.values() if outcome == "ok")
        return {
            "ops": len(self.ops),
            "ok": done,
            "messages": self.messages,
            "admin_ok": admin_ok,
            "config_changes": self.monitor.config_changes,
            "snapshot_chunks": self.snapshot_chunks,
            "snapshots_installed": self.snapshots_installed,
        }

    def _run(self) -> None:
        config = self.config
        for node_id in self.ids:
            self._start_node(node_id)
            self._schedule(self.rng.randrange(config.tick_ms), _TICK, node_id)
        for client in range(config.clients):
            self.client_op[client] = None
            self._schedule(self.rng.randrange(50), _CLIENT, client)
        kinds = [
            kind
            for kind, wanted in (
                (_CRASH, config.crashes),
                (_PARTITION, config.partitions),
                (_PAUSE, config.pauses),
            )
            if wanted
        ]
        for _ in range(config.faults if kinds else 0):
            self._schedule(self.rng.randrange(config.chaos_ms), self.rng.choice(kinds), None)
        for _ in range(config.transfers):
            self._schedule(self.rng.randrange(config.chaos_ms), _TRANSFER, None)
        for _ in range(config.membership_changes):
            self._schedule(self.rng.randrange(config.chaos_ms), _MEMBERSHIP, None)
        self._loop(config.chaos_ms)
        self._heal_everything()
        self._loop(config.chaos_ms + config.quiet_ms)
        self._final_checks()

    def _loop(self, until_ms: int) -> None:
        queue = self._queue
        while queue and queue[0][0] <= until_ms:
            when, _, kind, a, b = heapq.heappop(queue)
            self.now = when
            if kind == _DELIVER:
                self._deliver(a, b)
            elif kind == _TICK:
                self._tick(a)
            elif kind == _SYNC:
                self._sync(a)
            elif kind == _CLIENT:
                self._client_step(a)
            elif kind == _TIMEOUT:
                self._client_timeout(a, b)
            elif kind == _CRASH:
                self._crash()
            elif kind == _RESTART:
                self._restart(a)
            elif kind == _PARTITION:
                self._partition()
            elif kind == _HEAL and a == self.partition_number:
                self.blocked.clear()
            elif kind == _PAUSE:
                self._pause()
            elif kind == _SUBMIT:
                self._submit(a)
            elif kind == _TRANSFER:
                self._transfer()
            elif kind == _MEMBERSHIP:
                self._change_membership()
            elif kind == _KILL:
                self._crash_node(self.nodes[a])
            elif kind == _PROPOSE:
                self._propose_batch(a)
        self.now = until_ms

    def _schedule(self, delay: int, kind: int, a: Any, b: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, kind, a, b))

    # --------------------------------------------------------------------- nodes

    def _start_node(self, node_id: str) -> None:
        node = self.nodes[node_id]
        durable = node.disk.recover()
        guard = {"blank_start": not node.started_before} if self.config.blank_start else {}
        node.core = self.core_factory(
            node_id,
            self.initial_voters,
            config=self.config.raft,
            rng=random.Random(self.rng.random()),
            now_ms=node.local_time(self.now),
            durable=durable,
            **guard,
        )
        node.started_before = True
        node.step = self.step_factory(node.core)
        node.transport = SimTransport(self, node_id)
        node.issued_batch = 0
        node.last_tick_ms = node.local_time(self.now)
        self._restore_state_machine(node, durable)

    @staticmethod
    def _restore_state_machine(node: SimNode, durable: DurableState) -> None:
        snapshot = durable.snapshot
        node.kv = json.loads(snapshot.data) if snapshot else {}
        node.applied_index = snapshot.index if snapshot else 0
        node.applied_term = snapshot.term if snapshot else 0
        node.accepted.clear()
        node.reads.clear()
        node.seen_leader_term = -1

    def _postponed(self, node: SimNode, kind: int, a: Any, b: Any = None) -> bool:
        """A paused node handles nothing until it wakes; the event waits (its clock runs on)."""
        if self.now >= node.paused_until:
            return False
        self._schedule(node.paused_until - self.now + self.rng.randrange(3), kind, a, b)
        return True

    def _tick(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if self._postponed(node, _TICK, node_id):
            return
        if node.core is not None:
            now = node.local_time(self.now)
            stalled = max(0, now - node.last_tick_ms - 2 * self.config.tick_ms)
            node.last_tick_ms = now
            assert node.step is not None
            self._carry(node, node.step.tick(now, stalled))
        self._schedule(self.config.tick_ms, _TICK, node_id)

    def _deliver(self, to: str, message: Message) -> None:
        node = self.nodes[to]
        if node.core is None or (message.sender, to) in self.blocked:
            return
        if self._postponed(node, _DELIVER, to, message):
            return
        if isinstance(message, InstallSnapshot) and message.offset > 0:
            self.snapshot_chunks += 1
        assert node.step is not None
        self._carry(node, node.step.receive(message))

    def _sync(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if self._postponed(node, _SYNC, node_id):
            return
        node.sync_scheduled = False
        if node.core is not None:
            self._flush(node)

    def _flush(self, node: SimNode) -> None:
        """fsync: queued writes become durable; the step releases what waited for them."""
        assert node.step is not None
        last = node.disk.sync()
        index, term = last if last is not None else (None, 0)
        self._carry(node, node.step.durable(node.issued_batch, index, term))

    def _carry(self, node: SimNode, ready: Ready[None, int]) -> None:
        """Do what one turn's Ready asks: queue its storage batch on the disk first (the
        node's storage writer receives a batch before any later snapshot), then state
        machine work, callers' outcomes and messages."""
        core = node.core
        assert core is not None
        assert not ready.answers and not ready.answers_on_persist, "no reply slots here"
        for effect in ready.persist:
            self._write(node, effect)
        if ready.persist:
            node.issued_batch = ready.batch
        for work in ready.state_machine:
            if isinstance(work, RestoreState):
                self.snapshots_installed += 1
                node.kv = json.loads(work.data)
                node.applied_index, node.applied_term = work.index, work.term
            elif isinstance(work, ApplyEntries):
                self._apply(node, work)
            elif isinstance(work, Committed):
                node.accepted[work.index] = (work.caller, work.term)
            elif isinstance(work, ReadAt):
                node.reads.append((work.read_index, work.caller))
                self._serve_reads(node)
            elif isinstance(work, TakeSnapshotNow):
                self._take_snapshot(node)
        for caller, outcome in ready.outcomes:
            if isinstance(outcome, Transferred):
                self._admin_done(caller, "ok")
            else:
                self._rejected(caller, outcome)
        assert node.transport is not None
        for peer, messages in ready.messages.items():
            for message in messages:
                node.transport.send(peer, message)
        if core.state.role is Role.LEADER and node.seen_leader_term != core.state.term:
            node.seen_leader_term = core.state.term
            self.leader_hint = node.node_id
            self.monitor.on_leader(core)

    def _write(self, node: SimNode, effect: Any) -> None:
        node.disk.write(effect)
        if not node.sync_scheduled:
            node.sync_scheduled = True
            delay = self.rng.randrange(self.config.max_sync_delay_ms + 1)
            self._schedule(delay, _SYNC, node.node_id)

    def _apply(self, node: SimNode, effect: ApplyEntries) -> None:
        for entry in effect.entries:
            if entry.index != node.applied_index + 1:
                raise AssertionError(
                    f"{node.node_id} applied {entry.index} after {node.applied_index}"
                )
            assert node.core is not None
            self.monitor.on_apply(node.node_id, entry, node.core.state.term)
            result: bool | None = None
            if entry.kind is EntryKind.NORMAL:
                result = self._apply_command(node, self.ops[int(entry.command)])
            node.applied_index, node.applied_term = entry.index, entry.term
            accepted = node.accepted.pop(entry.index, None)
            if accepted is not None:
                request_id, term = accepted
                if request_id < 0:
                    self._admin_done(request_id, "ok" if term == entry.term else "refused")
                elif term == entry.term:
                    self._finish(request_id, "ok", succeeded=result)
                else:
                    self._finish(request_id, "failed")
        assert node.step is not None
        self._serve_reads(node)
        self._carry(node, node.step.applied(node.applied_index))

    @staticmethod
    def _apply_command(node: SimNode, op: ClientOp) -> bool | None:
        assert op.value is not None
        if op.kind is OpKind.WRITE:
            node.kv[op.key] = op.value
            return None
        if node.kv.get(op.key) == op.expected:
            node.kv[op.key] = op.value
            return True
        return False

    def _serve_reads(self, node: SimNode) -> None:
        if not node.reads:
            return
        waiting = []
        for read_index, request_id in node.reads:
            if read_index <= node.applied_index:
                op = self.ops[request_id]
                op.value = node.kv.get(op.key)
                self._finish(request_id, "ok")
            else:
                waiting.append((read_index, request_id))
        node.reads = waiting

    def _take_snapshot(self, node: SimNode) -> None:
        assert node.core is not None
        if node.applied_index <= node.core.log.snapshot_index:
            return
        self._flush(node)  # the snapshot is written behind every earlier write
        data = json.dumps(node.kv, sort_keys=True).encode()
        membership = node.core.membership_at(node.applied_index)
        node.disk.save_snapshot(
            Snapshot(
                node.applied_index,
                node.applied_term,
                data,
                membership.voters,
                membership.learners,
                membership.addresses,
            )
        )
        assert node.step is not None
        self._carry(node, node.step.snapshot_taken(node.applied_index, node.applied_term, data))

    # ------------------------------------------------------------------- network

    def transmit(self, sender: str, to: str, message: Message) -> None:
        """The network: drop, duplicate or schedule the delivery of one message."""
        config = self.config
        rng = self.rng
        self.messages += 1
        if (sender, to) in self.blocked or rng.random() < config.drop_rate:
            return
        copies = 2 if rng.random() < config.duplicate_rate else 1
        for _ in range(copies):
            delay = rng.randint(config.min_delay_ms, config.max_delay_ms)
            self._schedule(delay, _DELIVER, to, message)

    def _victim(self) -> str:
        """Half the faults hit the node most recently seen leading, where bugs hide."""
        hint = self.leader_hint
        if hint is not None and self.rng.random() < 0.5:
            return hint
        return self.rng.choice(self.ids)

    def _partition(self) -> None:
        """Split the victim's side from the rest, or (a third of the time) cut single links,
        which makes non-transitive reachability: A sees B, B sees C, A does not see C."""
        victim = self._victim()
        ids = [n for n in self.ids if n != victim]
        self.rng.shuffle(ids)
        if self.rng.random() < 0.33:
            cut_links = {(victim, peer) for peer in ids[: self.rng.randrange(1, len(ids))]}
        else:
            cut = self.rng.randrange(0, len(ids) // 2 + 1)
            left, right = [victim, *ids[:cut]], ids[cut:]
            cut_links = {(a, b) for a in left for b in right}
        self.blocked = cut_links | {(b, a) for a, b in cut_links}
        self.partition_number += 1
        self._schedule(self.rng.randrange(50, 400), _HEAL, self.partition_number)

    def _pause(self) -> None:
        node = self.nodes[self._victim()]
        node.paused_until = max(node.paused_until, self.now + self.rng.randrange(20, 300))

    def _crash(self) -> None:
        """Kill the victim, or (a fifth of the time) every node at once: a power loss."""
        victims = self.ids if self.rng.random() < 0.2 else [self._victim()]
        for victim in victims:
            self._crash_node(self.nodes[victim])

    def _crash_node(self, node: SimNode) -> None:
        if node.core is None:
            return
        node.core = None
        node.step = None
        if node.transport is not None:
            node.transport.close()
        node.disk.crash()
        node.batch.clear()
        for op in self.ops.values():
            if op.node == node.node_id and op.outcome == "pending":
                self._finish(op.op_id, "unknown")
        for request_id, _ in node.accepted.values():
            if request_id < 0:
                self._admin_done(request_id, "unknown")
        self._schedule(self.rng.randrange(20, 250), _RESTART, node.node_id)

    def _restart(self, node_id: str) -> None:
        if self.nodes[node_id].core is None:
            self._start_node(node_id)

    def _heal_everything(self) -> None:
        self.blocked.clear()
        self._queue = [e for e in self._queue if e[2] not in _FAULTS]
        heapq.heapify(self._queue)
        for node_id, node in self.nodes.items():
            node.paused_until = min(node.paused_until, self.now)
            if node.core is None:
                self._start_node(node_id)
        self.config = replace(self.config, drop_rate=0.0, duplicate_rate=0.0)

    # --------------------------------------------------------------------- admin

    def _live_leader(self) -> SimNode | None:
        """The live node leading the highest term, if any."""
        leaders = [
            n
            for n in self.nodes.values()
            if n.core is not None and n.core.state.role is Role.LEADER
        ]
        return max(leaders, key=lambda n: n.core.state.term if n.core else 0, default=None)

    def _next_admin_id(self) -> int:
        self.admin_ids -= 1
        self.admin_outcomes[self.admin_ids] = "pending"
        return self.admin_ids

    def _admin_done(self, request_id: int, outcome: str) -> None:
        if self.admin_outcomes.get(request_id) == "pending":
            self.admin_outcomes[request_id] = outcome

    def _transfer(self) -> None:
        """Ask the leader to hand over, to a random voter or (None) the most caught-up one."""
        leader = self._live_leader()
        if leader is None or leader.core is None or self._postponed(leader, _TRANSFER, None):
            return
        others = sorted(leader.core.state.voters - {leader.node_id})
        target = self.rng.choice([*others, None])
        assert leader.step is not None
        self._carry(leader, leader.step.transfer(self._next_admin_id(), target))

    def _change_membership(self) -> None:
        """Ask the leader for a random one-server change; often kill it right after."""
        leader = self._live_leader()
        if leader is None or leader.core is None or self._postponed(leader, _MEMBERSHIP, None):
            return
        core = leader.core
        current = core.membership
        rng = self.rng
        choices = [
            MembershipChange(ChangeAction.ADD_LEARNER, node_id, f"{node_id}:1")
            for node_id in self.ids
            if node_id not in current.members
        ]
        choices += [MembershipChange(ChangeAction.PROMOTE, n) for n in sorted(current.learners)]
        choices += [
            MembershipChange(ChangeAction.REMOVE, n)
            for n in sorted(current.members)
            if current.voters != {n}
        ]
        if not choices:
            return
        change = rng.choice(choices)
        assert leader.step is not None
        self._carry(leader, leader.step.change_membership(self._next_admin_id(), change))
        if rng.random() < 0.3:
            self._schedule(rng.randrange(0, 30), _KILL, leader.node_id)

    # ---------------------------------------------------------- scripted scenarios

    def start(self) -> None:
        """Start every node and its clock, without clients or faults: a scripted scenario
        then drives the run with `advance`, `isolate`, `heal`, `change` and `wipe`."""
        for node_id in self.ids:
            self._start_node(node_id)
            self._schedule(self.rng.randrange(self.config.tick_ms), _TICK, node_id)

    def advance(self, ms: int) -> None:
        """Run every event of the next `ms` simulated milliseconds."""
        self._loop(self.now + ms)

    def isolate(self, node_id: str) -> None:
        """Cut every link to and from `node_id` (until `heal`)."""
        self.blocked = {(a, b) for a in self.ids for b in self.ids if a != b and node_id in (a, b)}

    def heal(self) -> None:
        """Restore every link."""
        self.blocked.clear()

    def leader(self) -> SimNode:
        """The live node leading the highest term (the scenario expects one)."""
        leader = self._live_leader()
        assert leader is not None and leader.core is not None, "no leader"
        return leader

    def change(self, change: MembershipChange) -> None:
        """Ask the leader for a one-server membership change."""
        leader = self.leader()
        assert leader.step is not None
        self._carry(leader, leader.step.change_membership(self._next_admin_id(), change))

    def transfer(self, target: str) -> None:
        """Ask the leader to hand leadership to `target`."""
        leader = self.leader()
        assert leader.step is not None
        self._carry(leader, leader.step.transfer(self._next_admin_id(), target))

    def write(self, key: str, value: int) -> int:
        """Propose a write on the leader; returns its op id (see `ops[id].outcome`)."""
        leader = self.leader()
        op = ClientOp(len(self.ops) + 1, 0, OpKind.WRITE, key, self.now, leader.node_id, value)
        self.ops[op.op_id] = op
        self._submit(op)
        return op.op_id

    def wipe(self, node_id: str) -> None:
        """Kill `node_id` and start it again on a new, empty disk (its data dir wiped)."""
        node = self.nodes[node_id]
        self._crash_node(node)
        self._queue = [e for e in self._queue if not (e[2] == _RESTART and e[3] == node_id)]
        heapq.heapify(self._queue)
        node.disk = FakeDisk()
        node.started_before = False
        self._start_node(node_id)

    # ------------------------------------------------------------------- clients

    def _client_step(self, client: int) -> None:
        if self.now >= self.config.chaos_ms + self.config.quiet_ms // 2:
            return  # let the cluster settle before the final checks
        live = [n for n in self.ids if self.nodes[n].core is not None]
        if not live:
            self._schedule(10, _CLIENT, client)
            return
        believed = self.believed_leader.get(client)
        target = believed if believed in live else self.rng.choice(live)
        assert target is not None
        self.believed_leader[client] = target
        op = self.workload.next_op(len(self.ops) + 1, client, self.now, target)
        self.ops[op.op_id] = op
        self.client_op[client] = op
        self._schedule(4 * self.config.raft.election_timeout_ms, _TIMEOUT, client, op.op_id)
        self._submit(op)

    def _submit(self, op: ClientOp) -> None:
        node = self.nodes[op.node]
        if op.outcome != "pending" or node.step is None:
            return
        if self._postponed(node, _SUBMIT, op):
            return
        now = node.local_time(self.now)
        if op.kind is OpKind.READ:
            lease = self.config.lease_reads and self.rng.random() < 0.5
            policy = ReadPolicy.LEASE if lease else ReadPolicy.READ_INDEX
            self._carry(node, node.step.callers([], [(op.op_id, policy)], now))
        elif self.rng.random() < 0.5:
            self._carry(node, node.step.callers([(op.command(), op.op_id)], [], now))
        else:  # gathered with the writes that reach this node in the next few ms
            node.batch.append(op)
            if len(node.batch) == 1:
                self._schedule(self.rng.randrange(4), _PROPOSE, node.node_id)

    def _propose_batch(self, node_id: str) -> None:
        """Propose a node's gathered writes in one turn (`RaftCore.propose_many`)."""
        node = self.nodes[node_id]
        if node.step is None or self._postponed(node, _PROPOSE, node_id):
            return
        ops = [op for op in node.batch if op.outcome == "pending"]
        node.batch.clear()
        if ops:
            proposals = [(op.command(), op.op_id) for op in ops]
            self._carry(node, node.step.callers(proposals, [], node.local_time(self.now)))

    def _rejected(self, caller: int, reason: NotLeader | QuorumLost | Refused) -> None:
        """A definite failure; a NotLeader answer redirects the client like a real one."""
        if caller < 0:
            self._admin_done(caller, "refused")
            return
        op = self.ops[caller]
        leader = getattr(reason, "leader_id", None)
        if leader is None or leader == op.node:
            self.believed_leader.pop(op.client, None)
        else:
            self.believed_leader[op.client] = leader
        self._finish(caller, "failed")

    def _client_timeout(self, client: int, op_id: int) -> None:
        op = self.ops[op_id]
        if op.outcome == "pending":
            self.believed_leader.pop(client, None)
            self._finish(op_id, "unknown")

    def _finish(self, op_id: int, outcome: str, succeeded: bool | None = None) -> None:
        op = self.ops[op_id]
        if op.outcome != "pending":
            return
        op.outcome = outcome
        op.complete_ms = self.now
        op.succeeded = succeeded
        if outcome == "ok":
            self.workload.observed(op)
        if self.client_op.get(op.client) is op:
            self.client_op[op.client] = None
            self._schedule(self.rng.randrange(1, 6), _CLIENT, op.client)

    # -------------------------------------------------------------------- checks

    def _final_checks(self) -> None:
        cores = [n.core for n in self.nodes.values() if n.core is not None]
        self.monitor.check_logs(cores)
        leaders = [c for c in cores if c.state.role is Role.LEADER]
        if not leaders:
            raise AssertionError("liveness: no leader after the quiet phase")
        history = [op for op in (o.to_operation() for o in self.ops.values()) if op is not None]
        result = check_history(history, time_limit_s=20.0)
        if not result.ok:
            raise AssertionError(f"linearizability: {result.verdict.value}: {result.description}")


def run_seed(
    seed: int,
    core_factory: CoreFactory = RaftCore,
    *,
    admin: bool = False,
    step_factory: StepFactory = message_step,
) -> dict[str, int]:
    """Run one seed with a seed-chosen configuration; raises SimulationFailure on a violation.
    `admin` seeds also transfer leadership and change membership under the faults."""
    return Simulation(
        seed, core_factory=core_factory, admin=admin, step_factory=step_factory
    ).run()
