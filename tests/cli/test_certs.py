"""`dref certs init|issue` run as real subprocesses and through `dref.certs`: the files and
their modes, the extensions of the CA and leaf certificates, verification against the right
CA and not another, identities read back, usage errors, and real mutual-TLS handshakes
over 127.0.0.1 with Python's `ssl` module."""

from __future__ import annotations

import datetime
import socket
import ssl
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dref.certs import (
    CertFiles,
    certificate_identity,
    init_ca,
    issue_certificate,
)
from dref.errors import ConfigError
from testkit.dref_command import DREF, cli_env, run_dref


def dref_certs(*args: str, umask: int = -1) -> subprocess.CompletedProcess[str]:
    """Run `dref certs ARGS...` to its end (with `umask` when not -1)."""
    return subprocess.run(
        [*DREF, "certs", *args],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        umask=umask,
    )


def fails_with(result: subprocess.CompletedProcess[str], message: str) -> None:
    """Assert a run failed with exit 1 and the one-line error `dref certs: message`."""
    assert result.returncode == 1, result.stdout
    assert result.stderr == f"dref certs: {message}\n"


def load(path: Path) -> x509.Certificate:
    """The PEM certificate at `path`."""
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    """The permission bits of `path`."""
    return stat.S_IMODE(path.stat().st_mode)


def alt_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the certificate's SubjectAlternativeName."""
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = [str(address) for address in san.get_values_for_type(x509.IPAddress)]
    return san.get_values_for_type(x509.DNSName), ips


def validity_days(cert: x509.Certificate) -> float:
    """How many days the certificate is valid for."""
    return (cert.not_valid_after_utc - cert.not_valid_before_utc) / datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA made by the real `dref certs init`, shared by the module's read-only tests."""
    directory = tmp_path_factory.mktemp("ca") / "ca"
    result = dref_certs("init", str(directory))
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture(scope="module")
def other_ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, unrelated CA (another cluster's)."""
    directory = tmp_path_factory.mktemp("other-ca")
    init_ca(directory)
    return directory


# -- dref certs init -------------------------------------------------------------------


def test_init_writes_a_ca_whose_key_only_its_owner_reads(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "ca"
    # umask 0 would leave a plainly created file world-readable; the key must stay 0600.
    result = dref_certs("init", str(directory), "--days", "30", umask=0)
    assert result.returncode == 0, result.stderr
    assert f"wrote {directory / 'ca.crt'}" in result.stdout
    assert f"wrote {directory / 'ca.key'}" in result.stdout
    assert mode(directory / "ca.key") == 0o600
    assert mode(directory / "ca.crt") == 0o644
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    cert = load(directory / "ca.crt")
    assert cert.public_key() == key.public_key()
    assert round(validity_days(cert)) == 30


def test_ca_certificate_has_the_ca_extensions(ca_dir: Path) -> None:
    cert = load(ca_dir / "ca.crt")
    cert.verify_directly_issued_by(cert)  # self-signed
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    key_id = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert key_id == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    (common_name,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert str(common_name.value).startswith("dref cluster CA ")
    assert round(validity_days(cert)) == 3650


def test_two_clusters_cas_have_different_names(ca_dir: Path, other_ca_dir: Path) -> None:
    assert load(ca_dir / "ca.crt").subject != load(other_ca_dir / "ca.crt").subject


def test_init_refuses_to_replace_a_ca_key_without_force(tmp_path: Path) -> None:
    assert dref_certs("init", str(tmp_path)).returncode == 0
    before = (tmp_path / "ca.crt").read_bytes()
    fails_with(
        dref_certs("init", str(tmp_path)),
        f"{tmp_path / 'ca.key'} exists; pass --force to replace the CA",
    )
    assert (tmp_path / "ca.crt").read_bytes() == before

    (tmp_path / "ca.key").chmod(0o644)  # a replaced key keeps none of the old permissions
    result = dref_certs("init", str(tmp_path), "--force")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ca.crt").read_bytes() != before
    assert mode(tmp_path / "ca.key") == 0o600


# -- dref certs issue ------------------------------------------------------------------


def test_issue_writes_a_leaf_certificate_signed_by_the_ca(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = dref_certs("issue", "--ca", str(ca_dir), "--name", "node-1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    for name in ("node-1.crt", "node-1.key", "ca.crt"):
        assert f"wrote {out / name}" in result.stdout
    assert mode(out / "node-1.key") == 0o600
    assert (out / "ca.crt").read_bytes() == (ca_dir / "ca.crt").read_bytes()

    ca, cert = load(ca_dir / "ca.crt"), load(out / "node-1.crt")
    cert.verify_directly_issued_by(ca)
    key = serialization.load_pem_private_key((out / "node-1.key").read_bytes(), None)
    assert cert.public_key() == key.public_key()
    assert cert.subject.rfc4514_string() == "CN=node-1"
    assert alt_names(cert) == (["node-1"], [])
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical and key_usage.value.digital_signature
    assert not key_usage.value.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    authority = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_key_id = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert authority.key_identifier == ca_key_id.digest
    assert round(validity_days(cert)) == 825


def test_an_ip_name_is_also_an_ip_san_and_local_adds_loopback(ca_dir: Path, tmp_path: Path) -> None:
    files = issue_certificate(ca_dir, "10.1.2.3", tmp_path)
    assert alt_names(load(files.cert)) == (["10.1.2.3"], ["10.1.2.3"])
    files = issue_certificate(ca_dir, "fd00::7", tmp_path, local=True, days=10)
    assert alt_names(load(files.cert)) == (["fd00::7", "localhost"], ["fd00::7", "127.0.0.1"])
    assert round(validity_days(load(files.cert))) == 10


def test_role_is_the_subjects_ou_and_certificate_identity_reads_it(
    ca_dir: Path, tmp_path: Path
) -> None:
    result = dref_certs(
        "issue", "--ca", str(ca_dir), "--name", "app-7", "--out", str(tmp_path), "--role", "write"
    )
    assert result.returncode == 0, result.stderr
    pem = (tmp_path / "app-7.crt").read_bytes()
    (unit,) = load(tmp_path / "app-7.crt").subject.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME
    )
    assert unit.value == "write"
    assert certificate_identity(pem) == ("app-7", "write")
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert certificate_identity(der) == ("app-7", "write")

    no_role = issue_certificate(ca_dir, "app-8", tmp_path)
    assert certificate_identity(no_role.cert.read_bytes()) == ("app-8", None)


def test_certificate_identity_rejects_what_is_not_a_certificate() -> None:
    with pytest.raises(ConfigError, match="not an X.509 certificate"):
        certificate_identity(b"not a certificate")


def test_a_certificate_of_another_ca_does_not_verify(
    ca_dir: Path, other_ca_dir: Path, tmp_path: Path
) -> None:
    foreign = load(issue_certificate(other_ca_dir, "node-1", tmp_path).cert)
    foreign.verify_directly_issued_by(load(other_ca_dir / "ca.crt"))
    with pytest.raises((ValueError, InvalidSignature)):
        foreign.verify_directly_issued_by(load(ca_dir / "ca.crt"))


def test_issue_refuses_to_replace_files_without_force(
    ca_dir: Path, other_ca_dir: Path, tmp_path: Path
) -> None:
    args = ["issue", "--ca", str(ca_dir), "--name", "node-2", "--out", str(tmp_path)]
    assert dref_certs(*args).returncode == 0
    before = (tmp_path / "node-2.crt").read_bytes()
    fails_with(dref_certs(*args), f"{tmp_path / 'node-2.key'} exists; pass --force to replace it")
    assert (tmp_path / "node-2.crt").read_bytes() == before
    assert dref_certs(*args, "--force").returncode == 0
    assert (tmp_path / "node-2.crt").read_bytes() != before

    # Another CA's certificate in OUT would break the certificates already there.
    with pytest.raises(ConfigError, match="is another CA's certificate"):
        issue_certificate(other_ca_dir, "node-3", tmp_path)
    assert not (tmp_path / "node-3.crt").exists()


@pytest.mark.parametrize(
    ("role", "message"),
    [("root", "role must be one of read, write, admin, got 'root'")],
)
def test_issue_rejects_an_unknown_role(
    ca_dir: Path, tmp_path: Path, role: str, message: str
) -> None:
    result = dref_certs(
        "issue", "--ca", str(ca_dir), "--name", "n", "--out", str(tmp_path), "--role", role
    )
    fails_with(result, message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "the name must not be empty"),
        ("a/b", "the name 'a/b' must be printable, without '/' or whitespace"),
        ("a b", "the name 'a b' must be printable, without '/' or whitespace"),
        ("bell\a", "the name 'bell\\x07' must be printable, without '/' or whitespace"),
        ("nöde", "the name 'nöde' must be ASCII (it becomes a DNS name)"),
        ("ca", "the name 'ca' is reserved"),
    ],
)
def test_issue_rejects_a_bad_name(ca_dir: Path, tmp_path: Path, name: str, message: str) -> None:
    fails_with(
        dref_certs("issue", "--ca", str(ca_dir), "--name", name, "--out", str(tmp_path)), message
    )
    assert list(tmp_path.iterdir()) == []


def test_issue_names_the_missing_or_bad_ca_file(
    ca_dir: Path, other_ca_dir: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "no-ca"
    fails_with(
        dref_certs("issue", "--ca", str(missing), "--name", "n", "--out", str(tmp_path / "o")),
        f"{missing / 'ca.crt'} does not exist (make a CA with dref certs init)",
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ca.crt").write_bytes((ca_dir / "ca.crt").read_bytes())
    with pytest.raises(ConfigError, match=f"^{broken / 'ca.key'} does not exist"):
        issue_certificate(broken, "n", tmp_path / "o")
    (broken / "ca.key").write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n")
    fails_with(
        dref_certs("issue", "--ca", str(broken), "--name", "n", "--out", str(tmp_path / "o")),
        f"{broken / 'ca.key'} is not an unencrypted PEM private key",
    )
    (broken / "ca.key").write_bytes((other_ca_dir / "ca.key").read_bytes())
    with pytest.raises(ConfigError, match=f"^{broken / 'ca.key'} is not the key of "):
        issue_certificate(broken, "n", tmp_path / "o")
    (broken / "ca.crt").write_text("not a certificate")
    with pytest.raises(ConfigError, match=f"^{broken / 'ca.crt'} is not a PEM certificate$"):
        issue_certificate(broken, "n", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_days_must_be_positive(ca_dir: Path, tmp_path: Path) -> None:
    fails_with(dref_certs("init", str(tmp_path), "--days", "0"), "days must be at least 1, got 0")
    with pytest.raises(ConfigError, match="days must be at least 1, got -1"):
        issue_certificate(ca_dir, "n", tmp_path, days=-1)


def test_without_cryptography_the_command_says_which_extra_to_install(tmp_path: Path) -> None:
    # A None entry in sys.modules makes `import cryptography` fail as if it were not installed.
    program = (
        "import sys; sys.modules['cryptography'] = None; from dref.cli import main; "
        f"sys.exit(main(['certs', 'init', {str(tmp_path)!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], env=cli_env(), capture_output=True, text=True, timeout=60
    )
    fails_with(result, "dref certs needs the cryptography package: pip install 'dref-py[tls]'")
    assert list(tmp_path.iterdir()) == []


def test_certs_help_lists_both_actions() -> None:
    result = run_dref("certs", "--help")
    assert result.returncode == 0
    assert "init" in result.stdout and "issue" in result.stdout


# -- mutual TLS with the issued files ---------------------------------------------------


def server_context(files: CertFiles) -> ssl.SSLContext:
    """A server that presents `files` and requires a client certificate of its CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(files.cert, files.key)
    context.load_verify_locations(files.ca)
    return context


def client_context(ca: Path, files: CertFiles | None) -> ssl.SSLContext:
    """A client that trusts `ca`, checks the host name, and presents `files` if any."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    context.load_verify_locations(ca)
    if files is not None:
        context.load_cert_chain(files.cert, files.key)
    return context


def serve_once(listener: socket.socket, context: ssl.SSLContext) -> bytes | None:
    """Accept one TLS connection, say "ok" and return the client's DER certificate."""
    connection, _ = listener.accept()
    connection.settimeout(10)
    with context.wrap_socket(connection, server_side=True) as tls:
        peer = tls.getpeercert(binary_form=True)
        tls.sendall(b"ok")
        return peer


def connect(address: tuple[str, int], context: ssl.SSLContext, hostname: str) -> bytes:
    """What the server says to a client that connects to `hostname` at `address`."""
    with (
        socket.create_connection(address, timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        return tls.recv(2)


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, hostname: str
) -> tuple[bytes | None | Exception, bytes | Exception]:
    """(server outcome, client outcome) of one connection over 127.0.0.1: the client
    certificate the server saw or its error, the bytes the client read or its error."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        with ThreadPoolExecutor(1) as pool:
            served = pool.submit(serve_once, listener, server)
            try:
                client_outcome: bytes | Exception = connect(
                    listener.getsockname()[:2], client, hostname
                )
            except OSError as exc:  # ssl.SSLError is an OSError
                client_outcome = exc
            try:
                server_outcome: bytes | None | Exception = served.result(timeout=20)
            except OSError as exc:
                server_outcome = exc
    return server_outcome, client_outcome


@pytest.fixture(scope="module")
def node_files(ca_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """The certificate of node "node-1" from the module's CA."""
    return issue_certificate(ca_dir, "node-1", tmp_path_factory.mktemp("node"), role="admin")


def test_mutual_tls_between_two_holders_of_the_cas_certificates(
    ca_dir: Path, node_files: CertFiles, tmp_path: Path
) -> None:
    client = issue_certificate(ca_dir, "client-1", tmp_path, role="read")
    server_outcome, client_outcome = handshake(
        server_context(node_files), client_context(client.ca, client), "node-1"
    )
    assert client_outcome == b"ok"
    assert isinstance(server_outcome, bytes)
    assert certificate_identity(server_outcome) == ("client-1", "read")


def test_a_client_certificate_of_another_ca_is_refused(
    node_files: CertFiles, other_ca_dir: Path, tmp_path: Path
) -> None:
    stranger = issue_certificate(other_ca_dir, "client-1", tmp_path)
    server_outcome, client_outcome = handshake(
        server_context(node_files), client_context(node_files.ca, stranger), "node-1"
    )
    assert isinstance(server_outcome, ssl.SSLError)
    assert server_outcome.reason == "CERTIFICATE_VERIFY_FAILED"
    assert client_outcome != b"ok"


def test_a_client_without_a_certificate_is_refused(node_files: CertFiles) -> None:
    server_outcome, client_outcome = handshake(
        server_context(node_files), client_context(node_files.ca, None), "node-1"
    )
    assert isinstance(server_outcome, ssl.SSLError)
    assert server_outcome.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    assert client_outcome != b"ok"


def test_the_client_checks_the_servers_name(
    ca_dir: Path, node_files: CertFiles, tmp_path: Path
) -> None:
    client = issue_certificate(ca_dir, "client-1", tmp_path)
    _, client_outcome = handshake(
        server_context(node_files), client_context(client.ca, client), "node-2"
    )
    assert isinstance(client_outcome, ssl.SSLCertVerificationError)
    assert "node-2" in client_outcome.verify_message


def test_only_a_local_certificate_serves_127_0_0_1(
    ca_dir: Path, node_files: CertFiles, tmp_path: Path
) -> None:
    local = issue_certificate(ca_dir, "node-9", tmp_path / "node", local=True)
    client = issue_certificate(ca_dir, "client-1", tmp_path / "client")
    _, client_outcome = handshake(
        server_context(local), client_context(client.ca, client), "127.0.0.1"
    )
    assert client_outcome == b"ok"
    _, client_outcome = handshake(
        server_context(node_files), client_context(client.ca, client), "127.0.0.1"
    )
    assert isinstance(client_outcome, ssl.SSLCertVerificationError)
