"""Mutual TLS and roles on a real 3-node cluster started with `dref certs` certificates and
the `--tls-*` flags: every stranger is refused with a message naming the cause, each
role can do what it may and no more, and nothing changes when a call is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for

import dref
from dref.errors import BackendUnavailableError
from dref.raft.client import Client
from dref.raft.node_process import NodeProcess, free_ports, node_arguments

pytestmark = pytest.mark.slow
pytest.importorskip("cryptography")

from dref.certs import init_ca, issue_certificate  # noqa: E402


class Pki:
    """A cluster CA with node and client certificates, and a stranger's CA."""

    def __init__(self, root: Path) -> None:
        self.root = root
        init_ca(root / "ca")
        for name in ("n1", "n2", "n3", "n4"):
            issue_certificate(root / "ca", name, root / "certs", local=True)
        for name, role in (("reader", "read"), ("writer", "write"), ("boss", "admin")):
            issue_certificate(root / "ca", name, root / "certs", role=role, local=True)
        issue_certificate(root / "ca", "norole", root / "certs", local=True)
        init_ca(root / "other-ca")
        issue_certificate(root / "other-ca", "boss", root / "strangers", role="admin", local=True)
        issue_certificate(root / "other-ca", "n2", root / "strangers", local=True)

    def tls(self, name: str, folder: str = "certs") -> dref.TLS:
        where = self.root / folder
        return dref.TLS(where / f"{name}.crt", where / f"{name}.key", where / "ca.crt")

    def flags(self, name: str, folder: str = "certs") -> list[str]:
        tls = self.tls(name, folder)
        return ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--tls-ca", str(tls.ca)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def _tls_cluster(cluster_type: type[Any], pki: Pki, root: Path, extra: list[str]) -> Any:
    """Three nodes with certificates of the cluster CA (the test client is `boss`)."""
    return cluster_type(
        root,
        3,
        extra_args=lambda node_id: [*pki.flags(node_id), *extra],
        tls=pki.tls("boss"),
        heartbeat_ms=50,
        election_ms=1000,
    )


@pytest.fixture(scope="module")
def cluster(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory, cluster_type: type[Any]
) -> Iterator[Any]:
    running = _tls_cluster(
        cluster_type, pki, tmp_path_factory.mktemp("tls-cluster"), ["--role", "writer=write"]
    )
    try:
        running.start_all()
        running.leader()
        yield running
    finally:
        running.stop()


def dref_cli(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DREF_")}
    return subprocess.run(
        [sys.executable, "-m", "dref.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )


def endpoints(cluster: Any) -> str:
    return ",".join(cluster.addresses.values())


def test_roles_allow_what_they_name(cluster: Any, pki: Pki) -> None:
    addresses = list(cluster.addresses.values())
    with dref.raft_client(addresses, tls=pki.tls("writer"), timeout=20) as writer:
        flag = writer.ref("tls-flag", "off")
        flag.set("on")
    with dref.raft_client(addresses, tls=pki.tls("reader"), timeout=20) as reader:
        assert reader.ref("tls-flag", "?").get() == "on"
        with pytest.raises(
            dref.PermissionDeniedError, match="identity 'reader' has role 'read'; this call needs"
        ):
            reader.ref("tls-flag", "?").set("off")
    with (
        dref.raft_client(addresses, tls=pki.tls("norole"), timeout=5) as nobody,
        pytest.raises(dref.PermissionDeniedError, match="identity 'norole' has no role"),
    ):
        nobody.ref("tls-flag", "?").get()
    with dref.raft_client(addresses, tls=pki.tls("boss"), timeout=20) as boss:
        assert boss.ref("tls-flag", "?").get() == "on"  # nothing a refusal changed


def test_membership_needs_admin(cluster: Any, pki: Pki) -> None:
    address = cluster.addresses["n1"]
    refused = dref_cli("members", "remove", address, "n3", *pki.flags("writer"), "--timeout", "10")
    assert refused.returncode != 0
    assert "identity 'writer' has role 'write'; this call needs 'admin'" in refused.stderr
    listed = dref_cli("members", "list", address, *pki.flags("boss"), "--timeout", "10")
    assert listed.returncode == 0, listed.stderr
    assert sorted(line.split("\t")[0] for line in listed.stdout.splitlines()) == [
        "n1",
        "n2",
        "n3",
    ]


@pytest.mark.parametrize("command", ["get", "status"])
def test_a_plaintext_client_is_told_the_node_requires_tls(cluster: Any, command: str) -> None:
    address = cluster.addresses["n1"]
    if command == "get":
        result = dref_cli("get", "x", "--endpoints", address, "--timeout", "3")
    else:
        result = dref_cli("status", address, "--timeout", "3")
    assert result.returncode != 0
    assert f"the node at {address} requires TLS" in result.stderr


def test_a_client_of_another_ca_is_refused(cluster: Any, pki: Pki) -> None:
    address = cluster.addresses["n1"]
    started = time.monotonic()
    stranger = dref.TLS(
        pki.root / "strangers" / "boss.crt",
        pki.root / "strangers" / "boss.key",
        pki.root / "certs" / "ca.crt",  # it trusts our CA; we do not trust its certificate
    )
    with (
        Client([address], timeout=3, tls=stranger) as client,
        pytest.raises(BackendUnavailableError, match="refused our certificate"),
    ):
        client.status(address)
    assert time.monotonic() - started < 10


def test_a_node_of_another_ca_or_claiming_another_id_never_joins(
    cluster: Any, pki: Pki, tmp_path: Path
) -> None:
    """n4 presents the certificate of n2 (another id) and then one of a stranger CA; the
    leader refuses to replicate to it either way and says why in its log, and n4's own
    log says why it cannot reach the others."""
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    leader = cluster.leader()
    for certificate, folder, reason in (
        ("n2", "certs", "does not verify (Hostname mismatch, certificate is not valid for 'n4'"),
        ("n2", "strangers", "does not verify (unable to get local issuer certificate)"),
    ):
        data = tmp_path / f"n4-{folder}"
        log = tmp_path / f"n4-{folder}.log"
        arguments = node_arguments("n4", address, {}, data) + ["--join"]
        arguments += pki.flags(certificate, folder)
        node = NodeProcess(arguments, log=log)
        try:
            added = dref_cli(
                "members",
                "add-learner",
                cluster.addresses[leader],
                "n4",
                address,
                *pki.flags("boss"),
                "--timeout",
                "10",
            )
            assert added.returncode == 0, added.stderr
            leader_log = cluster.root / leader / "node.log"
            deadline = time.monotonic() + 20
            while reason not in leader_log.read_text(errors="replace"):
                assert time.monotonic() < deadline, f"no {reason!r} in {leader}'s log"
                time.sleep(0.1)  # a poll under a deadline
            with Client([cluster.addresses[leader]], timeout=10, tls=pki.tls("boss")) as boss:
                status = boss.status(cluster.addresses[leader])
            assert status["match_indexes"].get("n4", 0) == 0  # it received nothing
        finally:
            node.stop()
            removed = dref_cli(
                "members",
                "remove",
                cluster.addresses[leader],
                "n4",
                *pki.flags("boss"),
                "--timeout",
                "20",
            )
            assert removed.returncode == 0, removed.stderr


def test_certificates_rotate_without_a_restart(pki: Pki, tmp_path: Path) -> None:
    """A node's certificate files replaced in place are used for the next connection."""
    shutil.copytree(pki.root / "certs", tmp_path / "live")
    live = tmp_path / "live"
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    arguments = node_arguments("n1", address, {}, tmp_path / "data")
    arguments += ["--tls-cert", str(live / "n1.crt"), "--tls-key", str(live / "n1.key")]
    arguments += ["--tls-ca", str(live / "ca.crt")]
    node = NodeProcess(arguments, log=tmp_path / "node.log")
    try:
        with Client([address], timeout=10, tls=pki.tls("boss")) as client:
            assert client.status(address)["node_id"] == "n1"
        # Rotate to a certificate of a new CA (as when a CA is replaced): the old clients'
        # certificates stop working and the new CA's work, without restarting the node.
        init_ca(tmp_path / "new-ca")
        issue_certificate(tmp_path / "new-ca", "n1", tmp_path / "new", local=True)
        issue_certificate(tmp_path / "new-ca", "boss", tmp_path / "new", role="admin", local=True)
        for name in ("n1.key", "n1.crt", "ca.crt"):
            shutil.copyfile(tmp_path / "new" / name, live / name)
        fresh = dref.TLS(
            tmp_path / "new" / "boss.crt",
            tmp_path / "new" / "boss.key",
            tmp_path / "new" / "ca.crt",
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with Client([address], timeout=3, tls=fresh) as client:
                    assert client.status(address)["node_id"] == "n1"
                break
            except BackendUnavailableError:
                assert time.monotonic() < deadline, "the node kept its old certificate"
                time.sleep(0.2)  # a poll under a deadline
        with (
            Client([address], timeout=3, tls=pki.tls("boss")) as old,
            pytest.raises(BackendUnavailableError),
        ):
            old.status(address)
        assert node.alive
    finally:
        node.stop()


def test_grpc_peers_replicate_over_mutual_tls(
    pki: Pki, tmp_path: Path, cluster_type: type[Any]
) -> None:
    """`--peer-transport grpc` with TLS: peers replicate to each other over mutual TLS,
    each stating the cluster id, and every member serves what was written."""
    grpc_cluster = _tls_cluster(
        cluster_type, pki, tmp_path / "grpc-peers", ["--peer-transport", "grpc"]
    )
    try:
        grpc_cluster.start_all()
        grpc_cluster.leader()
        addresses = list(grpc_cluster.addresses.values())
        with Client(addresses, timeout=20, tls=pki.tls("boss")) as client:
            client.set("over-grpc", b"yes")
        for node_id, address in grpc_cluster.addresses.items():
            with Client([address], timeout=10, tls=pki.tls("boss")) as alone:
                wait_for(
                    lambda alone=alone: alone.get("over-grpc", policy="stale") is not None,
                    20,
                    f"{node_id} holds what was written",
                )
                assert alone.get("over-grpc", policy="stale").value == b"yes"
    finally:
        grpc_cluster.stop()


def test_a_clients_grpc_calls_follow_rotated_files(cluster: Any, pki: Pki, tmp_path: Path) -> None:
    """A long-lived client's gRPC channel (watches, status, expire) dials with the files as
    they are now: its certificate replaced in place, the next calls carry the new identity,
    without reopening the client."""
    live = tmp_path / "live"
    live.mkdir()
    for source, target in (
        ("reader.crt", "me.crt"),
        ("reader.key", "me.key"),
        ("ca.crt", "ca.crt"),
    ):
        shutil.copyfile(pki.root / "certs" / source, live / target)
    tls = dref.TLS(live / "me.crt", live / "me.key", live / "ca.crt")

    def expires() -> bool:
        try:
            client.expire("rotation-probe", 30)
        except dref.PermissionDeniedError as exc:
            assert "identity 'reader'" in str(exc), exc
            return False
        return True

    with Client(list(cluster.addresses.values()), timeout=10, tls=tls) as client:
        assert not expires()  # ExpireElement writes: a reader may not
        for source, target in (("writer.key", "me.key"), ("writer.crt", "me.crt")):
            shutil.copyfile(pki.root / "certs" / source, live / f"{target}.new")
            os.replace(live / f"{target}.new", live / target)
        wait_for(expires, 20, "the client's gRPC calls use the rotated certificate")


def test_embedded_raft_with_tls(pki: Pki, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    with dref.raft(
        node_id="n1",
        listen=f"127.0.0.1:{port}",
        peers={},
        data_dir=tmp_path / "n1",
        tls=pki.tls("n1"),
    ) as ctx:
        counter = ctx.ref("tls-counter", 0)
        counter.increment(5)
        assert counter.get() == 5
    listed = dref_cli("status", f"127.0.0.1:{port}", "--timeout", "2")
    assert listed.returncode != 0  # closed with the context


def test_tls_files_are_checked(tmp_path: Path) -> None:
    with pytest.raises(dref.ConfigError, match="TLS cert file .* does not exist"):
        dref.TLS(tmp_path / "missing.crt", tmp_path / "missing.key", tmp_path / "ca.crt")
    result = dref_cli("get", "x", "--endpoints", "127.0.0.1:1", "--tls-cert", "a.crt")
    assert result.returncode != 0
    assert "TLS needs all three of --tls-cert, --tls-key and --tls-ca" in result.stderr
