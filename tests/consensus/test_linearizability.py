"""The linearizability checker on known-good and known-bad register histories."""

from __future__ import annotations

import random
import time

from testkit.linearizability import Operation, OpKind, Verdict, check_history

W, R, C = OpKind.WRITE, OpKind.READ, OpKind.CAS


def op(kind, start, end, value=None, expected=None, succeeded=None, key="x", client=0):
    return Operation(kind, key, start, end, value, expected, succeeded, client)


def test_sequential_history_is_linearizable():
    history = [op(W, 0, 1, 1), op(R, 2, 3, 1), op(C, 4, 5, 2, 1, True), op(R, 6, 7, 2)]
    assert check_history(history).ok


def test_concurrent_read_may_see_either_value():
    history = [op(W, 0, 1, 1), op(W, 2, 10, 2), op(R, 3, 4, 1, client=1), op(R, 5, 6, 2, client=2)]
    assert check_history(history).ok


def test_stale_read_is_an_anomaly():
    history = [op(W, 0, 1, 1), op(W, 2, 3, 2), op(R, 4, 5, 1, client=1)]
    result = check_history(history)
    assert result.verdict is Verdict.ANOMALY and result.key == "x"
    assert "read() -> 1" in result.description


def test_lost_write_is_an_anomaly():
    history = [op(W, 0, 1, 1), op(W, 2, 3, 2), op(R, 4, 5, None, client=1)]
    assert check_history(history).verdict is Verdict.ANOMALY


def test_two_successful_cas_from_the_same_value_is_an_anomaly():
    history = [
        op(W, 0, 1, 0),
        op(C, 2, 5, 1, 0, True, client=1),
        op(C, 2, 5, 2, 0, True, client=2),
    ]
    assert check_history(history).verdict is Verdict.ANOMALY


def test_failed_cas_must_have_seen_another_value():
    assert check_history([op(W, 0, 1, 0), op(C, 2, 3, 5, 0, False)]).verdict is Verdict.ANOMALY
    assert check_history([op(W, 0, 1, 7), op(C, 2, 3, 5, 0, False)]).ok


def test_read_of_a_value_never_written_is_an_anomaly():
    assert check_history([op(W, 0, 1, 1), op(R, 2, 3, 99)]).verdict is Verdict.ANOMALY


def test_indeterminate_write_may_or_may_not_have_happened():
    maybe = op(W, 0, None, 5)
    assert check_history([maybe, op(R, 10, 11, None, client=1)]).ok
    assert check_history([maybe, op(R, 10, 11, 5, client=1)]).ok
    # ...but once seen it cannot disappear again
    seen_then_gone = [maybe, op(R, 10, 11, 5, client=1), op(R, 12, 13, None, client=1)]
    assert check_history(seen_then_gone).verdict is Verdict.ANOMALY


def test_indeterminate_cas_is_either_outcome():
    history = [op(W, 0, 1, 1), op(C, 2, None, 2, 1), op(R, 5, 6, 2, client=1)]
    assert check_history(history).ok


def test_keys_are_checked_independently():
    history = [op(W, 0, 1, 1, key="a"), op(R, 2, 3, None, key="b"), op(R, 2, 3, 1, key="a")]
    assert check_history(history).ok
    result = check_history(history + [op(R, 4, 5, 9, key="b")])
    assert result.key == "b"


def random_register_history(rng: random.Random, count: int, clients: int) -> list[Operation]:
    """Simulate a real register with overlapping calls; linearizable by construction."""
    value = None
    history = []
    now = 0.0
    for n in range(count):
        start = now + rng.random()
        effect_at = start + rng.random() * 3
        end = effect_at + rng.random() * 3
        kind = rng.choice((W, R, C))
        if kind is W:
            value = n
            history.append(op(W, start, end, n, client=n % clients))
        elif kind is R:
            history.append(op(R, start, end, value, client=n % clients))
        else:
            expected = rng.choice((value, n - 1))
            succeeded = expected == value
            if succeeded:
                value = n
            history.append(op(C, start, end, n, expected, succeeded, client=n % clients))
        now = effect_at
    return history


def test_hundreds_of_overlapping_ops_per_key_check_quickly():
    rng = random.Random(3)
    history = [
        *random_register_history(rng, 400, 5),
        *[
            Operation(o.kind, "y", o.invoke_ms, o.complete_ms, o.value, o.expected, o.succeeded)
            for o in random_register_history(rng, 400, 5)
        ],
    ]
    started = time.monotonic()
    assert check_history(history).ok
    assert time.monotonic() - started < 5


def test_time_limit_gives_unknown_instead_of_hanging():
    # Many concurrent writes and no reads to prune: an exponential search.
    history = [op(W, 0, 100, n, client=n) for n in range(40)]
    history.append(op(R, 200, 201, -1))
    result = check_history(history, time_limit_s=0.2)
    assert result.verdict is Verdict.UNKNOWN
