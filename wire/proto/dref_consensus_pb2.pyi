from dref.wire.proto import raft_pb2 as _raft_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NativeEntryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NATIVE_ENTRY_NORMAL: _ClassVar[NativeEntryKind]
    NATIVE_ENTRY_NOOP: _ClassVar[NativeEntryKind]
    NATIVE_ENTRY_CONFIG: _ClassVar[NativeEntryKind]
NATIVE_ENTRY_NORMAL: NativeEntryKind
NATIVE_ENTRY_NOOP: NativeEntryKind
NATIVE_ENTRY_CONFIG: NativeEntryKind

class ClusterSnapshot(_message.Message):
    __slots__ = ("entries", "last_seq")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_raft_pb2.KVEntry]
    last_seq: int
    def __init__(self, entries: _Optional[_Iterable[_Union[_raft_pb2.KVEntry, _Mapping]]] = ..., last_seq: _Optional[int] = ...) -> None: ...

class NativeEntry(_message.Message):
    __slots__ = ("index", "term", "kind", "data")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    index: int
    term: int
    kind: NativeEntryKind
    data: bytes
    def __init__(self, index: _Optional[int] = ..., term: _Optional[int] = ..., kind: _Optional[_Union[NativeEntryKind, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class AppendEntriesRequest(_message.Message):
    __slots__ = ("leader_id", "term", "command", "seq", "commit_seq", "prev_index", "prev_term", "entries", "leader_commit")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    PREV_INDEX_FIELD_NUMBER: _ClassVar[int]
    PREV_TERM_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LEADER_COMMIT_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    term: int
    command: bytes
    seq: int
    commit_seq: int
    prev_index: int
    prev_term: int
    entries: _containers.RepeatedCompositeFieldContainer[NativeEntry]
    leader_commit: int
    def __init__(self, leader_id: _Optional[str] = ..., term: _Optional[int] = ..., command: _Optional[bytes] = ..., seq: _Optional[int] = ..., commit_seq: _Optional[int] = ..., prev_index: _Optional[int] = ..., prev_term: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[NativeEntry, _Mapping]]] = ..., leader_commit: _Optional[int] = ...) -> None: ...

class AppendEntriesResponse(_message.Message):
    __slots__ = ("success", "term", "match_index", "rejected_prev_index", "hint_index", "hint_term", "ignore")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    MATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    REJECTED_PREV_INDEX_FIELD_NUMBER: _ClassVar[int]
    HINT_INDEX_FIELD_NUMBER: _ClassVar[int]
    HINT_TERM_FIELD_NUMBER: _ClassVar[int]
    IGNORE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    term: int
    match_index: int
    rejected_prev_index: int
    hint_index: int
    hint_term: int
    ignore: bool
    def __init__(self, success: _Optional[bool] = ..., term: _Optional[int] = ..., match_index: _Optional[int] = ..., rejected_prev_index: _Optional[int] = ..., hint_index: _Optional[int] = ..., hint_term: _Optional[int] = ..., ignore: _Optional[bool] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("leader_id", "term", "commit_seq", "context")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    term: int
    commit_seq: int
    context: int
    def __init__(self, leader_id: _Optional[str] = ..., term: _Optional[int] = ..., commit_seq: _Optional[int] = ..., context: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("acknowledged", "term", "context", "ignore")
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    IGNORE_FIELD_NUMBER: _ClassVar[int]
    acknowledged: bool
    term: int
    context: int
    ignore: bool
    def __init__(self, acknowledged: _Optional[bool] = ..., term: _Optional[int] = ..., context: _Optional[int] = ..., ignore: _Optional[bool] = ...) -> None: ...

class ReadIndexRequest(_message.Message):
    __slots__ = ("leader_id", "term")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    term: int
    def __init__(self, leader_id: _Optional[str] = ..., term: _Optional[int] = ...) -> None: ...

class ReadIndexResponse(_message.Message):
    __slots__ = ("granted", "term")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    term: int
    def __init__(self, granted: _Optional[bool] = ..., term: _Optional[int] = ...) -> None: ...

class VoteRequest(_message.Message):
    __slots__ = ("candidate_id", "term", "last_seq", "last_log_term", "force")
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_LOG_TERM_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    candidate_id: str
    term: int
    last_seq: int
    last_log_term: int
    force: bool
    def __init__(self, candidate_id: _Optional[str] = ..., term: _Optional[int] = ..., last_seq: _Optional[int] = ..., last_log_term: _Optional[int] = ..., force: _Optional[bool] = ...) -> None: ...

class VoteResponse(_message.Message):
    __slots__ = ("granted", "term", "removed_at", "ignore")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    REMOVED_AT_FIELD_NUMBER: _ClassVar[int]
    IGNORE_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    term: int
    removed_at: int
    ignore: bool
    def __init__(self, granted: _Optional[bool] = ..., term: _Optional[int] = ..., removed_at: _Optional[int] = ..., ignore: _Optional[bool] = ...) -> None: ...

class PreVoteRequest(_message.Message):
    __slots__ = ("candidate_id", "term", "last_seq", "last_log_term")
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_LOG_TERM_FIELD_NUMBER: _ClassVar[int]
    candidate_id: str
    term: int
    last_seq: int
    last_log_term: int
    def __init__(self, candidate_id: _Optional[str] = ..., term: _Optional[int] = ..., last_seq: _Optional[int] = ..., last_log_term: _Optional[int] = ...) -> None: ...

class PreVoteResponse(_message.Message):
    __slots__ = ("granted", "term", "removed_at", "ignore")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    REMOVED_AT_FIELD_NUMBER: _ClassVar[int]
    IGNORE_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    term: int
    removed_at: int
    ignore: bool
    def __init__(self, granted: _Optional[bool] = ..., term: _Optional[int] = ..., removed_at: _Optional[int] = ..., ignore: _Optional[bool] = ...) -> None: ...

class InstallSnapshotRequest(_message.Message):
    __slots__ = ("leader_id", "term", "snapshot", "last_seq", "last_term", "voters", "learners", "offset", "data", "done", "addresses")
    class AddressesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_TERM_FIELD_NUMBER: _ClassVar[int]
    VOTERS_FIELD_NUMBER: _ClassVar[int]
    LEARNERS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    term: int
    snapshot: ClusterSnapshot
    last_seq: int
    last_term: int
    voters: _containers.RepeatedScalarFieldContainer[str]
    learners: _containers.RepeatedScalarFieldContainer[str]
    offset: int
    data: bytes
    done: bool
    addresses: _containers.ScalarMap[str, str]
    def __init__(self, leader_id: _Optional[str] = ..., term: _Optional[int] = ..., snapshot: _Optional[_Union[ClusterSnapshot, _Mapping]] = ..., last_seq: _Optional[int] = ..., last_term: _Optional[int] = ..., voters: _Optional[_Iterable[str]] = ..., learners: _Optional[_Iterable[str]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., done: _Optional[bool] = ..., addresses: _Optional[_Mapping[str, str]] = ...) -> None: ...

class InstallSnapshotResponse(_message.Message):
    __slots__ = ("success", "term", "match_index", "snapshot_index", "chunk_offset", "next_offset", "ignore")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    MATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNK_OFFSET_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    IGNORE_FIELD_NUMBER: _ClassVar[int]
    success: bool
    term: int
    match_index: int
    snapshot_index: int
    chunk_offset: int
    next_offset: int
    ignore: bool
    def __init__(self, success: _Optional[bool] = ..., term: _Optional[int] = ..., match_index: _Optional[int] = ..., snapshot_index: _Optional[int] = ..., chunk_offset: _Optional[int] = ..., next_offset: _Optional[int] = ..., ignore: _Optional[bool] = ...) -> None: ...

class ForwardReadIndexRequest(_message.Message):
    __slots__ = ("sender", "term", "context")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    sender: str
    term: int
    context: int
    def __init__(self, sender: _Optional[str] = ..., term: _Optional[int] = ..., context: _Optional[int] = ...) -> None: ...

class ForwardReadIndexResponse(_message.Message):
    __slots__ = ("term", "context", "success", "read_index", "ignore")
    TERM_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    READ_INDEX_FIELD_NUMBER: _ClassVar[int]
    IGNORE_FIELD_NUMBER: _ClassVar[int]
    term: int
    context: int
    success: bool
    read_index: int
    ignore: bool
    def __init__(self, term: _Optional[int] = ..., context: _Optional[int] = ..., success: _Optional[bool] = ..., read_index: _Optional[int] = ..., ignore: _Optional[bool] = ...) -> None: ...

class TimeoutNowRequest(_message.Message):
    __slots__ = ("leader_id", "term")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    term: int
    def __init__(self, leader_id: _Optional[str] = ..., term: _Optional[int] = ...) -> None: ...

class TimeoutNowResponse(_message.Message):
    __slots__ = ("term", "ignore")
    TERM_FIELD_NUMBER: _ClassVar[int]
    IGNORE_FIELD_NUMBER: _ClassVar[int]
    term: int
    ignore: bool
    def __init__(self, term: _Optional[int] = ..., ignore: _Optional[bool] = ...) -> None: ...

class TransferLeadershipRequest(_message.Message):
    __slots__ = ("target", "timeout")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    target: str
    timeout: float
    def __init__(self, target: _Optional[str] = ..., timeout: _Optional[float] = ...) -> None: ...

class TransferLeadershipResponse(_message.Message):
    __slots__ = ("leader_id", "error_kind", "error", "leader_hint")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LEADER_HINT_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    error_kind: str
    error: str
    leader_hint: str
    def __init__(self, leader_id: _Optional[str] = ..., error_kind: _Optional[str] = ..., error: _Optional[str] = ..., leader_hint: _Optional[str] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("node_id", "address", "voter")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VOTER_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    voter: bool
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., voter: _Optional[bool] = ...) -> None: ...

class MembershipRequest(_message.Message):
    __slots__ = ("action", "node_id", "address", "timeout")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    action: str
    node_id: str
    address: str
    timeout: float
    def __init__(self, action: _Optional[str] = ..., node_id: _Optional[str] = ..., address: _Optional[str] = ..., timeout: _Optional[float] = ...) -> None: ...

class MembershipResponse(_message.Message):
    __slots__ = ("members", "error_kind", "error", "leader_hint")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LEADER_HINT_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    error_kind: str
    error: str
    leader_hint: str
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., error_kind: _Optional[str] = ..., error: _Optional[str] = ..., leader_hint: _Optional[str] = ...) -> None: ...

class PeerEnvelope(_message.Message):
    __slots__ = ("id", "method", "payload")
    ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    id: int
    method: str
    payload: bytes
    def __init__(self, id: _Optional[int] = ..., method: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class PeerFrame(_message.Message):
    __slots__ = ("envelopes",)
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    envelopes: _containers.RepeatedCompositeFieldContainer[PeerEnvelope]
    def __init__(self, envelopes: _Optional[_Iterable[_Union[PeerEnvelope, _Mapping]]] = ...) -> None: ...
