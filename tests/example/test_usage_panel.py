"""The feedback page's usage panel (``history.stats()``), through the test
client on the app's backends: its figures are those of what the chat stored,
only the signed-in user's, and shown as text."""

from __future__ import annotations

import re

from flask_smg_history import get_state

from .conftest import new_chat, send


def _figure(page: str, name: str) -> int:
    found = re.search(rf'id="usage-{name}">([\d,]+)<', page)
    assert found, name
    return int(found.group(1).replace(",", ""))


def _rows(page: str, table: str) -> list[list[str]]:
    body = page.split(f'id="{table}"', 1)[1].split("</tbody>", 1)[0].split("<tbody>", 1)[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_the_panel_shows_what_the_chat_stored(example, alice, bob):
    conv = new_chat(alice)
    first = send(alice, conv, "hello there").json["response_id"]
    send(alice, conv, "/tool count these four words")
    alice.post(f"/v1/responses/{first}/feedback", json={"rating": "positive"})
    bob_chat = new_chat(bob)
    send(bob, bob_chat, "bob's words are not alice's")
    store = get_state(example).store_for("alice")
    responses = store.responses.list(limit=100).data
    tokens = [r.usage for r in responses]
    assert all(u["total_tokens"] == u["input_tokens"] + u["output_tokens"] > 0 for u in tokens)

    page = alice.get("/feedback").get_data(as_text=True)
    # the tool's turn is two responses: the call, then the answer to its output
    assert _figure(page, "chats") == 1 and _figure(page, "replies") == 3
    # two user messages, two replies, two reasoning items, a function call and its output
    assert _figure(page, "items") == 8
    assert "Items by type: function_call 1, function_call_output 1, message 4, reasoning 2" in page
    assert "messages by role: assistant 2, user 2." in page
    assert _figure(page, "tokens") == sum(u["total_tokens"] for u in tokens)
    model = "local-responder (built-in, no LLM)"
    assert _rows(page, "usage-by-model") == [
        [
            model,
            "3",
            str(sum(u["input_tokens"] for u in tokens)),
            str(sum(u["output_tokens"] for u in tokens)),
            str(sum(u["total_tokens"] for u in tokens)),
            "1",
            "0",
        ]
    ]
    (day,) = _rows(page, "usage-by-day")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", day[0]) and day[1:] == _rows(page, "usage-by-model")[0][1:5]


def test_an_empty_history_and_markup_in_a_model_name(example, alice):
    page = alice.get("/feedback").get_data(as_text=True)
    assert _figure(page, "chats") == 0 and _figure(page, "tokens") == 0
    assert _rows(page, "usage-by-model") == [["No replies yet"]] and "Items by type: none yet." in page
    store = get_state(example).store_for("alice")
    store.responses.store({"model": "<b>bold</b>", "input": "q", "usage": {"input_tokens": 1200, "total_tokens": 1200}})
    page = alice.get("/feedback").get_data(as_text=True)
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert _rows(page, "usage-by-model") == [["&lt;b&gt;bold&lt;/b&gt;", "1", "1,200", "0", "1,200", "0", "0"]]
