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
    __slots__ = ("entries", "last_seq", "revision")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[KVEntry]
    last_seq: int
    revision: int
    def __init__(self, entries: _Optional[_Iterable[_Union[KVEntry, _Mapping]]] = ..., last_seq: _Optional[int] = ..., revision: _Optional[int] = ...) -> None: ...
