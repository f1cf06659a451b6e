from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SetElementCommand(_message.Message):
    __slots__ = ("name", "value", "expire_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: bytes
    expire_at: int
    def __init__(self, name: _Optional[str] = ..., value: _Optional[bytes] = ..., expire_at: _Optional[int] = ...) -> None: ...

class SetElementIfNotExistCommand(_message.Message):
    __slots__ = ("name", "value", "expire_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: bytes
    expire_at: int
    def __init__(self, name: _Optional[str] = ..., value: _Optional[bytes] = ..., expire_at: _Optional[int] = ...) -> None: ...

class DeleteElementCommand(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ExpireElementCommand(_message.Message):
    __slots__ = ("name", "expire_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    expire_at: int
    def __init__(self, name: _Optional[str] = ..., expire_at: _Optional[int] = ...) -> None: ...

class DeleteIfExpiredCommand(_message.Message):
    __slots__ = ("name", "now")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    name: str
    now: int
    def __init__(self, name: _Optional[str] = ..., now: _Optional[int] = ...) -> None: ...

class StartNewTermCommand(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CompareAndSetCommand(_message.Message):
    __slots__ = ("name", "expected_revision", "expected_value", "value", "expire_at", "now")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_AT_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    name: str
    expected_revision: int
    expected_value: bytes
    value: bytes
    expire_at: int
    now: int
    def __init__(self, name: _Optional[str] = ..., expected_revision: _Optional[int] = ..., expected_value: _Optional[bytes] = ..., value: _Optional[bytes] = ..., expire_at: _Optional[int] = ..., now: _Optional[int] = ...) -> None: ...

class IncrementCommand(_message.Message):
    __slots__ = ("name", "delta", "format", "now")
    class Format(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MSGPACK: _ClassVar[IncrementCommand.Format]
        JSON: _ClassVar[IncrementCommand.Format]
    MSGPACK: IncrementCommand.Format
    JSON: IncrementCommand.Format
    NAME_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    name: str
    delta: int
    format: IncrementCommand.Format
    now: int
    def __init__(self, name: _Optional[str] = ..., delta: _Optional[int] = ..., format: _Optional[_Union[IncrementCommand.Format, str]] = ..., now: _Optional[int] = ...) -> None: ...

class CompareAndDeleteCommand(_message.Message):
    __slots__ = ("name", "expected_revision", "expected_value", "now")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    name: str
    expected_revision: int
    expected_value: bytes
    now: int
    def __init__(self, name: _Optional[str] = ..., expected_revision: _Optional[int] = ..., expected_value: _Optional[bytes] = ..., now: _Optional[int] = ...) -> None: ...

class ExpireIfCommand(_message.Message):
    __slots__ = ("name", "expected_revision", "expected_value", "expire_at", "now")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_AT_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    name: str
    expected_revision: int
    expected_value: bytes
    expire_at: int
    now: int
    def __init__(self, name: _Optional[str] = ..., expected_revision: _Optional[int] = ..., expected_value: _Optional[bytes] = ..., expire_at: _Optional[int] = ..., now: _Optional[int] = ...) -> None: ...

class DeleteIfExpiredBatchCommand(_message.Message):
    __slots__ = ("names", "now")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    now: int
    def __init__(self, names: _Optional[_Iterable[str]] = ..., now: _Optional[int] = ...) -> None: ...

class OpenSessionCommand(_message.Message):
    __slots__ = ("now",)
    NOW_FIELD_NUMBER: _ClassVar[int]
    now: int
    def __init__(self, now: _Optional[int] = ...) -> None: ...

class ClientSession(_message.Message):
    __slots__ = ("id", "sequence", "acknowledged", "now")
    ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    id: int
    sequence: int
    acknowledged: int
    now: int
    def __init__(self, id: _Optional[int] = ..., sequence: _Optional[int] = ..., acknowledged: _Optional[int] = ..., now: _Optional[int] = ...) -> None: ...

class StateCommand(_message.Message):
    __slots__ = ("session", "set_element", "set_element_if_not_exist", "delete_element", "expire_element", "delete_if_expired", "start_new_term", "compare_and_set", "compare_and_delete", "expire_if", "delete_if_expired_batch", "increment", "open_session")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SET_ELEMENT_FIELD_NUMBER: _ClassVar[int]
    SET_ELEMENT_IF_NOT_EXIST_FIELD_NUMBER: _ClassVar[int]
    DELETE_ELEMENT_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_ELEMENT_FIELD_NUMBER: _ClassVar[int]
    DELETE_IF_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    START_NEW_TERM_FIELD_NUMBER: _ClassVar[int]
    COMPARE_AND_SET_FIELD_NUMBER: _ClassVar[int]
    COMPARE_AND_DELETE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_IF_FIELD_NUMBER: _ClassVar[int]
    DELETE_IF_EXPIRED_BATCH_FIELD_NUMBER: _ClassVar[int]
    INCREMENT_FIELD_NUMBER: _ClassVar[int]
    OPEN_SESSION_FIELD_NUMBER: _ClassVar[int]
    session: ClientSession
    set_element: SetElementCommand
    set_element_if_not_exist: SetElementIfNotExistCommand
    delete_element: DeleteElementCommand
    expire_element: ExpireElementCommand
    delete_if_expired: DeleteIfExpiredCommand
    start_new_term: StartNewTermCommand
    compare_and_set: CompareAndSetCommand
    compare_and_delete: CompareAndDeleteCommand
    expire_if: ExpireIfCommand
    delete_if_expired_batch: DeleteIfExpiredBatchCommand
    increment: IncrementCommand
    open_session: OpenSessionCommand
    def __init__(self, session: _Optional[_Union[ClientSession, _Mapping]] = ..., set_element: _Optional[_Union[SetElementCommand, _Mapping]] = ..., set_element_if_not_exist: _Optional[_Union[SetElementIfNotExistCommand, _Mapping]] = ..., delete_element: _Optional[_Union[DeleteElementCommand, _Mapping]] = ..., expire_element: _Optional[_Union[ExpireElementCommand, _Mapping]] = ..., delete_if_expired: _Optional[_Union[DeleteIfExpiredCommand, _Mapping]] = ..., start_new_term: _Optional[_Union[StartNewTermCommand, _Mapping]] = ..., compare_and_set: _Optional[_Union[CompareAndSetCommand, _Mapping]] = ..., compare_and_delete: _Optional[_Union[CompareAndDeleteCommand, _Mapping]] = ..., expire_if: _Optional[_Union[ExpireIfCommand, _Mapping]] = ..., delete_if_expired_batch: _Optional[_Union[DeleteIfExpiredBatchCommand, _Mapping]] = ..., increment: _Optional[_Union[IncrementCommand, _Mapping]] = ..., open_session: _Optional[_Union[OpenSessionCommand, _Mapping]] = ...) -> None: ...
