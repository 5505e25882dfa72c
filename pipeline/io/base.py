"""The two contracts every source and sink keeps, and the batching they share.

A source yields lists of `Envelope`s, one list per unit of work; a sink stores a `Batch`
together with the source positions it covers, or nothing at all. `runner.run` is the only
loop that joins them; the order of a step (decode → join → classify → write → commit) is
written down there once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from pipeline.engine.keys import KeyTimeline
from pipeline.records import Batch, Envelope

#: Records per unit of work (one transaction in the store) unless a source says otherwise.
DEFAULT_BATCH_SIZE = 2_000


class Source(Protocol):
    """Yields lists of envelopes; a list is one unit of work for the pipeline and the sink."""

    def batches(self) -> Iterator[list[Envelope]]: ...


class Sink(Protocol):
    """Where batches go. `write` must store the batch and its positions together, or not at all."""

    def write(self, batch: Batch, timeline: KeyTimeline) -> None: ...


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
