"""The Redis backend: upstream DRef's bytes on the wire, with atomic events and revisions.

What an upstream (Scala/Rust) node sees in Redis is exactly what it writes itself (spec 6):

* the value of name ``n`` lives at the raw key ``n`` (UTF-8, no prefix) as raw codec bytes;
  locks hold their 8-byte big-endian token; TTLs are ``EX max(1, floor(seconds))``;
* every set, every successful set-if-absent and every delete (even of an absent key)
  publishes a MsgPack ``ChangePayload`` on channel ``dref-change`` (Rust or Scala byte
  style, configurable; both decoded).

What we add, invisible to upstream:

* **Atomic write + event.** Each write is one Lua script (EVALSHA, EVAL on NOSCRIPT) doing
  the upstream command and the PUBLISH together, so a crash cannot lose the event.
* **Revisions.** Each name has a counter at ``dref:rev:{<name>}`` (the braces make it a
  Redis Cluster hash tag of the name). Every write of ours INCRs it in the same script, so
  revisions only grow per name, also across delete and re-create, and the revision of a
  lock's acquiring write is its fencing token. The counter is never deleted. A value with
  no counter (written by an upstream node) has revision 0. Conditional writes compare the
  value bytes *and* the counter, so a foreign write of another value makes them fail.
  Names starting with ``dref:rev:`` or ``dref:history:`` are reserved and refused.
* **Revisions in events.** Before the upstream payload, a script publishes
  ``<revision>:<name>`` on channel ``dref:change-rev``; the subscriber pairs it with the
  ``dref-change`` message that follows it. Events of upstream writers carry revision 0.
* **History.** The same script appends each write to a Redis Stream capped near
  `history_revisions` entries, ``dref:history:{<name>}``, with ID ``<revision>-0``, for
  resumable change streams (`history`). Writes by upstream nodes take no revision and are
  not in it. Best effort: a missing permission or a broken stream never fails a write, and
  readers see a gap as `CompactedError`, never a wrong page (see ``redis_scripts``).
* **Expiries with revisions.** A TTL expiry runs no script; the first of our scripts to find
  the value gone while the history ends with a set (a write, a history read, the poll
  below) records it: a revision, a delete in the history, and ``x<revision>:<name>`` on
  ``dref:change-rev`` alone, which subscribers turn into a DELETE with that revision.

Events: one pub/sub connection per backend, read by the daemon thread
``dref-redis-pubsub``, which fans events out through a ``ListenerRegistry`` in the order
Redis published them. That thread also polls the subscribed names every ``poll_interval``
seconds: Redis emits nothing on natural expiry (keyspace notifications are not used), so a
name found absent that was last seen present is reported (how lock waiters and stolen-lock
detection notice an expired lock, also one written by an upstream node): the poll records
the expiry as above and the ``x`` message delivers its DELETE, once; where the history
cannot tell (an upstream value, no history) a synthetic DELETE with revision 0 is
delivered instead. After the pub/sub connection reconnects, every subscribed name is
re-read and a synthetic event marked `resync` is delivered where the value differs from
the last one seen or its counter moved past the last revision seen (the current value when
none was seen: a baseline is read shortly after each new subscription). A name found
absent by that baseline read also gets a DELETE, so a lock waiter whose holder expired
right after the waiter subscribed still wakes up. Synthetic events carry revision 0 and
may repeat a real event that was still in flight.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgpack
import redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    NoScriptError,
    RedisError,
    ResponseError,
)
from redis.retry import Retry

from dref import redis_scripts
from dref.backend import (
    Backend,
    ChangeEvent,
    ChangeKind,
    Entry,
    Listener,
    ListenerRegistry,
    ReadPolicyName,
    call_timeout,
    take_upstream_lock,
)
from dref.contracts.changes import DEFAULT_HISTORY_REVISIONS, HISTORY_PAGE, HISTORY_PAGE_BYTES
from dref.errors import (
    BackendUnavailableError,
    CodecError,
    CompactedError,
    ConfigError,
    ContextClosedError,
    DRefError,
    LockStolenError,
    NotFoundError,
    PermissionDeniedError,
)
from dref.redis_pubsub import PubSubConnection
from dref.redis_resp import pack_command
from dref.wire.change_payload import ChangePayload, decode_change_payload, encode_change_payload
from dref.wire.lock_token import decode_lock_token, encode_lock_token, new_lock_token
from dref.wire.msgpack_codec import Style

if TYPE_CHECKING:
    from dref.context import Context

__all__ = [
    "CHANGE_CHANNEL",
    "HISTORY_KEY_PREFIX",
    "REVISION_CHANNEL",
    "REVISION_KEY_PREFIX",
    "RedisBackend",
    "history_key",
    "redis_context",
    "revision_key",
    "ttl_seconds",
]

CHANGE_CHANNEL = b"dref-change"
"""Upstream's change channel: MsgPack ``ChangePayload`` messages."""

REVISION_CHANNEL = b"dref:change-rev"
"""Our channel: ``<revision>:<name>``, published right before each of our payloads, and
``x<revision>:<name>`` for a recorded expiry (no payload follows)."""

REVISION_KEY_PREFIX = "dref:rev:"
"""Revision counters live at ``dref:rev:{<name>}``; names with this prefix are refused."""

HISTORY_KEY_PREFIX = "dref:history:"
"""History streams live at ``dref:history:{<name>}``; names with this prefix are refused."""

MAX_VALUE_SIZE_LIMIT = 256 * 1024 * 1024
"""Largest allowed ``max_value_size``: the change payload may be twice the value, and
Redis refuses arguments above 512 MiB."""

DEFAULT_MAX_VALUE_SIZE = 8 * 1024 * 1024
"""Default value limit: its payload (up to 2x) stays under Redis's 32 MB pub/sub
output-buffer hard limit, which would otherwise disconnect every subscriber."""

_log = logging.getLogger("dref.redis")
_UNKNOWN = object()  # last seen of a name not read yet, nothing missed so far
_STALE = object()  # last seen of a name not read yet that may have missed changes
_VANISHING = object()  # last seen of a name found absent whose DELETE event is on its way
_MGET_CHUNK = 256


def revision_key(name: str) -> bytes:
    """The key of `name`'s revision counter."""
    return b"dref:rev:{" + name.encode() + b"}"


def history_key(name: str) -> bytes:
    """The key of `name`'s history stream (the same Redis Cluster hash tag as its counter)."""
    return b"dref:history:{" + name.encode() + b"}"


def ttl_seconds(ttl: float) -> int:
    """Upstream's TTL rounding for ``EX``: whole seconds, at least 1."""
    return max(1, math.floor(ttl))


def _ttl_arg(ttl: float | None) -> int:
    return 0 if ttl is None else ttl_seconds(ttl)


class RedisBackend(Backend):
    """A `Backend` on one Redis server, byte-compatible with upstream DRef (see module doc).

    `ca_file`, `cert_file` and `key_file` are the TLS files of a ``rediss://`` URL: the CA
    that signed the server's certificate, and this client's certificate and key for a
    server that requires them (redis-py's ``ssl_*`` URL options work too).
    `history_revisions` is how many changes of each name its history stream keeps at least
    (``XADD MAXLEN ~``, so a few more); 0 records none.
    """

    def __init__(
        self,
        url: str,
        *,
        default_ttl: float = 20.0,
        timeout: float = 5.0,
        style: Style = "rust",
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        interop_locking: bool = False,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        poll_interval: float = 1.0,
        max_connections: int = 64,
        history_revisions: int = DEFAULT_HISTORY_REVISIONS,
    ) -> None:
        self._settings: dict[str, Any] = {
            "url": url,
            "default_ttl": default_ttl,
            "timeout": timeout,
            "style": style,
            "ca_file": ca_file,
            "cert_file": cert_file,
            "key_file": key_file,
            "interop_locking": interop_locking,
            "max_value_size": max_value_size,
            "poll_interval": poll_interval,
            "max_connections": max_connections,
            "history_revisions": history_revisions,
        }
        if style not in ("rust", "scala"):
            raise ConfigError(f"style must be 'rust' or 'scala', not {style!r}")
        if timeout <= 0 or default_ttl <= 0 or poll_interval <= 0:
            raise ConfigError("timeout, default_ttl and poll_interval must be positive")
        if not 0 < max_value_size <= MAX_VALUE_SIZE_LIMIT:
            raise ConfigError(f"max_value_size must be in 1..{MAX_VALUE_SIZE_LIMIT}")
        if (
            isinstance(history_revisions, bool)
            or not isinstance(history_revisions, int)
            or history_revisions < 0
        ):
            raise ConfigError(f"history_revisions must be an int >= 0, not {history_revisions!r}")
        self.history_revisions = history_revisions
        self.default_ttl = default_ttl
        self.max_value_size = max_value_size
        self.interop_locking = interop_locking
        """True: updates must take upstream's ``lock:<name>`` (`modify_with_upstream_lock`)."""
        self.timeout = timeout
        self.style = style
        self.poll_interval = poll_interval
        tls_files = {"ssl_ca_certs": ca_file, "ssl_certfile": cert_file, "ssl_keyfile": key_file}
        self._pool = _make_pool(url, timeout, tls_files, max_connections)
        self._client = redis.Redis(connection_pool=self._pool)
        self._registry = ListenerRegistry()
        self._closed = False
        self._state_lock = threading.Lock()
        self._watcher: _Watcher | None = None

    # -- Backend -----------------------------------------------------------------------

    def set(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int:
        """Write unconditionally (``SET [EX]`` + PUBLISH, atomically); returns the revision."""
        self.check_value_size(name, value)
        rev = self._write(redis_scripts.SET, name, value, False, [value, _ttl_arg(ttl)], timeout)
        assert rev is not None
        return rev

    def set_if_absent(
        self, name: str, value: bytes, ttl: float | None = None, *, timeout: float | None = None
    ) -> int | None:
        """``SET NX [EX]``; publishes and returns the revision only if it wrote."""
        self.check_value_size(name, value)
        script = redis_scripts.SET_IF_ABSENT
        return self._write(script, name, value, False, [value, _ttl_arg(ttl)], timeout)

    def reopen_after_fork(self) -> RedisBackend:
        """New connections and a new pub/sub thread for a forked child, same settings."""
        return RedisBackend(**self._settings)

    def get(
        self, name: str, *, policy: ReadPolicyName = "linearizable", timeout: float | None = None
    ) -> Entry | None:
        """One ``MGET`` of the value and its revision counter (0 when there is none), from
        the server of `url` whatever the policy (dref never reads from replicas)."""
        value, revision = self._read_many([name], timeout)[0]
        return None if value is None else Entry(value, revision)

    def delete(self, name: str, *, timeout: float | None = None) -> int:
        """``DEL`` + PUBLISH even if absent; returns the revision of the delete."""
        rev = self._write(redis_scripts.DELETE, name, b"", True, [], timeout)
        assert rev is not None
        return rev

    def compare_and_set(
        self,
        name: str,
        expected: Entry | None,
        value: bytes,
        ttl: float | None = None,
        *,
        timeout: float | None = None,
    ) -> int | None:
        """Write if value bytes and revision still equal `expected` (None: if absent)."""
        self.check_value_size(name, value)
        args = [*_expected_args(expected), value, _ttl_arg(ttl)]
        return self._write(redis_scripts.COMPARE_AND_SET, name, value, False, args, timeout)

    def increment(
        self, name: str, delta: int, fmt: str, *, timeout: float | None = None
    ) -> tuple[int, int]:
        """Add in one Lua script, no compare-and-set retries (see `Backend.increment`);
        sums beyond 2**53 are refused, since Lua numbers are doubles."""
        if abs(delta) >= 2**53:
            raise CodecError(f"cannot increment {name} by {delta}: Redis adds exactly to 2**53")
        head, tail = _payload_around_value(name, self.style)
        scala = "1" if self.style == "scala" else "0"
        reply = self._eval(redis_scripts.INCREMENT, name, [head, delta, fmt, scala, tail], timeout)
        if reply is None:
            raise NotFoundError(name)
        revision, number = int(reply[0]), reply[1]
        if revision == 0:
            raise CodecError(f"cannot increment {name}: {number.decode()}")
        watcher = self._watcher
        if watcher is not None:
            watcher.wait_delivered(name, revision, _OWN_EVENT_WAIT)
        return int(number), revision

    def compare_and_delete(
        self, name: str, expected: Entry, *, timeout: float | None = None
    ) -> bool:
        """Delete if value bytes and revision still equal `expected` (safe lock release)."""
        args: list[bytes | int | str] = [expected.value, expected.revision]
        rev = self._write(redis_scripts.COMPARE_AND_DELETE, name, b"", True, args, timeout)
        return rev is not None

    def expire(
        self,
        name: str,
        ttl: float,
        *,
        expected: Entry | None = None,
        timeout: float | None = None,
    ) -> bool:
        """``EXPIRE``; with `expected`, only while value and revision match (safe keep-alive)."""
        key = self._key(name)
        if expected is None:
            return bool(self._command(("EXPIRE", key, ttl_seconds(ttl)), timeout))
        args = [b"", *_expected_args(expected)[1:], ttl_seconds(ttl)]
        return bool(self._eval(redis_scripts.EXPIRE_IF, name, args, timeout))

    def subscribe(
        self,
        name: str,
        listener: Listener,
        *,
        timeout: float | None = None,
        sees_own_writes: bool = True,
    ) -> Callable[[], None]:
        """Deliver later changes of `name` to `listener` from the ``dref-redis-pubsub`` thread.

        Waits up to `timeout` (None: the backend timeout) for the pub/sub connection, so
        that no change made after this returns is missed; if Redis is unreachable it
        returns anyway and the subscription starts (with a resync) once Redis is back. If
        Redis refused that connection (credentials, ACL) it raises ConfigError or
        PermissionDeniedError.
        """
        self._key(name)
        with self._state_lock:
            if self._closed:
                raise ContextClosedError("the Redis backend is closed")
            if self._watcher is None:
                self._watcher = _Watcher(self)
                self._watcher.start()
            watcher = self._watcher
        remove = self._registry.add(name, listener)
        watcher.watch(name, sees_own_writes)
        try:
            subscribed = watcher.wait_subscribed(self.timeout if timeout is None else timeout)
        except DRefError:
            remove()
            watcher.unwatch(name, sees_own_writes)
            raise
        if not subscribed:
            watcher.mark_stale(name)
        cancelled = threading.Event()

        def cancel() -> None:
            if not cancelled.is_set():
                cancelled.set()
                remove()
                watcher.unwatch(name, sees_own_writes)

        return cancel

    def history(
        self, name: str, after: int, *, limit: int = HISTORY_PAGE, timeout: float | None = None
    ) -> list[ChangeEvent]:
        """The kept changes of `name` after revision `after` (see `Backend.history`), read
        from its stream together with its counter by one script, which first records a
        pending expiry. The page stops early at a gap in the stream (a revision whose entry
        could not be written); a gap or trimmed entries right after `after` raise
        CompactedError with the oldest revision from which the stream is complete. So does
        a counter below `after`: revisions only grow, so it started again (a Redis that
        lost its data), and the oldest revision is that of its new history."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, not {limit}")
        args: list[bytes | int | str] = [b"", after, limit, HISTORY_PAGE_BYTES]  # no payload
        counter, rows = self._eval(redis_scripts.HISTORY, name, args, timeout)
        if counter == after:
            return []
        page: list[ChangeEvent] = []
        for entry_id, fields in rows:
            revision = int(entry_id.partition(b"-")[0])
            if revision != after + 1 + len(page) or revision > counter:
                break
            entry = dict(zip(fields[::2], fields[1::2], strict=False))
            if entry.get(b"kind") == b"s":
                page.append(ChangeEvent(name, ChangeKind.SET, entry.get(b"value", b""), revision))
            else:
                page.append(ChangeEvent(name, ChangeKind.DELETE, None, revision))
        if page:
            return page
        first = int(rows[0][0].partition(b"-")[0]) if rows else counter + 1
        raise CompactedError(name, after, min(first, counter + 1))

    def close(self) -> None:
        """Stop the pub/sub thread and drop every connection. Idempotent."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.join(timeout=0.5)
        self._pool.disconnect()
        if watcher is not None:
            watcher.join(timeout=self.timeout + 1.0)

    # -- upstream-compatible modify -----------------------------------------------------

    def effective_ttl(self, ttl: float) -> float:
        """Redis keeps TTLs in whole seconds (EX, as upstream writes them)."""
        return float(ttl_seconds(ttl))

    def modify_with_upstream_lock(
        self,
        name: str,
        fn: Callable[[bytes | None], bytes],
        *,
        timeout: float | None = None,
    ) -> int:
        """Upstream's ``modify``: hold ``lock:<name>``, read, write ``fn(old)``, release.

        For `interop_locking`, where upstream nodes update the same name under that lock.
        The write happens only while our token still holds the lock (else LockStolenError);
        `fn` gets None for an absent value and must finish within `default_ttl`. Waits for
        the lock up to `timeout` (default: the backend timeout), else LockTimeoutError;
        each Redis call still gets `MIN_CALL_TIMEOUT`, so none is cut short near the end.
        Returns the revision of the write.
        """
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        lock_name = "lock:" + name
        token = encode_lock_token(new_lock_token())
        lock_rev = take_upstream_lock(self, name, token, deadline, limit)
        try:
            current = self.get(name, timeout=call_timeout(deadline))
            value = fn(None if current is None else current.value)
            self.check_value_size(name, value)
            payload = self._payload(name, value, False)
            script = redis_scripts.SET_IF_LOCKED
            lock = [self._key(lock_name)]
            rev = self._eval(script, name, [payload, value, token], call_timeout(deadline), lock)
            if rev is None:
                raise LockStolenError(lock_name, decode_lock_token(token))
            return int(rev)
        finally:
            try:
                self.compare_and_delete(lock_name, Entry(token, lock_rev))
            except DRefError:
                _log.warning("could not release %s; it expires by its TTL", lock_name)

    # -- internals ----------------------------------------------------------------------

    def _key(self, name: str) -> bytes:
        for prefix in (REVISION_KEY_PREFIX, HISTORY_KEY_PREFIX):
            if name.startswith(prefix):
                raise ConfigError(f"names starting with {prefix!r} are reserved")
        return name.encode()

    def _payload(self, name: str, value: bytes, delete: bool) -> bytes:
        change = ChangePayload(name=name.encode(), value=value, delete=delete)
        return encode_change_payload(change, style=self.style)

    def _write(
        self,
        script: redis_scripts.Script,
        name: str,
        value: bytes,
        delete: bool,
        args: Sequence[bytes | int | str],
        timeout: float | None,
    ) -> int | None:
        payload = self._payload(name, value, delete)
        rev = self._eval(script, name, [payload, *args], timeout)
        if rev is None:
            return None
        watcher = self._watcher
        if watcher is not None:
            watcher.wait_delivered(name, int(rev), _OWN_EVENT_WAIT)
        return int(rev)

    def _eval(
        self,
        script: redis_scripts.Script,
        name: str,
        args: Sequence[bytes | int | str],
        timeout: float | None,
        extra_keys: Sequence[bytes] = (),
    ) -> Any:
        """Run `script` on `name` with the layout of ``redis_scripts``: the value and revision
        keys, then `extra_keys`; the channels and the history retention, then `args`."""
        keys = (self._key(name), revision_key(name), *extra_keys)
        retention = self.history_revisions
        tail = (len(keys), *keys, CHANGE_CHANNEL, REVISION_CHANNEL, retention, *args)
        try:
            return self._command(("EVALSHA", script.sha, *tail), timeout)
        except NoScriptError:  # a restarted or flushed server: nothing ran, send the source
            return self._command(("EVAL", script.source, *tail), timeout)

    def _note_expiry(self, name: str) -> int:
        """Record a pending expiry of `name` (``NOTE_EXPIRY``); returns the revision of the
        delete ending its history, or 0 when the history cannot tell (no history, an
        upstream value, the user may not run the script)."""
        try:
            return int(self._eval(redis_scripts.NOTE_EXPIRY, name, [b""], None))
        except PermissionDeniedError:
            return 0

    def _read_many(
        self, names: Sequence[str], timeout: float | None
    ) -> list[tuple[bytes | None, int]]:
        """Values and revision counters of `names`, each pair read atomically."""
        keys: list[bytes] = []
        for name in names:
            keys += [self._key(name), revision_key(name)]
        replies = self._command(("MGET", *keys), timeout)
        return [(replies[i], int(replies[i + 1] or 0)) for i in range(0, len(replies), 2)]

    def _command(self, args: tuple[Any, ...], timeout: float | None) -> Any:
        """Send one command on a pooled connection; the reply must come within `timeout`.

        Setting up a new connection (TCP connect, TLS, HELLO/AUTH/SELECT) is bounded by the
        backend's `timeout`, the reply by the call's.
        """
        if self._closed:
            raise ContextClosedError("the Redis backend is closed")
        limit = max(0.001, self.timeout if timeout is None else timeout)
        try:
            conn = self._pool.get_connection()
        except (RedisError, OSError) as exc:
            raise _refusal(exc) or BackendUnavailableError(
                f"Redis unreachable: {exc}{self._tls_hint(exc)}"
            ) from exc
        try:
            conn.send_packed_command(pack_command(args))
            return conn.read_response(timeout=limit)
        except NoScriptError:
            raise
        except (RedisError, OSError) as exc:
            refusal = _refusal(exc)
            if refusal is not None:
                raise refusal from exc
            if isinstance(exc, ResponseError):
                raise DRefError(f"Redis refused {args[0]}: {exc}") from exc
            raise BackendUnavailableError(
                f"Redis did not answer {args[0]} within {limit:g} s"
                f" (a write may or may not have happened): {exc}{self._tls_hint(exc)}"
            ) from exc
        finally:
            self._pool.release(conn)

    def _tls_hint(self, exc: BaseException) -> str:
        """A hint for the TLS mistakes whose errors do not name them: plaintext to a TLS
        port (the server just drops the connection), no client certificate where needed."""
        text = str(exc)
        if "CERTIFICATE_REQUIRED" in text:
            return " (the server requires a client certificate: pass cert_file and key_file)"
        if not any(sign in text for sign in ("closed by server", "reset by peer", "EOF occ")):
            return ""
        if self._settings["url"].startswith("redis://"):
            return " (if that port expects TLS, use a rediss:// URL)"
        if self._pool.connection_kwargs.get("ssl_certfile") is None:
            return " (if the server requires a client certificate, pass cert_file and key_file)"
        return ""


def _expected_args(expected: Entry | None) -> list[bytes | int | str]:
    if expected is None:
        return ["0", b"", 0]
    return ["1", expected.value, expected.revision]


_SCRIPT_NOPERM = "user executing the script can't run this command"


def _refusal(exc: BaseException) -> DRefError | None:
    """The dref error for Redis refusing our credentials or an ACL permission, else None."""
    if isinstance(exc, (ConfigError, PermissionDeniedError)):  # already translated
        return exc
    # Redis 7.0 reports a script's forbidden command as a plain error, 7.2 as NOPERM.
    if isinstance(exc, NoPermissionError) or _SCRIPT_NOPERM in str(exc):
        return PermissionDeniedError(
            f"the Redis user lacks a permission dref needs: {exc}"
            " (see the ACL rule in the Redis section of dref's README)"
        )
    if isinstance(exc, (AuthenticationError, AuthorizationError)):
        return ConfigError(
            f"Redis refused to authenticate: {exc} (check the user and password in the URL)"
        )
    return None


_TLS_FILE_OPTIONS = {
    "ssl_ca_certs": "ca_file",
    "ssl_certfile": "cert_file",
    "ssl_keyfile": "key_file",
}
"""redis-py's TLS file options, which the URL may carry too, and dref's names for them."""


def _make_pool(
    url: str, timeout: float, tls_files: dict[str, str | None], max_connections: int
) -> redis.BlockingConnectionPool:
    """A connection pool for `url`; URL options are checked here, before any connection."""
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss"):
        raise ConfigError(f"a Redis URL starts with redis:// or rediss://, not {url!r}")
    options = {key: path for key, path in tls_files.items() if path is not None}
    if options and scheme != "rediss":
        names = ", ".join(_TLS_FILE_OPTIONS[key] for key in options)
        raise ConfigError(f"{names} needs a rediss:// (TLS) URL")
    try:
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            **options,
        )
        pool.connection_class(**pool.connection_kwargs)  # unknown URL options fail here
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"bad Redis URL {url!r}: {exc}") from exc
    for key in _TLS_FILE_OPTIONS:
        path = pool.connection_kwargs.get(key)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"no such file: {path!r} ({_TLS_FILE_OPTIONS[key]}, {key} in a URL)")
    return pool


_OWN_EVENT_WAIT = 1.0
"""Longest time a write to a watched name waits for its own event to reach the listeners."""

_LINGER = 5.0
"""Seconds a name stays tracked after its last subscription ends, so that subscribing to
it again (a lock taken in a loop) needs no new baseline read."""


class _Watcher(threading.Thread):
    """The pub/sub reader: decodes, pairs revisions, polls, resyncs, fans out."""

    _SLICE = 0.1  # longest wait for a message, so stop() and new names are seen promptly
    _MAX_BACKOFF = 2.0

    def __init__(self, backend: RedisBackend) -> None:
        super().__init__(name="dref-redis-pubsub", daemon=True)
        self._backend = backend
        self._stop_event = threading.Event()
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._idle: dict[str, float] = {}
        """Tracked names nobody subscribes to any more -> when the last one left."""
        self._synced: dict[str, int] = {}
        """Per name, the subscriptions that want writes to wait for their event."""
        self._seen: dict[str, object] = {}  # name -> last value seen (None = absent)
        self._needs_baseline = False
        self._pending: tuple[bytes, int] | None = None
        # Baselines read without an event count only once a later PING on the pub/sub
        # connection is answered: then that connection was alive when they were read.
        self._tentative: set[str] = set()
        self._confirming: dict[bytes, set[str]] = {}
        self._confirm_seq = 0
        # Notified when a revision is delivered, a name unwatched, or pub/sub goes up or down.
        self._state_changed = threading.Condition(self._lock)
        self._refused: DRefError | None = None  # why Redis refused the last session, if it did
        self._delivered_revision: dict[str, int] = {}  # watched name -> highest delivered
        # Watched name -> the highest revision its last seen state reflects (from events and
        # the reads that set a baseline): a newer delete in its history is still on its way.
        self._known_revision: dict[str, int] = {}

    def watch(self, name: str, synced: bool) -> None:
        """Track `name`; its baseline is read soon if it is new. `synced`: writes to it wait
        for their event to reach this subscription (see `wait_delivered`)."""
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + 1
            self._idle.pop(name, None)
            if synced:
                self._synced[name] = self._synced.get(name, 0) + 1
            if name not in self._seen:
                self._seen[name] = _UNKNOWN
                self._needs_baseline = True

    def mark_stale(self, name: str) -> None:
        """`name` may miss changes until the connection is up: report its state then."""
        with self._lock:
            if self._seen.get(name) is _UNKNOWN:
                self._seen[name] = _STALE

    def unwatch(self, name: str, synced: bool) -> None:
        """Stop tracking `name` once its last subscription is cancelled and `_LINGER`
        seconds pass without a new one (see `_forget_idle`)."""
        with self._lock:
            if synced:
                still = self._synced.get(name, 0) - 1
                if still > 0:
                    self._synced[name] = still
                else:
                    self._synced.pop(name, None)
            left = self._counts.get(name, 0) - 1
            if left > 0:
                self._counts[name] = left
            else:
                self._counts.pop(name, None)
                self._idle[name] = time.monotonic()
                self._state_changed.notify_all()

    def _forget_idle(self, now: float) -> None:
        """Stop tracking names idle for `_LINGER` seconds (checked at each poll)."""
        with self._lock:
            gone = [name for name, since in self._idle.items() if now - since >= _LINGER]
            for name in gone:
                del self._idle[name]
                self._seen.pop(name, None)
                self._delivered_revision.pop(name, None)
                self._known_revision.pop(name, None)

    def wait_delivered(self, name: str, revision: int, timeout: float) -> None:
        """If `name` has a synced subscription and pub/sub is live, wait until the event of
        `revision` has reached the listeners, so a writer's own subscribers see its write on
        return, as on the local backend. Bounded by `timeout`; skipped while disconnected."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while (
                name in self._synced
                and self._subscribed.is_set()
                and self._delivered_revision.get(name, 0) < revision
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._state_changed.wait(remaining)

    def wait_subscribed(self, timeout: float) -> bool:
        """Wait until the pub/sub connection is subscribed; False on timeout. Raises Redis's
        refusal (credentials, a missing ACL permission) if that came first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._subscribed.is_set():
                if self._refused is not None:
                    raise type(self._refused)(str(self._refused))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._state_changed.wait(remaining)
        return True

    def stop(self) -> None:
        """Ask the thread to finish; it does within one slice unless blocked on Redis."""
        self._stop_event.set()

    def run(self) -> None:
        backoff = 0.05
        while not self._stop_event.is_set():
            with self._lock:
                self._refused = None  # wait_subscribed waits for this attempt's outcome
            pubsub: PubSubConnection | None = None
            try:
                pubsub = PubSubConnection(self._backend._pool)
                self._session(pubsub)
            except (DRefError, RedisError, OSError, ValueError) as exc:
                if self._subscribed.is_set():
                    backoff = 0.05
                refusal = _refusal(exc)
                if refusal is not None:
                    self._refuse(refusal)
                elif not self._stop_event.is_set():
                    _log.warning("Redis pub/sub connection lost (%s); reconnecting", exc)
            finally:
                self._subscribed.clear()
                with self._lock:
                    self._state_changed.notify_all()  # writers stop waiting while disconnected
                self._pending = None
                self._forget_unconfirmed()
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except (RedisError, OSError):
                        pass
            if self._stop_event.wait(backoff):
                break
            backoff = min(backoff * 2, self._MAX_BACKOFF)

    def _refuse(self, refusal: DRefError) -> None:
        """Record why Redis refused the session for `wait_subscribed`; log each new reason."""
        with self._lock:
            new = self._refused is None or str(self._refused) != str(refusal)
            self._refused = refusal
            self._state_changed.notify_all()
        if new:
            _log.error("Redis refused the pub/sub connection; retrying: %s", refusal)

    def _forget_unconfirmed(self) -> None:
        """After a disconnection: baselines not known to predate it may have missed changes."""
        with self._lock:
            doubtful = set(self._tentative).union(*self._confirming.values())
            self._tentative.clear()
            self._confirming.clear()
            for name, seen in self._seen.items():
                if seen is _UNKNOWN or seen is _VANISHING or name in doubtful:
                    self._seen[name] = _STALE

    def _session(self, pubsub: PubSubConnection) -> None:
        timeout = self._backend.timeout
        pubsub.subscribe(CHANGE_CHANNEL, REVISION_CHANNEL)
        deadline = time.monotonic() + timeout
        confirmed = 0
        while confirmed < 2:
            if time.monotonic() > deadline:
                raise BackendUnavailableError("Redis did not confirm the subscription")
            message = pubsub.get_message(self._SLICE)
            if message is not None and message.kind == b"subscribe":
                confirmed += 1
            if self._stop_event.is_set():
                return
        with self._lock:
            self._subscribed.set()
            self._refused = None
            self._state_changed.notify_all()
        self._sync(pubsub, vanish_only=False)
        poll = self._backend.poll_interval
        next_poll = time.monotonic() + poll
        last_pong = time.monotonic()
        while not self._stop_event.is_set():
            message = pubsub.get_message(self._SLICE)
            if message is not None:
                if message.kind == b"pong" and isinstance(message.data, bytes):
                    last_pong = time.monotonic()
                    with self._lock:
                        self._confirming.pop(message.data, None)
                elif message.kind == b"message" and isinstance(message.data, bytes):
                    self._on_message(message.channel, message.data)
            now = time.monotonic()
            if self._needs_baseline:
                self._sync(pubsub, vanish_only=True)
            if now >= next_poll:
                self._forget_idle(now)
                if now - last_pong > 3 * poll + timeout:
                    raise BackendUnavailableError("Redis pub/sub connection is unresponsive")
                pubsub.ping()
                self._sync(pubsub, vanish_only=True)
                next_poll = now + poll

    def _on_message(self, channel: bytes, data: bytes) -> None:
        if channel == REVISION_CHANNEL:
            rev, _, written_name = data.partition(b":")
            self._pending = (written_name, int(rev)) if rev.isdigit() else None
            if rev[:1] == b"x" and rev[1:].isdigit():
                self._on_expiry(written_name.decode(errors="replace"), int(rev[1:]))
            return
        pending, self._pending = self._pending, None
        if pending is not None and pending[0].decode(errors="replace") not in self._seen:
            return  # our own script's payload for a name nobody here watches: skip decoding
        try:
            payload = decode_change_payload(data)
            name = payload.name.decode()
        except (DRefError, ValueError) as exc:
            _log.warning("dropped an undecodable %s message: %s", CHANGE_CHANNEL.decode(), exc)
            return
        revision = pending[1] if pending is not None and pending[0] == payload.name else 0
        value = None if payload.delete else payload.value
        with self._lock:
            if name not in self._seen:
                return
            self._seen[name] = value
        self._emit(name, value, revision)
        if revision:
            self._delivered(name, revision)

    def _on_expiry(self, name: str, revision: int) -> None:
        """A script recorded an expiry of `name` at `revision`: deliver its DELETE, unless a
        DELETE already reported the value gone (an upstream delete's, a resync's)."""
        with self._lock:
            if name not in self._seen:
                return
            reported = self._seen[name] is None
            self._seen[name] = None
        if not reported:
            self._emit(name, None, revision)
        self._delivered(name, revision)

    def _delivered(self, name: str, revision: int) -> None:
        """`revision` of `name` reached the listeners: wake writers waiting for it."""
        with self._lock:
            if name not in self._seen:
                return
            if revision > self._delivered_revision.get(name, 0):
                self._delivered_revision[name] = revision
            if revision > self._known_revision.get(name, 0):
                self._known_revision[name] = revision
            self._state_changed.notify_all()

    def _sync(self, pubsub: PubSubConnection, *, vanish_only: bool) -> None:
        """Re-read tracked names; report what pub/sub did not (see the module doc)."""
        with self._lock:
            self._needs_baseline = False
            if vanish_only:
                names = [n for n, v in self._seen.items() if v is not None]
            else:
                names = list(self._seen)
        for start in range(0, len(names), _MGET_CHUNK):
            chunk = names[start : start + _MGET_CHUNK]
            for name, (value, revision) in zip(
                chunk, self._backend._read_many(chunk, None), strict=True
            ):
                self._reconcile(name, value, revision, vanish_only)
        with self._lock:
            if not self._tentative:
                return
            self._confirm_seq += 1
            tag = f"confirm:{self._confirm_seq}"
            self._confirming[tag.encode()], self._tentative = self._tentative, set()
        pubsub.ping(tag)

    def _reconcile(self, name: str, value: bytes | None, revision: int, vanish_only: bool) -> None:
        """Compare `name`'s value and counter, as just read, with what was last seen."""
        with self._lock:
            if name not in self._seen:
                return
            seen = self._seen[name]
            known = self._known_revision.get(name, 0)
            if seen is _UNKNOWN:  # the baseline read of a new subscription
                self._known_revision[name] = max(known, revision)
                self._seen[name] = value
                if value is not None:
                    self._tentative.add(name)
                    return
        if seen is _UNKNOWN:  # absent: wake a waiter whose holder just expired, at once
            self._emit(name, None, 0)
            return
        with self._lock:
            if seen is _STALE or (
                not vanish_only and (seen != value or revision > known)
            ):  # changes may have been missed (a reconnect)
                resync = True
                self._known_revision[name] = max(known, revision)
            elif seen is None or value is not None:
                return
            else:  # the poll: a value seen present is gone
                resync = False
        if value is None:
            deleted = self._backend._note_expiry(name)  # first records a pending expiry
            if not resync and deleted > known:  # its DELETE event is on its way
                with self._lock:
                    if self._seen.get(name) is seen:
                        self._seen[name] = _VANISHING
                return
        with self._lock:
            if self._seen.get(name) is not seen:
                return  # changed meanwhile (an event, unwatch, mark_stale): that reports it
            self._seen[name] = value
        self._emit(name, value, 0, resync=resync)

    def _emit(self, name: str, value: bytes | None, revision: int, *, resync: bool = False) -> None:
        kind = ChangeKind.DELETE if value is None else ChangeKind.SET
        self._backend._registry.publish(ChangeEvent(name, kind, value, revision, resync))


def redis_context(
    url: str, *, read_policy: ReadPolicyName = "linearizable", **options: Any
) -> Context:
    """A `dref.context.Context` on a `RedisBackend(url, **options)`."""
    from dref.context import Context

    return Context(RedisBackend(url, **options), read_policy=read_policy)


def _payload_around_value(name: str, style: Style) -> tuple[bytes, bytes]:
    """The upstream ChangePayload of a set of `name` split around its value byte array:
    what comes before it and what follows (the Lua script puts the array between)."""
    empty = encode_change_payload(
        ChangePayload(name=name.encode(), value=b"", delete=False), style=style
    )
    tail = msgpack.packb("delete") + msgpack.packb(False)
    head = empty[: -(1 + len(tail))]  # drop the empty array (one byte) and the tail
    return head, tail
