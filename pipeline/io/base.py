"""The contracts every source and sink keeps, and the batching they share.

A source yields lists of `Envelope`s, one list per unit of work; a source that waits for
records (Kafka) yields an empty list when a poll brought nothing, so the loop can do its
idle work, and ends when it is finished or asked to stop. A source whose consumers track
their own progress (a Kafka group) also implements `commit`. A sink stores a `Batch`
together with the source positions it covers, or nothing at all.

`runner.run` is the only loop that joins them; the order of a step (decode → join →
classify → write → commit) is written down there once.

Key snapshots have a contract of their own, `SnapshotSink`: `jwtriage jwks-watch` hands
each snapshot it publishes to one (a JSONL file, a Kafka topic, or a list in tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

from pipeline.engine.keys import KeyTimeline
from pipeline.models import JwksSnapshot
from pipeline.records import Batch, Envelope

#: Records per unit of work (one transaction in the store) unless a source says otherwise.
DEFAULT_BATCH_SIZE = 2_000


class Source(Protocol):
    """Yields lists of envelopes; a list is one unit of work for the pipeline and the sink (empty: nothing came)."""

    def batches(self) -> Iterator[list[Envelope]]: ...


@runtime_checkable
class CommittingSource(Source, Protocol):
    """A source that is told how far the sink got, once the sink has stored a batch (a Kafka consumer group).

    `positions` maps (source, partition) to the next offset to read. The sink's own copy of
    the positions is the truth after a crash; this commit is for whoever reads the source
    next (another group member after a rebalance) and for lag.
    """

    def commit(self, positions: dict[tuple[str, int], int]) -> None: ...


class Sink(Protocol):
    """Where batches go. `write` must store the batch and its positions together, or not at all."""

    def write(self, batch: Batch, timeline: KeyTimeline) -> None: ...


class SnapshotSink(Protocol):
    """Where `jwks-watch` publishes key snapshots; `publish` returns once one is durably handed over, or raises."""

    def publish(self, snapshot: JwksSnapshot) -> None: ...

    def close(self) -> None: ...


def chunked(envelopes: Iterable[Envelope], size: int) -> Iterator[list[Envelope]]:
    """Lists of at most `size` envelopes, in order."""
    batch: list[Envelope] = []
    for envelope in envelopes:
        batch.append(envelope)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def handed_over(*parts: list[Envelope]) -> list[Envelope]:
    """One new list of every part's envelopes, in order; each part is left empty.

    For a source whose client keeps its callers' frames alive: kafka-python's poll, when its wait
    times out (a follower's `poll(timeout_ms=0)` nearly always does), raises and catches a
    timeout whose traceback sits in a reference cycle, and a returned frame that a traceback
    reaches (through `f_back`) keeps the locals it returned with. A poll that returned its
    envelopes from a local kept the whole unit (records, envelopes, values) alive until the
    cyclic GC found it, and every young collection walked all the units kept so far. Parts
    emptied here, and no list of them left in the caller's locals, leave nothing to keep.
    """
    joined = [envelope for part in parts for envelope in part]
    for part in parts:
        part.clear()
    return joined
