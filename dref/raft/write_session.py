"""A client's side of its session (see `dref.storage.client_sessions`): the session id, the
numbering of its writes, and which of them still wait for an answer, so that every write
can be resent safely and the nodes can forget the answers the client already holds."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from dref.wire.proto import state_command_pb2 as sc

__all__ = ["SessionTag", "WriteSession"]


@dataclass
class SessionTag:
    """One write's place in a session; `sent` counts the attempts that may have reached
    a node, `unprotected` is set once an attempt went where sessions are not carried."""

    owner: WriteSession = field(repr=False)
    session_id: int
    sequence: int
    sent: int = 0
    unprotected: bool = False

    def message(self) -> sc.ClientSession:
        """The ClientSession to send with the next attempt."""
        acknowledged = self.owner.acknowledged(self.session_id)
        return sc.ClientSession(
            id=self.session_id, sequence=self.sequence, acknowledged=acknowledged
        )


class WriteSession:
    """The session of one client, shared by all its threads. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.opening = threading.Lock()
        """Held while a session is being opened, so threads open one, not one each."""
        self.session_id = 0
        """0: none open (yet, or the last one expired)."""
        self._next = 1
        self._in_flight: set[int] = set()

    def start(self, session_id: int) -> None:
        """Number the following writes in the new session `session_id`."""
        with self._lock:
            self.session_id, self._next = session_id, 1
            self._in_flight.clear()

    def begin(self) -> SessionTag | None:
        """The next write's tag, or None while no session is open."""
        with self._lock:
            if not self.session_id:
                return None
            sequence, self._next = self._next, self._next + 1
            self._in_flight.add(sequence)
            return SessionTag(self, self.session_id, sequence)

    def done(self, tag: SessionTag) -> None:
        """`tag`'s write has its answer (or was given up): the nodes may forget it."""
        with self._lock:
            if tag.session_id == self.session_id:
                self._in_flight.discard(tag.sequence)

    def expire(self, session_id: int) -> None:
        """The nodes no longer know `session_id`: open another before the next write."""
        with self._lock:
            if self.session_id == session_id:
                self.session_id = 0

    def acknowledged(self, session_id: int) -> int:
        """Every sequence of `session_id` up to this one has its answer (0 for a session
        this client moved on from: it no longer tracks which answers it holds there)."""
        with self._lock:
            if session_id != self.session_id:
                return 0
            return min(self._in_flight) - 1 if self._in_flight else self._next - 1
