"""Finding raw token material in bytes: every payload and signature segment, whole or in pieces.

A token's header is not a secret (the store keeps it, decoded); its payload and signature
segments are (with both, a token can be replayed). `SecretIndex` indexes every segment
after the first by overlapping base64url grams, so `find` reports any run of the haystack
that shares at least `gram + stride - 1` characters with one of them: a whole token, a
segment, or a fragment of one (a truncated excerpt included). Low-entropy grams (fewer than
six distinct characters, as in the all-zero signature of a psychic-signature attack) are
not indexed: binary files are full of them. It reads bytes, so it works on DuckDB files,
logs, HTML and Kafka values alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

_JWT_LIKE = re.compile(rb"[A-Za-z0-9_-]{10,}(?:\.[A-Za-z0-9_-]*){2,}")
_RUN = re.compile(rb"[A-Za-z0-9_-]+")


def tokens_in(values: Iterable[bytes]) -> set[str]:
    """Every token in raw records: each JSON `token` field, and anything token-shaped in any bytes."""
    found: set[str] = set()
    for value in values:
        try:
            doc = json.loads(value)
        except (ValueError, RecursionError):
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("token"), str) and doc["token"]:
            found.add(doc["token"])
        found.update(m.group().decode() for m in _JWT_LIKE.finditer(value))
    return found


def secret_segments(token: str, minimum: int) -> list[str]:
    """The parts of a token that are credentials: every segment after the header (a JWE has four)."""
    return [s for s in token.split(".")[1:] if len(s) >= minimum]


@dataclass(frozen=True)
class Leak:
    where: str
    token: str
    fragment: str

    def __str__(self) -> str:
        return f"{self.where}: {self.fragment[:40]}… (from token {self.token[:25]}…)"


class SecretIndex:
    def __init__(self, tokens: Iterable[str], gram: int = 12, stride: int = 4) -> None:
        self.gram = gram
        self.grams: dict[bytes, str] = {}
        self.segments = 0
        for token in tokens:
            for segment in secret_segments(token, gram):
                self.segments += 1
                raw = segment.encode()
                starts = [*range(0, len(raw) - gram + 1, stride), len(raw) - gram]
                for start in starts:
                    piece = raw[start : start + gram]
                    if len(set(piece)) >= 6:  # not "AAAAAAAAAAAA" (an all-zero signature): bytes are full of those
                        self.grams.setdefault(piece, token)

    def find(self, haystack: bytes, where: str, limit: int = 5) -> list[Leak]:
        leaks: list[Leak] = []
        gram, grams = self.gram, self.grams
        for run in _RUN.finditer(haystack):
            text = run.group()
            if len(text) < gram:
                continue
            for start in range(len(text) - gram + 1):
                token = grams.get(text[start : start + gram])
                if token is not None:
                    leaks.append(Leak(where, token, text.decode(errors="replace")))
                    break
            if len(leaks) >= limit:
                break
        return leaks
