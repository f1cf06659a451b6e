"""DRef's key/value store as a replicated Raft state machine, with upstream command semantics.

Commands are `StateCommand` protobufs (spec 3.1, 4.5) plus native members 100+ (see
`state_command.proto`). Results (`CommandResult`) and queries (`KeyValueQuery` ->
`KeyValueQueryResult`) are defined in `dref_native.proto`; that file is the one place their
encoding is documented.

Revisions: one counter, kept in the state and in snapshots, takes its next value on every
write that changes an entry (set, created set-if-absent, delete - even of an absent name -,
each reaped name, applied compare-and-set / compare-and-delete / increment). Re-arming an
expiry keeps the entry's revision. Every node applies the same commands in the same order,
so every node hands out the same revisions; they only grow, so a lock's acquiring revision
is a fencing token.

Expiry is never decided by a clock here: `expire_at` and `now` come inside the commands
(the proposer's wall clock, Unix ms), so apply stays deterministic. Only `query` compares
against a `now` given in the request.

Change events (`dref.backend.ChangeEvent`) go to `listeners` as commands apply, after the
state lock is released: set / created set-if-absent / applied compare-and-set or increment
-> SET;
delete (always) / deleting delete-if-expired / applied compare-and-delete -> DELETE;
expiry re-arming -> nothing. `restore` emits no events (like upstream, spec 1.5) but calls
every resync listener, telling subscribers that changes may have been missed and they
should re-read.

Client sessions (`ClientSessions`): a command carrying a session is applied once; a resent
one is answered from the kept answer, with no event.

History: the last `history_revisions` change events are kept in memory and in snapshots
(native fields upstream skips), and answered by the `history` query, for resumable change
streams, so a restart or a snapshot install keeps what a stream may need to resume. A
snapshot without them (upstream's) starts the history empty at its revision: older
requests are told the oldest revision kept. A kept SET whose value the store still holds
(same revision) goes into snapshots without its value, and is restored holding the entry's
value object: a value is written and held once.

Snapshots stream (`snapshot_to` / `restore_from`, the engine's `StreamingStateMachine`):
entry by entry to and from a file, so a large store is never copied whole in memory.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import threading
from collections.abc import Callable
from typing import IO

from google.protobuf.message import DecodeError

from dref.contracts.changes import (
    DEFAULT_HISTORY_REVISIONS,
    HISTORY_PAGE,
    ChangeEvent,
    ChangeHistory,
    ChangeKind,
    ListenerRegistry,
)
from dref.errors import CodecError, CompactedError
from dref.storage.client_sessions import ClientSessions
from dref.storage.expiry_index import ExpiryIndex
from dref.wire.encoded_int import add_to_encoded
from dref.wire.proto import state_command_pb2 as sc
from dref.wire.proto.dref_consensus_pb2 import ClusterSnapshot
from dref.wire.proto.dref_native_pb2 import (
    CommandResult,
    HistoryQuery,
    KeyValueQuery,
    KeyValueQueryResult,
    WatchEvent,
)
from dref.wire.proto.raft_pb2 import KeyValueSnapshot, KVEntry
from dref.wire.proto_stream import LENGTH_DELIMITED, encode_field, iter_fields

__all__ = ["KeyValueStateMachine", "StoredValue", "watch_event"]

_log = logging.getLogger("dref.kv")
_ENTRIES = KeyValueSnapshot.DESCRIPTOR.fields_by_name["entries"].number
_HISTORY = KeyValueSnapshot.DESCRIPTOR.fields_by_name["history"].number


@dataclasses.dataclass(frozen=True, slots=True)
class StoredValue:
    """One stored value: its bytes, expiry (Unix ms, None = never) and revision."""

    value: bytes
    expire_at: int | None
    revision: int

    def live_at(self, now: int) -> bool:
        """True unless it expired at or before `now` (0 = ignore expiry)."""
        return now == 0 or self.expire_at is None or self.expire_at > now


class _Callbacks:
    """A thread-safe list of no-argument-or-one-argument callbacks, each removable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Callable[..., None]] = []

    def add(self, callback: Callable[..., None]) -> Callable[[], None]:
        with self._lock:
            self._items.append(callback)

        def cancel() -> None:
            with self._lock:
                if callback in self._items:
                    self._items.remove(callback)

        return cancel

    def call(self, *args: object) -> None:
        with self._lock:
            items = list(self._items)
        for callback in items:
            try:
                callback(*args)
            except Exception:  # a failing hook must not stop the state machine
                _log.exception("key/value state machine callback failed")


class KeyValueStateMachine:
    """The replicated key/value store (implements `dref.raft.StateMachine`); thread-safe."""

    def __init__(self, *, history_revisions: int = DEFAULT_HISTORY_REVISIONS) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, StoredValue] = {}
        self._expiries = ExpiryIndex()
        self._revision = 0
        self._history = ChangeHistory(history_revisions)
        self._sessions = ClientSessions()
        self.listeners = ListenerRegistry()
        """Change events per name, published on the applying thread in apply order."""
        self._resync = _Callbacks()
        self._expiry_scheduled = _Callbacks()

    # -- observers ----------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The last revision handed out (0 before the first write)."""
        return self._revision

    def add_resync_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback()` after every `restore`; returns its cancel function."""
        return self._resync.add(callback)

    def add_expiry_listener(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Call `callback(expire_at)` whenever an entry gets an expiry (for the TTL reaper)."""
        return self._expiry_scheduled.add(callback)

    def entry(self, name: str) -> StoredValue | None:
        """The stored entry of `name`, expired or not (a local, unreplicated read)."""
        with self._lock:
            return self._entries.get(name)

    def next_expiry(self) -> int | None:
        """The earliest expire_at of any entry (Unix ms), or None."""
        with self._lock:
            return self._expiries.earliest()

    def due_names(self, now: int, limit: int = 0) -> list[str]:
        """Names whose expire_at <= now, earliest first, at most `limit` (0 = all)."""
        with self._lock:
            return self._expiries.due(now, limit)

    # -- StateMachine -------------------------------------------------------------------

    def apply(self, command: bytes) -> bytes:
        """Apply one encoded StateCommand; returns an encoded CommandResult."""
        try:
            parsed = sc.StateCommand.FromString(command)
        except DecodeError as exc:  # deterministic on every node: a no-op, never a crash
            _log.error("undecodable StateCommand of %d bytes ignored: %s", len(command), exc)
            return CommandResult().SerializeToString()
        events: list[ChangeEvent] = []
        scheduled: list[int] = []
        session = parsed.session if parsed.HasField("session") else None
        with self._lock:
            if session is not None:
                kept = self._sessions.kept_answer(session)
                if kept is not None:
                    return kept  # applied before (or unknowable): never twice
            answer = self._apply(parsed, events, scheduled).SerializeToString()
            if session is not None:
                self._sessions.remember(session, answer)
            for event in events:
                self._history.record(event)
        for event in events:
            self.listeners.publish(event)
        for expire_at in scheduled:
            self._expiry_scheduled.call(expire_at)
        return answer

    def _stores(self, change: ChangeEvent) -> bool:
        """Whether `change` is the SET whose value the store still holds (caller locks)."""
        stored = self._entries.get(change.name)
        return stored is not None and stored.revision == change.revision

    def apply_batch(self, commands: list[bytes]) -> list[bytes]:
        """Apply `commands` in order; one result per command."""
        return [self.apply(command) for command in commands]

    def snapshot_to(self, out: IO[bytes]) -> None:
        """Write the whole store to `out` as a KeyValueSnapshot (ClusterSnapshot plus native
        fields), one entry at a time, so a large store is never copied whole in memory;
        entries sorted by name, so equal states give equal bytes (those of `snapshot`)."""
        with self._lock:
            for name in sorted(self._entries):
                stored = self._entries[name]
                entry = KVEntry(key=name, value=stored.value, revision=stored.revision)
                if stored.expire_at is not None:
                    entry.expireAt = stored.expire_at
                body = entry.SerializeToString(deterministic=True)
                out.write(encode_field(_ENTRIES, LENGTH_DELIMITED, body))
            rest = KeyValueSnapshot(revision=self._revision)
            self._sessions.save(rest)
            rest.history_floor = self._history.floor
            for change in self._history.kept():
                event = rest.history.add(kind=WatchEvent.SET, revision=change.revision)
                event.name = change.name
                if change.kind is ChangeKind.DELETE:
                    event.kind = WatchEvent.DELETE
                elif not self._stores(change):  # else the entry holds the value (see `_shared`)
                    event.value = change.value or b""
        # entries is field 1, so a deterministic serialization puts every other field after it
        out.write(rest.SerializeToString(deterministic=True))

    def snapshot(self) -> bytes:
        """The whole store as KeyValueSnapshot bytes (see `snapshot_to`)."""
        out = io.BytesIO()
        self.snapshot_to(out)
        return out.getvalue()

    def cluster_snapshot(self) -> ClusterSnapshot:
        """The entries alone as upstream's ClusterSnapshot (no native fields, `last_seq`
        unset), which is what interop mode sends and saves."""
        with self._lock:
            snap = ClusterSnapshot()
            for name in sorted(self._entries):
                stored = self._entries[name]
                entry = snap.entries.add(key=name, value=stored.value)
                if stored.expire_at is not None:
                    entry.expireAt = stored.expire_at
        return snap

    def restore(self, data: bytes) -> None:
        """Replace the store with a snapshot held in memory (see `restore_from`)."""
        self.restore_from(io.BytesIO(data))

    def restore_from(self, source: IO[bytes]) -> None:
        """Replace the store with a snapshot (ours, or an upstream ClusterSnapshot) read from
        `source` entry by entry. The old store goes first, so a large one is never held
        twice; a snapshot that does not parse raises CodecError and leaves the store empty
        (the node's durable state is then that snapshot: it cannot go on).

        Emits no change events; calls the resync listeners instead.
        """
        with self._lock:
            self._entries = entries = {}
            self._expiries.clear()
            self._history.reset(0)
            self._revision = 0
            history: list[ChangeEvent] = []
            rest = bytearray()  # the small fields: revision, sessions, history floor
            try:
                for number, wire_type, value in iter_fields(source):
                    if number not in (_ENTRIES, _HISTORY):
                        assert value is not None
                        rest += encode_field(number, wire_type, value)
                    elif not isinstance(value, bytes):
                        raise CodecError(f"snapshot field {number} with wire type {wire_type}")
                    elif number == _ENTRIES:
                        entry = KVEntry.FromString(value)
                        expire_at = entry.expireAt if entry.HasField("expireAt") else None
                        entries[entry.key] = StoredValue(entry.value, expire_at, entry.revision)
                    else:
                        history.append(_shared(_change(WatchEvent.FromString(value)), entries))
                snap = KeyValueSnapshot.FromString(bytes(rest))
            except (DecodeError, CodecError) as exc:
                entries.clear()
                self._sessions.load(KeyValueSnapshot())
                raise CodecError(
                    f"state-machine snapshot is not a ClusterSnapshot: {exc}"
                ) from None
            for name, stored in entries.items():
                if stored.expire_at is not None:
                    self._expiries.add(stored.expire_at, name)
            top = max((stored.revision for stored in entries.values()), default=0)
            self._revision = top = max(top, snap.revision)
            if snap.HasField("history_floor"):
                self._history.load(snap.history_floor, history)
            else:  # upstream's, or from before snapshots carried it
                self._history.reset(top)
            self._sessions.load(snap)
            earliest = self._expiries.earliest()
        self._resync.call()
        if earliest is not None:
            self._expiry_scheduled.call(earliest)

    def query(self, request: bytes) -> bytes:
        """Answer an encoded KeyValueQuery with an encoded KeyValueQueryResult."""
        try:
            parsed = KeyValueQuery.FromString(request)
        except DecodeError as exc:
            raise CodecError(f"not a KeyValueQuery: {exc}") from None
        result = KeyValueQueryResult()
        question = parsed.WhichOneof("question")
        with self._lock:
            if question == "get":
                stored = self._entries.get(parsed.get.name)
                if stored is not None and stored.live_at(parsed.get.now):
                    result.found = True
                    result.value = stored.value
                    result.revision = stored.revision
                    if stored.expire_at is not None:
                        result.expire_at = stored.expire_at
            elif question == "due":
                result.due_names.extend(self._expiries.due(parsed.due.now, parsed.due.limit))
                later = self._expiries.next_after(parsed.due.now)
                if later is not None:
                    result.next_expire_at = later
            elif question == "history":
                self._answer_history(parsed.history, result)
            else:
                raise CodecError("KeyValueQuery names no question")
        return result.SerializeToString()

    def _answer_history(self, question: HistoryQuery, result: KeyValueQueryResult) -> None:
        try:
            limit = question.limit or HISTORY_PAGE
            page = self._history.since(question.name, question.after, limit)
        except CompactedError as exc:
            result.oldest_available = exc.oldest_available
            return
        result.history.extend(watch_event(event) for event in page)

    # -- the commands (called with the lock held) ----------------------------------------

    def _apply(
        self, command: sc.StateCommand, events: list[ChangeEvent], scheduled: list[int]
    ) -> CommandResult:
        op = command.WhichOneof("op")
        if op == "set_element":
            c = command.set_element
            return self._store(c.name, c.value, _expiry(c), events, scheduled)
        if op == "set_element_if_not_exist":
            c2 = command.set_element_if_not_exist
            if c2.name in self._entries:
                return self._refused(c2.name)
            return self._store(c2.name, c2.value, _expiry(c2), events, scheduled)
        if op == "delete_element":
            return self._remove(command.delete_element.name, events)
        if op == "expire_element":
            c4 = command.expire_element
            if c4.name not in self._entries:
                return CommandResult()
            return self._rearm(c4.name, c4.expire_at, scheduled)
        if op == "delete_if_expired":
            c5 = command.delete_if_expired
            return self._reap([c5.name], c5.now, events)
        if op == "delete_if_expired_batch":
            c6 = command.delete_if_expired_batch
            return self._reap(list(c6.names), c6.now, events)
        if op == "compare_and_set":
            c7 = command.compare_and_set
            if not self._matches(c7.name, c7.expected_revision, c7.expected_value, c7.now):
                return self._refused(c7.name)
            return self._store(c7.name, c7.value, _expiry(c7), events, scheduled)
        if op == "compare_and_delete":
            c8 = command.compare_and_delete
            if c8.expected_revision == 0 or not self._matches(
                c8.name, c8.expected_revision, c8.expected_value, c8.now
            ):
                return self._refused(c8.name)
            return self._remove(c8.name, events)
        if op == "expire_if":
            c9 = command.expire_if
            if c9.expected_revision == 0:
                stored = self._entries.get(c9.name)
                ok = stored is not None and stored.live_at(c9.now)
            else:
                ok = self._matches(c9.name, c9.expected_revision, c9.expected_value, c9.now)
            if not ok:
                return self._refused(c9.name)
            return self._rearm(c9.name, c9.expire_at, scheduled)
        if op == "increment":
            return self._increment(command.increment, events)
        if op == "open_session":
            session_id = self._sessions.open(command.open_session.now)
            return CommandResult(applied=True, session_id=session_id)
        return CommandResult()  # empty, start_new_term, or a member this version lacks

    def _increment(self, command: sc.IncrementCommand, events: list[ChangeEvent]) -> CommandResult:
        """Add to a live integer entry; the new value loses any expiry (as `modify` does)."""
        stored = self._entries.get(command.name)
        if stored is None or not stored.live_at(command.now):
            return CommandResult(applied=False)
        fmt = "json" if command.format == sc.IncrementCommand.JSON else "msgpack"
        try:
            number, value = add_to_encoded(command.name, stored.value, command.delta, fmt)
        except CodecError as exc:
            refused = self._refused(command.name)
            refused.refused = str(exc)
            return refused
        result = self._store(command.name, value, None, events, [])
        result.number = number
        return result

    def _matches(self, name: str, revision: int, value: bytes, now: int) -> bool:
        stored = self._entries.get(name)
        if stored is not None and not stored.live_at(now):
            stored = None
        if revision == 0:
            return stored is None
        return stored is not None and stored.revision == revision and stored.value == value

    def _refused(self, name: str) -> CommandResult:
        result = CommandResult(applied=False)
        stored = self._entries.get(name)
        if stored is not None:
            result.revision = stored.revision
            if stored.expire_at is not None:
                result.current_expire_at = stored.expire_at
        return result

    def _store(
        self,
        name: str,
        value: bytes,
        expire_at: int | None,
        events: list[ChangeEvent],
        scheduled: list[int],
    ) -> CommandResult:
        self._forget_expiry(name)
        self._revision += 1
        self._entries[name] = StoredValue(value, expire_at, self._revision)
        if expire_at is not None:
            self._expiries.add(expire_at, name)
            scheduled.append(expire_at)
        events.append(ChangeEvent(name, ChangeKind.SET, value, self._revision))
        return CommandResult(applied=True, revision=self._revision)

    def _remove(self, name: str, events: list[ChangeEvent]) -> CommandResult:
        self._forget_expiry(name)
        self._entries.pop(name, None)
        self._revision += 1
        events.append(ChangeEvent(name, ChangeKind.DELETE, None, self._revision))
        return CommandResult(applied=True, revision=self._revision)

    def _rearm(self, name: str, expire_at: int, scheduled: list[int]) -> CommandResult:
        self._forget_expiry(name)
        stored = self._entries[name]
        self._entries[name] = StoredValue(stored.value, expire_at, stored.revision)
        self._expiries.add(expire_at, name)
        scheduled.append(expire_at)
        return CommandResult(applied=True, revision=stored.revision)

    def _reap(self, names: list[str], now: int, events: list[ChangeEvent]) -> CommandResult:
        deleted = 0
        for name in names:
            stored = self._entries.get(name)
            if stored is None or stored.expire_at is None or stored.expire_at > now:
                continue  # renewed (or deleted) since the reaper saw it: the renewal wins
            self._remove(name, events)
            deleted += 1
        return CommandResult(applied=deleted > 0, revision=self._revision, deleted=deleted)

    def _forget_expiry(self, name: str) -> None:
        stored = self._entries.get(name)
        if stored is not None and stored.expire_at is not None:
            self._expiries.discard(stored.expire_at, name)


def watch_event(event: ChangeEvent) -> WatchEvent:
    """`event` as the SET or DELETE WatchEvent that Watch streams and history answers send."""
    kind = WatchEvent.SET if event.kind is ChangeKind.SET else WatchEvent.DELETE
    return WatchEvent(kind=kind, value=event.value or b"", revision=event.revision, name=event.name)


def _change(event: WatchEvent) -> ChangeEvent:
    """A history change as a snapshot carries it (the inverse of `watch_event`)."""
    if event.kind == WatchEvent.SET:
        return ChangeEvent(event.name, ChangeKind.SET, event.value, event.revision)
    return ChangeEvent(event.name, ChangeKind.DELETE, None, event.revision)


def _shared(change: ChangeEvent, entries: dict[str, StoredValue]) -> ChangeEvent:
    """A history change as restored: the SET that stored an entry still there (same
    revision) takes the entry's value object, which snapshots leave out of the history
    (written once, held once)."""
    stored = entries.get(change.name)
    if change.kind is not ChangeKind.SET or stored is None or stored.revision != change.revision:
        return change
    return dataclasses.replace(change, value=stored.value)


def _expiry(
    command: sc.SetElementCommand | sc.SetElementIfNotExistCommand | sc.CompareAndSetCommand,
) -> int | None:
    return command.expire_at if command.HasField("expire_at") else None
