"""PostgreSQL's two append paths against the memory backend, over generated
batches: the one driver statement that a batch of new items takes
(``_append_statement``) and the general transaction (``_append``) that
references, hooked engines, SQLite and Oracle take. Both must store, number
and refuse exactly as the reference does: a batch of 1 to 20 items whose IDs
may repeat within it, be in the conversation already, belong to another of
the owner's conversations or to another owner, or be references; with
invalid items mixed in, which the store refuses before any backend sees
them."""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_smg_history import HistoryError, get_state

from ..support.apps import build_app
from ..support.backends_sql import postgres

#: A small pool, so that generated batches collide with each other and
#: with what earlier batches stored.
IDS = [f"msg_p{n}" for n in range(6)]
ITEM = st.one_of(
    st.builds(lambda i, text: {"id": i, "role": "user", "content": text}, st.sampled_from(IDS), st.text(max_size=8)),
    st.builds(lambda text: {"role": "assistant", "content": text}, st.text(max_size=8)),
    st.builds(lambda i: {"type": "item_reference", "id": i}, st.sampled_from(IDS)),
    st.just({"role": "robot", "content": "invalid"}),
)
#: One step: a batch for conversation 0 or 1 of alice, or for bob's.
STEP = st.tuples(st.sampled_from(["alice:0", "alice:1", "bob:0"]), st.lists(ITEM, min_size=1, max_size=20))


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Alice's and Bob's stores on memory (the reference), PostgreSQL's fast
    path and PostgreSQL forced onto the general path."""
    with ExitStack() as stack:
        out: dict[str, Any] = {}
        for name in ("memory", "fast", "general"):
            if name == "memory":
                app = build_app({"SMG_HISTORY_BACKEND": "memory"})
            else:
                app = build_app(stack.enter_context(postgres(tmp_path_factory.mktemp(name))))
                stack.callback(get_state(app).backend.close)
            if name == "general":
                get_state(app).backend._append_sql = None
            out[name] = {owner: get_state(app).store_for(owner) for owner in ("alice", "bob")}
        yield out


def shown(item: Any) -> tuple[Any, ...]:
    """An item as compared: a minted ID (random on each store) as "minted",
    the payload's keys sorted (PostgreSQL's jsonb keeps no key order)."""
    minted = item.id not in IDS
    payload = {**item.payload, "id": "minted"} if minted else item.payload
    return "minted" if minted else item.id, item.position, json.dumps(payload, sort_keys=True)


def outcome(store: Any, conversation_id: str, batch: list[dict[str, Any]]) -> tuple[Any, ...]:
    """What an append did: the items stored or the error, then the
    conversation's whole content either way."""
    try:
        result: tuple[Any, ...] = ("added", [shown(i) for i in store.items.add(conversation_id, batch)])
    except HistoryError as exc:
        result = ("refused", exc.status, exc.code, exc.param, exc.message)
    return result, [shown(i) for i in store.items.list(conversation_id, limit=100, order="asc").data]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=6))
def test_both_postgres_paths_append_and_refuse_as_the_reference(stores, steps):
    conversations = {
        name: {f"{owner}:{n}": by_owner[owner].conversations.create().id for owner in by_owner for n in (0, 1)}
        for name, by_owner in stores.items()
    }
    for target, batch in steps:
        owner = target.split(":")[0]
        # NUL, which the memory backend stores and PostgreSQL refuses (a
        # documented difference): the two paths must still agree, and refuse.
        nul = any("\x00" in str(item.get("content", "")) for item in batch)
        seen = {}
        for name, by_owner in stores.items():
            if name == "memory" and nul:
                continue
            cid = conversations[name][target]
            found = outcome(by_owner[owner], cid, batch)
            seen[name] = repr(found).replace(cid, "<conversation>")
        assert seen["general"] == seen["fast"], (target, batch)
        if nul:
            assert seen["fast"].startswith("(('refused', 400"), (target, batch)
        else:
            assert seen["fast"] == seen["memory"], (target, batch)


NUL = "PostgreSQL cannot store the NUL character (\\u0000) in text; remove it from the request."


@pytest.mark.parametrize("path", ["fast", "general"])
def test_nul_is_refused_only_after_the_reference_s_own_checks(stores, path):
    """Both paths answer a batch with NUL as the memory backend answers it
    while it has a reason of its own to refuse (a missing conversation, an
    ID already there), and with the NUL refusal otherwise; nothing is kept."""
    store, reference = stores[path]["alice"], stores["memory"]["alice"]
    taken = store.items.add(store.conversations.create().id, [{"role": "user", "content": "x"}])[0].id
    reference.items.add(reference.conversations.create().id, [{"id": taken, "role": "user", "content": "x"}])
    conv, reference_conv = store.conversations.create(), reference.conversations.create()
    cases = {
        "missing conversation": ("conv_missing", "conv_missing", [{"role": "user", "content": "a\x00"}]),
        "existing ID": (
            conv.id,
            reference_conv.id,
            [{"role": "user", "content": "a"}, {"id": taken, "content": "\x00"}],
        ),
    }
    for case, (cid, reference_cid, batch) in cases.items():
        batch = [{"role": "user", **item} for item in batch]
        with pytest.raises(HistoryError) as expected:
            reference.items.add(reference_cid, batch)
        with pytest.raises(HistoryError) as got:
            store.items.add(cid, batch)
        assert (got.value.status, got.value.code, got.value.param, got.value.message) == (
            expected.value.status,
            expected.value.code,
            expected.value.param,
            expected.value.message.replace(reference_cid, cid),
        ), case
    with pytest.raises(HistoryError) as got:
        store.items.add(conv.id, [{"role": "user", "content": "fine"}, {"role": "user", "content": "a\x00b"}])
    assert (got.value.status, got.value.message) == (400, NUL)
    assert store.items.list(conv.id).data == []
    assert store.conversations.get(conv.id).updated_at == conv.updated_at


def test_a_batch_of_new_items_is_one_driver_statement(stores, monkeypatch):
    """Without listeners on the engine, 1, 2 and 20 new items are each the
    one driver statement of ``_append_statement``, never the general path; a
    reference takes the general path."""
    store = stores["fast"]["alice"]
    backend = store._backend
    driver, general = [], []
    original_rows, original_append = backend._driver_rows, backend._append
    monkeypatch.setattr(backend, "_driver_rows", lambda *a: driver.append(a[1]) or original_rows(*a))
    monkeypatch.setattr(backend, "_append", lambda *a: general.append(1) or original_append(*a))
    conv = store.conversations.create()
    for size in (1, 2, 20):
        added = store.items.add(conv.id, [{"role": "user", "content": str(n)} for n in range(size)])
        assert len(added) == size
    assert driver == [backend._append_sql] * 3 and general == []
    other = store.conversations.create()
    store.items.add(other.id, [{"type": "item_reference", "id": added[0].id}, {"role": "user", "content": "x"}])
    assert general == [1]
    assert [i.position for i in store.items.list(conv.id, limit=100, order="asc").data] == list(range(23))
    assert [i.id for i in store.items.list(other.id, order="asc").data][0] == added[0].id
