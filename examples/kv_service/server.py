"""An HTTP JSON key/value service: each process embeds one member of a dref Raft cluster
and serves HTTP with the standard library (`http.server.ThreadingHTTPServer`).

    python examples/kv_service/server.py --id n1 --raft 127.0.0.1:7001 \\
        --http 127.0.0.1:8001 --data-dir /tmp/kv/n1 \\
        --peer n2=127.0.0.1:7002,127.0.0.1:8002 --peer n3=127.0.0.1:7003,127.0.0.1:8003

`--peer ID=RAFT,HTTP` names each other member: its Raft address and its HTTP address.

    GET    /keys/NAME          200 {"name", "value", "revision"}; 404 when absent
    GET    /keys/NAME?watch=1  text/event-stream: one `data: {json}` per set or delete
    PUT    /keys/NAME          body {"value": <any JSON>, "ttl": seconds (optional)};
                               200 {"name", "revision"}
    DELETE /keys/NAME          200 {"name", "revision"}

Writes are made by the leader's service: a follower answers them with a 307 to the same
path on the leader's HTTP address, or 503 while its member knows no leader. Every service
answers reads (linearizable: the library confirms them with the leader). Errors are
{"error": "..."}: 400 bad body, 404 absent, 413 too large, 503 no leader or no quorum.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

import dref
from dref.raft.config import split_address
from dref.raft_backend import RaftBackend

KEYS = "/keys/"
MAX_BODY = 8 * 1024 * 1024
"""Bodies longer than this are refused unread (dref refuses values over 1 MiB anyway)."""
KEEPALIVE = 10.0
"""Seconds between SSE comments on a quiet watch: each write shows whether the client left."""
STATUS_TIMEOUT = 2.0


@dataclass(frozen=True)
class Member:
    """One service of the cluster: its Raft node id and address, and its HTTP address."""

    node_id: str
    raft: str
    http: str


def parse_peer(text: str) -> Member:
    """A `--peer` value, "ID=RAFT_HOST:PORT,HTTP_HOST:PORT"."""
    node_id, _, addresses = text.partition("=")
    raft, _, http = addresses.partition(",")
    if not (node_id and raft and http):
        raise argparse.ArgumentTypeError(f"expected ID=RAFT_ADDRESS,HTTP_ADDRESS, got {text!r}")
    return Member(node_id, raft, http)


class BadRequest(Exception):
    """The request body cannot be used; answered with 400 and this message."""


class KvService:
    """This process's Raft member (embedded through `dref.raft`) and every member's HTTP
    address, so that a follower can send writes to the leader's service."""

    def __init__(self, me: Member, peers: list[Member], data_dir: Path) -> None:
        self.me = me
        self.http_of = {member.node_id: member.http for member in [me, *peers]}
        self.ctx = dref.raft(
            node_id=me.node_id,
            listen=me.raft,
            peers={peer.node_id: peer.raft for peer in peers},
            data_dir=data_dir,
        )
        self.codec: dref.JsonCodec[Any] = dref.JsonCodec()

    def ref(self, name: str) -> dref.DRef[Any]:
        """A handle on `name` holding JSON; unlike `ctx.ref`, it writes no initial value."""
        return dref.DRef(self.ctx, name, self.codec)

    def leader(self) -> str | None:
        """The node id of the leader our member follows (or is), None while it knows none."""
        backend = self.ctx.backend
        assert isinstance(backend, RaftBackend)
        status = backend.client.status(self.me.raft, timeout=STATUS_TIMEOUT)
        leader: str | None = status.get("leader_id") or None
        return leader

    def close(self) -> None:
        """Close the context, which stops the embedded member."""
        self.ctx.close()


class KvHttpServer(ThreadingHTTPServer):
    """The HTTP server, one thread per request, with the service its handlers use."""

    def __init__(self, kv: KvService) -> None:
        host, port = split_address(kv.me.http, "--http")
        super().__init__((host, port), Handler)
        self.kv = kv


class Handler(BaseHTTPRequestHandler):
    """Answers /keys/NAME (HTTP/1.0: one request per connection, so a watch simply
    streams until either side closes)."""

    server: KvHttpServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        """Route the request, and map dref's errors to HTTP codes."""
        url = urlsplit(self.path)
        name = unquote(url.path[len(KEYS) :]) if url.path.startswith(KEYS) else ""
        if not name:
            self._reply(404, {"error": f"no resource {url.path}: use {KEYS}NAME"})
            return
        try:
            if method == "PUT":
                self._put(name)
            elif method == "DELETE":
                self._delete(name)
            elif parse_qs(url.query).get("watch") == ["1"]:
                self._watch(name)
            else:
                self._get(name)
        except BadRequest as e:
            self._reply(400, {"error": str(e)})
        except dref.ValueTooLargeError as e:
            self._reply(413, {"error": str(e)})
        except (dref.BackendUnavailableError, dref.DRefTimeoutError) as e:
            self._reply(503, {"error": f"the cluster is unavailable: {e}"})
        except dref.DRefError as e:
            self._reply(500, {"error": f"{type(e).__name__}: {e}"})

    def _get(self, name: str) -> None:
        """The value and its revision from one read of the backend (a `DRef` would read
        twice for them, `get()` then `revision()`, and a write could fall between)."""
        kv = self.server.kv
        entry = kv.ctx.backend.get(name, policy=kv.ctx.read_policy)
        if entry is None:
            self._reply(404, {"error": f"{name} not found"})
            return
        value = kv.codec.decode(entry.value)
        self._reply(200, {"name": name, "value": value, "revision": entry.revision})

    def _put(self, name: str) -> None:
        body = self._json_body(name)
        if not isinstance(body, dict) or "value" not in body:
            raise BadRequest('the body must be a JSON object with a "value"')
        ttl = body.get("ttl")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)):
            raise BadRequest('"ttl" must be a number of seconds')
        if ttl is not None and ttl <= 0:
            raise BadRequest('"ttl" must be positive')
        if self._redirected():
            return
        revision = self.server.kv.ref(name).set(body["value"], ttl=ttl)
        self._reply(200, {"name": name, "revision": revision})

    def _delete(self, name: str) -> None:
        if self._redirected():
            return
        revision = self.server.kv.ref(name).delete()
        self._reply(200, {"name": name, "revision": revision})

    def _watch(self, name: str) -> None:
        """Stream every change of `name` as a server-sent event until the client leaves.
        The stream subscribes before the headers go out: a client that has them misses
        no later change."""
        with self.server.kv.ref(name).changes() as stream:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            try:
                while True:
                    try:
                        event = stream.get(KEEPALIVE)
                    except dref.DRefTimeoutError:
                        self.wfile.write(b": keep-alive\n\n")
                        continue
                    data = json.dumps(event_json(name, event)).encode()
                    self.wfile.write(b"data: " + data + b"\n\n")
            except (BrokenPipeError, ConnectionResetError):
                return  # the client left
            except dref.ContextClosedError:
                return  # the service is stopping

    def _json_body(self, name: str) -> Any:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if length > MAX_BODY:
            raise dref.ValueTooLargeError(name, length, MAX_BODY)
        try:
            return json.loads(self.rfile.read(length))
        except ValueError as e:  # also bad UTF-8
            raise BadRequest(f"the body is not JSON: {e}") from None

    def _redirected(self) -> bool:
        """Unless this member leads, answer a write with 307 to the leader's service (or
        503 when no leader is known) and return True."""
        kv = self.server.kv
        leader = kv.leader()
        if leader == kv.me.node_id:
            return False
        if leader is None:
            self._reply(503, {"error": "no leader: the cluster is electing one or lacks a quorum"})
            return True
        http = kv.http_of.get(leader)
        if http is None:
            self._reply(503, {"error": f"the leader {leader} has no known HTTP address"})
            return True
        location = f"http://{http}{self.path}"
        self._reply(307, {"leader": leader, "location": location}, location=location)
        return True

    def _reply(self, code: int, body: dict[str, Any], *, location: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if location is not None:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(data)


def event_json(name: str, event: dref.Event[Any]) -> dict[str, Any]:
    """One change as the JSON of its server-sent event."""
    if isinstance(event, dref.Changed):
        return {"event": "set", "name": name, "value": event.value, "revision": event.revision}
    if isinstance(event, dref.Deleted):
        return {"event": "delete", "name": name, "revision": event.revision}
    if isinstance(event, dref.Lagged):
        return {"event": "lagged", "name": name, "missed": event.missed}
    error = str(event.error)
    return {"event": "undecodable", "name": name, "revision": event.revision, "error": error}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--id", required=True, help="this member's Raft node id")
    parser.add_argument("--raft", required=True, help="HOST:PORT of this member's Raft node")
    parser.add_argument("--http", required=True, help="HOST:PORT this service listens on")
    parser.add_argument("--data-dir", required=True, type=Path, help="the Raft node's files")
    parser.add_argument(
        "--peer",
        type=parse_peer,
        action="append",
        required=True,
        help="another member as ID=RAFT_HOST:PORT,HTTP_HOST:PORT (once per member)",
    )
    args = parser.parse_args(argv)
    kv = KvService(Member(args.id, args.raft, args.http), args.peer, args.data_dir)
    try:
        server = KvHttpServer(kv)
        signal.signal(signal.SIGTERM, _exit)
        print(f"{args.id} serves http://{args.http} (Raft {args.raft})", flush=True)
        with server:
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        kv.close()


def _exit(signum: int, frame: object) -> NoReturn:
    """SIGTERM: leave `serve_forever` so that the Raft member is stopped on the way out."""
    sys.exit(0)


if __name__ == "__main__":
    main()
