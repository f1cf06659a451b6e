from dref.wire.proto import state_command_pb2 as _state_command_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CommandResult(_message.Message):
    __slots__ = ("applied", "revision", "current_expire_at", "deleted", "number", "refused", "session_id", "session_expired")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_EXPIRE_AT_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    revision: int
    current_expire_at: int
    deleted: int
    number: int
    refused: str
    session_id: int
    session_expired: bool
    def __init__(self, applied: _Optional[bool] = ..., revision: _Optional[int] = ..., current_expire_at: _Optional[int] = ..., deleted: _Optional[int] = ..., number: _Optional[int] = ..., refused: _Optional[str] = ..., session_id: _Optional[int] = ..., session_expired: _Optional[bool] = ...) -> None: ...

class KeyValueQuery(_message.Message):
    __slots__ = ("get", "due", "history")
    GET_FIELD_NUMBER: _ClassVar[int]
    DUE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    get: GetQuery
    due: DueQuery
    history: HistoryQuery
    def __init__(self, get: _Optional[_Union[GetQuery, _Mapping]] = ..., due: _Optional[_Union[DueQuery, _Mapping]] = ..., history: _Optional[_Union[HistoryQuery, _Mapping]] = ...) -> None: ...

class GetQuery(_message.Message):
    __slots__ = ("name", "now")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    name: str
    now: int
    def __init__(self, name: _Optional[str] = ..., now: _Optional[int] = ...) -> None: ...

class DueQuery(_message.Message):
    __slots__ = ("now", "limit")
    NOW_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    now: int
    limit: int
    def __init__(self, now: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class HistoryQuery(_message.Message):
    __slots__ = ("name", "after", "limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    after: int
    limit: int
    def __init__(self, name: _Optional[str] = ..., after: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class KeyValueQueryResult(_message.Message):
    __slots__ = ("found", "value", "revision", "expire_at", "due_names", "next_expire_at", "history", "oldest_available")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_AT_FIELD_NUMBER: _ClassVar[int]
    DUE_NAMES_FIELD_NUMBER: _ClassVar[int]
    NEXT_EXPIRE_AT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    revision: int
    expire_at: int
    due_names: _containers.RepeatedScalarFieldContainer[str]
    next_expire_at: int
    history: _containers.RepeatedCompositeFieldContainer[WatchEvent]
    oldest_available: int
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ..., revision: _Optional[int] = ..., expire_at: _Optional[int] = ..., due_names: _Optional[_Iterable[str]] = ..., next_expire_at: _Optional[int] = ..., history: _Optional[_Iterable[_Union[WatchEvent, _Mapping]]] = ..., oldest_available: _Optional[int] = ...) -> None: ...

class NativeGetRequest(_message.Message):
    __slots__ = ("name", "read_policy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    READ_POLICY_FIELD_NUMBER: _ClassVar[int]
    name: str
    read_policy: str
    def __init__(self, name: _Optional[str] = ..., read_policy: _Optional[str] = ...) -> None: ...

class NativeGetResponse(_message.Message):
    __slots__ = ("found", "value", "revision")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    revision: int
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ..., revision: _Optional[int] = ...) -> None: ...

class NativeHistoryRequest(_message.Message):
    __slots__ = ("name", "after", "limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    after: int
    limit: int
    def __init__(self, name: _Optional[str] = ..., after: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class NativeHistoryResponse(_message.Message):
    __slots__ = ("events", "oldest_available")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WatchEvent]
    oldest_available: int
    def __init__(self, events: _Optional[_Iterable[_Union[WatchEvent, _Mapping]]] = ..., oldest_available: _Optional[int] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ("applied", "revision", "number", "refused", "session_id", "session_expired")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    revision: int
    number: int
    refused: str
    session_id: int
    session_expired: bool
    def __init__(self, applied: _Optional[bool] = ..., revision: _Optional[int] = ..., number: _Optional[int] = ..., refused: _Optional[str] = ..., session_id: _Optional[int] = ..., session_expired: _Optional[bool] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("name", "names", "replaces")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    REPLACES_FIELD_NUMBER: _ClassVar[int]
    name: str
    names: _containers.RepeatedScalarFieldContainer[str]
    replaces: int
    def __init__(self, name: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ..., replaces: _Optional[int] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("kind", "value", "revision", "name", "watch_id", "replaced")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        READY: _ClassVar[WatchEvent.Kind]
        SET: _ClassVar[WatchEvent.Kind]
        DELETE: _ClassVar[WatchEvent.Kind]
        RESYNC: _ClassVar[WatchEvent.Kind]
    READY: WatchEvent.Kind
    SET: WatchEvent.Kind
    DELETE: WatchEvent.Kind
    RESYNC: WatchEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WATCH_ID_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    kind: WatchEvent.Kind
    value: bytes
    revision: int
    name: str
    watch_id: int
    replaced: bool
    def __init__(self, kind: _Optional[_Union[WatchEvent.Kind, str]] = ..., value: _Optional[bytes] = ..., revision: _Optional[int] = ..., name: _Optional[str] = ..., watch_id: _Optional[int] = ..., replaced: _Optional[bool] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class PipelineCall(_message.Message):
    __slots__ = ("id", "get", "set", "set_if_absent", "delete", "compare_and_set", "compare_and_delete", "expire_if", "increment", "history", "open_session", "session")
    ID_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    SET_IF_ABSENT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    COMPARE_AND_SET_FIELD_NUMBER: _ClassVar[int]
    COMPARE_AND_DELETE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_IF_FIELD_NUMBER: _ClassVar[int]
    INCREMENT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    OPEN_SESSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    id: int
    get: NativeGetRequest
    set: _state_command_pb2.SetElementCommand
    set_if_absent: _state_command_pb2.SetElementIfNotExistCommand
    delete: _state_command_pb2.DeleteElementCommand
    compare_and_set: _state_command_pb2.CompareAndSetCommand
    compare_and_delete: _state_command_pb2.CompareAndDeleteCommand
    expire_if: _state_command_pb2.ExpireIfCommand
    increment: _state_command_pb2.IncrementCommand
    history: NativeHistoryRequest
    open_session: _state_command_pb2.OpenSessionCommand
    session: _state_command_pb2.ClientSession
    def __init__(self, id: _Optional[int] = ..., get: _Optional[_Union[NativeGetRequest, _Mapping]] = ..., set: _Optional[_Union[_state_command_pb2.SetElementCommand, _Mapping]] = ..., set_if_absent: _Optional[_Union[_state_command_pb2.SetElementIfNotExistCommand, _Mapping]] = ..., delete: _Optional[_Union[_state_command_pb2.DeleteElementCommand, _Mapping]] = ..., compare_and_set: _Optional[_Union[_state_command_pb2.CompareAndSetCommand, _Mapping]] = ..., compare_and_delete: _Optional[_Union[_state_command_pb2.CompareAndDeleteCommand, _Mapping]] = ..., expire_if: _Optional[_Union[_state_command_pb2.ExpireIfCommand, _Mapping]] = ..., increment: _Optional[_Union[_state_command_pb2.IncrementCommand, _Mapping]] = ..., history: _Optional[_Union[NativeHistoryRequest, _Mapping]] = ..., open_session: _Optional[_Union[_state_command_pb2.OpenSessionCommand, _Mapping]] = ..., session: _Optional[_Union[_state_command_pb2.ClientSession, _Mapping]] = ...) -> None: ...

class CallError(_message.Message):
    __slots__ = ("code", "details", "leader_address")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    code: str
    details: str
    leader_address: str
    def __init__(self, code: _Optional[str] = ..., details: _Optional[str] = ..., leader_address: _Optional[str] = ...) -> None: ...

class PipelineResult(_message.Message):
    __slots__ = ("id", "get", "write", "error", "history")
    ID_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    id: int
    get: NativeGetResponse
    write: WriteResponse
    error: CallError
    history: NativeHistoryResponse
    def __init__(self, id: _Optional[int] = ..., get: _Optional[_Union[NativeGetResponse, _Mapping]] = ..., write: _Optional[_Union[WriteResponse, _Mapping]] = ..., error: _Optional[_Union[CallError, _Mapping]] = ..., history: _Optional[_Union[NativeHistoryResponse, _Mapping]] = ...) -> None: ...

class PipelineFrame(_message.Message):
    __slots__ = ("calls", "results")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[PipelineCall]
    results: _containers.RepeatedCompositeFieldContainer[PipelineResult]
    def __init__(self, calls: _Optional[_Iterable[_Union[PipelineCall, _Mapping]]] = ..., results: _Optional[_Iterable[_Union[PipelineResult, _Mapping]]] = ...) -> None: ...
