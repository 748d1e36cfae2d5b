"""Rated responses turned into OpenAI fine-tuning data, for ``flask
smg-history export --format chat-jsonl | preference-jsonl``.

Why here and not in the backends: the formats are built from what every
backend already serves (``owners``, ``list_feedback``, ``get_response``), so
one implementation covers them all, streamed: feedback is read a page at a
time and each example is written as soon as it is built.

**chat-jsonl** (supervised fine-tuning): one line per rated response,
``{"messages": [...], "tools": [...], "parallel_tool_calls": ...}`` in the
Chat Completions shapes OpenAI's fine-tuning reads:

- the rated response's ``instructions`` (a string) become the first, system,
  message; message items keep their role (``developer`` becomes ``system``,
  which the format has instead); a ``function_call`` becomes a ``tool_calls``
  entry of an assistant message (joined to the assistant message just before
  it) and a ``function_call_output`` a ``role: "tool"`` message with its
  ``tool_call_id``; ``reasoning`` items are left out (the format has no place
  for them);
- the context is the ``previous_response_id`` chain: each earlier response's
  input and output, oldest first, then the rated response's input, as the
  model saw them under OpenAI's semantics (what a chain no longer holds, by
  retention, is not there). Earlier answers carry ``"weight": 0``, so only
  the rated response's output (the last messages, ending with an assistant
  message) is trained on;
- function tools of the rated response become ``tools`` in the chat shape.

A response that did not complete (``status`` ``incomplete``: stopped, or
cut off by an error) is skipped, and so is one holding what the format
cannot express (an ``item_reference``,
a hosted tool call such as ``web_search_call`` or ``mcp_call``, a file or
audio part, an output that does not end with an assistant message) is
skipped, and counted by reason: a partial example would teach the model
answers to context it did not see.

**preference-jsonl** (DPO): ``{"input": {"messages": [...]}, "preferred_output":
[assistant message], "non_preferred_output": [assistant message]}``. Two rated
responses of the same owner form a pair when their inputs are the same (the
messages built as above, context included, plus tools) and one is rated
positive and the other negative: a regeneration (same input, same
``previous_response_id``) rated differently is the usual case. Every positive
answer is paired with every negative one of the same input (identical answers
are not paired); an answer that is not exactly one assistant message (DPO
trains on the last assistant message only) is skipped. Finding pairs needs
all candidates at once, so they are spilled to a temporary SQLite file on
disk and paired by a join there: memory stays flat, the disk holds about the
size of the output.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tempfile
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequest, NotFound
from .records import Feedback, Response
from .store import MAX_CHAIN

if TYPE_CHECKING:
    from .backends import Backend

FORMATS = ("chat-jsonl", "preference-jsonl")
#: Feedback read per page.
PAGE = 100
#: Responses kept for the chains of the next rated responses (the chains of
#: one conversation share their links).
CACHE = 256
#: Item types the chat formats leave out: hidden reasoning has no message.
DROPPED = frozenset({"reasoning"})


class Unsupported(Exception):
    """A response the format cannot hold; the message is the reason shown in
    the export's summary."""


# -- items to chat messages ------------------------------------------------------
def _content(content: Any, role: str) -> str | list[dict[str, Any]]:
    """Message content in the chat shape: a string for one text part, else a
    list of ``text`` (and, for the user, ``image_url``) parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise Unsupported("a message without content")
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and role == "user" and isinstance(part.get("image_url"), str):
            image = {"url": part["image_url"]}
            if part.get("detail") in ("auto", "low", "high"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise Unsupported(f"a message with a {kind} part")
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _assistant(item: dict[str, Any]) -> dict[str, Any] | None:
    """An assistant message item; refusal parts go to ``refusal``. None when
    it says nothing."""
    content = item.get("content")
    parts = content if isinstance(content, list) else [{"type": "output_text", "text": content}]
    refusals = [p.get("refusal") for p in parts if isinstance(p, dict) and p.get("type") == "refusal"]
    others = [p for p in parts if not (isinstance(p, dict) and p.get("type") == "refusal")]
    message: dict[str, Any] = {"role": "assistant"}
    if others:
        text = _content(others, "assistant")
        if text:
            message["content"] = text
    if refusals:
        if not all(isinstance(r, str) for r in refusals):
            raise Unsupported("a refusal without text")
        message["refusal"] = "".join(refusals)
    return message if len(message) > 1 else None


def _tool_output(item: dict[str, Any]) -> dict[str, Any]:
    output = item.get("output")
    if not isinstance(output, str):
        output = _content(output, "tool")
    if not isinstance(item.get("call_id"), str):
        raise Unsupported("a function_call_output without call_id")
    return {"role": "tool", "tool_call_id": item["call_id"], "content": output}


def chat_messages(items: Iterable[dict[str, Any]], *, weight: int | None = None) -> list[dict[str, Any]]:
    """Stored items (a response's input or output) as chat messages. A
    ``weight`` is put on each assistant message (0: context, not trained on)."""
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind in DROPPED:
            continue
        if kind == "message":
            role = item.get("role")
            if role == "assistant":
                message = _assistant(item)
                if message is None:
                    continue
            elif role in ("user", "system", "developer"):
                role = "user" if role == "user" else "system"
                message = {"role": role, "content": _content(item.get("content"), role)}
            else:
                raise Unsupported(f"a message with role {role}")
        elif kind == "function_call":
            name, arguments, call_id = item.get("name"), item.get("arguments"), item.get("call_id")
            if not all(isinstance(v, str) for v in (name, arguments, call_id)):
                raise Unsupported("a function_call without name, arguments or call_id")
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            if out and out[-1]["role"] == "assistant":
                out[-1].setdefault("tool_calls", []).append(call)
                continue
            message = {"role": "assistant", "tool_calls": [call]}
        elif kind == "function_call_output":
            message = _tool_output(item)
        else:
            raise Unsupported(f"a {kind} item")
        out.append(message)
    if weight is not None:
        for message in out:
            if message["role"] == "assistant":
                message["weight"] = weight
    return out


def _tools(rated: Response) -> dict[str, Any]:
    """The rated response's function tools in the chat shape, with its
    ``parallel_tool_calls``; other tools (hosted ones) have no chat shape and
    are left out."""
    tools = []
    for tool in rated.extra.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "function" and isinstance(tool.get("name"), str):
            function = {"name": tool["name"]}
            for key in ("description", "parameters", "strict"):
                if tool.get(key) is not None:
                    function[key] = tool[key]
            tools.append({"type": "function", "function": function})
    if not tools:
        return {}
    parallel = rated.extra.get("parallel_tool_calls")
    return {"tools": tools, **({"parallel_tool_calls": parallel} if isinstance(parallel, bool) else {})}


def _context(chain: list[Response], *, weight: int | None) -> list[dict[str, Any]]:
    """Instructions, the earlier turns of the chain and the rated input."""
    rated = chain[-1]
    messages: list[dict[str, Any]] = []
    instructions = rated.extra.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif isinstance(instructions, list):
        messages += chat_messages(instructions, weight=weight)
    for earlier in chain[:-1]:
        messages += chat_messages(earlier.input, weight=weight)
        messages += chat_messages(earlier.output, weight=weight)
    messages += chat_messages(rated.input, weight=weight)
    return messages


def _check_tool_calls(messages: list[dict[str, Any]]) -> None:
    """Every tool message answers a call made before it, and every call
    before the final answer is answered before the next message that is not
    a tool message, as the chat format requires."""
    open_calls: set[str] = set()
    for index, message in enumerate(messages):
        if message["role"] == "tool":
            if message["tool_call_id"] not in open_calls:
                raise Unsupported("a tool output without its call (the chain is incomplete)")
            open_calls.discard(message["tool_call_id"])
            continue
        if open_calls:
            raise Unsupported("a tool call without its output")
        if message["role"] == "assistant" and index < len(messages) - 1:
            open_calls = {call["id"] for call in message.get("tool_calls", [])}


def _answer(rated: Response) -> list[dict[str, Any]]:
    """The rated output as chat messages; a reply that did not complete (the
    user stopped it, the model failed half-way) is cut short, no example."""
    if rated.status not in ("completed", ""):
        raise Unsupported(f"status {rated.status}")
    return chat_messages(rated.output)


def chat_example(chain: list[Response]) -> dict[str, Any]:
    """The chat-jsonl line of the last response of ``chain`` (its
    ``previous_response_id`` ancestors before it, oldest first)."""
    answer = _answer(chain[-1])
    if not answer or answer[-1]["role"] != "assistant":
        raise Unsupported("an output that does not end with an assistant message")
    messages = _context(chain, weight=0) + answer
    _check_tool_calls(messages)
    return {"messages": messages, **_tools(chain[-1])}


def preference_parts(chain: list[Response]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The DPO ``input`` of the last response of ``chain`` and its answer,
    which must be one assistant message."""
    answer = _answer(chain[-1])
    if len(answer) != 1 or answer[0]["role"] != "assistant":
        raise Unsupported("an output that is not exactly one assistant message")
    messages = _context(chain, weight=None)
    if not messages or messages[-1]["role"] == "assistant":
        raise Unsupported("an input that does not end with a user or tool message")
    _check_tool_calls([*messages, answer[0]])
    return {"messages": messages, **_tools(chain[-1])}, answer[0]


# -- reading rated responses -----------------------------------------------------
class RatedResponses:
    """The rated responses of some owners with their chains, a page of
    feedback at a time (newest vote first, owner by owner). ``on_read`` is
    called for each vote read (the progress bar); ``skipped`` counts the
    responses left out, by reason."""

    def __init__(
        self,
        backend: Backend,
        owners: Iterable[str],
        *,
        rating: str | None,
        model: str | None,
        since: float | None,
        on_read: Callable[[], None] = lambda: None,
    ) -> None:
        self._backend, self._owners, self._on_read = backend, owners, on_read
        self._filters = {"rating": rating, "model": model, "since": since}
        self._cache: OrderedDict[tuple[str, str], Response | None] = OrderedDict()
        self.read = 0
        self.skipped: Counter[str] = Counter()

    def __iter__(self) -> Iterator[tuple[Feedback, list[Response]]]:
        for owner in self._owners:
            for feedback in self._votes(owner):
                self.read += 1
                self._on_read()
                chain = self._chain(owner, feedback.response_id)
                if chain is None:
                    self.skipped["a response deleted during the export"] += 1
                    continue
                yield feedback, chain

    def _votes(self, owner: str) -> Iterator[Feedback]:
        """Pages of one owner's feedback. When the vote a page ended on was
        withdrawn meanwhile (so it is no cursor any more), the page continues
        from the one before it, skipping what the last page already gave."""
        page = self._backend.list_feedback(owner, **self._filters, after=None, limit=PAGE)
        while True:
            yield from page.data
            if not page.has_more:
                return
            seen = [fb.id for fb in page.data]
            page = self._after(owner, seen)

    def _after(self, owner: str, seen: list[str]) -> Any:
        for cursor in reversed(seen):
            try:
                page = self._backend.list_feedback(owner, **self._filters, after=cursor, limit=PAGE)
            except InvalidRequest:
                continue
            page.data = [fb for fb in page.data if fb.id not in seen]
            return page
        raise InvalidRequest("Every vote of the last page was withdrawn during the export; run it again.")

    def _response(self, owner: str, response_id: str) -> Response | None:
        key = (owner, response_id)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        try:
            found: Response | None = self._backend.get_response(owner, response_id)
        except NotFound:
            found = None
        self._cache[key] = found
        if len(self._cache) > CACHE:
            self._cache.popitem(last=False)
        return found

    def _chain(self, owner: str, response_id: str) -> list[Response] | None:
        """The response and its ancestors, oldest first (as
        ``responses.chain``: up to ``MAX_CHAIN``, ending at a missing link)."""
        rated = self._response(owner, response_id)
        if rated is None:
            return None
        chain = [rated]
        while chain[-1].previous_response_id and len(chain) < MAX_CHAIN:
            previous = self._response(owner, chain[-1].previous_response_id)
            if previous is None:
                break
            chain.append(previous)
        return list(reversed(chain))


def chat_lines(rated: RatedResponses) -> Iterator[dict[str, Any]]:
    for _, chain in rated:
        try:
            yield chat_example(chain)
        except Unsupported as exc:
            rated.skipped[str(exc)] += 1


def preference_lines(rated: RatedResponses) -> Iterator[dict[str, Any]]:
    """Pairs of answers to the same input of the same owner, one rated
    positive and the other negative, found in a temporary SQLite file."""
    with tempfile.TemporaryDirectory(prefix="smg-history-pairs-") as folder:
        db = sqlite3.connect(Path(folder) / "answers.sqlite3")
        try:
            db.execute(
                "CREATE TABLE answers (digest TEXT, rating TEXT, created REAL, response TEXT, input TEXT, answer TEXT)"
            )
            for feedback, chain in rated:
                try:
                    prompt, answer = preference_parts(chain)
                except Unsupported as exc:
                    rated.skipped[str(exc)] += 1
                    continue
                text = _canonical(prompt)
                digest = hashlib.sha256(_canonical([feedback.owner, text]).encode()).hexdigest()
                db.execute(
                    "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                    (digest, feedback.rating, chain[-1].created_at, chain[-1].id, text, _canonical(answer)),
                )
            db.execute("CREATE INDEX answers_by_input ON answers (digest, rating)")
            pairs = db.execute(
                "SELECT p.input, p.answer, n.answer FROM answers p JOIN answers n"
                " ON n.digest = p.digest AND n.rating = 'negative'"
                " WHERE p.rating = 'positive' AND p.answer <> n.answer"
                " ORDER BY p.created, p.response, n.created, n.response"
            )
            for prompt, preferred, other in pairs:
                yield {
                    "input": json.loads(prompt),
                    "preferred_output": [json.loads(preferred)],
                    "non_preferred_output": [json.loads(other)],
                }
        finally:
            db.close()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
