"""Prometheus metrics of the consumer, on a registry of its own (never the process-global one).

The loop (`runner.run`) hands each batch to its `on_batch` hook once the sink has stored it;
the consumer's hook observes it here, with the lag it asks the broker for now and then:

    metrics = Metrics(services=[s.name for s in config.services], issuers=[i.issuer for i in config.issuers])
    metrics.serve("127.0.0.1", 9464)                # GET /metrics, in a daemon thread
    def on_batch(batch, stats):                     # stats.process_seconds: the batch's classification time
        metrics.observe_batch(batch, stats, lag_by_partition=source.lag())
        metrics.set_snapshot_age(pipeline.timeline)  # cheap: does nothing unless the timeline changed

`run(..., on_batch=metrics.observe_batch)` works as is (no lag then).

Exported (all prefixed `jwtriage_`; the alert rules in deploy/prometheus/alerts.yml use them):

    jwtriage_events_total{cause,service,issuer,attacked}  counter  issuer: the verifying key's `iss`, else "unknown";
                                                                 attacked: "true" when the verdict carries an attack
                                                                 label (rotation damage counts attacked="false" only)
    jwtriage_events_rejudged_total{cause}               counter  judged again when a late sample or key arrived
                                                                 (those verdicts count in events_total too)
    jwtriage_attacks_total{attack,service}              counter
    jwtriage_dead_letters_total{kind}                   counter  kind: event, sample, snapshot
    jwtriage_records_skipped_total{format}              counter  gateway log lines that were no JWT rejection
    jwtriage_jwks_snapshots_total{issuer}               counter  snapshots received
    jwtriage_classification_seconds                     histogram  seconds to classify one batch
    jwtriage_batch_records                              histogram  records per batch
    jwtriage_consumer_lag{topic,partition}              gauge    records behind the end of the partition
    jwtriage_records_lost_total{topic,partition}        counter  records the broker deleted (retention) before the
                                                                 consumer read them; every consumer counts the
                                                                 samples and keys topics' losses it sees
    jwtriage_last_batch_timestamp_seconds               gauge    when the last batch was written
    jwtriage_jwks_snapshot_age_seconds{issuer}          gauge    now - newest snapshot's fetched_at, computed at
                                                                 scrape time; +Inf for a configured issuer with none
    jwtriage_jwks_snapshot_timestamp_seconds{issuer}    gauge    the newest snapshot's fetched_at
    jwtriage_jwks_key_change_timestamp_seconds{issuer,action}  gauge  the last key added / removed (rotation step)
    jwtriage_jwks_keys{issuer}                          gauge    keys in the newest snapshot
    jwtriage_cache_entries{cache}                       gauge    entries held by each join-state queue and cache
    jwtriage_cache_bytes{cache}                         gauge    their approximate bytes (lengths of what they keep)
    jwtriage_cache_budget_entries{cache}                gauge    the entry cap: the oldest entry goes past either cap
    jwtriage_cache_budget_bytes{cache}                  gauge    the byte cap (README, "Memory bounds")

Label values come from the config (services, issuers) and the fixed enums, so cardinality is
bounded: an unknown service is a dead letter, and `issuer` is only set by a configured key.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.engine.keys import KeyTimeline
from pipeline.models import Attack, Cause
from pipeline.records import Batch, RecordKind
from pipeline.runner import RunStats

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464
UNKNOWN_ISSUER = "unknown"

#: Every metric name the consumer exports (without the _total/_bucket/... suffixes of the exposition).
METRIC_NAMES = (
    "jwtriage_events",
    "jwtriage_events_rejudged",
    "jwtriage_attacks",
    "jwtriage_dead_letters",
    "jwtriage_jwks_snapshots",
    "jwtriage_classification_seconds",
    "jwtriage_batch_records",
    "jwtriage_consumer_lag",
    "jwtriage_records_lost",
    "jwtriage_last_batch_timestamp_seconds",
    "jwtriage_jwks_snapshot_age_seconds",
    "jwtriage_jwks_snapshot_timestamp_seconds",
    "jwtriage_jwks_key_change_timestamp_seconds",
    "jwtriage_jwks_keys",
    "jwtriage_cache_entries",
    "jwtriage_cache_bytes",
    "jwtriage_cache_budget_entries",
    "jwtriage_cache_budget_bytes",
)

#: The join-state queues and caches (`Pipeline.cache_usage`), exported from the start.
CACHES = ("samples", "awaiting_sample", "awaiting_key", "recent_with_token", "parsed_tokens", "signature_cache",
          "token_headers", "judgements", "verdict_spans", "verdict_tails")

_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_RECORD_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _TimelineCollector(Collector):
    """The JWKS gauges, computed at scrape time so the age keeps growing while nothing arrives."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = self._metrics
        now = m.clock().timestamp()
        age = GaugeMetricFamily(
            "jwtriage_jwks_snapshot_age_seconds",
            "Seconds since the newest JWKS snapshot of the issuer was fetched (+Inf: none yet)",
            labels=["issuer"],
        )
        stamp = GaugeMetricFamily(
            "jwtriage_jwks_snapshot_timestamp_seconds",
            "fetched_at of the newest JWKS snapshot of the issuer, as a Unix time",
            labels=["issuer"],
        )
        change = GaugeMetricFamily(
            "jwtriage_jwks_key_change_timestamp_seconds",
            "When the issuer last added or removed a signing key (a rotation step), as a Unix time",
            labels=["issuer", "action"],
        )
        keys = GaugeMetricFamily(
            "jwtriage_jwks_keys", "Signing keys in the newest JWKS snapshot of the issuer", labels=["issuer"]
        )
        with m.lock:
            latest = dict(m.latest_snapshot)
            changes = dict(m.key_changes)
            counts = dict(m.key_counts)
        for issuer in sorted(set(latest) | m.issuers):
            fetched = latest.get(issuer)
            age.add_metric([issuer], math.inf if fetched is None else max(0.0, now - fetched))
            if fetched is not None:
                stamp.add_metric([issuer], fetched)
        for (issuer, action), at in sorted(changes.items()):
            change.add_metric([issuer, action], at)
        for issuer, count in sorted(counts.items()):
            keys.add_metric([issuer], count)
        yield from (age, stamp, change, keys)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class Metrics:
    """The consumer's metrics. Thread-safe: observed by the consumer loop, read by the HTTP thread."""

    def __init__(
        self,
        services: Iterable[str] = (),
        issuers: Iterable[str] = (),
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = _utc_now,
        rejudge_memory: int = 200_000,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.clock = clock
        self.lock = threading.Lock()
        self.issuers = set(issuers)
        self.latest_snapshot: dict[str, float] = {}
        self.key_changes: dict[tuple[str, str], float] = {}
        self.key_counts: dict[str, int] = {}
        self._timeline_version = -1
        self._seen: OrderedDict[str, frozenset[str]] = OrderedDict()  # event_id → attacks counted (bounded)
        self._rejudge_memory = rejudge_memory
        self._server: Any = None
        r = self.registry
        self.events = Counter(
            "jwtriage_events",
            "Auth-failure events classified, by cause, service, verifying issuer and whether an attack was seen",
            ["cause", "service", "issuer", "attacked"],
            registry=r,
        )
        self.rejudged = Counter(
            "jwtriage_events_rejudged",
            "Events judged again once their late sample or key arrived (counted in jwtriage_events_total too)",
            ["cause"],
            registry=r,
        )
        self.attacks = Counter(
            "jwtriage_attacks",
            "Events carrying an attack pattern, by attack and service",
            ["attack", "service"],
            registry=r,
        )
        self.dead_letters = Counter(
            "jwtriage_dead_letters", "Records that failed their wire model, by kind", ["kind"], registry=r
        )
        self.skipped = Counter(
            "jwtriage_records_skipped",
            "Event records their format skipped: gateway log lines that were no JWT rejection (a 200, an upstream 401)",
            ["format"],
            registry=r,
        )
        self.snapshots = Counter("jwtriage_jwks_snapshots", "JWKS snapshots received", ["issuer"], registry=r)
        self.classification_seconds = Histogram(
            "jwtriage_classification_seconds", "Seconds to classify one batch", buckets=_SECONDS_BUCKETS, registry=r
        )
        self.batch_records = Histogram(
            "jwtriage_batch_records", "Records per batch", buckets=_RECORD_BUCKETS, registry=r
        )
        self.consumer_lag = Gauge(
            "jwtriage_consumer_lag", "Records behind the end of the partition", ["topic", "partition"], registry=r
        )
        self.records_lost = Counter(
            "jwtriage_records_lost",
            "Records the broker deleted before the consumer read them (the topic's retention is shorter than the lag)",
            ["topic", "partition"],
            registry=r,
        )
        self.last_batch = Gauge(
            "jwtriage_last_batch_timestamp_seconds", "When the last batch was written, as a Unix time", registry=r
        )
        self.cache_entries = Gauge("jwtriage_cache_entries", "Entries held, per join-state queue or cache",
                                   ["cache"], registry=r)
        self.cache_bytes = Gauge("jwtriage_cache_bytes", "Approximate bytes held, per join-state queue or cache",
                                 ["cache"], registry=r)
        self.cache_budget_entries = Gauge("jwtriage_cache_budget_entries", "Entry cap, per queue or cache",
                                          ["cache"], registry=r)
        self.cache_budget_bytes = Gauge("jwtriage_cache_budget_bytes", "Byte cap, per queue or cache",
                                        ["cache"], registry=r)
        r.register(_TimelineCollector(self))
        self._start_series_at_zero(list(services))

    def _start_series_at_zero(self, services: list[str]) -> None:
        """Series that alerts use start at 0, so the first failure counts in increase()."""
        for service in services:
            for cause in Cause:
                for issuer in [*sorted(self.issuers), UNKNOWN_ISSUER]:
                    for attacked in ("false", "true"):
                        self.events.labels(cause.value, service, issuer, attacked)
            for attack in Attack:
                self.attacks.labels(attack.value, service)
        for kind in RecordKind:
            self.dead_letters.labels(kind.value)
        for cache in CACHES:
            for gauge in (self.cache_entries, self.cache_bytes, self.cache_budget_entries, self.cache_budget_bytes):
                gauge.labels(cache)

    # -- observing ------------------------------------------------------------------------

    def observe_batch(
        self,
        batch: Batch,
        stats: RunStats | None = None,
        lag_by_partition: Mapping[tuple[str, int], int] | None = None,
        seconds: float | None = None,
    ) -> None:
        """Count one written batch: verdicts (last per event), attacks, dead letters, snapshots, lag.

        `seconds` is the batch's classification time; without it, the time the loop measured
        (`stats.process_seconds`), so that `run(..., on_batch=metrics.observe_batch)` works as is.
        """
        latest = {j.event.event_id: j for j in batch.judged}
        for event_id, judged in latest.items():
            c = judged.verdict.classification
            service = judged.event.service
            attacked = "true" if c.attacks else "false"
            self.events.labels(c.cause.value, service, c.issuer or UNKNOWN_ISSUER, attacked).inc()
            counted = self._seen.get(event_id)
            if counted is not None:
                self.rejudged.labels(c.cause.value).inc()
            attacks = frozenset(a.value for a in c.attacks)
            for attack in sorted(attacks - (counted or frozenset())):
                self.attacks.labels(attack, service).inc()  # once per event, also when its token came late
            self._remember(event_id, attacks | (counted or frozenset()))
        for letter in batch.dead_letters:
            self.dead_letters.labels(letter.kind.value).inc()
        for name, count in batch.skipped.items():
            self.skipped.labels(name).inc(count)
        for snapshot in batch.snapshots:
            self.snapshots.labels(snapshot.issuer).inc()
        if seconds is None and stats is not None:
            seconds = stats.process_seconds
        if seconds is not None:
            self.classification_seconds.observe(seconds)
        self.batch_records.observe(len(batch))
        if lag_by_partition:
            self.set_lag(lag_by_partition)
        self.last_batch.set(self.clock().timestamp())

    def set_lag(self, lag_by_partition: Mapping[tuple[str, int], int]) -> None:
        """Records behind per (topic, partition); also worth calling while idle, when no batch comes.

        Each partition's lost-records counter starts here, at 0, so a first loss counts in increase().
        """
        for (topic, partition), lag in lag_by_partition.items():
            self.consumer_lag.labels(topic, str(partition)).set(max(0, lag))
            self.records_lost.labels(topic, str(partition))

    def count_lost(self, topic: str, partition: int, records: int) -> None:
        """Records of a partition the broker deleted before the consumer read them (`kafka_gaps.Hole`)."""
        self.records_lost.labels(topic, str(partition)).inc(records)

    def set_cache_usage(self, usage: Mapping[str, tuple[int, int, int, int]]) -> None:
        """Each cache's (entries, bytes, entry cap, byte cap), as `Pipeline.cache_usage` gives them."""
        for cache, (entries, size, max_entries, max_bytes) in usage.items():
            self.cache_entries.labels(cache).set(entries)
            self.cache_bytes.labels(cache).set(size)
            self.cache_budget_entries.labels(cache).set(max_entries)
            self.cache_budget_bytes.labels(cache).set(max_bytes)

    def _remember(self, event_id: str, attacks: frozenset[str]) -> None:
        """Keep the event (and the attacks counted for it) among the most recent ones, a bounded memory."""
        self._seen[event_id] = attacks
        self._seen.move_to_end(event_id)
        while len(self._seen) > self._rejudge_memory:
            self._seen.popitem(last=False)

    def set_snapshot_age(self, timeline: KeyTimeline) -> None:
        """Take each issuer's newest snapshot, key count and last rotation step from the consumer's timeline.

        The age itself is computed at scrape time from the newest `fetched_at`, so it grows
        while no snapshot arrives (the watcher is down, or its fetches fail).
        """
        if timeline.version == self._timeline_version:
            return
        latest: dict[str, float] = {}
        counts: dict[str, int] = {}
        for issuer in timeline.issuers:
            newest = timeline.latest_snapshot(issuer)
            if newest is not None:
                latest[issuer] = newest.timestamp()
                counts[issuer] = len(timeline.published(issuer, newest))
        changes: dict[tuple[str, str], float] = {}
        for event in timeline.events():
            earliest = timeline.earliest_snapshot(event.issuer)
            if event.action == "added" and event.at == earliest:
                continue  # there from the start: not a rotation step
            changes[(event.issuer, event.action)] = max(
                changes.get((event.issuer, event.action), 0.0), event.at.timestamp()
            )
        with self.lock:
            self.latest_snapshot = latest
            self.key_counts = counts
            self.key_changes = changes
            self._timeline_version = timeline.version

    # -- serving --------------------------------------------------------------------------

    def serve(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
        """Serve GET /metrics on host:port in a daemon thread; returns the bound port (0 picks a free one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def consumer_lag(
    end_offsets: Mapping[tuple[str, int], int], positions: Mapping[tuple[str, int], int]
) -> dict[tuple[str, int], int]:
    """Records behind per (topic, partition): end offset minus the next offset to consume.

    Partitions without a position yet (nothing consumed) are left out rather than guessed.
    """
    return {tp: max(0, end - positions[tp]) for tp, end in end_offsets.items() if tp in positions}


def kafka_lag(consumer: Any, positions: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """`consumer_lag` for a kafka-python consumer's assignment, against the positions the store holds."""
    assignment = list(consumer.assignment())
    if not assignment:
        return {}
    ends = consumer.end_offsets(assignment)
    return consumer_lag({(tp.topic, tp.partition): int(end) for tp, end in ends.items()}, positions)
