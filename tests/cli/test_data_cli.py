"""`dref get/set/delete/watch/lock` run as real subprocesses against a real 3-node
`dref node` cluster and a real redis-server: round trips in every codec, output formats,
watching another process's changes, locks around commands, and usage errors."""

from __future__ import annotations

import argparse
import json
import queue
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import pytest

import dref
from dref.cli import build_parser
from dref.data_cli import DATA_COMMANDS, EXIT_LOCK_LOST, EXIT_LOCK_TIMEOUT
from dref.wire.json_codec import JsonCodec
from dref.wire.msgpack_codec import MsgPackCodec
from testkit.dref_command import DREF, cli_env, run_dref


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a run that must have succeeded."""
    assert result.returncode == 0, result.stderr
    return result.stdout


def revision_of(result: subprocess.CompletedProcess[str]) -> int:
    """The revision `dref set` / `dref delete` printed ("OK revision N")."""
    words = ok(result).split()
    assert words[:2] == ["OK", "revision"], result.stdout
    return int(words[2])


class Lines:
    """The lines a stream of a running process writes, read on a thread of its own so the
    test can wait for the next one with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next(self, timeout: float = 60.0) -> str:
        """The next line; fails the test at the end of the stream or after `timeout` s."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no line within {timeout} s; lines so far: {self.seen}")
        if line is None:
            pytest.fail(f"the stream ended; lines so far: {self.seen}")
        self.seen.append(line)
        return line

    def rest(self, timeout: float = 60.0) -> list[str]:
        """The remaining lines, once the stream ends (within `timeout` s)."""
        deadline = time.monotonic() + timeout
        rest: list[str] = []
        for _ in range(10_000):
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"the stream did not end within {timeout} s; got {rest}")
            if line is None:
                return rest
            rest.append(line)
        pytest.fail(f"more than 10000 lines: {rest[:20]}")


class Running:
    """`dref ARGS...` running in the background, its stdout and stderr read line by line."""

    def __init__(self, *args: str, stdin: int = subprocess.DEVNULL) -> None:
        self.process = subprocess.Popen(
            [*DREF, *args],
            env=cli_env(),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.stdout = Lines(self.process.stdout)
        self.stderr = Lines(self.process.stderr)

    def wait(self, timeout: float = 60.0) -> int:
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture
def background() -> Iterator[Callable[..., Running]]:
    """`background(*args, stdin=DEVNULL)`: start `dref ARGS...`; killed after the test."""
    started: list[Running] = []

    def start(*args: str, stdin: int = subprocess.DEVNULL) -> Running:
        started.append(Running(*args, stdin=stdin))
        return started[-1]

    yield start
    for running in started:
        running.kill()


def library_context(backend: list[str]) -> dref.Context:
    """A context of this process on the same backend as the `dref` options `backend`."""
    flag, target = backend
    if flag == "--endpoints":
        return dref.raft_client(target.split(","), timeout=20)
    return dref.redis(target, timeout=10)


# -- get / set / delete -----------------------------------------------------------------

ROUND_TRIPS: dict[str, list[tuple[str | bytes, str, Any]]] = {
    # codec: [(VALUE as given, `dref get` output, the "value" of `dref get --json`)]
    "msgpack": [
        ("5", "5", 5),
        ("hello", "hello", "hello"),
        ('{"a": [1, 2]}', '{"a":[1,2]}', {"a": [1, 2]}),
    ],
    "json": [("true", "true", True), ('"5"', "5", "5"), ("[1, 2.5]", "[1,2.5]", [1, 2.5])],
    "raw": [
        ("5", "5", "5"),
        ("héllo wörld", "héllo wörld", "héllo wörld"),
        (b"\xff\xfe", "fffe", "fffe"),
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("codec", sorted(ROUND_TRIPS))
def test_set_get_delete_round_trip(backend: list[str], name: str, codec: str) -> None:
    options = [*backend, "--codec", codec]
    revisions = []
    for value, shown, as_json in ROUND_TRIPS[codec]:
        written = json.loads(ok(run_dref("set", name, value, *options, "--json")))
        revisions.append(written["revision"])
        assert ok(run_dref("get", name, *options)) == shown + "\n"
        document = json.loads(ok(run_dref("get", name, *options, "--json")))
        assert document["name"] == name and document["value"] == as_json
        assert document["revision"] == written["revision"]
    deleted = revision_of(run_dref("delete", name, *options))
    assert revisions == sorted(revisions) and deleted > revisions[-1]
    missing = run_dref("get", name, *options)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == f"dref: {name} not found\n"


@pytest.mark.slow
def test_raw_json_output_says_how_the_bytes_are_written(backend: list[str], name: str) -> None:
    ok(run_dref("set", name, b"\x80abc", *backend, "--codec", "raw"))
    document = json.loads(ok(run_dref("get", name, *backend, "--codec", "raw", "--json")))
    assert (document["value"], document["encoding"]) == ("80616263", "hex")


@pytest.mark.slow
def test_what_the_cli_writes_the_library_reads_and_back(backend: list[str], name: str) -> None:
    ok(run_dref("set", name, '{"x": [1, "two"]}', *backend))
    with library_context(backend) as ctx:
        entry = ctx.backend.get(name)
        assert entry is not None
        assert MsgPackCodec().decode(entry.value) == {"x": [1, "two"]}
        revision = ctx.backend.set(name + "-j", JsonCodec().encode({"k": None}), 60)
    document = json.loads(ok(run_dref("get", name + "-j", *backend, "--codec", "json", "--json")))
    assert document == {"name": name + "-j", "value": {"k": None}, "revision": revision}


@pytest.mark.slow
def test_set_with_a_ttl_expires(backend: list[str], name: str) -> None:
    assert ok(run_dref("set", name, "1", "--ttl", "1", *backend)).endswith(", expires in 1 s\n")
    deadline = time.monotonic() + 30
    while run_dref("get", name, *backend).returncode == 0:
        assert time.monotonic() < deadline, "the value did not expire"
        time.sleep(0.2)  # a poll under a deadline
    assert run_dref("get", name, *backend).stderr == f"dref: {name} not found\n"


@pytest.mark.slow
def test_an_undecodable_value_fails_naming_the_codec(backend: list[str], name: str) -> None:
    ok(run_dref("set", name, b"\xc1", *backend, "--codec", "raw"))
    result = run_dref("get", name, *backend)
    assert result.returncode == 1
    assert "not msgpack" in result.stderr and "--codec raw" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.redis
def test_the_backend_comes_from_the_environment(
    raft_endpoints: str, redis_url: str, name: str
) -> None:
    for variable, target in (("DREF_ENDPOINTS", raft_endpoints), ("DREF_REDIS_URL", redis_url)):
        env = cli_env(**{variable: target})
        ok(run_dref("set", name, "7", env=env))
        assert ok(run_dref("get", name, env=env)) == "7\n"


# -- watch ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_watch_prints_each_change_until_ctrl_c(
    backend: list[str], name: str, background: Callable[..., Running]
) -> None:
    watcher = background("watch", name, *backend)
    assert watcher.stderr.next() == f"watching {name}; Ctrl-C to stop"
    first = revision_of(run_dref("set", name, "1", *backend))
    assert watcher.stdout.next() == f"changed {name} revision {first}: 1"
    second = revision_of(run_dref("set", name, "[1, 2]", *backend))
    assert watcher.stdout.next() == f"changed {name} revision {second}: [1,2]"
    gone = revision_of(run_dref("delete", name, *backend))
    assert watcher.stdout.next() == f"deleted {name} revision {gone}"
    watcher.process.send_signal(signal.SIGINT)
    assert watcher.wait() == 0
    assert watcher.stdout.rest() == []
    assert watcher.stderr.rest() == []  # no traceback, no warning


@pytest.mark.slow
def test_watch_json_prints_one_object_per_event_until_sigterm(
    backend: list[str], name: str, background: Callable[..., Running]
) -> None:
    ok(run_dref("set", name, "old", *backend))
    watcher = background("watch", name, "--json", *backend)
    watcher.stderr.next()
    first = revision_of(run_dref("set", name, '{"n": 1}', *backend))
    event = json.loads(watcher.stdout.next())
    assert event == {"event": "changed", "name": name, "revision": first, "value": {"n": 1}}
    ok(run_dref("set", name, b"\xc1", *backend, "--codec", "raw"))  # never valid MsgPack
    event = json.loads(watcher.stdout.next())
    assert event["event"] == "undecodable" and "MsgPack" in event["error"]
    gone = revision_of(run_dref("delete", name, *backend))
    assert json.loads(watcher.stdout.next()) == {"event": "deleted", "name": name, "revision": gone}
    watcher.process.send_signal(signal.SIGTERM)
    assert watcher.wait() == 0
    assert watcher.stderr.rest() == []


@pytest.mark.slow
def test_watch_with_a_timeout_stops_after_that_long_without_changes(
    backend: list[str], name: str
) -> None:
    result = run_dref("watch", name, "--timeout", "0.5", *backend)
    assert (result.returncode, result.stdout) == (0, "")


@pytest.mark.slow
def test_watch_after_a_revision_prints_the_changes_it_missed_first(
    backend: list[str], name: str
) -> None:
    first = revision_of(run_dref("set", name, "1", *backend))
    second = revision_of(run_dref("set", name, "2", *backend))
    gone = revision_of(run_dref("delete", name, *backend))
    result = run_dref("watch", name, "--after", str(first), "--timeout", "0.5", *backend)
    assert ok(result).splitlines() == [
        f"changed {name} revision {second}: 2",
        f"deleted {name} revision {gone}",
    ]


# -- lock ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_lock_runs_the_command_with_a_fencing_token_and_its_exit_status(
    backend: list[str], name: str
) -> None:
    first = run_dref("lock", name, *backend, "--", "sh", "-c", "echo $DREF_FENCING_TOKEN")
    second = run_dref("lock", name, *backend, "--", "sh", "-c", "echo $DREF_FENCING_TOKEN")
    assert int(ok(first)) > 0 and int(ok(second)) > int(ok(first))
    assert first.stderr == ""
    failing = run_dref("lock", name, *backend, "--", "sh", "-c", "exit 3")
    assert (failing.returncode, failing.stderr) == (3, "")
    missing = run_dref("lock", name, *backend, "--", "no-such-command-here")
    assert missing.returncode == 127 and "no-such-command-here" in missing.stderr


@pytest.mark.slow
def test_a_second_lock_times_out_while_the_first_is_held(
    backend: list[str], name: str, background: Callable[..., Running]
) -> None:
    script = "echo $DREF_FENCING_TOKEN; cat >/dev/null"  # holds the lock until stdin closes
    holder = background("lock", name, *backend, "--", "sh", "-c", script, stdin=subprocess.PIPE)
    held = int(holder.stdout.next())
    started = time.monotonic()
    waiter = run_dref("lock", name, "--timeout", "1", *backend, "--", "true")
    assert waiter.returncode == EXIT_LOCK_TIMEOUT
    assert waiter.stderr == f"dref: could not acquire lock {name} within 1 s\n"
    assert time.monotonic() - started >= 1
    assert holder.process.stdin is not None
    holder.process.stdin.close()
    assert holder.wait() == 0
    after = run_dref("lock", name, *backend, "--", "sh", "-c", "echo $DREF_FENCING_TOKEN")
    assert int(ok(after)) > held


@pytest.mark.slow
def test_a_lost_lock_terminates_the_command(
    backend: list[str], name: str, background: Callable[..., Running]
) -> None:
    script = "echo $DREF_FENCING_TOKEN; exec sleep 120"
    holder = background("lock", name, "--ttl", "30", *backend, "--", "sh", "-c", script)
    int(holder.stdout.next())
    ok(run_dref("delete", name, *backend))  # another process breaks the lock
    assert holder.wait() == EXIT_LOCK_LOST
    assert f"dref: lock {name} was lost while sh ran" in holder.stderr.next()


# -- usage and connection errors ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "no backend: give --endpoints"),
        (["--endpoints", "127.0.0.1:7001", "--redis", "redis://x"], {}, "--endpoints and --redis"),
        ([], {"DREF_ENDPOINTS": "a:1", "DREF_REDIS_URL": "redis://x"}, "both set"),
        (["--endpoints", "localhost"], {}, "--endpoints: 'localhost' is not HOST:PORT"),
        (["--endpoints", "127.0.0.1:7001,127.0.0.1:x"], {}, "'127.0.0.1:x' has no valid port"),
        ([], {"DREF_ENDPOINTS": "127.0.0.1"}, "DREF_ENDPOINTS: '127.0.0.1' is not HOST:PORT"),
        (["--endpoints", " , "], {}, "--endpoints is empty"),
        (["--redis", "http://127.0.0.1:6379"], {}, "--redis: a Redis URL starts with redis://"),
    ],
)
@pytest.mark.parametrize("command", [["get", "n"], ["lock", "n"]])
def test_a_missing_or_invalid_backend_is_a_usage_error(
    command: list[str], args: list[str], env: dict[str, str], message: str
) -> None:
    started = time.monotonic()
    child = ["--", "true"] if command[0] == "lock" else []
    result = run_dref(*command, *args, "--timeout", "30", *child, env=cli_env(**env))
    assert time.monotonic() - started < 15  # no connection attempted (it would take 30 s)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("dref: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--endpoints", "--redis"])
def test_an_unreachable_backend_fails_naming_it(flag: str) -> None:
    port = _closed_port()
    target = f"127.0.0.1:{port}" if flag == "--endpoints" else f"redis://127.0.0.1:{port}/0"
    result = run_dref("get", "n", flag, target, "--timeout", "1")
    assert (result.returncode, result.stdout) == (1, "")
    assert f"127.0.0.1:{port}" in result.stderr and "refused" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_option_of_every_data_command_has_help() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in DATA_COMMANDS:
        for action in commands.choices[command]._actions:
            assert action.help and action.help != argparse.SUPPRESS, (command, action.dest)
