"""NodeConfig validation and upstream's DREF_* environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from dref.errors import ConfigError
from dref.raft.config import NodeConfig


def make(tmp_path: Path, **changes: object) -> NodeConfig:
    options: dict[str, object] = {
        "node_id": "a",
        "listen": "127.0.0.1:0",
        "peers": {"b": "127.0.0.1:7001"},
        "data_dir": tmp_path,
        **changes,
    }
    return NodeConfig(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"node_id": ""},
        {"listen": "no-port"},
        {"peers": {"a": "127.0.0.1:7001"}},
        {"peers": {"b": "127.0.0.1:0"}},
        {"election_timeout": 0.05, "heartbeat_interval": 0.1},
        {"max_clock_drift": 2.0},
        {"snapshot_every": -1},
        {"rpc_timeout": 0},
        {"keepalive_interval": 0},
    ],
)
def test_invalid_settings_raise_config_error(tmp_path: Path, changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        make(tmp_path, **changes)


def test_defaults_and_path_coercion(tmp_path: Path) -> None:
    config = make(tmp_path, data_dir=str(tmp_path))
    assert config.data_dir == tmp_path
    assert (config.heartbeat_interval, config.election_timeout, config.rpc_timeout) == (0.1, 1.0, 2)
    assert config.upstream_files and config.snapshot_every == 10_000


def test_from_env_reads_upstream_variables(tmp_path: Path) -> None:
    env = {"DREF_PORT": "9000", "DREF_NODE_ADDRESSES": " 10.0.0.1, 10.0.0.2 ,,10.0.0.3"}
    config = NodeConfig.from_env(tmp_path, bind_host="10.0.0.2", environ=env)
    assert config.node_id == "10.0.0.2"
    assert config.listen == "10.0.0.2:9000"
    assert config.peers == {"10.0.0.1": "10.0.0.1:9000", "10.0.0.3": "10.0.0.3:9000"}
    default = NodeConfig.from_env(tmp_path, environ={})
    assert default.listen == "127.0.0.1:8082" and default.peers == {}
    with pytest.raises(ConfigError):
        NodeConfig.from_env(tmp_path, environ={"DREF_PORT": "x"})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DREF_PORT": "65536"}, "DREF_PORT must be a port number 0-65535, got '65536'"),
        ({"DREF_NODE_ADDRESSES": "10.0.0.1, db"}, "'db' is not one"),
        ({"DREF_PORTS": "9000"}, "unknown variable DREF_PORTS; did you mean DREF_PORT?"),
    ],
)
def test_from_env_names_a_bad_variable(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        NodeConfig.from_env(tmp_path, environ=environ)


def test_from_env_leaves_other_programs_dref_variables_alone(tmp_path: Path) -> None:
    environ = {"DREF_ENDPOINTS": "127.0.0.1:7001", "DREF_BACKEND": "raft", "DREF_PORT": "9000"}
    config = NodeConfig.from_env(tmp_path, environ=environ, node_id="n1")
    assert config.listen == "127.0.0.1:9000"
