"""Validate JSON against OpenAI's published schemas. ``tests/data`` holds the
Conversations/stored-Responses subset of OpenAI's OpenAPI document."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).parent / "data" / "conversations-openapi.json"


@cache
def _registry() -> Registry:
    spec = json.loads(SPEC.read_text())
    return Registry().with_resource("spec.json", DRAFT202012.create_resource(spec))


def validate(name: str, instance: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` matches the
    component schema ``name`` of OpenAI's document."""
    schema = {"$ref": f"spec.json#/components/schemas/{name}"}
    Draft202012Validator(schema, registry=_registry()).validate(instance)
