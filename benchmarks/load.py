"""Load and faults: gunicorn with several workers, 32 concurrent clients.

    .venv/bin/python -m benchmarks.load --backend postgres [--seconds 60] [--restart-at 20]
    .venv/bin/python -m benchmarks.load --backend redis --compare [--seconds 120]
    .venv/bin/python -m benchmarks.load --backend postgres --cache [--seconds 60] [--reads-per-write 9]

Half the requests add one item to one of 64 conversations, half list a page of
20 items (``--reads-per-write N``: N lists per add). It prints requests per second and p50/p99 latency per operation,
counts errors by status, and afterwards reads every conversation back to check
that every accepted item is there exactly once (no lost and no duplicated
writes). With ``--restart-at S`` the database is restarted S seconds in:
PostgreSQL with ``pg_ctlcluster ... restart`` (the machine's server: run it
when nothing else uses it), Redis by killing and restarting the server this
script starts for itself (port 6390, append-only file fsynced on every write,
so what Redis accepted survives). Requests during the outage should be 503s,
none should hang beyond the timeouts, and the service should recover by itself.

With ``--compare`` a second gunicorn, with the same settings, serves the
hand-written Flask views of ``benchmarks/naive_app.py`` (same routes, the bare
driver) on the same database, and the clients load the two in turn, in
``--phases`` alternating slices of the run, so a busy moment of the machine
falls on both; it prints both and the ratio of requests per second.

With ``--cache`` (PostgreSQL only) the second gunicorn serves the extension
too, with ``SMG_HISTORY_BACKEND=postgres+redis`` on the same tables and a
Redis of the script's own (port 6390, nothing on disk: a cache), each target
on conversations of its own (a write by the SQL-only app would not invalidate
the cache), loaded in alternating slices as with ``--compare``.

On PostgreSQL a run has a database of its own (``benchmarks/pgstat.py``), and
the alternating runs (``--compare``, ``--cache``) also print what PostgreSQL
did for each target, from that database's ``pg_stat_database``: transactions
per second, and rows fetched and pages touched per request. To attribute that
work exactly, the clients pause for ``IDLE_FLUSH`` (10.5 s) whenever the
target changes, and at the start and the end: PostgreSQL has then published
every server process's counters (it does within 10 s of a process going
idle), so each reading holds the work of the slices since the last one, of one
target only. The pauses are not counted in the requests per second.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from benchmarks.pgstat import RunDatabase, Work

ROOT = Path(__file__).resolve().parents[1]
REDIS_PORT = 6390
KEY = "sk-load"
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def start_redis(workdir: Path, durable: bool = True) -> subprocess.Popen:
    """The script's own redis-server: as a store, every write fsynced to its
    append-only file; as a cache (``durable=False``), nothing on disk."""
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
    proc = subprocess.Popen(
        ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--dir", str(workdir), *persistence]
        + ["--save", ""],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(50):
        if subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "ping"], capture_output=True).returncode == 0:
            return proc
        time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(conn: http.client.HTTPConnection, method: str, path: str, body: dict | None = None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=HEADERS)
    response = conn.getresponse()
    return response.status, response.read()


def gunicorn(app: str, port: int, env: dict[str, str], workers: int) -> subprocess.Popen:
    """The same gunicorn settings for every app served."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(workers),
            "--threads",
            "8",
            "-b",
            f"127.0.0.1:{port}",
            "--timeout",
            "30",
            "--log-level",
            "warning",
            app,
        ],
        cwd=ROOT,
        env=env,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Load and fault run against gunicorn.")
    parser.add_argument("--backend", choices=("postgres", "redis"), required=True)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--restart-at", type=float, help="Restart the database this many seconds in.")
    parser.add_argument("--compare", action="store_true", help="Also serve benchmarks/naive_app.py and compare.")
    parser.add_argument("--cache", action="store_true", help="Also serve postgres+redis and compare.")
    parser.add_argument("--phases", type=int, default=6, help="Alternating slices of a --compare or --cache run.")
    parser.add_argument("--reads-per-write", type=int, default=1, help="List requests per add request.")
    args = parser.parse_args()
    if (args.compare or args.cache) and args.restart_at is not None:
        parser.error("--restart-at runs against the extension alone")
    if args.compare and args.cache:
        parser.error("--compare and --cache are two different runs")
    if args.cache and args.backend != "postgres":
        parser.error("--cache puts Redis in front of PostgreSQL: use it with --backend postgres")

    workdir = Path(tempfile.mkdtemp(prefix="smg-load-"))
    env = {**os.environ, "SMG_HISTORY_BACKEND": args.backend, "SMG_HISTORY_API_KEYS": f"{KEY}=load"}
    naive_env = {**os.environ, "NAIVE_BACKEND": args.backend, "NAIVE_API_KEY": KEY}
    redis_proc = db = None
    prefix = f"load{os.getpid()}_"
    servers: list[subprocess.Popen] = []
    try:
        if args.backend == "postgres":
            db = RunDatabase(PG_URL)
            env |= {
                "SMG_HISTORY_POSTGRES_DB_URL": f"{db.url}?connect_timeout=3",
                "SMG_HISTORY_TABLE_PREFIX": prefix,
                "SMG_HISTORY_CREATE_TABLES": "true",
            }
            naive_env |= {"NAIVE_POSTGRES_URL": db.url, "NAIVE_TABLE": f"{prefix}naive"}
        if args.backend == "redis" or args.cache:
            redis_proc = start_redis(workdir, durable=not args.cache)
            redis_url = f"redis://127.0.0.1:{REDIS_PORT}/0"
        if args.backend == "redis":
            env |= {"SMG_HISTORY_REDIS_URL": redis_url, "SMG_HISTORY_REDIS_SOCKET_TIMEOUT": "2"}
            naive_env |= {"NAIVE_REDIS_URL": redis_url, "NAIVE_KEY_PREFIX": f"{prefix}naive:"}
        targets = {"ours": free_port()}
        servers.append(gunicorn("benchmarks.load_app:create()", targets["ours"], env, args.workers))
        if args.compare:
            if db is not None:
                create_naive_table(db.url, f"{prefix}naive")
            targets["hand-written"] = free_port()
            servers.append(gunicorn("benchmarks.naive_app:create()", targets["hand-written"], naive_env, args.workers))
        if args.cache:
            # Started once the first has created the tables, so the two do not race to.
            Load(targets["ours"]).wait_until_serving()
            cached = env | {"SMG_HISTORY_BACKEND": "postgres+redis", "SMG_HISTORY_REDIS_URL": redis_url}
            targets = {"postgres": targets.pop("ours"), "postgres+redis": free_port()}
            servers.append(gunicorn("benchmarks.load_app:create()", targets["postgres+redis"], cached, args.workers))
        if args.compare or args.cache:
            compare(args, targets, db)
        else:
            run(args, targets["ours"], redis_proc, workdir)
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
            server.wait(15)
        if redis_proc is not None:
            redis_proc.kill()
        if db is not None:
            db.drop()
        shutil.rmtree(workdir, ignore_errors=True)


#: The PostgreSQL server (a superuser: the run creates and drops its database).
PG_URL = "postgresql://root@127.0.0.1:5432/test"


def create_naive_table(url: str, table: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.begin() as connection:
        connection.execute(
            sa.text(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, conversation_id text NOT NULL, message jsonb)")
        )
        connection.execute(sa.text(f"CREATE INDEX ON {table} (conversation_id, id)"))
    engine.dispose()


class Load:
    """One target's requests: latencies, statuses and accepted item IDs,
    accumulated over the slices of the run it was loaded in."""

    def __init__(self, port: int, reads_per_write: int = 1) -> None:
        self.port = port
        self.reads_per_write = reads_per_write
        self.latencies: dict[str, list[float]] = {"create-item": [], "list-items": []}
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.accepted: dict[str, list[str]] = {}
        self.longest = 0.0
        self.seconds = 0.0
        self.lock = threading.Lock()

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def wait_until_serving(self) -> http.client.HTTPConnection:
        conn = self.connect()
        for _ in range(100):
            try:
                request(conn, "GET", "/v1/conversations/none/items")
                break
            except OSError:
                time.sleep(0.2)
                conn = self.connect()
        return conn

    def start(self) -> None:
        conn = self.wait_until_serving()
        for _ in range(64):
            self.accepted[json.loads(request(conn, "POST", "/v1/conversations", {})[1])["id"]] = []

    def drive(self, seconds: float, concurrency: int, fault: threading.Thread | None = None) -> None:
        """``concurrency`` clients on keep-alive connections for ``seconds``."""
        conversations = list(self.accepted)
        deadline = time.monotonic() + seconds

        def client(n: int) -> None:
            c = self.connect()
            k = n
            while time.monotonic() < deadline:
                cid = conversations[k % len(conversations)]
                op = "create-item" if k % (self.reads_per_write + 1) == 0 else "list-items"
                k += 1
                started = time.perf_counter()
                try:
                    if op == "create-item":
                        body = {"items": [{"role": "user", "content": f"load {n}:{k}"}]}
                        status, raw = request(c, "POST", f"/v1/conversations/{cid}/items", body)
                    else:
                        status, raw = request(c, "GET", f"/v1/conversations/{cid}/items?limit=20")
                except (OSError, http.client.HTTPException):
                    status, raw = 0, b""
                    c.close()
                    c = self.connect()
                elapsed = time.perf_counter() - started
                with self.lock:
                    self.latencies[op].append(elapsed)
                    self.statuses[(op, status)] += 1
                    self.longest = max(self.longest, elapsed)
                    if op == "create-item" and status == 200:
                        self.accepted[cid].append(json.loads(raw)["data"][0]["id"])

        threads = [threading.Thread(target=client, args=(n,)) for n in range(concurrency)]
        if fault is not None:
            threads.append(fault)
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.seconds += time.monotonic() - started

    def rates(self) -> dict[str, float]:
        return {op: len(values) / self.seconds for op, values in self.latencies.items()}

    def report(self, name: str) -> None:
        for op, values in self.latencies.items():
            ok = self.statuses[(op, 200)]
            values.sort()
            p50 = statistics.median(values) * 1000
            p99 = values[int(len(values) * 0.99) - 1] * 1000
            rate = len(values) / self.seconds
            print(f"{name:14} {op:12} {rate:8.0f} req/s  ok={ok}  p50={p50:.1f} ms  p99={p99:.1f} ms")
        errors = {f"{op} {status}": n for (op, status), n in sorted(self.statuses.items()) if status != 200}
        print(f"{name:14} errors: {errors or 'none'}   longest request: {self.longest * 1000:.0f} ms")

    def check(self, name: str) -> None:
        """Read every conversation back: every accepted item once."""
        lost = duplicated = stored_total = 0
        conn = self.connect()
        for cid, ids in self.accepted.items():
            seen, after = [], None
            while True:
                query = f"/v1/conversations/{cid}/items?limit=100&order=asc" + (f"&after={after}" if after else "")
                status, body = request(conn, "GET", query)
                if status != 200:
                    raise SystemExit(f"reading {cid} back from {name} failed: {status} {body[:300]!r}")
                page = json.loads(body)
                seen += [item["id"] for item in page["data"]]
                if not page["has_more"]:
                    break
                after = page["last_id"]
            stored_total += len(seen)
            duplicated += len(seen) - len(set(seen))
            lost += len(set(ids) - set(seen))
        accepted = sum(map(len, self.accepted.values()))
        print(f"{name:14} accepted items: {accepted}  stored: {stored_total}  lost: {lost}  duplicated: {duplicated}")


def run(args, port: int, redis_proc, workdir: Path) -> None:
    load = Load(port)
    load.start()

    def fault() -> None:
        time.sleep(args.restart_at)
        print(f"[{args.restart_at:.0f}s] restarting {args.backend}", flush=True)
        if args.backend == "postgres":
            restart_postgres()
        else:
            redis_proc.kill()
            redis_proc.wait()
            time.sleep(2)
            redis_proc.__dict__.update(start_redis(workdir).__dict__)
        print(f"[{args.restart_at:.0f}s+] {args.backend} is back", flush=True)

    load.drive(args.seconds, args.concurrency, threading.Thread(target=fault) if args.restart_at is not None else None)
    print(f"backend={args.backend} workers={args.workers} concurrency={args.concurrency} seconds={load.seconds:.1f}")
    load.report("ours")
    load.check("ours")


def compare(args, targets: dict[str, int], db: RunDatabase | None) -> None:
    """Load the targets in turn, in ``--phases`` alternating slices; on
    PostgreSQL, read what the server did for each (see the module's
    docstring for why the clients pause when the target changes)."""
    loads = {name: Load(port, args.reads_per_write) for name, port in targets.items()}
    for load in loads.values():
        load.start()
    work = dict.fromkeys(loads, Work(0, 0, 0, 0))
    last = db.settle() if db is not None else None
    previous = None
    for phase in range(args.phases):
        order = list(loads.items()) if phase % 2 == 0 else list(reversed(loads.items()))
        for name, load in order:
            if db is not None and previous not in (None, name):
                now = db.settle()
                work[previous], last = work[previous] + (now - last), now
            load.drive(args.seconds / args.phases / len(loads), args.concurrency)
            previous = name
    if db is not None:
        work[previous] += db.settle() - last
    first, second = loads
    print(
        f"backend={args.backend} workers={args.workers} threads=8 concurrency={args.concurrency} "
        f"reads per write={args.reads_per_write} phases={args.phases} seconds per target={loads[first].seconds:.1f}"
    )
    for name, load in loads.items():
        load.report(name)
    # ours / hand-written; postgres+redis / postgres
    num, den = (first, second) if args.compare else (second, first)
    target = " (target >= 0.8)" if args.compare else ""
    for op, rate in loads[num].rates().items():
        print(f"{num} / {den}, {op}: {rate / loads[den].rates()[op]:.2f}x the requests per second{target}")
    if db is not None:
        per_request = {}
        for name, load in loads.items():
            done, did = sum(map(len, load.latencies.values())), work[name]
            per_request[name] = (did.transactions / done, did.rows_fetched / done, did.blocks_hit / done)
            print(
                f"{name:14} PostgreSQL: {did.transactions / load.seconds:8.0f} transactions/s  "
                f"per request: {per_request[name][0]:.2f} transactions, {per_request[name][1]:.1f} rows fetched, "
                f"{per_request[name][2]:.1f} pages hit"
            )
        a, b = per_request[num], per_request[den]
        print(
            f"{num} / {den}, per request: {a[0] / b[0]:.2f}x the transactions, {a[1] / b[1]:.2f}x the rows "
            f"fetched, {a[2] / b[2]:.2f}x the pages hit"
        )
    for name, load in loads.items():
        load.check(name)


if __name__ == "__main__":
    main()
