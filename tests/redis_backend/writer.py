"""A writer process for the concurrency test: its own app and pool, several
threads appending two-item batches to one conversation."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask

from flask_smg_history import SmgHistory, get_state


def write(config: dict[str, Any], conversation_id: str, name: str, threads: int, batches: int) -> None:
    app = Flask(f"writer_{name}")
    app.config.update(config)
    SmgHistory(app)
    store = get_state(app).store_for("alice")
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            for k in range(batches):
                store.items.add(
                    conversation_id,
                    [
                        {"role": "user", "content": f"{name}.{t}:{k}:a"},
                        {"role": "user", "content": f"{name}.{t}:{k}:b"},
                    ],
                )
        except BaseException as exc:  # reported to the parent through the exit code
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    get_state(app).backend.close()
    if errors:
        raise errors[0]
