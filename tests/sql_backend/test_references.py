"""Item references under a concurrent writer on PostgreSQL: deleting an item's
last link while another transaction links it elsewhere keeps the item."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest
import sqlalchemy as sa

from flask_smg_history import get_state

from ..support.apps import build_app
from ..support.backends_sql import POSTGRES_URL, postgres


@pytest.fixture
def pg_app(tmp_path):
    with postgres(tmp_path) as config:
        app = build_app(config)
        yield app
        get_state(app).backend.close()


@pytest.fixture
def alice(pg_app):
    return get_state(pg_app).store_for("alice")


def test_last_unlink_racing_a_new_link_keeps_the_item(pg_app, alice):
    first = alice.conversations.create(items=[{"role": "user", "content": "shared"}])
    item = alice.items.list(first.id).data[0]
    second = alice.conversations.create()
    links = get_state(pg_app).backend.tables.links.fullname
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


def test_threads_linking_and_unlinking_leave_no_dangling_link_or_orphan(pg_app, alice):
    """Eight threads link shared items into one common conversation and their
    own, and unlink them again. Afterwards every link names an item, every item
    is linked, and each conversation's positions are unique."""
    from flask_smg_history import InvalidRequest, NotFound

    base = alice.conversations.create(items=[{"role": "user", "content": f"s{n}"} for n in range(4)])
    shared = [i.id for i in alice.items.list(base.id, order="asc").data]
    common = alice.conversations.create()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        own = alice.conversations.create(items=[{"role": "user", "content": f"own{n}"}])
        for k in range(25):
            target = common.id if k % 3 == 0 else own.id
            item_id = shared[(n + k) % len(shared)]
            try:
                alice.items.add(target, [{"type": "item_reference", "id": item_id}, {"role": "user", "content": "x"}])
                alice.items.delete(target, item_id)
                if k % 5 == 0:
                    alice.items.delete(base.id, item_id)  # may remove its last link
            except (InvalidRequest, NotFound):
                pass  # another thread linked or removed it first: the expected outcomes of the race
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    backend = get_state(pg_app).backend
    t = backend.tables
    with backend.engine.connect() as conn:
        dangling = conn.execute(
            sa.select(sa.func.count())
            .select_from(
                t.links.outerjoin(
                    t.items, sa.and_(t.items.c.owner == t.links.c.owner, t.items.c.id == t.links.c.item_id)
                )
            )
            .where(t.items.c.id.is_(None))
        ).scalar()
        unlinked = conn.execute(
            sa.select(sa.func.count())
            .select_from(t.items)
            .where(~sa.exists().where(t.links.c.owner == t.items.c.owner, t.links.c.item_id == t.items.c.id))
        ).scalar()
        repeated = conn.execute(
            sa.select(t.links.c.conversation_id, t.links.c.position)
            .group_by(t.links.c.conversation_id, t.links.c.position)
            .having(sa.func.count() > 1)
        ).all()
    assert (dangling, unlinked, repeated) == (0, 0, [])
