"""Decoding one raw record (a JSONL line or a Kafka message value) into a wire model.

Every source shares this, so a record is judged the same way wherever it comes from: bad
bytes become a `BadRecord` with a reason a person can act on, never an exception that
stops the stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.tokens import excerpt

M = TypeVar("M", bound=BaseModel)

#: A record larger than this is a dead letter, not parsed (real events are a few KB).
DEFAULT_MAX_RECORD_BYTES = 1_048_576


@dataclass(frozen=True, slots=True)
class BadRecord:
    """Input that fails its wire model: where it was, why, and a token-free excerpt."""

    source: str
    position: str
    reason: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.source}:{self.position}: {self.reason}"


class RecordError(ValueError):
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
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8 (byte {exc.start})") from None
    try:
        return model.model_validate_json(raw)
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


def read_jsonl(
    stream: IO[bytes], model: type[M], source: str, max_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> Iterator[M | BadRecord]:
    """Each line decoded; bad lines come back as `BadRecord` and the rest goes on."""
    for number, line in iter_lines(stream):
        try:
            yield decode_record(line, model, max_bytes)
        except RecordError as exc:
            yield BadRecord(source, str(number), str(exc), excerpt(line))


def open_input(name: str | Path, stdin: IO[bytes]) -> IO[bytes]:
    """A path, or `-` for standard input, opened for reading bytes."""
    return stdin if str(name) == "-" else open(name, "rb")
