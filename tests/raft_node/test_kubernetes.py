"""Peers from a Kubernetes Endpoints object (`DREF_K8S_SERVICE`): read over real HTTPS
from a local server that answers as the API server does (token checked, ready and not-ready
addresses), with a service-account directory made here."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dref.certs import init_ca, issue_certificate
from dref.errors import ConfigError
from dref.raft.config import NodeConfig
from dref.raft.kubernetes import endpoint_ips

ENDPOINTS = {
    "kind": "Endpoints",
    "subsets": [
        {
            "addresses": [{"ip": "10.1.0.5"}, {"ip": "10.1.0.6"}],
            "notReadyAddresses": [{"ip": "10.1.0.9"}],
            "ports": [{"port": 8082}],
        },
        {"addresses": [{"ip": "10.1.0.7"}, {"ip": "10.1.0.5"}]},
    ],
}


class _ApiServer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server hook's name
        if self.headers.get("Authorization") != "Bearer pod-token":
            self.send_error(401)
            return
        if self.path != "/api/v1/namespaces/chat/endpoints/dref-interop":
            self.send_error(404)
            return
        body = json.dumps(ENDPOINTS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS API server on loopback, and a service-account dir trusting its CA."""
    init_ca(tmp_path / "ca")
    cert = issue_certificate(tmp_path / "ca", "api", tmp_path / "certs", local=True)
    account = tmp_path / "account"
    account.mkdir()
    (account / "token").write_text("pod-token\n")
    (account / "ca.crt").write_bytes((tmp_path / "ca" / "ca.crt").read_bytes())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ApiServer)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert.cert, cert.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", account
    finally:
        server.shutdown()
        server.server_close()


def test_ready_addresses_of_every_subset(api: tuple[str, Path]) -> None:
    url, account = api
    ips = endpoint_ips("k8s://chat/dref-interop", api=url, account=account)
    assert ips == ["10.1.0.5", "10.1.0.6", "10.1.0.7"]  # not-ready left out, no repeats
    with pytest.raises(ConfigError, match="chat/other: the API server answered 404"):
        endpoint_ips("k8s://chat/other", api=url, account=account)
    (account / "token").write_text("stolen")
    with pytest.raises(ConfigError, match="answered 401"):
        endpoint_ips("k8s://chat/dref-interop", api=url, account=account)


def test_outside_a_pod_the_error_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    environ = {"DREF_K8S_SERVICE": "dref-interop", "DREF_K8S_NAMESPACE": "chat"}
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_HOST is not set"):
        NodeConfig.from_env(tmp_path, environ=environ, interop=True)
