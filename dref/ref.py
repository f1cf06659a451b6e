"""`DRef[T]`: a named, typed value that every process sharing the backend reads and changes.

Read-modify-write (`modify`, `update`, `get_and_update`, `update_and_get`) is a
compare-and-set loop: read the value with its revision, apply `f`, write only if the
revision is unchanged, otherwise back off a little (randomised) and start again. Calls on
one name from threads of one context are combined (`dref.combiner`): one read, every
queued `f` in order, one write. There is
no lock, global or distributed, so concurrent updates of different names never wait for
each other; the price is that **`f` may run more than once** and must have no side
effects. A plain `set` racing an update is not lost silently: the update then retries on
the new value. Upstream instead holds the lock ``lock:<name>`` (spec 1.3, 7.26); a backend
created with ``interop_locking=True`` does the same, for names upstream nodes also update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import msgpack

from dref.backend import Entry, ReadPolicyName, read_policy_name
from dref.changes import DEFAULT_BUFFER, ChangeStream, Event, Subscription
from dref.errors import CodecError, NotFoundError
from dref.wire.codec import Codec

if TYPE_CHECKING:
    from dref.context import Context

__all__ = ["DEFAULT_MODIFY_TIMEOUT", "DRef"]

T = TypeVar("T")
B = TypeVar("B")
D = TypeVar("D")

DEFAULT_MODIFY_TIMEOUT = 30.0
"""How long (seconds) a read-modify-write keeps retrying before `DRefTimeoutError`."""


class DRef(Generic[T]):
    """A handle on the value stored under `name`, encoded with `codec`.

    Create it with `Context.ref`. Handles are cheap, thread-safe and hold no resources;
    many handles (in many processes) may point at the same name.
    """

    def __init__(self, context: Context, name: str, codec: Codec[T]) -> None:
        self._context = context
        self.name = name
        self.codec = codec

    def __repr__(self) -> str:
        return f"DRef({self.name!r})"

    # -- reads ---------------------------------------------------------------------------

    def get(self, timeout: float | None = None, *, policy: ReadPolicyName | None = None) -> T:
        """The current value; `NotFoundError` ("Element <name> not found") if absent.
        `policy`: how fresh (linearizable, lease or stale); None: the context's default."""
        entry = self._read(timeout, policy)
        if entry is None:
            raise NotFoundError(self.name)
        return self.codec.decode(entry.value)

    def get_or(
        self, default: D, timeout: float | None = None, *, policy: ReadPolicyName | None = None
    ) -> T | D:
        """The current value, or `default` if absent."""
        entry = self._read(timeout, policy)
        return default if entry is None else self.codec.decode(entry.value)

    def revision(
        self, timeout: float | None = None, *, policy: ReadPolicyName | None = None
    ) -> int | None:
        """The revision of the write that stored the current value, or None if absent."""
        entry = self._read(timeout, policy)
        return None if entry is None else entry.revision

    def _read(self, timeout: float | None, policy: ReadPolicyName | None) -> Entry | None:
        context = self._context
        chosen = context.read_policy if policy is None else read_policy_name(policy)
        return context._open_backend().get(self.name, policy=chosen, timeout=timeout)

    # -- writes --------------------------------------------------------------------------

    def set(self, value: T, ttl: float | None = None, timeout: float | None = None) -> int:
        """Write `value` (expiring after `ttl` seconds if given); returns the new revision."""
        data = self.codec.encode(value)
        return self._context._open_backend().set(self.name, data, ttl, timeout=timeout)

    def set_if_not_exist(
        self, value: T, ttl: float | None = None, timeout: float | None = None
    ) -> bool:
        """Write `value` only if the name is absent; True if it wrote."""
        data = self.codec.encode(value)
        backend = self._context._open_backend()
        return backend.set_if_absent(self.name, data, ttl, timeout=timeout) is not None

    def delete(self, timeout: float | None = None) -> int:
        """Delete the value (subscribers get `Deleted`); returns the revision of the delete."""
        return self._context._open_backend().delete(self.name, timeout=timeout)

    def modify(self, f: Callable[[T], tuple[B, T]], timeout: float | None = None) -> B:
        """Atomically replace the value `v` by `f(v)[1]` and return `f(v)[0]`.

        `f` may run several times (compare-and-set retry). The new value has no TTL.
        Raises `NotFoundError` if absent, `DRefTimeoutError` if no attempt succeeds within
        `timeout` seconds (default 30).
        """
        limit = DEFAULT_MODIFY_TIMEOUT if timeout is None else timeout
        if self._context._open_backend().interop_locking:
            return self._modify_under_upstream_lock(f, limit)
        codec = self.codec

        def step(old: bytes) -> tuple[B, bytes]:
            result, new_value = f(codec.decode(old))
            return result, codec.encode(new_value)

        result: B = self._context._combiner(self.name).run(step, limit)
        return result

    def _modify_under_upstream_lock(self, f: Callable[[T], tuple[B, T]], limit: float) -> B:
        """`modify` as upstream does it, for backends configured with `interop_locking`."""
        results: list[B] = []

        def step(old: bytes | None) -> bytes:
            if old is None:
                raise NotFoundError(self.name)
            result, new_value = f(self.codec.decode(old))
            results.append(result)
            return self.codec.encode(new_value)

        self._context._open_backend().modify_with_upstream_lock(self.name, step, timeout=limit)
        return results[-1]

    def update(self, f: Callable[[T], T], timeout: float | None = None) -> None:
        """Atomically replace the value `v` by `f(v)` (`f` may run more than once)."""
        self.modify(lambda v: (None, f(v)), timeout)

    def get_and_update(self, f: Callable[[T], T], timeout: float | None = None) -> T:
        """Atomically replace `v` by `f(v)`; returns the old value."""
        return self.modify(lambda v: (v, f(v)), timeout)

    def update_and_get(self, f: Callable[[T], T], timeout: float | None = None) -> T:
        """Atomically replace `v` by `f(v)`; returns the new value."""

        def step(v: T) -> tuple[T, T]:
            new = f(v)
            return new, new

        return self.modify(step, timeout)

    def increment(self, n: int = 1, timeout: float | None = None) -> int:
        """Atomically add `n` to the integer value; returns the new value.

        On Raft and Redis the store adds in place, as one write that never retries (Raft: a
        native command, so it is not upstream-compatible; Redis: one Lua script, exact up
        to 2**53), and on the local backend under its lock. That needs the ref's codec to
        be MsgPack (the default) or JSON; other codecs, and `interop_locking` backends, get
        `update_and_get(lambda v: v + n)`. Like `modify`, the new value has no TTL. Raises
        `NotFoundError` if absent, `CodecError` if the value is not an integer.
        """
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"increment takes an int, not {type(n).__name__}")
        backend = self._context._open_backend()
        fmt = _counter_format(self.codec)
        if fmt is None or backend.interop_locking:

            def add(value: T) -> T:
                if isinstance(value, bool) or not isinstance(value, int):
                    kind = type(value).__name__
                    raise CodecError(
                        f"cannot increment {self.name}: it holds a {kind}, not an integer"
                    )
                return value + n  # type: ignore[return-value]

            return cast(int, self.update_and_get(add, timeout))
        limit = DEFAULT_MODIFY_TIMEOUT if timeout is None else timeout
        number, _ = backend.increment(self.name, n, fmt, timeout=limit)
        return number

    # -- changes -------------------------------------------------------------------------

    def changes(
        self,
        timeout: float | None = None,
        buffer: int = DEFAULT_BUFFER,
        *,
        after: int | None = None,
    ) -> ChangeStream[T]:
        """A stream of every later change (see `ChangeStream`); iteration ends after
        `timeout` seconds without an event. With `after=REVISION`, first every change after
        that revision, then live ones, each exactly once (`CompactedError` if the backend no
        longer keeps them). Close it (or use `with`) when done."""
        return self._context._open_stream(self.name, self.codec.decode, timeout, buffer, after)

    def on_change(
        self,
        callback: Callable[[Event[T]], object],
        buffer: int = DEFAULT_BUFFER,
        *,
        after: int | None = None,
    ) -> Subscription[T]:
        """Call `callback(event)` for every later change (with `after`: every change after
        that revision first), on a thread of its own, until the returned subscription is
        cancelled (or the context closes)."""
        return self._context._open_subscription(
            self.name, self.codec.decode, callback, buffer, after
        )


def _counter_format(codec: Codec[Any]) -> str | None:
    """The encoding a store can add to for `codec`: "msgpack" or "json" when the codec
    writes integers exactly as plain MsgPack or JSON does, else None."""
    try:
        probe = codec.encode(-300)
    except Exception:  # noqa: BLE001 - a codec for some other type: no in-place add
        return None
    if probe == msgpack.packb(-300):
        return "msgpack"
    if probe == b"-300":
        return "json"
    return None
