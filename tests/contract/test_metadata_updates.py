"""Contract: metadata updates as patches (SMG's router) by default, replace on
request, on every backend; the merge is atomic in the backend."""

from __future__ import annotations

import re
import threading

import pytest

from flask_smg_history import ConfigError, InvalidRequest, NotFound, get_state

from ..support.errors import raises

FULL = {f"k{n:02d}": f"v{n}" for n in range(16)}


def test_patch_sets_keeps_and_removes(alice):
    conv = alice.conversations.create(metadata={"a": "1", "b": "2", "c": "3"})
    updated = alice.conversations.update(conv.id, {"b": "20", "c": None, "d": "4", "never-there": None})
    assert updated.metadata == {"a": "1", "b": "20", "d": "4"}
    got = alice.conversations.get(conv.id)
    assert got.metadata == {"a": "1", "b": "20", "d": "4"}
    assert got.updated_at >= conv.updated_at and got.created_at == conv.created_at
    assert alice.conversations.update(conv.id, {"a": None, "b": None, "d": None}).metadata == {}
    assert alice.conversations.get(conv.id).metadata == {}


def test_patch_keeps_text_exactly(alice):
    """The merge decodes and re-encodes the stored map (in Lua on Redis):
    non-ASCII, escapes and the longest values survive it."""
    odd = {"émoji": '😀 ü \\u0041 "q" / \\\\', "k" * 64: "v" * 512, "": "empty key"}
    conv = alice.conversations.create(metadata=odd)
    assert alice.conversations.update(conv.id, {"new": "x"}).metadata == {**odd, "new": "x"}
    assert alice.conversations.get(conv.id).metadata == {**odd, "new": "x"}


def test_patch_beyond_sixteen_merged_pairs_writes_nothing(alice):
    conv = alice.conversations.create(metadata=FULL)
    before = alice.conversations.get(conv.id)
    with raises(
        InvalidRequest,
        message=(
            "Invalid 'metadata': the update would leave the conversation with 17 metadata key-value pairs, "
            "more than the 16 allowed; remove keys by setting them to null in the same update."
        ),
        param="metadata",
    ):
        alice.conversations.update(conv.id, {"extra": "x"})
    after = alice.conversations.get(conv.id)
    assert (after.metadata, after.updated_at) == (FULL, before.updated_at)

    swapped = alice.conversations.update(conv.id, {"extra": "x", "k00": None})
    assert len(swapped.metadata) == 16 and swapped.metadata["extra"] == "x" and "k00" not in swapped.metadata
    assert alice.conversations.get(conv.id).metadata == swapped.metadata
    assert alice.conversations.update(conv.id, {"k01": "changed"}).metadata["k01"] == "changed"  # a set, not an add


def test_patch_limits_of_the_patch_itself(alice):
    conv = alice.conversations.create(metadata={"a": "1"})
    for patch, param, reason in (
        # 17 keys set could never fit
        ({f"n{i}": "v" for i in range(17)}, "metadata", "Metadata can have at most 16 key-value pairs, got 17."),
        (
            {f"n{i}": None for i in range(33)},
            "metadata",
            "A metadata patch can name at most 32 keys, set or removed, got 33.",
        ),
        ({"k" * 65: None}, "metadata", f"Metadata keys must be at most 64 characters: '{'k' * 65}'."),
        ({"k": "v" * 513}, "metadata", "Metadata value of 'k' must be at most 512 characters."),
        ({"k": 3}, "metadata.k.value", "Not a valid string."),
        ("not a map", "metadata", "Not a valid mapping type."),
    ):
        with raises(InvalidRequest, message=f"Invalid '{param}': {reason}", param=param):
            alice.conversations.update(conv.id, patch)
    assert alice.conversations.get(conv.id).metadata == {"a": "1"}


def test_one_patch_can_swap_a_full_map(alice):
    """32 keys named, 16 set and 16 removed: the most a patch may name."""
    conv = alice.conversations.create(metadata=FULL)
    swap = {**{f"n{i}": "v" for i in range(16)}, **dict.fromkeys(FULL)}
    assert alice.conversations.update(conv.id, swap).metadata == {f"n{i}": "v" for i in range(16)}


def test_null_or_empty_patch_changes_no_key_but_refreshes_updated_at(alice):
    conv = alice.conversations.create(metadata={"a": "1"})
    first = alice.conversations.update(conv.id, None)
    assert first.metadata == {"a": "1"} and first.updated_at >= conv.updated_at
    second = alice.conversations.update(conv.id, {})
    assert second.metadata == {"a": "1"} and second.updated_at >= first.updated_at
    assert alice.conversations.get(conv.id).metadata == {"a": "1"}


def test_replace_mode_by_setting(make_app):
    app = make_app(SMG_HISTORY_METADATA_UPDATE="replace")
    store = get_state(app).store_for("alice")
    conv = store.conversations.create(metadata={"a": "1", "b": "2"})
    assert store.conversations.update(conv.id, {"c": "3"}).metadata == {"c": "3"}
    assert store.conversations.get(conv.id).metadata == {"c": "3"}
    with raises(InvalidRequest, message="Invalid 'metadata.c.value': Field may not be null.", param="metadata.c.value"):
        store.conversations.update(conv.id, {"c": None})  # null is a patch's removal: not in replace mode
    assert store.conversations.get(conv.id).metadata == {"c": "3"}
    assert store.conversations.update(conv.id, FULL).metadata == FULL  # a full map replaces a full map
    assert store.conversations.update(conv.id, None).metadata == {}
    # and a call can still ask for a patch
    assert store.conversations.update(conv.id, {"x": "1"}, mode="patch").metadata == {"x": "1"}
    assert store.conversations.update(conv.id, {"y": "2"}, mode="patch").metadata == {"x": "1", "y": "2"}


def test_replace_mode_per_call(alice):
    conv = alice.conversations.create(metadata=FULL)
    assert alice.conversations.update(conv.id, {"only": "one"}, mode="replace").metadata == {"only": "one"}
    assert alice.conversations.update(conv.id, {"two": "2"}).metadata == {"only": "one", "two": "2"}


@pytest.mark.parametrize("mode", ["merge", "PATCH", "", 1])
def test_bad_mode_is_refused_before_anything_is_written(alice, mode):
    conv = alice.conversations.create(metadata={"a": "1"})
    with raises(InvalidRequest, message="Invalid 'mode': must be 'patch' or 'replace'.", param="mode"):
        alice.conversations.update(conv.id, {"b": "2"}, mode=mode)
    assert alice.conversations.get(conv.id).metadata == {"a": "1"}


def test_bad_setting_stops_the_app(make_app):
    with raises(
        ConfigError,
        message=re.compile(
            r"SMG_HISTORY_METADATA_UPDATE='merge' is not valid: use 'patch' \(SMG: merge the given keys, null "
            r"removes one\) or 'replace' \(OpenAI\)\. How `POST /conversations/\{id\}` .*"
        ),
        param="SMG_HISTORY_METADATA_UPDATE",
    ):
        make_app(SMG_HISTORY_METADATA_UPDATE="merge")


def test_patch_of_a_missing_or_foreign_conversation(alice, bob):
    conv = alice.conversations.create(metadata={"a": "1"})
    for mode in ("patch", "replace"):
        with raises(NotFound, message=f"Conversation with id '{conv.id}' not found.", param="conversation_id"):
            bob.conversations.update(conv.id, {"b": "2"}, mode=mode)
        with raises(NotFound, message="Conversation with id 'conv_missing' not found.", param="conversation_id"):
            alice.conversations.update("conv_missing", {"b": "2"}, mode=mode)
    assert alice.conversations.get(conv.id).metadata == {"a": "1"}


def test_concurrent_patches_of_different_keys_all_survive(alice):
    """Eight threads each set a key once, then rewrite another key of their
    own many times. A read-merge-write that was not atomic would let a
    thread's stale read drop another thread's first key for good."""
    threads, rounds, errors = 8, 12, []
    conv = alice.conversations.create()
    start = threading.Barrier(threads)

    def writer(n: int) -> None:
        try:
            start.wait()
            alice.conversations.update(conv.id, {f"once{n}": "set"})
            for k in range(rounds):
                alice.conversations.update(conv.id, {f"count{n}": str(k)})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    expected = {f"once{n}": "set" for n in range(threads)} | {f"count{n}": str(rounds - 1) for n in range(threads)}
    assert alice.conversations.get(conv.id).metadata == expected


LIMITS = [
    ({f"k{i}": "v" for i in range(17)}, "metadata", "Metadata can have at most 16 key-value pairs, got 17."),
    ({"k" * 65: "v"}, "metadata", f"Metadata keys must be at most 64 characters: '{'k' * 65}'."),
    ({"k": "v" * 513}, "metadata", "Metadata value of 'k' must be at most 512 characters."),
    ({"k": 3}, "metadata.k.value", "Not a valid string."),
    ("not a map", "metadata", "Not a valid mapping type."),
]


@pytest.mark.parametrize("mode", ["patch", "replace"])
@pytest.mark.parametrize(("metadata", "param", "reason"), LIMITS, ids=["pairs", "key", "value", "type", "map"])
def test_update_enforces_the_same_limits_as_create(alice, mode, metadata, param, reason):
    """Every metadata limit of a create holds on an update, in either mode,
    and a refused update leaves the stored conversation as it was."""
    conv = alice.conversations.create(metadata={"a": "1"})
    before = alice.conversations.get(conv.id)
    with raises(InvalidRequest, message=f"Invalid '{param}': {reason}", param=param):
        alice.conversations.update(conv.id, metadata, mode=mode)
    after = alice.conversations.get(conv.id)
    assert (after.metadata, after.updated_at) == ({"a": "1"}, before.updated_at)


@pytest.mark.parametrize("mode", ["patch", "replace"])
def test_update_at_the_limits_is_accepted(alice, mode):
    conv = alice.conversations.create()
    metadata = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}
    assert alice.conversations.update(conv.id, metadata, mode=mode).metadata == metadata
    assert alice.conversations.get(conv.id).metadata == metadata


@pytest.mark.parametrize("mode", ["patch", "replace", "create"])
def test_a_long_key_is_shown_cut_to_eighty_characters(alice, mode):
    """The error quotes an over-long key, cut so a hostile key cannot flood
    the answer (or a log)."""
    key = "".join(chr(ord("a") + n % 26) for n in range(300))
    message = f"Invalid 'metadata': Metadata keys must be at most 64 characters: '{key[:80]}'."
    with raises(InvalidRequest, message=message, param="metadata"):
        if mode == "create":
            alice.conversations.create(metadata={key: "v"})
        else:
            alice.conversations.update(alice.conversations.create().id, {key: "v"}, mode=mode)
