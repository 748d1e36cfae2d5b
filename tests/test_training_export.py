"""``flask smg-history export --format chat-jsonl | preference-jsonl`` on
every backend: one checked line per rated response, pairs of answers to the
same input, the filters, what is skipped and why, the progress bar, and
memory that does not grow with the store."""

from __future__ import annotations

import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
from flask import Flask

from flask_smg_history import SmgHistory, get_state
from flask_smg_history.records import Feedback, Response, mint_id

from .support.terminal import run_cli
from .support.training_formats import check_chat_line, check_preference_line

WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "The weather now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def _store(store, model="gpt-a", **fields):
    return store.responses.store({"model": model, "instructions": "Be brief.", "tools": [WEATHER], **fields})


def _say(text):
    return [{"type": "message", "role": "assistant", "content": text}]


@pytest.fixture
def rated(app):
    """alice: a chain of three turns (a tool call and its output in the
    middle), a regenerated answer rated against the first, a response with a
    hosted tool call, an answer equal to an earlier one, a withdrawn vote;
    bob: the prompt of alice's first turn, rated otherwise."""
    state = get_state(app)
    alice, bob = state.store_for("alice"), state.store_for("bob")
    conv = alice.conversations.create()
    r1 = _store(alice, conversation=conv.id, input="Hi", output=_say("Hello!"))
    call = {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city":"Paris"}'}
    r2 = _store(alice, conversation=conv.id, previous_response_id=r1.id, input="Weather in Paris?", output=[call])
    r3 = _store(
        alice,
        conversation=conv.id,
        previous_response_id=r2.id,
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
        output=[{"type": "reasoning", "summary": []}, *_say("Sunny.")],
    )
    r4 = _store(alice, conversation=conv.id, previous_response_id=r3.id, input="A joke?", output=_say("Joke A"))
    r5 = _store(
        alice,
        conversation=conv.id,
        previous_response_id=r3.id,
        input="A joke?",
        output=_say("Joke B"),
        metadata={"regenerates": r4.id},
    )
    r6 = _store(alice, model="gpt-b", input="Search", output=[{"type": "web_search_call"}, *_say("Found.")])
    r9 = _store(alice, input="Hi", output=_say("Hello!"))
    r8 = _store(alice, model="gpt-b", input="Q", output=_say("A"))
    _store(alice, input="never rated", output=_say("x"))
    for response, rating in ((r1, "positive"), (r2, "negative"), (r3, "positive"), (r4, "positive")):
        alice.feedback.submit(response.id, rating)
    for response, rating in ((r5, "negative"), (r6, "positive"), (r9, "negative"), (r8, "negative")):
        alice.feedback.submit(response.id, rating)
    alice.feedback.delete(r8.id)
    b1 = _store(bob, input="Hi", output=_say("Yo."))
    bob.feedback.submit(b1.id, "negative")
    return app


def _export(app, *args):
    result = app.test_cli_runner().invoke(args=["smg-history", "export", *args])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines(), result.stderr


def _answer(line: dict) -> str:
    return line["messages"][-1].get("content") or line["messages"][-1]["tool_calls"][0]["function"]["name"]


SYSTEM = {"role": "system", "content": "Be brief."}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "The weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def test_chat_jsonl_one_checked_line_per_rated_response(rated):
    lines, stderr = _export(rated, "--format", "chat-jsonl")
    examples = [check_chat_line(line) for line in lines]
    assert sorted(_answer(e) for e in examples) == sorted(
        ["Hello!", "weather", "Sunny.", "Joke A", "Joke B", "Hello!", "Yo."]
    )
    assert "chat-jsonl: 7 lines written, 1 responses skipped; 1 with a web_search_call item" in stderr
    assert "export chat-jsonl: 8 rated responses done" in stderr
    sunny = next(e for e in examples if _answer(e) == "Sunny.")
    assert sunny == {
        "messages": [
            SYSTEM,
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!", "weight": 0},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
                "weight": 0,
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny."},
        ],
        "tools": TOOLS,
    }
    joke = next(e for e in examples if _answer(e) == "Joke B")
    assert joke["messages"][:-1] == [
        *sunny["messages"][:-1],
        {"role": "assistant", "content": "Sunny.", "weight": 0},
        {"role": "user", "content": "A joke?"},
    ]


def test_chat_jsonl_filters(rated):
    positive, _ = _export(rated, "--format", "chat-jsonl", "--rating", "positive")
    assert sorted(_answer(check_chat_line(x)) for x in positive) == ["Hello!", "Joke A", "Sunny."]
    negative, _ = _export(rated, "--format", "chat-jsonl", "--rating", "negative", "--owner", "alice")
    assert sorted(_answer(check_chat_line(x)) for x in negative) == ["Hello!", "Joke B", "weather"]
    bob, _ = _export(rated, "--format", "chat-jsonl", "--owner", "bob")
    assert [_answer(check_chat_line(x)) for x in bob] == ["Yo."]
    gpt_b, stderr = _export(rated, "--format", "chat-jsonl", "--model", "gpt-b")
    assert gpt_b == [] and "0 lines written, 1 responses skipped" in stderr
    later, stderr = _export(rated, "--format", "chat-jsonl", "--since", "2999-01-01")
    assert later == [] and "0 rated responses done" in stderr


def test_preference_jsonl_pairs_answers_to_the_same_input(rated, tmp_path):
    out = tmp_path / "pairs.jsonl"
    lines, stderr = _export(rated, "--format", "preference-jsonl", "-o", str(out))
    assert lines == []
    pairs = [check_preference_line(line) for line in out.read_text().splitlines()]
    assert len(pairs) == 1, pairs  # not alice's equal answers, nor bob's answer to alice's prompt
    pair = pairs[0]
    assert pair["preferred_output"] == [{"role": "assistant", "content": "Joke A"}]
    assert pair["non_preferred_output"] == [{"role": "assistant", "content": "Joke B"}]
    assert pair["input"]["tools"] == TOOLS
    assert pair["input"]["messages"][0] == SYSTEM and pair["input"]["messages"][-1] == {
        "role": "user",
        "content": "A joke?",
    }
    assert all("weight" not in m for m in pair["input"]["messages"])
    assert "preference-jsonl: 1 lines written" in stderr and "with a web_search_call item" in stderr
    none, _ = _export(rated, "--format", "preference-jsonl", "--model", "gpt-b")
    assert none == []


def test_bad_combinations_are_usage_errors(rated):
    runner = rated.test_cli_runner()
    for args, words in (
        (["--format", "preference-jsonl", "--rating", "positive"], "--rating does not apply"),
        (["--rating", "positive"], "apply to --format chat-jsonl"),
        (["--format", "jsonl"], "'jsonl' is not one of"),
        (["--format", "chat-jsonl", "--rating", "good"], "'good' is not one of"),
    ):
        result = runner.invoke(args=["smg-history", "export", *args])
        assert result.exit_code == 2 and words in result.output, result.output


# -- constant memory and the progress bar (SQLite: the data is not in Python) ---------
def _sqlite_app(tmp_path: Path) -> Flask:
    app = Flask("training", instance_path=str(tmp_path / "instance"))
    app.config.update(
        SMG_HISTORY_BACKEND="sqlite",
        SMG_HISTORY_SQLITE_PATH=str(tmp_path / "history.sqlite3"),
        SMG_HISTORY_CREATE_TABLES=True,
    )
    SmgHistory(app)
    return app


def _fill(app: Flask, pairs: int) -> None:
    """``pairs`` inputs, each answered twice (rated positive, then negative),
    written in bulk through ``import_records``."""
    records = []
    now = time.time()
    for n in range(pairs):
        question = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"Q{n} " * 40}]}]
        for k, rating in enumerate(("positive", "negative")):
            answer = [
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": f"A{k} " * 60}]}
            ]
            rid = mint_id("resp")
            records.append(Response(rid, "alice", now + n, model="m", input=question, output=answer))
            records.append(Feedback(mint_id("fb"), rid, "alice", rating, now + n + k / 10, model="m"))
    get_state(app).backend.import_records(records)


def _peak(app: Flask, fmt: str, out: Path) -> int:
    runner = app.test_cli_runner()
    tracemalloc.start()
    try:
        result = runner.invoke(args=["smg-history", "export", "--format", fmt, "-o", str(out)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    return peak


@pytest.mark.parametrize("fmt", ["chat-jsonl", "preference-jsonl"])
def test_memory_does_not_grow_with_the_store(tmp_path, fmt):
    small, large = _sqlite_app(tmp_path / "small"), _sqlite_app(tmp_path / "large")
    _fill(small, 100)
    _fill(large, 1000)
    peaks = {}
    for name, app in (("small", small), ("large", large)):
        out = tmp_path / f"{name}.jsonl"
        peaks[name] = _peak(app, fmt, out)
        lines = out.read_text().splitlines()
        assert len(lines) == (100 if name == "small" else 1000) * (2 if fmt == "chat-jsonl" else 1)
        check = check_chat_line if fmt == "chat-jsonl" else check_preference_line
        for line in lines[:: max(1, len(lines) // 50)]:
            check(line)
        get_state(app).backend.close()
    # ten times the data: the peak may not follow (it would be ~10x if lines or records were kept)
    assert peaks["large"] < peaks["small"] * 1.5 + 256 * 1024, peaks


APP = textwrap.dedent(
    """
    from flask import Flask
    from flask_smg_history import SmgHistory

    app = Flask("terminal", instance_path={instance!r})
    app.config.update(SMG_HISTORY_BACKEND="sqlite", SMG_HISTORY_SQLITE_PATH={db!r})
    SmgHistory(app)
    """
)


def _run(cwd: Path, terminal: bool) -> str:
    command = [sys.executable, "-m", "flask", "--app", "termapp", "smg-history", "export"]
    command += ["--format", "chat-jsonl", "-o", "out.jsonl"]
    return run_cli(command, cwd, terminal)


def test_progress_bar_on_a_terminal_plain_lines_otherwise(tmp_path):
    app = _sqlite_app(tmp_path)
    _fill(app, 30)
    get_state(app).backend.close()
    (tmp_path / "termapp.py").write_text(
        APP.format(instance=str(tmp_path / "instance"), db=str(tmp_path / "history.sqlite3"))
    )
    on_terminal = _run(tmp_path, terminal=True)
    assert "export chat-jsonl" in on_terminal and "100%" in on_terminal and "#" in on_terminal
    plain = _run(tmp_path, terminal=False)
    assert "export chat-jsonl: 60 rated responses done" in plain and "%" not in plain
    assert "chat-jsonl: 60 lines written, 0 responses skipped" in plain
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 60
