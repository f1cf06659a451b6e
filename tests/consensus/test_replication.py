"""Log replication on the follower side: log matching, conflict truncation, stale leaders,
commit propagation and snapshot installation."""

from __future__ import annotations

from dref.actors.consensus.durable_state import DurableState
from dref.actors.consensus.effects import AppendToLog, Apply, RestoreSnapshot, Send, TruncateLog
from dref.actors.consensus.log_entry import LogEntry
from dref.actors.consensus.messages import (
    AppendEntries,
    AppendEntriesResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
)


def entries(*pairs: tuple[int, int]) -> tuple[LogEntry, ...]:
    return tuple(LogEntry(i, t, f"{i}@{t}".encode()) for i, t in pairs)


def append(term, prev_index, prev_term, batch, commit=0, leader="b") -> AppendEntries:
    return AppendEntries(
        sender=leader, term=term, prev_index=prev_index, prev_term=prev_term,
        entries=batch, leader_commit=commit,
    )


def test_stale_leader_is_rejected_with_our_term(h):
    follower = h.core("a", durable=DurableState(term=5))
    effects = follower.receive(append(3, 0, 0, entries((1, 3))))
    [reply] = h.messages(effects, AppendEntriesResponse)
    assert not reply.success and reply.term == 5
    assert follower.log.last_index == 0 and not h.of(effects, AppendToLog)


def test_mismatched_prev_entry_is_rejected_with_a_hint(h):
    follower = h.core("a", durable=DurableState(term=2, entries=entries((1, 1), (2, 1), (3, 2))))
    [reply] = h.messages(follower.receive(append(3, 3, 3, entries((4, 3)))), AppendEntriesResponse)
    assert not reply.success
    assert (reply.rejected_prev_index, reply.hint_index, reply.hint_term) == (3, 3, 2)
    [short] = h.messages(follower.receive(append(3, 9, 3, ())), AppendEntriesResponse)
    assert (short.hint_index, short.hint_term) == (4, 0)


def test_conflicting_suffix_is_truncated_and_replaced(h):
    follower = h.core("a", durable=DurableState(term=2, entries=entries((1, 1), (2, 2), (3, 2))))
    effects = follower.receive(append(3, 1, 1, entries((2, 3), (3, 3)), commit=2))
    assert h.of(effects, TruncateLog) == [TruncateLog(2)]
    assert h.of(effects, AppendToLog) == [AppendToLog(entries((2, 3), (3, 3)))]
    assert [follower.log.term_at(i) for i in (1, 2, 3)] == [1, 3, 3]
    [reply] = h.messages(effects, AppendEntriesResponse)
    assert reply.success and reply.match_index == 3
    assert follower.state.commit_index == 2
    assert [e.index for a in h.of(effects, Apply) for e in a.entries] == [1, 2]


def test_duplicate_or_stale_append_never_truncates(h):
    follower = h.core("a")
    follower.receive(append(1, 0, 0, entries((1, 1), (2, 1), (3, 1))))
    stale = follower.receive(append(1, 0, 0, entries((1, 1))))  # an old, shorter message
    assert not h.of(stale, TruncateLog) and not h.of(stale, AppendToLog)
    assert follower.log.last_index == 3
    [reply] = h.messages(stale, AppendEntriesResponse)
    assert reply.success and reply.match_index == 1  # only what this message proves


def test_commit_never_exceeds_what_the_message_proves(h):
    follower = h.core("a", durable=DurableState(term=1, entries=entries((1, 1), (2, 1), (3, 1))))
    follower.receive(append(2, 1, 1, (), commit=3))  # entries 2..3 unverified for term 2
    assert follower.state.commit_index == 1


def test_responses_wait_for_the_fsync(h):
    follower = h.core("a")
    effects = follower.receive(append(1, 0, 0, entries((1, 1))))
    [send] = h.of(effects, Send)
    assert send.after_persist
    assert effects.index(send) > effects.index(AppendToLog(entries((1, 1))))


def test_follower_behind_installs_snapshot_sent_in_chunks(h):
    follower = h.core("a", durable=DurableState(term=1, entries=entries((1, 1))))
    first = InstallSnapshot(
        sender="b", term=2, last_index=10, last_term=2, voters=frozenset("abc"),
        learners=frozenset(), offset=0, data=b"hello ", done=False,
    )
    [ack] = h.messages(follower.receive(first), InstallSnapshotResponse)
    assert (ack.match_index, ack.snapshot_index, ack.chunk_offset, ack.next_offset) == (0, 10, 0, 6)
    last = InstallSnapshot(
        sender="b", term=2, last_index=10, last_term=2, voters=frozenset("abc"),
        learners=frozenset(), offset=6, data=b"world", done=True,
    )
    effects = follower.receive(last)
    [restore] = h.of(effects, RestoreSnapshot)
    assert (restore.data, restore.index, restore.term) == (b"hello world", 10, 2)
    assert follower.log.last_index == 10 and follower.state.commit_index == 10
    [reply] = h.messages(effects, InstallSnapshotResponse)
    assert reply.match_index == 10
    follower.receive(append(2, 10, 2, entries((11, 2)), commit=11))
    assert follower.log.last_index == 11


def test_out_of_sequence_snapshot_chunk_tells_the_leader_where_to_resume(h):
    follower = h.core("a")
    chunk = InstallSnapshot(
        sender="b", term=1, last_index=5, last_term=1, voters=frozenset("abc"),
        learners=frozenset(), offset=4, data=b"tail", done=True,
    )
    effects = follower.receive(chunk)
    assert not h.of(effects, RestoreSnapshot)
    [ack] = h.messages(effects, InstallSnapshotResponse)
    assert (ack.match_index, ack.chunk_offset, ack.next_offset) == (0, 4, 0)
    assert follower.log.snapshot_index == 0
