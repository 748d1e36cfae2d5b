"""Two app server processes on one SQL store and one Redis prefix, with
writers and readers on the same conversations through both: every read is
checked against the writes acknowledged before it began."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from ..support.redis_servers import free_port

ROOT = Path(__file__).resolve().parents[2]
HEADERS = {"Authorization": "Bearer sk-a"}
CONVERSATIONS = 4
SECONDS = 4.0


def _start(config: dict, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.hybrid_backend.server", json.dumps(config), str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/_cache", timeout=1)
            return proc
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the app server on port {port} did not start") from None
            time.sleep(0.1)


def test_two_server_processes_never_serve_a_read_older_than_an_acknowledged_write(hybrid_config):
    config = {**hybrid_config, "SMG_HISTORY_API_KEYS": {"sk-a": "alice"}}
    ports = [free_port(), free_port()]
    servers = [_start(config, port) for port in ports]
    try:
        urls = [f"http://127.0.0.1:{port}/v1" for port in ports]
        convs = [
            requests.post(f"{urls[0]}/conversations", json={}, headers=HEADERS, timeout=10).json()["id"]
            for _ in range(CONVERSATIONS)
        ]
        acked_items = [0] * CONVERSATIONS  # items acknowledged, per conversation
        acked_meta = [-1] * CONVERSATIONS  # the last acknowledged metadata "n"
        failures: list[str] = []
        reads = [0]
        stop_at = time.monotonic() + SECONDS

        def write(mine: list[int]) -> None:
            session, k = requests.Session(), 0
            while time.monotonic() < stop_at and not failures:
                for c in mine:
                    url = random.choice(urls)
                    item = {"type": "message", "role": "user", "content": f"{c}-{k}"}
                    done = session.post(
                        f"{url}/conversations/{convs[c]}/items", json={"items": [item]}, headers=HEADERS
                    )
                    if done.status_code != 200:
                        failures.append(f"add: {done.status_code} {done.text}")
                    acked_items[c] = k + 1
                    url = random.choice(urls)
                    done = session.post(
                        f"{url}/conversations/{convs[c]}", json={"metadata": {"n": str(k)}}, headers=HEADERS
                    )
                    if done.status_code != 200:
                        failures.append(f"update: {done.status_code} {done.text}")
                    acked_meta[c] = k
                k += 1
                time.sleep(0.01)

        def read() -> None:
            session = requests.Session()
            while time.monotonic() < stop_at and not failures:
                c, url = random.randrange(CONVERSATIONS), random.choice(urls)
                items_before, meta_before = acked_items[c], acked_meta[c]
                page = session.get(f"{url}/conversations/{convs[c]}/items?order=desc&limit=20", headers=HEADERS).json()
                seen = [int(i["content"][0]["text"].split("-")[1]) for i in page["data"]]
                if items_before and (not seen or seen[0] < items_before - 1):
                    failures.append(f"stale items: newest {seen[:1]} after {items_before} acknowledged")
                if seen != list(range(seen[0], seen[0] - len(seen), -1)) if seen else False:
                    failures.append(f"items out of order: {seen}")
                conv = session.get(f"{url}/conversations/{convs[c]}", headers=HEADERS).json()
                if int(conv["metadata"].get("n", -1)) < meta_before:
                    failures.append(f"stale metadata: {conv['metadata']} after n={meta_before} acknowledged")
                reads[0] += 1

        threads = [
            threading.Thread(target=write, args=([c for c in range(CONVERSATIONS) if c % 2 == w],)) for w in (0, 1)
        ]
        threads += [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert failures == []
        cache = [requests.get(f"http://127.0.0.1:{port}/_cache", timeout=5).json() for port in ports]
        assert reads[0] > 50 and sum(acked_items) > 20
        assert all(c["hits"] > 0 for c in cache), cache  # both processes served reads from Redis
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(10)
