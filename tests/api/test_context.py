"""Contexts: closing stops every thread they started and refuses later calls."""

from __future__ import annotations

import threading

import pytest

import dref
from dref.errors import ContextClosedError


def _new_dref_threads(before: set[threading.Thread]) -> list[str]:
    return [t.name for t in threading.enumerate() if t not in before and t.name.startswith("dref-")]


def test_close_leaves_no_dref_threads(wait_until) -> None:
    before = set(threading.enumerate())
    ctx = dref.local()
    ref = ctx.ref("x", 0)
    ref.on_change(lambda event: None)
    stream = ref.changes()
    lock = ctx.lock("held", ttl=5)
    lock.acquire()
    ref.set(1, ttl=60)
    assert set(_new_dref_threads(before)) == {
        "dref-local-expiry",
        "dref-on-change:x",
        "dref-lock-keepalive",  # one per context, for all its locks
    }
    ctx.close()
    assert stream.closed
    wait_until(lambda: not _new_dref_threads(before), timeout=10)


def test_every_call_after_close_raises_context_closed(ctx: dref.Context) -> None:
    ref = ctx.ref("after", 0)
    ctx.close()
    ctx.close()  # idempotent
    assert ctx.closed
    for call in (
        ref.get,
        lambda: ref.set(1),
        lambda: ref.update(lambda n: n + 1),
        ref.changes,
        lambda: ctx.ref("new", 0),
        lambda: ctx.lock("l"),
        lambda: ctx.backend.get("after"),
    ):
        with pytest.raises(ContextClosedError):
            call()


def test_context_manager_closes(wait_until) -> None:
    before = set(threading.enumerate())
    with dref.local(default_ttl=1.5) as ctx:
        assert ctx.backend.default_ttl == 1.5
        with ctx.lock("x") as lock:
            assert lock.ttl == 1.5
    assert ctx.closed
    wait_until(lambda: not _new_dref_threads(before), timeout=10)


def test_local_options_are_validated() -> None:
    with pytest.raises(dref.ConfigError):
        dref.local(default_ttl=0)
    with pytest.raises(dref.ConfigError):
        dref.local(max_value_size=-1)


def test_package_exports_the_documented_names() -> None:
    for name in (
        "local", "Context", "DRef", "Lock", "Changed", "Deleted", "Lagged", "ChangeStream",
        "Subscription", "MsgPackCodec", "JsonCodec", "Codec", "DRefError", "NotFoundError",
        "DRefTimeoutError", "LockTimeoutError", "LockStolenError", "CodecError",
        "ValueTooLargeError", "BackendUnavailableError", "ContextClosedError", "ConfigError",
        "StorageError",
    ):
        assert hasattr(dref, name), name
