from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class KVEntry(_message.Message):
    __slots__ = ("key", "value", "expireAt")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPIREAT_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    expireAt: int
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., expireAt: _Optional[int] = ...) -> None: ...
