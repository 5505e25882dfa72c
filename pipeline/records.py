"""The records that flow through the loop, and decoding one raw record into its wire model.

`Envelope` (raw bytes from a source, with their `Position`) → the runner decodes it with
`decode_record` → `Judged` (an event and its verdict) or `DeadLetter` → a `Batch` that a
sink writes in one transaction with the positions it covers.

Every source shares the decoder, so a record is judged the same way wherever it comes
from: bad bytes raise a `RecordError` with a reason a person can act on (the caller turns
it into a dead letter or an error line), never an exception that stops the stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import IO, TYPE_CHECKING, NamedTuple, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.errors import JwtriageError
from pipeline.limits import MAX_JSON_DEPTH, MAX_RECORD_BYTES, nesting_exceeds
from pipeline.models import AuthFailureEvent, JwksSnapshot

if TYPE_CHECKING:
    from pipeline.engine.classify import Verdict

class RecordKind(StrEnum):
    EVENT = "event"
    SAMPLE = "sample"
    SNAPSHOT = "snapshot"


class Position(NamedTuple):
    """Where a record came from: a topic partition and offset, or a file and line.

    A NamedTuple rather than a frozen dataclass, and `Envelope` and `Judged` are plain
    dataclasses, read-only by convention: one of each is made per record, and a frozen
    dataclass costs ~0.8 µs more per instance (`object.__setattr__` for each field).
    """

    source: str
    partition: int
    offset: int


@dataclass(slots=True)
class Envelope:
    """One raw record as a source delivers it."""

    kind: RecordKind
    value: bytes
    position: Position


@dataclass(slots=True)
class Judged:
    """An event and its verdict: one row of the `classifications` table."""

    event: AuthFailureEvent
    verdict: Verdict
    position: Position


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that failed its wire model, kept with the reason and a token-free excerpt."""

    kind: RecordKind
    position: Position
    reason: str
    excerpt: str
    received_at: datetime


@dataclass(slots=True)
class Batch:
    """What one step produced; a sink writes it atomically with `positions`."""

    judged: list[Judged] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    snapshots: list[JwksSnapshot] = field(default_factory=list)
    positions: dict[tuple[str, int], int] = field(default_factory=dict)
    timeline_changed: bool = False
    skipped: dict[str, int] = field(default_factory=dict)  # event format → records it skipped (no JWT rejection)
    # (how many `judged` come before it, its output line): verdicts printed straight from their event's line
    # (`Pipeline(reused_lines=True)`, for `classify`'s JSON lines only; see `engine.line_reuse`)
    lines: list[tuple[int, bytes]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.judged) + len(self.lines) + len(self.dead_letters) + len(self.snapshots)

M = TypeVar("M", bound=BaseModel)

#: A record larger than this is a dead letter, not parsed (real events are a few KB); see `pipeline.limits`.
DEFAULT_MAX_RECORD_BYTES = MAX_RECORD_BYTES


class RecordError(JwtriageError, ValueError):
    """Why raw bytes are not a valid record."""


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"]
    if first["type"] == "timezone_aware":
        message = "a time needs a UTC offset (e.g. 2026-11-29T10:00:00Z)"
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {message}{more}" if where else f"{message}{more}"


def decode_record(raw: bytes, model: type[M], max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> M:
    """Validate `raw` against `model`; raises `RecordError` with the reason."""
    if len(raw) > max_bytes:
        raise RecordError(f"record is {len(raw):,} bytes, over the {max_bytes:,}-byte limit")
    if not raw.isascii():  # ASCII is UTF-8: skip building a str only to throw it away
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(f"not UTF-8 (byte {exc.start})") from None
    if nesting_exceeds(raw):  # one depth for every reader and writer after this one (`pipeline.limits`)
        raise RecordError(f"not JSON: nested deeper than {MAX_JSON_DEPTH} levels (the recursion limit)")
    try:
        # The validator itself: `model_validate_json` only forwards its keyword defaults to it,
        # which is a fifth of the cost of decoding a small event.
        record: M = model.__pydantic_validator__.validate_json(raw)
        return record
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise RecordError(f"not JSON: {exc.errors()[0]['msg']}") from None
        raise RecordError(_describe(exc)) from None
    except (ValueError, RecursionError) as exc:  # deeply nested or otherwise unparseable
        raise RecordError(f"not JSON: {exc}") from None


def iter_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, line without its newline), skipping blank lines."""
    for number, line in enumerate(stream, start=1):
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield number, line
