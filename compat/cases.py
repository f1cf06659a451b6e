"""The values behind our golden vectors: upstream's cases plus the ones upstream lacks.

Each case is plain data in the same JSON shape as upstream's five vector files; the
generator adds the bytes our encoders produce. Upstream lacks: byte values >= 0x80 in
both MsgPack styles, str8/str16 strings, negative ints, nested records, every
StateCommand op, multi-entry snapshots, and command logs with several records or a torn tail.
"""

from __future__ import annotations

from typing import Any

CROSSLANG_KEY = "dref:compat:crosslang-test"

HIGH_BYTES = "7f80dfe0ff00"
"""Byte values on both sides of every MsgPack sign boundary (spec 2.4)."""

# vectors.json: keyed entries; the key prefix names the encoder (lock_value, msgpack_,
# change_payload_, redis_).
VALUE_CASES: dict[str, Any] = {
    "lock_value": {"value": 42},
    "lock_value_negative": {"value": -2},
    "lock_value_crosslang": {"value": 0x1234567890ABCDEF},
    "change_payload_set": {"name": "my-key", "value_hex": "010203", "delete": False},
    "change_payload_delete": {"name": "my-key", "delete": True},
    "change_payload_high_bytes_rust": {
        "name": "k",
        "value_hex": HIGH_BYTES,
        "delete": False,
        "style": "rust",
    },
    "change_payload_high_bytes_scala": {
        "name": "k",
        "value_hex": HIGH_BYTES,
        "delete": False,
        "style": "scala",
    },
    "change_payload_record_value_scala": {
        "name": "interop-chat-message",
        "value_hex": "82a46e616d65a0a76d657373616765a0",
        "delete": False,
        "style": "scala",
    },
    "msgpack_string_hello": {"value": "hello"},
    "msgpack_wrapper_hello": {"value": {"value": "hello"}},
    "msgpack_string_str8": {"value": "s" * 40},
    "msgpack_string_str16": {"value": "é" * 200},
    "msgpack_negative_fixint": {"value": -32},
    "msgpack_negative_int8": {"value": -33},
    "msgpack_negative_int16": {"value": -129},
    "msgpack_negative_int32": {"value": -32769},
    "msgpack_negative_int64": {"value": -2147483649},
    "msgpack_uint64": {"value": 18446744073709551615},
    "msgpack_nested_record": {
        "value": {"name": "job", "owner": {"id": 7, "active": True}, "tags": ["a", "b"]}
    },
    "msgpack_interop_chat_message": {"value": {"name": "", "message": ""}},
    "redis_crosslang_key": CROSSLANG_KEY,
}

_EXPIRE = 1700000000

# consensus_vectors.json: "state_command_<op>[_variant]" and "cluster_snapshot_<variant>".
CONSENSUS_CASES: dict[str, Any] = {
    "state_command_set_element": {"name": "my-key", "value_hex": "010203", "expire_at": _EXPIRE},
    "state_command_delete_element": {"name": "my-key"},
    "state_command_set_element_no_expiry": {"name": "my-key", "value_hex": "010203"},
    "state_command_set_element_if_not_exist": {
        "name": "lock:my-key",
        "value_hex": "000000000000002a",
        "expire_at": _EXPIRE,
    },
    "state_command_expire_element": {"name": "lock:my-key", "expire_at": _EXPIRE},
    "state_command_delete_if_expired": {"name": "lock:my-key", "now": _EXPIRE},
    "state_command_start_new_term": {},
    "cluster_snapshot_single_entry": {
        "key": "shared-key",
        "value_hex": "6869",
        "expire_at": _EXPIRE,
    },
}

# snapshot_vectors.json, voter_state_vectors.json, command_log_vectors.json: lists.
SNAPSHOT_CASES: list[dict[str, Any]] = [
    {"name": "empty_snapshot", "entries": []},
    {
        "name": "single_entry_key_a_value_01",
        "entries": [{"key": "a", "value_hex": "01", "expire_at": None}],
    },
    {
        "name": "single_entry_key_a_value_01_last_seq_42",
        "entries": [{"key": "a", "value_hex": "01", "expire_at": None}],
        "last_seq": 42,
    },
    {
        "name": "three_entries_with_expiry_last_seq_1000",
        "entries": [
            {"key": "a", "value_hex": "01", "expire_at": None},
            {"key": "lock:a", "value_hex": "000000000000002a", "expire_at": _EXPIRE},
            {"key": "empty", "value_hex": "", "expire_at": None},
        ],
        "last_seq": 1000,
    },
]

VOTER_STATE_CASES: list[dict[str, Any]] = [
    {"name": "term_7_no_vote", "term": 7, "voted_for": None},
    {"name": "term_42_voted_node_7", "term": 42, "voted_for": "node-7"},
    {"name": "term_0_no_vote", "term": 0, "voted_for": None},
    {"name": "term_1_voted_empty_id", "term": 1, "voted_for": ""},
    {"name": "term_max_voted_unicode", "term": 18446744073709551615, "voted_for": "nœud-1"},
]

_SET_MY_KEY = "0a130a066d792d6b657912030102031880e2cfaa06"
_DELETE_MY_KEY = "1a080a066d792d6b6579"

COMMAND_LOG_CASES: list[dict[str, Any]] = [
    {"name": "empty_header", "commit_seq": 0},
    {
        "name": "single_set_element_record",
        "commit_seq": 0,
        "seq": 1,
        "command_payload_hex": _SET_MY_KEY,
    },
    {
        "name": "three_records_commit_2",
        "commit_seq": 2,
        "records": [
            {"seq": 1, "command_payload_hex": _SET_MY_KEY},
            {"seq": 2, "command_payload_hex": _DELETE_MY_KEY},
            {"seq": 3, "command_payload_hex": ""},
        ],
    },
    {
        "name": "two_records_and_torn_tail",
        "commit_seq": 1,
        "records": [
            {"seq": 1, "command_payload_hex": _SET_MY_KEY},
            {"seq": 2, "command_payload_hex": _DELETE_MY_KEY},
        ],
        # A third record cut inside its payload: seq 3, length 10, only 4 payload bytes.
        "torn_tail_hex": "0000000000000003" + "0000000a" + "1a080a06",
    },
]
