"""Three processes of four threads each append to one conversation in one
folder at once: one total order, nothing lost, nothing duplicated, every
batch contiguous (the per-owner flock at work); and which calls share that
lock and which wait for it."""

from __future__ import annotations

import threading

import pytest
from flask import Flask

from flask_smg_history import SmgHistory, get_state

from ..support.writers import all_items, check_one_order, run_writers


def test_three_processes_of_four_threads_keep_one_order(tmp_path):
    threads, batches = 4, 10
    config = {"SMG_HISTORY_BACKEND": "file", "SMG_HISTORY_FILE_PATH": str(tmp_path / "history")}
    app = Flask("checker", instance_path=str(tmp_path / "instance"))
    app.config.update(config)
    SmgHistory(app)
    store = get_state(app).store_for("alice")
    conv = store.conversations.create()
    run_writers(config, conv.id, "PQR", threads, batches)
    check_one_order(all_items(store, conv.id), "PQR", threads, batches)


#: Each store call, by whether it only reads (it shares the owner's lock
#: with other readers) or writes (it waits until no reader or writer holds it).
READS = {
    "get conversation": lambda s, ids: s.conversations.get(ids["conv"]),
    "list conversations": lambda s, ids: s.conversations.list(),
    "list items": lambda s, ids: s.items.list(ids["conv"]),
    "get item": lambda s, ids: s.items.get(ids["conv"], ids["item"]),
    "recent items": lambda s, ids: s.items.recent(ids["conv"], limit=5),
    "get response": lambda s, ids: s.responses.get(ids["resp"]),
    "list responses": lambda s, ids: s.responses.list(),
    "get feedback": lambda s, ids: s.feedback.get(ids["resp"]),
    "list feedback": lambda s, ids: s.feedback.list(),
    "search": lambda s, ids: s.search("hello"),
    "export": lambda s, ids: list(ids["backend"].export(None, None)),
    "purge preview": lambda s, ids: ids["backend"].purge(before=None, dry_run=True),
}
WRITES = {
    "create conversation": lambda s, ids: s.conversations.create(),
    "update conversation": lambda s, ids: s.conversations.update(ids["conv"], metadata={"k": "v"}),
    "add items": lambda s, ids: s.items.add(ids["conv"], [{"role": "user", "content": "more"}]),
    "delete item": lambda s, ids: s.items.delete(ids["conv"], ids["item"]),
    "store response": lambda s, ids: s.responses.store({"model": "m", "input": "again"}),
    "submit feedback": lambda s, ids: s.feedback.submit(ids["resp"], "negative"),
    "delete feedback": lambda s, ids: s.feedback.delete(ids["resp"]),
    "delete response": lambda s, ids: s.responses.delete(ids["resp"]),
    "delete conversation": lambda s, ids: s.conversations.delete(ids["conv"]),
    "purge": lambda s, ids: ids["backend"].purge(before=None, dry_run=False),
    "erase owner": lambda s, ids: s.erase_owner(),
    "import a record": lambda s, ids: ids["backend"].import_records([s.conversations.get(ids["conv"])]),
    "import items": lambda s, ids: ids["backend"].import_records(s.items.list(ids["conv"]).data),
}


@pytest.mark.parametrize("name", [*READS, *WRITES])
def test_reads_share_the_owner_lock_and_writes_wait_for_it(app, name):
    """With a reader holding the owner's lock (another thread or process),
    a read goes ahead at once and a write waits until it lets go."""
    store = get_state(app).store_for("alice")
    conv = store.conversations.create(items=[{"role": "user", "content": "hello"}])
    resp = store.responses.store({"model": "m", "input": "hi"})
    store.feedback.submit(resp.id, "positive")
    item_id = store.items.list(conv.id).data[0].id
    ids = {"conv": conv.id, "item": item_id, "resp": resp.id, "backend": get_state(app).backend}
    call = {**READS, **WRITES}[name]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call(store, ids)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    worker = threading.Thread(target=run)
    with get_state(app).backend.folder.locked("alice", exclusive=False):
        worker.start()
        worker.join(0.4 if name in WRITES else 10)
        assert worker.is_alive() is (name in WRITES)
    worker.join(10)
    assert not worker.is_alive() and errors == []
