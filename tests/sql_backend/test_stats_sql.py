"""The usage statistics' SQL, offline: the statements ``usage_stats`` runs
compile for Oracle (and PostgreSQL) with the per-dialect expressions, and
group by exactly the text they select (Oracle compares the two as text)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import oracle, postgresql

from flask_smg_history import get_state
from flask_smg_history.backends.sql.stats import JsonNumber, statements
from flask_smg_history.backends.sql.tables import build_tables

from ..support.backends_sql import sqlite_statements


@pytest.fixture
def run_statements(tmp_path: Path) -> list[sa.Select]:
    """The statements a real ``usage_stats`` call executes (on SQLite), for
    one owner with ``since`` and for the whole store without."""
    with sqlite_statements(tmp_path) as (app, seen):
        get_state(app).backend.usage_stats("alice", since=0.0)
        get_state(app).backend.usage_stats(None, since=None)
    return [s for s in seen if isinstance(s, sa.Select)]


def _oracle(statement: sa.Select) -> str:
    return str(statement.compile(dialect=oracle.dialect()))


def test_every_statistics_query_compiles_for_oracle(run_statements):
    assert len(run_statements) == 8
    sql = [_oracle(s) for s in run_statements]
    for text in sql:
        assert not re.search(r"\bLIMIT\b|\bOFFSET\b|->>|json_extract|jsonb", text), text
    responses = next(text for text in sql if "JSON_VALUE" in text)
    for field in ("input_tokens", "output_tokens", "total_tokens"):
        assert f"sum(JSON_VALUE(smg_history_responses.usage, '$.{field}' RETURNING NUMBER NULL ON ERROR))" in responses
    day = "FLOOR(smg_history_responses.created_at / 86400)"
    select_list, group_by = responses.split("GROUP BY")
    assert day in select_list and group_by.strip() == f"smg_history_responses.model, {day}"


def test_postgres_and_sqlite_spellings():
    tables = build_tables()
    responses = statements(tables, "alice", None, 0.0)[2]
    pg = str(responses.compile(dialect=postgresql.dialect()))
    assert "CAST(FLOOR(smg_history_responses.created_at / 86400) AS BIGINT)" in pg
    assert (
        "CASE WHEN jsonb_typeof(smg_history_responses.usage -> 'input_tokens') = 'number' "
        "THEN CAST(smg_history_responses.usage ->> 'input_tokens' AS NUMERIC) END" in pg
    )
    lite = str(responses.compile(dialect=sa.dialects.sqlite.dialect()))
    assert "CAST(smg_history_responses.created_at / 86400 AS INTEGER)" in lite
    assert "json_type(smg_history_responses.usage, '$.total_tokens') IN ('integer', 'real')" in lite


@pytest.mark.parametrize("field", ["input_tokens'); DROP TABLE x; --", "a.b", "", "Total"])
def test_json_number_takes_only_plain_field_names(field):
    with pytest.raises(ValueError):
        JsonNumber(build_tables().responses.c.usage, field)
