"""Misuse gets a ConfigError that names the cause, at once: bad peers and addresses, a
port in use, a data directory that is a file, a missing extra."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import dref
from dref.errors import ConfigError


@pytest.fixture
def busy_address() -> Iterator[str]:
    """An address something already listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def embedded(tmp_path, **overrides):
    arguments = {
        "node_id": "a",
        "listen": "127.0.0.1:0",
        "peers": {"b": "127.0.0.1:1", "c": "127.0.0.1:2"},
        "data_dir": tmp_path / "a",
        **overrides,
    }
    return dref.raft(**arguments)


def quickly(call, match: str, within: float = 1.0) -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError, match=match):
        call()
    assert time.monotonic() - started < within


def test_a_peer_address_without_a_port_is_named(tmp_path):
    quickly(lambda: embedded(tmp_path, peers={"b": "nohost"}), "peer 'b' must be 'host:port'")


def test_peers_given_as_a_list_are_refused_with_the_expected_shape(tmp_path):
    quickly(lambda: embedded(tmp_path, peers=["b", "c"]), "peers must map .* got a list")


def test_a_data_directory_that_is_a_file_is_named(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a directory")
    quickly(lambda: embedded(tmp_path, data_dir=path), "is a file, not a directory")


def test_an_embedded_node_on_a_port_in_use_says_so_in_process(tmp_path, busy_address):
    quickly(lambda: embedded(tmp_path, listen=busy_address, isolate=False), "cannot listen on")


def test_an_isolated_node_on_a_port_in_use_reports_the_child_error(tmp_path, busy_address):
    # A child Python process starts first: allow for that on a loaded box.
    quickly(lambda: embedded(tmp_path, listen=busy_address), "port is in use", within=20.0)


def test_client_addresses_must_be_a_list_of_host_and_port():
    quickly(lambda: dref.raft_client("127.0.0.1:17001"), r"list of 'host:port'.*\[")
    quickly(lambda: dref.raft_client(["localhost"]), "must be 'host:port', got 'localhost'")
    quickly(lambda: dref.raft_client([]), "at least one node")


def test_a_missing_redis_extra_names_the_install_command():
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import dref\n"
        "try:\n    dref.redis('redis://127.0.0.1:1')\n"
        "except dref.ConfigError as exc:\n    print(exc)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'dref-py[redis]'" in run.stdout


def test_a_second_node_never_shares_the_port_of_a_live_one(tmp_path):
    from dref.raft.config import NodeConfig
    from dref.raft.kv_node import KeyValueNode

    first = KeyValueNode(NodeConfig("a", "127.0.0.1:0", {"b": "127.0.0.1:1"}, tmp_path / "a"))
    try:
        quickly(
            lambda: embedded(
                tmp_path, listen=first.address, data_dir=tmp_path / "b", isolate=False
            ),
            "cannot listen on",
        )
    finally:
        first.close()
