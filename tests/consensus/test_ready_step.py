"""The Ready step with reply slots, as the node runtime drives it: where each answer goes,
and that nothing marked after-persist leaves before its storage batch is durable."""

from __future__ import annotations

from dref.actors.consensus.config import ReadPolicy
from dref.actors.consensus.effects import NotLeader
from dref.actors.consensus.log_entry import LogEntry
from dref.actors.consensus.messages import (
    AppendEntries,
    AppendEntriesResponse,
    ReadIndexRequest,
    RequestVote,
    RequestVoteResponse,
)
from dref.actors.node_messages import ApplyEntries
from dref.actors.ready import Committed, ReadyStep, coalesce


def follower_step(h) -> ReadyStep[str, str]:
    return ReadyStep(h.core("a"), reply_slots=True)


def append(term: int, *indexes: int, prev: int = 0) -> AppendEntries:
    entries = tuple(LogEntry(i, term, b"x") for i in indexes)
    prev_term = term if prev else 0
    return AppendEntries(
        sender="b", term=term, prev_index=prev, prev_term=prev_term, entries=entries,
        leader_commit=0,
    )


def test_an_ack_waits_for_its_own_batch_and_the_writer_releases_it(h) -> None:
    step = follower_step(h)
    ready = step.receive(append(2, 1), "slot-b")
    assert ready.persist and ready.batch == 1
    assert ready.answers == []  # not before the entry is durable
    ((slot, answer),) = ready.answers_on_persist
    assert slot == "slot-b" and isinstance(answer, AppendEntriesResponse) and answer.success


def test_an_answer_with_nothing_new_to_write_is_held_until_the_earlier_batch_is_durable(
    h,
) -> None:
    step = follower_step(h)
    step.receive(append(2, 1), "first")
    again = step.receive(append(2, 1), "again")  # the same entry: nothing new to persist
    assert again.batch == 0 and again.answers == [] and again.answers_on_persist == []
    released = step.durable(1, 1, 2).answers
    assert [slot for slot, _ in released] == ["again"]
    answer = released[0][1]
    assert isinstance(answer, AppendEntriesResponse) and answer.success


def test_a_refusal_naming_an_unsynced_term_waits_for_that_term(h) -> None:
    step = follower_step(h)
    step.receive(append(2, 1), "first")  # term 2 is in batch 1, not yet durable
    stale = RequestVote(sender="c", term=1, last_log_index=0, last_log_term=0)
    assert step.receive(stale, "slot").answers == []
    ((slot, answer),) = step.durable(1, 1, 2).answers
    assert slot == "slot" and isinstance(answer, RequestVoteResponse)
    assert answer.term == 2 and not answer.granted


def test_read_index_on_a_follower_releases_the_slot_without_an_answer(h) -> None:
    step = follower_step(h)
    ready = step.receive(ReadIndexRequest(sender="b", term=1, context=5), "read-slot")
    assert ready.answers == [("read-slot", None)]


def test_callers_get_outcomes_and_commits_in_order(h) -> None:
    core = h.core("a")
    h.elect(core)
    h.ack(core, "b", 1)
    h.ack(core, "c", 1)  # the no-op is in: nothing in flight holds the next batch back
    step: ReadyStep[str, str] = ReadyStep(core, reply_slots=True)
    ready = step.callers([(b"x", "first"), (b"y", "second")], [], 2000)
    committed = [w for w in ready.state_machine if isinstance(w, Committed)]
    assert [c.caller for c in committed] == ["first", "second"]
    assert committed[1].index == committed[0].index + 1
    assert ready.persist  # appended locally
    assert set(ready.messages) == {"b", "c"}
    for messages in ready.messages.values():  # one turn's appends joined into one message
        (message,) = messages
        assert isinstance(message, AppendEntries) and len(message.entries) == 2

    follower = follower_step(h)
    refused = follower.callers([(b"z", "third")], [("reader", ReadPolicy.READ_INDEX)], 0)
    assert [caller for caller, _ in refused.outcomes] == ["third", "reader"]
    assert all(isinstance(outcome, NotLeader) for _, outcome in refused.outcomes)


def test_committed_entries_reach_the_state_machine(h) -> None:
    core = h.core("a")
    h.elect(core)
    h.ack(core, "b", 1)
    h.ack(core, "c", 1)
    step: ReadyStep[str, str] = ReadyStep(core, reply_slots=True)
    ready = step.callers([(b"x", "caller")], [], 2000)
    ((entry,),) = [a.entries for a in ready.persist if hasattr(a, "entries")]
    step.durable(ready.batch, entry.index, entry.term)
    acked = step.receive(
        AppendEntriesResponse(sender="b", term=core.state.term, success=True, match_index=2)
    )
    applied = [w for w in acked.state_machine if isinstance(w, ApplyEntries)]
    assert applied and applied[-1].entries[-1].index == entry.index


def test_coalesce_joins_only_continuing_appends() -> None:
    joined = coalesce([append(1, 1), append(1, 2, 3, prev=1), append(1, 6, prev=5)])
    assert [len(m.entries) for m in joined] == [3, 1]
    assert [e.index for e in joined[0].entries] == [1, 2, 3]
