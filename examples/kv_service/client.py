"""A small client of the KV service, standard library only: `get`, `put`, `delete` and
`watch`, and the same as a command line.

    python examples/kv_service/client.py put greeting '{"hello": "world"}' --ttl 60
    python examples/kv_service/client.py get greeting
    python examples/kv_service/client.py --url http://127.0.0.1:8002 delete greeting
    python examples/kv_service/client.py watch greeting      # one JSON line per change

Each call goes to the first of `urls` that answers; a refused connection or a 503 (no
leader yet, no quorum) moves on to the next, round after round, until `deadline` seconds
have passed, so a call made while a leader dies waits for the next one. A follower's 307
is followed by sending the same request, body included, to the leader (urllib itself does
not re-send bodies on 307). A PUT or DELETE that got a 503 may have been applied anyway;
sending it again leaves the same value. `--url` (repeatable) defaults to $KV_URLS
(comma-separated) or the three services of the README.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.client import HTTPResponse
from types import TracebackType
from typing import Any
from urllib.parse import quote, urljoin

DEFAULT_URLS = "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003"
MAX_REDIRECTS = 3
RETRY_PAUSE = 0.1
"""Seconds between two rounds over all services (a pause while a leader is elected)."""


class KvError(Exception):
    """The service answered `status` with {"error": message}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand every redirect back as an HTTPError: `_send` follows it, body and all."""

    def redirect_request(self, *args: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def get(name: str, urls: list[str], *, deadline: float = 10.0) -> dict[str, Any]:
    """{"name", "value", "revision"} of `name`; KvError 404 when absent."""
    return call("GET", _path(name), urls, deadline=deadline)


def put(
    name: str, value: Any, urls: list[str], *, ttl: float | None = None, deadline: float = 10.0
) -> int:
    """Store the JSON `value` under `name` (expiring after `ttl` s); the new revision."""
    body: dict[str, Any] = {"value": value} if ttl is None else {"value": value, "ttl": ttl}
    answer = call("PUT", _path(name), urls, json.dumps(body).encode(), deadline=deadline)
    revision: int = answer["revision"]
    return revision


def delete(name: str, urls: list[str], *, deadline: float = 10.0) -> int:
    """Delete `name`; the revision of the delete."""
    revision: int = call("DELETE", _path(name), urls, deadline=deadline)["revision"]
    return revision


def watch(name: str, urls: list[str], *, timeout: float = 60.0) -> Watch:
    """The changes of `name` from the first service that answers; open once this returns.
    Each read waits at most `timeout` s (the service sends a comment every 10 s)."""
    last: Exception = KvError(503, "no service URL given")
    for base in urls:
        try:
            return Watch(_OPENER.open(base + _path(name) + "?watch=1", timeout=timeout))
        except urllib.error.HTTPError as e:
            raise _error(e) from None
        except OSError as e:
            last = e
    raise last


class Watch:
    """An open event stream: iterate for each change as a dict ({"event": "set" or
    "delete", "name", "revision", and "value" for a set}); `close()` ends it."""

    def __init__(self, answer: HTTPResponse) -> None:
        self.answer = answer

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        for line in self.answer:
            if line.startswith(b"data: "):
                event: dict[str, Any] = json.loads(line[len(b"data: ") :])
                return event
        raise StopIteration  # the service closed the stream

    def close(self) -> None:
        self.answer.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def call(
    method: str, path: str, urls: list[str], body: bytes | None = None, *, deadline: float = 10.0
) -> dict[str, Any]:
    """The JSON answer of the first service that gives one, trying every URL in turn
    (refused or 503: the next) until `deadline` seconds have passed."""
    if not urls:
        raise ValueError("give at least one service URL")
    end = time.monotonic() + deadline
    last: Exception
    while True:
        for base in urls:
            try:
                return _send(method, base.rstrip("/") + path, body, end - time.monotonic())
            except KvError as e:
                if e.status != 503:
                    raise
                last = e
            except OSError as e:  # refused, reset or timed out: try the next service
                last = e
        if time.monotonic() + RETRY_PAUSE >= end:
            raise last
        time.sleep(RETRY_PAUSE)


def _send(method: str, url: str, body: bytes | None, timeout: float) -> dict[str, Any]:
    """One request, following up to MAX_REDIRECTS redirects with the same body."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    for _ in range(MAX_REDIRECTS + 1):
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with _OPENER.open(request, timeout=max(timeout, 0.1)) as answer:
                result: dict[str, Any] = json.loads(answer.read())
                return result
        except urllib.error.HTTPError as e:
            location = e.headers.get("Location")
            if e.code not in (307, 308) or not location:
                raise _error(e) from None
            e.close()
            url = urljoin(url, location)
    raise KvError(307, f"more than {MAX_REDIRECTS} redirects, the last to {url}")


def _error(answer: urllib.error.HTTPError) -> KvError:
    """The KvError of an error answer, with its "error" message when it has one."""
    try:
        message = str(json.loads(answer.read())["error"])
    except (ValueError, KeyError, TypeError):
        message = answer.reason
    finally:
        answer.close()
    return KvError(answer.code, message)


def _json_argument(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e}); quote text as '\"text\"'") from None


def _path(name: str) -> str:
    return "/keys/" + quote(name, safe="")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Use the dref KV service.")
    parser.add_argument("--url", action="append", help="a service's base URL (repeatable)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("get", help="print the value and revision").add_argument("name")
    put_command = commands.add_parser("put", help="store a JSON value")
    put_command.add_argument("name")
    put_command.add_argument("value", type=_json_argument, help="JSON text: 42, '\"hi\"'")
    put_command.add_argument("--ttl", type=float, help="seconds until the value expires")
    commands.add_parser("delete", help="delete the value").add_argument("name")
    commands.add_parser("watch", help="print every change until Ctrl-C").add_argument("name")
    args = parser.parse_args(argv)
    urls = args.url or os.environ.get("KV_URLS", DEFAULT_URLS).split(",")
    try:
        if args.command == "get":
            print(json.dumps(get(args.name, urls)))
        elif args.command == "put":
            revision = put(args.name, args.value, urls, ttl=args.ttl)
            print(json.dumps({"revision": revision}))
        elif args.command == "delete":
            print(json.dumps({"revision": delete(args.name, urls)}))
        else:
            with watch(args.name, urls) as changes:
                for event in changes:
                    print(json.dumps(event), flush=True)
    except KvError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: no service answered: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
