"""DREF_NODE_SERVICES discovery keeps up with DNS: membership follows the name's answers.

Real DNS answers come from /etc/hosts inside a private network and mount namespace
(`unshare`), where `discovery_cluster.py` runs real `dref node` processes at 127.0.0.1-4
and rewrites the name's addresses; the test is skipped where namespaces cannot be made.
The poll logic's edge cases (a failing name, a one-poll blip) run in-process with a
resolver standing in for DNS.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dref.errors import ConfigError
from dref.raft.discovery import DEPARTURE_POLLS, ServiceDiscovery
from testkit.namespaces import namespaces_work, run_with_own_hosts

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_membership_follows_the_service_name(tmp_path: Path) -> None:
    if not namespaces_work():
        pytest.skip("cannot create user, mount and network namespaces here (unshare -rmn)")
    result, logs = run_with_own_hosts(HERE / "discovery_cluster.py", tmp_path, 240)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{logs}"
    assert "discovery ok" in result.stdout


class FakeNode:
    """The membership calls of a node, recorded: the leader's side of discovery."""

    def __init__(self, voters: set[str]) -> None:
        self.node_id = "10.0.0.1"
        self.is_leader = True
        self.voters = set(voters)
        self.calls: list[tuple[str, str]] = []

    def members(self) -> object:
        from dref.actors.admin_requests import MembersView
        from dref.actors.consensus.membership import Membership

        return MembersView(Membership.of(self.voters | {self.node_id}), True, {})

    def add_voter(self, node_id: str, address: str, *, timeout: float = 0) -> None:
        self.calls.append(("add", f"{node_id}={address}"))
        self.voters.add(node_id)

    def remove(self, node_id: str, *, timeout: float = 0) -> None:
        self.calls.append(("remove", node_id))
        self.voters.discard(node_id)


class Answers:
    """A resolver standing in for DNS: `answers[name]` is a list, or an error to raise."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str] | None] = {}

    def __call__(self, name: str) -> list[str]:
        answer = self.answers.get(name)
        if answer is None:
            raise ConfigError(f"cannot resolve DREF_NODE_SERVICES name {name!r}")
        return answer


def _discovery(node: FakeNode, answers: Answers) -> ServiceDiscovery:
    return ServiceDiscovery(
        node,
        ["svc"],
        8082,
        1.0,
        own_host="10.0.0.1",
        resolve=answers,  # type: ignore[arg-type]
    )


def test_a_new_address_is_added_one_change_per_poll() -> None:
    node, answers = FakeNode({"10.0.0.2"}), Answers()
    answers.answers["svc"] = ["10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.3"]
    discovery = _discovery(node, answers)
    discovery.poll()
    assert node.calls == [("add", "10.0.0.3=10.0.0.3:8082")]
    discovery.poll()
    assert node.calls[1:] == [("add", "10.0.0.4=10.0.0.4:8082")]
    discovery.poll()
    assert len(node.calls) == 2


def test_a_voter_is_removed_only_after_missing_several_polls_in_a_row() -> None:
    node, answers = FakeNode({"10.0.0.2", "10.0.0.3"}), Answers()
    discovery = _discovery(node, answers)
    answers.answers["svc"] = ["10.0.0.1", "10.0.0.2"]
    for _ in range(DEPARTURE_POLLS - 1):
        discovery.poll()
    answers.answers["svc"] = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]  # a blip, then back
    discovery.poll()
    answers.answers["svc"] = ["10.0.0.1", "10.0.0.2"]
    for _ in range(DEPARTURE_POLLS - 1):
        discovery.poll()
    assert node.calls == []
    discovery.poll()
    assert node.calls == [("remove", "10.0.0.3")]


def test_a_failing_name_keeps_its_last_answer_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node, answers = FakeNode({"10.0.0.2"}), Answers()
    discovery = _discovery(node, answers)
    answers.answers["svc"] = ["10.0.0.1", "10.0.0.2"]
    discovery.poll()
    answers.answers["svc"] = None
    with caplog.at_level(logging.WARNING, logger="dref.raft.discovery"):
        for _ in range(DEPARTURE_POLLS + 2):
            discovery.poll()
    assert node.calls == []  # nobody removed while DNS fails
    warnings = [r for r in caplog.records if "cannot resolve" in r.getMessage()]
    assert len(warnings) == 1


def test_a_follower_changes_nothing() -> None:
    node, answers = FakeNode({"10.0.0.2"}), Answers()
    node.is_leader = False
    answers.answers["svc"] = ["10.0.0.1", "10.0.0.3"]
    discovery = _discovery(node, answers)
    for _ in range(DEPARTURE_POLLS + 1):
        discovery.poll()
    assert node.calls == []
