"""End to end: the official ``openai`` client, with strict response
validation, against the app served on a real loopback port."""

from __future__ import annotations

import re
import threading

import openai
import pytest
from werkzeug.serving import make_server

from flask_smg_history import get_state

from .support.errors import malformed, missing, sdk_raises

KEYS = {"sk-alice": "alice", "sk-bob": "bob"}


@pytest.fixture
def served(make_app):
    app = make_app(SMG_HISTORY_API_KEYS=KEYS)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        thread.join(5)


def _client(base_url: str, key: str = "sk-alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, _strict_response_validation=True)


@pytest.mark.e2e
def test_conversations_with_the_openai_client(served):
    _, base_url = served
    client = _client(base_url)
    conv = client.conversations.create(metadata={"topic": "demo"}, items=[{"role": "user", "content": "Hello"}])
    assert conv.object == "conversation" and conv.metadata == {"topic": "demo"}
    assert client.conversations.retrieve(conv.id).id == conv.id
    assert client.conversations.update(conv.id, metadata={"topic": "changed"}).metadata == {"topic": "changed"}

    for start in range(0, 249, 20):
        batch = [{"role": "user", "content": f"m{n}"} for n in range(start, min(start + 20, 249))]
        created = client.conversations.items.create(conv.id, items=batch)
        assert created.first_id == created.data[0].id and len(created.data) == len(batch)
    texts_asc = [item.content[0].text for item in client.conversations.items.list(conv.id, order="asc")]
    assert texts_asc == ["Hello"] + [f"m{n}" for n in range(249)]
    desc = client.conversations.items.list(conv.id)  # default: desc, pages of 20
    texts_desc = [item.content[0].text for item in desc]
    assert texts_desc == list(reversed(texts_asc))
    assert len(desc.data) == 20 and desc.has_more

    first = client.conversations.items.list(conv.id, order="asc", limit=1).data[0]
    got = client.conversations.items.retrieve(
        first.id, conversation_id=conv.id, include=["message.output_text.logprobs"]
    )
    assert got.id == first.id and got.role == "user"
    parent = client.conversations.items.delete(first.id, conversation_id=conv.id)
    assert parent.id == conv.id
    message, param = missing("item", first.id)
    with sdk_raises(openai.NotFoundError, 404, message=message, param=param):
        client.conversations.items.retrieve(first.id, conversation_id=conv.id)

    deleted = client.conversations.delete(conv.id)
    assert deleted.deleted is True and deleted.id == conv.id
    message, param = missing("conversation", conv.id)
    with sdk_raises(openai.NotFoundError, 404, message=message, param=param):
        client.conversations.retrieve(conv.id)


@pytest.mark.e2e
def test_metadata_update_is_a_patch_with_the_openai_client(served):
    """The SDK sends ``metadata`` as given; our default (SMG's) merges it, and
    a strictly validated answer still parses."""
    _, base_url = served
    client = _client(base_url)
    conv = client.conversations.create(metadata={"topic": "demo", "lang": "en"})
    updated = client.conversations.update(conv.id, metadata={"topic": "changed"})
    assert updated.metadata == {"topic": "changed", "lang": "en"}
    assert client.conversations.retrieve(conv.id).metadata == {"topic": "changed", "lang": "en"}
    full = {f"k{n}": "v" for n in range(14)}
    assert len(client.conversations.update(conv.id, metadata=full).metadata) == 16
    with sdk_raises(
        openai.BadRequestError,
        400,
        message=(
            "Invalid 'metadata': the update would leave the conversation with 17 metadata key-value pairs, "
            "more than the 16 allowed; remove keys by setting them to null in the same update."
        ),
        param="metadata",
    ):
        client.conversations.update(conv.id, metadata={"one_more": "x"})
    assert client.conversations.retrieve(conv.id).metadata == {"topic": "changed", "lang": "en", **full}


@pytest.mark.e2e
def test_errors_map_to_the_sdks_exceptions(served):
    _, base_url = served
    client = _client(base_url)
    with sdk_raises(
        openai.BadRequestError,
        400,
        message="Invalid 'metadata': Metadata can have at most 16 key-value pairs, got 17.",
        param="metadata",
    ):
        client.conversations.create(metadata={f"k{n}": "v" for n in range(17)})
    conv = client.conversations.create()
    with sdk_raises(
        openai.BadRequestError,
        400,
        message=re.compile(r"Unsupported item type 'bogus_type'\. Supported types: message, .*"),
        param="items[0].type",
    ):
        client.conversations.items.create(conv.id, items=[{"type": "bogus_type"}])  # type: ignore[list-item]
    message, param = missing("conversation", conv.id)
    with sdk_raises(openai.NotFoundError, 404, message=message, param=param):
        _client(base_url, "sk-bob").conversations.retrieve(conv.id)
    with sdk_raises(openai.AuthenticationError, 401, message="Incorrect API key provided.", param=None):
        _client(base_url, "sk-wrong").conversations.retrieve(conv.id)
    assert client.conversations.items.list(conv.id).data == []


@pytest.mark.e2e
def test_stored_responses_with_the_openai_client(served):
    app, base_url = served
    store = get_state(app).store_for("alice")
    stored = store.responses.store(
        {
            "model": "gpt-test",
            "input": [{"role": "user", "content": f"q{n}"} for n in range(45)],
            "output": [{"type": "message", "role": "assistant", "content": "answer"}],
            "usage": {
                "input_tokens": 5,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": 1,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 6,
            },
        }
    )
    client = _client(base_url)
    resp = client.responses.retrieve(stored.id)
    assert resp.id == stored.id and resp.model == "gpt-test" and resp.output_text == "answer"
    assert resp.usage.total_tokens == 6
    inputs = [item.content[0].text for item in client.responses.input_items.list(stored.id, order="asc")]
    assert inputs == [f"q{n}" for n in range(45)]
    client.responses.delete(stored.id)
    message, param = missing("response", stored.id)
    with sdk_raises(openai.NotFoundError, 404, message=message, param=param):
        client.responses.retrieve(stored.id)
    with sdk_raises(openai.NotFoundError, 404, message=message, param=param):
        client.responses.input_items.list(stored.id)


@pytest.mark.e2e
def test_malformed_ids_reach_the_openai_client_as_bad_requests(served):
    _, base_url = served
    client = _client(base_url)
    message = malformed("conversation_id", "abc", "conv")
    with sdk_raises(openai.BadRequestError, 400, message=message, param="conversation_id") as info:
        client.conversations.retrieve("abc")
    assert info.value.message.endswith(message)  # what the SDK shows a user
    message = malformed("response_id", "conv_123", "resp")
    with sdk_raises(openai.BadRequestError, 400, message=message, param="response_id"):
        client.responses.retrieve("conv_123")
    message, param = missing("conversation", "conv_doesnotexist")
    with sdk_raises(openai.NotFoundError, 404, message=message, param=param):  # well-formed but missing stays a 404
        client.conversations.retrieve("conv_doesnotexist")
