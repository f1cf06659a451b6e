from dref.wire.proto import raft_pb2 as _raft_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClusterSnapshot(_message.Message):
    __slots__ = ("entries", "last_seq")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_raft_pb2.KVEntry]
    last_seq: int
    def __init__(self, entries: _Optional[_Iterable[_Union[_raft_pb2.KVEntry, _Mapping]]] = ..., last_seq: _Optional[int] = ...) -> None: ...

class AppendEntriesRequest(_message.Message):
    __slots__ = ("leader_id", "term", "command", "seq", "commit_seq")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    term: int
    command: bytes
    seq: int
    commit_seq: int
    def __init__(self, leader_id: _Optional[str] = ..., term: _Optional[int] = ..., command: _Optional[bytes] = ..., seq: _Optional[int] = ..., commit_seq: _Optional[int] = ...) -> None: ...

class AppendEntriesResponse(_message.Message):
    __slots__ = ("success", "term")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    success: bool
    term: int
    def __init__(self, success: _Optional[bool] = ..., term: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("leader_id", "term", "commit_seq")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    term: int
    commit_seq: int
    def __init__(self, leader_id: _Optional[str] = ..., term: _Optional[int] = ..., commit_seq: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("acknowledged", "term")
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    acknowledged: bool
    term: int
    def __init__(self, acknowledged: _Optional[bool] = ..., term: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("candidate_id", "term", "last_seq")
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    candidate_id: str
    term: int
    last_seq: int
    def __init__(self, candidate_id: _Optional[str] = ..., term: _Optional[int] = ..., last_seq: _Optional[int] = ...) -> None: ...

class VoteResponse(_message.Message):
    __slots__ = ("granted", "term")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    term: int
    def __init__(self, granted: _Optional[bool] = ..., term: _Optional[int] = ...) -> None: ...

class PreVoteRequest(_message.Message):
    __slots__ = ("candidate_id", "term", "last_seq")
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    candidate_id: str
    term: int
    last_seq: int
    def __init__(self, candidate_id: _Optional[str] = ..., term: _Optional[int] = ..., last_seq: _Optional[int] = ...) -> None: ...

class PreVoteResponse(_message.Message):
    __slots__ = ("granted", "term")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    term: int
    def __init__(self, granted: _Optional[bool] = ..., term: _Optional[int] = ...) -> None: ...

class InstallSnapshotRequest(_message.Message):
    __slots__ = ("leader_id", "term", "snapshot", "last_seq")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    term: int
    snapshot: ClusterSnapshot
    last_seq: int
    def __init__(self, leader_id: _Optional[str] = ..., term: _Optional[int] = ..., snapshot: _Optional[_Union[ClusterSnapshot, _Mapping]] = ..., last_seq: _Optional[int] = ...) -> None: ...

class InstallSnapshotResponse(_message.Message):
    __slots__ = ("success", "term")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    success: bool
    term: int
    def __init__(self, success: _Optional[bool] = ..., term: _Optional[int] = ...) -> None: ...
