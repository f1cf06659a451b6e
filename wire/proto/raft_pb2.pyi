from dref.wire.proto import dref_native_pb2 as _dref_native_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KVEntry(_message.Message):
    __slots__ = ("key", "value", "expireAt", "revision")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIREAT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    expireAt: int
    revision: int
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., expireAt: _Optional[int] = ..., revision: _Optional[int] = ...) -> None: ...

class KeyValueSnapshot(_message.Message):
    __slots__ = ("entries", "last_seq", "revision", "sessions", "last_session", "history", "history_floor")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_SESSION_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FLOOR_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[KVEntry]
    last_seq: int
    revision: int
    sessions: _containers.RepeatedCompositeFieldContainer[ClientSessionState]
    last_session: int
    history: _containers.RepeatedCompositeFieldContainer[_dref_native_pb2.WatchEvent]
    history_floor: int
    def __init__(self, entries: _Optional[_Iterable[_Union[KVEntry, _Mapping]]] = ..., last_seq: _Optional[int] = ..., revision: _Optional[int] = ..., sessions: _Optional[_Iterable[_Union[ClientSessionState, _Mapping]]] = ..., last_session: _Optional[int] = ..., history: _Optional[_Iterable[_Union[_dref_native_pb2.WatchEvent, _Mapping]]] = ..., history_floor: _Optional[int] = ...) -> None: ...

class ClientSessionState(_message.Message):
    __slots__ = ("id", "last_active", "answers", "forgotten")
    ID_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    FORGOTTEN_FIELD_NUMBER: _ClassVar[int]
    id: int
    last_active: int
    answers: _containers.RepeatedCompositeFieldContainer[SessionAnswer]
    forgotten: int
    def __init__(self, id: _Optional[int] = ..., last_active: _Optional[int] = ..., answers: _Optional[_Iterable[_Union[SessionAnswer, _Mapping]]] = ..., forgotten: _Optional[int] = ...) -> None: ...

class SessionAnswer(_message.Message):
    __slots__ = ("sequence", "result")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    result: bytes
    def __init__(self, sequence: _Optional[int] = ..., result: _Optional[bytes] = ...) -> None: ...
