"""The stateful Responses API: ``POST /v1/responses`` and
``history.responses.create`` on any OpenAI-compatible model server.

A layer of its own, below the HTTP API and above the store (DESIGN.md): it
builds a turn's context from a conversation or a ``previous_response_id``
chain, calls the upstream through an adapter per upstream API (``chat.py``,
``responses_api.py``, or the host's in-process object), turns the answer into
OpenAI's output items and stream events (``events.py``), and hands the whole
turn to the store as one atomic write (``turn.py``). Backends know nothing of
upstreams.

An in-process upstream yields the deltas defined in ``upstream.py``.
"""

from .objects import response_object
from .request import PARAMETERS
from .turn import ResponsesService
from .upstream import (
    Delta,
    Finish,
    ModelName,
    OutputItem,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Upstream,
    UpstreamRequest,
    Usage,
)

__all__ = [
    "PARAMETERS",
    "Delta",
    "Finish",
    "ModelName",
    "OutputItem",
    "ReasoningDelta",
    "ResponsesService",
    "TextDelta",
    "ToolCallDelta",
    "Upstream",
    "UpstreamRequest",
    "Usage",
    "response_object",
]
