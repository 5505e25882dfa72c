"""A unit the Kafka source polled is freed as soon as the loop lets go of it, not by the cyclic GC.

kafka-python's poll, when its wait times out (a follower's `poll(timeout_ms=0)` nearly always
does), raises and catches a timeout whose traceback sits in a reference cycle; through `f_back`
it reaches the frames that called the poll, and a frame that returned while so referenced keeps
the locals it returned with. `KafkaSource.poll` once returned its envelopes from a local: every
batch's records stayed alive until a young collection found them, and each such collection walked
all of them (bench/results.md, issue 22). The stand-in clients here time out the same way; the GC
is off, so only reference counting frees anything.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from kafka import TopicPartition

from pipeline.io import kafka as kafka_io
from pipeline.io.kafka_gaps import GapWatch
from pipeline.records import Envelope, RecordKind

FAILURES, SAMPLES, KEYS = "frames.failures", "frames.samples", "frames.jwks"


class Record(NamedTuple):
    offset: int
    value: bytes


class TimingOut:
    """A consumer whose every poll times out inside the way kafka-python's does, then hands over what it holds."""

    def __init__(self, topic: str, values: list[bytes]) -> None:
        self.records = {TopicPartition(topic, 0): [Record(n, v) for n, v in enumerate(values)]} if values else {}

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        state: dict[str, BaseException] = {}
        try:
            raise TimeoutError("the fetch wait timed out")
        except TimeoutError as exc:
            state["exception"] = exc  # the exception → its traceback → this frame → `state`: a cycle
        records, self.records = self.records, {}
        return records

    def committed(self, tp: TopicPartition) -> int | None:
        return None


def _source(events: list[bytes], samples: list[bytes], keys: list[bytes]) -> kafka_io.KafkaSource:
    source = object.__new__(kafka_io.KafkaSource)
    source.group = TimingOut(FAILURES, events)  # type: ignore[assignment]
    source.follower = TimingOut(SAMPLES, samples)  # type: ignore[assignment]
    source.keys_follower = TimingOut(KEYS, keys)  # type: ignore[assignment]
    source.kinds = {FAILURES: RecordKind.EVENT, SAMPLES: RecordKind.SAMPLE, KEYS: RecordKind.SNAPSHOT}
    source.stored_positions = {}
    source.max_records = 100
    source.gaps = GapWatch(lambda partitions: {})
    return source


def _alive() -> list[Envelope]:
    topics = {FAILURES, SAMPLES, KEYS}
    return [o for o in gc.get_objects() if isinstance(o, Envelope) and o.position.source in topics]


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
        gc.collect()


def test_a_polled_unit_is_freed_by_reference_counting_once_the_loop_lets_go() -> None:
    with _no_cyclic_gc():
        source = _source([b"event-1", b"event-2"], [b"sample-1"], [b"keys-1"])
        unit = source.poll()
        assert [(e.kind, e.value) for e in unit] == [
            (RecordKind.SNAPSHOT, b"keys-1"), (RecordKind.SAMPLE, b"sample-1"),
            (RecordKind.EVENT, b"event-1"), (RecordKind.EVENT, b"event-2"),
        ]
        del unit
        assert _alive() == []


def test_the_keys_drained_before_each_unit_are_freed_the_same_way() -> None:
    with _no_cyclic_gc():
        source = _source([], [], [b"keys-1", b"keys-2"])
        keys = source._drain_keys()
        assert [e.value for e in keys] == [b"keys-1", b"keys-2"]
        del keys
        assert _alive() == []
