"""Records the broker deletes before jwtriage reads them (issue 22), on the real broker (make kafka-up).

The 120 s burst lost 12.5% of its records to `log.retention.bytes` and jwtriage said nothing:
kafka-python reset the positions to the earliest offsets left and only logged it. Here the admin
client deletes records (`DeleteRecords`, what retention does to a segment) past where a consumer
stopped; its next run must say how many, where, in its log, its counter, its stats and the store.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from pathlib import Path

import duckdb
import pytest

from pipeline.commands.consume import consume
from pipeline.config import Config, load_config
from pipeline.io.consumer_health import RecordsLost, records_lost
from pipeline.io.kafka import client_options, produce, scenario_records
from pipeline.io.store_readers import connect_readonly
from pipeline.metrics import Metrics
from pipeline.simulator import simulate, write_scenario
from tests.kafka_helpers import KafkaAdminClient, KafkaConsumer, isolated_kafka_env, wait_for_broker

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import TopicPartition

pytestmark = pytest.mark.kafka

#: Records deleted from each partition of the failures topic, right past the consumer's position.
DELETE_PER_PARTITION = 25


def lost_counter(metrics: Metrics, topic: str) -> dict[int, float]:
    """jwtriage_records_lost_total per partition of `topic`, as exported."""
    found: dict[int, float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "jwtriage_records_lost_total" and sample.labels["topic"] == topic:
                found[int(sample.labels["partition"])] = sample.value
    return found


def stored_note(db: Path) -> RecordsLost | None:
    con: duckdb.DuckDBPyConnection = connect_readonly(db)
    try:
        return records_lost(con)
    finally:
        con.close()


def stored_offsets(db: Path, topic: str) -> dict[int, set[int]]:
    """Offsets of `topic` the store holds a row for (a verdict or a dead letter), per partition."""
    con = connect_readonly(db)
    try:
        rows = con.execute(
            "SELECT source_partition, source_offset FROM classifications WHERE source = ? UNION ALL "
            "SELECT source_partition, source_offset FROM dead_letters WHERE source = ?", [topic, topic]
        ).fetchall()
    finally:
        con.close()
    found: dict[int, set[int]] = {}
    for partition, offset in rows:
        found.setdefault(int(partition), set()).add(int(offset))
    return found


def ends(config: Config, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(**client_options(config.kafka))
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: int(offset) for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def run(config: Config, caplog: pytest.LogCaptureFixture) -> tuple[int, Metrics, list[str]]:
    """One consumer run to idle: (records lost by its stats, its metrics, the deletion warnings it logged)."""
    metrics = Metrics()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        stats = consume(config, instance="c0", exit_when_idle=1.5, publish_interval=0.5, metrics=metrics)
    said = [m for m in caplog.messages if m.startswith("broker deleted")]
    return stats.lost, metrics, said


def test_records_deleted_before_they_were_read_are_counted_logged_and_noted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wait_for_broker()
    prefix = f"r{uuid.uuid4().hex[:10]}"
    env = isolated_kafka_env(prefix)
    scenario = simulate(seed=7, events=1_200, hours=24)
    paths = write_scenario(scenario, tmp_path / "scenario")
    config = load_config(paths["config"], env, {"store": {"path": str(tmp_path / "store.duckdb")}})
    topic, samples = config.kafka.failures_topic, config.kafka.samples_topic
    records = list(scenario_records(scenario, config.kafka))
    half = len(records) // 2

    # A normal run says 0, everywhere.
    produce(config.kafka, records[:half])
    lost, metrics, said = run(config, caplog)
    assert lost == 0 and said == []
    first_counts = lost_counter(metrics, topic)
    assert first_counts and set(first_counts.values()) == {0.0}  # the series exist, at 0
    db = tmp_path / "store.duckdb"
    assert stored_note(db) is None
    read = ends(config, topic)  # where the consumer stopped: every partition read to its end
    read_samples = ends(config, samples)

    # While it is down the rest arrives, and the broker deletes the first records past its position.
    produce(config.kafka, records[half:])
    now = ends(config, topic)
    cut = {p: min(read[p] + DELETE_PER_PARTITION, now[p]) if read[p] else 0 for p in now}
    deleted = {p: cut[p] - read[p] for p in now if cut[p] > read[p]}
    assert sum(deleted.values()) >= DELETE_PER_PARTITION, f"too few new records per partition: {read} → {now}"
    # The samples topic too: its follower finds its stored position below the log start at start-up.
    now_samples = ends(config, samples)
    # Only partitions it read from: where nothing was ever read the store has no position to compare
    # (a partition a new consumer finds already trimmed has lost nothing of its).
    cut_samples = {p: min(read_samples[p] + 5, now_samples[p]) for p in now_samples if read_samples[p]}
    deleted_samples = {p: cut_samples[p] - read_samples[p] for p in cut_samples if cut_samples[p] > read_samples[p]}
    assert deleted_samples, f"no new samples: {read_samples} → {now_samples}"
    admin = KafkaAdminClient(**client_options(config.kafka))
    try:
        admin.delete_records({**{TopicPartition(topic, p): cut[p] for p in deleted},
                              **{TopicPartition(samples, p): cut_samples[p] for p in deleted_samples}},
                             timeout_ms=30_000)
    finally:
        admin.close()
    total = sum(deleted.values()) + sum(deleted_samples.values())

    lost, metrics, said = run(config, caplog)
    assert lost == total, said
    holes = [(topic, p, read[p], cut[p]) for p in deleted] + [
        (samples, p, read_samples[p], cut_samples[p]) for p in deleted_samples]
    expected = {
        f"broker deleted {end - start:,} records of {name}[{p}] (offsets {start:,}–{end - 1:,}) before jwtriage "
        "read them; hint: the topic's retention is shorter than the consumer's lag — raise retention.ms/bytes or "
        "add consumers"
        for name, p, start, end in holes
    }
    assert set(said) == expected and len(said) == len(expected)
    assert {p: v for p, v in lost_counter(metrics, topic).items() if v} == {p: float(n) for p, n in deleted.items()}
    assert {p: v for p, v in lost_counter(metrics, samples).items() if v} == {
        p: float(n) for p, n in deleted_samples.items()}
    note = stored_note(db)
    assert note is not None and note.records == total
    # Everything else was read: the store holds a row for every offset but the deleted ones.
    held = stored_offsets(db, topic)
    for p, end in now.items():
        assert held.get(p, set()) == set(range(end)) - set(range(read[p], cut[p])), p

    # The next run loses nothing, and the store still says what was lost.
    lost, _, said = run(config, caplog)
    assert lost == 0 and said == [], said
    note = stored_note(db)
    assert note is not None and note.records == total
