"""The README's minimal ACL user and `rediss://` with client certificates, on real
redis-server processes: the whole API works, everything else is refused, and each
misconfiguration fails with an error that names it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from redis.exceptions import NoPermissionError

import dref
from dref.backend import Entry
from dref.certs import CertFiles, init_ca, issue_certificate
from dref.changes import Changed, Deleted
from dref.errors import BackendUnavailableError, ConfigError, PermissionDeniedError
from dref.redis_backend import RedisBackend

README = Path(__file__).parents[2] / "README.md"
PASSWORD = "dref-test-password"
ADMIN = {"username": "admin", "password": "admin-password"}
ADMIN_CONFIG = ["--user", "default", "off"]  # nobody gets in without a user and password
ADMIN_CONFIG += ["--user", "admin", "on", ">admin-password", "~*", "&*", "+@all"]


def documented_acl_rule() -> list[str]:
    """The words after ``ACL SETUSER dref`` in the README, with the test password."""
    text = README.read_text()
    lines = [line for line in text.splitlines() if line.startswith("ACL SETUSER dref ")]
    assert len(lines) == 1, "the README's Redis section shows one ACL SETUSER dref line"
    return lines[0].replace(">PASSWORD", ">" + PASSWORD).split()[3:]


def set_user(server: Any, *rule: str) -> None:
    """Change the dref user's ACL as an administrator would."""
    admin = server.client()
    try:
        admin.execute_command("ACL", "SETUSER", "dref", *rule)
    finally:
        admin.close()


def user_url(server: Any, password: str = PASSWORD) -> str:
    """The server's URL for the dref user with `password`."""
    return f"redis://dref:{password}@127.0.0.1:{server.port}/0"


@pytest.fixture
def acl_server(start_server: Callable[..., Any]) -> Any:
    """A server where only `admin` and the README's `dref` user can log in."""
    server = start_server(config=ADMIN_CONFIG, admin=ADMIN)
    set_user(server, *documented_acl_rule())
    return server


def wait_until(condition: Callable[[], bool], limit: float = 20.0) -> None:
    """Poll `condition` until it holds; fail the test after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"not within {limit} s"
        time.sleep(0.05)  # polling under a deadline


def test_the_documented_user_runs_the_whole_api(acl_server: Any) -> None:
    url = user_url(acl_server)
    with dref.redis(url, timeout=5, poll_interval=0.2) as ctx, dref.redis(url, timeout=5) as other:
        ref = ctx.ref("acl:n", 1)
        assert ref.get() == 1
        ref.set(2)
        ref.update(lambda n: n + 1)
        assert ref.increment(2) == 5
        with ref.changes(timeout=20) as stream:
            other.ref("acl:n", 0).set(9)
            event = stream.get()
            assert isinstance(event, Changed) and event.value == 9
            ref.delete()
            assert isinstance(stream.get(), Deleted)
        assert ref.get_or(None) is None

        first = ctx.lock("acl:lock", ttl=5)
        with first:
            assert not other.lock("acl:lock").acquire(blocking=False)
        second = other.lock("acl:lock", ttl=5)
        assert second.acquire(timeout=10)
        assert second.fencing_token > first.fencing_token > 0
        second.release()

        brief = ctx.ref("acl:brief", 0)
        with brief.changes(timeout=20) as stream:
            brief.set(1, ttl=1)
            for _ in range(5):  # the set (maybe after the creation), then the expiry
                event = stream.get()
                if isinstance(event, Deleted):
                    break
                assert isinstance(event, Changed)
            else:
                pytest.fail("no Deleted event after the TTL")
        assert brief.get_or(None) is None
    admin = acl_server.client()
    try:  # nothing was refused silently; redis-py may try CLIENT SETINFO (Redis >= 7.2)
        refused = [entry for entry in admin.acl_log() if entry["object"] != "client|setinfo"]
    finally:
        admin.close()
    assert refused == []


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("CONFIG", "GET", "*"),
        ("CONFIG", "SET", "notify-keyspace-events", "KEA"),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("SCRIPT", "FLUSH"),
        ("ACL", "LIST"),
        ("HSET", "h", "f", "v"),
        ("PUBLISH", "other-channel", "x"),
    ],
)
def test_the_documented_user_can_run_nothing_else(
    acl_server: Any, command: tuple[str, ...]
) -> None:
    client = redis.Redis.from_url(user_url(acl_server), socket_timeout=5)
    try:
        with pytest.raises(NoPermissionError):
            client.execute_command(*command)
    finally:
        client.close()


def test_the_documented_user_cannot_subscribe_to_other_channels(acl_server: Any) -> None:
    client = redis.Redis.from_url(user_url(acl_server), socket_timeout=5)
    pubsub = client.pubsub()
    try:
        pubsub.subscribe("other-channel")
        with pytest.raises(NoPermissionError):
            pubsub.get_message(timeout=5)
    finally:
        pubsub.close()
        client.close()


def _write(backend: RedisBackend, admin: redis.Redis) -> None:
    """A write: EVALSHA of a script that runs INCR, SET and PUBLISH."""
    backend.set("n", b"1")


def _write_without_cached_script(backend: RedisBackend, admin: redis.Redis) -> None:
    """A write on a server without the script cached: EVAL."""
    admin.script_flush()  # as on a new or restarted server: dref sends the script's source
    backend.set("n", b"1")


def _read(backend: RedisBackend, admin: redis.Redis) -> None:
    """A read: MGET of the value and its revision."""
    backend.get("n")


def _compare(backend: RedisBackend, admin: redis.Redis) -> None:
    """A compare-and-set, whose script GETs the current value."""
    backend.compare_and_set("n", Entry(b"0", 0), b"1")


def _delete(backend: RedisBackend, admin: redis.Redis) -> None:
    """A delete, whose script runs DEL."""
    backend.delete("n")


def _expire(backend: RedisBackend, admin: redis.Redis) -> None:
    """An unconditional EXPIRE."""
    backend.expire("n", 5)


def _expire_if_held(backend: RedisBackend, admin: redis.Redis) -> None:
    """A lock keep-alive: a script that checks the token, then EXPIREs."""
    admin.set("n", b"token")
    backend.expire("n", 5, expected=Entry(b"token", 0))


def _subscribe(backend: RedisBackend, admin: redis.Redis) -> None:
    """A subscription: SUBSCRIBE on the pub/sub connection."""
    backend.subscribe("n", lambda event: None)


NEEDED: dict[str, Callable[[RedisBackend, redis.Redis], None]] = {
    "evalsha": _write,
    "eval": _write_without_cached_script,
    "mget": _read,
    "get": _compare,
    "set": _write,
    "incr": _write,
    "publish": _write,
    "del": _delete,
    "expire": _expire,
    "subscribe": _subscribe,
}


def test_the_rule_names_exactly_the_commands_dref_needs() -> None:
    granted = {word[1:] for word in documented_acl_rule() if word.startswith("+")}
    assert granted == set(NEEDED) | {"ping"}


@pytest.mark.parametrize("command", sorted(NEEDED))
def test_each_command_of_the_rule_is_needed(acl_server: Any, command: str) -> None:
    set_user(acl_server, "-" + command)
    backend = RedisBackend(user_url(acl_server), timeout=5)
    admin = acl_server.client()
    try:
        with pytest.raises(PermissionDeniedError, match="lacks a permission dref needs"):
            NEEDED[command](backend, admin)
    finally:
        admin.close()
        backend.close()


def test_the_script_expire_is_needed(acl_server: Any) -> None:
    set_user(acl_server, "-expire")
    backend = RedisBackend(user_url(acl_server), timeout=5)
    admin = acl_server.client()
    try:
        with pytest.raises(PermissionDeniedError, match="script"):
            _expire_if_held(backend, admin)
    finally:
        admin.close()
        backend.close()


def test_ping_is_needed_by_change_streams(
    acl_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    set_user(acl_server, "-ping")
    admin = acl_server.client()
    admin.set("n", b"1")  # a present name: its baseline read is confirmed with a PING
    admin.close()
    backend = RedisBackend(user_url(acl_server), timeout=5, poll_interval=0.2)
    try:
        with caplog.at_level(logging.ERROR, logger="dref.redis"):
            backend.subscribe("n", lambda event: None)
            wait_until(lambda: any("'ping'" in r.getMessage() for r in caplog.records))
    finally:
        backend.close()


def test_keys_can_be_narrowed_to_a_prefix(acl_server: Any) -> None:
    set_user(acl_server, "resetkeys", "~app:*", "~lock:app:*", "~dref:rev:{app:*")
    with dref.redis(user_url(acl_server), timeout=5) as ctx:
        ref = ctx.ref("app:n", 1)
        ref.update(lambda n: n + 1)
        assert ref.get() == 2
        with ctx.lock("app:lock", ttl=5) as lock:
            assert lock.fencing_token > 0
        with pytest.raises(PermissionDeniedError):
            ctx.ref("elsewhere", 1)


def test_a_read_only_user_reads_existing_names(acl_server: Any) -> None:
    with dref.redis(user_url(acl_server), timeout=5) as ctx:
        ctx.ref("n", 7)
    set_user(acl_server, "-@all", "+mget")
    with dref.redis(user_url(acl_server), timeout=5) as ctx:
        ref = ctx.ref("n", 0)  # storing the initial value is refused, but "n" exists
        assert ref.get() == 7
        with pytest.raises(PermissionDeniedError, match="evalsha"):
            ref.set(8)


@pytest.mark.parametrize("password", ["wrong-password", ""])
def test_a_wrong_or_missing_password_is_a_config_error(acl_server: Any, password: str) -> None:
    url = user_url(acl_server, password) if password else acl_server.url
    with (
        dref.redis(url, timeout=5) as ctx,
        pytest.raises(ConfigError, match="Redis refused to authenticate"),
    ):
        ctx.ref("n", 1)


def test_a_refused_subscription_is_raised_by_the_change_stream(acl_server: Any) -> None:
    with dref.redis(user_url(acl_server), timeout=5) as ctx:
        ref = ctx.ref("n", 1)
        set_user(acl_server, "-subscribe")
        with pytest.raises(PermissionDeniedError, match="'subscribe'"):
            ref.changes()
        assert ref.get() == 1  # the rest of the context keeps working


# -- TLS --------------------------------------------------------------------------------


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, CertFiles]:
    """A test CA's server and client certificates, and a server one from another CA."""
    init_ca(tmp_path / "ca")
    init_ca(tmp_path / "other-ca")
    return {
        "server": issue_certificate(tmp_path / "ca", "redis", tmp_path / "server", local=True),
        "client": issue_certificate(tmp_path / "ca", "client", tmp_path / "client", local=True),
        "foreign": issue_certificate(
            tmp_path / "other-ca", "redis", tmp_path / "foreign", local=True
        ),
    }


def start_tls_server(
    start_server: Callable[..., Any],
    server: CertFiles,
    client: CertFiles,
    *,
    client_certificates: bool = True,
) -> Any:
    """A TLS-only server that requires (or not) client certificates from the test CA;
    skips the test when redis-server was built without TLS."""
    config = ["--tls-cert-file", str(server.cert), "--tls-key-file", str(server.key)]
    config += ["--tls-ca-cert-file", str(client.ca)]
    config += ["--tls-auth-clients", "yes" if client_certificates else "no"]
    admin = {"ssl_ca_certs": str(server.ca), "ssl_certfile": str(client.cert)}
    admin["ssl_keyfile"] = str(client.key)
    try:
        return start_server(config=config, tls=True, admin=admin)
    except RuntimeError as exc:
        if "Bad directive" in str(exc) or "not supported" in str(exc):
            pytest.skip(f"redis-server was built without TLS: {exc}")
        raise


@pytest.fixture
def tls_server(start_server: Callable[..., Any], certificates: dict[str, CertFiles]) -> Any:
    """A TLS-only server with a certificate from the test CA."""
    return start_tls_server(start_server, certificates["server"], certificates["client"])


def tls_query(files: CertFiles) -> str:
    """redis-py's URL options for the client certificate, its key and the CA."""
    paths = {"ssl_certfile": files.cert, "ssl_keyfile": files.key, "ssl_ca_certs": files.ca}
    return "&".join(f"{key}={quote(str(path))}" for key, path in paths.items())


def test_rediss_with_a_client_certificate(
    tls_server: Any, certificates: dict[str, CertFiles]
) -> None:
    client = certificates["client"]
    url = f"{tls_server.url}?{tls_query(client)}"
    by_options = dref.redis(
        tls_server.url,
        timeout=5,
        ca_file=str(client.ca),
        cert_file=str(client.cert),
        key_file=str(client.key),
    )
    with dref.redis(url, timeout=5) as ctx, by_options as other:
        ref = ctx.ref("tls:n", 1)
        with ref.changes(timeout=20) as stream:  # its pub/sub connection uses TLS too
            other.ref("tls:n", 0).set(2)
            event = stream.get()
        assert isinstance(event, Changed) and event.value == 2
        assert ref.get() == 2
        with ctx.lock("tls:lock", ttl=5) as lock:
            assert lock.fencing_token > 0


def test_rediss_without_client_certificates(
    start_server: Callable[..., Any], certificates: dict[str, CertFiles]
) -> None:
    client = certificates["client"]
    server = start_tls_server(
        start_server, certificates["server"], client, client_certificates=False
    )
    backend = RedisBackend(server.url, ca_file=str(client.ca), timeout=5)
    try:
        revision = backend.set("n", b"over tls")
        assert backend.get("n") == Entry(b"over tls", revision)
    finally:
        backend.close()


def test_a_client_without_a_certificate_is_refused(
    tls_server: Any, certificates: dict[str, CertFiles]
) -> None:
    backend = RedisBackend(tls_server.url, ca_file=str(certificates["client"].ca), timeout=5)
    try:
        with pytest.raises(BackendUnavailableError, match="certificate.*pass cert_file and key"):
            backend.get("n")
    finally:
        backend.close()


def test_plaintext_to_the_tls_port_hints_at_rediss(tls_server: Any) -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{tls_server.port}/0", timeout=5)
    try:
        with pytest.raises(BackendUnavailableError, match="use a rediss:// URL"):
            backend.get("n")
    finally:
        backend.close()


def test_a_server_certificate_from_another_ca_is_refused(
    start_server: Callable[..., Any], certificates: dict[str, CertFiles]
) -> None:
    client = certificates["client"]
    server = start_tls_server(start_server, certificates["foreign"], client)
    backend = RedisBackend(f"{server.url}?{tls_query(client)}", timeout=5)
    try:
        with pytest.raises(BackendUnavailableError, match="certificate verify failed"):
            backend.get("n")
    finally:
        backend.close()


def test_tls_options_are_checked_before_connecting(
    redis_url: str, certificates: dict[str, CertFiles], tmp_path: Path
) -> None:
    client = certificates["client"]
    with pytest.raises(ConfigError, match="cert_file needs a rediss://"):
        RedisBackend(redis_url, cert_file=str(client.cert))
    with pytest.raises(ConfigError, match="bad Redis URL"):
        RedisBackend(f"{redis_url}?{tls_query(client)}")  # TLS options on a redis:// URL
    with pytest.raises(ConfigError, match="bad Redis URL"):
        RedisBackend(redis_url.replace("redis://", "rediss://") + "?ssl_cert_file=x")
    missing = str(tmp_path / "missing.key")
    with pytest.raises(ConfigError, match="no such file"):
        RedisBackend(redis_url.replace("redis://", "rediss://"), key_file=missing)
