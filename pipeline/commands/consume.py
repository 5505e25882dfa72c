"""`jwtriage consume`: the Kafka consumer, exactly once into DuckDB.

Each unit of work is: poll → classify → one DuckDB transaction holding the rows, the dead
letters and the source positions → tell the group how far we got. A crash anywhere loses
nothing and duplicates nothing: on restart the positions in the store say where to resume,
and rows are keyed by `event_id`. Readers never open the working file: a consistent
snapshot is published for them at most every `--publish-interval` seconds (and at exit).
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import time
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any

from pipeline.config import Config
from pipeline.faults import crash_point
from pipeline.io.kafka import DeadLetterPublisher, KafkaSource
from pipeline.io.store import Store
from pipeline.metrics import Metrics
from pipeline.records import Batch
from pipeline.runner import Pipeline, PipelineLimits, streaming_gc

log = logging.getLogger(__name__)

#: How often the consumer asks the broker for its lag (for the metrics).
LAG_INTERVAL_SECONDS = 10.0


@dataclass
class ConsumeStats:
    events: int = 0
    dead_letters: int = 0
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


def consume(
    config: Config,
    instance: str,
    exit_when_idle: float | None = None,
    publish_interval: float = 5.0,
    batch_size: int = 2_000,
    stopper: Stopper | None = None,
    on_batch: Any = None,
    metrics: Metrics | None = None,
) -> ConsumeStats:
    """Run the consumer until stopped (or idle for `exit_when_idle` seconds once caught up)."""
    stopper = stopper or Stopper()
    stats = ConsumeStats()
    started = time.perf_counter()
    store = Store(config.store.path, instance=instance)
    limits = PipelineLimits(max_record_bytes=config.kafka.max_message_bytes)
    pipeline = Pipeline(config, store.load_timeline(), limits)
    stored = store.positions()
    source = KafkaSource(config.kafka, stored, instance=instance, max_records=batch_size)
    dlq = DeadLetterPublisher(config.kafka) if config.kafka.dead_letter_topic else None
    last_publish, publish_cost = 0.0, 0.0
    idle_since: float | None = None

    def write_startup(batch: Batch) -> None:
        store.write(batch, pipeline.timeline)
        # Bad records read here are dead letters like any other: counted, sent to the DLQ topic, in the metrics.
        stats.dead_letters += len(batch.dead_letters)
        if metrics is not None:
            metrics.observe_batch(batch)
        if dlq is not None and batch.dead_letters:
            dlq.send(batch.dead_letters)

    try:
        snapshots = source.read_jwks_to_end()
        write_startup(pipeline.process(snapshots))
        log.info("key timeline ready: %d snapshots, %d keys", len(snapshots), len(pipeline.timeline.all_keys()))
        # The join state as it was before the restart: the stored events still waiting for a sample
        # (or a key), then the recent samples, read again before any new event is judged.
        waiting = store.awaiting_samples(limits.max_waiting)
        pipeline.await_samples(waiting)
        replayed = source.replay_samples()
        if replayed:
            batch = pipeline.process(replayed)
            # Dead letters below the stored positions were stored (and sent) before the restart.
            batch.dead_letters = [
                d for d in batch.dead_letters
                if d.position.offset >= stored.get((d.position.source, d.position.partition), 0)
            ]
            write_startup(batch)
            log.info(
                "join state restored: %d recent samples read again, %d stored events waiting for one, %d judged again",
                len(replayed), len(waiting), len(batch.judged),
            )
        last_lag = 0.0
        with streaming_gc():  # a batch's objects die young: no full collections mid-stream
            while not stopper.requested:
                envelopes = source.poll()
                if envelopes:
                    idle_since = None
                    classify_started = time.perf_counter()
                    batch = pipeline.process(envelopes)
                    classify_seconds = time.perf_counter() - classify_started
                    store.write(batch, pipeline.timeline)
                    crash_point("before_group_commit")
                    source.commit(batch.positions)
                    if metrics is not None:
                        lag = None
                        if time.monotonic() - last_lag >= LAG_INTERVAL_SECONDS:  # several broker calls: not every batch
                            lag, last_lag = source.lag(), time.monotonic()
                        metrics.observe_batch(batch, lag_by_partition=lag, seconds=classify_seconds)
                        metrics.set_snapshot_age(pipeline.timeline)
                    if dlq is not None and batch.dead_letters:
                        dlq.send(batch.dead_letters)
                    stats.batches += 1
                    stats.events += sum(1 for e in envelopes if e.kind.value == "event")
                    stats.dead_letters += len(batch.dead_letters)
                    if on_batch is not None:
                        on_batch(batch, source)
                elif exit_when_idle is not None:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since >= exit_when_idle and source.caught_up():
                        log.info("caught up and idle for %.0f s: exiting", exit_when_idle)
                        break
                # Publish for readers, never more often than 20x the cost of publishing.
                if time.monotonic() - last_publish >= max(publish_interval, 20 * publish_cost):
                    publish_cost = store.publish()
                    last_publish = time.monotonic()
                    crash_point("after_publish")
    finally:
        try:
            store.publish()
        finally:
            store.close()
            source.close()
            if dlq is not None:
                dlq.close()
            if metrics is not None:
                metrics.close()
    stats.seconds = time.perf_counter() - started
    return stats


def cmd_consume(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    from pipeline.commands.common import load_cli_config

    config = load_cli_config(args)
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
    print(
        f"jwtriage consume: {stats.events:,} events, {stats.dead_letters:,} dead letters in {stats.batches:,} "
        f"batches, {stats.seconds:.1f} s → {config.store.path}",
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
    parser.add_argument("--batch-size", type=int, default=2_000, help="records per transaction (default 2000)")
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
