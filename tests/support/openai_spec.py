"""Validate JSON against OpenAI's published schemas. ``support/data`` holds the
Conversations/stored-Responses subset of OpenAI's OpenAPI document, and the
subset for creating responses (``CreateResponse``, ``Response`` and every
``ResponseStreamEvent``), both copied from ``shared/openai-api``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).parent / "data" / "conversations-openapi.json"
RESPONSES_SPEC = Path(__file__).parent / "data" / "responses-openapi.json"


@cache
def _registry(path: Path = SPEC) -> Registry:
    spec = json.loads(path.read_text())
    return Registry().with_resource("spec.json", DRAFT202012.create_resource(spec))


@cache
def _validator(name: str, path: Path) -> Draft202012Validator:
    schema = {"$ref": f"spec.json#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=_registry(path))


def validate(name: str, instance: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` matches the
    component schema ``name`` of OpenAI's document."""
    _validator(name, SPEC).validate(instance)


def validate_responses(name: str, instance: Any) -> None:
    """``validate`` against the document for creating responses
    (``CreateResponse``, ``Response``, ``ResponseStreamEvent``...)."""
    _validator(name, RESPONSES_SPEC).validate(instance)


def validate_stream_event(event: dict[str, Any]) -> None:
    """Check one streamed event against the member of ``ResponseStreamEvent``
    its ``type`` names (the union's own errors name no member)."""
    spec = json.loads(RESPONSES_SPEC.read_text()) if not _EVENT_SCHEMAS else None
    if spec is not None:
        for ref in spec["components"]["schemas"]["ResponseStreamEvent"]["anyOf"]:
            name = ref["$ref"].rsplit("/", 1)[-1]
            kind = spec["components"]["schemas"][name]["properties"]["type"]["enum"][0]
            _EVENT_SCHEMAS[kind] = name
    name = _EVENT_SCHEMAS.get(event.get("type"))
    assert name is not None, f"{event.get('type')!r} is no event type of ResponseStreamEvent"
    validate_responses(name, event)
    validate_responses("ResponseStreamEvent", event)


_EVENT_SCHEMAS: dict[str, str] = {}
