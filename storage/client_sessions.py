"""Client sessions of the key/value state machine (Raft dissertation, section 6.3): what
makes a retried write safe.

A client opens a session (a replicated command), then numbers its writes 1, 2, 3, ...
within it. The state machine keeps the encoded answer of each numbered write until the
client says it holds every answer up to some number (`acknowledged`), and answers a write
it already applied from that memory instead of applying it again. So a client may resend
a write through a leader change, a lost connection or a timeout: it is applied once.

Everything here is decided by the commands alone, so every node agrees: session ids come
from a counter, and time is the proposing server's clock carried in the commands (`now`,
Unix ms). A session idle for `SESSION_TIMEOUT_MS` of that time is forgotten when another
session opens, and at most `MAX_SESSIONS` are kept (the least recently active goes first).
A write of a forgotten session, or one whose answer was dropped, is answered `EXPIRED`:
not applied now, and whether it was applied before cannot be told.

Not thread-safe: the state machine calls it under its own lock. Sessions go into its
snapshots (native fields of `KeyValueSnapshot`, which upstream nodes ignore).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dref.wire.proto import state_command_pb2 as sc
from dref.wire.proto.dref_native_pb2 import CommandResult
from dref.wire.proto.raft_pb2 import ClientSessionState, KeyValueSnapshot, SessionAnswer

__all__ = ["EXPIRED", "MAX_ANSWERS", "MAX_SESSIONS", "SESSION_TIMEOUT_MS", "ClientSessions"]

SESSION_TIMEOUT_MS = 10 * 60 * 1000
"""Milliseconds of the servers' clocks after which an idle session may be forgotten."""

MAX_SESSIONS = 10_000
"""Sessions kept at most; opening one more forgets the least recently active."""

MAX_ANSWERS = 8_192
"""Unacknowledged answers kept per session; beyond, the oldest is dropped (a resend of it
is then answered EXPIRED). A client has at most a few thousand writes in flight."""

EXPIRED = CommandResult(session_expired=True).SerializeToString()
"""The answer to a write whose session (or whose kept answer) is gone: not applied."""


@dataclass
class _Session:
    last_active: int
    forgotten: int = 0  # every sequence up to this one has no kept answer any more
    answers: dict[int, bytes] = field(default_factory=dict)


class ClientSessions:
    """The open sessions and their kept answers."""

    def __init__(self) -> None:
        self._sessions: dict[int, _Session] = {}
        self._last_id = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, now: int) -> int:
        """A new session's id; forgets sessions idle since before `now - SESSION_TIMEOUT_MS`,
        and the least recently active while more than `MAX_SESSIONS - 1` remain."""
        idle_since = now - SESSION_TIMEOUT_MS
        for session_id in [i for i, s in self._sessions.items() if s.last_active < idle_since]:
            del self._sessions[session_id]
        if len(self._sessions) >= MAX_SESSIONS:
            by_activity = sorted(self._sessions, key=lambda i: (self._sessions[i].last_active, i))
            for session_id in by_activity[: len(self._sessions) - MAX_SESSIONS + 1]:
                del self._sessions[session_id]
        self._last_id += 1
        self._sessions[self._last_id] = _Session(last_active=now)
        return self._last_id

    def kept_answer(self, tag: sc.ClientSession) -> bytes | None:
        """The answer to give `tag`'s write without applying it (its kept answer, or
        `EXPIRED`), or None when it must be applied. Forgets the acknowledged answers."""
        session = self._sessions.get(tag.id)
        if session is None:
            return EXPIRED
        session.last_active = max(session.last_active, tag.now)
        if tag.acknowledged > session.forgotten:
            for sequence in [q for q in session.answers if q <= tag.acknowledged]:
                del session.answers[sequence]
            session.forgotten = tag.acknowledged
        kept = session.answers.get(tag.sequence)
        if kept is not None:
            return kept
        if tag.sequence <= session.forgotten:
            return EXPIRED
        return None

    def remember(self, tag: sc.ClientSession, answer: bytes) -> None:
        """Keep `answer` as the one to `tag`'s write (after `kept_answer` said to apply it)."""
        session = self._sessions[tag.id]
        session.answers[tag.sequence] = answer
        if len(session.answers) > MAX_ANSWERS:
            oldest = min(session.answers)
            del session.answers[oldest]
            session.forgotten = max(session.forgotten, oldest)

    def save(self, snapshot: KeyValueSnapshot) -> None:
        """Write the sessions into `snapshot` (sorted, so equal states give equal bytes)."""
        snapshot.last_session = self._last_id
        for session_id in sorted(self._sessions):
            session = self._sessions[session_id]
            state = ClientSessionState(
                id=session_id, last_active=session.last_active, forgotten=session.forgotten
            )
            for sequence in sorted(session.answers):
                state.answers.append(
                    SessionAnswer(sequence=sequence, result=session.answers[sequence])
                )
            snapshot.sessions.append(state)

    def load(self, snapshot: KeyValueSnapshot) -> None:
        """Replace the sessions with those of `snapshot` (none in an upstream one)."""
        self._last_id = snapshot.last_session
        self._sessions = {
            state.id: _Session(
                last_active=state.last_active,
                forgotten=state.forgotten,
                answers={answer.sequence: answer.result for answer in state.answers},
            )
            for state in snapshot.sessions
        }
