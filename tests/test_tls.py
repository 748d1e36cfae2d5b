"""Secure connections, proven live: ``rediss://`` and PostgreSQL's ``sslmode``
against TLS-only servers that these tests start (``support/tls.py``), with a
throwaway CA and certificates made by ``openssl`` in temporary directories.

Each working setting does a real round trip through the extension (HTTP and
``flask smg-history check``) and checks that the connection really is TLS. Each
broken one must answer, in bounded time, a 503 in the OpenAI error envelope
whose message names the setting to fix and the cause, without echoing the
driver's text; ``check`` must exit non-zero with the same message.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_smg_history import get_state
from flask_smg_history.backends.memory import MemoryBackend

from .support.apps import build_app
from .support.redis_servers import RedisServer
from .support.tls import OTHER_NAME, Certificates, SilentListener, TlsPostgres, TlsRedisServer, make_certificates

REDIS_TIMEOUT = 1.0  # SMG_HISTORY_REDIS_SOCKET_TIMEOUT of the apps here
PG_TIMEOUT = 2  # connect_timeout of the PostgreSQL URLs here (libpq's minimum)
#: How late a 503 may come after the timeout that should end the wait.
SLACK = 1.5

REDIS_URL = "SMG_HISTORY_REDIS_URL"
PG_URL = "SMG_HISTORY_POSTGRES_DB_URL"
REDIS_VERIFY = f"TLS certificate verification failed; check {REDIS_URL} (ssl_ca_certs, ssl_cert_reqs)."
REDIS_HOSTNAME = (
    f"the server's TLS certificate does not match the host name; check {REDIS_URL} "
    "(its host must be a name or address the certificate lists)."
)
REDIS_NO_ANSWER = (
    "the TLS handshake got no answer within SMG_HISTORY_REDIS_SOCKET_TIMEOUT; "
    f"check that {REDIS_URL} names a TLS port, or try again later."
)
PG_VERIFY = f"TLS certificate verification failed; check {PG_URL} (sslrootcert, sslmode)."
PG_HOSTNAME = (
    f"the server's TLS certificate does not match the host name; check {PG_URL} "
    "(with sslmode=verify-full its host must be a name or address the certificate lists)."
)
PG_NO_CA_FILE = (
    f"the CA file to verify the server with cannot be read; check {PG_URL} "
    "(sslrootcert; sslmode=verify-ca and verify-full need it)."
)
PG_TLS_ONLY = f"the server accepts only TLS connections; set sslmode=require or verify-full in {PG_URL}."
PG_NO_TLS = f"the server does not support TLS, which {PG_URL} requires (sslmode)."


# -- servers -------------------------------------------------------------------
@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls-certs"))


def _redis_server(directory: Path, cert: Path, key: Path, ca: Path) -> Iterator[TlsRedisServer]:
    server = TlsRedisServer(directory, cert, key, ca).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_tls(certs, tmp_path_factory) -> Iterator[TlsRedisServer]:
    """TLS only, with a certificate for localhost and 127.0.0.1 from ``certs.ca``."""
    yield from _redis_server(tmp_path_factory.mktemp("redis-tls"), certs.server, certs.server_key, certs.ca)


@pytest.fixture(scope="module")
def redis_foreign(certs, tmp_path_factory) -> Iterator[TlsRedisServer]:
    """TLS only, with a certificate from a CA the client does not know."""
    yield from _redis_server(tmp_path_factory.mktemp("redis-foreign"), certs.foreign, certs.foreign_key, certs.ca)


@pytest.fixture(scope="module")
def redis_misnamed(certs, tmp_path_factory) -> Iterator[TlsRedisServer]:
    """TLS only, with a certificate from ``certs.ca`` for another name only."""
    yield from _redis_server(tmp_path_factory.mktemp("redis-misnamed"), certs.misnamed, certs.misnamed_key, certs.ca)


@pytest.fixture(scope="module")
def pg_tls(certs) -> Iterator[TlsPostgres]:
    """A PostgreSQL cluster whose pg_hba.conf accepts TCP over TLS only."""
    server = TlsPostgres(certs).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def listener() -> Iterator[SilentListener]:
    silent = SilentListener()
    yield silent
    silent.close()


# -- apps ----------------------------------------------------------------------
@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """The apps a test builds, whose backends are closed afterwards."""
    built: list[Flask] = []
    yield built
    for app in built:
        get_state(app).backend.close()


def _redis_app(apps: list[Flask], tmp_path: Path, url: str, **extra: Any) -> Flask:
    app = build_app(
        {
            "SMG_HISTORY_BACKEND": "redis",
            "SMG_HISTORY_REDIS_URL": url,
            "SMG_HISTORY_REDIS_KEY_PREFIX": f"smgtls:{secrets.token_hex(4)}:",
            "SMG_HISTORY_REDIS_SOCKET_TIMEOUT": REDIS_TIMEOUT,
            "SMG_HISTORY_ALLOW_ANONYMOUS": True,
            **extra,
        },
        tmp_path / f"instance{len(apps)}",
    )
    apps.append(app)
    return app


def _pg_url(server: TlsPostgres, host: str = "127.0.0.1", **query: str) -> str:
    # A password in the URL (trust auth ignores it) to prove it never leaks.
    url = server.url(host, connect_timeout=str(PG_TIMEOUT), **query)
    return url.replace("postgres@", "postgres:pw-must-not-leak@", 1)


def _pg_app(apps: list[Flask], tmp_path: Path, server: TlsPostgres | None, url: str) -> Flask:
    schema = f"smgtls_{secrets.token_hex(4)}"
    if server is not None:
        server.execute(f"CREATE SCHEMA {schema}")
    app = build_app(
        {
            "SMG_HISTORY_BACKEND": "postgres",
            "SMG_HISTORY_POSTGRES_DB_URL": url,
            "SMG_HISTORY_SQL_SCHEMA": schema,
            "SMG_HISTORY_CREATE_TABLES": True,
            "SMG_HISTORY_ALLOW_ANONYMOUS": True,
        },
        tmp_path / f"instance{len(apps)}",
    )
    apps.append(app)
    return app


# -- what a working and a failing connection look like -------------------------
def _round_trip(app: Flask) -> None:
    """Create a conversation, add an item and read both back over HTTP, then
    ``flask smg-history check``: every step through the app's own backend."""
    client = app.test_client()
    created = client.post("/v1/conversations", json={"items": [{"role": "user", "content": "over TLS"}]})
    assert created.status_code == 200, created.get_json()
    conv = created.get_json()["id"]
    added = client.post(f"/v1/conversations/{conv}/items", json={"items": [{"role": "assistant", "content": "yes"}]})
    assert added.status_code == 200, added.get_json()
    items = client.get(f"/v1/conversations/{conv}/items?order=asc")
    assert items.status_code == 200, items.get_json()
    assert [i["content"][0]["text"] for i in items.get_json()["data"]] == ["over TLS", "yes"]
    assert client.get(f"/v1/conversations/{conv}").get_json()["id"] == conv

    result = app.test_cli_runner().invoke(args=["smg-history", "check"])
    assert result.exit_code == 0, result.output
    assert "records: 1 conversations, 2 items" in result.output
    assert result.output.rstrip().endswith("status: ok")


def _assert_503(app: Flask, message: str, within: float, secrets_: tuple[str, ...] = ()) -> None:
    """The HTTP answer and ``check``'s: both in ``within`` seconds, naming the
    cause, and never echoing the URL or the driver's text."""
    expected = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    started = time.monotonic()
    resp = app.test_client().post("/v1/conversations", json={})
    elapsed = time.monotonic() - started
    assert resp.status_code == 503, resp.get_json()
    assert resp.get_json() == expected
    assert elapsed < within, elapsed
    body = resp.get_data(as_text=True)
    for secret in ("127.0.0.1", "localhost", "certificate verify failed", "pw-must-not-leak", *secrets_):
        assert secret not in body

    started = time.monotonic()
    result = app.test_cli_runner().invoke(args=["smg-history", "check"])
    elapsed = time.monotonic() - started
    assert result.exit_code != 0
    assert f"Error: health failed on backend '{get_state(app).backend.name}': {message}" in result.output
    assert elapsed < within, elapsed


def _redis_503(kind: str, hint: str) -> str:
    return f"The history backend (redis) is unavailable ({kind}): {hint}"


def _pg_503(hint: str | None) -> str:
    detail = f": {hint}" if hint else "; try again later."
    return f"The history backend (postgres) is unavailable (SqlUnavailable){detail}"


# -- redis ---------------------------------------------------------------------
def _assert_redis_tls(app: Flask, server: TlsRedisServer) -> None:
    """The app's connections are TLS sockets, to a server with no plain port."""
    client = get_state(app).backend.client
    assert client.config_get("port") == {"port": "0"}
    assert client.config_get("tls-port") == {"tls-port": str(server.port)}
    conn = client.connection_pool.get_connection()
    try:
        assert isinstance(conn._sock, ssl.SSLSocket)
        assert conn._sock.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        client.connection_pool.release(conn)


@pytest.mark.redis
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_rediss_verified_with_the_right_ca(apps, tmp_path, certs, redis_tls, host):
    app = _redis_app(apps, tmp_path, redis_tls.tls_url(host, ssl_cert_reqs="required", ssl_ca_certs=str(certs.ca)))
    _round_trip(app)
    _assert_redis_tls(app, redis_tls)


@pytest.mark.redis
def test_rediss_without_verification_accepts_an_unknown_ca(apps, tmp_path, redis_foreign):
    app = _redis_app(apps, tmp_path, redis_foreign.tls_url(ssl_cert_reqs="none"))
    _round_trip(app)
    _assert_redis_tls(app, redis_foreign)


@pytest.mark.redis
def test_rediss_without_the_hostname_check_accepts_another_name(apps, tmp_path, certs, redis_misnamed):
    app = _redis_app(apps, tmp_path, redis_misnamed.tls_url(ssl_ca_certs=str(certs.ca), ssl_check_hostname="false"))
    _round_trip(app)
    _assert_redis_tls(app, redis_misnamed)


@pytest.mark.redis
def test_rediss_with_the_wrong_ca_is_a_503_naming_the_setting(apps, tmp_path, certs, redis_tls, redis_foreign):
    # The server's CA is not the one given, then not one the system trusts.
    for url in (redis_tls.tls_url(ssl_ca_certs=str(certs.foreign_ca)), redis_foreign.tls_url()):
        app = _redis_app(apps, tmp_path, url)
        _assert_503(app, _redis_503("ConnectionError", REDIS_VERIFY), REDIS_TIMEOUT + SLACK, (str(certs.directory),))


@pytest.mark.redis
def test_rediss_to_a_host_the_certificate_is_not_for_is_a_503(apps, tmp_path, certs, redis_misnamed):
    app = _redis_app(apps, tmp_path, redis_misnamed.tls_url(ssl_ca_certs=str(certs.ca)))
    _assert_503(app, _redis_503("ConnectionError", REDIS_HOSTNAME), REDIS_TIMEOUT + SLACK, (OTHER_NAME,))


@pytest.mark.redis
def test_rediss_to_a_server_that_never_answers_ends_within_the_socket_timeout(apps, tmp_path, listener):
    app = _redis_app(apps, tmp_path, f"rediss://127.0.0.1:{listener.port}/0?ssl_cert_reqs=none")
    started = time.monotonic()
    _assert_503(app, _redis_503("TimeoutError", REDIS_NO_ANSWER), REDIS_TIMEOUT + SLACK)
    assert time.monotonic() - started >= 2 * REDIS_TIMEOUT * 0.9  # each call did wait for the timeout
    assert len(listener.accepted) >= 2  # the TCP connections were made: the handshake is what hung


@pytest.mark.redis
def test_rediss_to_a_plain_redis_server_is_a_503(apps, tmp_path):
    """A plain server reads the TLS ClientHello as the start of a command and
    waits for the rest: the socket timeout ends the handshake."""
    plain = RedisServer(tmp_path / "plain").start()
    try:
        app = _redis_app(apps, tmp_path, f"rediss://127.0.0.1:{plain.port}/0?ssl_cert_reqs=none")
        _assert_503(app, _redis_503("TimeoutError", REDIS_NO_ANSWER), REDIS_TIMEOUT + SLACK)
    finally:
        plain.stop()


@pytest.mark.redis
def test_plain_redis_url_to_a_tls_only_server_is_a_503(apps, tmp_path, redis_tls):
    """The server resets the connection; nothing in that says TLS for sure
    (a crashing server does the same), so the message stays the generic one."""
    app = _redis_app(apps, tmp_path, f"redis://127.0.0.1:{redis_tls.port}/0")
    message = "The history backend (redis) is unavailable (ConnectionError); try again later."
    _assert_503(app, message, REDIS_TIMEOUT + SLACK)


@pytest.mark.redis
def test_a_tls_server_going_away_is_an_ordinary_outage(apps, tmp_path, certs):
    """A lost TLS connection is not a TLS set-up problem: the generic message,
    and the next call after the server is back succeeds."""
    server = TlsRedisServer(tmp_path / "redis", certs.server, certs.server_key, certs.ca).start()
    try:
        app = _redis_app(apps, tmp_path, server.tls_url(ssl_ca_certs=str(certs.ca)))
        _round_trip(app)
        server.stop()
        message = "The history backend (redis) is unavailable (ConnectionError); try again later."
        _assert_503(app, message, REDIS_TIMEOUT + SLACK)
        server.start()
        assert app.test_client().post("/v1/conversations", json={}).status_code == 200
    finally:
        server.stop()


# -- postgresql ----------------------------------------------------------------
def _assert_pg_tls(app: Flask) -> None:
    """A connection from the app's own pool is TLS, by the server's account."""
    with get_state(app).backend.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).one()
    assert row.ssl is True
    assert row.version in ("TLSv1.2", "TLSv1.3")


@pytest.mark.postgres
def test_postgres_sslmode_require(apps, tmp_path, pg_tls):
    app = _pg_app(apps, tmp_path, pg_tls, _pg_url(pg_tls, sslmode="require"))
    _round_trip(app)
    _assert_pg_tls(app)


@pytest.mark.postgres
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_postgres_verify_full_with_the_right_root_certificate(apps, tmp_path, certs, pg_tls, host):
    app = _pg_app(apps, tmp_path, pg_tls, _pg_url(pg_tls, host, sslmode="verify-full", sslrootcert=str(certs.ca)))
    _round_trip(app)
    _assert_pg_tls(app)


@pytest.mark.postgres
def test_postgres_verify_full_with_the_wrong_ca_is_a_503_naming_the_setting(apps, tmp_path, certs, pg_tls, caplog):
    url = _pg_url(pg_tls, sslmode="verify-full", sslrootcert=str(certs.foreign_ca))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="flask_smg_history"):
        app = _pg_app(apps, tmp_path, pg_tls, url)  # start-up tries once, fails and still starts
    assert time.monotonic() - started < PG_TIMEOUT + SLACK
    assert f"unreachable at start-up (SqlUnavailable): {PG_VERIFY}" in caplog.text
    _assert_503(app, _pg_503(PG_VERIFY), PG_TIMEOUT + SLACK, (str(certs.directory),))


@pytest.mark.postgres
def test_postgres_verify_full_to_a_host_the_certificate_is_not_for_is_a_503(apps, tmp_path, certs, pg_tls):
    # libpq connects to hostaddr and checks the certificate against host.
    url = _pg_url(pg_tls, OTHER_NAME, sslmode="verify-full", sslrootcert=str(certs.ca), hostaddr="127.0.0.1")
    app = _pg_app(apps, tmp_path, pg_tls, url)
    _assert_503(app, _pg_503(PG_HOSTNAME), PG_TIMEOUT + SLACK, (OTHER_NAME,))


@pytest.mark.postgres
def test_postgres_verify_full_without_a_readable_root_certificate_is_a_503(apps, tmp_path, pg_tls):
    missing = tmp_path / "no-such-ca.pem"
    app = _pg_app(apps, tmp_path, pg_tls, _pg_url(pg_tls, sslmode="verify-full", sslrootcert=str(missing)))
    _assert_503(app, _pg_503(PG_NO_CA_FILE), PG_TIMEOUT + SLACK, (str(missing),))


@pytest.mark.postgres
def test_postgres_plain_client_to_a_tls_only_server_is_a_503(apps, tmp_path, pg_tls):
    app = _pg_app(apps, tmp_path, pg_tls, _pg_url(pg_tls, sslmode="disable"))
    _assert_503(app, _pg_503(PG_TLS_ONLY), PG_TIMEOUT + SLACK, ("pg_hba",))


@pytest.mark.postgres
def test_postgres_sslmode_require_to_a_server_without_tls_is_a_503(apps, tmp_path, certs):
    plain = TlsPostgres(certs, tls=False).start()
    try:
        app = _pg_app(apps, tmp_path, plain, _pg_url(plain, sslmode="require"))
        _assert_503(app, _pg_503(PG_NO_TLS), PG_TIMEOUT + SLACK)
    finally:
        plain.stop()


@pytest.mark.postgres
def test_postgres_tls_to_a_server_that_never_answers_ends_within_connect_timeout(apps, tmp_path, listener):
    """libpq's SSLRequest gets no answer: ``connect_timeout`` ends the wait
    (at start-up, and on each call), with the generic message."""
    url = f"postgresql://postgres@127.0.0.1:{listener.port}/postgres?sslmode=require&connect_timeout={PG_TIMEOUT}"
    started = time.monotonic()
    app = _pg_app(apps, tmp_path, None, url)
    assert time.monotonic() - started < PG_TIMEOUT + SLACK
    _assert_503(app, _pg_503(None), PG_TIMEOUT + SLACK)
    assert time.monotonic() - started >= 3 * PG_TIMEOUT * 0.9  # start-up, HTTP, check: each waited


# -- the hook itself -------------------------------------------------------------
class _Lost(ConnectionError):
    pass


class BrokenHintBackend(MemoryBackend):
    """Every create fails as unavailable, and its ``outage_hint`` is broken."""

    unavailable_errors = (_Lost,)

    def create_conversation(self, conversation, items):
        raise _Lost("cannot reach db://user:pw-must-not-leak@host")

    def outage_hint(self, exc):
        raise RuntimeError("a bug in a custom backend's hook")


def test_a_failing_outage_hint_leaves_the_generic_503(apps, tmp_path):
    app = build_app(
        {"SMG_HISTORY_BACKEND": f"{__name__}.BrokenHintBackend", "SMG_HISTORY_ALLOW_ANONYMOUS": True}, tmp_path
    )
    apps.append(app)
    resp = app.test_client().post("/v1/conversations", json={})
    assert resp.status_code == 503
    assert resp.get_json()["error"]["message"] == (
        "The history backend (tests.test_tls.BrokenHintBackend) is unavailable (_Lost); try again later."
    )
