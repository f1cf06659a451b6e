"""Certificates for mutual TLS between nodes and clients: a cluster CA and the leaf
certificates it signs (`dref certs init|issue`), read back by `certificate_identity`.

Every key is ECDSA P-256. A leaf certificate serves as both server and client (every node
is both), names its holder in the subject CN and the SubjectAlternativeName, and may carry
a role (read, write or admin) as the subject's organizationalUnitName. Needs the
`cryptography` package (`pip install 'dref-py[tls]'`).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dref.errors import ConfigError

try:
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    _MISSING: ImportError | None = None
except ImportError as exc:  # the tls extra is not installed: every function says so
    _MISSING = exc

ROLES = ("read", "write", "admin")
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
# Certificates start a little in the past so a peer whose clock lags still accepts them.
_CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class CaFiles:
    """Where `init_ca` wrote the CA's certificate and private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class CertFiles:
    """Where `issue_certificate` wrote the certificate, its key and the CA's certificate."""

    cert: Path
    key: Path
    ca: Path


def init_ca(directory: str | os.PathLike[str], *, days: int = 3650, force: bool = False) -> CaFiles:
    """Make a new cluster CA in `directory` (ca.crt, and ca.key readable by its owner only)."""
    _require_cryptography()
    _check_days(days)
    folder = Path(directory)
    files = CaFiles(cert=folder / CA_CERT, key=folder / CA_KEY)
    if files.key.exists() and not force:
        raise ConfigError(f"{files.key} exists; pass --force to replace the CA")
    key = ec.generate_private_key(ec.SECP256R1())
    # A random suffix so two clusters' CAs never share a name.
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"dref cluster CA {secrets.token_hex(4)}")]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _make_directory(folder)
    _write_file(files.key, _key_pem(key), 0o600)
    _write_file(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return files


def issue_certificate(
    ca_directory: str | os.PathLike[str],
    name: str,
    out_directory: str | os.PathLike[str],
    *,
    role: str | None = None,
    days: int = 825,
    local: bool = False,
    force: bool = False,
) -> CertFiles:
    """Sign a server-and-client certificate for `name` with the CA in `ca_directory`."""
    _require_cryptography()
    _check_name(name)
    if role is not None and role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    _check_days(days)
    ca_cert, ca_pem, ca_key = _load_ca(Path(ca_directory))
    out = Path(out_directory)
    files = CertFiles(cert=out / f"{name}.crt", key=out / f"{name}.key", ca=out / CA_CERT)
    if not force:
        for existing in (files.key, files.cert):
            if existing.exists():
                raise ConfigError(f"{existing} exists; pass --force to replace it")
        if files.ca.exists() and files.ca.read_bytes() != ca_pem:
            raise ConfigError(f"{files.ca} is another CA's certificate; pass --force to replace it")

    subject = [x509.NameAttribute(NameOID.COMMON_NAME, name)]
    if role is not None:
        subject.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role))
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(_alt_names(name, local)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _make_directory(out)
    _write_file(files.key, _key_pem(key), 0o600)
    _write_file(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    if not files.ca.exists() or files.ca.read_bytes() != ca_pem:
        _write_file(files.ca, ca_pem, 0o644)
    return files


def certificate_identity(pem_or_der: bytes) -> tuple[str, str | None]:
    """(CN, role or None) of a certificate, so a TLS peer's certificate names its holder."""
    _require_cryptography()
    try:
        if pem_or_der.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(pem_or_der)
        else:
            cert = x509.load_der_x509_certificate(pem_or_der)
    except ValueError as exc:
        raise ConfigError(f"not an X.509 certificate: {exc}") from exc
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ConfigError(f"certificate {cert.subject.rfc4514_string()!r} has no common name")
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    # Only a role dref knows counts: another tool's OU ("Engineering") grants nothing.
    role = next((_text(unit.value) for unit in units if _text(unit.value) in ROLES), None)
    return _text(names[0].value), role


def _require_cryptography() -> None:
    """ConfigError, not a traceback, when the optional `cryptography` package is missing."""
    if _MISSING is not None:
        raise ConfigError(
            "dref certs needs the cryptography package: pip install 'dref-py[tls]'"
        ) from _MISSING


def _check_days(days: int) -> None:
    """ConfigError unless a validity of `days` days makes sense."""
    if days < 1:
        raise ConfigError(f"days must be at least 1, got {days}")


def _check_name(name: str) -> None:
    """ConfigError unless `name` can be a file name, a node id and a DNS SAN."""
    if not name:
        raise ConfigError("the name must not be empty")
    if "/" in name or any(char.isspace() for char in name) or not name.isprintable():
        raise ConfigError(f"the name {name!r} must be printable, without '/' or whitespace")
    if not name.isascii():
        raise ConfigError(f"the name {name!r} must be ASCII (it becomes a DNS name)")
    if name in (".", "..", "ca"):
        # "ca" would write its certificate over the copy of the CA's at OUT/ca.crt.
        raise ConfigError(f"the name {name!r} is reserved")


def _alt_names(name: str, local: bool) -> list[x509.GeneralName]:
    """DNS:name, IP:name when it is an address, and with `local` localhost and 127.0.0.1."""
    names: list[x509.GeneralName] = [x509.DNSName(name)]
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    try:
        addresses.append(ipaddress.ip_address(name))
    except ValueError:
        pass
    if local:
        if name != "localhost":
            names.append(x509.DNSName("localhost"))
        loopback = ipaddress.ip_address("127.0.0.1")
        if loopback not in addresses:
            addresses.append(loopback)
    return names + [x509.IPAddress(address) for address in addresses]


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    """A KeyUsage with only the named bits set."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The unencrypted PKCS#8 PEM of `key` (the node reads it without a passphrase)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ca(
    folder: Path,
) -> tuple[x509.Certificate, bytes, ec.EllipticCurvePrivateKey]:
    """The CA certificate, its PEM and its key from `folder`; ConfigError naming a bad file."""
    cert_path, key_path = folder / CA_CERT, folder / CA_KEY
    cert_pem, key_pem = _read_file(cert_path), _read_file(key_path)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ConfigError(f"{cert_path} is not a PEM certificate") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{key_path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{key_path} is not an ECDSA private key")
    if key.public_key() != cert.public_key():
        raise ConfigError(f"{key_path} is not the key of {cert_path}")
    return cert, cert_pem, key


def _read_file(path: Path) -> bytes:
    """The bytes of `path`; ConfigError naming it when it is missing or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} does not exist (make a CA with dref certs init)") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def _make_directory(folder: Path) -> None:
    """Create `folder` and its parents if missing; ConfigError naming it when that fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the directory {folder}: {exc.strerror}") from exc


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` by a new file created with `mode`, so a key is never readable by others,
    not even for a moment (a file replaced with --force keeps none of the old permissions)."""
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _text(value: str | bytes) -> str:
    """A name attribute's value as text (the few binary kinds decoded as UTF-8)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
