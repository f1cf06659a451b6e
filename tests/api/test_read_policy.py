"""`ref.get(policy=...)` and a context's default read policy, on every backend."""

from __future__ import annotations

import pytest

import dref
from dref.errors import ConfigError


@pytest.mark.parametrize("policy", ["linearizable", "lease"])
def test_fresh_policies_see_the_last_acknowledged_write(ctx, policy):
    counter = ctx.ref("policy-counter", 0)
    for value in range(1, 6):
        counter.set(value)
        assert counter.get(policy=policy) == value
        assert counter.revision(policy=policy) is not None


def test_a_stale_read_sees_an_acknowledged_value_or_an_earlier_one(ctx):
    flag = ctx.ref("policy-flag", "off")
    flag.set("on")
    assert flag.get(policy="stale") in {"off", "on"}
    assert flag.get_or("absent", policy="stale") in {"off", "on"}


def test_an_unknown_policy_is_a_config_error_naming_the_valid_ones(ctx):
    ref = ctx.ref("policy-bad", 1)
    with pytest.raises(ConfigError, match="'linearizable', 'lease', 'stale'"):
        ref.get(policy="fast")


def test_a_context_default_applies_when_get_names_none():
    with dref.local(read_policy="lease") as ctx:
        assert ctx.read_policy == "lease"
        ref = ctx.ref("x", 3)
        assert ref.get() == 3
    with pytest.raises(ConfigError, match="read policy"):
        dref.local(read_policy="sometimes")
