"""Shared fixtures for the backend-independent API tests.

`ctx` is parametrised by backend: every test written against it runs on each backend
listed in `BACKENDS` (only "local" for now; later backends add their own factory).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

import dref


def _local() -> dref.Context:
    return dref.local()


BACKENDS: dict[str, Callable[[], dref.Context]] = {"local": _local}


@pytest.fixture(params=sorted(BACKENDS))
def ctx(request: pytest.FixtureRequest) -> Iterator[dref.Context]:
    """A fresh context on each backend; closed after the test."""
    context = BACKENDS[request.param]()
    yield context
    context.close()


Waiter = Callable[..., None]


def _wait_until(predicate: Callable[[], object], timeout: float = 10.0, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(message or f"condition not met within {timeout} s")
        time.sleep(0.005)  # a poll under a deadline, not synchronisation by sleeping


@pytest.fixture
def wait_until() -> Waiter:
    """`wait_until(predicate, timeout=10, message="")`: poll until true, else fail."""
    return _wait_until


@pytest.fixture
def dref_threads() -> Callable[[], list[str]]:
    """Names of the live threads started by dref (their names start with "dref-")."""

    def names() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("dref-")]

    return names
