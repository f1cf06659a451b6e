from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SetElementRequest(_message.Message):
    __slots__ = ("id", "name", "value", "expireAt")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIREAT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    value: bytes
    expireAt: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., value: _Optional[bytes] = ..., expireAt: _Optional[int] = ...) -> None: ...

class SetElementResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetElementIfNotExistRequest(_message.Message):
    __slots__ = ("id", "name", "value", "expireAt")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIREAT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    value: bytes
    expireAt: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., value: _Optional[bytes] = ..., expireAt: _Optional[int] = ...) -> None: ...

class SetElementIfNotExistResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class GetElementRequest(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GetElementResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    def __init__(self, value: _Optional[bytes] = ...) -> None: ...

class DeleteElementRequest(_message.Message):
    __slots__ = ("id", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class DeleteElementResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExpireElementRequest(_message.Message):
    __slots__ = ("id", "name", "expireAt")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPIREAT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    expireAt: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., expireAt: _Optional[int] = ...) -> None: ...

class ExpireElementResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetEndpointsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EndpointResponse(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SendCommandRequest(_message.Message):
    __slots__ = ("id", "payload")
    ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    id: str
    payload: bytes
    def __init__(self, id: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class SendCommandResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetExpirationTableRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
