"""In-memory sources and sinks: the test doubles beside Kafka, JSONL files and DuckDB, and the demo's merged streams."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.engine.keys import KeyTimeline
from pipeline.io.base import DEFAULT_BATCH_SIZE, chunked
from pipeline.models import JwksSnapshot
from pipeline.records import Batch, Envelope, Judged, Position, RecordKind


@dataclass
class ListSource:
    """Envelopes from memory, in the given order."""

    envelopes: Sequence[Envelope]
    batch_size: int = DEFAULT_BATCH_SIZE

    def batches(self) -> Iterator[list[Envelope]]:
        return chunked(self.envelopes, self.batch_size)

    def fetch(self, positions: Sequence[Position], max_bytes: int) -> dict[Position, bytes]:
        """Records again by position (a `pipeline.rejudge.RecordFetcher`), up to `max_bytes` in all."""
        wanted, found, spent = set(positions), {}, 0
        for envelope in self.envelopes:
            if envelope.position in wanted and spent < max_bytes:
                found[envelope.position] = envelope.value
                spent += len(envelope.value)
        return found


@dataclass
class ListSink:
    """Keeps every batch it is given, in order: assert on `batches` (or `judged`) in tests."""

    batches: list[Batch] = field(default_factory=list)

    def write(self, batch: Batch, timeline: KeyTimeline) -> None:
        self.batches.append(batch)

    @property
    def judged(self) -> list[Judged]:
        return [judged for batch in self.batches for judged in batch.judged]


@dataclass
class ListSnapshotSink:
    """Key snapshots kept in memory, in the order published: the `SnapshotSink` test double.

    With `fail=True` every publish raises, as an unreachable broker or a full disk would.
    """

    snapshots: list[JwksSnapshot] = field(default_factory=list)
    fail: bool = False

    def publish(self, snapshot: JwksSnapshot) -> None:
        if self.fail:
            raise OSError("sink unavailable")
        self.snapshots.append(snapshot)

    def close(self) -> None:
        pass


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
