"""The `Codec` protocol: how a typed value becomes the bytes a backend stores, and back."""

from __future__ import annotations

from typing import Protocol, TypeVar

T = TypeVar("T")


class Codec(Protocol[T]):
    """Turns values of one type into bytes and back; users may plug their own.

    `decode` raises `dref.errors.CodecError` on bytes it cannot read.
    """

    def encode(self, value: T) -> bytes: ...

    def decode(self, data: bytes) -> T: ...
