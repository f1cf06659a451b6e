"""The data commands of `dref` (``get``, ``set``, ``delete``, ``watch``, ``lock``): read and
change values of a running Raft cluster or Redis server from a shell, as etcdctl and
redis-cli do. Everything goes through the public context API (`dref.raft_client`,
`dref.redis`, `Context.backend`, `Context.lock`).

Exit status: 0 done, 1 failed (name not found, backend unreachable, undecodable value),
2 bad usage (no backend, both backends, malformed endpoint). ``dref lock`` exits with the
command's status, or `EXIT_LOCK_TIMEOUT` / `EXIT_LOCK_LOST` / 126 / 127 (see `_lock`).
"""

from __future__ import annotations

import argparse
import binascii
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import dref
from dref.changes import Changed, Deleted, Event, Lagged, Undecodable
from dref.errors import ConfigError, DRefError, NotFoundError
from dref.lock import DEFAULT_LOCK_TIMEOUT
from dref.tls_options import add_tls_arguments, tls_of
from dref.wire.codec import Codec
from dref.wire.json_codec import JsonCodec
from dref.wire.msgpack_codec import MsgPackCodec

__all__ = [
    "DATA_COMMANDS",
    "DEFAULT_TIMEOUT",
    "EXIT_FAILED",
    "EXIT_LOCK_LOST",
    "EXIT_LOCK_TIMEOUT",
    "EXIT_USAGE",
    "FENCING_TOKEN_VARIABLE",
    "add_data_commands",
    "run_data_command",
]

DATA_COMMANDS = ("get", "set", "delete", "watch", "lock")

DEFAULT_TIMEOUT = 5.0
"""Seconds each backend call may take before the command fails."""

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCK_TIMEOUT = 124
"""`dref lock`: the lock was not acquired within --timeout (as timeout(1) reports a timeout)."""
EXIT_LOCK_LOST = 125
"""`dref lock`: the lock was lost while the command ran (the command was sent SIGTERM)."""
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127

FENCING_TOKEN_VARIABLE = "DREF_FENCING_TOKEN"

KILL_GRACE = 5.0
"""Seconds a command gets to exit after SIGTERM (lock lost) before it is sent SIGKILL."""

CODECS = ("msgpack", "json", "raw")


class UsageError(ConfigError):
    """The command line (or the DREF_* variables) cannot be used as given."""


# -- the parser ----------------------------------------------------------------------------


def add_data_commands(commands: Any) -> None:
    """Add the data subcommands to the `dref` parser's subparsers (`commands`); each sets
    `data_command`, the function that runs it and returns the exit status."""
    backend_options = argparse.ArgumentParser(add_help=False)
    backend = backend_options.add_argument_group("backend (exactly one)")
    backend.add_argument(
        "--endpoints",
        metavar="HOST:PORT,...",
        help="Raft nodes to talk to, comma-separated (default: $DREF_ENDPOINTS)",
    )
    backend.add_argument(
        "--redis",
        metavar="URL",
        help="Redis server, redis://[user:password@]host:port/db (default: $DREF_REDIS_URL)",
    )
    add_tls_arguments(backend_options.add_argument_group("Raft with TLS"))
    value_options = argparse.ArgumentParser(add_help=False)
    value_options.add_argument(
        "--codec",
        choices=CODECS,
        default="msgpack",
        help="how values are stored: msgpack (default, what Scala and Rust nodes read), json, "
        "or raw bytes (printed as UTF-8 text, or as hex digits when not UTF-8)",
    )
    value_options.add_argument(
        "--json", action="store_true", help="print JSON (one object per line) instead of text"
    )

    def value_command(name: str, help_text: str, run: Callable[..., int]) -> Any:
        parents = [backend_options, value_options]
        sub = commands.add_parser(name, parents=parents, help=help_text, description=help_text)
        sub.set_defaults(data_command=run)
        sub.add_argument("name", metavar="NAME", help="the value's name")
        return sub

    def call_timeout(sub: Any) -> None:
        sub.add_argument(
            "--timeout",
            type=_seconds,
            default=DEFAULT_TIMEOUT,
            metavar="S",
            help=f"seconds to wait for the backend (default {DEFAULT_TIMEOUT:g})",
        )

    call_timeout(value_command("get", "print a value", _get))

    set_ = value_command("set", "write a value; prints its revision", _set)
    set_.add_argument(
        "value",
        metavar="VALUE",
        help="the value: with msgpack or json, JSON if it parses (5, true, [1,2], "
        "'\"5\"'), else the text as a string; with raw, the bytes as given",
    )
    set_.add_argument("--ttl", type=_seconds, metavar="S", help="expire after S seconds")
    call_timeout(set_)

    call_timeout(value_command("delete", "delete a value; prints the delete's revision", _delete))

    watch = value_command("watch", "print each change of a value, until Ctrl-C", _watch)
    watch.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        help="stop (exit 0) after S seconds without a change (default: never)",
    )
    watch.add_argument(
        "--after",
        type=int,
        metavar="REV",
        help="first print every kept change after revision REV (say, the last one a"
        " previous watch printed), then live ones",
    )

    lock = commands.add_parser(
        "lock",
        parents=[backend_options],
        help="run a command while holding a lock: dref lock NAME -- COMMAND ARGS...",
    )
    lock.set_defaults(data_command=_lock)
    lock.add_argument("name", metavar="NAME", help="the lock's name")
    lock.description = (
        "Acquire the lock NAME, run COMMAND with the lock's fencing token in "
        f"${FENCING_TOKEN_VARIABLE}, release the lock, and exit with COMMAND's status. "
        f"Exits {EXIT_LOCK_TIMEOUT} if the lock was not acquired within --timeout, "
        f"{EXIT_LOCK_LOST} if it was lost while COMMAND ran (COMMAND is then sent SIGTERM), "
        f"{EXIT_CANNOT_RUN}/{EXIT_NOT_FOUND} if COMMAND cannot be run / is not found."
    )
    lock.add_argument(
        "--ttl",
        type=_seconds,
        metavar="S",
        help="lease in seconds, renewed while held (default: the backend's, Raft 10, Redis 20)",
    )
    lock.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_LOCK_TIMEOUT,
        metavar="S",
        help=f"seconds to wait for the lock (default {DEFAULT_LOCK_TIMEOUT:g})",
    )
    lock.add_argument(
        "command", nargs="+", metavar="COMMAND", help="the command and its arguments, after --"
    )


def _seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


# -- backends ---------------------------------------------------------------------------


def _open_context(args: argparse.Namespace, timeout: float) -> dref.Context:
    """The context on the backend chosen by --endpoints/--redis or their DREF_* variables."""
    endpoints, redis_url = args.endpoints, args.redis
    endpoints_source, redis_source = "--endpoints", "--redis"
    if endpoints is not None and redis_url is not None:
        raise UsageError("--endpoints and --redis both given; choose one backend")
    if endpoints is None and redis_url is None:
        endpoints = os.environ.get("DREF_ENDPOINTS") or None
        redis_url = os.environ.get("DREF_REDIS_URL") or None
        endpoints_source, redis_source = "DREF_ENDPOINTS", "DREF_REDIS_URL"
        if endpoints is not None and redis_url is not None:
            raise UsageError(
                "DREF_ENDPOINTS and DREF_REDIS_URL are both set; choose one backend "
                "with --endpoints or --redis"
            )
    if endpoints is not None:
        addresses = parse_endpoints(endpoints, endpoints_source)
        return dref.raft_client(addresses, timeout=timeout, tls=tls_of(args))
    if redis_url is not None:
        if urlsplit(redis_url).scheme not in ("redis", "rediss"):
            raise UsageError(f"{redis_source}: a Redis URL starts with redis:// or rediss://")
        try:
            return dref.redis(redis_url, timeout=timeout)
        except ConfigError as exc:
            raise UsageError(f"{redis_source}: {exc}") from None
    raise UsageError(
        "no backend: give --endpoints HOST:PORT,... (or set DREF_ENDPOINTS) for Raft, "
        "or --redis URL (or set DREF_REDIS_URL) for Redis"
    )


def parse_endpoints(text: str, source: str = "--endpoints") -> list[str]:
    """The HOST:PORT addresses of a comma-separated list; `UsageError` naming `source`
    for an empty list or an address without a valid port."""
    addresses = [item.strip() for item in text.split(",") if item.strip()]
    if not addresses:
        raise UsageError(f"{source} is empty; give HOST:PORT,...")
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not host or host == "[]":
            raise UsageError(f"{source}: {address!r} is not HOST:PORT (the port is required)")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"{source}: {address!r} has no valid port (1-65535)")
    return addresses


# -- codecs and output ------------------------------------------------------------------


class RawCodec:
    """Values are the stored bytes themselves."""

    def encode(self, value: bytes) -> bytes:
        return bytes(value)

    def decode(self, data: bytes) -> bytes:
        return bytes(data)


def _codec(name: str) -> Codec[Any]:
    if name == "json":
        return JsonCodec()
    if name == "raw":
        return RawCodec()
    return MsgPackCodec()


def parse_value(text: str, codec: str) -> Any:
    """The value `dref set` stores for the command-line `text`: raw bytes as given with
    `raw`; otherwise the JSON value `text` holds, or `text` itself if it is not JSON."""
    if codec == "raw":
        return os.fsencode(text)
    try:
        return json.loads(text, parse_constant=_not_json)
    except ValueError:
        return text


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


def plain(value: Any) -> Any:
    """`value` as JSON-ready data: bytes as UTF-8 text (hex digits if not UTF-8), tuples as
    lists, map keys as strings."""
    if isinstance(value, (bytes, bytearray)):
        return _bytes_text(bytes(value))
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {_key(key): plain(item) for key, item in value.items()}
    return value


def _key(key: Any) -> str:
    shown = plain(key)
    return shown if isinstance(shown, str) else json.dumps(shown)


def _bytes_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return binascii.hexlify(data).decode("ascii")


def show(value: Any) -> str:
    """`value` for people: text as it is, everything else as compact JSON."""
    shown = plain(value)
    if isinstance(shown, str):
        return shown
    return json.dumps(shown, ensure_ascii=False, separators=(",", ":"))


def _json_line(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False)


def _raw_encoding(value: Any) -> dict[str, str]:
    """For raw values in --json output: how `value` is written ("utf-8" or "hex")."""
    if not isinstance(value, bytes):
        return {}
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return {"encoding": "hex"}
    return {"encoding": "utf-8"}


def _out(line: str) -> None:
    print(line, flush=True)


def _seconds_text(seconds: float) -> str:
    return f"{seconds:g} s"


# -- the commands -----------------------------------------------------------------------


def _get(args: argparse.Namespace) -> int:
    codec = _codec(args.codec)
    with _context(args, args.timeout) as ctx:
        entry = ctx.backend.get(args.name, timeout=args.timeout)
        if entry is None:
            raise NotFoundError(args.name)
        value = _decode(codec, entry.value, args)
    if args.json:
        document = {"name": args.name, "value": plain(value), "revision": entry.revision}
        _out(_json_line({**document, **_raw_encoding(value)}))
    else:
        _out(show(value))
    return 0


def _set(args: argparse.Namespace) -> int:
    data = _codec(args.codec).encode(parse_value(args.value, args.codec))
    with _context(args, args.timeout) as ctx:
        revision = ctx.backend.set(args.name, data, args.ttl, timeout=args.timeout)
        ttl = None if args.ttl is None else ctx.backend.effective_ttl(args.ttl)
    if args.json:
        _out(_json_line({"revision": revision}))
    elif ttl is None:
        _out(f"OK revision {revision}")
    else:
        _out(f"OK revision {revision}, expires in {_seconds_text(ttl)}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _context(args, args.timeout) as ctx:
        revision = ctx.backend.delete(args.name, timeout=args.timeout)
    _out(_json_line({"revision": revision}) if args.json else f"OK revision {revision}")
    return 0


def _watch(args: argparse.Namespace) -> int:
    codec = _codec(args.codec)
    with _stop_on_signals(), _context(args, DEFAULT_TIMEOUT) as ctx:
        stream: dref.ChangeStream[Any] = dref.DRef(ctx, args.name, codec).changes(
            args.timeout, after=args.after
        )
        # read after subscribing: fails now if the backend is unreachable, and gives the
        # state that events without a revision (a backend's resync) may merely repeat
        entry = ctx.backend.get(args.name, timeout=DEFAULT_TIMEOUT)
        known = _ABSENT if entry is None else _decoded_or_unknown(codec, entry.value)
        print(f"watching {args.name}; Ctrl-C to stop", file=sys.stderr, flush=True)
        for event in stream:  # closing the context closes the stream
            if isinstance(event, (Changed, Deleted)):
                if event.revision == 0 and _same_state(event, known):
                    continue
                known = _ABSENT if isinstance(event, Deleted) else event.value
            _out(_event_line(args, event))
    return 0


_ABSENT = object()
_UNKNOWN = object()
"""What `dref watch` knows of the value: absent, or present but not decodable."""


def _decoded_or_unknown(codec: Codec[Any], data: bytes) -> Any:
    try:
        return codec.decode(data)
    except dref.CodecError:
        return _UNKNOWN


def _same_state(event: Changed[Any] | Deleted, known: Any) -> bool:
    """Whether `event` leaves the value as it was known to be."""
    if isinstance(event, Deleted):
        return known is _ABSENT
    return known is not _ABSENT and known is not _UNKNOWN and event.value == known


def _event_line(args: argparse.Namespace, event: Event[Any]) -> str:
    name = args.name
    if isinstance(event, Changed):
        if args.json:
            document = {"event": "changed", "name": name, "revision": event.revision}
            return _json_line({**document, "value": plain(event.value)})
        return f"changed {name} revision {event.revision}: {show(event.value)}"
    if isinstance(event, Deleted):
        if args.json:
            return _json_line({"event": "deleted", "name": name, "revision": event.revision})
        return f"deleted {name} revision {event.revision}"
    if isinstance(event, Lagged):
        if args.json:
            document = {"event": "lagged", "name": name, "missed": event.missed}
            return _json_line({**document, "resume_after": event.resume_after})
        resume = "" if event.resume_after is None else f" (--after {event.resume_after})"
        return f"lagged {name}: missed {event.missed} changes{resume}"
    assert isinstance(event, Undecodable)
    if args.json:
        document = {"event": "undecodable", "name": name, "revision": event.revision}
        return _json_line({**document, "error": str(event.error)})
    return f"undecodable {name} revision {event.revision}: {event.error}"


def _lock(args: argparse.Namespace) -> int:
    """Run the command under the lock. Exit status: the command's (128+N if signal N ended
    it); EXIT_LOCK_TIMEOUT, EXIT_LOCK_LOST, EXIT_CANNOT_RUN, EXIT_NOT_FOUND otherwise."""
    runner = LockedCommand(args.command)
    with _context(args, DEFAULT_TIMEOUT) as ctx:
        lock = ctx.lock(args.name, ttl=args.ttl, timeout=args.timeout, on_lost=runner.lock_lost)
        # SIGINT/SIGTERM stop the wait for the lock; once the command runs, `runner` forwards
        # them to it instead, until the lock is released and the handlers are restored here
        with _stop_on_signals():
            if not lock.acquire(timeout=args.timeout):
                _error(f"could not acquire lock {args.name} within {_seconds_text(args.timeout)}")
                return EXIT_LOCK_TIMEOUT
            try:
                status = runner.run(lock.fencing_token)
            finally:
                try:
                    lock.release()
                except dref.LockStolenError:
                    runner.lost = True
    if runner.lost:
        _error(
            f"lock {args.name} was lost while {args.command[0]} ran (it was sent SIGTERM); "
            "another holder may have run at the same time"
        )
        return EXIT_LOCK_LOST
    return status


class LockedCommand:
    """The child process `dref lock` runs: started with the fencing token in its
    environment, sent the SIGINT/SIGTERM `dref lock` receives, terminated if the lock is lost."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.lost = False
        self._guard = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None

    def run(self, fencing_token: int) -> int:
        """Run the command to its end; its exit status (128+N if signal N ended it). Leaves
        SIGINT/SIGTERM forwarded to the (finished) command: the caller restores them."""
        env = {**os.environ, FENCING_TOKEN_VARIABLE: str(fencing_token)}
        try:
            with self._guard:
                child = self._child = subprocess.Popen(self.command, env=env)
                if self.lost:  # lost before the command even started
                    _terminate(child)
        except FileNotFoundError:
            _error(f"{self.command[0]}: command not found")
            return EXIT_NOT_FOUND
        except OSError as exc:
            _error(f"{self.command[0]}: cannot run: {exc.strerror or exc}")
            return EXIT_CANNOT_RUN
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda received, _frame: child.send_signal(received))
        code = child.wait()
        return 128 - code if code < 0 else code

    def lock_lost(self) -> None:
        """`on_lost` of the lock (run on its keep-alive thread): terminate the command."""
        with self._guard:
            self.lost = True
            if self._child is not None:
                _terminate(self._child)


def _terminate(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM now, SIGKILL after KILL_GRACE seconds if it is still running."""
    if child.poll() is not None:
        return
    child.terminate()

    def kill_if_running() -> None:
        if child.poll() is None:
            child.kill()

    killer = threading.Timer(KILL_GRACE, kill_if_running)
    killer.daemon = True
    killer.start()


# -- running ----------------------------------------------------------------------------


class _Stopped(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM while `_stop_on_signals` is active."""


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into `_Stopped` within the block (caught by `run`)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stopped(signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _context(args: argparse.Namespace, timeout: float) -> Iterator[dref.Context]:
    ctx = _open_context(args, timeout)
    try:
        yield ctx
    finally:
        ctx.close()


def _decode(codec: Codec[Any], data: bytes, args: argparse.Namespace) -> Any:
    try:
        return codec.decode(data)
    except dref.CodecError as exc:
        raise dref.CodecError(
            f"the value of {args.name} is not {args.codec} ({exc}); try --codec raw"
        ) from None


def _error(message: str) -> None:
    print(f"dref: {message}", file=sys.stderr, flush=True)


def run_data_command(args: argparse.Namespace) -> int:
    """Run the data command `args` describes; its exit status. Errors are one line on
    stderr, never a traceback."""
    logging.basicConfig(format="dref: %(message)s", level=logging.WARNING)
    try:
        return int(args.data_command(args))
    except UsageError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except NotFoundError as exc:
        _error(f"{exc.name} not found")
        return EXIT_FAILED
    except DRefError as exc:
        _error(str(exc))
        return EXIT_FAILED
    except _Stopped as stopped:
        return 0 if args.command == "watch" else 128 + int(stopped.args[0])
    except KeyboardInterrupt:  # Ctrl-C during get/set/delete
        return 128 + signal.SIGINT
    except BrokenPipeError:  # `dref watch n | head -1`: the reader is gone
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
        return 0
