"""The fault proxy forwards faithfully, and each fault does what the multi-process tests rely on."""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from testkit.fault_proxy import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="echo-server", daemon=True)
    thread.start()
    yield server.server_address
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo_server):
    with FaultProxy(echo_server, seed=1) as proxy:
        yield proxy


def _connect(proxy: FaultProxy, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(proxy.address, timeout=timeout)
    return sock


def _echo(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def test_forwards_bytes_both_ways(proxy):
    with _connect(proxy) as sock:
        payload = bytes(range(256)) * 1000
        assert _echo(sock, payload) == payload


def test_partition_holds_bytes_until_heal(proxy):
    with _connect(proxy) as sock:
        assert _echo(sock, b"before") == b"before"
        proxy.partition()
        sock.settimeout(0.3)
        sock.sendall(b"during")
        with pytest.raises(TimeoutError):
            sock.recv(16)
        proxy.heal()
        sock.settimeout(5)
        assert sock.recv(16) == b"during"


def test_reset_closes_open_connections(proxy):
    with _connect(proxy) as sock:
        assert _echo(sock, b"x") == b"x"
        proxy.reset()
        deadline = time.monotonic() + 5
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                sock.sendall(b"y")
                closed = sock.recv(1) == b""
            except OSError:
                closed = True
        assert closed


def test_delay_is_applied_to_each_chunk(proxy):
    with _connect(proxy) as sock:
        proxy.delay(0.2)
        started = time.monotonic()
        assert _echo(sock, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.2  # a lower bound holds on any machine


def test_drop_with_certainty_resets_the_connection(proxy):
    proxy.drop(1.0)
    with _connect(proxy) as sock:
        sock.sendall(b"lost")
        try:
            assert sock.recv(16) == b""
        except OSError:
            pass


def test_close_stops_every_thread(echo_server):
    proxy = FaultProxy(echo_server)
    with _connect(proxy) as sock:
        assert _echo(sock, b"x") == b"x"
        proxy.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        t.name.startswith("fault-proxy-") and t.name.endswith(str(proxy.port))
        for t in threading.enumerate()
    ):
        time.sleep(0.02)
    assert not [t.name for t in threading.enumerate() if t.name.endswith(f"-{proxy.port}")]


@pytest.mark.parametrize("dialer_bytes", [True, False])
def test_hold_one_way_holds_one_direction_only(dialer_bytes):
    """A one-way fault holds one side's bytes until `heal()` while the other side's flow."""
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        FaultProxy(listener.getsockname()[:2], seed=1) as proxy,
        _connect(proxy) as dialer,
    ):
        dialer.sendall(b"hello")
        answerer, _ = listener.accept()
        with answerer:
            answerer.settimeout(5)
            assert answerer.recv(16) == b"hello"
            proxy.hold_one_way(dialer_bytes=dialer_bytes)
            held, flowing = (dialer, answerer) if dialer_bytes else (answerer, dialer)
            held.sendall(b"held")
            flowing.sendall(b"flows")
            held.settimeout(5)  # the flowing side's bytes reach the held side's peer...
            assert held.recv(16) == b"flows"
            flowing.settimeout(0.3)  # ...the held ones do not, until the heal
            with pytest.raises(TimeoutError):
                flowing.recv(16)
            proxy.heal()
            flowing.settimeout(5)
            assert flowing.recv(16) == b"held"
