"""Every error dref-py raises: one `DRefError` base, one subclass per thing a caller can act on."""

from __future__ import annotations

import builtins
import os


class DRefError(Exception):
    """Base of every dref-py error."""


class NotFoundError(DRefError, LookupError):
    """The named element does not exist (or has expired)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Element {name} not found")
        self.name = name


class DRefTimeoutError(DRefError, builtins.TimeoutError):
    """A blocking call did not finish within its timeout."""


class LockTimeoutError(DRefTimeoutError):
    """A lock could not be acquired within its acquisition timeout."""

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(f"Lock {name} not acquired within {timeout:g} s")
        self.name = name
        self.timeout = timeout


class LockStolenError(DRefError):
    """The lock was lost (expired, overwritten or deleted) while its holder ran."""

    def __init__(self, name: str, value: int) -> None:
        super().__init__(f"Lock {name} with value {value} has been stolen")
        self.name = name
        self.value = value


class CodecError(DRefError, ValueError):
    """A value could not be encoded, or bytes could not be decoded."""


class ValueTooLargeError(DRefError, ValueError):
    """A value exceeds the backend's size limit."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        super().__init__(f"value for {name} is {size} bytes; the limit is {limit}")
        self.name = name
        self.size = size
        self.limit = limit


class StorageError(DRefError):
    """A persisted file is unreadable: wrong magic, wrong version, bad length, bad record."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class CompactedError(DRefError, LookupError):
    """The change history no longer reaches back to `after`: changes of `name` with a
    revision >= `oldest_available` are kept, older ones were dropped (retention, or a
    node that restarted from a snapshot). Resume with `after=oldest_available - 1` and
    re-read with `get()`, or start a stream from now."""

    def __init__(self, name: str, after: int, oldest_available: int) -> None:
        super().__init__(
            f"the change history of {name} starts at revision {oldest_available};"
            f" changes after {after} are no longer all kept"
        )
        self.name = name
        self.after = after
        self.oldest_available = oldest_available


class BackendUnavailableError(DRefError, ConnectionError):
    """The backend (Redis server, Raft cluster) cannot be reached within the timeout."""


class PermissionDeniedError(DRefError, PermissionError):
    """The node refused the call: the caller's identity (its TLS certificate) lacks the
    role the call needs; the message names both."""


class ContextClosedError(DRefError):
    """The context was closed; no further calls are possible."""


class ConfigError(DRefError, ValueError):
    """A configuration value is missing or invalid."""


class DataDirInUseError(ConfigError):
    """Another node (process `holder_pid`, None if unknown) holds the data directory's lock."""

    def __init__(self, directory: str, holder_pid: int | None) -> None:
        if holder_pid is None:
            holder = "another process (pid unknown)"
        else:
            holder = f"pid {holder_pid}" + (" (this process)" if holder_pid == os.getpid() else "")
        super().__init__(
            f"data directory {directory} is in use by {holder}; one node at a time may use it"
        )
        self.directory = directory
        self.holder_pid = holder_pid


class NodeIdMismatchError(ConfigError):
    """The data directory belongs to another node id than the one configured."""

    def __init__(self, directory: str, stored: str, configured: str) -> None:
        super().__init__(
            f"data directory {directory} belongs to node {stored!r}, not {configured!r};"
            f" start it as {stored!r} or give node {configured!r} a directory of its own"
        )
        self.directory = directory
        self.stored = stored
        self.configured = configured


class NotLeaderError(DRefError):
    """This Raft node is not the leader; `leader_id`/`leader_address` name the one it knows."""

    def __init__(self, leader_id: str | None, leader_address: str | None = None) -> None:
        super().__init__(f"not leader; current leader id = {leader_id or 'unknown'}")
        self.leader_id = leader_id
        self.leader_address = leader_address


class QuorumLostError(BackendUnavailableError):
    """The Raft leader could not reach a quorum in time; the outcome of a write may be unknown."""

    def __init__(self, message: str = "write could not be replicated to a quorum") -> None:
        super().__init__(message)


class NoQuorumError(QuorumLostError):
    """No leader within the timeout because fewer than a quorum of the voters answer;
    `reachable` and `voters` name them. The call was not applied by any leader."""

    def __init__(self, reachable: list[str], voters: list[str], waited: float) -> None:
        down = sorted(set(voters) - set(reachable))
        super().__init__(
            f"no quorum: {len(reachable)} of {len(voters)} voters reachable"
            f" ({', '.join(down)} not answering); no leader within {waited:g} s"
        )
        self.reachable = reachable
        self.voters = voters


class LeaderTransferError(DRefError):
    """Leadership did not move (refused, or no new leader within two election timeouts)."""


class MembershipError(DRefError):
    """The leader refused a membership change; the message says why. `retryable` is True
    when the obstacle passes by itself (another change in flight, a new leader's first
    commit pending, a learner still catching up): `Node` waits those out until its timeout."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
