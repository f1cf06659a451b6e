"""One entry per kind of golden vector: how our encoder turns a case into bytes, and how our
decoder's reading of the bytes is compared with the case. Used by both `generate` and `check`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dref.storage.command_log import LogRecord, decode_command_log, encode_command_log
from dref.storage.state_snapshot import decode_state_snapshot, encode_state_snapshot
from dref.storage.voter_state import VoterState, decode_voter_state, encode_voter_state
from dref.wire.change_payload import ChangePayload, decode_change_payload, encode_change_payload
from dref.wire.lock_token import decode_lock_token, encode_lock_token
from dref.wire.msgpack_codec import MsgPackCodec
from dref.wire.proto import dref_consensus_pb2, raft_pb2, state_command_pb2


@dataclass(frozen=True)
class VectorKind:
    """How to produce and read back the bytes of one kind of vector.

    Both callables take the vector's name and its case. `hex_field` names the JSON field
    holding the bytes; `decoded` describes how the decoded bytes differ from the case, or
    returns None when they agree.
    """

    hex_field: str
    encode: Callable[[str, dict[str, Any]], bytes]
    decoded: Callable[[str, dict[str, Any], bytes], str | None]


def _differs(what: str, got: object, want: object) -> str | None:
    return None if got == want else f"{what}: decoded {got!r}, expected {want!r}"


def _hex(case: dict[str, Any], field: str = "value_hex") -> bytes:
    return bytes.fromhex(case.get(field) or "")


# --- vectors.json ---------------------------------------------------------------------

LOCK_VALUE = VectorKind(
    "hex",
    lambda _, c: encode_lock_token(c["value"]),
    lambda _, c, data: _differs("token", decode_lock_token(data), c["value"]),
)

MSGPACK = VectorKind(
    "hex",
    lambda _, c: MsgPackCodec(style=c.get("style", "rust")).encode(c["value"]),
    lambda _, c, data: _differs("value", MsgPackCodec().decode(data), c["value"]),
)


def _change_payload(case: dict[str, Any]) -> ChangePayload:
    return ChangePayload(name=case["name"].encode(), value=_hex(case), delete=case["delete"])


CHANGE_PAYLOAD = VectorKind(
    "payload_hex",
    lambda _, c: encode_change_payload(_change_payload(c), style=c.get("style", "rust")),
    lambda _, c, data: _differs("payload", decode_change_payload(data), _change_payload(c)),
)

# --- consensus_vectors.json -----------------------------------------------------------

_STATE_COMMAND_OPS = (  # longest first, so "set_element_if_not_exist" wins over "set_element"
    "set_element_if_not_exist",
    "set_element",
    "delete_element",
    "expire_element",
    "delete_if_expired",
    "start_new_term",
)


def state_command_op(vector_name: str) -> str:
    """The StateCommand op a vector named `state_command_<op>[_variant]` holds."""
    rest = vector_name.removeprefix("state_command_")
    for op in _STATE_COMMAND_OPS:
        if rest == op or rest.startswith(op + "_"):
            return op
    raise ValueError(f"no StateCommand op in vector name {vector_name!r}")


def _state_command(vector_name: str, case: dict[str, Any]) -> state_command_pb2.StateCommand:
    op = state_command_op(vector_name)
    command = state_command_pb2.StateCommand()
    if op in ("set_element", "set_element_if_not_exist"):
        inner = getattr(command, op)
        inner.name = case["name"]
        inner.value = _hex(case)
        if case.get("expire_at") is not None:
            inner.expire_at = case["expire_at"]
    elif op == "delete_element":
        command.delete_element.name = case["name"]
    elif op == "expire_element":
        command.expire_element.name = case["name"]
        command.expire_element.expire_at = case["expire_at"]
    elif op == "delete_if_expired":
        command.delete_if_expired.name = case["name"]
        command.delete_if_expired.now = case["now"]
    else:
        command.start_new_term.SetInParent()
    return command


def _parsed_state_command(data: bytes) -> state_command_pb2.StateCommand:
    command = state_command_pb2.StateCommand()
    command.ParseFromString(data)
    return command


STATE_COMMAND = VectorKind(
    "payload_hex",
    lambda n, c: _state_command(n, c).SerializeToString(deterministic=True),
    lambda n, c, data: _differs("command", _parsed_state_command(data), _state_command(n, c)),
)


def _kv_entry(entry: dict[str, Any]) -> raft_pb2.KVEntry:
    kv = raft_pb2.KVEntry(key=entry["key"], value=_hex(entry))
    if entry.get("expire_at") is not None:
        kv.expireAt = entry["expire_at"]
    return kv


def _cluster_snapshot(case: dict[str, Any]) -> dref_consensus_pb2.ClusterSnapshot:
    entries = case.get("entries", [case])
    return dref_consensus_pb2.ClusterSnapshot(
        entries=[_kv_entry(e) for e in entries], last_seq=case.get("last_seq", 0)
    )


def _parsed_cluster_snapshot(data: bytes) -> dref_consensus_pb2.ClusterSnapshot:
    snapshot = dref_consensus_pb2.ClusterSnapshot()
    snapshot.ParseFromString(data)
    return snapshot


CLUSTER_SNAPSHOT = VectorKind(
    "payload_hex",
    lambda _, c: _cluster_snapshot(c).SerializeToString(deterministic=True),
    lambda _, c, data: _differs("snapshot", _parsed_cluster_snapshot(data), _cluster_snapshot(c)),
)

# --- the three file formats -----------------------------------------------------------

STATE_SNAPSHOT_FILE = VectorKind(
    "hex",
    lambda _, c: encode_state_snapshot(_cluster_snapshot(c)),
    lambda n, c, data: _differs("snapshot", decode_state_snapshot(data, n), _cluster_snapshot(c)),
)

VOTER_STATE_FILE = VectorKind(
    "hex",
    lambda _, c: encode_voter_state(VoterState(term=c["term"], voted_for=c["voted_for"])),
    lambda n, c, data: _differs(
        "voter state",
        decode_voter_state(data, n),
        VoterState(term=c["term"], voted_for=c["voted_for"]),
    ),
)


def _log_records(case: dict[str, Any]) -> list[LogRecord]:
    if "records" in case:
        return [LogRecord(r["seq"], _hex(r, "command_payload_hex")) for r in case["records"]]
    if "seq" in case:
        return [LogRecord(case["seq"], _hex(case, "command_payload_hex"))]
    return []


def _command_log_bytes(_: str, case: dict[str, Any]) -> bytes:
    return encode_command_log(case["commit_seq"], _log_records(case)) + _hex(case, "torn_tail_hex")


def _command_log_differs(name: str, case: dict[str, Any], data: bytes) -> str | None:
    loaded = decode_command_log(data, name)
    want_records = {r.seq: r.command for r in _log_records(case)}
    want_torn = bool(case.get("torn_tail_hex"))
    return (
        _differs("commit_seq", loaded.commit_seq, case["commit_seq"])
        or _differs("records", dict(loaded.records), want_records)
        or _differs("torn tail reported", loaded.torn_tail is not None, want_torn)
    )


COMMAND_LOG_FILE = VectorKind("hex", _command_log_bytes, _command_log_differs)


def kind_of_keyed_vector(name: str) -> VectorKind | None:
    """The kind of a vector in `vectors.json` or `consensus_vectors.json`, by its name.

    None for plain constants (such as `redis_crosslang_key`), which carry no bytes.
    """
    if name.startswith("lock_value"):
        return LOCK_VALUE
    if name.startswith("msgpack_"):
        return MSGPACK
    if name.startswith("change_payload_"):
        return CHANGE_PAYLOAD
    if name.startswith("state_command_"):
        return STATE_COMMAND
    if name.startswith("cluster_snapshot_"):
        return CLUSTER_SNAPSHOT
    if name.startswith("redis_"):
        return None
    raise ValueError(f"unknown vector kind for {name!r}")


LISTED_FILES: dict[str, VectorKind] = {
    "snapshot_vectors.json": STATE_SNAPSHOT_FILE,
    "voter_state_vectors.json": VOTER_STATE_FILE,
    "command_log_vectors.json": COMMAND_LOG_FILE,
}
KEYED_FILES = ("vectors.json", "consensus_vectors.json")
