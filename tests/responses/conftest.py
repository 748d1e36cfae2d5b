"""The adapter tests run on the memory backend (the contract suite runs the
turn on every backend, in ``tests/contract/test_responses_create.py``)."""

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from ..support.fake_upstream import FakeUpstream, fake_upstream, fake_upstream_server  # noqa: F401 - fixtures


@pytest.fixture
def backend_name() -> str:
    return "memory"


@pytest.fixture(params=("chat", "responses"))
def upstream_api(request) -> str:
    return request.param


@pytest.fixture
def base_url(make_app, fake_upstream: FakeUpstream, upstream_api: str) -> Iterator[str]:  # noqa: F811 - the fixture
    """The app served on a loopback port, its upstream the fake (over each
    upstream API), with bearer keys for alice and bob: what the ``openai``
    client is pointed at."""
    app = make_app(
        SMG_HISTORY_UPSTREAM_URL=fake_upstream.base_url,
        SMG_HISTORY_UPSTREAM_API=upstream_api,
        SMG_HISTORY_API_KEYS={"sk-alice": "alice", "sk-bob": "bob"},
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        thread.join(5)
