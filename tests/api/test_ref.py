"""Every DRef operation, on every backend."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import dref
from dref import Changed, Deleted, NotFoundError


@dataclass
class Flags:
    dark_mode: bool
    limit: int


def test_ref_creates_only_if_absent(ctx: dref.Context) -> None:
    first = ctx.ref("counter", 1)
    second = ctx.ref("counter", 99)
    assert first.get() == 1
    assert second.get() == 1
    assert second.name == "counter"


def test_ref_needs_an_initial_value(ctx: dref.Context) -> None:
    with pytest.raises(TypeError):
        ctx.ref("no-initial")  # type: ignore[call-overload]


def test_get_of_absent_value_raises_not_found_with_upstream_message(ctx: dref.Context) -> None:
    ref = ctx.ref("gone", 1)
    ref.delete()
    with pytest.raises(NotFoundError, match="^Element gone not found$") as info:
        ref.get()
    assert info.value.name == "gone"
    assert isinstance(info.value, LookupError)
    assert ref.get_or("fallback") == "fallback"
    assert ref.revision() is None


def test_set_returns_growing_revisions_and_get_sees_the_value(ctx: dref.Context) -> None:
    ref = ctx.ref("v", "a")
    revisions = [ref.set(letter) for letter in "bcdef"]
    assert revisions == sorted(set(revisions))
    assert ref.get() == "f"
    assert ref.revision() == revisions[-1]


def test_delete_returns_a_newer_revision_even_for_an_absent_value(ctx: dref.Context) -> None:
    ref = ctx.ref("del", 0)
    written = ref.set(5)
    first = ref.delete()
    second = ref.delete()
    assert written < first < second


def test_set_if_not_exist(ctx: dref.Context) -> None:
    ref = ctx.ref("once", 1)
    assert ref.set_if_not_exist(2) is False
    assert ref.get() == 1
    ref.delete()
    assert ref.set_if_not_exist(3) is True
    assert ref.get() == 3


def test_dataclass_values_round_trip(ctx: dref.Context) -> None:
    ref = ctx.ref("flags", Flags(dark_mode=False, limit=3))
    ref.update(lambda f: Flags(dark_mode=True, limit=f.limit + 1))
    assert ref.get() == Flags(dark_mode=True, limit=4)


def test_json_codec_can_be_plugged_in(ctx: dref.Context) -> None:
    ref = ctx.ref("json", {"k": [1, 2]}, codec=dref.JsonCodec())
    entry = ctx.backend.get("json")
    assert entry is not None and entry.value == b'{"k":[1,2]}'
    assert ref.get() == {"k": [1, 2]}


def test_modify_returns_the_result_and_stores_the_new_value(ctx: dref.Context) -> None:
    ref = ctx.ref("m", 10)
    assert ref.modify(lambda n: (f"was {n}", n * 2)) == "was 10"
    assert ref.get() == 20


def test_update_variants(ctx: dref.Context) -> None:
    ref = ctx.ref("u", 1)
    ref.update(lambda n: n + 1)
    assert ref.get_and_update(lambda n: n * 10) == 2
    assert ref.update_and_get(lambda n: n + 5) == 25
    assert ref.get() == 25


def test_modify_of_absent_value_raises_not_found(ctx: dref.Context) -> None:
    ref = ctx.ref("absent", 1)
    ref.delete()
    with pytest.raises(NotFoundError):
        ref.update(lambda n: n + 1)


def test_modify_retries_when_the_value_changed_under_it(ctx: dref.Context) -> None:
    ref = ctx.ref("retry", 0)
    calls: list[int] = []

    def f(n: int) -> int:
        calls.append(n)
        if len(calls) == 1:
            ref.set(100)  # a concurrent writer sneaks in between read and write
        return n + 1

    ref.update(f)
    assert calls == [0, 100]
    assert ref.get() == 101


def test_modify_gives_up_after_its_timeout(ctx: dref.Context) -> None:
    ref = ctx.ref("contended", 0)

    def always_conflicts(n: int) -> int:
        ref.set(n + 1)
        return n

    with pytest.raises(dref.DRefTimeoutError):
        ref.update(always_conflicts, timeout=0.2)


def test_set_with_ttl_expires_and_emits_deleted(ctx: dref.Context, wait_until) -> None:
    ref = ctx.ref("ttl", 0)
    with ref.changes(timeout=10) as stream:
        written = ref.set(7, ttl=0.2)
        assert ref.get() == 7
        assert stream.get(5) == Changed(7, written)
        wait_until(lambda: ref.get_or(None) is None, timeout=10)
        event = stream.get(10)
    assert isinstance(event, Deleted)
    assert event.revision == 0 or event.revision > written  # 0: backend cannot know it


def test_set_without_ttl_clears_an_earlier_ttl(ctx: dref.Context) -> None:
    ref = ctx.ref("clear-ttl", 0)
    ref.set(1, ttl=0.2)
    ref.set(2)
    with ref.changes(timeout=0.5) as stream:
        assert list(stream) == []  # no expiry event within well past the old deadline
    assert ref.get() == 2


def test_auto_names_are_deterministic_per_call_site(ctx: dref.Context) -> None:
    names = [ctx.ref(None, i).name for i in range(2)]  # one call site, two calls
    other = ctx.ref(initial=0)
    assert names[0] == names[1]
    assert other.name != names[0]
    assert names[0].startswith(f"{__name__}:")
    assert ctx.ref(None, 5).get() == 5


def test_value_too_large_is_refused_and_leaves_the_value(ctx: dref.Context) -> None:
    ref = ctx.ref("big", "small")
    limit = ctx.backend.max_value_size
    with pytest.raises(dref.ValueTooLargeError):
        ctx.backend.set("big", b"x" * (limit + 1))
    assert ref.get() == "small"


def test_lock_name_for_is_upstreams_modify_lock() -> None:
    assert dref.Context.lock_name_for("counter") == "lock:counter"
