"""`dref node` refuses what it must not run, at once and in one line on stderr with exit
status 1: a data directory another node holds (naming its pid; free again once that node is
SIGKILLed), a directory of another node id, a port in use, a config file with an unknown
key or a value of the wrong type, and bad DREF_* variables."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dref.raft.node_process import NodeProcess, free_ports
from testkit.dref_command import cli_env, run_dref

REFUSAL_WITHIN = 20.0
"""Seconds a refused `dref node` may take, interpreter start on a loaded machine included
(a node that did start would run until killed)."""


@pytest.fixture
def nodes() -> Iterator[list[NodeProcess]]:
    """`dref node` processes started by a test; all stopped at its end."""
    started: list[NodeProcess] = []
    yield started
    for node in started:
        node.kill()


def start_node(node_id: str, data_dir: Path, nodes: list[NodeProcess]) -> NodeProcess:
    """A serving one-node `dref node` on a free port."""
    (port,) = free_ports(1)
    arguments = ["node", "--id", node_id, "--listen", f"127.0.0.1:{port}"]
    node = NodeProcess([*arguments, "--data-dir", str(data_dir)], log=data_dir.parent / "log")
    nodes.append(node)
    return node


def refused(*args: str, env: dict[str, str] | None = None) -> str:
    """The one stderr line of a `dref node ARGS` that must fail at once with status 1."""
    started = time.monotonic()
    result = run_dref("node", *args, env=env, timeout=REFUSAL_WITHIN)
    assert time.monotonic() - started < REFUSAL_WITHIN
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert result.stderr.startswith("dref node: ") and result.stderr.count("\n") == 1
    return result.stderr.rstrip("\n")


def test_a_second_node_on_a_directory_names_the_first_ones_pid_until_it_is_killed(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    data = tmp_path / "n1"
    first = start_node("n1", data, nodes)
    (port,) = free_ports(1)
    line = refused("--id", "n1", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data))
    assert line == (
        f"dref node: data directory {data} is in use by pid {first.process.pid};"
        " one node at a time may use it"
    )
    first.kill()  # SIGKILL: the kernel releases the lock
    second = start_node("n1", data, nodes)
    assert second.alive


def test_a_directory_of_n1_started_as_n3_is_refused_naming_both(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    data = tmp_path / "n1"
    assert start_node("n1", data, nodes).stop() == 0
    (port,) = free_ports(1)
    line = refused("--id", "n3", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data))
    assert f"data directory {data} belongs to node 'n1', not 'n3'" in line


def test_a_second_node_on_a_port_in_use_fails_at_once(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    first = start_node("n1", tmp_path / "n1", nodes)
    line = refused("--id", "n2", "--listen", first.address, "--data-dir", str(tmp_path / "n2"))
    assert line == f"dref node: cannot listen on {first.address}: the port is in use"
    assert first.alive


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "node.toml",
            "heartbeet_ms = 50\n",
            "unknown key 'heartbeet_ms'; did you mean 'heartbeat_ms' (an integer)?",
        ),
        ("node.toml", "colour = 'blue'\n", "unknown key 'colour'; the keys are node_id, id,"),
        ("node.toml", 'heartbeat_ms = "50"\n', "heartbeat_ms must be an integer, got a string"),
        ("node.toml", "election_ms = 0.5\n", "election_ms must be an integer, got a number 0.5"),
        (
            "node.json",
            '{"snapshot_every": true}',
            "snapshot_every must be an integer, got a boolean True",
        ),
        ("node.json", '{"listen": 7001}', "listen must be a string, got an integer 7001"),
        ("node.json", '{"peers": ["n2"]}', 'peers must be a table of peer id = "host:port"'),
        ("node.json", '{"peers": {"n2": 7002}}', "peers.n2 must be a string 'host:port'"),
    ],
)
def test_a_config_file_with_a_wrong_key_or_type_names_it(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    config = tmp_path / name
    config.write_text(content)
    line = refused("--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert line.startswith(f"dref node: {config}: {message}")
    assert not (tmp_path / "d").exists()  # refused before anything was created


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"DREF_PORT": "http"}, "DREF_PORT must be a port number 0-65535, got 'http'"),
        ({"DREF_PORT": "70000"}, "DREF_PORT must be a port number 0-65535, got '70000'"),
        (
            {"DREF_NODE_ADDRESSES": "10.0.0.1,node-b"},
            "DREF_NODE_ADDRESSES must be a comma-separated list of IP addresses;"
            " 'node-b' is not one (DNS names go in DREF_NODE_SERVICES)",
        ),
        (
            {"DREF_NODE_ADRESSES": "10.0.0.1"},
            "unknown variable DREF_NODE_ADRESSES; did you mean DREF_NODE_ADDRESSES?",
        ),
    ],
)
def test_bad_dref_variables_are_named(
    tmp_path: Path, variables: dict[str, str], message: str
) -> None:
    line = refused("--data-dir", str(tmp_path / "d"), env=cli_env(**variables))
    assert line == f"dref node: {message}"
