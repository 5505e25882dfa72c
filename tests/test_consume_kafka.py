"""`jwtriage consume` against the real local Kafka broker (make kafka-up): exactly once, whatever happens.

Each test uses its own topics and consumer group, so tests never see each other's records.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline.commands.consume import consume
from pipeline.config import KafkaConfig, load_config
from pipeline.io.kafka import produce, scenario_records
from pipeline.io.store_readers import connect_readonly, published_parts
from pipeline.io.store_schema import parts_dir
from pipeline.simulator import Scenario, simulate, write_scenario
from tests.kafka_helpers import KafkaConsumer, isolated_kafka_env, wait_for_broker

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Setup:
    """One test's topics, group, config and store."""

    env: dict[str, str]
    config_path: Path
    db: Path
    kafka: KafkaConfig
    scenario: Scenario
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def good_events(self) -> dict[str, str]:
        return {t["event_id"]: t["cause"] for t in self.scenario.truth if not t.get("dead_letter")}

    @property
    def bad_lines(self) -> int:
        return sum(1 for t in self.scenario.truth if t.get("dead_letter"))

    def consumer(self, instance: str = "c0", *extra: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "pipeline.cli", "consume", "--config", str(self.config_path), "--db",
                str(self.db), "--instance", instance, *extra]
        env = {**os.environ, **self.env}
        if log is None:
            process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        else:
            with log.open("wb") as stderr:  # the child keeps its own handle
                process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT)
        self.started.append(process)
        return process

    def stored(self) -> dict[str, str]:
        con = connect_readonly(self.db)
        try:
            return dict(con.execute("SELECT event_id, cause FROM classifications").fetchall())
        finally:
            con.close()

    def count(self, sql: str) -> int:
        con = connect_readonly(self.db)
        try:
            row = con.execute(sql).fetchone()
            return int(row[0]) if row else 0
        finally:
            con.close()


_SCENARIOS: dict[int, Scenario] = {}


def scenario(events: int) -> Scenario:
    if events not in _SCENARIOS:
        _SCENARIOS[events] = simulate(seed=5, events=events, hours=24)
    return _SCENARIOS[events]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    wait_for_broker()
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env = isolated_kafka_env(prefix)
    sc = scenario(3_000)
    paths = write_scenario(sc, tmp_path / "scenario")
    kafka = load_config(paths["config"], env).kafka
    made = Setup(env, paths["config"], tmp_path / "store.duckdb", kafka, sc)
    yield made
    for process in made.started:  # a test that failed midway leaves none running (they took CPU from what ran next)
        if process.poll() is None:
            process.kill()
            process.communicate()


def produce_scenario(setup: Setup, part: slice = slice(None)) -> int:
    records = list(scenario_records(setup.scenario, setup.kafka))
    return produce(setup.kafka, records[part])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def finish(process: subprocess.Popen[bytes], timeout: float = 120) -> str:
    out, err = process.communicate(timeout=timeout)
    text = (out or b"").decode() + (err or b"").decode()
    assert process.returncode == 0, text[-3000:]
    return text


def assert_exactly_once(setup: Setup, min_agreement: float = 0.99) -> None:
    stored = setup.stored()
    truth = setup.good_events
    assert set(stored) == set(truth), f"missing {len(set(truth) - set(stored))}, extra {len(set(stored) - set(truth))}"
    rows = setup.count("SELECT count(*) FROM classifications")
    assert rows == len(truth)
    agree = sum(1 for event_id, cause in truth.items() if stored[event_id] == cause)
    wrong = Counter(f"{truth[e]} stored as {stored[e]}" for e in truth if stored[e] != truth[e])
    assert agree / len(truth) >= min_agreement, f"{agree} of {len(truth)} agree; {dict(wrong)}"


# -- the plain run ------------------------------------------------------------------------------


def test_simulated_scenario_produced_consumed_and_compared_with_truth(setup: Setup) -> None:
    produce_scenario(setup)
    config = load_config(setup.config_path, setup.env, {"store": {"path": str(setup.db)}})
    stats = consume(config, instance="solo", exit_when_idle=2)
    assert stats.events == len(setup.scenario.events)
    assert_exactly_once(setup)
    assert setup.count("SELECT count(*) FROM dead_letters") == setup.bad_lines
    assert setup.count("SELECT count(*) FROM jwks_snapshots") == len(setup.scenario.snapshots)


# -- crashes ------------------------------------------------------------------------------------


def stored_rows(setup: Setup) -> int:
    """Rows in the consumer's published snapshot (0 before its first publish)."""
    if not published_parts(setup.db):
        return 0
    try:
        return setup.count("SELECT count(*) FROM classifications") + setup.count("SELECT count(*) FROM dead_letters")
    except Exception:  # a snapshot being replaced under us: ask again
        return 0


def test_kill_9_mid_stream_then_restart_stores_every_event_exactly_once(setup: Setup) -> None:
    produce_scenario(setup)
    rng = random.Random(4)
    kills, progress = 0, []
    everything = len(setup.good_events) + setup.bad_lines
    for _ in range(3):
        before = stored_rows(setup)
        if before == everything:  # stored and published before the last kill: nothing left to kill in the middle of
            break
        process = setup.consumer("c0", "--batch-size", "50", "--publish-interval", "0.2")
        wait_for(lambda b=before, p=process: stored_rows(setup) > b or p.poll() is not None, 90, "progress")
        time.sleep(rng.uniform(0, 0.15))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        out, err = process.communicate(timeout=30)
        assert b"broker deleted" not in out + err  # a restart past the group's commit skips nothing deleted
        progress.append(stored_rows(setup))
    assert "broker deleted" not in finish(setup.consumer("c0", "--exit-when-idle", "2"))
    assert kills >= 2, f"the consumer finished before it could be killed ({progress}): make the stream longer"
    assert_exactly_once(setup)
    assert setup.count("SELECT count(*) FROM dead_letters") == setup.bad_lines


def test_sigterm_finishes_the_batch_and_commits(setup: Setup) -> None:
    produce_scenario(setup)
    process = setup.consumer("c0", "--batch-size", "50", "--publish-interval", "0.2")
    wait_for(lambda: stored_rows(setup) > 0, 90, "progress")
    process.send_signal(signal.SIGTERM)
    output = finish(process, timeout=60)
    assert "finishing the batch" in output
    finish(setup.consumer("c0", "--exit-when-idle", "2"))
    assert_exactly_once(setup)


# -- bad messages -------------------------------------------------------------------------------


def test_poison_messages_are_dead_letters_with_reasons_and_the_stream_goes_on(setup: Setup) -> None:
    dlq_topic = setup.kafka.failures_topic + ".dlq"
    setup.env["JWTRIAGE_KAFKA__DEAD_LETTER_TOPIC"] = dlq_topic
    setup.env["JWTRIAGE_KAFKA__MAX_MESSAGE_BYTES"] = "100000"
    tokens = (json.loads(r.value).get("token") for r in setup.scenario.events if b'"token"' in r.value)
    token = next(t for t in tokens if t and t.count(".") == 2 and len(t) > 200)
    poison = [
        b"\xff\xfe\xfd",
        b"{not json",
        b"[" * 50_000,
        json.dumps({"event_id": 1, "ts": "2026-11-23T01:00:00Z", "service": "payments-api"}).encode(),
        json.dumps({"event_id": "p", "ts": "2026-11-23T01:00:00", "service": "payments-api"}).encode(),
        json.dumps({"event_id": "q", "ts": "2026-11-23T01:00:00Z", "service": "nobody", "token": token}).encode(),
        b'{"event_id": "big", "pad": "' + b"x" * 200_000 + b'"}',
    ]
    good = list(scenario_records(setup.scenario, setup.kafka))
    mixed: list[tuple[str, str | None, bytes]] = []
    for n, record in enumerate(good):
        mixed.append(record)
        if n % 10 == 0:
            mixed.append((setup.kafka.failures_topic, "poison", poison[n % len(poison)]))
    expected_poison = sum(1 for n in range(len(good)) if n % 10 == 0)
    produce(setup.kafka, mixed)
    finish(setup.consumer("c0", "--exit-when-idle", "2"))
    assert_exactly_once(setup)
    assert setup.count("SELECT count(*) FROM dead_letters") == setup.bad_lines + expected_poison
    con = connect_readonly(setup.db)
    reasons = [r[0] for r in con.execute("SELECT DISTINCT reason FROM dead_letters").fetchall()]
    excerpts = " ".join(r[0] for r in con.execute("SELECT excerpt FROM dead_letters").fetchall())
    con.close()
    for expected in ("not UTF-8", "not JSON", "event_id", "UTC offset", "service 'nobody'", "over the 100,000-byte"):
        assert any(expected in reason for reason in reasons), (expected, reasons)
    assert token.split(".")[1] not in excerpts and token.split(".")[2] not in excerpts
    dlq = KafkaConsumer(dlq_topic, bootstrap_servers="127.0.0.1:9092", auto_offset_reset="earliest",
                        consumer_timeout_ms=5000, group_id=None)
    letters = [json.loads(m.value) for m in dlq]
    dlq.close()
    assert len(letters) == setup.bad_lines + expected_poison
    assert all(letter["reason"] and "excerpt" in letter for letter in letters)
    assert token.split(".")[2] not in json.dumps(letters)


# -- the broker goes away -----------------------------------------------------------------------


def test_broker_restart_mid_stream_loses_nothing(setup: Setup) -> None:
    records = list(scenario_records(setup.scenario, setup.kafka))
    half = len(records) // 2
    produce(setup.kafka, records[:half])
    process = setup.consumer("c0", "--exit-when-idle", "8", "--publish-interval", "0.5")
    wait_for(lambda: published_parts(setup.db) and setup.count("SELECT count(*) FROM classifications") > 0, 60,
             "the first events")
    subprocess.run([str(ROOT / "scripts" / "kafka-down.sh")], check=True, capture_output=True, timeout=60)
    time.sleep(2)
    subprocess.run([str(ROOT / "scripts" / "kafka-up.sh")], check=True, capture_output=True, timeout=180)
    wait_for_broker()
    produce(setup.kafka, records[half:])
    output = finish(process, timeout=180)
    assert "unreachable" in output or "reachable again" in output or "partitions assigned" in output
    assert_exactly_once(setup)


# -- several consumers, and readers while they write --------------------------------------------


def test_two_consumers_split_the_partitions_and_readers_see_one_store(setup: Setup, tmp_path: Path) -> None:
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    a = setup.consumer("a", "--exit-when-idle", "6", log=logs[0])
    b = setup.consumer("b", "--exit-when-idle", "6", log=logs[1])
    # Both must be group members before the records arrive, or the first one up takes everything.
    wait_for(lambda: all("partitions assigned" in log.read_text() for log in logs), 60, "both consumers to join")
    time.sleep(2)
    produce_scenario(setup)
    finish(a)
    finish(b)
    for log in logs:  # a rebalance moves partitions between members: no gap in their offsets is a loss
        assert "broker deleted" not in log.read_text(), log.read_text()[-2000:]
    parts = published_parts(setup.db)
    assert [p.name for p in parts] == ["a", "b"]  # each writer's state folder under <db>.parts/state/
    import duckdb

    per_part = []
    for part in parts:
        con = duckdb.connect()
        rows = str(parts_dir(setup.db) / "classifications" / "*" / f"{part.name}-L*.parquet")
        per_part.append(con.execute("SELECT count(*), count(DISTINCT source_partition) FROM read_parquet(?)", [rows])
                        .fetchone())
        keys = str(part / "jwks_snapshots.parquet")
        snapshots = con.execute("SELECT count(*) FROM read_parquet(?)", [keys]).fetchone()
        con.close()
        assert snapshots == (len(setup.scenario.snapshots),)  # every consumer reads every key
    assert all(events > 0 for events, _ in per_part), per_part  # both did real work
    # The reader's view counts each event once. Both consumers start before anything is produced,
    # so events often overtake the snapshot that retires their key (before Pipeline._rejudge_overtaken,
    # 3-4% of them stayed `valid` instead of `retired_key`).
    assert_exactly_once(setup)


def test_a_reader_sees_every_published_checkpoint_while_the_consumer_runs(setup: Setup) -> None:
    records = list(scenario_records(setup.scenario, setup.kafka))
    first = records[: len(records) // 3]
    events_in_first = sum(1 for topic, _, _ in first if topic == setup.kafka.failures_topic)
    produce(setup.kafka, first)
    port = free_port()
    process = setup.consumer("c0", "--publish-interval", "0.5", "--metrics-port", str(port))
    try:
        def stored_first() -> bool:
            if not published_parts(setup.db):
                return False
            return setup.count("SELECT count(*) FROM classifications") + setup.count(
                "SELECT count(*) FROM dead_letters WHERE kind = 'event'") >= events_in_first

        wait_for(stored_first, 60, "the first third")
        assert process.poll() is None  # the writer is running while we read
        produce(setup.kafka, records[len(records) // 3:])
        wait_for(lambda: len(setup.stored()) == len(setup.good_events), 90, "everything")
        # And every key snapshot: an event that overtook the snapshot retiring its key is stored
        # `valid` first and judged again only when that snapshot is read. Stopping the consumer
        # before then (a faster consumer makes it likelier) would test the race, not the store.
        wait_for(lambda: setup.count("SELECT count(*) FROM jwks_snapshots") == len(setup.scenario.snapshots), 90,
                 "every key snapshot")
        assert process.poll() is None
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert 'jwtriage_events_total{attacked="false",cause="stale_jwks"' in metrics
        assert "jwtriage_jwks_snapshot_age_seconds" in metrics and "jwtriage_dead_letters_total" in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        finish(process, timeout=60)
    assert_exactly_once(setup)


# -- monitoring that tells the truth once caught up (issue 17) ----------------------------------


def _lag(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
            if line.startswith("jwtriage_consumer_lag{")}


def test_an_idle_current_consumer_reports_zero_lag_and_keeps_beating(setup: Setup) -> None:
    """The lag gauge was set only with batches: after catching up it kept its last value (thousands).

    Produce part of the day, start the consumer with metrics, let it see lag, produce the
    rest and let it catch up: once every event is stored the gauge must read 0 for every
    partition within about one poll interval, and stay 0 while it idles; its heartbeat in
    the published store keeps advancing although it writes no rows.
    """
    from pipeline.io.consumer_health import consumer_heartbeat, consumer_lag

    produce_scenario(setup, slice(0, 2_000))
    port = free_port()
    process = setup.consumer("c0", "--metrics-port", str(port), "--publish-interval", "1")
    try:
        wait_for(lambda: setup.count("SELECT count(*) FROM classifications") > 0 if published_parts(setup.db)
                 else False, 120, "the first rows")
        produce_scenario(setup, slice(2_000, None))
        total = len(setup.good_events)
        wait_for(lambda: setup.count("SELECT count(*) FROM classifications") == total, 180, "every event")
        stored_at = time.monotonic()
        wait_for(lambda: bool(_lag(port)) and all(v == 0 for v in _lag(port).values()), 10, "lag 0")
        assert time.monotonic() - stored_at < 3, "the gauge took longer than a poll or two to read 0"
        def heartbeat() -> Any:
            con = connect_readonly(setup.db)
            try:
                return consumer_heartbeat(con)
            finally:
                con.close()

        first = heartbeat()
        assert first is not None
        # Publishing (and so the beat) comes at most every 20x its own cost: a few seconds here.
        wait_for(lambda: heartbeat() > first, 30, "a later heartbeat from the idle consumer")
        assert all(v == 0 for v in _lag(port).values()), _lag(port)  # idle: still 0, not a stale value

        def noted() -> Any:  # what the Live page reads: the lag the consumer wrote with its heartbeat
            con = connect_readonly(setup.db)
            try:
                return consumer_lag(con)
            finally:
                con.close()

        wait_for(lambda: noted() is not None and noted().records == 0, 30, "a lag note of 0 in the store")
    finally:
        process.send_signal(signal.SIGTERM)
        finish(process)
