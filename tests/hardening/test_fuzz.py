"""Schemathesis against the project's own OpenAPI document, on every backend:
no 500, every answer matches the documented schema and status codes, every
error is in OpenAI's envelope."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

KEYS = {"sk-fuzz": "fuzzer"}
EXAMPLES = 25


def _check(case) -> None:
    case.headers = {**(case.headers or {}), "Authorization": "Bearer sk-fuzz"}
    response = case.call()
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
    # An unknown ``after`` cursor is a documented 400 that no schema can
    # express, so "schema-valid data is accepted" does not hold; every other
    # check does.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}


class Echo:
    """An in-process model, so ``POST /responses`` is fuzzed through a whole
    turn (context, upstream, storage) rather than answering 501."""

    def stream(self, request):
        yield f"{len(request.input)} items"


def test_every_operation_holds_up_under_fuzzing(make_app):
    app = make_app(SMG_HISTORY_API_KEYS=KEYS, SMG_HISTORY_ALLOW_ANONYMOUS=False, upstream=Echo())
    schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            _check(case)

        try:
            run()
        except Exception as exc:
            pytest.fail(f"{operation.label}: {exc}")
