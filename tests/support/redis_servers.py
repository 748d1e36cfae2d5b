"""Throwaway ``redis-server`` processes for the Redis tests: single servers to
kill and restart in fault tests, and a three-master cluster shared by the
whole test session.

Everything binds to loopback ports picked free at start (and, for cluster
nodes, with the bus port ``port + 10000`` free too) and fails loudly (never
skips) when a server will not come up, with the tail of its log in the
message. By default a server keeps nothing on disk (``NO_PERSISTENCE``), so a
restart starts empty; a test that needs persistence says so with one of the
other presets, and its files stay in the server's own (temporary) directory.
"""

from __future__ import annotations

import atexit
import ctypes
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


#: Persistence presets (``RedisServer(..., persistence=...)``): the settings
#: ``flask smg-history check`` tells apart, one per loss window.
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")
RDB_ONLY = ("--save", "3600 1 300 100", "--appendonly", "no")
AOF_NO_FSYNC = ("--save", "", "--appendonly", "yes", "--appendfsync", "no")
AOF_EVERYSEC = ("--save", "", "--appendonly", "yes", "--appendfsync", "everysec")
AOF_ALWAYS = ("--save", "", "--appendonly", "yes", "--appendfsync", "always")


def _die_with_parent() -> None:
    """Run in the child before exec: the kernel kills the server when the test
    process dies, even by a signal that skips ``atexit`` (Linux only)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(with_bus: bool = False) -> int:
    for _ in range(200):
        port = random.randint(20000, 29999)
        if _port_free(port) and (not with_bus or _port_free(port + 10000)):
            return port
    raise RuntimeError("no free loopback port for a test redis-server")


class RedisServer:
    """One ``redis-server`` on a loopback port; ``stop`` (SIGKILL, never a
    clean shutdown) and ``start`` again to simulate an outage or a crash: same
    port and directory, so the data comes back only as far as ``persistence``
    (default ``NO_PERSISTENCE``: empty) keeps it. With ``tls`` (certificate,
    key, CA) it speaks only TLS on that port and has no plain port at all."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *extra: str,
        tls: tuple[Path, Path, Path] | None = None,
        persistence: tuple[str, ...] = NO_PERSISTENCE,
    ) -> None:
        self.directory = directory
        self.port = port or free_port(with_bus=bool(extra))
        self.extra = extra
        self.tls = tls
        self.persistence = persistence
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / f"redis-{self.port}.log"

    @property
    def _output(self) -> Path:
        """stdout and stderr: where redis-server reports a bad command line."""
        return self.directory / f"redis-{self.port}.out"

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        cert, key, ca = self.tls
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(cert),
            "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._output.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    REDIS_SERVER,
                    *self._listen_args(),
                    "--bind", "127.0.0.1",
                    *self.persistence,
                    "--dir", str(self.directory),
                    "--logfile", str(self.log),
                    *self.extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        # Over TLS the probe does not verify: it checks the server is up, the
        # tests check what verification does.
        tls = {"ssl": True, "ssl_cert_reqs": "none"} if self.tls else {}
        client = redis.Redis(
            port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0), **tls
        )
        deadline = time.monotonic() + 10
        ready = False
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} exited: {self._log_tail()}")
                try:
                    client.ping()
                    ready = True
                    return self
                except (redis.AuthenticationError, redis.ResponseError):
                    ready = True
                    return self  # it answers, and wants a password
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"redis-server on port {self.port} did not answer: {self._log_tail()}"
                        ) from None
                    time.sleep(0.02)
        finally:
            client.close()
            if not ready:
                self.stop()  # never leave a half-started server behind

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def _log_tail(self) -> str:
        lines = []
        for path in (self._output, self.log):
            try:
                lines += path.read_text(errors="replace").splitlines()
            except OSError:
                pass
        said = " | ".join(lines[-8:]) or "(no log)"
        if self.tls and "tls" in said.lower() and ("bad directive" in said.lower() or "not built" in said.lower()):
            return f"{REDIS_SERVER} is built without TLS support, which the TLS tests need: {said}"
        return said


class Cluster:
    """Three masters, no replicas, every slot covered."""

    def __init__(self, directory: Path, ports: list[int] | None = None) -> None:
        self.directory = directory
        self.ports = ports
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> Cluster:
        try:
            for port in self.ports or [free_port(with_bus=True) for _ in range(3)]:
                node = RedisServer(
                    self.directory / str(port),
                    port,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    "5000",
                )
                self.nodes.append(node.start())
            created = subprocess.run(
                [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes)]
                + ["--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-800:]} {created.stderr}")
            self.wait_until_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_until_ok(self) -> None:
        deadline = time.monotonic() + 30
        for node in self.nodes:
            client = redis.Redis(port=node.port)
            try:
                while True:
                    info = client.execute_command("CLUSTER", "INFO")
                    info = info.decode() if isinstance(info, bytes) else str(info)
                    if "cluster_state:ok" in info and "cluster_slots_ok:16384" in info:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster did not become ready: {info}")
                    time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


_shared: Cluster | None = None


def shared_cluster() -> Cluster:
    """The session's cluster, started on first use and stopped at exit."""
    global _shared
    if _shared is None:
        _shared = Cluster(Path(tempfile.mkdtemp(prefix="smg-redis-cluster-"))).start()
        atexit.register(_shared.stop)
    return _shared
