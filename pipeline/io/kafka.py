"""Kafka on both sides: the consumer's source of envelopes, and producers (a scenario; `kafka_producers`: the rest).

Every client is built from `client_options`, the one place that turns the `[kafka]` config
into kafka-python settings (bootstrap servers, SASL/SSL, timeouts, and every pass-through
option of `[kafka]` and `[kafka.<client>]`, checked by `kafka_options`).

The source is two kafka-python consumers. A consumer-group member reads `auth.failures` (and
each `[[kafka.sources]]` topic: events in a gateway's format, decoded by the runner with
that format; their positions and commits are kept like the failures topic's), so N
consumers split their partitions; a group-less follower reads every partition of
`auth.tokens.sampled` and `auth.jwks`, because a sample or a key can concern an event on any
partition. Positions come from the store (written in the same transaction as the rows) and
the group's committed offsets, whichever is further: the store is the truth after a crash,
the group's offsets are what another member left behind after a rebalance.
"""

from __future__ import annotations

import heapq
import logging
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # kafka-python 3.0 on Python 3.11
    from kafka import (
        ConsumerRebalanceListener,
        KafkaAdminClient,
        KafkaConsumer,
        KafkaProducer,
        OffsetAndMetadata,
        TopicPartition,
    )
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.config import KafkaConfig
from pipeline.errors import ConfigError
from pipeline.faults import crash_point
from pipeline.io import kafka_options
from pipeline.io.base import handed_over
from pipeline.io.kafka_gaps import GapWatch, Hole, Partition
from pipeline.records import Envelope, Position, RecordKind

log = logging.getLogger(__name__)

#: How long one poll waits for records; also the granularity of shutdown and idle checks.
POLL_TIMEOUT_MS = 500

#: How long the broker may hold a fetch that finds nothing new (see `fetch_options`).
FETCH_MAX_WAIT_MS = 100

#: What the broker gathers for a fetch before it answers, for at most `FETCH_MAX_WAIT_MS` (see `fetch_options`).
FETCH_MIN_BYTES = 262_144

#: Records per poll, and so per transaction, when the consumer is behind (`consume --batch-size`).
#: Each batch pays fixed costs (a DuckDB commit, the DELETE half of the upsert, a synchronous
#: group commit, the followers' polls) and a poll takes at most what one fetch brought (a few
#: thousand ~800-byte events from 1 MiB per partition): at 2,000 a poll often left part of a
#: partition in the buffer, which kept that partition out of the next fetch. Keeping up, a
#: poll returns what came, so batches stay small and latency low.
BATCH_RECORDS = 5_000


def bootstrap_list(bootstrap_servers: str) -> list[str]:
    """`host:port,host:port` (spaces allowed) as the list kafka-python expects."""
    return [server.strip() for server in bootstrap_servers.split(",") if server.strip()]


def client_options(kafka: KafkaConfig, client: str | None = None) -> dict[str, Any]:
    """Connection settings shared by every client (consumers, producers, admin), then the `[kafka]`
    pass-through options this kind of `client` takes and its `[kafka.<client>]` table (kafka_options.py).

    Secrets are revealed here only, for the client itself, as `Masked` strings; the objects
    kafka-python wants (an SSL context, an OAUTHBEARER token provider) are built here.
    """
    kafka_options.check_mechanism(kafka.sasl_mechanism, kafka.security_protocol)
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_list(kafka.bootstrap_servers),
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": 15_000,
        "reconnect_backoff_ms": 200,
        "reconnect_backoff_max_ms": 5_000,
    }
    for name in (
        "sasl_mechanism",
        "sasl_plain_username",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
    ):
        value = getattr(kafka, name)
        if value is not None:
            options[name] = value
    for name in ("sasl_plain_password", "ssl_password"):  # SecretStr: revealed here only, for the client itself
        secret = getattr(kafka, name)
        if secret is not None:
            options[name] = kafka_options.Masked(secret.get_secret_value())
    passthrough = kafka.options if client is None else kafka_options.for_client(kafka.options, client)
    options.update(passthrough)
    if client is not None:
        options.update(getattr(kafka, client))
    options = kafka_options.resolved(options)
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = kafka_options.ssl_context(
            kafka.ssl_cafile, kafka.ssl_certfile, kafka.ssl_keyfile, options.get("ssl_password"),
            options.get("ssl_crlfile"), options.get("ssl_ciphers"), options.get("ssl_check_hostname", True),
        )
    if kafka.sasl_mechanism == "OAUTHBEARER":
        token = kafka.sasl_oauth_token.get_secret_value() if kafka.sasl_oauth_token is not None else None
        if token is None and kafka.sasl_oauth_token_file is None:
            raise ConfigError("[kafka] sasl_mechanism OAUTHBEARER needs sasl_oauth_token_file, sasl_oauth_token_env "
                              "or sasl_oauth_token")
        options["sasl_oauth_token_provider"] = kafka_options.token_provider(
            kafka.sasl_oauth_token_file, token, tuple(sorted(kafka.sasl_oauth_extensions.items()))
        )
    return options


def _settings(kafka: KafkaConfig, client: str, defaults: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
    """jwtriage's `defaults` < the config's options for this client < what jwtriage `fixed` (never configurable)."""
    return defaults | client_options(kafka, client) | fixed


def crc32c_in_c() -> bool:
    """Does kafka-python check CRC32C in C (the `crc32c` package is installed)?"""
    from kafka.record import util

    return util.crc32c_c is not None


def fetch_options(kafka: KafkaConfig) -> dict[str, Any]:
    """How the consumers fetch (bench/bench_e2e.py gives its bare baseline loop the same).

    CRC32C checks only when the `crc32c` package does them in C: kafka-python's pure-Python check
    costs more than classifying the event. librdkafka skips it by default too (`check.crcs=false`):
    the broker verified each batch when it was produced, TCP checksums the wire, and a corrupted
    value would most likely fail its wire model or its signature check rather than pass.

    `fetch_max_wait_ms` 100, not kafka-python's 500: a client sends a broker its next fetch only
    after the last returned, and kafka-python leaves out a partition whose records it is still
    handing out, so with the backlog on one partition (an outage keyed by service) the broker held
    a fetch for the idle ones while the busy one waited behind it. Within that bound the broker
    gathers `fetch_min_bytes` (256 KiB) before it answers: at steady traffic a fetch would otherwise
    bring a few milliseconds' events, each small batch paying a transaction, the upsert and a group
    commit. A consumer behind its topic finds that much at once and is not held (bench/results.md).
    """
    return {
        "max_partition_fetch_bytes": max(kafka.max_message_bytes * 2, 1_048_576),
        "fetch_max_bytes": max(kafka.max_message_bytes * 4, 52_428_800),
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        "fetch_min_bytes": FETCH_MIN_BYTES,
        "check_crcs": crc32c_in_c(),
    }


def ensure_topics(kafka: KafkaConfig) -> None:
    """Create the three topics with the broker's defaults when they do not exist yet.

    A consumer may start before any producer has written; it must not wait for one.
    """
    admin = KafkaAdminClient(**client_options(kafka, "admin"))
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topic_kinds(kafka) if t not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(t, num_partitions=-1, replication_factor=-1) for t in missing])
                log.info("created topics %s", ", ".join(missing))
            except TopicAlreadyExistsError:
                pass  # another consumer was quicker
    finally:
        admin.close()


def topic_kinds(kafka: KafkaConfig) -> dict[str, RecordKind]:
    kinds = {
        kafka.failures_topic: RecordKind.EVENT,
        kafka.samples_topic: RecordKind.SAMPLE,
        kafka.jwks_topic: RecordKind.SNAPSHOT,
    }
    kinds.update((source.topic, RecordKind.EVENT) for source in kafka.sources)
    return kinds


def event_topics(kafka: KafkaConfig) -> list[str]:
    """The topics the group splits among its members: `failures_topic` and every `[[kafka.sources]]` topic."""
    return list(dict.fromkeys([kafka.failures_topic, *(source.topic for source in kafka.sources)]))


def source_formats(kafka: KafkaConfig) -> dict[str, str]:
    """Topic → event format of the `[[kafka.sources]]` (the runner decodes their records with it)."""
    return {source.topic: source.format for source in kafka.sources}


def make_producer(kafka: KafkaConfig, **settings: Any) -> KafkaProducer:
    """A producer that waits for every replica; `settings` override the defaults (batching, sizes)."""
    defaults: dict[str, Any] = {
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "max_request_size": max(kafka.max_message_bytes * 2, 1_048_576),
    }
    return KafkaProducer(**_settings(kafka, "producer", defaults | settings, {}))


def produce(
    kafka: KafkaConfig,
    records: Iterable[tuple[str, str | None, bytes]],
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Send (topic, key, value) records in order, wait for every acknowledgement; returns the count."""
    producer = make_producer(kafka)
    sent = 0
    try:
        for topic, key, value in records:
            producer.send(topic, key=key.encode() if key is not None else None, value=value)
            sent += 1
            if on_progress is not None and sent % 1000 == 0:
                on_progress(sent)
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=30)
    return sent


def scenario_records(scenario: Any, kafka: KafkaConfig) -> Iterable[tuple[str, str | None, bytes]]:
    """A simulated scenario's three streams as (topic, key, value), merged in production order.

    Events are keyed by service (each service's events keep their order), snapshots by
    issuer, samples unkeyed (spread over partitions, as a sampler would).
    """
    streams = (
        ((r.ts, kafka.jwks_topic, r.key, r.value) for r in scenario.snapshots),
        ((r.ts, kafka.samples_topic, None, r.value) for r in scenario.samples),
        ((r.ts, kafka.failures_topic, r.key, r.value) for r in scenario.events),
    )
    for _, topic, key, value in heapq.merge(*streams, key=lambda item: item[0]):
        yield topic, key, value


#: How long re-reading records by position may take in all (`fetch_by_position`).
FETCH_BY_POSITION_SECONDS = 30.0


def fetch_by_position(
    kafka: KafkaConfig, positions: Sequence[Position], max_bytes: int, timeout: float = FETCH_BY_POSITION_SECONDS
) -> dict[Position, bytes]:
    """The records at these positions, read again by a short-lived consumer that assigns and seeks.

    For re-judging stored rows (`pipeline.rejudge`): no group, nothing committed. Offsets
    below a partition's start (past retention) or missing (compacted) are left out, as are
    those past `max_bytes` of values read or `timeout` seconds; the caller counts them.
    """
    wanted: dict[TopicPartition, set[int]] = defaultdict(set)
    for position in positions:
        wanted[TopicPartition(position.source, position.partition)].add(position.offset)
    if not wanted:
        return {}
    found: dict[Position, bytes] = {}
    spent, deadline = 0, time.monotonic() + timeout
    consumer = KafkaConsumer(
        **client_options(kafka), **fetch_options(kafka), group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        starts = consumer.beginning_offsets(list(wanted))
        ends = consumer.end_offsets(list(wanted))
        for tp, offsets in wanted.items():
            todo = sorted(o for o in offsets if starts[tp] <= o < ends[tp])
            consumer.assign([tp])
            while todo and spent < max_bytes and time.monotonic() < deadline:
                consumer.seek(tp, todo[0])
                polled = consumer.poll(timeout_ms=POLL_TIMEOUT_MS).get(tp, [])
                if not polled:
                    continue
                for message in polled:
                    if message.offset in offsets and spent < max_bytes:
                        found[Position(tp.topic, tp.partition, message.offset)] = message.value or b""
                        spent += len(message.value or b"")
                last = polled[-1].offset
                todo = [o for o in todo if o > last]
    finally:
        consumer.close(autocommit=False)
    return found


class _LogAssignments(ConsumerRebalanceListener):
    """Logs rebalances (the listener runs on kafka-python's IO thread: no blocking calls here).

    Partitions that move are forgotten by the gap watch: another member may read them meanwhile,
    so where this one should resume is asked again (the group's committed offset) when they come back.
    """

    def __init__(self, gaps: GapWatch) -> None:
        self.gaps = gaps

    def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked:
            self.gaps.forget(revoked)
            log.info("partitions revoked: %s", sorted(f"{tp.topic}-{tp.partition}" for tp in revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned:
            self.gaps.forget(assigned)
            log.info("partitions assigned: %s", sorted(f"{tp.topic}-{tp.partition}" for tp in assigned))


class KafkaSource:
    """Envelopes from the three topics and `[[kafka.sources]]`, a `CommittingSource`.

    Each batch holds snapshots and samples before events.

    `batches()` polls until the loop stops asking, or, with `exit_when_idle`, until nothing
    new came for that many seconds and the group has read everything (a backfill, a test).
    Start-up reads (`read_jwks_to_end`, `replay_samples`) come before it.

    Records the broker deleted before they were read (retention outran the lag) are found by
    `gaps` (`kafka_gaps.GapWatch`): logged, counted in `gaps.lost`, handed out by `take_holes`;
    `counted_lost` is the last offset per partition that an earlier run already counted so.
    """

    def __init__(
        self,
        kafka: KafkaConfig,
        stored_positions: dict[tuple[str, int], int],
        instance: str = "consumer",
        max_records: int = BATCH_RECORDS,
        sample_replay: int = 10_000,
        exit_when_idle: float | None = None,
        counted_lost: dict[Partition, int] | None = None,
    ) -> None:
        self.kafka = kafka
        self.exit_when_idle = exit_when_idle
        self.kinds = topic_kinds(kafka)
        self.stored_positions = dict(stored_positions)
        self.max_records = max_records
        self.sample_replay = sample_replay
        fetch = fetch_options(kafka)
        if not _settings(kafka, "consumer", fetch, {})["check_crcs"]:
            log.info("kafka-python has no C CRC32C (pip install crc32c): fetched batches' CRCs are not re-checked")
        fixed = {"enable_auto_commit": False, "auto_offset_reset": "earliest"}
        self.group = KafkaConsumer(**_settings(kafka, "consumer", fetch | {
            "max_poll_interval_ms": 300_000,
            "session_timeout_ms": 10_000,
            "heartbeat_interval_ms": 2_000,
        }, fixed | {
            "group_id": kafka.group_id,
            "max_poll_records": max_records,
            # Static membership: a restarted consumer takes its partitions back at once instead of
            # waiting for its dead predecessor's session to expire.
            "group_instance_id": f"jwtriage-{instance}",
        }))
        self.follower = KafkaConsumer(**_settings(kafka, "consumer", fetch, fixed | {"group_id": None}))
        # The key topic gets its own follower, drained before every batch of events: a
        # busy samples topic must never hold back the keys the events need.
        self.keys_follower = KafkaConsumer(**_settings(kafka, "consumer", fetch, fixed | {"group_id": None}))
        # Lag is asked of a client that never fetches: the broker answers a connection's requests
        # in order, so offsets asked on a follower's connection waited behind the fetch the broker
        # was holding for it (up to fetch_max_wait_ms; twice per measurement, one per follower).
        self.offsets = KafkaConsumer(**_settings(kafka, "consumer", fetch, fixed | {"group_id": None}))
        self._unreachable_since: float | None = None
        self.gaps = GapWatch(self._log_starts, counted_through=counted_lost)
        ensure_topics(kafka)
        self._assign_follower()
        self.event_topics = event_topics(kafka)
        self.group.subscribe(self.event_topics, listener=_LogAssignments(self.gaps))

    # -- start-up ------------------------------------------------------------------------

    def _partitions(self, topic: str, timeout: float = 60.0) -> list[TopicPartition]:
        """The topic's partitions; asking for them creates the topic when it does not exist yet."""
        deadline = time.monotonic() + timeout
        while True:
            partitions = self.offsets.partitions_for_topic(topic)
            if partitions:
                return [TopicPartition(topic, p) for p in sorted(partitions)]
            if time.monotonic() > deadline:
                raise KafkaError(f"topic {topic} has no partitions after {timeout:.0f} s; is the broker up?")
            time.sleep(0.5)

    def _assign_follower(self) -> None:
        jwks = self._partitions(self.kafka.jwks_topic)
        samples = self._partitions(self.kafka.samples_topic)
        for consumer, partitions in ((self.keys_follower, jwks), (self.follower, samples)):
            consumer.assign(partitions)
            beginnings = consumer.beginning_offsets(partitions)
            for tp in partitions:
                stored = self.stored_positions.get((tp.topic, tp.partition))
                if stored is None:
                    start = beginnings[tp]
                elif tp.topic == self.kafka.samples_topic:
                    # Re-read recent samples: the join state is memory, and a restart emptied it.
                    start = max(beginnings[tp], stored - self.sample_replay)
                else:
                    start = stored
                if stored is not None:
                    self.gaps.deleted(tp, stored, beginnings[tp] - 1)  # gone while this consumer was down
                consumer.seek(tp, start)
                self.gaps.expect(tp, start)
        self._jwks_partitions = jwks

    def read_jwks_to_end(self) -> list[Envelope]:
        """Every snapshot up to the current end of the JWKS topic (before any event is judged)."""
        ends = self.keys_follower.end_offsets(self._jwks_partitions)
        envelopes: list[Envelope] = []
        while any(self.keys_follower.position(tp) < end for tp, end in ends.items()):
            envelopes.extend(self._envelopes(self.keys_follower.poll(timeout_ms=POLL_TIMEOUT_MS)))
        return handed_over(envelopes)

    def replay_samples(self) -> list[Envelope]:
        """The recent samples this store had already read (its last `sample_replay` per partition).

        The samples joined in memory are gone after a restart; reading them again before any
        event is judged puts the consumer back where it stopped. Records past the stored
        position that come in the same fetch are new samples and are returned too.
        """
        stored = {
            tp: self.stored_positions[(tp.topic, tp.partition)]
            for tp in self.follower.assignment()
            if (tp.topic, tp.partition) in self.stored_positions
        }
        # A topic recreated since (its end below our position) has nothing of ours to replay.
        ends = {tp: min(stored[tp], end) for tp, end in self.follower.end_offsets(list(stored)).items()}
        envelopes: list[Envelope] = []
        while any(self.follower.position(tp) < end for tp, end in ends.items()):
            envelopes.extend(self._envelopes(self.follower.poll(timeout_ms=POLL_TIMEOUT_MS)))
        return handed_over(envelopes)

    def fetch(self, positions: Sequence[Position], max_bytes: int) -> dict[Position, bytes]:
        """Records read again by position (a `pipeline.rejudge.RecordFetcher`)."""
        return fetch_by_position(self.kafka, positions, max_bytes)

    def _drain_keys(self) -> list[Envelope]:
        envelopes: list[Envelope] = []
        while True:
            polled = self._envelopes(self.keys_follower.poll(timeout_ms=0))
            if not polled:
                return handed_over(envelopes)
            envelopes.extend(polled)

    # -- the loop ------------------------------------------------------------------------

    def _envelopes(self, polled: dict[Any, list[Any]]) -> list[Envelope]:
        """A poll's records as envelopes; `polled` is left empty (a frame may keep it: `handed_over`)."""
        out: list[Envelope] = []
        for tp, messages in polled.items():
            self.gaps.observe(tp, messages)
            kind, topic, partition = self.kinds[tp.topic], tp.topic, tp.partition
            out.extend([Envelope(kind, m.value or b"", Position(topic, partition, m.offset)) for m in messages])
        polled.clear()
        return out

    def batches(self) -> Iterator[list[Envelope]]:
        """One polled list per unit of work, an empty one when a poll brought nothing (the loop's idle tick)."""
        idle_since: float | None = None
        while True:
            envelopes = self.poll()
            if envelopes:
                idle_since = None
            elif self.exit_when_idle is not None:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= self.exit_when_idle and self.caught_up():
                    log.info("caught up and idle for %.0f s: exiting", self.exit_when_idle)
                    self.check_gaps()
                    return
            yield envelopes

    def poll(self) -> list[Envelope]:
        """One unit of work: every new key snapshot, new samples, then the group's events.

        A newly assigned partition starts at the group's committed offset; records below this
        consumer's own stored position (stored, but the crash came before the group commit)
        are skipped, and the partition is moved on to that position: max(stored, committed).
        """
        polled = self.group.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=self.max_records)
        for tp in list(polled):
            stored = self.stored_positions.get((tp.topic, tp.partition))
            if not self.gaps.knows(tp):
                self._expect_from_group(tp, stored)
            if stored is not None and polled[tp] and polled[tp][0].offset < stored:
                polled[tp] = [m for m in polled[tp] if m.offset >= stored]
                if not polled[tp]:
                    self.group.seek(tp, stored)
        events = self._envelopes(polled)
        # Keys and samples are read after the events were fetched, so they are at least as recent.
        samples = self._envelopes(self.follower.poll(timeout_ms=0, max_records=self.max_records))
        keys = self._drain_keys()
        if self.gaps.due():
            self.check_gaps()
        return handed_over(keys, samples, events)

    def _expect_from_group(self, tp: Any, stored: int | None) -> None:
        """Where a newly assigned partition should resume: max(stored, the group's committed offset).

        Asked once per assignment, when its first records come: kafka-python started it at the
        committed offset, or, that offset being deleted, at the earliest one left. With neither
        (a new group) the consumer starts at the earliest offset by design: nothing to compare.
        """
        try:
            committed = self.group.committed(tp)
        except KafkaError as exc:
            log.debug("committed offset of %s-%d not known (%s): compared with the stored one only",
                      tp.topic, tp.partition, exc)
            committed = None
        known = [offset for offset in (stored, committed) if offset is not None]
        if known:
            self.gaps.expect(tp, max(known))

    def _log_starts(self, partitions: list[Partition]) -> dict[Partition, int]:
        """The earliest offset still in each partition's log (asked of the client that never fetches)."""
        starts = self.offsets.beginning_offsets([TopicPartition(topic, p) for topic, p in partitions])
        return {(tp.topic, tp.partition): int(offset) for tp, offset in starts.items()}

    def check_gaps(self) -> None:
        """Confirm the gaps seen so far against the broker now (a broker that cannot answer: they wait)."""
        try:
            self.gaps.check()
        except KafkaError as exc:
            log.debug("log start offsets not known (%s): gaps checked later", exc)

    def take_holes(self) -> list[Hole]:
        """Holes (records the broker deleted before they were read) confirmed since the last call."""
        return self.gaps.take_holes()

    def commit(self, positions: dict[tuple[str, int], int]) -> None:
        """Tell the group how far this member got (after the store committed; for lag and rebalances)."""
        crash_point("before_group_commit")
        self.stored_positions.update(positions)
        offsets = {
            TopicPartition(topic, partition): offset
            for (topic, partition), offset in positions.items()
            if topic in self.event_topics
        }
        if offsets:
            try:
                # Synchronous: if this consumer dies, whoever takes its partitions starts right here,
                # not at an older offset whose events this store already holds.
                self.group.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()}, timeout_ms=10_000)
            except KafkaError as exc:  # a rebalance in flight; the store has the truth
                log.debug("offset commit skipped: %s", exc)

    def lag(self) -> dict[tuple[str, int], int] | None:
        """Messages not yet read per partition, or None when the broker cannot be asked.

        Every partition of the failures topic counts, not only this member's: a partition
        held by another member (or a dead one, until the group moves it) is measured by the
        group's committed offset. So "caught up" means the group has read everything.
        """
        try:
            sides = [(follower, list(follower.assignment())) for follower in (self.keys_follower, self.follower)]
            failures = [tp for topic in self.event_topics for tp in self._partitions(topic, timeout=15)]
            ends = self.offsets.end_offsets([tp for _, side in sides for tp in side] + failures)
            result: dict[tuple[str, int], int] = {}
            for follower, side in sides:
                for tp in side:
                    result[(tp.topic, tp.partition)] = max(0, ends[tp] - follower.position(tp))
            mine = self.group.assignment()
            done: dict[TopicPartition, int | None] = {
                tp: self.group.position(tp) if tp in mine else self.group.committed(tp) for tp in failures
            }
            never = [tp for tp, offset in done.items() if offset is None]  # no member has committed yet
            done.update(self.offsets.beginning_offsets(never) if never else {})
            for tp in failures:
                result[(tp.topic, tp.partition)] = max(0, ends[tp] - (done[tp] or 0))
        except KafkaError as exc:
            self._note_unreachable(exc)
            return None
        self._note_reachable()
        return result

    def caught_up(self) -> bool:
        lag = self.lag()
        return lag is not None and not any(lag.values())

    def _note_unreachable(self, exc: Exception) -> None:
        if self._unreachable_since is None:
            self._unreachable_since = time.monotonic()
            log.warning(
                "Kafka at %s is unreachable (%s); retrying with backoff, nothing is lost",
                self.kafka.bootstrap_servers,
                type(exc).__name__,
            )

    def _note_reachable(self) -> None:
        if self._unreachable_since is not None:
            log.warning("Kafka is reachable again after %.0f s; resuming", time.monotonic() - self._unreachable_since)
            self._unreachable_since = None

    def close(self) -> None:
        for consumer in (self.group, self.follower, self.keys_follower, self.offsets):
            try:
                consumer.close(autocommit=False)
            except KafkaError as exc:
                log.debug("closing a consumer: %s", exc)
