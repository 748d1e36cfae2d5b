"""Full-text search over one owner's history: the query language, the text an
item is found by, hits, cursors and snippets, shared by every backend.

What is searched: an item's text (``SEARCHED_FIELDS``: message and reasoning
text parts, tool-call arguments, inputs and outputs) and the values of its
conversation's metadata. What is not: response records (their input and
output are not conversation items), metadata keys, IDs, item types and roles.

**The query** is what PostgreSQL's ``websearch_to_tsquery`` reads, and this
module parses it the same way for the other backends: words, ``"quoted
phrases"``, ``-excluded`` words or phrases, and ``or`` between alternatives
(``deploy failed or "rolled back" -staging``). A term is a word, a
punctuation-joined word (``foo-bar``, matched as a phrase) or a quoted phrase;
what holds no letter or digit is ignored, so a query of operators and
punctuation only, or an alternative with nothing left to find (only
exclusions), is refused with a 400 naming ``q``.

**The order** is the same on every backend, so pages never depend on the
store: conversations by last activity, newest first (``updated_at``, then ID),
and within one conversation its metadata hit first, then its items from the
newest (highest position) back. A hit's ``id`` is its cursor: it holds that
sort key, so paging continues after it even when that item is deleted
meanwhile. (``rank`` is the backend's relevance score, shown and not sorted on.)

The memory, file and Redis backends match whole words case-insensitively
(``fold``); PostgreSQL and SQLite use their text search (stemmed words); the
differences are in docs/store-api.md.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from .errors import InvalidRequest
from .records import Conversation, Item, Page

#: Longest query accepted, in characters (after trimming spaces).
MAX_QUERY_CHARS = 256

#: Where an item's searched text is, as (field, how): ``text`` a string field;
#: ``parts`` a string or a list of content parts whose ``text`` is taken. The
#: SQL index expressions (``backends/sql/fulltext.py``) and the Redis script
#: select the same strings.
SEARCHED_FIELDS: tuple[tuple[str, str], ...] = (
    ("content", "parts"),  # messages (input_text, output_text, text parts), reasoning content
    ("summary", "parts"),  # reasoning summaries
    ("arguments", "text"),  # function, MCP and custom tool calls
    ("input", "text"),  # custom tool calls
    ("output", "parts"),  # function, MCP and custom tool outputs: a string or content parts
)

#: A word: a run of letters and digits (``_`` and punctuation separate words).
WORD = re.compile(r"[^\W_]+")
_TOKEN = re.compile(r'[^\s"]+')

#: Where a backend's own highlighter (PostgreSQL's ``ts_headline``, SQLite's
#: ``snippet``) marks a match; ``marked`` turns them into ``<mark>``. Unicode
#: noncharacters, which text exchanged between programs does not hold.
START_MARK, STOP_MARK = "\ufdd0", "\ufdd1"
#: A snippet's length around its first match, in characters.
SNIPPET_BEFORE, SNIPPET_CHARS = 60, 200


@dataclass(frozen=True)
class Term:
    """One thing to find (or, ``negated``, to exclude): ``text`` as typed and
    its ``words``, matched as consecutive words."""

    text: str
    words: tuple[str, ...]
    negated: bool = False

    @property
    def folded(self) -> str:
        """The words, case-folded and space-separated, as ``fold`` leaves text."""
        return " ".join(word.casefold() for word in self.words)


@dataclass(frozen=True)
class SearchQuery:
    """A parsed query: ``text`` as typed (trimmed; PostgreSQL parses it
    itself) and its alternatives, each terms that must all hold."""

    text: str
    alternatives: tuple[tuple[Term, ...], ...]

    @classmethod
    def parse(cls, q: Any) -> SearchQuery:
        if not isinstance(q, str):
            raise InvalidRequest("Invalid 'q': expected a string.", param="q")
        text = q.strip()
        if not text:
            raise InvalidRequest("Invalid 'q': the query is empty; type the words to search for.", param="q")
        if len(text) > MAX_QUERY_CHARS:
            raise InvalidRequest(
                f"Invalid 'q': the query is {len(text)} characters long; at most {MAX_QUERY_CHARS} are allowed.",
                param="q",
            )
        if "\x00" in text:
            raise InvalidRequest("Invalid 'q': the query contains the NUL character.", param="q")
        alternatives = [alternative for alternative in _alternatives(text) if alternative]
        if not alternatives:
            raise InvalidRequest(
                "Invalid 'q': the query has no word to search for, only operators or punctuation.", param="q"
            )
        if any(all(term.negated for term in alternative) for alternative in alternatives):
            raise InvalidRequest(
                "Invalid 'q': the query excludes words ('-word') but has nothing to find; "
                "add a word that results must contain.",
                param="q",
            )
        return cls(text, tuple(tuple(alternative) for alternative in alternatives))

    @property
    def wanted(self) -> list[Term]:
        """Every term to find, of every alternative (for highlighting)."""
        return [term for alternative in self.alternatives for term in alternative if not term.negated]

    def matches(self, folded: str) -> bool:
        """Whether texts, as ``fold`` left them, satisfy the query: for some
        alternative, every wanted term occurs in them as whole words and no
        excluded term does."""
        padded = f" {folded} "
        return any(
            all((f" {term.folded} " in padded) != term.negated for term in alternative)
            for alternative in self.alternatives
        )


def _alternatives(text: str) -> list[list[Term]]:
    """Split ``text`` as ``websearch_to_tsquery`` does: ``"`` opens a phrase
    (to the next ``"`` or the end), ``-`` right before a term excludes it, a
    bare ``or`` separates alternatives."""
    alternatives: list[list[Term]] = [[]]
    pos, end = 0, len(text)
    while pos < end:
        if text[pos].isspace():
            pos += 1
            continue
        negated = text[pos] == "-" and pos + 1 < end and not text[pos + 1].isspace()
        if negated:
            pos += 1
        if text[pos] == '"':
            close = text.find('"', pos + 1)
            close = end if close < 0 else close
            raw, pos = text[pos + 1 : close], close + 1
        else:
            token = _TOKEN.match(text, pos)
            assert token is not None  # text[pos] is neither a space nor a quote
            raw, pos = token.group(), token.end()
            if raw.lower() == "or" and not negated:
                alternatives.append([])
                continue
        words = tuple(WORD.findall(raw))
        if words:
            alternatives[-1].append(Term(raw, words, negated))
    return alternatives


def fold(texts: Iterable[str]) -> str:
    """Texts as the memory backend matches them: case-folded words separated
    by single spaces, each text on a line of its own (so a phrase never
    spans two texts)."""
    return " \n ".join(" ".join(WORD.findall(text.casefold())) for text in texts)


def item_texts(payload: dict[str, Any]) -> list[str]:
    """The searched strings of an item, in ``SEARCHED_FIELDS`` order."""
    out: list[str] = []
    for name, how in SEARCHED_FIELDS:
        value = payload.get(name)
        if isinstance(value, str):
            out.append(value)
        elif how == "parts" and isinstance(value, list):
            out += [part["text"] for part in value if isinstance(part, dict) and isinstance(part.get("text"), str)]
    return out


def metadata_texts(metadata: dict[str, str]) -> list[str]:
    """The searched strings of a conversation's metadata: its values."""
    return [value for value in metadata.values() if isinstance(value, str)]


# -- hits and cursors ------------------------------------------------------------
#: Where a metadata hit sorts within its conversation: above every item.
METADATA_POSITION: None = None


@dataclass(frozen=True)
class Cursor:
    """A hit's place in the order: its conversation's ``updated_at`` and ID,
    and its item's position (``None``: the conversation's metadata)."""

    updated_at: float
    conversation_id: str
    position: int | None

    def encode(self) -> str:
        raw = json.dumps([self.updated_at, self.conversation_id, self.position], separators=(",", ":"))
        return "hit_" + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: Any) -> Cursor:
        """Parse ``after``; anything this module did not encode is a 400."""
        bad = InvalidRequest(
            f"Invalid 'after': {str(value)[:80]!r} is not a search cursor; pass the 'id' of a hit "
            "(or the page's 'last_id').",
            param="after",
        )
        if not isinstance(value, str) or not value.startswith("hit_") or len(value) > 1024:
            raise bad
        body = value[4:]
        try:
            decoded = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError):
            raise bad from None
        if not (isinstance(decoded, list) and len(decoded) == 3):
            raise bad
        updated_at, conversation_id, position = decoded
        if (
            isinstance(updated_at, bool)
            or not isinstance(updated_at, (int, float))
            or not isinstance(conversation_id, str)
            or not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", conversation_id)
            or not (position is None or (isinstance(position, int) and not isinstance(position, bool)))
        ):
            raise bad
        return cls(float(updated_at), conversation_id, position)

    def precedes(self, updated_at: float, conversation_id: str, position: int | None) -> bool:
        """Whether a hit at this place comes after the cursor in the order
        (so belongs to the next page)."""
        if updated_at != self.updated_at:
            return updated_at < self.updated_at
        if conversation_id != self.conversation_id:
            return conversation_id < self.conversation_id
        if self.position is None:
            return position is not None
        return position is not None and position < self.position


@dataclass
class SearchHit:
    """One match: the conversation, the item (``None`` for a match in the
    conversation's metadata), a snippet of the matched text with each match
    in ``<mark>`` (everything else HTML-escaped) and the backend's relevance
    ``rank`` (higher is more relevant)."""

    conversation_id: str
    conversation_updated_at: float
    conversation_metadata: dict[str, str]
    snippet: str
    rank: float
    item_id: str | None = None
    item_type: str | None = None
    role: str | None = None
    item_created_at: float | None = None
    position: int | None = None

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.conversation_updated_at, self.conversation_id, self.position)

    @property
    def id(self) -> str:
        """The hit's cursor, encoded: pass it as ``after`` for what follows."""
        return self.cursor.encode()


@dataclass
class SearchPage(Page[SearchHit]):
    """A page of hits. ``resume`` is set when a backend stopped scanning
    before the page was full (Redis' bounded scan): the cursor to continue
    from, which is then ``last_id`` (and ``has_more`` is true)."""

    resume: str | None = field(default=None)

    @property
    def last_id(self) -> str | None:
        return self.resume or super().last_id


def scanned_hit(
    query: SearchQuery, conversation_id: str, updated_at: float, metadata: dict[str, str], item: Item | None
) -> SearchHit:
    """The hit of a backend that matched by scanning (memory, Redis): its
    snippet and rank (the number of matches) made here from the text."""
    texts = metadata_texts(metadata) if item is None else item_texts(item.payload)
    snippet, count = highlight(texts, query)
    if item is None:
        return SearchHit(conversation_id, updated_at, dict(metadata), snippet, float(count))
    return SearchHit(
        conversation_id,
        updated_at,
        dict(metadata),
        snippet,
        float(count),
        item_id=item.id,
        item_type=item.type,
        role=item.role,
        item_created_at=item.created_at,
        position=item.position,
    )


#: What ``scan`` reads of a conversation: its items, newest first, each as
#: its position and a function that reads it (``None``: gone meanwhile).
ItemsNewestFirst = Callable[[Conversation], Iterable[tuple[int, Callable[[], "Item | None"]]]]


def scan(
    query: SearchQuery,
    conversations: Iterable[Conversation],
    items: ItemsNewestFirst,
    *,
    after: Cursor | None,
    limit: int,
) -> SearchPage:
    """Search by reading (memory and file backends): walk ``conversations``
    (live, in search order: ``updated_at`` then ID, newest first), each one's
    metadata and then its items newest first, and keep what matches the
    folded text. An item is read only when it comes after ``after``, and the
    walk stops as soon as the page is full, so its cost is that of the texts
    it reads."""
    found: list[SearchHit] = []
    for conv in conversations:
        places: Iterable[tuple[int | None, Callable[[], Item | None] | None]] = chain([(None, None)], items(conv))
        for position, read in places:
            if after is not None and not after.precedes(conv.updated_at, conv.id, position):
                continue
            item = None if read is None else read()
            if read is not None and item is None:
                continue
            texts = metadata_texts(conv.metadata) if item is None else item_texts(item.payload)
            if query.matches(fold(texts)):
                found.append(scanned_hit(query, conv.id, conv.updated_at, conv.metadata, item))
                if len(found) > limit:
                    return SearchPage(found[:limit], has_more=True)
    return SearchPage(found, has_more=False)


# -- snippets --------------------------------------------------------------------
def _pattern(term: Term) -> re.Pattern[str]:
    words = r"[\W_]+".join(re.escape(word) for word in term.words)
    return re.compile(rf"(?<![^\W_]){words}(?![^\W_])", re.IGNORECASE)


def highlight(texts: Iterable[str], query: SearchQuery) -> tuple[str, int]:
    """A snippet of ``texts`` around the first match of a wanted term, every
    match in it marked, and the number of matches in all of them (the memory
    and Redis backends' rank). Without a match: the start of the first text."""
    patterns = [_pattern(term) for term in query.wanted]
    first: tuple[str, list[tuple[int, int]]] | None = None
    count = 0
    texts = list(texts)
    for text in texts:
        spans = sorted({m.span() for pattern in patterns for m in pattern.finditer(text)})
        count += len(spans)
        if spans and first is None:
            first = (text, spans)
    if first is None:
        return (_snippet(texts[0], []) if texts else ""), 0
    return _snippet(*first), count


def _snippet(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` cut to a window around the first span, HTML-escaped, spans
    in ``<mark>``, white space collapsed, ``…`` where it was cut."""
    start = 0
    if spans and spans[0][0] > SNIPPET_BEFORE:
        start = spans[0][0] - SNIPPET_BEFORE
        space = text.find(" ", start, spans[0][0])
        start = space + 1 if space >= 0 else start
    stop = min(len(text), start + SNIPPET_CHARS)
    if stop < len(text):
        space = text.rfind(" ", start + SNIPPET_CHARS // 2, stop)
        stop = space if space > 0 else stop
    out, at = [], start
    for span_start, span_end in spans:
        if span_start < at or span_start >= stop:
            continue
        out.append(html.escape(text[at:span_start]))
        out.append(f"<mark>{html.escape(text[span_start:span_end])}</mark>")
        at = span_end
    out.append(html.escape(text[at : max(at, stop)]))
    body = re.sub(r"\s+", " ", "".join(out)).strip()
    return ("…" if start > 0 else "") + body + ("…" if stop < len(text) else "")


def marked(text: str) -> str:
    """A snippet from a backend's highlighter (matches between ``START_MARK``
    and ``STOP_MARK``) as ``highlight`` makes them: HTML-escaped, matches in
    ``<mark>``, white space collapsed, at most ``SNIPPET_CHARS`` characters of
    text."""
    out, open_mark, length = [], False, 0
    for piece in re.split(f"([{START_MARK}{STOP_MARK}])", text):
        if piece in (START_MARK, STOP_MARK):
            if (piece == START_MARK) != open_mark:
                out.append("<mark>" if piece == START_MARK else "</mark>")
                open_mark = not open_mark
            continue
        piece = re.sub(r"\s+", " ", piece)
        if length + len(piece) > SNIPPET_CHARS:
            piece = piece[: max(0, SNIPPET_CHARS - length)].rstrip() + "…"
        length += len(piece)
        out.append(html.escape(piece))
        if piece.endswith("…") and length >= SNIPPET_CHARS:
            break
    if open_mark:
        out.append("</mark>")
    return "".join(out).strip()
