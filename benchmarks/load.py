"""Load and faults: gunicorn with several workers, 32 concurrent clients.

    .venv/bin/python -m benchmarks.load --backend postgres [--seconds 60] [--restart-at 20]

Half the requests add one item to one of 64 conversations, half list a page of
20 items. It prints requests per second and p50/p99 latency per operation,
counts errors by status, and afterwards reads every conversation back to check
that every accepted item is there exactly once (no lost and no duplicated
writes). With ``--restart-at S`` the database is restarted S seconds in:
PostgreSQL with ``pg_ctlcluster ... restart`` (the machine's server: run it
when nothing else uses it), Redis by killing and restarting the server this
script starts for itself (port 6390, append-only file fsynced on every write,
so what Redis accepted survives). Requests during the outage should be 503s,
none should hang beyond the timeouts, and the service should recover by itself.
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

ROOT = Path(__file__).resolve().parents[1]
PORT = 0  # chosen at start-up
REDIS_PORT = 6390
KEY = "sk-load"
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def start_redis(workdir: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(REDIS_PORT),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ],
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


def main() -> None:
    parser = argparse.ArgumentParser(description="Load and fault run against gunicorn.")
    parser.add_argument("--backend", choices=("postgres", "redis"), required=True)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--restart-at", type=float, help="Restart the database this many seconds in.")
    args = parser.parse_args()

    global PORT
    PORT = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="smg-load-"))
    env = {**os.environ, "SMG_HISTORY_BACKEND": args.backend, "SMG_HISTORY_API_KEYS": f"{KEY}=load"}
    redis_proc = None
    prefix = f"load{os.getpid()}_"
    if args.backend == "postgres":
        env |= {
            "SMG_HISTORY_POSTGRES_DB_URL": "postgresql://root@127.0.0.1:5432/test?connect_timeout=3",
            "SMG_HISTORY_TABLE_PREFIX": prefix,
            "SMG_HISTORY_CREATE_TABLES": "true",
        }
    else:
        redis_proc = start_redis(workdir)
        env |= {"SMG_HISTORY_REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0", "SMG_HISTORY_REDIS_SOCKET_TIMEOUT": "2"}
    gunicorn = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(args.workers),
            "--threads",
            "8",
            "-b",
            f"127.0.0.1:{PORT}",
            "--timeout",
            "30",
            "--log-level",
            "warning",
            "benchmarks.load_app:create()",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        run(args, redis_proc, workdir)
    finally:
        gunicorn.send_signal(signal.SIGTERM)
        gunicorn.wait(15)
        if redis_proc is not None:
            redis_proc.kill()
        if args.backend == "postgres":
            drop_tables(prefix)
        shutil.rmtree(workdir, ignore_errors=True)


def drop_tables(prefix: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine("postgresql+psycopg2://root@127.0.0.1:5432/test")
    with engine.begin() as connection:
        for table in ("feedback", "responses", "items", "conversations"):
            connection.execute(sa.text(f'DROP TABLE IF EXISTS "{prefix}{table}" CASCADE'))


def run(args, redis_proc, workdir: Path) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    for _ in range(100):
        try:
            request(conn, "GET", "/v1/history/health")
            break
        except OSError:
            time.sleep(0.2)
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    conversations = [json.loads(request(conn, "POST", "/v1/conversations", {})[1])["id"] for _ in range(64)]

    latencies: dict[str, list[float]] = {"create-item": [], "list-items": []}
    statuses: Counter[tuple[str, int]] = Counter()
    accepted: dict[str, list[str]] = {cid: [] for cid in conversations}
    lock = threading.Lock()
    deadline = time.monotonic() + args.seconds
    longest = [0.0]

    def client(n: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        k = n
        while time.monotonic() < deadline:
            cid = conversations[k % len(conversations)]
            op = "create-item" if k % 2 == 0 else "list-items"
            k += 1
            started = time.perf_counter()
            try:
                if op == "create-item":
                    status, body = request(
                        c,
                        "POST",
                        f"/v1/conversations/{cid}/items",
                        {"items": [{"role": "user", "content": f"load {n}:{k}"}]},
                    )
                else:
                    status, body = request(c, "GET", f"/v1/conversations/{cid}/items?limit=20")
            except (OSError, http.client.HTTPException):
                status, body = 0, b""
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            elapsed = time.perf_counter() - started
            with lock:
                latencies[op].append(elapsed)
                statuses[(op, status)] += 1
                longest[0] = max(longest[0], elapsed)
                if op == "create-item" and status == 200:
                    accepted[cid].append(json.loads(body)["data"][0]["id"])

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

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.concurrency)]
    if args.restart_at is not None:
        threads.append(threading.Thread(target=fault))
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started

    print(f"backend={args.backend} workers={args.workers} concurrency={args.concurrency} seconds={wall:.1f}")
    for op, values in latencies.items():
        ok = statuses[(op, 200)]
        values.sort()
        p50 = statistics.median(values) * 1000
        p99 = values[int(len(values) * 0.99) - 1] * 1000
        print(f"{op:12} {len(values) / wall:8.0f} req/s  ok={ok}  p50={p50:.1f} ms  p99={p99:.1f} ms")
    errors = {f"{op} {status}": n for (op, status), n in sorted(statuses.items()) if status != 200}
    print(f"errors: {errors or 'none'}   longest request: {longest[0] * 1000:.0f} ms")

    lost = duplicated = stored_total = 0
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)  # the first one idled out
    for cid, ids in accepted.items():
        seen, after = [], None
        while True:
            query = f"/v1/conversations/{cid}/items?limit=100&order=asc" + (f"&after={after}" if after else "")
            status, body = request(conn, "GET", query)
            if status != 200:
                raise SystemExit(f"reading {cid} back failed: {status} {body[:300]!r}")
            page = json.loads(body)
            seen += [item["id"] for item in page["data"]]
            if not page["has_more"]:
                break
            after = page["last_id"]
        stored_total += len(seen)
        duplicated += len(seen) - len(set(seen))
        lost += len(set(ids) - set(seen))
    print(
        f"accepted items: {sum(map(len, accepted.values()))}  stored: {stored_total}  lost: {lost}  "
        f"duplicated: {duplicated}"
    )


if __name__ == "__main__":
    main()
