"""Throwaway TLS for the secure-connection tests: certificates made with
``openssl`` at test time, a TLS-only ``redis-server`` and a TLS-only PostgreSQL
cluster, each on a free loopback port.

- ``make_certificates``: a CA, a server certificate for ``localhost`` and
  ``127.0.0.1`` (subject alternative names) signed by it, a second one signed
  by it for another name only (``elsewhere.invalid``, for hostname mismatches),
  and an unrelated second CA with a server certificate of its own.
- ``TlsRedisServer``: ``redis-server --port 0 --tls-port N``: no plain port at
  all, so a command that succeeds proves the connection was TLS.
- ``TlsPostgres``: ``initdb`` and ``postgres`` with ``ssl = on`` and a
  ``pg_hba.conf`` of ``hostssl`` lines only (plain TCP is refused; the Unix
  socket, used only by the tests' own admin connection, is trusted); with
  ``tls=False``, a cluster without TLS. As root, the cluster runs as the
  ``postgres`` user, which must own its files.
- ``SilentListener``: a TCP port that accepts and never speaks.

Servers run as children of the test process with a parent-death signal, so
they die with it even when it is killed; ``stop`` removes their files. A server
that will not start fails loudly with the tail of its log, never skips.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .redis_servers import RedisServer, _die_with_parent, free_port

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
#: The name the mismatched certificate is for: ``.invalid`` never resolves.
OTHER_NAME = "elsewhere.invalid"


# -- certificates --------------------------------------------------------------
@dataclass(frozen=True)
class Certificates:
    directory: Path
    ca: Path  # the CA that signed ``server`` and ``misnamed``
    server: Path  # localhost, 127.0.0.1
    server_key: Path
    misnamed: Path  # OTHER_NAME only, signed by ``ca``
    misnamed_key: Path
    foreign_ca: Path  # an unrelated CA
    foreign: Path  # localhost, 127.0.0.1, signed by ``foreign_ca``
    foreign_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    if not os.path.exists(OPENSSL):
        raise RuntimeError("the TLS tests need the openssl command: apt-get install openssl")
    done = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {done.stderr.strip()[-600:]}")


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key.name, "-out", cert.name, "-days", "3", "-subj", f"/CN=SMG history test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


def _make_server_cert(directory: Path, name: str, ca: tuple[Path, Path], alt_names: str) -> tuple[Path, Path]:
    cert, key, csr, ext = (directory / f"{name}.{x}" for x in ("pem", "key", "csr", "ext"))
    ext.write_text(
        f"subjectAltName={alt_names}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key.name, "-out", csr.name, "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr.name, "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3",
        "-extfile", ext.name, "-out", cert.name,
        cwd=directory,
    )  # fmt: skip
    return cert, key


def make_certificates(directory: Path) -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _make_ca(directory, "ca")
    foreign_ca = _make_ca(directory, "foreign-ca")
    here = "DNS:localhost,IP:127.0.0.1"
    server = _make_server_cert(directory, "server", ca, here)
    misnamed = _make_server_cert(directory, "misnamed", ca, f"DNS:{OTHER_NAME}")
    foreign = _make_server_cert(directory, "foreign", foreign_ca, here)
    return Certificates(directory, ca[0], *server, *misnamed, foreign_ca[0], *foreign)


# -- redis ---------------------------------------------------------------------
class TlsRedisServer(RedisServer):
    """A ``redis-server`` that speaks only TLS, on ``127.0.0.1:port``."""

    def __init__(self, directory: Path, cert: Path, key: Path, ca: Path) -> None:
        super().__init__(directory, tls=(cert, key, ca))

    def tls_url(self, host: str = "127.0.0.1", **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"rediss://{host}:{self.port}/0" + (f"?{params}" if params else "")


# -- postgresql ----------------------------------------------------------------
def postgres_bindir() -> Path:
    """The PostgreSQL server binaries: ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin`` (Debian's layout)."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        bindir = Path(done.stdout.strip())
        if done.returncode == 0 and (bindir / "initdb").exists():
            return bindir
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("the TLS tests need PostgreSQL's server binaries (initdb, postgres): none found")
    return Path(found[-1]).parent


class TlsPostgres:
    """A throwaway PostgreSQL cluster that accepts TCP connections over TLS
    only; with ``tls=False``, one without TLS at all (``ssl = off``)."""

    def __init__(self, certs: Certificates, *, tls: bool = True) -> None:
        self.certs, self.tls = certs, tls
        self.bindir = postgres_bindir()
        # Not under pytest's tmp dirs: those are private to root, and the
        # server runs as the postgres user.
        self.base = Path(tempfile.mkdtemp(prefix="smg-pg-tls-"))
        self.data, self.sockets = self.base / "data", self.base / "sockets"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    @property
    def log(self) -> Path:
        return self.base / "postgres.log"

    def url(self, host: str = "127.0.0.1", **query: str) -> str:
        """A URL for the tests' TCP connections, as the ``postgres`` role."""
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql://postgres@{host}:{self.port}/postgres" + (f"?{params}" if params else "")

    def admin_dsn(self) -> str:
        """The Unix socket: for the tests' own set-up and checks."""
        return f"host={self.sockets} port={self.port} user=postgres dbname=postgres"

    def _as_server_user(self) -> dict:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def _own(self, *paths: Path) -> None:
        if self.user is not None:
            for path in paths:
                os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def start(self) -> TlsPostgres:
        try:
            self.sockets.mkdir()
            cert, key = self.base / "server.pem", self.base / "server.key"
            shutil.copyfile(self.certs.server, cert)
            shutil.copyfile(self.certs.server_key, key)
            key.chmod(0o600)  # the server refuses a key others can read
            self._own(self.base, self.sockets, cert, key)
            initdb = subprocess.run(
                [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync"]
                + ["-E", "UTF8", "--locale=C"],
                capture_output=True,
                text=True,
                timeout=120,
                **self._as_server_user(),
            )
            if initdb.returncode != 0:
                raise RuntimeError(f"initdb failed: {initdb.stdout[-400:]} {initdb.stderr[-800:]}")
            hba = self.data / "pg_hba.conf"
            tcp = "hostssl" if self.tls else "host"
            hba.write_text(
                "# the Unix socket is for the tests' admin connection\n"
                "local all all trust\n"
                f"{tcp} all all 127.0.0.1/32 trust\n"
                f"{tcp} all all ::1/128 trust\n"
            )
            self._own(hba)
            with self.log.open("wb") as out:
                self.process = subprocess.Popen(
                    [
                        str(self.bindir / "postgres"),
                        "-D", str(self.data),
                        "-p", str(self.port),
                        "-k", str(self.sockets),
                        "-c", "listen_addresses=127.0.0.1",
                        "-c", f"ssl={'on' if self.tls else 'off'}",
                        "-c", f"ssl_cert_file={cert}",
                        "-c", f"ssl_key_file={key}",
                        "-c", "fsync=off",
                        "-c", "max_connections=40",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                    **self._as_server_user(),
                )  # fmt: skip
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        import psycopg2

        deadline = time.monotonic() + 60
        while True:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"the test PostgreSQL did not start: {' | '.join(_tail(self.log).splitlines())}")
            try:
                psycopg2.connect(self.admin_dsn(), connect_timeout=2).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the test PostgreSQL did not answer: {' | '.join(_tail(self.log).splitlines())}"
                    ) from None
                time.sleep(0.05)

    def execute(self, sql: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.admin_dsn())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        shutil.rmtree(self.base, ignore_errors=True)


# -- a server that never speaks ----------------------------------------------
class SilentListener:
    """Accepts TCP connections on a loopback port and never sends a byte: a
    TLS handshake (or PostgreSQL's SSLRequest) against it waits for ever
    unless the client's own timeout ends it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self.listener.close()
        for conn in self.accepted:
            conn.close()


def _tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-8:]) + "\n"
    except OSError:
        return ""
