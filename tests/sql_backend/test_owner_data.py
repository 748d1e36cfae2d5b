"""What the contract suite cannot see on SQL: erasure counted in rows, export
memory, a sqlite -> postgres copy through the CLI interrupted and resumed,
NUL on PostgreSQL, and the table-name settings."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from flask_smg_history import (
    ConfigError,
    Conversation,
    HistoryStore,
    InvalidRequest,
    Item,
    Response,
    SmgHistory,
    cli,
    get_state,
)
from flask_smg_history.backends.sql.backend import NulRefused

from ..contract.test_owner_data import _fill
from ..support import backends
from ..support.backends_sql import POSTGRES_URL, postgres_schema
from ..support.errors import raises

SQL = ("sqlite", "postgres", "oracle")


@pytest.fixture(params=[name for name in backends.selected() if name in SQL])
def backend_name(request) -> str:
    return request.param


def _store(app, owner):
    return get_state(app).store_for(owner)


def _rows_by_owner(backend) -> dict[str, dict[str, int]]:
    """Rows per table per owner, straight from the tables (feedback also
    counted by the owner of its response)."""
    t = backend.tables
    out: dict[str, dict[str, int]] = {}
    with backend.engine.connect() as conn:
        for table in (t.conversations, t.items, t.links, t.responses, t.feedback):
            for owner, count in conn.execute(sa.select(table.c.owner, sa.func.count()).group_by(table.c.owner)):
                out.setdefault(owner, {})[table.name] = count
        on_responses = sa.select(t.responses.c.owner, sa.func.count()).join_from(
            t.feedback, t.responses, t.responses.c.id == t.feedback.c.response_id
        )
        for owner, count in conn.execute(on_responses.group_by(t.responses.c.owner)):
            out.setdefault(owner, {})["feedback on their responses"] = count
    return out


def test_erasure_leaves_no_row_of_the_owner_and_touches_no_other(app):
    alice, bob = _store(app, "alice"), _store(app, "bob")
    convs = _fill(alice)
    shared = alice.items.list(convs[0].id).data[0]
    alice.items.add(convs[1].id, [{"type": "item_reference", "id": shared.id}])
    _fill(bob, n_conv=2)
    backend = get_state(app).backend
    before = _rows_by_owner(backend)
    assert before["alice"]["smg_history_conv_items"] == 13 and before["alice"]["smg_history_items"] == 12

    assert alice.erase_owner() == {"conversations": 3, "items": 12, "responses": 3, "feedback": 3}
    after = _rows_by_owner(backend)
    assert "alice" not in after
    assert after == {"bob": before["bob"]}


def test_export_memory_stays_flat(app):
    """Peak memory while exporting 20,000 items is about that of 2,000: the
    export holds one batch, never the whole history."""
    backend = get_state(app).backend

    def peak_for(n_items: int, owner: str) -> int:
        conv = Conversation(f"conv_{owner}", owner, 1.0, 1.0, {})
        items = (
            Item(
                f"msg_{owner}_{n}", conv.id, "message", {"role": "user", "content": "x" * 200}, 2.0 + n, "user", None, n
            )
            for n in range(n_items)
        )
        responses = (Response(f"resp_{owner}_{n}", owner, 3.0 + n, model="m") for n in range(n_items // 10))
        backend.import_records([conv])
        batch: list = []
        for record in (*items, *responses):
            batch.append(record)
            if len(batch) == 2000:
                backend.import_records(batch)
                batch = []
        backend.import_records(batch)
        tracemalloc.start()
        try:
            count = sum(1 for _ in backend.export(owner, None))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert count == 1 + n_items + n_items // 10

    small, large = peak_for(2_000, "small"), peak_for(20_000, "large")
    assert large < small * 1.5, (small, large)


def test_nul_in_text_is_a_400_on_postgres(app):
    if get_state(app).backend.engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores NUL")
    alice = _store(app, "alice")
    conv = alice.conversations.create(items=[{"role": "user", "content": "ok"}])
    nul = "PostgreSQL cannot store the NUL character (\\u0000) in text; remove it from the request."
    with raises(NulRefused, message=nul, param=None):  # an InvalidRequest
        alice.items.add(conv.id, [{"role": "user", "content": "a\x00b"}, {"role": "user", "content": "c"}])
    with raises(NulRefused, message=nul, param=None):
        alice.conversations.create(metadata={"k": "a\x00b"})
    assert len(alice.items.list(conv.id).data) == 1 and len(alice.conversations.list().data) == 1


PREFIX_RULE = "use letters, digits and _ only, at most 15 characters (table names must fit Oracle's 30)."
SCHEMA_RULE = "use letters, digits and _ only, at most 30 characters."


@pytest.mark.parametrize(
    ("config", "param", "rule"),
    [
        ({"SMG_HISTORY_TABLE_PREFIX": "my-app_"}, "SMG_HISTORY_TABLE_PREFIX", PREFIX_RULE),
        ({"SMG_HISTORY_TABLE_PREFIX": "p" * 16}, "SMG_HISTORY_TABLE_PREFIX", PREFIX_RULE),
        ({"SMG_HISTORY_TABLE_PREFIX": "x; DROP TABLE y; --"}, "SMG_HISTORY_TABLE_PREFIX", PREFIX_RULE),
        ({"SMG_HISTORY_SQL_SCHEMA": "a.b"}, "SMG_HISTORY_SQL_SCHEMA", SCHEMA_RULE),
        ({"SMG_HISTORY_SQL_SCHEMA": "s" * 31}, "SMG_HISTORY_SQL_SCHEMA", SCHEMA_RULE),
    ],
)
def test_bad_table_names_fail_at_init_app(tmp_path: Path, config, param, rule):
    app = Flask("names")
    app.config.update(SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_SQLITE_PATH=str(tmp_path / "h.db"), **config)
    with raises(ConfigError, message=f"{param}={config[param]!r} is not valid: {rule}", param=param):
        SmgHistory(app)


def test_prefix_names_every_table_index_and_version_table(tmp_path: Path):
    app = Flask("prefixed")
    app.config.update(
        SMG_HISTORY_BACKEND="sqlite",
        SMG_HISTORY_SQLITE_PATH=str(tmp_path / "h.db"),
        SMG_HISTORY_TABLE_PREFIX="p" * 15,
        SMG_HISTORY_CREATE_TABLES=True,
    )
    SmgHistory(app)
    backend = get_state(app).backend
    conv = _store(app, "alice").conversations.create(items=[{"role": "user", "content": "x"}])
    assert len(_store(app, "alice").items.list(conv.id).data) == 1
    inspector = sa.inspect(backend.engine)
    names = inspector.get_table_names()
    names += [i["name"] for table in inspector.get_table_names() for i in inspector.get_indexes(table)]
    assert all(name.startswith("p" * 15) for name in names), names
    assert "p" * 15 + "alembic_version" in names and max(map(len, names)) == 30
    backend.close()


def test_copy_sqlite_to_postgres_interrupted_resumed_and_verified(tmp_path: Path, monkeypatch):
    if "postgres" not in backends.selected() or "sqlite" not in backends.selected():
        pytest.skip("needs the sqlite and postgres backends")
    with backends.FACTORIES["sqlite"](tmp_path) as config:
        app = Flask("source", instance_path=str(tmp_path / "instance"))
        app.config.update(config)
        SmgHistory(app)
        alice = _store(app, "alice")
        convs = _fill(alice, n_conv=4, n_items=6)
        alice.items.add(convs[2].id, [{"type": "item_reference", "id": alice.items.list(convs[0].id).data[0].id}])
        _fill(_store(app, "bob"), n_conv=2, n_items=3)
        source = get_state(app).backend
        real_target = cli._target_backend
        targets = []

        def crashing_target(name, url, settings):
            """The real PostgreSQL target; on the first run its third batch
            fails, as a lost connection would."""
            target = real_target(name, url, settings)
            targets.append(target)
            first_run, calls, original = len(targets) == 1, [], target.import_records

            def import_records(records):
                calls.append(1)
                if first_run and len(calls) == 3:
                    raise ConnectionError("target went away")
                return original(records)

            target.import_records = import_records
            return target

        monkeypatch.setattr(cli, "_target_backend", crashing_target)
        with postgres_schema() as schema:
            checkpoint = tmp_path / "copy.json"
            args = ["smg-history", "copy", "--to-backend", "postgres", "--to-url", POSTGRES_URL]
            args += ["--set", f"SMG_HISTORY_SQL_SCHEMA={schema}", "--checkpoint", str(checkpoint), "--batch-size", "7"]
            runner = app.test_cli_runner()
            first = runner.invoke(args=args)
            assert first.exit_code != 0 and "copy stopped after 14 records" in first.output
            assert json.loads(checkpoint.read_text()) == {"copied": 14}
            second = runner.invoke(args=args)
            assert second.exit_code == 0, second.output
            assert "resuming after 14 records" in second.stderr and "verified: counts match" in second.output
            assert not checkpoint.exists()

            target = targets[-1].__class__("postgres", targets[-1].settings, app)
            try:
                assert list(target.export(None, None)) == list(source.export(None, None))
                with target.engine.connect() as conn:  # the copy left planner statistics behind
                    links = conn.execute(sa.select(sa.func.count()).select_from(target.tables.links)).scalar()
                    estimated = conn.exec_driver_sql(
                        "SELECT reltuples FROM pg_class WHERE oid = %(t)s::regclass",
                        {"t": f"{schema}.{target.tables.links.name}"},
                    ).scalar()
                assert links == 4 * 6 + 1 + 2 * 3 and estimated == links
                moved = HistoryStore("alice", target, target.settings)
                added = moved.items.add(convs[0].id, [{"role": "user", "content": "after the copy"}])
                assert added[0].position == 6  # after the copied positions
                assert [i.id for i in target.recent_items("alice", convs[0].id, 1)] == [added[0].id]
            finally:
                for backend in (target, *targets):
                    backend.close()
        source.close()


def test_import_refuses_a_response_id_another_owner_holds(app):
    backend = get_state(app).backend
    theirs = _store(app, "bob").responses.store({"model": "m", "input": "bob's"})
    conv = Conversation("conv_imported", "alice", 1.0, 1.0)
    batch = [conv, Response("resp_new", "alice", 2.0), Response(theirs.id, "alice", 3.0, model="stolen")]
    with raises(InvalidRequest, message=f"Response id '{theirs.id}' is not available.", param="id"):
        backend.import_records(batch)
    assert _store(app, "bob").responses.get(theirs.id).model == "m"
    assert list(backend.export("alice", None)) == []  # the whole batch rolled back
    assert backend.import_records(batch[:2]) == {"conversations": 1, "items": 0, "responses": 1, "feedback": 0}


def test_purge_in_batches_keeps_items_linked_from_kept_conversations(app, monkeypatch):
    from flask_smg_history.backends.sql import admin as sql_admin

    monkeypatch.setattr(sql_admin, "PURGE_BATCH", 3)  # seven old conversations: three batches
    alice = _store(app, "alice")
    old = [alice.conversations.create(items=[{"role": "user", "content": str(n)}]) for n in range(7)]
    shared = alice.items.list(old[0].id).data[0]
    time.sleep(0.05)
    cutoff = time.time()
    kept = alice.conversations.create(items=[{"type": "item_reference", "id": shared.id}])
    backend = get_state(app).backend
    preview = backend.purge(before=cutoff, dry_run=True)
    assert preview == {"conversations": 7, "items": 6, "responses": 0, "feedback": 0}
    assert backend.purge(before=cutoff, dry_run=False) == preview
    assert [c.id for c in alice.conversations.list().data] == [kept.id]
    assert alice.items.get(kept.id, shared.id).payload == shared.payload
    assert _rows_by_owner(backend)["alice"] == {
        "smg_history_conversations": 1,
        "smg_history_items": 1,
        "smg_history_conv_items": 1,
    }


def test_import_leaves_planner_statistics_behind(tmp_path: Path):
    """``flask smg-history import`` ends with ANALYZE, so the first queries
    after a bulk load are planned on the rows that are there."""
    if "postgres" not in backends.selected():
        pytest.skip("needs the postgres backend")
    source = Flask("memory_source")
    SmgHistory(source)
    _fill(_store(source, "alice"), n_conv=3, n_items=5)
    dump = tmp_path / "dump.jsonl"
    exported = source.test_cli_runner().invoke(args=["smg-history", "export", "-o", str(dump)])
    assert exported.exit_code == 0, exported.output
    with backends.FACTORIES["postgres"](tmp_path) as config:
        app = Flask("target", instance_path=str(tmp_path / "instance"))
        app.config.update(config)
        SmgHistory(app)
        backend = get_state(app).backend

        def estimates() -> dict[str, float]:
            with backend.engine.connect() as conn:
                return {
                    table.name: conn.exec_driver_sql(
                        "SELECT reltuples FROM pg_class WHERE oid = %(t)s::regclass", {"t": table.fullname}
                    ).scalar()
                    for table in backend.tables.metadata.tables.values()
                }

        assert estimates()[backend.tables.links.name] < 15  # never analyzed (-1), or empty (0)
        imported = app.test_cli_runner().invoke(args=["smg-history", "import", str(dump)])
        assert imported.exit_code == 0, imported.output
        after = estimates()
        assert after[backend.tables.links.name] == 15 and after[backend.tables.conversations.name] == 3
        backend.close()
