"""The same batches judged from Kafka's envelopes and from copies made in memory, interleaved in one process.

    python bench/kafka_envelopes.py [--events 200000] [--rate 35000] [--keep-open]

Why: `Pipeline.process` cost +8 to +9 µs per event more on the burst's records read from Kafka than on
the same records replayed in process (bench/burst_replay.py; bench/results.md). The two runs differ
in the delivery (batches from several partitions), in the objects (kafka-python's values, the
envelopes `KafkaSource` builds) and in what runs beside them (kafka-python's IO threads, the broker).
This takes the delivery and the objects apart from the rest: the burst's own producer fills a fresh
topic, a consumer with `KafkaSource`'s fetch settings reads it into envelopes as `KafkaSource`
builds them, and two fresh pipelines judge the same batches, one the envelopes read, one copies of
them (new bytes, new envelopes, built in memory as the replay does), batch by batch, the order swapped
every batch. CPU is the main thread's (`time.thread_time`), per event, for `process` and the Arrow
build. `--keep-open` leaves the consumer open (its IO thread idle) while judging.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_note
from outage import outage_stream


def read_topic(topic: str, total: int, max_records: int) -> tuple[list[list[Any]], Any]:
    """`total` records of `topic` as `KafkaSource` hands them out: lists of envelopes, one per poll."""
    from bench_e2e import BOOTSTRAP
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.config import KafkaConfig
    from pipeline.io.kafka import fetch_options
    from pipeline.records import Envelope, Position, RecordKind

    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP.split(","), **fetch_options(KafkaConfig()),
                             group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                             max_poll_records=max_records)
    consumer.assign([TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())])
    batches: list[list[Any]] = []
    got = 0
    while got < total:
        polled = consumer.poll(timeout_ms=500, max_records=max_records)
        batch = [Envelope(RecordKind.EVENT, m.value or b"", Position(tp.topic, tp.partition, m.offset))
                 for tp, messages in polled.items() for m in messages]
        if batch:
            batches.append(batch)
            got += len(batch)
    return batches, consumer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=35_000.0)
    parser.add_argument("--control", action="store_true", help="both pipelines judge copies (the spread of the method)")
    parser.add_argument("--swap", action="store_true", help="make the copies' pipeline first (the order of creation)")
    parser.add_argument("--keep-open", action="store_true", help="judge with the consumer still open")
    args = parser.parse_args(argv)

    from bench_e2e import delete_topics, make_topics
    from bench_outage import _produce_stream
    from burst_load import start_load

    from pipeline.config import load_config
    from pipeline.io.verdict_table import classification_table
    from pipeline.records import Envelope, Position, RecordKind
    from pipeline.runner import Pipeline, streaming_gc

    files = outage_stream()
    topics = make_topics("bench-envelopes")
    try:
        _produce_stream(files, topics, count=0)
        load = start_load("java", files.events, topics.failures, [(args.events / args.rate, args.rate)])
        load.done.wait()
        load.join()
        total = load.acked[-1][1]
        batches, consumer = read_topic(topics.failures, total, 5_000)
        if not args.keep_open:
            consumer.close()
    finally:
        delete_topics(topics)
    copies = [[Envelope(RecordKind.EVENT, e.value[:1] + e.value[1:], Position(*e.position)) for e in batch]
              for batch in batches]
    assert all(a.value == b.value and a.value is not b.value for x, y in zip(batches, copies, strict=True)
               for a, b in zip(x, y, strict=True))
    print(f"{total:,} records in {len(batches)} polls (median {statistics.median(map(len, batches)):,.0f}); "
          f"value type {type(batches[0][0].value).__name__}; {load_note()}", flush=True)

    config = load_config(files.config, environ={"JWTRIAGE_HASH_KEY": "00" * 32})
    snapshots = [Envelope(RecordKind.SNAPSHOT, line, Position("auth.jwks", 0, n))
                 for n, line in enumerate(files.jwks.read_bytes().splitlines())]
    pipelines = {name: Pipeline(config) for name in (("copies", "kafka") if args.swap else ("kafka", "copies"))}
    for pipeline in pipelines.values():
        pipeline.process(snapshots)
    if args.control:
        batches = [[Envelope(e.kind, e.value[:1] + e.value[1:], e.position) for e in batch] for batch in copies]
    inputs = {"kafka": batches, "copies": copies}
    spent = {name: [0.0, 0.0] for name in pipelines}
    now = datetime.now(UTC)
    warm = Pipeline(config)  # the first build of a process loads pyarrow's kernels and time zones: not counted
    warm.process(snapshots)
    classification_table(warm.process(copies[0]).judged, now)
    del warm
    with streaming_gc():
        for index in range(len(batches)):
            names = ("kafka", "copies") if index % 2 == 0 else ("copies", "kafka")
            for name in names:
                started = time.thread_time()
                batch = pipelines[name].process(inputs[name][index])
                judged = time.thread_time()
                classification_table(batch.judged, now)
                spent[name][0] += judged - started
                spent[name][1] += time.thread_time() - judged
    for name, (process, build) in spent.items():
        print(f"{name:>7}: process {process / total * 1e6:5.2f} us/event, Arrow build {build / total * 1e6:5.2f} "
              f"(main thread CPU); reuse hits {pipelines[name].classifier.reuse.hits:,}")  # type: ignore[union-attr]
    print(load_note())
    if args.keep_open:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
