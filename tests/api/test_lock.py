"""Locks: exclusion, fencing, timeouts, event-driven waiters, loss detection, safe release."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

import dref
import dref.lock as dref_lock
from dref.backend import Backend, ChangeEvent, Entry
from dref.errors import (
    BackendUnavailableError,
    ContextClosedError,
    DRefTimeoutError,
    LockStolenError,
    LockTimeoutError,
)
from dref.wire.lock_token import decode_lock_token, encode_lock_token


class SpyBackend(Backend):
    """Forwards to a real backend and tells the test when a create-if-absent was refused."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.default_ttl = inner.default_ttl
        self.max_value_size = inner.max_value_size
        self.refused = threading.Event()

    def set(self, name: str, value: bytes, ttl: float | None = None, *, timeout=None) -> int:
        return self.inner.set(name, value, ttl, timeout=timeout)

    def set_if_absent(self, name, value, ttl=None, *, timeout=None):
        revision = self.inner.set_if_absent(name, value, ttl, timeout=timeout)
        if revision is None:
            self.refused.set()
        return revision

    def get(self, name: str, *, timeout=None) -> Entry | None:
        return self.inner.get(name, timeout=timeout)

    def delete(self, name: str, *, timeout=None) -> int:
        return self.inner.delete(name, timeout=timeout)

    def compare_and_set(self, name, expected, value, ttl=None, *, timeout=None):
        return self.inner.compare_and_set(name, expected, value, ttl, timeout=timeout)

    def compare_and_delete(self, name: str, expected: Entry, *, timeout=None) -> bool:
        return self.inner.compare_and_delete(name, expected, timeout=timeout)

    def expire(self, name, ttl, *, expected=None, timeout=None):
        return self.inner.expire(name, ttl, expected=expected, timeout=timeout)

    def subscribe(
        self,
        name: str,
        listener: Callable[[ChangeEvent], None],
        *,
        timeout=None,
        sees_own_writes=True,
    ) -> Callable[[], None]:
        return self.inner.subscribe(
            name, listener, timeout=timeout, sees_own_writes=sees_own_writes
        )

    def history(self, name, after, *, limit=256, timeout=None):
        return self.inner.history(name, after, limit=limit, timeout=timeout)

    def close(self) -> None:
        self.inner.close()


def test_with_block_holds_the_token_and_releases(ctx: dref.Context) -> None:
    with ctx.lock("job", ttl=5) as lock:
        entry = ctx.backend.get("job")
        assert entry is not None
        assert decode_lock_token(entry.value) == lock.token
        assert entry.revision == lock.fencing_token
        assert lock.locked()
    assert ctx.backend.get("job") is None
    assert not lock.locked()
    assert not lock.lost.is_set()


def test_mutual_exclusion_and_increasing_fencing_tokens_across_16_threads(
    ctx: dref.Context,
) -> None:
    inside = 0
    overlaps = 0
    grants: list[int] = []
    failures: list[BaseException] = []
    guard = threading.Lock()

    def worker() -> None:
        nonlocal inside, overlaps
        try:
            for _ in range(10):
                with ctx.lock("critical", ttl=5, timeout=60) as lock:
                    with guard:
                        inside += 1
                        overlaps += inside > 1
                        grants.append(lock.fencing_token)
                    time.sleep(0.001)  # widen the window an overlap would need
                    with guard:
                        inside -= 1
        except BaseException as e:  # surfaced below
            failures.append(e)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures
    assert overlaps == 0
    assert len(grants) == 160
    assert all(a < b for a, b in zip(grants, grants[1:], strict=False))


def test_lock_timeout_when_held(ctx: dref.Context) -> None:
    with ctx.lock("busy", ttl=5):
        other = ctx.lock("busy", timeout=0.2)
        with pytest.raises(LockTimeoutError, match="busy") as info, other:
            pytest.fail("acquired a held lock")
        assert info.value.timeout == 0.2
        assert isinstance(info.value, TimeoutError)
        assert other.acquire(blocking=False) is False
        assert other.acquire(timeout=0.05) is False


def test_waiter_is_woken_by_the_release_event_not_by_polling(ctx: dref.Context) -> None:
    spy = SpyBackend(ctx.backend)
    spied = dref.Context(spy)
    acquired = threading.Event()
    holder = spied.lock("wake", ttl=30)
    holder.acquire()
    waiter = spied.lock("wake", ttl=30, timeout=30, retry_interval=3600)

    def wait_for_lock() -> None:
        if waiter.acquire():
            acquired.set()

    thread = threading.Thread(target=wait_for_lock)
    thread.start()
    assert spy.refused.wait(10), "the waiter never tried"
    holder.release()
    assert acquired.wait(20), "the waiter was not woken by the release"
    waiter.release()
    thread.join(10)
    spied.close()


def test_one_keep_alive_thread_keeps_every_lease_of_a_context(ctx: dref.Context) -> None:
    """Sixteen locks held at once past their TTL by one keep-alive thread of the context."""
    locks = [ctx.lock(f"many-{i}", ttl=1.0) for i in range(16)]
    for lock in locks:
        lock.acquire()
    try:
        keepers = [t for t in threading.enumerate() if t.name == "dref-lock-keepalive"]
        assert len(keepers) >= 1
        assert not any(t.name.startswith("dref-lock-keepalive:") for t in threading.enumerate())
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            assert not any(lock.lost.wait(0.05) for lock in locks[:1])
        for i, lock in enumerate(locks):
            assert not lock.lost.is_set(), i
            held = ctx.backend.get(f"many-{i}")
            assert held is not None and held.revision == lock.fencing_token
    finally:
        for lock in locks:
            lock.release()


def test_abandoned_lock_expires_and_lets_a_waiter_in(ctx: dref.Context) -> None:
    dead_holder = ctx.backend.set_if_absent("abandoned", encode_lock_token(7), 0.3)
    assert dead_holder is not None
    with ctx.lock("abandoned", ttl=5, timeout=30, retry_interval=3600) as lock:
        assert lock.fencing_token > dead_holder


def test_keep_alive_holds_the_lock_past_its_ttl(ctx: dref.Context) -> None:
    with ctx.lock("long", ttl=1.0) as lock:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            assert not lock.lost.wait(0.1)
        entry = ctx.backend.get("long")
        assert entry is not None and entry.revision == lock.fencing_token


@pytest.mark.parametrize("thief", ["delete", "overwrite"])
def test_lost_lock_is_reported_and_release_spares_the_new_holder(
    ctx: dref.Context, thief: str
) -> None:
    called = threading.Event()
    lock = ctx.lock("stolen", ttl=5, on_lost=called.set)
    successor = ctx.lock("stolen", ttl=5, timeout=10)
    with pytest.raises(LockStolenError) as info, lock:
        if thief == "delete":
            ctx.backend.delete("stolen")
            assert successor.acquire()
        else:
            ctx.backend.set("stolen", b"intruder")
        assert lock.lost.wait(10)
        assert called.wait(10)
    assert info.value.name == "stolen"
    assert info.value.value == lock.token
    entry = ctx.backend.get("stolen")
    assert entry is not None, "the former holder's release deleted someone else's lock"
    if thief == "delete":
        assert entry.revision == successor.fencing_token
        successor.release()
    else:
        assert entry.value == b"intruder"


def test_a_loss_before_the_lock_is_watched_is_found_by_the_release(
    ctx: dref.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock found free does not subscribe while held for less than WATCH_AFTER; a change
    made then is still a loss, reported by the release's compare-and-delete."""
    monkeypatch.setattr(dref_lock, "WATCH_AFTER", 3600.0)
    called = threading.Event()
    lock = ctx.lock("unwatched", ttl=5, on_lost=called.set)
    with pytest.raises(LockStolenError), lock:
        ctx.backend.set("unwatched", b"intruder")
    assert lock.lost.is_set() and called.is_set()
    entry = ctx.backend.get("unwatched")
    assert entry is not None and entry.value == b"intruder"


def test_a_loss_before_the_watch_starts_is_found_when_it_starts(
    ctx: dref.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The late subscription reads the name once: a change made before it was missed by
    the listener, but not by that read."""
    started = threading.Event()
    subscribe = ctx.backend.subscribe

    def spied(*args, **kwargs):  # the keeper subscribes only after the intruder wrote
        started.wait(10)
        return subscribe(*args, **kwargs)

    monkeypatch.setattr(dref_lock, "WATCH_AFTER", 0.0)
    monkeypatch.setattr(ctx.backend, "subscribe", spied)
    lock = ctx.lock("late-watch", ttl=5)
    with pytest.raises(LockStolenError), lock:
        ctx.backend.delete("late-watch")
        started.set()
        assert lock.lost.wait(10)


def test_body_exception_is_chained_to_the_stolen_error(ctx: dref.Context) -> None:
    lock = ctx.lock("chained", ttl=5)
    with pytest.raises(LockStolenError) as info, lock:
        ctx.backend.delete("chained")
        assert lock.lost.wait(10)
        raise ValueError("body failed")
    assert isinstance(info.value.__cause__, ValueError)


def test_expired_lease_is_a_loss(ctx: dref.Context) -> None:
    lock = ctx.lock("lease", ttl=5)
    lock.acquire()
    ctx.backend.expire("lease", 0.1)  # as if keep-alive could not reach the backend
    assert lock.lost.wait(10)
    with pytest.raises(LockStolenError):
        lock.release()


def test_body_exception_passes_through_when_not_lost(ctx: dref.Context) -> None:
    with pytest.raises(KeyError), ctx.lock("plain", ttl=5):
        raise KeyError("x")
    assert ctx.backend.get("plain") is None


def test_decorator_takes_a_fresh_lock_per_call(ctx: dref.Context) -> None:
    inside = 0
    overlaps = 0
    guard = threading.Lock()

    @ctx.lock("decorated", ttl=5, timeout=30)
    def job(x: int) -> int:
        nonlocal inside, overlaps
        with guard:
            inside += 1
            overlaps += inside > 1
        assert ctx.backend.get("decorated") is not None
        with guard:
            inside -= 1
        return x * 2

    assert job(21) == 42
    assert job.__name__ == "job"
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(job(1))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [2, 2, 2, 2]
    assert overlaps == 0
    assert ctx.backend.get("decorated") is None


def test_lock_is_not_reentrant_and_release_needs_a_holder(ctx: dref.Context) -> None:
    lock = ctx.lock("single", ttl=5)
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(RuntimeError):
        lock.fencing_token  # noqa: B018
    assert lock.acquire()
    with pytest.raises(RuntimeError):
        lock.acquire(blocking=False)
    lock.release()
    assert lock.acquire(), "a released Lock object can be acquired again"
    lock.release()


def test_fencing_tokens_grow_across_reacquisitions(ctx: dref.Context) -> None:
    tokens = []
    for _ in range(3):
        with ctx.lock("again", ttl=5) as lock:
            ctx.backend.set("unrelated", b"x")
            tokens.append(lock.fencing_token)
    assert tokens == sorted(set(tokens))


def test_closing_the_context_releases_held_locks(ctx: dref.Context) -> None:
    seen: list[ChangeEvent] = []
    ctx.backend.subscribe("on-close", seen.append)
    lock = ctx.lock("on-close", ttl=5)
    lock.acquire()
    ctx.close()
    assert [e.kind.value for e in seen][-2:] == ["set", "delete"], "not released on close"
    assert lock.lost.is_set()
    with pytest.raises(LockStolenError):
        lock.release()


class ClosesAlone(SpyBackend):
    """A context's own view of a shared backend: `close()` ends the view only (calls after
    it fail as on a closed backend), so the test can look at the store afterwards. With
    `hold_creates`, each create-if-absent waits until `context` is closing."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.closed = False
        self.context: dref.Context | None = None
        self.hold_creates = False
        self.entered = threading.Event()

    def _check(self) -> None:
        if self.closed:
            raise ContextClosedError("this view of the backend is closed")

    def set_if_absent(self, name, value, ttl=None, *, timeout=None):
        self._check()
        if self.hold_creates:
            self.entered.set()
            deadline = time.monotonic() + 10
            while self.context is not None and not self.context.closed:
                assert time.monotonic() < deadline, "the context was not closed"
                time.sleep(0.001)  # a poll under a deadline
        return super().set_if_absent(name, value, ttl, timeout=timeout)

    def get(self, name: str, *, timeout=None) -> Entry | None:
        self._check()
        return super().get(name, timeout=timeout)

    def compare_and_delete(self, name: str, expected: Entry, *, timeout=None) -> bool:
        self._check()
        return super().compare_and_delete(name, expected, timeout=timeout)

    def expire(self, name, ttl, *, expected=None, timeout=None):
        self._check()
        return super().expire(name, ttl, expected=expected, timeout=timeout)

    def close(self) -> None:
        self.closed = True


def _waiting(view: dref.Context, name: str, outcome: list[object]) -> threading.Thread:
    def wait() -> None:
        try:
            outcome.append(view.lock(name, ttl=8).acquire(timeout=20))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    return thread


def test_closing_the_context_fails_its_waiters_at_once(ctx: dref.Context) -> None:
    holder = ctx.lock("close-wait", ttl=8)
    holder.acquire()
    spy = ClosesAlone(ctx.backend)
    view = dref.Context(spy)
    outcome: list[object] = []
    waiter = _waiting(view, "close-wait", outcome)
    deadline = time.monotonic() + 10
    while not spy.refused.is_set():  # the waiter tried once and now waits for a release
        assert time.monotonic() < deadline, "the waiter never tried"
        time.sleep(0.001)  # a poll under a deadline
    began = time.monotonic()
    view.close()
    waiter.join(5)
    assert isinstance(outcome[0], ContextClosedError), outcome
    assert time.monotonic() - began < 1.0, "the waiter was not failed at once"
    holder.release()


def test_a_grant_that_lands_while_the_context_closes_is_taken_back(ctx: dref.Context) -> None:
    """The waiter's create is in flight when its context closes (the holder has just
    released): it fails with ContextClosedError, and the lock is free at once, not held
    by a closed context until its TTL."""
    holder = ctx.lock("close-race", ttl=8)
    holder.acquire()
    spy = ClosesAlone(ctx.backend)
    view = dref.Context(spy)
    spy.context, spy.hold_creates = view, True
    outcome: list[object] = []
    waiter = _waiting(view, "close-race", outcome)
    assert spy.entered.wait(10)
    holder.release()
    view.close()  # the create goes on as soon as this begins, and succeeds
    waiter.join(5)
    assert isinstance(outcome[0], ContextClosedError), outcome
    assert ctx.backend.get("close-race") is None, "a closed context still holds the lock"
    with ctx.lock("close-race", ttl=8, timeout=1):
        pass


class LosesAnswers(SpyBackend):
    """A real backend whose answers can go missing, as when a leader is killed mid-call:
    "applied" forwards the call and then raises DRefTimeoutError, "refused" raises
    BackendUnavailableError without forwarding it."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.creates: str | None = None
        self.reads: str | None = None
        self.deletes: str | None = None

    @staticmethod
    def _fail(mode: str | None, call: Callable[[], object]) -> object:
        if mode == "refused":
            raise BackendUnavailableError("the backend did not answer (injected)")
        result = call()
        if mode == "applied":
            raise DRefTimeoutError("the answer was lost (injected)")
        return result

    def set_if_absent(self, name, value, ttl=None, *, timeout=None):
        return self._fail(
            self.creates, lambda: super(LosesAnswers, self).set_if_absent(name, value, ttl)
        )

    def get(self, name: str, *, timeout=None) -> Entry | None:
        return self._fail(self.reads, lambda: self.inner.get(name))  # type: ignore[return-value]

    def compare_and_delete(self, name: str, expected: Entry, *, timeout=None) -> bool:
        return self._fail(  # type: ignore[return-value]
            self.deletes, lambda: self.inner.compare_and_delete(name, expected)
        )


def _poll(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)  # a poll under a deadline


def test_a_grant_whose_answer_was_lost_is_recognised_as_ours(ctx: dref.Context) -> None:
    faulty = LosesAnswers(ctx.backend)
    faulty.creates = "applied"
    with dref.Context(faulty) as view, view.lock("lost-answer", ttl=8, timeout=5) as lock:
        held = ctx.backend.get("lost-answer")
        assert held is not None and decode_lock_token(held.value) == lock.token
        assert lock.fencing_token == held.revision


def test_an_unanswering_backend_is_a_lock_timeout_within_the_timeout(ctx: dref.Context) -> None:
    faulty = LosesAnswers(ctx.backend)
    faulty.creates = faulty.reads = "refused"
    began = time.monotonic()
    with (
        dref.Context(faulty) as view,
        pytest.raises(LockTimeoutError),
        view.lock("no-answer", ttl=8, timeout=0.5),
    ):
        pass
    assert time.monotonic() - began < 1.5


def test_a_create_that_landed_after_the_timeout_leaves_no_lease(ctx: dref.Context) -> None:
    """The create was applied but neither its answer nor a read came back before the
    timeout: the acquisition fails, and its token is taken back, not left for the TTL."""
    faulty = LosesAnswers(ctx.backend)
    faulty.creates, faulty.reads = "applied", "refused"
    with dref.Context(faulty) as view:
        assert not view.lock("late-create", ttl=30).acquire(timeout=0.3)
        assert ctx.backend.get("late-create") is not None  # it did land
        faulty.creates = faulty.reads = None  # the backend answers again
        _poll(lambda: ctx.backend.get("late-create") is None, 10, "the lease lingers")


def test_a_release_whose_answer_was_lost_still_frees_the_lock(ctx: dref.Context) -> None:
    faulty = LosesAnswers(ctx.backend)
    with dref.Context(faulty) as view:
        lock = view.lock("lost-release", ttl=30)
        lock.acquire()
        faulty.deletes = faulty.reads = "refused"
        lock.release()  # returns at once; the release is retried in the background
        faulty.deletes = faulty.reads = None
        _poll(lambda: ctx.backend.get("lost-release") is None, 10, "the lease lingers")


def test_lock_stats_count_grants_timeouts_releases_and_losses(ctx: dref.Context) -> None:
    with ctx.lock("counted", ttl=5):
        assert not ctx.lock("counted", ttl=5).acquire(timeout=0.05)
    assert ctx.lock_stats() == dref.LockStats(grants=1, timeouts=1, releases=1, losses=0)
    lock = ctx.lock("counted", ttl=5)
    with pytest.raises(LockStolenError), lock:
        ctx.backend.delete("counted")  # from under the holder
        assert lock.lost.wait(10)
    # the release that found the loss counts too, and the loss is counted once
    assert ctx.lock_stats() == dref.LockStats(grants=2, timeouts=1, releases=2, losses=1)
