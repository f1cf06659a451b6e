"""A TCP proxy that injects network faults between two processes on loopback.

Put one proxy on each directed link of a cluster (node A dials the proxy, the proxy dials
node B) and steer it from the test: `partition()` black-holes the link (bytes are held and
new connections hang, as on a real partition, so RPCs time out rather than fail fast),
`reset()` closes every connection at once, `delay(seconds)` delays every chunk, and
`drop(probability)` resets a connection at random chunks. Dropping single chunks inside a
TCP stream would corrupt it rather than model loss, so loss is modelled by resets.
Every thread is named and daemonic, and `close()` stops them all.
"""

from __future__ import annotations

import os
import random
import select
import socket
import threading
import time
from dataclasses import dataclass, field

_CHUNK = 64 * 1024
_POLL = 0.05  # how often blocked pumps re-check the fault state


@dataclass
class _Faults:
    blackholed: bool = False
    held: set[bool] = field(default_factory=set)
    """Directions held one way: True the dialer's bytes, False the answers."""
    delay: float = 0.0
    drop_probability: float = 0.0
    rng: random.Random = field(default_factory=random.Random)


class FaultProxy:
    """Forwards `127.0.0.1:<port>` to `target` and injects faults on command. Thread-safe."""

    def __init__(
        self, target: tuple[str, int], *, listen_host: str = "127.0.0.1", seed: int | None = None
    ):
        self.target = target
        self._faults = _Faults(rng=random.Random(seed))
        self._state = threading.Condition()
        self._closed = False
        self._connections: set[socket.socket] = set()
        self.forwarded_bytes = 0
        """Bytes passed on so far, both directions: shows which traffic took this link."""
        self.callers: list[int | None] = []
        """The pid of the process at the other end of each connection accepted so far
        (None if it could not be found): shows who dialed this link."""
        self._listener = socket.create_server((listen_host, 0))
        self._listener.settimeout(_POLL)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"fault-proxy-accept-{self.port}", daemon=True
        )
        self._acceptor.start()

    @property
    def port(self) -> int:
        return self.address[1]

    # -- faults ---------------------------------------------------------------------------

    def partition(self) -> None:
        """Hold every byte in both directions until `heal()`; new connections stall too."""
        with self._state:
            self._faults.blackholed = True

    def hold_one_way(self, *, dialer_bytes: bool) -> None:
        """Hold the bytes of one direction until `heal()`: the dialer's (`dialer_bytes`),
        or the answers; the other direction and new connections go on."""
        with self._state:
            self._faults.held.add(dialer_bytes)

    def heal(self) -> None:
        """Remove every fault: no partition, no delay, no drops."""
        with self._state:
            self._faults.blackholed = False
            self._faults.held.clear()
            self._faults.delay = 0.0
            self._faults.drop_probability = 0.0
            self._state.notify_all()

    def delay(self, seconds: float) -> None:
        """Delay every forwarded chunk by `seconds`."""
        with self._state:
            self._faults.delay = max(0.0, seconds)

    def drop(self, probability: float) -> None:
        """Reset the connection carrying a chunk with this probability (0 disables)."""
        with self._state:
            self._faults.drop_probability = min(1.0, max(0.0, probability))

    def reset(self) -> None:
        """Close every open connection now; clients see a connection reset."""
        with self._state:
            connections = list(self._connections)
            self._connections.clear()
        for sock in connections:
            _close_quietly(sock)

    def close(self) -> None:
        """Stop accepting, close every connection and stop every thread. Idempotent."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            self._state.notify_all()
        _close_quietly(self._listener)
        self.reset()
        self._acceptor.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- forwarding -----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(
                target=self._connect,
                args=(client,),
                name=f"fault-proxy-conn-{self.port}",
                daemon=True,
            ).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            self.callers.append(socket_owner(client.getpeername()[1], self.port))
        except OSError:
            self.callers.append(None)
        if not self._wait_while_blackholed():
            _close_quietly(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _close_quietly(client)
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._state:
            if self._closed:
                _close_quietly(client)
                _close_quietly(upstream)
                return
            self._connections.update((client, upstream))
        for source, sink, from_dialer in ((client, upstream, True), (upstream, client, False)):
            threading.Thread(
                target=self._pump,
                args=(source, sink, from_dialer),
                name=f"fault-proxy-pump-{self.port}",
                daemon=True,
            ).start()

    def _wait_while_blackholed(self, from_dialer: bool | None = None) -> bool:
        """Block while the link is partitioned (or, for the bytes of one direction, held);
        False once the proxy is closed."""
        with self._state:
            while (
                self._faults.blackholed or from_dialer in self._faults.held
            ) and not self._closed:
                self._state.wait(_POLL)
            return not self._closed

    def _pump(self, source: socket.socket, sink: socket.socket, from_dialer: bool) -> None:
        try:
            while not self._closed:
                readable, _, _ = select.select([source], [], [], _POLL)
                if not readable:
                    continue
                chunk = source.recv(_CHUNK)
                if not chunk:
                    break
                if not self._wait_while_blackholed(from_dialer):
                    break
                with self._state:
                    delay = self._faults.delay
                    dropped = self._faults.rng.random() < self._faults.drop_probability
                if dropped:
                    break
                if delay:
                    time.sleep(delay)  # models link latency; bounded by the configured delay
                sink.sendall(chunk)
                with self._state:
                    self.forwarded_bytes += len(chunk)
        except (OSError, ValueError):  # the other direction closed the sockets under us
            pass
        finally:
            with self._state:
                self._connections.discard(source)
                self._connections.discard(sink)
            _close_quietly(source)
            _close_quietly(sink)


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def socket_owner(local_port: int, remote_port: int) -> int | None:
    """The pid of the process holding the loopback TCP socket from `local_port` to
    `remote_port` (found through /proc; None if it is gone or not visible)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    local, remote, inode = fields[1], fields[2], fields[9]
                    if (
                        int(local.rsplit(":", 1)[1], 16) == local_port
                        and int(remote.rsplit(":", 1)[1], 16) == remote_port
                    ):
                        inodes.add(f"socket:[{inode}]")
        except OSError:
            continue
    if not inodes:
        return None
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            descriptors = os.scandir(f"/proc/{entry.name}/fd")
            with descriptors:
                for fd in descriptors:
                    if os.readlink(fd.path) in inodes:
                        return int(entry.name)
        except OSError:
            continue
    return None
