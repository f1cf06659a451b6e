"""The `dref node --config FILE` file: TOML (JSON for a `.json` name) with the keys below.

Every key and type is checked before anything starts, so a typo such as `heartbeet_ms`
is a ConfigError naming the key (and the key it was probably meant to be), not a setting
silently ignored.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dref.errors import ConfigError


@dataclass(frozen=True)
class _Type:
    """What a key's value must be: `name` for messages, `accepts` to check a value."""

    name: str
    accepts: Callable[[object], bool]


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_STRING = _Type("a string", lambda value: isinstance(value, str))
_INTEGER = _Type("an integer", _is_integer)
_PEERS = _Type('a table of peer id = "host:port"', lambda value: isinstance(value, dict))

KEYS: dict[str, _Type] = {
    "node_id": _STRING,
    "id": _STRING,  # the older spelling of node_id
    "listen": _STRING,
    "peers": _PEERS,
    "data_dir": _STRING,
    "heartbeat_ms": _INTEGER,
    "election_ms": _INTEGER,
    "snapshot_every": _INTEGER,
    "keepalive_ms": _INTEGER,
    "address_poll_ms": _INTEGER,
    "peer_transport": _STRING,
    "peer_listen": _STRING,
    "peer_sockets": _PEERS,
    "unix_socket": _STRING,
    "metrics_listen": _STRING,
    "tls_cert": _STRING,
    "tls_key": _STRING,
    "tls_ca": _STRING,
    "roles": _Type('a table of name = "read", "write" or "admin"', lambda v: isinstance(v, dict)),
}
"""Every key a config file may hold, and the type of its value."""


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in `path`; ConfigError naming the file and the problem (unreadable,
    not TOML/JSON, an unknown key, a value of the wrong type)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import tomllib  # Python 3.11+

            data = tomllib.loads(text)
    except ImportError:
        raise ConfigError("TOML config needs Python 3.11+; use a .json file") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a table/object")
    for key, value in data.items():
        _check(path, key, value)
    return data


def _check(path: Path, key: str, value: object) -> None:
    """ConfigError unless `key` is known and `value` has its type."""
    expected = KEYS.get(key)
    if expected is None:
        close = difflib.get_close_matches(key, KEYS, n=1)
        if close:
            hint = f"did you mean {close[0]!r} ({KEYS[close[0]].name})?"
        else:
            hint = f"the keys are {', '.join(KEYS)}"
        raise ConfigError(f"{path}: unknown key {key!r}; {hint}")
    if not expected.accepts(value):
        raise ConfigError(f"{path}: {key} must be {expected.name}, got {_describe(value)}")
    if isinstance(value, dict):  # peers: each address a string too
        for peer_id, address in value.items():
            if not isinstance(address, str):
                raise ConfigError(
                    f"{path}: peers.{peer_id} must be a string 'host:port',"
                    f" got {_describe(address)}"
                )


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def _describe(value: object) -> str:
    """`value` for an error message: its kind and its repr."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"an array {value!r}"
    return f"{_TYPE_NAMES.get(type(value), type(value).__name__)} {value!r}"
