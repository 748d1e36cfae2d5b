"""The adapter tests run on the memory backend (the contract suite runs the
turn on every backend, in ``tests/contract/test_responses_create.py``)."""

import pytest

from ..support.fake_upstream import fake_upstream, fake_upstream_server  # noqa: F401 - fixtures


@pytest.fixture
def backend_name() -> str:
    return "memory"
