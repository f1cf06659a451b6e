"""Workloads for what the Raft backend promises beyond a register, each with its checker:
locks (fencing tokens against a storage that refuses stale ones), resumable change streams
(every subscriber sees the committed history, no gap, no duplicate), TTL (no value read
after its expiry was seen committed) and client sessions (no write applied twice).

Each workload runs on threads of its own through the public DRef API (`Context` over a
`RaftBackend`), records what it saw with `time.monotonic()` stamps, and `check()` raises
AssertionError naming the anomaly. Every loop stops at `stop` or at its deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dref.backend import ChangeEvent, ChangeKind
from dref.changes import Changed, ChangeStream, Deleted, Lagged
from dref.context import Context
from dref.errors import DRefError, DRefTimeoutError, LockStolenError, NotFoundError
from dref.wire.msgpack_codec import MsgPackCodec

__all__ = [
    "CounterWorkload",
    "FencedStore",
    "LockWorkload",
    "TtlWorkload",
    "WatchWorkload",
    "committed_history",
    "expiry_times",
    "reads_after_expiry",
]

ContextFactory = Callable[[int], Context]
"""Makes the context of worker `i` (its own client; `i` rotates the node order)."""

_INTS = MsgPackCodec.for_value(0)
"""How `ctx.ref(name, 0)` encodes the workloads' integers."""

_PAUSE = 0.01
"""Seconds a worker waits between operations: the experiment's pace, not synchronisation."""


def _spawn(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def committed_history(context: Context, name: str, after: int, limit_s: float) -> list[ChangeEvent]:
    """Every kept change of `name` after revision `after`, read page by page."""
    backend = context.backend
    events: list[ChangeEvent] = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        page = backend.history(name, events[-1].revision if events else after, timeout=5.0)
        if not page:
            return events
        events.extend(page)
    raise AssertionError(f"the history of {name} was not read within {limit_s} s")


# -- locks ------------------------------------------------------------------------------


class FencedStore:
    """The storage a lock protects: every read and write carries the holder's fencing
    token, and one older than the newest token it has seen is refused. A counter kept
    here counts increments; two holders with one token, or tokens that go back, lose one."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.newest = 0
        self.counter = 0
        self.accepted: list[int] = []
        """The token of every accepted write, in the order accepted."""

    def _admit(self, token: int) -> bool:
        if token < self.newest:
            return False
        self.newest = token
        return True

    def read(self, token: int) -> int | None:
        """The counter, or None when `token` is stale."""
        with self._guard:
            return self.counter if self._admit(token) else None

    def write(self, token: int, value: int) -> bool:
        """Store `value` unless `token` is stale; whether it was stored."""
        with self._guard:
            if not self._admit(token):
                return False
            self.counter = value
            self.accepted.append(token)
            return True


@dataclass
class Grant:
    """One successful acquisition: when it was asked for and granted, and its token."""

    worker: int
    invoked: float
    granted: float
    token: int
    increments: int = 0
    lost: bool = False


@dataclass
class LockWorkload:
    """`workers` threads take one lock in turn and increment the `FencedStore` counter
    under it (read, a pause, write), then release."""

    name: str
    workers: int = 3
    ttl: float = 2.0
    timeout: float = 3.0
    store: FencedStore = field(default_factory=FencedStore)
    grants: list[Grant] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def start(self, context_for: ContextFactory, stop: threading.Event) -> list[threading.Thread]:
        """Start the workers; they run until `stop`."""
        return [
            _spawn(lambda i=i: self._work(context_for(i), i, stop), f"lock-{i}")
            for i in range(self.workers)
        ]

    def _work(self, context: Context, worker: int, stop: threading.Event) -> None:
        with context:
            while not stop.is_set():
                lock = context.lock(self.name, ttl=self.ttl, timeout=self.timeout)
                invoked = time.monotonic()
                try:
                    taken = lock.acquire()
                except DRefError as error:
                    self._count(error)
                    continue
                if not taken:
                    self._count(DRefTimeoutError("not granted in time"))
                    continue
                grant = Grant(worker, invoked, time.monotonic(), lock.fencing_token)
                self.grants.append(grant)
                for _ in range(2):
                    value = self.store.read(grant.token)
                    stop.wait(_PAUSE)  # a holder's work takes a while
                    if value is not None and self.store.write(grant.token, value + 1):
                        grant.increments += 1
                try:
                    lock.release()
                except LockStolenError:
                    grant.lost = True
                except DRefError as error:
                    self._count(error)

    def _count(self, error: Exception) -> None:
        kind = type(error).__name__
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def check(self) -> str:
        """Tokens unique and in real-time order; no increment lost; a summary line."""
        tokens = [g.token for g in self.grants]
        assert len(set(tokens)) == len(tokens), f"two grants share a fencing token: {tokens}"
        by_grant = sorted(self.grants, key=lambda g: g.granted)
        for earlier in by_grant:
            for later in by_grant:
                if earlier.granted < later.invoked:
                    assert earlier.token < later.token, (
                        f"grant {later} was asked for after grant {earlier} was given, "
                        "with an older token"
                    )
        increments = sum(g.increments for g in self.grants)
        assert self.store.counter == increments, (
            f"the protected counter is {self.store.counter} after {increments} accepted"
            " increments: two holders' writes interleaved"
        )
        accepted = self.store.accepted
        assert accepted == sorted(accepted), "the store accepted a token after a newer one"
        assert self.grants and increments, f"no lock grant did any work (errors {self.errors})"
        lost = sum(g.lost for g in self.grants)
        return (
            f"locks: {len(self.grants)} grants, {lost} lost, {increments} protected increments,"
            f" errors {self.errors}"
        )


# -- change streams ---------------------------------------------------------------------


@dataclass
class Watcher:
    """What one subscriber delivered: (revision, value or None for a delete) in order."""

    seen: list[tuple[int, int | None]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    observed: dict[int, float] = field(default_factory=dict)
    """When each revision was delivered (monotonic seconds)."""

    def record(self, event: object) -> None:
        now = time.monotonic()
        if isinstance(event, Changed):
            self.seen.append((event.revision, event.value))
        elif isinstance(event, Deleted):
            self.seen.append((event.revision, None))
        else:
            self.failures.append(f"unexpected {event!r}")
            return
        self.observed.setdefault(self.seen[-1][0], now)


@dataclass
class WatchWorkload:
    """One writer per key sets 1, 2, 3, ...; `streams` resumable streams and `callbacks`
    `on_change` subscriptions per key, opened after revision `start`, each on its own
    client, must deliver exactly the committed history of their key."""

    names: list[str]
    streams: int = 2
    callbacks: int = 1
    acknowledged: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    watchers: dict[str, list[Watcher]] = field(default_factory=dict)
    start_revision: dict[str, int] = field(default_factory=dict)
    _closers: list[Callable[[], None]] = field(default_factory=list)
    _readers: list[threading.Thread] = field(default_factory=list)
    _done: threading.Event = field(default_factory=threading.Event)

    def start(self, context_for: ContextFactory, stop: threading.Event) -> list[threading.Thread]:
        """Write each key once, subscribe after that revision, then start the writers
        (returned; the stream readers run until `check` has compared them)."""
        threads = []
        offset = 0
        for name in self.names:
            setup = context_for(offset)
            offset += 1
            self.start_revision[name] = setup.ref(name, 0).set(0)
            self.acknowledged[name] = []
            self.watchers[name] = []
            for _ in range(self.streams):
                watcher = Watcher()
                self.watchers[name].append(watcher)
                context = context_for(offset)
                offset += 1
                stream = context.ref(name, 0).changes(timeout=1.0, after=self.start_revision[name])
                self._closers.append(context.close)
                self._readers.append(
                    _spawn(lambda s=stream, w=watcher: _drain(s, w, self._done), "watch")
                )
            for _ in range(self.callbacks):
                watcher = Watcher()
                self.watchers[name].append(watcher)
                context = context_for(offset)
                offset += 1
                context.ref(name, 0).on_change(watcher.record, after=self.start_revision[name])
                self._closers.append(context.close)
            threads.append(
                _spawn(lambda n=name, c=setup: self._write(c, n, stop), f"writer-{name}")
            )
        return threads

    def _write(self, context: Context, name: str, stop: threading.Event) -> None:
        ref = context.ref(name, 0)
        value = 0
        with context:
            while not stop.is_set():
                value += 1
                try:
                    self.acknowledged[name].append((ref.set(value), value))
                except DRefError:
                    pass  # outcome unknown: the history says whether it happened
                stop.wait(_PAUSE)

    def check(self, reader: Context, limit_s: float = 30.0) -> str:
        """Each subscriber delivered its key's committed history after `start`, exactly."""
        total = 0
        try:
            for name in self.names:
                history = committed_history(reader, name, self.start_revision[name], limit_s)
                expected = [(e.revision, _int_or_none(e)) for e in history]
                total += len(expected)
                written = [value for _, value in expected]
                assert written == sorted(set(written)) and None not in written, (
                    f"{name}: a write was applied twice or out of order: {written}"
                )
                missing = set(self.acknowledged[name]) - set(expected)
                assert not missing, f"{name}: acknowledged writes not in the history: {missing}"
                for index, watcher in enumerate(self.watchers[name]):
                    wanted = len(expected)
                    _wait_until(lambda w=watcher, n=wanted: len(w.seen) >= n, limit_s)
                    assert not watcher.failures, f"{name} watcher {index}: {watcher.failures}"
                    assert watcher.seen == expected, (
                        f"{name} watcher {index} delivered {_diff(watcher.seen, expected)}"
                    )
        finally:
            self.close()
        return f"watches: {len(self.names)} keys, {total} committed changes, every subscriber exact"

    def close(self) -> None:
        """Stop the stream readers and close the subscribers' contexts (`check` does)."""
        self._done.set()
        for thread in self._readers:
            thread.join(5.0)
        for close in self._closers:
            close()


def _drain(stream: ChangeStream[int], watcher: Watcher, done: threading.Event) -> None:
    """Read a resumable stream into `watcher` until `done` (at most ten minutes)."""
    deadline = time.monotonic() + 600.0
    with stream:
        while not done.is_set() and time.monotonic() < deadline:
            try:
                event = stream.get(timeout=0.2)
            except DRefTimeoutError:
                continue
            except DRefError as error:
                watcher.failures.append(f"{type(error).__name__}: {error}")
                continue
            if isinstance(event, Lagged):
                watcher.failures.append(f"a resumable stream lagged: {event}")
                continue
            watcher.record(event)


def _int_or_none(event: ChangeEvent) -> int | None:
    if event.kind is ChangeKind.DELETE or event.value is None:
        return None
    value = _INTS.decode(event.value)
    assert isinstance(value, int)
    return value


def _wait_until(predicate: Callable[[], bool], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)  # a poll under a deadline


def _diff(seen: list[tuple[int, int | None]], expected: list[tuple[int, int | None]]) -> str:
    """Where a delivered sequence first leaves the expected one."""
    for index, (got, want) in enumerate(zip(seen, expected, strict=False)):
        if got != want:
            return (
                f"{got} at position {index} where the history has {want}"
                f" ({len(seen)} delivered, {len(expected)} committed)"
            )
    extra = "more" if len(seen) > len(expected) else "fewer"
    return f"{len(seen)} changes, {extra} than the history's {len(expected)}"


# -- TTL --------------------------------------------------------------------------------


@dataclass
class Read:
    """One read: when it was invoked and answered, and the value (None: absent)."""

    invoked: float
    completed: float
    value: int | None


@dataclass
class TtlWorkload:
    """A writer sets `name` to 1, 2, 3, ... with a short TTL (some expire, some are
    overwritten); a watcher stamps when each expiry was delivered; readers read
    linearizably. No read invoked after an expiry was delivered may return the value
    that expired."""

    name: str
    ttl: float = 0.3
    every: float = 0.5
    readers: int = 2
    reads: list[Read] = field(default_factory=list)
    watcher: Watcher = field(default_factory=Watcher)
    start: int = 0
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def begin(self, context_for: ContextFactory, stop: threading.Event) -> list[threading.Thread]:
        """Write once, subscribe after it, start the writer and the readers."""
        writer = context_for(0)
        self.start = writer.ref(self.name, 0).set(0)
        watching = context_for(1)
        watching.ref(self.name, 0).on_change(self.watcher.record, after=self.start)
        self._closers.append(watching.close)
        threads = [_spawn(lambda: self._write(writer, stop), "ttl-writer")]
        for i in range(self.readers):
            context = context_for(2 + i)
            threads.append(_spawn(lambda c=context: self._read(c, stop), f"ttl-reader-{i}"))
        return threads

    def _write(self, context: Context, stop: threading.Event) -> None:
        ref = context.ref(self.name, 0)
        value = 0
        with context:
            while not stop.is_set():
                value += 1
                try:
                    ref.set(value, ttl=self.ttl)
                except DRefError:
                    pass
                stop.wait(self.every)

    def _read(self, context: Context, stop: threading.Event) -> None:
        ref = context.ref(self.name, 0)
        with context:
            while not stop.is_set():
                invoked = time.monotonic()
                try:
                    value: int | None = ref.get()
                except NotFoundError:
                    value = None
                except DRefError:
                    continue
                self.reads.append(Read(invoked, time.monotonic(), value))
                stop.wait(_PAUSE)

    def check(self, reader: Context, limit_s: float = 30.0) -> str:
        """No read after a delivered expiry returned the expired value."""
        try:
            history = committed_history(reader, self.name, self.start, limit_s)
        finally:
            for close in self._closers:
                close()
        expired = expiry_times(history, self.watcher.observed)
        stale = reads_after_expiry(self.reads, expired)
        assert not stale, f"read an expired value after its expiry was committed: {stale[:3]}"
        assert expired, "no value expired during the run"
        return f"ttl: {len(self.reads)} reads, {len(expired)} expiries seen, none read after"


def expiry_times(history: list[ChangeEvent], observed: dict[int, float]) -> dict[int, float]:
    """value -> when the delete (or expiry) that ended it was delivered to a watcher."""
    expired: dict[int, float] = {}
    previous: int | None = None
    for event in history:
        value = _int_or_none(event)
        if value is None and previous is not None and event.revision in observed:
            expired[previous] = observed[event.revision]
        previous = value
    return expired


def reads_after_expiry(reads: list[Read], expired: dict[int, float]) -> list[Read]:
    """The reads invoked after their value's expiry was delivered: stale ones."""
    return [r for r in reads if r.value in expired and r.invoked > expired[r.value]]


# -- sessions ---------------------------------------------------------------------------


@dataclass
class CounterWorkload:
    """Threads increment one counter with `update` through the stock client, whose
    session resends a write through leader changes: the final value must lie between
    the acknowledged increments and those plus the ones whose outcome stayed unknown."""

    name: str
    workers: int = 3
    acknowledged: int = 0
    unknown: int = 0
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, context_for: ContextFactory, stop: threading.Event) -> list[threading.Thread]:
        """Reset the counter and start the incrementers."""
        with context_for(0) as setup:
            setup.ref(self.name, 0).set(0)
        contexts = [context_for(i) for i in range(self.workers)]
        return [
            _spawn(lambda c=context: self._work(c, stop), f"counter-{i}")
            for i, context in enumerate(contexts)
        ]

    def _work(self, context: Context, stop: threading.Event) -> None:
        with context:
            ref = None
            while ref is None and not stop.is_set():
                try:  # the name exists (begin set it); a fault may still fail this call
                    ref = context.ref(self.name, 0)
                except DRefError:
                    stop.wait(_PAUSE)
            while ref is not None and not stop.is_set():
                try:
                    ref.update(lambda v: v + 1)
                    outcome = "acknowledged"
                except DRefError:
                    outcome = "unknown"
                with self._guard:
                    setattr(self, outcome, getattr(self, outcome) + 1)
                stop.wait(_PAUSE)

    def check(self, reader: Context) -> str:
        """acknowledged <= final <= acknowledged + unknown."""
        final = reader.ref(self.name, 0).get()
        assert self.acknowledged <= final <= self.acknowledged + self.unknown, (
            f"counter {final} after {self.acknowledged} acknowledged and {self.unknown}"
            " unknown increments: an increment was lost or applied twice"
        )
        assert self.acknowledged, "no increment was acknowledged"
        return (
            f"sessions: counter {final}, {self.acknowledged} acknowledged, {self.unknown} unknown"
        )
