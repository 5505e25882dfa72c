"""The DuckDB store's writer: verdicts, the key timeline, dead letters and source positions.

Writes go in batches through Arrow, in one transaction per batch together with the source
positions that batch covers: after a crash the consumer resumes from the stored positions
and finds exactly the rows of the batches that committed. Rows are keyed by `event_id`, so
replaying input (or judging an event again when its sample arrives) replaces, never
duplicates. No raw token is ever stored: a fingerprint, the header, and the claims with
each personal claim (`sub`, `email`, ...) an HMAC under a key kept outside the store
(`engine.identifiers`); `store_meta` names the key in use by its id, never the key.

The schema (DDL, version, migrations) is in `store_schema`; readers connect through
`store_readers`, never through this module.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipeline.engine.keys import KeyTimeline, load_public_key
from pipeline.engine.tokens import redact_tokens
from pipeline.errors import StoreError
from pipeline.faults import crash_point
from pipeline.io.consumer_health import (
    HEARTBEAT_KEY,
    LAG_KEY,
    ConsumerLag,
    RecordsLost,
    lag_value,
    lost_key,
    lost_prefix,
    lost_value,
    parse_lost,
)
from pipeline.io.live_verdicts import LiveVerdicts
from pipeline.io.store_awaiting import AwaitingKeyIndex
from pipeline.io.store_parts import LIVE_DDL, write_catalog
from pipeline.io.store_publish import Publisher
from pipeline.io.store_readers import timeline_from
from pipeline.io.store_schema import (
    DDL,
    MIGRATIONS,
    SCHEMA_VERSION,
    parts_dir,
    refuse_newer,
    sql_path,
    stored_version,
)
from pipeline.io.verdict_table import classification_table  # the lake and the benchmarks import it from here
from pipeline.models import AuthFailureEvent, JwksSnapshot
from pipeline.records import Batch, DeadLetter, Position
from pipeline.rollups import hourly_sql

log = logging.getLogger(__name__)

#: Rows per row group in the files we write (DuckDB's default is 122,880). The checkpoint that
#: completes a row group compresses all of it at once: with the default, a 1M-event run's
#: resident memory jumped by ~230 MB every 120k rows (peak 862 MB); with 16,384 rows the jumps
#: are small (peak 592 MB), and readers' time filters skip finer zones.
ROW_GROUP_SIZE = 16_384

#: DuckDB memory of a writing process (its buffer pool). Without a limit DuckDB keeps every
#: block it wrote cached until the machine runs short (80% of RAM): a consumer's RSS grew by
#: ~50 MB per million rows. The writer streams batches and never needs much; the tables it
#: writes have no growing index (see the DDL), so the limit is no ceiling on the store's size.
WRITER_MEMORY_LIMIT = "100MB"
#: DuckDB threads of a writing process. A batch's statements are small (2,000 rows): with a
#: second thread DuckDB spent 4-6 µs more CPU per row (insert, delete, commit) handing work
#: back and forth, and a consumer is meant to use one core (run one per core to scale).
WRITER_THREADS = 1

_PUBLIC_MEMBERS = ("kty", "kid", "use", "alg", "crv", "n", "e", "x", "y", "key_ops")

#: The stored events a later record can still judge again (`Store.awaiting_samples`; the lake's too).
WAITING_CONDITION = "token_sha256 IS NOT NULL AND (confidence = 'reported' OR cause = 'unknown_kid')"


def public_jwks(snapshot: JwksSnapshot) -> tuple[list[str], dict[str, Any]]:
    """The snapshot's usable signing keys with public members only (never a private `d`)."""
    keys, kids = [], []
    raw_keys = snapshot.jwks.get("keys")
    for jwk in raw_keys if isinstance(raw_keys, list) else []:
        try:
            load_public_key(jwk)
        except ValueError:
            continue
        keys.append({m: jwk[m] for m in _PUBLIC_MEMBERS if m in jwk})
        kids.append(jwk.get("kid") if isinstance(jwk.get("kid"), str) else "")
    return kids, {"keys": keys}


def snapshot_table(snapshots: list[JwksSnapshot]) -> pa.Table:
    """The key snapshots of one batch as stored: public members only, the latest per (issuer, time)."""
    latest = {(s.issuer, s.fetched_at): s for s in snapshots}
    rows = [public_jwks(s) for s in latest.values()]
    return pa.table(
        {
            "issuer": [s.issuer for s in latest.values()],
            "fetched_at": pa.array([s.fetched_at for s in latest.values()], pa.timestamp("us", "UTC")),
            "kids": pa.array([kids for kids, _ in rows], pa.list_(pa.string())),
            "jwks": [json.dumps(doc, sort_keys=True) for _, doc in rows],
        }
    )


def key_table(timeline: KeyTimeline) -> pa.Table:
    """Every key interval of the timeline, as the `jwks_keys` table holds it (rewritten whole)."""
    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "issuer",
            "kid",
            "thumbprint",
            "kty",
            "crv",
            "interval_no",
            "first_seen",
            "last_seen",
            "removed_at",
            "initial",
        )
    }
    for key in timeline.all_keys():
        earliest = timeline.earliest_snapshot(key.issuer)
        for number, interval in enumerate(key.intervals):
            for name, value in (
                ("issuer", key.issuer),
                ("kid", key.kid),
                ("thumbprint", key.thumbprint),
                ("kty", key.kty),
                ("crv", key.crv),
                ("interval_no", number),
                ("first_seen", interval.first_seen),
                ("last_seen", interval.last_seen),
                ("removed_at", interval.removed_at),
                ("initial", number == 0 and interval.first_seen == earliest),
            ):
                rows[name].append(value)
    ts = pa.timestamp("us", "UTC")
    return pa.table(
        {
            **{k: rows[k] for k in ("issuer", "kid", "thumbprint", "kty", "crv")},
            "interval_no": pa.array(rows["interval_no"], pa.int32()),
            "first_seen": pa.array(rows["first_seen"], ts),
            "last_seen": pa.array(rows["last_seen"], ts),
            "removed_at": pa.array(rows["removed_at"], ts),
            "initial": pa.array(rows["initial"], pa.bool_()),
        }
    )


def dead_letter_table(letters: list[DeadLetter]) -> pa.Table:
    return pa.table(
        {
            "source": [d.position.source for d in letters],
            "source_partition": pa.array([d.position.partition for d in letters], pa.int32()),
            "source_offset": pa.array([d.position.offset for d in letters], pa.int64()),
            "kind": [d.kind.value for d in letters],
            "reason": [redact_tokens(d.reason) for d in letters],
            "excerpt": [redact_tokens(d.excerpt) for d in letters],
            "received_at": pa.array([d.received_at for d in letters], pa.timestamp("us", "UTC")),
        }
    )


class Store:
    """The read-write handle: only the consumer, the demo or a backfill opens one.

    With `instance=None` the store is the file at `path` itself (the demo, a backfill).
    A consumer passes its instance name: it then writes a private working file
    `<path>.parts/<instance>.live.duckdb` (DuckDB allows one writer or many readers of a file,
    never both) and `publish()` appends what committed since to Parquet files beside it, which
    readers read through views (`store_parts`); `<path>` becomes a DuckDB file of those views.
    """

    def __init__(self, path: str | Path, instance: str | None = None, retention_days: int = 30,
                 rollup_retention_days: int = 400) -> None:
        self.db_path = Path(path)
        self.instance = instance
        self.publisher: Publisher | None = None
        self.live: LiveVerdicts | None = None  # a consumer's live table (`_open_parts`)
        self.lag: ConsumerLag | None = None
        self.lost: dict[tuple[str, int], RecordsLost] = {}  # notes for the next heartbeat
        self._awaiting = AwaitingKeyIndex()
        self._last_at = datetime.min.replace(tzinfo=UTC)
        if instance is not None:
            if not instance.replace("-", "").replace("_", "").isalnum():
                raise StoreError(
                    f"instance name {instance!r} must be letters, digits, - or _ (hint: --instance consumer-1)"
                )
            parts_dir(path).mkdir(parents=True, exist_ok=True)
            self.path = str(parts_dir(path) / f"{instance}.live.duckdb")
        else:
            self.path = str(path)
        self.con = duckdb.connect()
        try:
            self.con.execute(f"ATTACH '{sql_path(Path(self.path))}' AS store (ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
            self.con.execute("USE store")
            self.con.execute(f"SET memory_limit = '{WRITER_MEMORY_LIMIT}'")
            self.con.execute(f"SET threads = {WRITER_THREADS}")
            self.con.execute(f"SET temp_directory = '{sql_path(Path(self.path + '.tmp'))}'")  # if it ever spills
        except duckdb.IOException as exc:
            self.con.close()
            raise StoreError(
                f"cannot open {self.path} for writing: {_first_line(exc)}. Only one process may write a store "
                f"(hint: is a consumer already running on it? give each consumer its own --instance)"
            ) from None
        try:
            self._migrate()
            if instance is not None:
                self._open_parts(instance, retention_days, rollup_retention_days)
        except BaseException:
            self.con.close()
            raise

    def _open_parts(self, instance: str, retention_days: int, rollup_retention_days: int) -> None:
        """A consumer: its live-only tables, its publisher, and `<db>` as a catalog of views plain DuckDB opens."""
        self.con.execute(LIVE_DDL)
        self.live = LiveVerdicts(self.con)
        self.publisher = Publisher(self.con, parts_dir(self.db_path), instance, retention_days, rollup_retention_days,
                                   memory_limit=WRITER_MEMORY_LIMIT)
        write_catalog(self.db_path, parts_dir(self.db_path))
        (newest,) = self.con.execute("SELECT max(classified_at) FROM classifications").fetchone() or (None,)
        self._last_at = max(newest or self._last_at, self.publisher.watermark())

    def _now(self) -> datetime:
        """The batch's `classified_at`: strictly increasing in a consumer (its publish watermark and row version)."""
        now = datetime.now(UTC)
        if self.publisher is not None:
            now = max(now, self._last_at + timedelta(microseconds=1))
            self._last_at = now
        return now

    def _migrate(self) -> None:
        self.con.execute("CREATE TABLE IF NOT EXISTS store_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
        version = stored_version(self.con) or 0
        refuse_newer(version, self.path)
        self.con.begin()
        if version == 0:
            self.con.execute(DDL)
        else:
            for target in range(version + 1, SCHEMA_VERSION + 1):
                log.warning("migrating %s to schema version %d", self.path, target)
                for statement in MIGRATIONS[target]:
                    self.con.execute(statement)
        self.con.execute("INSERT OR REPLACE INTO store_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        # The single file keeps every raw row: its rollups are computed on read, and nothing has expired.
        self.con.execute(f"CREATE OR REPLACE VIEW classifications_hourly AS {hourly_sql('classifications')}")
        self.con.execute("CREATE OR REPLACE VIEW store_coverage AS "
                         "SELECT NULL::TIMESTAMPTZ AS raw_since, NULL::TIMESTAMPTZ AS rolled_through")
        self.con.commit()

    def note_hash_key(self, kid: str) -> str | None:
        """Record the id of the key personal claims are hashed under; returns the previous id if it differs.

        Values under two keys never match, so a changed key splits every person's rows in two:
        the caller says so loudly. Only the id (8 hex of the key's SHA-256) is kept, never the key.
        """
        row = self.con.execute("SELECT value FROM store_meta WHERE key = 'hash_key_id'").fetchone()
        self.con.execute("INSERT OR REPLACE INTO store_meta VALUES ('hash_key_id', ?)", [kid])
        return str(row[0]) if row is not None and row[0] != kid else None

    def close(self) -> None:
        self.con.close()

    def publish(self, final: bool = False) -> float:
        """Append what committed since the last publish to where readers look; returns seconds spent.

        Called between batches (the writer is idle). Only the new rows are written (as Parquet,
        `store_publish`), so the cost follows the batch, not the store. A no-op for the single
        file of the demo or a backfill, which readers open directly.
        """
        if self.publisher is None:
            return 0.0
        started = time.perf_counter()
        self.publisher.publish(in_transaction=self.beat, final=final)
        return time.perf_counter() - started

    def beat(self, at: datetime | None = None) -> None:
        """Note that this consumer is alive (`store_meta`, key `heartbeat:<instance>`): written at every publish.

        A reader judges the consumer's health by this, not by event times: an idle consumer
        that is current writes no rows but still beats. An ISO 8601 UTC time, so the newest
        beat of several consumers is the greatest string.
        """
        when = (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
        name = self.instance or "default"
        self.con.execute("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", [f"{HEARTBEAT_KEY}{name}", when])
        if self.lag is not None:
            note = lag_value(self.lag)
            self.con.execute("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", [f"{LAG_KEY}{name}", note])
        for (topic, partition), lost in self.lost.items():
            self.con.execute("INSERT OR REPLACE INTO store_meta VALUES (?, ?)",
                             [lost_key(name, topic, partition), lost_value(lost)])
        self.lost = {}

    def note_lag(self, lag: ConsumerLag) -> None:
        """The consumer's latest lag, written with the next heartbeat: the Live page shows how far behind it is."""
        self.lag = lag

    def note_lost(self, lost: RecordsLost) -> None:
        """Records of a partition lost to the broker's retention (in all), written with the next heartbeat."""
        self.lost[(lost.topic, lost.partition)] = lost

    def records_lost(self) -> dict[tuple[str, int], RecordsLost]:
        """This consumer's own loss notes per partition, as the last run left them (it adds to them)."""
        prefix = lost_prefix(self.instance or "default")
        rows = self.con.execute("SELECT value FROM store_meta WHERE starts_with(key, ?)", [prefix]).fetchall()
        notes = [lost for (value,) in rows if (lost := parse_lost(str(value))) is not None]
        return {(note.topic, note.partition): note for note in notes}

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def write(self, batch: Batch, timeline: KeyTimeline) -> None:
        """Store one batch and its positions in one transaction (all or nothing).

        Rows are upserted by their key (`_upsert`): an event judged again once its sample or
        key arrived, or a backfill run twice, replaces its row.
        """
        now = self._now()
        crash_point("batch_start")
        con = self.con
        con.begin()
        try:
            if batch.judged:
                table = classification_table(batch.judged, now)
                self._upsert_verdicts(table, now)
                self._index_awaiting_key(table)
                crash_point("after_rows")
            if batch.dead_letters:
                letters = dead_letter_table(batch.dead_letters)
                self._upsert(letters, "dead_letters", ("source", "source_partition", "source_offset"))
            if batch.snapshots:
                self._upsert(snapshot_table(batch.snapshots), "jwks_snapshots", ("issuer", "fetched_at"))
            if self.publisher is not None and (batch.snapshots or batch.timeline_changed):
                self.publisher.keys_dirty = True
            if batch.timeline_changed:
                con.execute("DELETE FROM jwks_keys")
                self._insert(key_table(timeline), "jwks_keys")
            if batch.positions:
                self.save_positions(batch.positions, now)
            crash_point("before_commit")
            con.commit()
            crash_point("after_commit")
        except BaseException:
            self._awaiting.rows = None  # the rollback may undo this batch's changes to awaiting_key
            con.rollback()
            raise

    def _upsert(self, table: pa.Table, into: str, key: tuple[str, ...]) -> None:
        """Replace the stored rows that share a key with `table` (no index: see the DDL), then append it.

        Each key includes a column that grows with the stream (an event's ts, a record's
        offset, a snapshot's time): DuckDB pushes the batch's min/max of the join columns into
        the scan, so per-row-group min/max skip all but the newest few row groups (3 ms
        instead of 39 for a 2,000-row batch against 1M rows).
        """
        matches = " AND ".join(f"{into}.{column} = _batch.{column}" for column in key)
        self.con.register("_batch", table)
        self.con.execute(f"DELETE FROM {into} USING _batch WHERE {matches}")
        self.con.execute(f"INSERT INTO {into} BY NAME SELECT * FROM _batch")
        self.con.unregister("_batch")  # on failure the rollback drops the registration with the rest

    def _index_awaiting_key(self, rows: pa.Table) -> None:
        """Keep `awaiting_key` (the stored unknown_kid events with a token) in step with a batch's rows."""
        self._awaiting.index(self.con, rows)

    def forget_awaiting_key(self, event_ids: list[str]) -> None:
        """Take events out of `awaiting_key` that cannot be judged again (their record or sample is gone)."""
        self._awaiting.forget(self.con, event_ids)

    def _upsert_verdicts(self, table: pa.Table, now: datetime) -> None:
        """`_upsert` by event_id; a consumer's live table also notes replaced versions (`LiveVerdicts`)."""
        if self.live is None:
            self._upsert(table, "classifications", ("event_id", "ts"))
        else:
            self.live.upsert(table, now)

    def _insert(self, table: pa.Table, into: str) -> None:
        self.con.register("_batch", table)
        self.con.execute(f"INSERT INTO {into} BY NAME SELECT * FROM _batch")
        self.con.unregister("_batch")  # on failure the rollback drops the registration with the rest

    def save_positions(self, positions: dict[tuple[str, int], int], updated_at: datetime) -> None:
        """Where each source partition resumes: an UPDATE per partition, an INSERT for a new one.

        A batch covers a few partitions; DuckDB's `INSERT OR REPLACE` into the keyed table
        took 7-10 ms for four of them, these statements 4 ms (of a batch's ~60 ms).
        """
        for (source, partition), next_offset in positions.items():
            key = [source, partition]
            updated = self.con.execute(
                "UPDATE source_positions SET next_offset = ?, updated_at = ? WHERE source = ? AND source_partition = ?",
                [next_offset, updated_at, *key],
            ).fetchone()  # (rows updated,)
            if not (updated and updated[0]):
                self.con.execute("INSERT INTO source_positions VALUES (?, ?, ?, ?)", [*key, next_offset, updated_at])

    # -- reading what a restart needs ------------------------------------------------------

    def positions(self) -> dict[tuple[str, int], int]:
        rows = self.con.execute("SELECT source, source_partition, next_offset FROM source_positions").fetchall()
        return {(source, partition): offset for source, partition, offset in rows}

    def load_timeline(self) -> KeyTimeline:
        """The key timeline as stored, for a restart or for `explain --db`."""
        return timeline_from(self.con)

    def awaiting_samples(self, limit: int) -> list[tuple[AuthFailureEvent, Position]]:
        """The newest `limit` stored events that a sample arriving later would judge again, oldest first.

        An event naming its token only by `token_sha256` is stored `reported` until its sample
        arrives, and one judged `unknown_kid` may meet a newer key; the consumer keeps such
        events in memory to judge them again. A restart empties that memory, so it is rebuilt
        from these rows (they hold every field of the event), and the samples replayed at
        start-up reach them as if the consumer had never stopped.
        """
        rows = self.con.execute(
            f"""
            SELECT * FROM (
                SELECT event_id, ts, service, token_sha256, reported_error, service_jwks_fetched_at,
                       client_id, request_id, source, source_partition, source_offset
                FROM classifications
                WHERE {WAITING_CONDITION}
                ORDER BY ts DESC, source_offset DESC
                LIMIT ?
            ) ORDER BY ts, source_offset
            """,
            [limit],
        ).fetchall()
        waiting = []
        for event_id, ts, service, sha, error, fetched_at, client_id, request_id, source, partition, offset in rows:
            event = AuthFailureEvent(
                event_id=event_id, ts=ts, service=service, token_sha256=sha, reported_error=error,
                service_jwks_fetched_at=fetched_at, client_id=client_id, request_id=request_id,
            )
            waiting.append((event, Position(source, partition, offset)))
        return waiting


def _first_line(exc: BaseException) -> str:
    """An exception's message up to its first line break (the store's errors are one line)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
