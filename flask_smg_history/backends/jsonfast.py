"""The one JSON parser for what the backends read back, and the writer of
what Redis stores, of PostgreSQL's one-item append and of the hybrid cache:
orjson when it is installed (the ``postgres`` and ``redis`` extras bring
it), else the standard library's.

Why a module of its own: a read parses the JSON of every item it returns (20
per ``recent`` call), and that was the largest share of a read's client time
after the driver's own work (profiled: ``json.loads`` about 3 µs an item,
orjson under 1). The SQL engines get it as SQLAlchemy's ``json_deserializer``
(which configures psycopg, psycopg2 and sqlite3 with it); the Redis codec and
Oracle's CLOB column call it directly.

orjson differs from ``json`` on documents ``json`` itself can write. It
refuses ``NaN`` and ``Infinity`` (a float given through the Python API) and
lone surrogates: such text falls back to ``json``. And it reads an integer
beyond 64 bits as a float, silently: so text with a run of 19 or more digits
(which holds every such integer) goes to ``json`` too. Both parsers then
accept exactly the same documents and give the same values
(``tests/test_jsonfast.py``).

``dumps`` writes what ``json.dumps`` would, compactly, as text that reads back
to the same value (orjson writes non-ASCII characters as they are, where
``json`` escapes them). Where orjson would write something else it hands the
value to ``json``: NaN and the infinities (which orjson writes as ``null``),
integers beyond 64 bits, keys that are not strings and subclasses of the
JSON types (which ``json`` converts by its own rules), and lone surrogates.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # a plain install: json alone
    orjson = None  # type: ignore[assignment]


#: Every ASCII digit made a ``0``: a run of 19 digits (long enough to hold an
#: integer orjson would make a float) is then one ``bytes.find``, about a
#: tenth of a regular expression's cost, which would cost more than ``json``.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


#: Subclasses of str, int, dict and list, dataclasses and datetimes are not
#: written by orjson's own rules but handed back (to ``json``, which writes
#: or refuses them by its rules).
_HAND_BACK = (
    0
    if orjson is None
    else orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
)


def dumps(value: Any) -> str:
    """Compact JSON text of a value ``json.dumps`` accepts, reading back as
    what it writes (about 1 µs for a chat message against 5 for ``json``)."""
    if orjson is not None:
        try:
            out = orjson.dumps(value, option=_HAND_BACK)
        except TypeError:  # orjson.JSONEncodeError: something json writes by its own rules
            pass
        else:
            if b"null" not in out:  # else maybe a NaN or infinity, which orjson writes as null
                return out.decode()
    return json.dumps(value, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """Parse one JSON document, as ``json.loads`` would."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    if orjson is not None and raw.translate(_DIGITS_AS_ZERO).find(_LONG_RUN) < 0:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # something only json reads (NaN, big integers, lone surrogates), or bad JSON: json says which
    return json.loads(text)
