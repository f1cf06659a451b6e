"""Helpers for driving single RaftCores by hand: build one, elect it, pick effects out."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from dref.actors.consensus.config import RaftConfig
from dref.actors.consensus.durable_state import DurableState
from dref.actors.consensus.effects import AppendToLog, Effect, Send
from dref.actors.consensus.messages import (
    AppendEntriesResponse,
    Message,
    PreVoteResponse,
    RequestVoteResponse,
)
from dref.actors.consensus.node_state import Role
from dref.actors.consensus.raft import RaftCore

T = TypeVar("T")

CONFIG = RaftConfig(
    heartbeat_interval_ms=10, election_timeout_ms=100, max_clock_drift_ms=10, snapshot_every=0
)


class Harness:
    """Builds cores with a fixed seed and extracts effects by type."""

    def core(
        self,
        node_id: str = "a",
        voters: tuple[str, ...] = ("a", "b", "c"),
        durable: DurableState | None = None,
        learners: tuple[str, ...] = (),
        **overrides: Any,
    ) -> RaftCore:
        """A fresh core at time 0."""
        return RaftCore(
            node_id,
            voters,
            config=replace(CONFIG, **overrides),
            rng=random.Random(7),
            durable=durable,
            learners=learners,
        )

    @staticmethod
    def of(effects: list[Effect], kind: type[T]) -> list[T]:
        """The effects of one type, in order."""
        return [e for e in effects if isinstance(e, kind)]

    @staticmethod
    def messages(effects: list[Effect], kind: type[T], to: str | None = None) -> list[T]:
        """Messages of one type sent (optionally to one node)."""
        return [
            e.message
            for e in effects
            if isinstance(e, Send) and isinstance(e.message, kind) and (to is None or e.to == to)
        ]

    def elect(self, core: RaftCore, now_ms: int = 1000) -> list[Effect]:
        """Win an election by hand: time out, collect pre-votes and votes, fsync the no-op."""
        effects = core.tick(now_ms)
        state = core.state
        for peer in sorted(state.voters - {state.node_id}):
            if state.role is Role.PRE_CANDIDATE:
                grant: Message = PreVoteResponse(sender=peer, term=state.term + 1, granted=True)
                effects += core.receive(grant)
        for peer in sorted(state.voters - {state.node_id}):
            if state.role is Role.CANDIDATE:
                vote = RequestVoteResponse(sender=peer, term=state.term, granted=True)
                effects += core.receive(vote)
        assert state.role is Role.LEADER
        for append in self.of(effects, AppendToLog):
            last = append.entries[-1]
            effects += core.persisted(last.index, last.term)
        return effects

    def ack(self, core: RaftCore, peer: str, match_index: int) -> list[Effect]:
        """A follower's successful AppendEntries response."""
        return core.receive(
            AppendEntriesResponse(
                sender=peer, term=core.state.term, success=True, match_index=match_index
            )
        )


@pytest.fixture
def h() -> Harness:
    """The hand-driving harness."""
    return Harness()
