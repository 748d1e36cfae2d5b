"""Fixtures for the example app: an app per test on each backend the app is
meant to run on out of the box (sqlite, its default, and memory), and a client
per signed-in user."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import create_app
from flask_smg_history import get_state


@pytest.fixture(autouse=True)
def no_example_environment(monkeypatch) -> None:
    """The app reads these from the environment; tests set them in config."""
    for name in ("EXAMPLE_LLM_BASE_URL", "EXAMPLE_LLM_API_KEY", "EXAMPLE_LLM_MODEL", "EXAMPLE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SMG_HISTORY_BACKEND", raising=False)


@pytest.fixture(params=["sqlite", "memory"])
def make_example(request, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    built: list[Flask] = []

    def factory(**config: Any) -> Flask:
        config = {
            "TESTING": True,
            "SECRET_KEY": "test",
            "SMG_HISTORY_BACKEND": request.param,
            "EXAMPLE_LOCAL_TOKEN_DELAY": 0,
            **config,
        }
        built.append(create_app(config, instance_path=str(tmp_path / "instance")))
        return built[-1]

    yield factory
    for app in built:
        get_state(app).backend.close()


@pytest.fixture
def example(make_example) -> Flask:
    return make_example()


def signed_in(app: Flask, name: str) -> FlaskClient:
    client = app.test_client()
    response = client.post("/signin", data={"name": name})
    assert response.status_code == 302, response.data
    return client


@pytest.fixture
def alice(example) -> FlaskClient:
    return signed_in(example, "alice")


@pytest.fixture
def bob(example) -> FlaskClient:
    return signed_in(example, "bob")


def new_chat(client: FlaskClient, **metadata: str) -> str:
    response = client.post("/v1/conversations", json={"metadata": metadata})
    assert response.status_code == 200, response.json
    return response.json["id"]


def send(client: FlaskClient, conversation_id: str, text: str):
    return client.post(f"/chat/{conversation_id}/messages", json={"text": text})


def events_of(response) -> list[tuple[str, dict]]:
    """The server-sent events of a streamed answer, as (event, data) pairs."""
    found = []
    for block in response.get_data(as_text=True).split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            found.append((lines["event"], json.loads(lines["data"])))
    return found


def read_events(response):
    """The (event, data) pairs of an unbuffered streamed answer, as they come."""
    for block in response.response:
        for part in block.decode().split("\n\n"):
            if part.strip():
                lines = dict(line.split(": ", 1) for line in part.split("\n"))
                yield lines["event"], json.loads(lines["data"])


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, driven by Playwright, shared by the browser tests."""
    from .live import CHROMIUM, CHROMIUM_ARGS, require_chromium

    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()
