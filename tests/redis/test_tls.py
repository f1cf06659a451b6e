"""`rediss://` with a CA file: a TLS-only redis-server with a certificate from a test CA."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dref.backend import Entry
from dref.errors import BackendUnavailableError
from dref.redis_backend import RedisBackend

OPENSSL = shutil.which("openssl")
REDIS_SERVER = shutil.which("redis-server")


def make_certificates(directory: Path) -> None:
    """A throw-away CA and a server certificate for IP 127.0.0.1 signed by it."""
    assert OPENSSL is not None

    def openssl(*args: str) -> None:
        subprocess.run([OPENSSL, *args], cwd=directory, check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=dref-test-ca",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    (directory / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "authorityKeyIdentifier=keyid,issuer\nsubjectKeyIdentifier=hash\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf",
    )  # fmt: skip


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A TLS-only server; yields its rediss:// URL and the CA file."""
    if OPENSSL is None:
        pytest.skip("openssl is not on PATH")
    assert REDIS_SERVER is not None
    try:
        make_certificates(tmp_path)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"openssl could not make test certificates: {exc.stderr!r}")
    with socket.socket() as sock:  # a free port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    args += ["--tls-cert-file", str(tmp_path / "server.crt")]
    args += ["--tls-key-file", str(tmp_path / "server.key")]
    args += ["--tls-ca-cert-file", str(tmp_path / "ca.crt"), "--tls-auth-clients", "no"]
    args += ["--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"rediss://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, ssl_ca_certs=str(tmp_path / "ca.crt"), socket_timeout=1)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None:
                    assert process.stderr is not None
                    pytest.skip(f"redis-server without TLS: {process.stderr.read()[-300:]!r}")
                assert time.monotonic() < deadline, "TLS redis-server did not start"
                time.sleep(0.02)  # readiness poll under a deadline
        yield url, tmp_path / "ca.crt"
    finally:
        client.close()
        process.kill()
        process.wait(timeout=10)


def test_tls_with_ca_file(tls_server: tuple[str, Path]) -> None:
    url, ca_file = tls_server
    backend = RedisBackend(url, ca_file=str(ca_file), timeout=2.0)
    try:
        revision = backend.set("n", b"over tls")
        assert backend.get("n") == Entry(b"over tls", revision)
    finally:
        backend.close()


def test_tls_refuses_an_unknown_ca(tls_server: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = tls_server
    other = tmp_path / "other"
    other.mkdir()
    make_certificates(other)
    backend = RedisBackend(url, ca_file=str(other / "ca.crt"), timeout=2.0)
    try:
        with pytest.raises(BackendUnavailableError):
            backend.get("n")
    finally:
        backend.close()
