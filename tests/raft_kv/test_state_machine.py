"""KeyValueStateMachine: upstream command semantics, native commands, revisions, expiry
index, snapshots, events and determinism."""

from __future__ import annotations

import random

import pytest

from dref.backend import ChangeEvent, ChangeKind
from dref.errors import CodecError
from dref.storage.kv_state_machine import KeyValueStateMachine, StoredValue
from dref.wire.proto.dref_consensus_pb2 import ClusterSnapshot
from dref.wire.proto.state_command_pb2 import StateCommand


def recorder(sm: KeyValueStateMachine, name: str) -> list[ChangeEvent]:
    events: list[ChangeEvent] = []
    sm.listeners.add(name, events.append)
    return events


def test_set_overwrites_and_each_write_takes_the_next_revision(cmd):
    sm = KeyValueStateMachine()
    events = recorder(sm, "a")
    assert cmd.result(sm.apply(cmd.set_("a", b"1"))).revision == 1
    assert cmd.result(sm.apply(cmd.set_("b", b"x", 500))).revision == 2
    r = cmd.result(sm.apply(cmd.set_("a", b"2")))
    assert (r.applied, r.revision) == (True, 3)
    assert sm.entry("a") == StoredValue(b"2", None, 3)
    assert sm.entry("b") == StoredValue(b"x", 500, 2)
    assert events == [
        ChangeEvent("a", ChangeKind.SET, b"1", 1),
        ChangeEvent("a", ChangeKind.SET, b"2", 3),
    ]


def test_set_if_absent_creates_only_when_absent_even_if_expired(cmd):
    sm = KeyValueStateMachine()
    events = recorder(sm, "k")
    assert cmd.result(sm.apply(cmd.set_if_absent("k", b"1", 100))).applied
    refused = cmd.result(sm.apply(cmd.set_if_absent("k", b"2")))
    # presence counts, not liveness (spec 7.13): the result tells the proposer the expiry
    assert (refused.applied, refused.revision, refused.current_expire_at) == (False, 1, 100)
    assert sm.entry("k").value == b"1"
    assert [e.value for e in events] == [b"1"]
    assert sm.revision == 1


def test_delete_always_emits_and_takes_a_revision(cmd):
    sm = KeyValueStateMachine()
    events = recorder(sm, "gone")
    r = cmd.result(sm.apply(cmd.delete("gone")))
    assert (r.applied, r.revision) == (True, 1)
    sm.apply(cmd.set_("gone", b"v", 10))
    sm.apply(cmd.delete("gone"))
    assert sm.entry("gone") is None
    assert sm.next_expiry() is None
    assert [(e.kind, e.revision) for e in events] == [
        (ChangeKind.DELETE, 1),
        (ChangeKind.SET, 2),
        (ChangeKind.DELETE, 3),
    ]


def test_expire_rearms_without_revision_or_event(cmd):
    sm = KeyValueStateMachine()
    sm.apply(cmd.set_("k", b"v", 100))
    events = recorder(sm, "k")
    r = cmd.result(sm.apply(cmd.expire("k", 900)))
    assert (r.applied, r.revision) == (True, 1)
    assert sm.entry("k") == StoredValue(b"v", 900, 1)
    assert sm.due_names(500) == [] and sm.next_expiry() == 900
    assert not cmd.result(sm.apply(cmd.expire("absent", 900))).applied
    assert sm.entry("absent") is None
    assert events == [] and sm.revision == 1


def test_delete_if_expired_only_deletes_what_is_still_expired(cmd):
    sm = KeyValueStateMachine()
    sm.apply(cmd.set_("k", b"v", 100))
    events = recorder(sm, "k")
    assert not cmd.result(sm.apply(cmd.delete_if_expired("k", 99))).applied
    assert not cmd.result(sm.apply(cmd.delete_if_expired("nothing", 1000))).applied
    r = cmd.result(sm.apply(cmd.delete_if_expired("k", 100)))
    assert (r.applied, r.deleted, r.revision) == (True, 1, 2)
    assert events == [ChangeEvent("k", ChangeKind.DELETE, None, 2)]
    sm.apply(cmd.set_("forever", b"v"))
    assert not cmd.result(sm.apply(cmd.delete_if_expired("forever", 10**15))).applied


def test_batched_reap_deletes_each_due_name_once(cmd):
    sm = KeyValueStateMachine()
    for i in range(5):
        sm.apply(cmd.set_(f"n{i}", b"v", 100 + i))
    sm.apply(cmd.expire("n1", 10_000))  # renewed after the reaper looked: renewal wins
    due = sm.due_names(103)
    assert due == ["n0", "n2", "n3"]
    r = cmd.result(sm.apply(cmd.reap(["n0", "n1", "n2", "n3", "n0"], 103)))
    assert (r.applied, r.deleted) == (True, 3)
    assert sorted(n for n in ("n0", "n1", "n2", "n3", "n4") if sm.entry(n)) == ["n1", "n4"]
    assert sm.next_expiry() == 104


def test_compare_and_set(cmd):
    sm = KeyValueStateMachine()
    assert cmd.result(sm.apply(cmd.cas("k", 0, b"", b"a"))).revision == 1  # absent expected
    assert not cmd.result(sm.apply(cmd.cas("k", 0, b"", b"b"))).applied
    refused = cmd.result(sm.apply(cmd.cas("k", 1, b"wrong", b"b")))
    assert (refused.applied, refused.revision) == (False, 1)
    assert not cmd.result(sm.apply(cmd.cas("k", 7, b"a", b"b"))).applied
    r = cmd.result(sm.apply(cmd.cas("k", 1, b"a", b"b", expire_at=50)))
    assert (r.applied, r.revision) == (True, 2)
    assert sm.entry("k") == StoredValue(b"b", 50, 2)
    # an expired entry counts as absent when the command carries a later `now`
    assert not cmd.result(sm.apply(cmd.cas("k", 0, b"", b"c", now=49))).applied
    assert cmd.result(sm.apply(cmd.cas("k", 0, b"", b"c", now=50))).applied
    assert sm.entry("k") == StoredValue(b"c", None, 3)
    assert sm.next_expiry() is None


def test_compare_and_delete_and_expire_if(cmd):
    sm = KeyValueStateMachine()
    sm.apply(cmd.set_("k", b"v", 100))
    assert not cmd.result(sm.apply(cmd.cad("k", 0, b""))).applied
    assert not cmd.result(sm.apply(cmd.cad("k", 1, b"other"))).applied
    assert not cmd.result(sm.apply(cmd.expire_if("k", 1, b"v", 500, now=100))).applied
    assert cmd.result(sm.apply(cmd.expire_if("k", 1, b"v", 500, now=99))).applied
    assert sm.entry("k").expire_at == 500
    assert cmd.result(sm.apply(cmd.expire_if("k", 0, b"", 600))).applied  # unconditional
    assert not cmd.result(sm.apply(cmd.expire_if("nope", 0, b"", 600))).applied
    assert not cmd.result(sm.apply(cmd.cad("k", 1, b"v", now=600))).applied  # expired
    r = cmd.result(sm.apply(cmd.cad("k", 1, b"v", now=599)))
    assert (r.applied, r.revision) == (True, 2)
    assert sm.entry("k") is None and sm.next_expiry() is None


def test_noops_leave_no_trace(cmd):
    sm = KeyValueStateMachine()
    before = sm.snapshot()
    for command in (b"", cmd.encode(StateCommand(start_new_term={})), b"\xff\xff\xff"):
        r = cmd.result(sm.apply(command))
        assert not r.applied
    assert sm.snapshot() == before


def test_queries_hide_expired_entries_and_list_due_names(cmd):
    sm = KeyValueStateMachine()
    sm.apply(cmd.set_("a", b"", 100))
    sm.apply(cmd.set_("b", b"x", 200))
    sm.apply(cmd.set_("c", b"y"))
    got = cmd.query_result(sm.query(cmd.get_query("a", 99)))
    assert (got.found, got.value, got.revision, got.expire_at) == (True, b"", 1, 100)
    assert not cmd.query_result(sm.query(cmd.get_query("a", 100))).found
    assert not cmd.query_result(sm.query(cmd.get_query("missing", 1))).found
    assert not cmd.query_result(sm.query(cmd.get_query("c", 10**15))).HasField("expire_at")
    due = cmd.query_result(sm.query(cmd.due_query(150)))
    assert (list(due.due_names), due.next_expire_at) == (["a"], 200)
    assert list(cmd.query_result(sm.query(cmd.due_query(300, limit=1))).due_names) == ["a"]
    assert not cmd.query_result(sm.query(cmd.due_query(300))).HasField("next_expire_at")
    with pytest.raises(CodecError):
        sm.query(b"")
    with pytest.raises(CodecError):
        sm.query(b"\xff")


def test_snapshot_round_trip_keeps_revisions_and_signals_resync(cmd):
    sm = KeyValueStateMachine()
    sm.apply(cmd.set_("a", b"1", 100))
    sm.apply(cmd.set_("b", b"2"))
    sm.apply(cmd.delete("gone"))
    data = sm.snapshot()
    other = KeyValueStateMachine()
    events = recorder(other, "a")
    resyncs: list[None] = []
    other.add_resync_listener(lambda: resyncs.append(None))
    scheduled: list[int] = []
    other.add_expiry_listener(scheduled.append)
    other.restore(data)
    assert other.snapshot() == data
    assert other.entry("a") == StoredValue(b"1", 100, 1) and other.revision == 3
    assert other.due_names(100) == ["a"]
    assert events == [] and resyncs == [None] and scheduled == [100]
    assert cmd.result(other.apply(cmd.set_("c", b"3"))).revision == 4  # counter restored
    # upstream decoders read it as a ClusterSnapshot; an upstream snapshot restores too
    upstream = ClusterSnapshot.FromString(data)
    assert [e.key for e in upstream.entries] == ["a", "b"]
    del upstream.entries[0]
    other.restore(upstream.SerializeToString())
    assert other.entry("a") is None and other.entry("b").value == b"2"
    with pytest.raises(CodecError):
        other.restore(b"\xff")


def test_two_instances_fed_the_same_commands_end_identical(cmd):
    rng = random.Random(7)
    names = [f"k{i}" for i in range(8)]
    commands = []
    for _ in range(2000):
        name = rng.choice(names)
        rev = rng.randrange(0, 40)
        t = rng.randrange(0, 1000)
        commands.append(
            rng.choice(
                [
                    cmd.set_(name, bytes([rng.randrange(3)]), rng.choice([None, t])),
                    cmd.set_if_absent(name, b"n", t),
                    cmd.delete(name),
                    cmd.expire(name, t),
                    cmd.delete_if_expired(name, t),
                    cmd.reap(rng.sample(names, 3), t),
                    cmd.cas(name, rev, bytes([rng.randrange(3)]), b"c", now=t),
                    cmd.cad(name, rev, bytes([rng.randrange(3)]), now=t),
                    cmd.expire_if(name, rev, bytes([rng.randrange(3)]), t + 5, now=t),
                ]
            )
        )
    one, two = KeyValueStateMachine(), KeyValueStateMachine()
    results_one = [one.apply(c) for c in commands]
    results_two = two.apply_batch(commands)
    assert results_one == results_two
    assert one.snapshot() == two.snapshot()
    assert one.revision > 100
    three = KeyValueStateMachine()
    three.restore(one.snapshot())
    assert three.snapshot() == one.snapshot()
    for t in (0, 500, 2000):  # the expiry index agrees with the entries
        expected = sorted(
            n for n in names if (e := one.entry(n)) and e.expire_at is not None and e.expire_at <= t
        )
        assert sorted(one.due_names(t)) == expected
