"""``POST /v1/responses``' body, validated as OpenAI validates it.

One marshmallow schema checks each parameter's type and range (in OpenAI's
words: ``Invalid 'temperature': decimal above maximum value...``); the checks
that span parameters (tools against ``tool_choice``, ``conversation`` against
``previous_response_id``) follow it. A parameter OpenAI defines that this
server cannot honour (``background``, built-in tools, ``prompt``,
``include``...) is a 400 that names it: a client must never believe a
setting took effect when it did not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from ..errors import InvalidRequest
from ..schemas import ID_RULE, MetadataField, load

#: The smallest ``max_output_tokens`` OpenAI accepts.
MIN_OUTPUT_TOKENS = 16
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
TRUNCATIONS = ("auto", "disabled")
TEXT_FORMATS = ("text", "json_object", "json_schema")


class _Strict(fields.Field):
    """A JSON value of exactly one Python type (marshmallow's own fields take
    ``"0.5"`` for a number and ``1`` for true, which OpenAI refuses)."""

    def __init__(self, types: tuple[type, ...], expected: str, **kwargs: Any) -> None:
        json_type = {str: "string", bool: "boolean", int: "integer", float: "number"}[types[-1]]
        kwargs.setdefault("metadata", {"type": json_type})  # for the OpenAPI document (apispec adds null)
        super().__init__(**kwargs)
        self._types, self._expected = types, expected

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) and bool not in self._types or not isinstance(value, self._types):
            raise ValidationError(f"expected {self._expected}, got {type(value).__name__}.")
        return value


def _within(low: float | None, high: float | None, kind: str):
    """OpenAI's range errors: ``integer below minimum value. Expected a value
    >= 16, but got 5 instead.``"""

    def check(value: float) -> None:
        if low is not None and value < low:
            raise ValidationError(f"{kind} below minimum value. Expected a value >= {low:g}, but got {value} instead.")
        if high is not None and value > high:
            raise ValidationError(f"{kind} above maximum value. Expected a value <= {high:g}, but got {value} instead.")

    return check


def _number(low: float, high: float) -> _Strict:
    return _Strict((int, float), "a number", allow_none=True, validate=_within(low, high, "decimal"))


def _flag() -> _Strict:
    return _Strict((bool,), "a boolean", allow_none=True)


def _text() -> _Strict:
    return _Strict((str,), "a string", allow_none=True)


#: Parameters of OpenAI's CreateResponse this server does not serve: any value
#: but the one meaning "off" is refused, naming the parameter.
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "background": (None, False),
    "prompt": (None,),
    "include": (None, []),
    "max_tool_calls": (None,),
    "top_logprobs": (None, 0),
    "prompt_cache_key": (None,),
    "prompt_cache_retention": (None,),
    "prompt_cache_options": (None,),
    "context_management": (None,),
    "moderation": (None,),
}


#: Each parameter's check. Unknown parameters are refused (marshmallow's default).
CreateResponseSchema = Schema.from_dict(
    {
        "model": _Strict((str,), "a string", required=True, validate=validate.Length(min=1)),
        "input": fields.Raw(allow_none=True),
        "instructions": _text(),
        "previous_response_id": _Strict((str,), "a string", allow_none=True, validate=ID_RULE),
        "conversation": fields.Raw(allow_none=True),
        "store": _flag(),
        "stream": _flag(),
        "stream_options": fields.Dict(allow_none=True),
        "tools": fields.List(fields.Dict(), allow_none=True),
        "tool_choice": fields.Raw(allow_none=True),
        "parallel_tool_calls": _flag(),
        "temperature": _number(0, 2),
        "top_p": _number(0, 1),
        "max_output_tokens": _Strict(
            (int,), "an integer", allow_none=True, validate=_within(MIN_OUTPUT_TOKENS, None, "integer")
        ),
        "metadata": MetadataField(allow_none=True),
        "text": fields.Dict(allow_none=True),
        "truncation": _Strict((str,), "a string", allow_none=True, validate=validate.OneOf(TRUNCATIONS)),
        "reasoning": fields.Dict(allow_none=True),
        "user": _text(),
        "safety_identifier": _text(),
        "service_tier": _Strict((str,), "a string", allow_none=True, validate=validate.OneOf(("auto", "default"))),
        **{name: fields.Raw(allow_none=True) for name in UNSUPPORTED},
    },
    name="CreateResponseSchema",
)


#: Every parameter the endpoint reads, for the HTTP layer's unknown-field check.
PARAMETERS = tuple(CreateResponseSchema().fields)
_SCHEMA = CreateResponseSchema()


@dataclass
class CreateRequest:
    """A checked request: defaults filled in, ``conversation`` an ID."""

    model: str
    input: list[Any]
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | None = None
    store: bool = True
    stream: bool = False
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    text_format: dict[str, Any] | None = None
    truncation: str = "disabled"
    reasoning: dict[str, Any] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None

    def echoed(self) -> dict[str, Any]:
        """The request's fields a response object repeats, as OpenAI repeats
        them (``user`` only when given: the spec has no null for it)."""
        echoed = {
            "instructions": self.instructions,
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "parallel_tool_calls": self.parallel_tool_calls,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_output_tokens": self.max_output_tokens,
            "text": {"format": self.text_format or {"type": "text"}},
            "truncation": self.truncation,
            "reasoning": self.reasoning,
            "store": self.store,
            "background": False,
            "service_tier": self.service_tier or "default",
        }
        if self.user is not None:
            echoed["user"] = self.user
        return echoed


def _unsupported(name: str) -> InvalidRequest:
    return InvalidRequest(
        f"Unsupported parameter: '{name}' is not supported by this server, which keeps history for a "
        "stateless model server; leave it out.",
        param=name,
        code="unsupported_parameter",
    )


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Function tools, in the shape a response echoes (``strict`` and
    ``parameters`` filled in); any other tool type is refused."""
    out = []
    for index, tool in enumerate(tools):
        param = f"tools[{index}]"
        kind = tool.get("type")
        if kind != "function":
            raise InvalidRequest(
                f"Invalid '{param}.type': {str(kind)[:64]!r} is not supported: this server passes only function "
                "tools to its model server (no built-in tools such as web or file search, and no MCP).",
                param=f"{param}.type",
                code="unsupported_parameter",
            )
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise InvalidRequest(
                f"Invalid '{param}.name': expected 1 to 64 letters, digits, '_' or '-'.", param=f"{param}.name"
            )
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequest(
                f"Invalid '{param}.parameters': expected a JSON schema object.", param=f"{param}.parameters"
            )
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidRequest(f"Invalid '{param}.description': expected a string.", param=f"{param}.description")
        strict = tool.get("strict", True)
        if not isinstance(strict, bool) and strict is not None:
            raise InvalidRequest(f"Invalid '{param}.strict': expected a boolean.", param=f"{param}.strict")
        out.append(
            {"type": "function", "name": name, "description": description, "parameters": parameters, "strict": strict}
        )
    return out


def _tool_choice(choice: Any, tools: list[dict[str, Any]]) -> Any:
    if choice is None:
        return "auto"
    if choice in ("none", "auto", "required"):
        if choice == "required" and not tools:
            raise InvalidRequest(
                "Invalid 'tool_choice': 'required' needs at least one tool in 'tools'.", param="tool_choice"
            )
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and set(choice) <= {"type", "name"}:
        name = choice.get("name")
        if not isinstance(name, str) or name not in {t["name"] for t in tools}:
            raise InvalidRequest(
                f"Invalid 'tool_choice': function {str(name)[:64]!r} is not among the functions in 'tools'.",
                param="tool_choice",
            )
        return {"type": "function", "name": name}
    raise InvalidRequest(
        "Invalid 'tool_choice': expected 'none', 'auto', 'required' or {'type': 'function', 'name': ...}.",
        param="tool_choice",
    )


def _text_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    if not text:
        return None
    for key in text:
        if key not in ("format", "verbosity"):
            raise InvalidRequest(f"Unknown parameter: 'text.{key[:64]}'.", param=f"text.{key[:64]}")
    if text.get("verbosity") not in (None, "medium"):
        raise InvalidRequest(
            "Unsupported parameter: 'text.verbosity' is not supported by this server; leave it out.",
            param="text.verbosity",
            code="unsupported_parameter",
        )
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in TEXT_FORMATS:
        raise InvalidRequest(
            "Invalid 'text.format': expected an object whose 'type' is 'text', 'json_object' or 'json_schema'.",
            param="text.format",
        )
    if fmt["type"] == "json_schema":
        if not isinstance(fmt.get("name"), str) or not _TOOL_NAME.fullmatch(fmt["name"]):
            raise InvalidRequest(
                "Invalid 'text.format.name': expected 1 to 64 letters, digits, '_' or '-'.", param="text.format.name"
            )
        if not isinstance(fmt.get("schema"), dict):
            raise InvalidRequest(
                "Invalid 'text.format.schema': expected a JSON schema object.", param="text.format.schema"
            )
    return None if fmt["type"] == "text" else fmt


def _conversation_id(value: Any) -> str | None:
    if isinstance(value, dict) and set(value) == {"id"}:
        value = value["id"]
    if value is None or isinstance(value, str):
        if isinstance(value, str) and not value.startswith("conv"):
            raise InvalidRequest(
                f"Invalid 'conversation': '{value[:128]}'. Expected an ID that begins with 'conv'.",
                param="conversation",
            )
        return value
    raise InvalidRequest("Invalid 'conversation': expected an ID or {'id': ...}.", param="conversation")


def load_create(body: Any, *, reasoning_allowed: bool) -> CreateRequest:
    """Check a create body; raise ``InvalidRequest`` naming the parameter.
    ``reasoning_allowed``: the upstream takes reasoning options (a Responses
    API upstream does, a chat one cannot)."""
    if isinstance(body, dict) and body.get("model") is None:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    data = load(_SCHEMA, body)
    for name, off in UNSUPPORTED.items():
        if data.get(name) not in off:
            raise _unsupported(name)
    if data.get("reasoning") and not reasoning_allowed:
        raise InvalidRequest(
            "Unsupported parameter: 'reasoning' cannot be passed to this server's model server "
            "(SMG_HISTORY_UPSTREAM_API is 'chat'); leave it out.",
            param="reasoning",
            code="unsupported_parameter",
        )
    conversation = _conversation_id(data.get("conversation"))
    previous = data.get("previous_response_id")
    if conversation is not None and previous is not None:
        raise InvalidRequest(
            "Mutually exclusive parameters: 'previous_response_id' and 'conversation' cannot both be given; "
            "send one of them.",
            param="conversation",
            code="mutually_exclusive_parameters",
        )
    if previous is not None and not previous.startswith("resp"):
        raise InvalidRequest(
            f"Invalid 'previous_response_id': '{previous}'. Expected an ID that begins with 'resp'.",
            param="previous_response_id",
        )
    raw_input = data.get("input")
    if isinstance(raw_input, str):
        raw_input = [{"role": "user", "content": raw_input}]
    elif raw_input is None:
        raw_input = []
    elif not isinstance(raw_input, list):
        raise InvalidRequest("Invalid 'input': expected a string or a list of items.", param="input")
    if not raw_input and conversation is None:
        raise InvalidRequest("Missing required parameter: 'input'.", param="input")
    tools = _tools(data.get("tools") or [])
    return CreateRequest(
        model=data["model"],
        input=raw_input,
        instructions=data.get("instructions"),
        previous_response_id=previous,
        conversation=conversation,
        store=data.get("store") is not False,
        stream=data.get("stream") is True,
        tools=tools,
        tool_choice=_tool_choice(data.get("tool_choice"), tools),
        parallel_tool_calls=data.get("parallel_tool_calls") is not False,
        temperature=data.get("temperature"),
        top_p=data.get("top_p"),
        max_output_tokens=data.get("max_output_tokens"),
        metadata=data.get("metadata") or {},
        text_format=_text_format(data.get("text")),
        truncation=data.get("truncation") or "disabled",
        reasoning=data.get("reasoning"),
        user=data.get("user"),
        safety_identifier=data.get("safety_identifier"),
        service_tier=data.get("service_tier"),
    )
