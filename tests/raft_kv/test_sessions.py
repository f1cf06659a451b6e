"""Client sessions: a write resent in its session is applied once, in the state machine
(deterministic) and through real nodes with a SIGKILLed leader."""

from __future__ import annotations

import threading

import dref
from dref.errors import DRefError
from dref.storage.client_sessions import MAX_SESSIONS, SESSION_TIMEOUT_MS
from dref.storage.kv_state_machine import KeyValueStateMachine
from dref.wire.proto import state_command_pb2 as sc
from dref.wire.proto.dref_native_pb2 import CommandResult


def in_session(command: bytes, session_id: int, sequence: int, acknowledged: int = 0) -> bytes:
    parsed = sc.StateCommand.FromString(command)
    parsed.session.CopyFrom(
        sc.ClientSession(id=session_id, sequence=sequence, acknowledged=acknowledged, now=1_000)
    )
    return parsed.SerializeToString(deterministic=True)


def open_session(sm: KeyValueStateMachine, now: int = 1_000) -> int:
    command = sc.StateCommand(open_session=sc.OpenSessionCommand(now=now))
    return int(CommandResult.FromString(sm.apply(command.SerializeToString())).session_id)


def test_a_resent_write_is_answered_from_memory_not_applied_again(cmd):
    sm = KeyValueStateMachine()
    events: list[object] = []
    sm.listeners.add("k", events.append)
    session = open_session(sm)
    first = cmd.result(sm.apply(in_session(cmd.set_("k", b"1"), session, 1)))
    again = cmd.result(sm.apply(in_session(cmd.set_("k", b"1"), session, 1)))
    assert again == first and first.applied
    assert sm.revision == first.revision and len(events) == 1  # one write, one event
    # a compare-and-set resent after it applied still reports success (not "changed since")
    cas = cmd.cas("k", first.revision, b"1", b"2")
    applied = cmd.result(sm.apply(in_session(cas, session, 2)))
    assert applied.applied
    assert cmd.result(sm.apply(in_session(cas, session, 2))) == applied
    assert sm.entry("k").value == b"2"  # type: ignore[union-attr]


def test_acknowledged_answers_are_forgotten_and_unknown_sessions_refused(cmd):
    sm = KeyValueStateMachine()
    session = open_session(sm)
    sm.apply(in_session(cmd.set_("k", b"1"), session, 1))
    sm.apply(in_session(cmd.set_("k", b"2"), session, 2, acknowledged=1))
    forgotten = cmd.result(sm.apply(in_session(cmd.set_("k", b"1"), session, 1, acknowledged=1)))
    assert forgotten.session_expired and not forgotten.applied
    assert sm.entry("k").value == b"2"  # type: ignore[union-attr]
    unknown = cmd.result(sm.apply(in_session(cmd.set_("k", b"3"), session + 7, 1)))
    assert unknown.session_expired and not unknown.applied
    assert sm.entry("k").value == b"2"  # type: ignore[union-attr]


def test_idle_sessions_expire_by_the_commands_clock_and_the_count_is_capped(cmd):
    sm = KeyValueStateMachine()
    old = open_session(sm, now=0)
    fresh = open_session(sm, now=SESSION_TIMEOUT_MS)
    open_session(sm, now=SESSION_TIMEOUT_MS + 1)  # `old` has been idle too long: forgotten
    assert cmd.result(sm.apply(in_session(cmd.set_("k", b"x"), old, 1))).session_expired
    assert cmd.result(sm.apply(in_session(cmd.set_("k", b"x"), fresh, 1))).applied
    for i in range(MAX_SESSIONS):
        open_session(sm, now=SESSION_TIMEOUT_MS + 2 + i)
    assert len(sm._sessions) == MAX_SESSIONS  # the least recently active went first


def test_sessions_and_their_answers_survive_a_snapshot(cmd):
    sm = KeyValueStateMachine()
    session = open_session(sm)
    first = cmd.result(sm.apply(in_session(cmd.set_("k", b"1"), session, 1)))
    restored = KeyValueStateMachine()
    restored.restore(sm.snapshot())
    assert cmd.result(restored.apply(in_session(cmd.set_("k", b"1"), session, 1))) == first
    assert restored.revision == first.revision
    assert open_session(restored) == session + 1
    assert restored.snapshot() != KeyValueStateMachine().snapshot()


def test_resending_a_pipelined_write_in_its_session_applies_it_once(make_cluster):
    from dref.raft.client import Client
    from dref.wire.proto import dref_native_pb2 as native

    cluster = make_cluster(1, heartbeat_ms=50, election_ms=1000)
    cluster.leader()
    with Client(list(cluster.addresses.values()), timeout=20) as client:
        client.set("n", b"\x00")  # opens the client's session
        tag = client._session.begin()
        assert tag is not None
        call = native.PipelineCall(
            increment=sc.IncrementCommand(name="n", delta=1), session=tag.message()
        )
        node = client._target()
        answers = [node.pipeline.call(call, 10) for _ in range(3)]
        assert len({(a.applied, a.number, a.revision) for a in answers}) == 1
        assert answers[0].applied and answers[0].number == 1
        assert client.get("n").value == b"\x01"  # type: ignore[union-attr]


def test_increments_through_a_killed_leader_are_each_applied_once(make_cluster):
    cluster = make_cluster(3, heartbeat_ms=50, election_ms=1000)
    cluster.leader()
    with dref.raft_client(list(cluster.addresses.values()), timeout=20) as ctx:
        counter = ctx.ref("applied-once", 0)
        returned: list[int] = []
        failed: list[Exception] = []
        lock = threading.Lock()
        halfway = threading.Event()

        def work() -> None:
            for _ in range(40):  # bounded: 40 increments per thread
                try:
                    value = counter.increment(1)
                except DRefError as exc:
                    with lock:
                        failed.append(exc)
                    continue
                with lock:
                    returned.append(value)
                    if len(returned) == 60:
                        halfway.set()

        threads = [threading.Thread(target=work, name=f"incr-{i}") for i in range(4)]
        for thread in threads:
            thread.start()
        assert halfway.wait(60)
        cluster.processes[cluster.leader()].kill()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads)
        final = counter.get()
        assert len(set(returned)) == len(returned), "two increments returned the same total"
        # every acknowledged increment applied once; a failed one at most once
        assert len(returned) <= final <= len(returned) + len(failed)
        assert max(returned) <= final
        assert not failed, f"sessions should retry through a leader change: {failed[:3]}"


def test_a_client_acknowledges_only_the_answers_it_holds_in_its_current_session():
    from dref.raft.write_session import WriteSession

    session = WriteSession()
    assert session.begin() is None  # no session open yet
    session.start(7)
    first, second = session.begin(), session.begin()
    assert first is not None and second is not None
    assert (first.sequence, second.sequence) == (1, 2)
    assert second.message().acknowledged == 0  # 1 is still unanswered
    session.done(first)
    assert second.message().acknowledged == 1
    session.done(second)
    third = session.begin()
    assert third is not None and third.message().acknowledged == 2
    session.start(8)  # the nodes forgot 7: a write still resent there acknowledges nothing
    assert third.message() == sc.ClientSession(id=7, sequence=3, acknowledged=0)
