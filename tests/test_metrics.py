"""Metrics: what a simulated stream counts, the JWKS gauges computed at scrape time, the HTTP
endpoint on its own registry, and the alert rules (every metric they name is exported; promtool
checks and unit-tests them)."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import time
from collections import Counter as Tally
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.commands.demo import scenario_config, scenario_envelopes
from pipeline.engine.keys import KeyTimeline
from pipeline.io.base import chunked
from pipeline.io.memory import ListSink, ListSource
from pipeline.metrics import METRIC_NAMES, UNKNOWN_ISSUER, Metrics, consumer_lag, kafka_lag
from pipeline.models import JwksSnapshot
from pipeline.records import Batch
from pipeline.runner import Pipeline, RunStats, run
from pipeline.simulator import simulate

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the registry's exposition, parsed back: (name, sorted labels) → value."""
    text = generate_latest(metrics.registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(
        value
        for (metric, metric_labels), value in found.items()
        if metric == name and all((k, v) in metric_labels for k, v in labels.items())
    )


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def stream() -> tuple[Any, list[Batch]]:
    """A simulated day (600 events) through the real pipeline, in batches of 200 records."""
    scenario = simulate(seed=5, events=600, hours=24.0)
    pipeline = Pipeline(scenario_config(scenario, Path("unused.duckdb")))
    batches = [pipeline.process(chunk) for chunk in chunked(scenario_envelopes(scenario), 200)]
    return pipeline, batches


def test_a_simulated_stream_counts_each_event_once_plus_its_revisions(stream: tuple[Any, list[Batch]]) -> None:
    pipeline, batches = stream
    config = pipeline.config
    metrics = Metrics(services=[s.name for s in config.services], issuers=[i.issuer for i in config.issuers])
    stats = RunStats()
    for number, batch in enumerate(batches):
        stats.batches += 1
        metrics.observe_batch(batch, stats, lag_by_partition={("auth.failures", 0): 40 - number}, seconds=0.01)
    metrics.set_snapshot_age(pipeline.timeline)
    found = samples(metrics)

    final: dict[str, Any] = {}
    per_batch = 0
    for batch in batches:
        latest = {j.event.event_id: j for j in batch.judged}
        per_batch += len(latest)
        final.update(latest)
    events = total(found, "jwtriage_events_total")
    rejudged = total(found, "jwtriage_events_rejudged_total")
    assert events == per_batch  # one verdict per event per batch (the row the store keeps)
    assert events - rejudged == len(final) == pipeline.counts["events"]  # distinct events
    assert rejudged > 0
    # By cause, service and issuer, the counts add up to what the verdicts say.
    causes = Tally(
        j.verdict.classification.cause.value for b in batches for j in {x.event.event_id: x for x in b.judged}.values()
    )
    for cause, count in causes.items():
        assert total(found, "jwtriage_events_total", cause=cause) == count
    # The attacked label splits them: what a rotation-damage panel excludes is what carried an attack.
    latest_per_batch = [j for b in batches for j in {x.event.event_id: x for x in b.judged}.values()]
    attacked = sum(bool(j.verdict.classification.attacks) for j in latest_per_batch)
    assert total(found, "jwtriage_events_total", attacked="true") == attacked > 0
    assert total(found, "jwtriage_events_total", attacked="false") == events - attacked
    stale = [j for j in final.values() if j.verdict.classification.cause.value == "stale_jwks"]
    assert stale and all(j.verdict.classification.issuer for j in stale)  # stale_jwks always has its issuer
    assert total(found, "jwtriage_events_total", cause="unknown_kid", issuer=UNKNOWN_ISSUER) > 0
    # Attacks: once per event, by the final verdict's patterns.
    attacks = Tally((a.value, j.event.service) for j in final.values() for a in j.verdict.classification.attacks)
    assert attacks
    for (attack, service), count in attacks.items():
        assert total(found, "jwtriage_attacks_total", attack=attack, service=service) == count
    assert total(found, "jwtriage_dead_letters_total") == pipeline.counts["dead_letters"] > 0
    assert total(found, "jwtriage_dead_letters_total", kind="event") == pipeline.counts["dead_letters"]
    assert total(found, "jwtriage_jwks_snapshots_total") == pipeline.counts["snapshots"]
    assert found[("jwtriage_classification_seconds_count", ())] == len(batches)
    assert found[("jwtriage_consumer_lag", (("partition", "0"), ("topic", "auth.failures")))] == 40 - (len(batches) - 1)
    assert found[("jwtriage_last_batch_timestamp_seconds", ())] > 0


def test_series_that_alerts_use_start_at_zero() -> None:
    metrics = Metrics(services=["payments-api"], issuers=["https://login.acme.test"])
    found = samples(metrics)
    for attacked in ("false", "true"):
        key = (("attacked", attacked), ("cause", "stale_jwks"), ("issuer", "https://login.acme.test"),
               ("service", "payments-api"))
        assert found[("jwtriage_events_total", key)] == 0
        key = (("attacked", attacked), ("cause", "unknown_kid"), ("issuer", "unknown"), ("service", "payments-api"))
        assert found[("jwtriage_events_total", key)] == 0
    assert found[("jwtriage_attacks_total", (("attack", "alg_none"), ("service", "payments-api")))] == 0
    assert found[("jwtriage_dead_letters_total", (("kind", "event"),))] == 0


def test_the_loop_times_each_batch() -> None:
    """`run(..., on_batch=metrics.observe_batch)`: one classification time per batch, the loop's measure."""
    scenario = simulate(seed=3, events=100, hours=2.0)
    pipeline = Pipeline(scenario_config(scenario, Path("unused.duckdb")))
    metrics = Metrics()
    envelopes = scenario_envelopes(scenario)
    stats = run(ListSource(envelopes, batch_size=50), pipeline, ListSink(), on_batch=metrics.observe_batch)
    found = samples(metrics)
    assert stats.batches == math.ceil(len(envelopes) / 50)
    assert found[("jwtriage_classification_seconds_count", ())] == stats.batches
    assert found[("jwtriage_classification_seconds_sum", ())] > 0
    assert found[("jwtriage_batch_records_count", ())] == stats.batches


def _jwks(kids: list[str]) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    keys = []
    for kid in kids:
        jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
        keys.append({**jwk, "kid": kid})
    return {"keys": keys}


def test_snapshot_age_grows_at_scrape_time_and_rotation_steps_are_exported() -> None:
    t0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    clock = Clock(t0)
    corp, partner, staging = "https://login.acme.test", "https://id.partner.test", "https://login.staging.acme.test"
    old, new = _jwks(["old"]), _jwks(["new"])
    both = {"keys": old["keys"] + new["keys"]}
    timeline = KeyTimeline(
        [
            JwksSnapshot(issuer=corp, fetched_at=t0 - timedelta(hours=6), jwks=old),
            JwksSnapshot(issuer=corp, fetched_at=t0 - timedelta(hours=3), jwks=both),  # new key added
            JwksSnapshot(issuer=corp, fetched_at=t0 - timedelta(hours=1), jwks=new),  # old key removed
            JwksSnapshot(issuer=partner, fetched_at=t0 - timedelta(minutes=2), jwks=_jwks(["p1"])),
        ]
    )
    metrics = Metrics(issuers=[corp, partner, staging], clock=clock)
    metrics.set_snapshot_age(timeline)
    found = samples(metrics)
    assert found[("jwtriage_jwks_snapshot_age_seconds", (("issuer", corp),))] == 3600
    assert found[("jwtriage_jwks_snapshot_age_seconds", (("issuer", partner),))] == 120
    assert found[("jwtriage_jwks_snapshot_age_seconds", (("issuer", staging),))] == math.inf  # configured, never seen
    assert (
        found[("jwtriage_jwks_snapshot_timestamp_seconds", (("issuer", corp),))]
        == (t0 - timedelta(hours=1)).timestamp()
    )
    assert found[("jwtriage_jwks_keys", (("issuer", corp),))] == 1
    changes = {labels: v for (name, labels), v in found.items() if name == "jwtriage_jwks_key_change_timestamp_seconds"}
    assert changes == {
        (("action", "added"), ("issuer", corp)): (t0 - timedelta(hours=3)).timestamp(),
        (("action", "removed"), ("issuer", corp)): (t0 - timedelta(hours=1)).timestamp(),
    }  # partner's only key was there from the start: no rotation step
    clock.now = t0 + timedelta(minutes=10)  # nothing new arrives: the age keeps growing
    assert samples(metrics)[("jwtriage_jwks_snapshot_age_seconds", (("issuer", corp),))] == 4200


def test_served_on_its_own_registry() -> None:
    first, second = Metrics(services=["a"]), Metrics(services=["a"])  # no "duplicated timeseries" clash
    first.events.labels("expired", "a", "unknown", "false").inc(3)
    port = first.serve("127.0.0.1", 0)
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        first.close()
        second.close()
    assert response.status_code == 200
    assert 'jwtriage_events_total{attacked="false",cause="expired",issuer="unknown",service="a"} 3.0' in response.text
    assert (
        REGISTRY.get_sample_value(
            "jwtriage_events_total", {"cause": "expired", "service": "a", "issuer": "unknown", "attacked": "false"}
        )
        is None
    )


def test_consumer_lag_from_end_offsets_and_positions() -> None:
    ends = {("auth.failures", 0): 120, ("auth.failures", 1): 50, ("auth.jwks", 0): 7}
    positions = {("auth.failures", 0): 100, ("auth.failures", 1): 50, ("auth.jwks", 0): 9}
    assert consumer_lag(ends, positions) == {("auth.failures", 0): 20, ("auth.failures", 1): 0, ("auth.jwks", 0): 0}
    assert consumer_lag(ends, {}) == {}


@pytest.mark.kafka
def test_kafka_lag_against_the_local_broker() -> None:
    from tests.kafka_helpers import (
        DEFAULT_BOOTSTRAP,
        KafkaAdminClient,
        KafkaConsumer,
        KafkaProducer,
        unique_topic,
        wait_for_broker,
    )

    wait_for_broker(DEFAULT_BOOTSTRAP, timeout=60)
    topic = unique_topic("lag")
    producer = KafkaProducer(bootstrap_servers=DEFAULT_BOOTSTRAP, acks="all")
    try:
        for n in range(10):
            producer.send(topic, key=b"k", value=str(n).encode())
        producer.flush(timeout=15)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(bootstrap_servers=DEFAULT_BOOTSTRAP, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + 15
        while consumer.partitions_for_topic(topic) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        from kafka import TopicPartition

        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        ends = {tp.partition: end for tp, end in consumer.end_offsets(parts).items()}
        busy = next(p for p, end in ends.items() if end == 10)  # one key: one partition holds all ten
        lag = kafka_lag(consumer, {(topic, busy): 3})
    finally:
        consumer.close()
        admin = KafkaAdminClient(bootstrap_servers=DEFAULT_BOOTSTRAP, client_id="test-metrics")
        try:
            admin.delete_topics([topic])
        finally:
            admin.close()
    assert lag == {(topic, busy): 7}


# -- the alert rules ------------------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def exported_series() -> dict[str, set[str]]:
    """Every series name the consumer exports, with its label names (from a populated registry)."""
    metrics = Metrics(services=["s"], issuers=["https://i.test"])
    metrics.observe_batch(Batch(), lag_by_partition={("t", 0): 1}, seconds=0.1)
    metrics.snapshots.labels("https://i.test").inc()
    metrics.rejudged.labels("valid").inc()
    metrics.key_changes = {("https://i.test", "added"): 1.0}
    metrics.latest_snapshot = {"https://i.test": 1.0}
    metrics.key_counts = {"https://i.test": 1}
    exported: dict[str, set[str]] = {}
    for (name, labels), _ in samples(metrics).items():
        exported.setdefault(name, set()).update(k for k, _ in labels)
    return exported


def test_every_metric_an_alert_names_is_exported_with_the_labels_it_uses() -> None:
    exported = exported_series()
    assert {re.sub(r"_(total|bucket|count|sum|created)$", "", n) for n in exported} >= set(METRIC_NAMES)
    for rule in _rules():
        expr = rule["expr"]
        names = set(re.findall(r"\bjwtriage_[a-z_]+\b", expr))
        assert names, rule["alert"]
        for name in names:
            assert name in exported, f"{rule['alert']}: {name} is not exported"
        for labels in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
            for label in (part.strip() for part in labels.split(",")):
                assert any(label in exported[n] for n in names), f"{rule['alert']}: no metric has label {label}"
        for selector in re.findall(r"jwtriage_[a-z_]+\{([^}]*)\}", expr):
            for label in re.findall(r"(\w+)\s*=", selector):
                assert any(label in exported[n] for n in names), f"{rule['alert']}: no metric has label {label}"
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["labels"]["severity"] in {"warning", "critical"}


def test_the_four_required_alerts_exist() -> None:
    by_name = {rule["alert"]: rule["expr"] for rule in _rules()}
    assert 'cause="stale_jwks"' in by_name["JwtriageStaleJwksAfterRotation"]
    assert "jwtriage_jwks_key_change_timestamp_seconds" in by_name["JwtriageStaleJwksAfterRotation"]
    assert 'cause="unknown_kid"' in by_name["JwtriageUnknownKids"]
    assert "jwtriage_attacks_total" in by_name["JwtriageAttackBurst"]
    assert "jwtriage_jwks_snapshot_age_seconds" in by_name["JwtriageJwksSnapshotStale"]


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: apt-get install -y --no-install-recommends prometheus")
        pytest.skip("promtool not installed (apt-get install -y --no-install-recommends prometheus)")
    return path


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", str(ALERTS_TEST)], capture_output=True, text=True, timeout=60, cwd=ALERTS.parent
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_lag_is_measured_on_idle_ticks_and_reads_zero_once_caught_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17: the gauge was only set with batches, so an idle, current consumer kept its last lag."""
    from pipeline.commands import consume as consume_module
    from pipeline.engine.keys import KeyTimeline
    from pipeline.runner import Pipeline
    from tests.world import config

    now = [100.0]
    monkeypatch.setattr(consume_module.time, "monotonic", lambda: now[0])

    class Source:
        def __init__(self) -> None:
            self.lags = [{("auth.failures", 0): 18_000}, {("auth.failures", 0): 0}, None]
            self.asked = 0

        def lag(self) -> dict[tuple[str, int], int] | None:
            self.asked += 1
            return self.lags[min(self.asked - 1, len(self.lags) - 1)]

    consumer = consume_module._Consumer.__new__(consume_module._Consumer)
    consumer.metrics = Metrics()
    consumer.source = Source()  # type: ignore[assignment]
    consumer.pipeline = Pipeline(config(), KeyTimeline())
    consumer._last_lag = 0.0
    consumer._events = consumer._events_at_lag = 0

    class Store:  # the lag goes to the store too, with the next heartbeat (the Live page reads it)
        def __init__(self) -> None:
            self.notes: list[int] = []

        def note_lag(self, lag: Any) -> None:
            self.notes.append(lag.records)

    store = Store()
    consumer.store = store  # type: ignore[assignment]
    gauge = ("jwtriage_consumer_lag", (("partition", "0"), ("topic", "auth.failures")))
    consumer.measure_when_due()
    assert samples(consumer.metrics)[gauge] == 18_000
    now[0] += consume_module.LAG_INTERVAL_SECONDS / 2
    consumer.measure_when_due()  # not due yet: no broker round trip
    assert consumer.source.asked == 1
    now[0] += consume_module.LAG_INTERVAL_SECONDS / 2  # one poll interval later, no batch in between
    consumer.measure_when_due()
    assert samples(consumer.metrics)[gauge] == 0
    now[0] += consume_module.LAG_INTERVAL_SECONDS
    consumer.measure_when_due()  # the broker cannot be asked: the gauge keeps its (true) last value
    assert samples(consumer.metrics)[gauge] == 0 and consumer.source.asked == 3
    assert store.notes == [18_000, 0]  # an unanswered question notes nothing
    assert consume_module.LAG_INTERVAL_SECONDS <= consume_module.POLL_TIMEOUT_MS / 1000
    usage = {labels: value for (name, labels), value in samples(consumer.metrics).items()
             if name == "jwtriage_cache_budget_bytes"}
    assert len(usage) == 10 and all(value > 0 for value in usage.values())
