"""Builders of encoded StateCommands and queries for the key/value state machine tests."""

from __future__ import annotations

from dref.wire.proto import state_command_pb2 as sc
from dref.wire.proto.dref_native_pb2 import CommandResult, KeyValueQuery, KeyValueQueryResult


def encode(command: sc.StateCommand) -> bytes:
    return command.SerializeToString(deterministic=True)


def set_(name: str, value: bytes, expire_at: int | None = None) -> bytes:
    return encode(
        sc.StateCommand(
            set_element=sc.SetElementCommand(name=name, value=value, expire_at=expire_at)
        )
    )


def set_if_absent(name: str, value: bytes, expire_at: int | None = None) -> bytes:
    return encode(
        sc.StateCommand(
            set_element_if_not_exist=sc.SetElementIfNotExistCommand(
                name=name, value=value, expire_at=expire_at
            )
        )
    )


def delete(name: str) -> bytes:
    return encode(sc.StateCommand(delete_element=sc.DeleteElementCommand(name=name)))


def expire(name: str, expire_at: int) -> bytes:
    return encode(
        sc.StateCommand(expire_element=sc.ExpireElementCommand(name=name, expire_at=expire_at))
    )


def delete_if_expired(name: str, now: int) -> bytes:
    return encode(sc.StateCommand(delete_if_expired=sc.DeleteIfExpiredCommand(name=name, now=now)))


def reap(names: list[str], now: int) -> bytes:
    return encode(
        sc.StateCommand(
            delete_if_expired_batch=sc.DeleteIfExpiredBatchCommand(names=names, now=now)
        )
    )


def cas(
    name: str, rev: int, old: bytes, value: bytes, *, expire_at: int | None = None, now: int = 0
) -> bytes:
    return encode(
        sc.StateCommand(
            compare_and_set=sc.CompareAndSetCommand(
                name=name,
                expected_revision=rev,
                expected_value=old,
                value=value,
                expire_at=expire_at,
                now=now,
            )
        )
    )


def cad(name: str, rev: int, old: bytes, now: int = 0) -> bytes:
    return encode(
        sc.StateCommand(
            compare_and_delete=sc.CompareAndDeleteCommand(
                name=name, expected_revision=rev, expected_value=old, now=now
            )
        )
    )


def expire_if(name: str, rev: int, old: bytes, expire_at: int, now: int = 0) -> bytes:
    return encode(
        sc.StateCommand(
            expire_if=sc.ExpireIfCommand(
                name=name, expected_revision=rev, expected_value=old, expire_at=expire_at, now=now
            )
        )
    )


def result(data: bytes) -> CommandResult:
    return CommandResult.FromString(data)


def get_query(name: str, now: int) -> bytes:
    return KeyValueQuery(get={"name": name, "now": now}).SerializeToString()


def due_query(now: int, limit: int = 0) -> bytes:
    return KeyValueQuery(due={"now": now, "limit": limit}).SerializeToString()


def query_result(data: bytes) -> KeyValueQueryResult:
    return KeyValueQueryResult.FromString(data)
