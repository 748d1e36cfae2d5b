"""A real HTTP server for the example app on a loopback port, and the
Chromium that Playwright drives: Debian's, never a downloaded one."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import expect
from werkzeug.serving import BaseWSGIServer, make_server

from example_app import create_app
from flask_smg_history import get_state

# Assertions retry for up to 20 s: on a loaded 2-core CI machine a reply can
# take longer than Playwright's 5 s default without anything being wrong.
expect.set_options(timeout=20_000)

CHROMIUM = "/usr/bin/chromium"
#: Assistant replies, not the placeholder shown while one is awaited.
REPLIES = ".message.assistant:not(.pending)"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip where no Chromium is installed, except in CI, where
    ``scripts/browser.sh`` has installed it and its absence is a failure."""
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: scripts/browser.sh should have installed it")
        pytest.skip(f"{CHROMIUM} is not installed (bash scripts/browser.sh installs it)")


class LiveServer:
    """The app served by werkzeug in a thread; ``restart`` builds a new app
    from the same config and instance folder and serves it on the same port,
    as a server process restarted by its user would."""

    def __init__(self, config: dict[str, Any], instance_path: Path) -> None:
        self.config = config
        self.instance_path = instance_path
        self.port = 0
        self.app: Flask | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.app = create_app(dict(self.config), instance_path=str(self.instance_path))
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.port = self._server.port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        assert self._server and self._thread and self.app
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        get_state(self.app).backend.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> LiveServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def store_for(self, owner: str):
        assert self.app
        return get_state(self.app).store_for(owner)


def save_screenshot(page, name: str, tmp_path: Path, full_page: bool = False) -> Path:
    """Screenshots go to the test's folder; with ``EXAMPLE_SCREENSHOTS=1`` they
    also refresh ``docs/img/`` (the README's pictures). ``page`` may also be a
    locator, for a picture of one element."""
    path = tmp_path / name
    page.screenshot(path=str(path), **({"full_page": True} if full_page else {}))
    if os.environ.get("EXAMPLE_SCREENSHOTS") == "1":
        target = Path(__file__).resolve().parents[2] / "docs" / "img" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return path


def sign_in(page, server: LiveServer, name: str) -> None:
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/signin")
    page.fill("#name", name)
    page.click("button[type=submit]")
    expect(page.locator("#user-name")).to_have_text(name)
    ready(page)


def ready(page) -> None:
    """Wait until the chat page's script has set up its handlers: typing
    before that would only add a line to the box."""
    expect(page.locator("#app")).to_have_attribute("data-ready", "true")


def send(page, text: str) -> None:
    """Type a message, press Enter, wait for its reply to finish streaming."""
    ready(page)
    before = page.locator(REPLIES).count()
    page.fill("#message", text)
    page.press("#message", "Enter")
    expect(page.locator(REPLIES)).to_have_count(before + 1)
    expect(page.locator("#send")).to_have_attribute("aria-label", "Send")


def watch(page) -> list[str]:
    """Every console message and page error of ``page``, as text, from now on."""
    seen: list[str] = []
    page.on("console", lambda message: seen.append(f"console.{message.type}: {message.text}"))
    page.on("pageerror", lambda exc: seen.append(f"pageerror: {exc}"))
    return seen


def overflow(page) -> tuple[int, int]:
    """The page's scroll width and the window's width: equal when nothing
    sticks out sideways."""
    return tuple(page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]"))


def width(page, selector: str) -> float:
    return page.locator(selector).first.bounding_box()["width"]
