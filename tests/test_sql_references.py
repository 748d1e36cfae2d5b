"""Item references under a concurrent writer on PostgreSQL: deleting an item's
last link while another transaction links it elsewhere keeps the item."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest
from flask import Flask

from flask_smg_history import SmgHistory

from .backends_sql import POSTGRES_URL, postgres_schema


@pytest.fixture
def alice():
    with postgres_schema() as schema:
        app = Flask("refs")
        app.config.update(
            SMG_HISTORY_BACKEND="postgres",
            SMG_HISTORY_POSTGRES_DB_URL=POSTGRES_URL,
            SMG_HISTORY_SQL_SCHEMA=schema,
            SMG_HISTORY_CREATE_TABLES=True,
        )
        SmgHistory(app)
        yield app.extensions["smg_history"].extension.store_for("alice", app)
        app.extensions["smg_history"].backend.close()


def test_last_unlink_racing_a_new_link_keeps_the_item(alice):
    first = alice.conversations.create(items=[{"role": "user", "content": "shared"}])
    item = alice.items.list(first.id).data[0]
    second = alice.conversations.create()
    links = alice.backend.tables.links.fullname
    other = psycopg2.connect(POSTGRES_URL)  # links the item, uncommitted: holds its key-share lock
    with other.cursor() as cur:
        cur.execute(
            f"INSERT INTO {links} (conversation_id, position, owner, item_id) VALUES (%s, 0, 'alice', %s)",
            (second.id, item.id),
        )
    errors: list[BaseException] = []

    def delete() -> None:
        try:
            alice.items.delete(first.id, item.id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    deleting = threading.Thread(target=delete)
    deleting.start()
    time.sleep(0.5)
    assert deleting.is_alive()  # waiting for the other transaction's lock on the item
    other.commit()
    other.close()
    deleting.join(10)
    assert errors == []
    assert alice.items.get(second.id, item.id).payload == item.payload
