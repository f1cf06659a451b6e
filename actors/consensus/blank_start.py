"""`BlankStart`: a founding voter that started with no Raft state must not vote until it is
sure it never voted before.

A node whose data directory was wiped forgot the terms it voted in and the entries it
acknowledged; if it voted again, one term could get two leaders, and an entry committed
with its old acknowledgement could be outvoted. It cannot tell a wipe from a genuine first
start on its own, but its peers' terms can: a node that voted in term T >= 1 did so for a
candidate whose election quorum, apart from the node itself, is at term >= T forever. So
the blank node grants no vote and stays at term 0 (it writes nothing) until every peer
has shown term 0 since it started (none for a single voter). N - Q + 1 of N voters (Q the
quorum) would overlap every such quorum already, but then the first N - Q + 1 founders to
start could elect before the last one starts, and that one, seeing a later term, could
not tell itself from a wiped node: waiting for every founder keeps a founder that starts
a little late in. A peer seen in a later term before it was seen at term 0 means the
cluster ran before, with this node as a voter: the node refuses.

Terms are read off the messages the guard sees anyway: a PreVote proposes its sender's
term + 1, a PreVoteResponse grant echoes our proposed term (the voter was below it), a
refusal carries the voter's term, and anything else its sender's term. The guarded node
sends PreVotes itself (they change nothing) so that its peers answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dref.actors.consensus.messages import Message, PreVote, PreVoteResponse


class BlankStart:
    """Counts the peers seen at term 0 and those seen later first; see the module doc."""

    def __init__(self, node_id: str, voters: Iterable[str]) -> None:
        self.peers = frozenset(voters) - {node_id}
        self.needed = len(self.peers)
        """Peers that must be seen at term 0 before this node may vote: all of them."""
        self.pristine: set[str] = set()
        self.moved: dict[str, int] = {}
        """Peers first seen in a later term, with that term."""
        self.refused_by: tuple[str, int] | None = None
        """(peer, its term) that made reaching `needed` impossible, once it is."""

    @property
    def cleared(self) -> bool:
        """Enough peers were seen at term 0: no vote of ours can exist."""
        return len(self.pristine) >= self.needed

    def observe(self, message: Message) -> None:
        """Note the term `message` shows its sender to be in."""
        sender = message.sender
        if sender not in self.peers or sender in self.pristine or self.refused_by is not None:
            return
        if isinstance(message, PreVote):
            term = message.term - 1
        elif isinstance(message, PreVoteResponse) and message.granted:
            term = 0  # it granted our proposed term 1
        else:
            term = message.term
        if term == 0:
            self.pristine.add(sender)
            self.moved.pop(sender, None)
            return
        self.moved[sender] = term
        if len(self.peers) - len(self.moved) < self.needed:
            self.refused_by = (sender, term)


class JoinCheck:
    """A node started empty with `--join` must be a new member: the cluster adds it as a
    learner first. If, once its log covers the leader's commit index, the configuration
    already lists it as a voter, it is a voter that lost its state (restarted with --join
    instead of being removed first): it refuses, as `BlankStart` does. Until it is
    admitted it neither votes nor campaigns; the node keeps the check across restarts."""

    def __init__(self) -> None:
        self.admitted = False
        self.refused_at = 0
        """The configuration entry that lists this node as a voter already (0: none)."""

    def judge(
        self, node_id: str, learners: frozenset[str], voters: frozenset[str], at: int
    ) -> None:
        """Our log covers the leader's commit: judge the configuration in force (set at `at`)."""
        if self.admitted or self.refused_at:
            return
        if node_id in learners:
            self.admitted = True
        elif node_id in voters:
            self.refused_at = max(at, 1)


@dataclass(frozen=True, slots=True)
class BlankRefused:
    """`BlankStart` refused: `peer` was seen in `term` before it was seen at term 0."""

    peer: str
    term: int


@dataclass(frozen=True, slots=True)
class JoinRefused:
    """`JoinCheck` refused: the configuration set at `config_index` lists us as a voter."""

    config_index: int


@dataclass(frozen=True, slots=True)
class JoinAdmitted:
    """`JoinCheck` saw us as a learner: a new member, free to vote once promoted."""


StartCheckOutcome = BlankRefused | JoinRefused | JoinAdmitted
