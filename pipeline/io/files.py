"""JSONL files as a source: a backfill, `jwtriage classify`, and the simulator's output.

A file's position is its line number, so a backfill that is run twice writes the same
rows again rather than new ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.io.base import DEFAULT_BATCH_SIZE, chunked
from pipeline.records import Envelope, Position, RecordKind, iter_lines


def file_envelopes(path: Path, kind: RecordKind) -> Iterator[Envelope]:
    """Each non-blank line of a JSONL file; the position is (path, 0, line number)."""
    source = str(path)
    with path.open("rb") as stream:
        for number, line in iter_lines(stream):
            yield Envelope(kind, line, Position(source, 0, number))


@dataclass
class FileSource:
    """A backfill from files: snapshots first, then samples, then events (so joins find their partner)."""

    events: Path
    snapshots: Path | None = None
    samples: Path | None = None
    batch_size: int = DEFAULT_BATCH_SIZE

    def batches(self) -> Iterator[list[Envelope]]:
        for path, kind in ((self.snapshots, RecordKind.SNAPSHOT), (self.samples, RecordKind.SAMPLE)):
            if path is not None:
                yield from chunked(file_envelopes(path, kind), self.batch_size)
        yield from chunked(file_envelopes(self.events, RecordKind.EVENT), self.batch_size)
