from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
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

class StateCommand(_message.Message):
    __slots__ = ("set_element", "set_element_if_not_exist", "delete_element", "expire_element", "delete_if_expired", "start_new_term")
    SET_ELEMENT_FIELD_NUMBER: _ClassVar[int]
    SET_ELEMENT_IF_NOT_EXIST_FIELD_NUMBER: _ClassVar[int]
    DELETE_ELEMENT_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_ELEMENT_FIELD_NUMBER: _ClassVar[int]
    DELETE_IF_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    START_NEW_TERM_FIELD_NUMBER: _ClassVar[int]
    set_element: SetElementCommand
    set_element_if_not_exist: SetElementIfNotExistCommand
    delete_element: DeleteElementCommand
    expire_element: ExpireElementCommand
    delete_if_expired: DeleteIfExpiredCommand
    start_new_term: StartNewTermCommand
    def __init__(self, set_element: _Optional[_Union[SetElementCommand, _Mapping]] = ..., set_element_if_not_exist: _Optional[_Union[SetElementIfNotExistCommand, _Mapping]] = ..., delete_element: _Optional[_Union[DeleteElementCommand, _Mapping]] = ..., expire_element: _Optional[_Union[ExpireElementCommand, _Mapping]] = ..., delete_if_expired: _Optional[_Union[DeleteIfExpiredCommand, _Mapping]] = ..., start_new_term: _Optional[_Union[StartNewTermCommand, _Mapping]] = ...) -> None: ...
