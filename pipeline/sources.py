"""Where records come from: JSONL files, in-memory lists (tests, the demo), and Kafka.

Every source yields lists of `Envelope`s; one list is one unit of work (one transaction
in the store). A file's position is its line number, so a backfill that is run twice
writes the same rows again rather than new ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.records import iter_lines
from pipeline.runner import Envelope, Position, RecordKind

DEFAULT_BATCH_SIZE = 2_000


def chunked(envelopes: Iterable[Envelope], size: int) -> Iterator[list[Envelope]]:
    batch: list[Envelope] = []
    for envelope in envelopes:
        batch.append(envelope)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class ListSource:
    """Envelopes from memory, in the given order: the test double beside the Kafka source."""

    envelopes: Sequence[Envelope]
    batch_size: int = DEFAULT_BATCH_SIZE

    def batches(self) -> Iterator[list[Envelope]]:
        return chunked(self.envelopes, self.batch_size)


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


@dataclass(frozen=True, slots=True)
class TimedRecord:
    """A record with the time it was produced, for interleaving streams as they would arrive."""

    ts: datetime
    kind: RecordKind
    value: bytes
    position: Position


def interleave(*streams: Iterable[TimedRecord]) -> Iterator[Envelope]:
    """Merge time-ordered streams into one, as a consumer of several topics would see them."""
    merged = heapq.merge(*streams, key=lambda r: r.ts)
    for record in merged:
        yield Envelope(record.kind, record.value, record.position)
