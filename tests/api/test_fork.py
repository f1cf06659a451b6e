"""A context opened before fork() works in the child: its own connections, its change
callbacks firing again, nothing shared with the parent (gunicorn --preload, multiprocessing).
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

import dref

DEADLINE = 60.0


class Child:
    """A forked child running `body(say)`; `say(text)` sends the parent one line."""

    def __init__(self, body: Callable[[Callable[[str], None]], Any]) -> None:
        read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: run, report, leave without running pytest's cleanup
            os.close(read)

            def say(text: str) -> None:
                os.write(write, (text + "\n").encode())

            try:
                say(json.dumps({"result": body(say)}))
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                say(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
            finally:
                os._exit(0)
        os.close(write)
        self._read = read
        self._buffer = b""

    def line(self, timeout: float = DEADLINE) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._read], [], [], max(0.0, remaining))
            if not ready:
                self.kill()
                raise AssertionError(f"the child said nothing within {timeout} s")
            chunk = os.read(self._read, 65536)
            if not chunk:
                _, status = os.waitpid(self.pid, 0)
                raise AssertionError(f"the child exited without answering (status {status})")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def result(self) -> Any:
        answer = json.loads(self.line())
        os.waitpid(self.pid, 0)
        os.close(self._read)
        assert "error" not in answer, answer["error"]
        return answer["result"]

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass


def shared_or_skip(backend_name: str) -> None:
    if backend_name == "raft":
        pytest.skip("a Raft context refuses to be used after fork() (see the raft test below)")


def test_refs_and_updates_work_in_a_forked_child(ctx: dref.Context, backend_name: str) -> None:
    shared_or_skip(backend_name)
    counter = ctx.ref("forked-counter", 0)
    counter.update(lambda n: n + 1)  # the parent's connections are in use before the fork

    def child(say: Callable[[str], None]) -> int:
        for _ in range(5):
            counter.update(lambda n: n + 1)
        return int(counter.get())

    assert Child(child).result() == 6
    # local memory is per process after a fork; shared backends saw the child's writes
    assert counter.get() == (1 if backend_name == "local" else 6)
    counter.set(10)  # and the parent's own connections still work


def test_change_callbacks_fire_again_in_a_forked_child(
    ctx: dref.Context, backend_name: str
) -> None:
    shared_or_skip(backend_name)
    flag = ctx.ref("forked-flag", "off")
    seen: list[object] = []
    flag.on_change(lambda event: seen.append(getattr(event, "value", None)))

    def wait_for(value: str) -> None:
        deadline = time.monotonic() + 30
        while value not in seen:
            assert time.monotonic() < deadline, f"{value!r} not seen in the child: {seen}"
            time.sleep(0.01)  # a poll under a deadline

    def child(say: Callable[[str], None]) -> list[object]:
        flag.set("set-by-child")
        wait_for("set-by-child")
        say("ready")
        if backend_name != "local":  # another process's change reaches the child too
            wait_for("set-by-parent")
        return [value for value in seen if isinstance(value, str)]

    forked = Child(child)
    assert forked.line() == "ready"
    if backend_name != "local":
        flag.set("set-by-parent")
    values = forked.result()
    assert "set-by-child" in values
    if backend_name != "local":
        assert "set-by-parent" in values


def test_a_lock_held_by_the_parent_stays_the_parents(
    ctx: dref.Context, backend_name: str
) -> None:
    shared_or_skip(backend_name)
    with ctx.lock("forked-lock", ttl=30, timeout=5) as lock:
        token = lock.fencing_token

        def child(say: Callable[[str], None]) -> bool:
            other = ctx.lock("forked-lock", ttl=30)
            taken = other.acquire(timeout=0.5)  # False: still held (local: in the copy)
            if taken:
                other.release()
            return taken

        assert Child(child).result() is False
        assert not lock.lost.is_set() and lock.fencing_token == token


def test_the_parent_context_keeps_working_after_many_forks(
    ctx: dref.Context, backend_name: str
) -> None:
    ref = ctx.ref("forked-many", 0)

    def child(say: Callable[[str], None], n: int) -> object:
        try:
            return ref.get() + n
        except dref.ContextClosedError as exc:  # Raft: refused with the cause and the fix
            return str(exc)

    for n in range(3):
        answer = Child(lambda say, n=n: child(say, n)).result()
        if backend_name == "raft":
            assert "cannot be used in the child" in answer and "post_fork" in answer
        else:
            assert answer == n
    ref.update(lambda v: v + 1)
    assert ref.get() == 1
