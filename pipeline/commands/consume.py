"""`jwtriage consume`: the Kafka consumer, exactly once into DuckDB.

Start-up restores what a restart lost (every key snapshot to the end of the JWKS topic, the
join state: stored events still waiting, the recent samples read again), then the shared
loop (`runner.run`) takes over: poll → classify → one DuckDB transaction holding the rows,
the dead letters and the source positions → tell the group how far we got. A crash
anywhere loses nothing and duplicates nothing: on restart the positions in the store say
where to resume, and rows are keyed by `event_id`. Readers never open the working file: what
committed since is appended for them as Parquet at most every `--publish-interval` seconds (and
at exit).
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import IO, Any

from pipeline.config import Config
from pipeline.engine.identifiers import hasher_from
from pipeline.errors import ConfigError
from pipeline.faults import crash_point
from pipeline.io.consumer_health import ConsumerLag, RecordsLost
from pipeline.io.kafka import BATCH_RECORDS, POLL_TIMEOUT_MS, KafkaSource, source_formats
from pipeline.io.kafka_producers import DeadLetterPublisher
from pipeline.io.lake import open_writer
from pipeline.io.store import Store
from pipeline.metrics import Metrics
from pipeline.records import Batch
from pipeline.rejudge import StoredRejudge
from pipeline.runner import Pipeline, PipelineLimits, RunStats, run

log = logging.getLogger(__name__)

#: How often the consumer asks the broker for its lag (for the metrics): at most once per poll
#: interval, batch or idle, so the gauge reads 0 within about one poll of catching up (a few
#: round trips to the broker each time; the loop polls every 0.5 s when idle).
LAG_INTERVAL_SECONDS = POLL_TIMEOUT_MS / 1000


@dataclass
class ConsumeStats:
    events: int = 0
    dead_letters: int = 0
    skipped: int = 0  # gateway lines that were no JWT rejection
    lost: int = 0  # records the broker deleted before this run read them (`kafka_gaps`)
    batches: int = 0
    seconds: float = 0.0


class Stopper:
    """SIGTERM/SIGINT ask the loop to finish its batch, commit and close."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.requested:
            log.warning("received %s: finishing the batch, committing, closing", signal.Signals(signum).name)
        self.requested = True


class _Consumer:
    """One consumer's parts and the work around the loop: start-up, after each batch, between batches."""

    def __init__(self, config: Config, store: Store, source: KafkaSource, metrics: Metrics | None) -> None:
        self.store, self.source, self.metrics = store, source, metrics
        self.limits = PipelineLimits(max_record_bytes=config.kafka.max_message_bytes)
        self.pipeline = Pipeline(
            config, store.load_timeline(), self.limits, source_formats=source_formats(config.kafka)
        )
        self.dlq = DeadLetterPublisher(config.kafka) if config.kafka.dead_letter_topic else None
        self.stats = ConsumeStats()
        self.on_batch: Callable[[Batch, KafkaSource], None] | None = None
        self.publish_interval = 5.0
        self._last_publish, self._publish_cost, self._last_lag = 0.0, 0.0, 0.0
        self._events = self._events_at_lag = 0  # events stored so far, and when the lag was last measured
        self.lost = store.records_lost()  # per partition, in all: the store's notes go on counting across restarts

    def restore(self, stored: dict[tuple[str, int], int]) -> None:
        """Before the loop: the key timeline to the end of the JWKS topic, then the join state as it was."""
        snapshots = self.source.read_jwks_to_end()
        keys = self.pipeline.process(snapshots)
        log.info("key timeline ready: %d snapshots, %d keys", len(snapshots), len(self.pipeline.timeline.all_keys()))
        # The stored events still waiting for a sample (or a key), then the recent samples,
        # read again before any new event is judged.
        waiting = self.store.awaiting_samples(self.limits.max_waiting)
        self.pipeline.await_samples(waiting)
        replayed = self.source.replay_samples()
        joined = self.pipeline.process(replayed) if replayed else Batch()
        # Dead letters below the stored positions were stored (and sent) before the restart.
        joined.dead_letters = [
            d for d in joined.dead_letters
            if d.position.offset >= stored.get((d.position.source, d.position.partition), 0)
        ]
        # Stored rows the new snapshots can change are judged again (`pipeline.rejudge`), with the
        # samples now held, in the same transaction as the snapshots' positions: a crash before
        # it is stored reads those snapshots, and judges those rows, again.
        self.pipeline.stored = StoredRejudge(self.store, self.source)  # a Store or a lake (io.lake.LakeStore)
        self.pipeline.stored.rejudge(self.pipeline, keys.snapshots, keys)
        self._write_startup(keys)
        if replayed:
            self._write_startup(joined)
            log.info(
                "join state restored: %d recent samples read again, %d stored events waiting for one, %d judged again",
                len(replayed), len(waiting), len(joined.judged),
            )

    def _write_startup(self, batch: Batch) -> None:
        """Start-up batches are stored but not committed to the group (they are not the group's events)."""
        self.store.write(batch, self.pipeline.timeline)
        # Bad records read here are dead letters like any other: counted, sent to the DLQ topic, in the metrics.
        self.stats.dead_letters += len(batch.dead_letters)
        if self.metrics is not None:
            self.metrics.observe_batch(batch)
        if self.dlq is not None and batch.dead_letters:
            self.dlq.send(batch.dead_letters)

    def after_batch(self, batch: Batch, stats: RunStats) -> None:
        """The loop's `on_batch`: the batch is stored and committed; observe it, dead-letter it."""
        self._events += len(batch.judged)
        if self.metrics is not None:
            self.metrics.observe_batch(batch, seconds=stats.process_seconds)
            self.metrics.set_snapshot_age(self.pipeline.timeline)
        if self.dlq is not None and batch.dead_letters:
            self.dlq.send(batch.dead_letters)
        self.stats.dead_letters += len(batch.dead_letters)
        if self.on_batch is not None:
            self.on_batch(batch, self.source)

    def on_tick(self) -> None:
        """The loop's `on_tick`, after every unit, empty or not: note lost records, measure lag, publish when due."""
        self.note_holes()
        self.measure_when_due()
        self.publish_when_due()

    def note_holes(self) -> None:
        """Records the broker deleted before they were read (the source logged each hole): count and note them.

        Into the run's stats, the `jwtriage_records_lost_total` counter, and the store's note per
        partition (written with the next heartbeat), where the Live page finds it.
        """
        for hole in self.source.take_holes():
            self.stats.lost += hole.records
            if self.metrics is not None:
                self.metrics.count_lost(hole.topic, hole.partition, hole.records)
            before = self.lost.get((hole.topic, hole.partition))
            note = RecordsLost(datetime.now(UTC), hole.records + (before.records if before else 0),
                               hole.topic, hole.partition, hole.first, hole.last)
            self.lost[(hole.topic, hole.partition)] = note
            self.store.note_lost(note)

    def measure_when_due(self) -> None:
        """Lag and cache usage into the metrics, at most every LAG_INTERVAL_SECONDS, idle included.

        Measured here rather than after a batch: once caught up no batch comes, and a gauge
        set only with batches kept its last value (thousands) on an idle, current consumer,
        and `JwtriageConsumerLagging` fired. A broker that cannot be asked leaves it as it was.
        The total goes to the store too, with the next heartbeat, so the Live page can say how far
        behind the consumer is (without metrics, measured once per publish interval).
        """
        interval = LAG_INTERVAL_SECONDS if self.metrics is not None else self.publish_interval
        now = time.monotonic()
        if now - self._last_lag < interval:
            return
        lag = self.source.lag()
        if lag is not None:
            if self.metrics is not None:
                self.metrics.set_lag(lag)
            elapsed = now - self._last_lag if self._last_lag else 0.0
            rate = (self._events - self._events_at_lag) / elapsed if elapsed > 0 else 0.0
            self.store.note_lag(ConsumerLag(datetime.now(UTC), sum(lag.values()), rate))
        self._last_lag, self._events_at_lag = now, self._events
        if self.metrics is not None:
            self.metrics.set_cache_usage(self.pipeline.cache_usage())

    def publish_when_due(self) -> None:
        """Publish for readers (with a heartbeat), never more often than 5x the cost of publishing.

        A publish appends the rows since the last one, so its cost no longer grows with the store
        (the whole-file copy it replaced did, hence a 20x margin then).
        """
        if time.monotonic() - self._last_publish >= max(self.publish_interval, 5 * self._publish_cost):
            self._publish_cost = self.store.publish()
            self._last_publish = time.monotonic()
            crash_point("after_publish")

    def close(self) -> None:
        try:
            self.source.check_gaps()  # gaps seen in the last second are confirmed before the last heartbeat
            self.note_holes()
            self.store.publish(final=True)
        finally:
            self.store.close()
            self.source.close()
            if self.dlq is not None:
                self.dlq.close()
            if self.metrics is not None:
                self.metrics.close()


def consume(
    config: Config,
    instance: str,
    exit_when_idle: float | None = None,
    publish_interval: float = 5.0,
    batch_size: int = BATCH_RECORDS,
    stopper: Stopper | None = None,
    on_batch: Callable[[Batch, KafkaSource], None] | None = None,
    metrics: Metrics | None = None,
) -> ConsumeStats:
    """Run the consumer until stopped (or idle for `exit_when_idle` seconds once caught up)."""
    stopper = stopper or Stopper()
    started = time.perf_counter()
    store = open_writer(  # refuses a bad instance name, a held or newer store
        config.store.path, instance, retention_days=config.store.retention_days,
        rollup_retention_days=config.store.rollup_retention_days, data_path=config.store.data_path,
    )
    try:
        _note_hash_key(store, config)
        stored = store.positions()
        lost = store.records_lost()
        source = KafkaSource(
            config.kafka, stored, instance=instance, max_records=batch_size, exit_when_idle=exit_when_idle,
            counted_lost={partition: note.last for partition, note in lost.items()},
        )
    except BaseException:
        store.close()
        raise
    consumer = _Consumer(config, store, source, metrics)
    consumer.on_batch, consumer.publish_interval = on_batch, publish_interval
    try:
        consumer.restore(stored)
        looped = run(
            source,
            consumer.pipeline,
            store,
            on_batch=consumer.after_batch,
            on_tick=consumer.on_tick,
            stop=lambda: stopper.requested,
            write_behind=True,  # the DuckDB write of a batch overlaps the judging of the next
        )
    finally:
        consumer.close()
    stats = consumer.stats
    stats.batches, stats.events = looped.batches, looped.events
    stats.skipped = consumer.pipeline.counts["skipped"]
    stats.seconds = time.perf_counter() - started
    return stats


def _note_hash_key(store: Store, config: Config) -> None:
    """Record the hash key's id in the store; a changed key is said loudly (rows under two keys never group)."""
    hasher = hasher_from(config.store.hash_key)
    previous = store.note_hash_key(hasher.kid) if hasher is not None else None
    if hasher is not None and previous is not None:
        log.warning(
            "the hash key changed (id %s, was %s): personal claims stored before no longer match new rows",
            hasher.kid,
            previous,
        )


def cmd_consume(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    from pipeline.commands.common import load_cli_config

    config = load_cli_config(args)
    if config.store.hash_key is None:
        raise ConfigError(
            f"{config.source}: no hash key: the store keeps personal claims (sub, email, ...) as HMACs under a "
            "secret key kept outside it (hint: jwtriage keygen --out hash.key, then set [store] hash_key_file "
            "= \"hash.key\" or JWTRIAGE_STORE__HASH_KEY_FILE=hash.key; JWTRIAGE_HASH_KEY takes the key itself)"
        )
    if not args.verbose:
        logging.getLogger("kafka").setLevel(logging.CRITICAL)  # its reconnect chatter; we log one line
    logging.getLogger("pipeline").setLevel(logging.INFO)
    stopper = Stopper()
    stopper.install()
    metrics = None
    if args.metrics_port:
        metrics = Metrics(services=[s.name for s in config.services], issuers=[i.issuer for i in config.issuers])
        port = metrics.serve(args.metrics_host, args.metrics_port)
        log.info("metrics on http://%s:%d/metrics", args.metrics_host, port)
    stats = consume(
        config,
        instance=args.instance,
        exit_when_idle=args.exit_when_idle,
        publish_interval=args.publish_interval,
        batch_size=args.batch_size,
        stopper=stopper,
        metrics=metrics,
    )
    lost = (f"; {stats.lost:,} records deleted by the broker before they were read (see the warnings above)"
            if stats.lost else "")
    print(
        f"jwtriage consume: {stats.events:,} events, {stats.dead_letters:,} dead letters, {stats.skipped:,} skipped "
        f"(not a JWT rejection) in {stats.batches:,} batches, {stats.seconds:.1f} s → {config.store.path}{lost}",
        file=stdout,
    )
    return 0


def _default_instance() -> str:
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname().split(".")[0])
    return name or "consumer"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "consume",
        help="consume auth.failures, auth.tokens.sampled and auth.jwks from Kafka into the DuckDB store",
        description="The Kafka consumer: classifies every event exactly once into the store (offsets are kept "
        "in DuckDB with the rows), dead-letters bad messages with their reason, and publishes a read snapshot "
        "for the dashboard and reports. Stop with SIGTERM/SIGINT: it finishes the batch and commits.",
    )
    parser.add_argument("--config", help="config TOML (default: $JWTRIAGE_CONFIG or ./jwtriage.toml)")
    parser.add_argument("--db", help="store path (default: JWTRIAGE_DB or the config's [store] path)")
    parser.add_argument(
        "--exit-when-idle",
        type=float,
        metavar="SECONDS",
        help="exit once caught up and nothing new came for this long (backfills, tests); exit status 0",
    )
    parser.add_argument(
        "--instance",
        default=_default_instance(),
        help="this consumer's name within the store (default: the host name); run N consumers with N names",
    )
    parser.add_argument(
        "--publish-interval",
        type=float,
        default=5.0,
        help="seconds between read snapshots for the dashboard and reports (default 5)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=BATCH_RECORDS,
        help=f"records per transaction at most (default {BATCH_RECORDS}; fewer when keeping up)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on this port (e.g. 9464; off by default)",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address for the metrics server (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    parser.set_defaults(handler=cmd_consume)
