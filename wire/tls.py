"""Mutual TLS for nodes, peers and clients.

`TLS` names one party's three PEM files: its certificate, its key, and the cluster CA
that every certificate of the cluster is signed by. `TlsMaterial` reads them, builds SSL
contexts and gRPC credentials, and reads them again when a file changes, so certificates
rotate without a restart: a node's listeners use the new files for every later
handshake, and links and clients for every later connection (gRPC channels through
`rotating_channel`).

`TlsSession` runs TLS over a raw socket through memory buffers, so the socket keeps its
non-blocking sends (`FrameSender` writes ciphertext with `MSG_DONTWAIT` as it writes
plaintext) and one reader thread and one writer can use the session at once: the SSL
state only changes under the session's lock, and raw socket I/O happens outside it. The
reader follows the record boundaries of what it receives, so a record once begun must end
within `FRAME_TIMEOUT` (a trickle of ciphertext is dropped as one of frames is).

Identities: a node's certificate must carry its node id as a name (CN or a DNS/IP
subject alternative name); a client's name is its certificate's CN, and its role is the
one the node's configuration maps that name to, else the certificate's OU.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from dref.errors import ConfigError
from dref.wire.frames import FRAME_TIMEOUT, FrameTimeout
from dref.wire.rotating_channel import RotatingChannel

logger = logging.getLogger("dref.tls")

ROLES = ("read", "write", "admin")
"""Client roles, each allowing what the one before allows and more."""

TLS_RECORD_HANDSHAKE = 0x16
"""The first byte of every TLS connection (a handshake record): how a listener tells a
TLS client from a plaintext one and refuses the latter by name."""

_RECV_BYTES = 65536
_RECORD_HEADER = 5
"""A TLS record's header: content type, version, then the length of what follows (2 bytes)."""


@dataclass(frozen=True)
class TLS:
    """One party's TLS files (paths to PEM): its certificate and key, and the cluster CA."""

    cert: Path
    key: Path
    ca: Path

    def __post_init__(self) -> None:
        for name in ("cert", "key", "ca"):
            value = getattr(self, name)
            if not isinstance(value, str | os.PathLike):
                raise ConfigError(f"TLS {name} must be a file path, got {value!r}")
            path = Path(value)
            object.__setattr__(self, name, path)
            if not path.is_file() or not os.access(path, os.R_OK):
                raise ConfigError(f"TLS {name} file {path} does not exist or is not readable")


def tls_from_options(cert: object, key: object, ca: object, where: str) -> TLS | None:
    """The TLS of three optional file options (all or none, say the `where` flags)."""
    given = [value for value in (cert, key, ca) if value]
    if not given:
        return None
    if len(given) != 3:
        raise ConfigError(f"TLS needs all three of {where}")
    return TLS(Path(str(cert)), Path(str(key)), Path(str(ca)))


@dataclass(frozen=True)
class Identity:
    """Who is at the other end of a TLS connection: every name its certificate carries,
    the first of them (the CN), and the role its certificate states (OU), if any."""

    name: str
    names: frozenset[str]
    certificate_role: str | None = None


@dataclass
class _Loaded:
    stamp: tuple[tuple[int, int, int], ...]
    cert: bytes
    key: bytes
    ca: bytes
    server: ssl.SSLContext
    client: ssl.SSLContext


class TlsMaterial:
    """The contents of one `TLS`, re-read whenever a file changes (see the module doc)."""

    def __init__(self, tls: TLS) -> None:
        self.tls = tls
        self._lock = threading.Lock()
        self._loaded = self._load(self._stamp())

    def _stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in (self.tls.cert, self.tls.key, self.tls.ca):
            try:
                status = path.stat()
            except OSError as exc:
                raise ConfigError(f"TLS file {path}: {exc.strerror}") from None
            stamps.append((status.st_mtime_ns, status.st_size, status.st_ino))
        return tuple(stamps)

    def _load(self, stamp: tuple[tuple[int, int, int], ...]) -> _Loaded:
        tls = self.tls
        try:
            cert, key, ca = tls.cert.read_bytes(), tls.key.read_bytes(), tls.ca.read_bytes()
            server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=ca.decode())
            server.verify_mode = ssl.CERT_REQUIRED
            client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca.decode())
            for context in (server, client):
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.load_cert_chain(tls.cert, tls.key)
        except (OSError, ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"TLS files {tls.cert}, {tls.key}, {tls.ca} are not a usable certificate,"
                f" key and CA: {exc}"
            ) from None
        return _Loaded(stamp, cert, key, ca, server, client)

    def current(self) -> _Loaded:
        """The material of the files as they are now. Files that changed but do not load
        (a rotation half done) keep the previous material until they change again."""
        with self._lock:
            try:
                stamp = self._stamp()
            except ConfigError as exc:
                logger.error("%s; keeping the previous certificate", exc)
                return self._loaded
            if stamp != self._loaded.stamp:
                try:
                    self._loaded = self._load(stamp)
                    logger.info("TLS files changed: now using %s", self.tls.cert)
                except ConfigError as exc:
                    logger.error("%s; keeping the previous certificate", exc)
                    self._loaded.stamp = stamp
            return self._loaded

    # -- sockets

    def server_session(self, sock: socket.socket, timeout: float) -> TlsSession:
        """Accept TLS on `sock` (the client must present a certificate of our CA)."""
        session = TlsSession(sock, self.current().server, server_side=True)
        session.handshake(timeout)
        return session

    def client_session(
        self, sock: socket.socket, expected_name: str, timeout: float
    ) -> TlsSession:
        """Start TLS on `sock` to a node whose certificate must carry `expected_name`."""
        session = TlsSession(sock, self.current().client, server_hostname=expected_name)
        session.handshake(timeout)
        return session

    # -- gRPC

    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials for a node's gRPC port: client certificates required, and the files
        re-read for each new connection once they changed."""
        first = self.current()
        served = [first.stamp]

        def fetch() -> Any:
            loaded = self.current()
            if loaded.stamp == served[0]:
                return None
            served[0] = loaded.stamp
            return grpc.ssl_server_certificate_configuration(
                [(loaded.key, loaded.cert)], root_certificates=loaded.ca
            )

        initial = grpc.ssl_server_certificate_configuration(
            [(first.key, first.cert)], root_certificates=first.ca
        )
        return grpc.dynamic_ssl_server_credentials(
            initial, fetch, require_client_authentication=True
        )

    def channel(
        self, address: str, options: Sequence[tuple[str, Any]] = (), expected_name: str = ""
    ) -> grpc.Channel:
        """A gRPC channel to `address` with our certificate, following rotation; the node's
        certificate must carry `expected_name` (default: the host of `address`)."""
        return RotatingChannel(self, address, options, expected_name)


def open_channel(
    address: str,
    tls: TlsMaterial | None,
    options: Sequence[tuple[str, Any]] = (),
    expected_name: str = "",
) -> grpc.Channel:
    """A gRPC channel to `address`: plaintext without `tls`, mutual TLS with it."""
    if tls is None:
        return grpc.insecure_channel(address, options=list(options))
    return tls.channel(address, options, expected_name)


def grpc_identity(context: grpc.ServicerContext) -> Identity | None:
    """The TLS identity of a gRPC caller (None on a plaintext connection)."""
    auth = context.auth_context()
    common = auth.get("x509_common_name") or []
    if not common:
        return None
    name = common[0].decode(errors="replace")
    alternatives = auth.get("x509_subject_alternative_name", [])
    names = {name, *(n.decode(errors="replace") for n in alternatives)}
    role = None
    for subject in auth.get("x509_subject", []):
        for part in subject.decode(errors="replace").split(","):
            key, _, value = part.strip().partition("=")
            if key == "OU" and value in ROLES:
                role = value
    return Identity(name, frozenset(names), role)


class TlsSession:
    """TLS over a raw socket through memory buffers (see the module doc)."""

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
    ) -> None:
        self.sock = sock
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self._lock = threading.Lock()
        self._record_header = b""  # the part of a record header received so far
        self._record_left = 0  # bytes of the current record still to come
        self._record_begun: float | None = None  # when the unfinished record began

    def handshake(self, timeout: float) -> None:
        """Complete the handshake within `timeout` (ssl.SSLError, OSError or TimeoutError)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                try:
                    self._ssl.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
                pending = self._outgoing.read()
            if pending:
                self.sock.sendall(pending)
            if done:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"TLS handshake took over {timeout:g} s")
            self.sock.settimeout(left)
            data = self.sock.recv(_RECV_BYTES)
            if not data:
                raise ConnectionResetError("connection closed during the TLS handshake")
            self._feed(data)

    def peer_identity(self) -> Identity:
        """The verified certificate of the other end."""
        certificate: dict[str, Any] = dict(self._ssl.getpeercert() or {})
        common, role = "", None
        for rdn in certificate.get("subject", ()):
            for key, value in rdn:
                if key == "commonName" and not common:
                    common = str(value)
                elif key == "organizationalUnitName" and value in ROLES:
                    role = str(value)
        alternatives = {str(pair[1]) for pair in certificate.get("subjectAltName", ())}
        return Identity(common, frozenset({common, *alternatives} - {""}), role)

    def recv(self, count: int) -> bytes:
        """Up to `count` plaintext bytes, waiting as the raw socket's timeout says for a
        record to begin; b"" at the end of the connection. A begun record must end within
        `FRAME_TIMEOUT`, else FrameTimeout."""
        idle = self.sock.gettimeout()
        try:
            while True:
                with self._lock:
                    try:
                        return self._ssl.read(count)
                    except ssl.SSLWantReadError:
                        pass
                    except ssl.SSLZeroReturnError:
                        return b""
                    reply = self._outgoing.read()  # a post-handshake message may need an answer
                if reply:
                    self.sock.sendall(reply)
                data = self._recv_raw(idle)
                if not data:
                    return b""
                self._feed(data)
        finally:
            if self.sock.gettimeout() != idle:
                self.sock.settimeout(idle)

    def _recv_raw(self, idle: float | None) -> bytes:
        """Raw bytes, waiting at most until the unfinished record's deadline (or `idle`)."""
        begun = self._record_begun
        if begun is None:
            return self.sock.recv(_RECV_BYTES)
        left = begun + FRAME_TIMEOUT - time.monotonic()
        too_slow = FrameTimeout(f"a TLS record took over {FRAME_TIMEOUT:g} s to arrive")
        if left <= 0:
            raise too_slow
        record_deadline = idle is None or left <= idle
        self.sock.settimeout(left if record_deadline else idle)
        try:
            return self.sock.recv(_RECV_BYTES)
        except TimeoutError:
            if record_deadline:
                raise too_slow from None
            raise

    def _feed(self, data: bytes) -> None:
        """Hand raw bytes to TLS, following the record boundaries in them (so `recv` knows
        when a record began and has not ended)."""
        view = memoryview(data)
        while view:
            if self._record_left:
                step = min(self._record_left, len(view))
                self._record_left -= step
            else:
                if not self._record_header:
                    self._record_begun = time.monotonic()
                step = min(_RECORD_HEADER - len(self._record_header), len(view))
                self._record_header += view[:step]
                if len(self._record_header) == _RECORD_HEADER:
                    self._record_left = int.from_bytes(self._record_header[3:], "big")
                    self._record_header = b""
            view = view[step:]
        if not (self._record_left or self._record_header):
            self._record_begun = None
        with self._lock:
            self._incoming.write(data)

    def gettimeout(self) -> float | None:
        """The raw socket's timeout (a `Receiver`'s, for `FrameReader`)."""
        return self.sock.gettimeout()

    def settimeout(self, value: float | None) -> None:
        """Set the raw socket's timeout (a `Receiver`'s, for `FrameReader`)."""
        self.sock.settimeout(value)

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt `plaintext`: the bytes to put on the raw socket, in order (callers that
        seal must also send in that order: `FrameSender` has one writer at a time)."""
        with self._lock:
            self._ssl.write(plaintext)
            return self._outgoing.read()

    def sendall(self, plaintext: bytes) -> None:
        """Encrypt and send, blocking (handshake answers and refusals only)."""
        self.sock.sendall(self.seal(plaintext))


def diagnose_tls(
    address: str, tls: TlsMaterial | None, timeout: float = 1.0, expected_name: str = ""
) -> str | None:
    """Why connections to the node at `address` fail at the TLS level, found by trying one
    ourselves: a node that requires TLS we lack, one without TLS when we use it, or a
    certificate either side refuses (the node's must name `expected_name`, default the
    host of `address`). None when TLS is not the problem (or it cannot tell).

    Called only after a connection failed, whose gRPC error ("Socket closed") names none
    of these causes.
    """
    host, _, port = address.rpartition(":")
    try:
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout)
    except (OSError, ValueError):
        return None  # not listening at all: not a TLS problem
    if tls is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = tls.current().client
    context.set_alpn_protocols(["h2"])  # gRPC's TLS drops a connection without it
    try:
        name = expected_name or host.strip("[]")
        with context.wrap_socket(sock, server_hostname=name) as secured:
            secured.settimeout(timeout)
            if tls is None:
                return (
                    f"the node at {address} requires TLS: connect with a certificate of the"
                    " cluster CA (tls=dref.TLS(cert=..., key=..., ca=...), or --tls-cert,"
                    " --tls-key and --tls-ca)"
                )
            try:
                closed = secured.recv(1) == b""
            except TimeoutError:
                return None  # it waits for us: TLS is fine
            except (ssl.SSLError, ConnectionError):
                closed = True
            if closed:
                return (
                    f"the node at {address} refused our certificate {tls.tls.cert}"
                    " (is it signed by the cluster's CA?)"
                )
            return None
    except ssl.SSLError as exc:
        if tls is None:
            return None  # a plaintext node: not a TLS problem
        if exc.reason == "WRONG_VERSION_NUMBER":
            return f"the node at {address} does not use TLS (started without --tls-cert?)"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (
                f"TLS with the node at {address} failed: its certificate does not verify"
                f" ({exc.verify_message})"
            )
        return f"TLS with the node at {address} failed: {exc.reason}"
    except OSError:
        return None
