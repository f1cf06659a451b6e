"""The fault workloads' checkers reject the anomalies they exist to find (a checker that
passes everything would make every fault test pass)."""

from __future__ import annotations

import pytest

from dref.backend import ChangeEvent, ChangeKind
from dref.wire.msgpack_codec import MsgPackCodec
from testkit.workloads import (
    FencedStore,
    Grant,
    LockWorkload,
    Read,
    expiry_times,
    reads_after_expiry,
)

INTS = MsgPackCodec.for_value(0)


def _locks(*grants: Grant, counter: int | None = None) -> LockWorkload:
    workload = LockWorkload("l")
    workload.grants.extend(grants)
    for grant in grants:
        for _ in range(grant.increments):
            workload.store.write(grant.token, workload.store.counter + 1)
    if counter is not None:
        workload.store.counter = counter
    return workload


def test_lock_checker_accepts_ordered_unique_tokens():
    assert "2 grants" in _locks(Grant(0, 0.0, 1.0, 5, 1), Grant(1, 1.5, 2.0, 9, 1)).check()


def test_lock_checker_rejects_a_shared_token():
    with pytest.raises(AssertionError, match="share a fencing token"):
        _locks(Grant(0, 0.0, 1.0, 5, 1), Grant(1, 0.5, 2.0, 5, 1)).check()


def test_lock_checker_rejects_a_token_older_than_an_earlier_grant():
    with pytest.raises(AssertionError, match="older token"):
        _locks(Grant(0, 0.0, 1.0, 9, 1), Grant(1, 1.5, 2.0, 5, 0)).check()


def test_lock_checker_rejects_a_lost_increment():
    with pytest.raises(AssertionError, match="interleaved"):
        _locks(Grant(0, 0.0, 1.0, 5, 1), Grant(1, 1.5, 2.0, 9, 1), counter=1).check()


def test_fenced_store_refuses_stale_tokens_on_reads_and_writes():
    store = FencedStore()
    assert store.read(7) == 0
    assert store.read(6) is None and not store.write(6, 1)
    assert store.write(7, 1) and store.counter == 1 and store.accepted == [7]


def _set(revision: int, value: int) -> ChangeEvent:
    return ChangeEvent("t", ChangeKind.SET, INTS.encode(value), revision)


def test_ttl_checker_finds_a_read_after_the_expiry_was_delivered():
    history = [_set(10, 1), ChangeEvent("t", ChangeKind.DELETE, None, 11), _set(12, 2)]
    expired = expiry_times(history, {11: 5.0})
    assert expired == {1: 5.0}
    early, late = Read(4.0, 4.1, 1), Read(5.5, 5.6, 1)
    assert reads_after_expiry([early, late, Read(6.0, 6.1, 2)], expired) == [late]
