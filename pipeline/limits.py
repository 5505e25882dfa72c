"""The one size and depth policy for untrusted JSON: records, token headers and payloads.

Every decoder and encoder on the way has a nesting limit of its own, and they disagree:
pydantic's reader stops at 200 levels, orjson reads 1,023 but writes only 253, Python's
`json` stops near its recursion limit (~1,000, less on a deep stack). A value that one
reads and the next cannot write used to stop the stream (a 1.5 KB token nested 300 deep
parsed, then `orjson.dumps` raised while storing it). So nesting is checked once, at the
edge, on the raw bytes, before any decoder runs, against a depth every later step handles:
a record deeper than `MAX_JSON_DEPTH` is a dead letter, a token header or payload deeper
than it is `malformed`. Real records and tokens nest a handful of levels.
"""

from __future__ import annotations

import re

#: A record larger than this is a dead letter, not parsed (real events are a few KB).
MAX_RECORD_BYTES = 1_048_576
#: A token longer than this is not parsed (real JWTs are a few KB); it is still fingerprinted.
#: A sampled token longer than this is a dead letter: nothing could be learnt from it.
MAX_TOKEN_BYTES = 256 * 1024
#: JSON nested deeper than this (arrays and objects) is refused, whatever reads it.
MAX_JSON_DEPTH = 64

#: A JSON string: its brackets do not nest. Unrolled (no per-character alternation), linear time.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(i for i in range(256) if i not in b"[]{}")
_CURLY_TO_SQUARE = bytes.maketrans(b"{}", b"[]")


def nesting_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text `raw` nests arrays and objects deeper than `limit`.

    Free for ordinary input: fewer than `limit` opening brackets in all cannot nest deeper
    (two C counts, ~0.1 µs for a token's payload; a flat object such as an event record is
    told apart first by `memchr` scans, half the counts' cost). Otherwise the strings are
    cut out, every byte but a bracket dropped, and the innermost pairs removed `limit`
    times over (each pass is one C `replace`): anything still paired is deeper. Unbalanced
    text answers False: it is not JSON, and the decoder says so.
    """
    if limit > 0 and raw.find(b"[") < 0 and raw.find(b"{", raw.find(b"{") + 1) < 0:  # at most one bracket
        return False
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(_CURLY_TO_SQUARE, _NOT_BRACKETS)
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return False
        brackets = shorter
    return b"[]" in brackets
