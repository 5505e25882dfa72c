"""The store for many consumers on many machines: a DuckLake (PostgreSQL catalog, Parquet on S3) that DuckDB attaches.

Opt in with a store path `ducklake:postgres:dbname=... host=... port=... user=...` (`[store] path`,
`JWTRIAGE_DB` or `--db`, the same for the consumers and every reader) and, for the writer that
creates the lake, `JWTRIAGE_LAKE_DATA_PATH=s3://bucket/prefix/`. S3 settings come from the
environment: `JWTRIAGE_LAKE_S3_ENDPOINT` (host:port, for an S3-compatible server),
`JWTRIAGE_LAKE_S3_KEY_ID`, `JWTRIAGE_LAKE_S3_SECRET` (or `_SECRET_FILE`), `JWTRIAGE_LAKE_S3_REGION`.
DuckDB's `ducklake`, `postgres_scanner` and `httpfs` extensions come from the PyPI wheels of the
`lake` extra (they pin DuckDB 1.5.x); nothing is downloaded at run time.

Every batch is one lake transaction holding its rows and its positions (`lake_positions`, keyed
by instance, source and partition). A DELETE fails at commit when another writer appended to its
table meanwhile, so no batch deletes: a re-judged row is appended again with a later
`classified_at` and the replaced version is noted in `lake_superseded`; positions, key tables and
meta are appended with a version too, and the views (`classifications`, `jwks_keys`, ...) keep
the latest. The awaiting_key index that re-judging after a restart reads (`pipeline.rejudge`) is
appended the same way. Rollups, coverage, retention and the bounds on the version tables:
`lake_maintain` (its deletes are short transactions of their own; a batch that loses to one is
committed again).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipeline.engine.keys import KeyTimeline
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
from pipeline.io.lake_maintain import COVERAGE_VIEW, HOURLY_VIEW, LakeMaintenance, migrate_hourly
from pipeline.io.store import (
    WAITING_CONDITION,
    Store,
    classification_table,
    dead_letter_table,
    key_table,
    snapshot_table,
)
from pipeline.io.store_readers import timeline_from
from pipeline.io.store_schema import create_statement
from pipeline.models import AuthFailureEvent, Cause, Confidence
from pipeline.records import Batch, Position
from pipeline.rollups import newest_allowed

LAKE_PREFIX = "ducklake:"
#: (extension, the PyPI wheel's module that ships it)
EXTENSIONS = (("httpfs", "duckdb_extension_httpfs"), ("postgres_scanner", "duckdb_extension_postgres_scanner"),
              ("ducklake", "duckdb_extension_ducklake"))
#: Versions of recent rows a writer remembers, to note the one a re-judge replaces (re-judging reaches
#: only events held in memory: at most 10,000 of each kind).
RECENT_VERSIONS = 100_000
#: Days behind the newest event a restarting writer looks for events still waiting for a sample.
WAITING_DAYS = 2
#: Tries of a batch's transaction that loses to a concurrent one (maintenance deleting inlined rows).
COMMIT_ATTEMPTS = 8

_TABLES = {
    "lake_rows": create_statement("classifications").replace(" classifications (", " lake_rows (", 1),
    "lake_superseded": "CREATE TABLE IF NOT EXISTS lake_superseded (event_id VARCHAR, ts TIMESTAMPTZ, "
    "classified_at TIMESTAMPTZ, superseded_at TIMESTAMPTZ)",
    "lake_dead_letters": create_statement("dead_letters").replace(" dead_letters (", " lake_dead_letters (", 1),
    "lake_snapshots": create_statement("jwks_snapshots").replace(" jwks_snapshots (", " lake_snapshots (", 1),
    "lake_keys": "CREATE TABLE IF NOT EXISTS lake_keys (instance VARCHAR, version TIMESTAMPTZ, issuer VARCHAR, "
    "kid VARCHAR, thumbprint VARCHAR, kty VARCHAR, crv VARCHAR, interval_no INTEGER, first_seen TIMESTAMPTZ, "
    "last_seen TIMESTAMPTZ, removed_at TIMESTAMPTZ, initial BOOLEAN)",
    "lake_positions": "CREATE TABLE IF NOT EXISTS lake_positions (instance VARCHAR, source VARCHAR, "
    "source_partition INTEGER, next_offset BIGINT, updated_at TIMESTAMPTZ)",
    "lake_meta": "CREATE TABLE IF NOT EXISTS lake_meta (instance VARCHAR, key VARCHAR, value VARCHAR, "
    "updated_at TIMESTAMPTZ)",
    # The awaiting_key index (`pipeline.rejudge`): a row per stored unknown_kid version; `gone` rows forget
    # the versions up to their classified_at (a record or sample no longer there).
    "lake_awaiting": "CREATE TABLE IF NOT EXISTS lake_awaiting (event_id VARCHAR, ts TIMESTAMPTZ, kid VARCHAR, "
    "source VARCHAR, source_partition INTEGER, source_offset BIGINT, token_sha256 VARCHAR, "
    "classified_at TIMESTAMPTZ, gone BOOLEAN)",
}

_VIEWS = {
    "classifications": "SELECT r.* FROM lake_rows AS r ANTI JOIN lake_superseded AS s USING (event_id, classified_at)",
    "dead_letters": "SELECT DISTINCT ON (source, source_partition, source_offset) * FROM lake_dead_letters",
    "jwks_snapshots": "SELECT DISTINCT ON (issuer, fetched_at) * FROM lake_snapshots",
    "jwks_keys": "SELECT DISTINCT ON (issuer, thumbprint, interval_no) * EXCLUDE (instance, version) FROM ("
    "SELECT * FROM lake_keys QUALIFY version = max(version) OVER (PARTITION BY instance)) ORDER BY last_seen DESC",
    "key_rotations": "SELECT issuer, kid, thumbprint, kty, 'added' AS action, first_seen AS ts FROM jwks_keys "
    "WHERE NOT initial UNION ALL SELECT issuer, kid, thumbprint, kty, 'removed' AS action, removed_at AS ts "
    "FROM jwks_keys WHERE removed_at IS NOT NULL",
    "source_positions": "SELECT source, source_partition, next_offset, updated_at FROM lake_positions "
    "QUALIFY row_number() OVER (PARTITION BY instance, source, source_partition ORDER BY updated_at DESC) = 1",
    "store_meta": "SELECT key, value FROM lake_meta "
    "QUALIFY row_number() OVER (PARTITION BY instance, key ORDER BY updated_at DESC) = 1",
    "classifications_hourly": HOURLY_VIEW,
    "store_coverage": COVERAGE_VIEW,
    "awaiting_key": "SELECT a.* EXCLUDE (gone) FROM lake_awaiting AS a ANTI JOIN lake_superseded AS s "
    "USING (event_id, classified_at) WHERE NOT a.gone AND NOT EXISTS (SELECT 1 FROM lake_awaiting AS g "
    "WHERE g.gone AND g.event_id = a.event_id AND g.classified_at >= a.classified_at)",
}


def is_lake(path: str | Path) -> bool:
    return str(path).startswith(LAKE_PREFIX)


def _secret_from_env() -> str | None:
    endpoint = os.environ.get("JWTRIAGE_LAKE_S3_ENDPOINT")
    key_id = os.environ.get("JWTRIAGE_LAKE_S3_KEY_ID")
    secret = os.environ.get("JWTRIAGE_LAKE_S3_SECRET")
    secret_file = os.environ.get("JWTRIAGE_LAKE_S3_SECRET_FILE")
    if secret is None and secret_file:
        secret = Path(secret_file).read_text(encoding="utf-8").strip()
    if not (endpoint or key_id):
        return None
    parts = ["TYPE s3", f"REGION '{os.environ.get('JWTRIAGE_LAKE_S3_REGION', 'us-east-1')}'"]
    if key_id:
        parts += [f"KEY_ID '{key_id}'", f"SECRET '{secret or ''}'"]
    if endpoint:
        plain = endpoint.startswith("http://")
        host = endpoint.removeprefix("http://").removeprefix("https://")
        parts += [f"ENDPOINT '{host}'", "URL_STYLE 'path'", f"USE_SSL {'false' if plain else 'true'}"]
    return f"CREATE OR REPLACE SECRET jwtriage_lake ({', '.join(parts)})"


def connect_lake(path: str | Path, data_path: str | None = None, read_only: bool = False
                 ) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the lake attached as `lake` and in use; a `StoreError` with a hint otherwise."""
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        for name, module in EXTENSIONS:
            try:
                folder = Path(importlib.import_module(module).__path__[0])
            except ImportError:
                raise StoreError(
                    f"the lake store needs DuckDB's {name} extension (hint: pip install 'jwtriage[lake]')"
                ) from None
            con.execute(f"LOAD '{folder / 'extensions' / f'v{duckdb.__version__}' / f'{name}.duckdb_extension'}'")
        secret = _secret_from_env()
        if secret:
            con.execute(secret)
        options = []
        data_path = data_path or os.environ.get("JWTRIAGE_LAKE_DATA_PATH")
        if data_path and not read_only:
            options.append(f"DATA_PATH '{data_path}'")
        if read_only:
            options.append("READ_ONLY")
        suffix = " (" + ", ".join(options) + ")" if options else ""
        _attach(con, f"ATTACH '{path}' AS lake{suffix}")
        con.execute("USE lake")
    except duckdb.Error as exc:
        con.close()
        raise StoreError(f"cannot open the lake {path}: {str(exc).strip().splitlines()[0]} "
                         "(hint: is its PostgreSQL up, and JWTRIAGE_LAKE_S3_* set?)") from None
    except BaseException:
        con.close()
        raise
    return con


def _attach(con: duckdb.DuckDBPyConnection, statement: str, attempts: int = 10) -> None:
    """ATTACH, again after a moment when it fails: writers starting together race to create the catalog."""
    for attempt in range(attempts):
        try:
            con.execute(statement)
            return
        except duckdb.Error:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


class LakeStore:
    """A consumer's writer into a shared lake: the same calls as `store.Store`, one lake transaction per batch."""

    def __init__(self, path: str | Path, instance: str, data_path: str | None = None, retention_days: int = 30,
                 rollup_retention_days: int = 400) -> None:
        if not instance.replace("-", "").replace("_", "").isalnum():
            raise StoreError(f"instance name {instance!r} must be letters, digits, - or _ "
                             "(hint: --instance consumer-1)")
        self.db_path, self.instance, self.path = str(path), instance, str(path)
        self.lag: ConsumerLag | None = None
        self.lost: dict[tuple[str, int], RecordsLost] = {}  # notes for the next heartbeat
        self.con = connect_lake(path, data_path)
        self._versions: OrderedDict[str, tuple[datetime, datetime]] = OrderedDict()  # event_id → (ts, classified_at)
        self._last_at = datetime.min.replace(tzinfo=UTC)
        self.maintenance = LakeMaintenance(self.con, instance, retention_days, rollup_retention_days)
        try:
            self._create()
        except BaseException:
            self.con.close()
            raise

    def _create(self) -> None:
        """The tables and views, once (a concurrent creator's commit may win: then they exist)."""
        for attempt in range(5):
            try:
                self.con.begin()
                for statement in _TABLES.values():
                    self.con.execute(statement)
                migrate_hourly(self.con)
                for name, select in _VIEWS.items():
                    self.con.execute(f"CREATE OR REPLACE VIEW {name} AS {select}")
                self.con.commit()
                return
            except duckdb.Error:  # another writer created them at the same moment: they exist now
                with contextlib.suppress(duckdb.Error):
                    self.con.rollback()
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> LakeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> datetime:
        now = max(datetime.now(UTC), self._last_at + timedelta(microseconds=1))
        self._last_at = now
        return now

    def note_hash_key(self, kid: str) -> str | None:
        row = self.con.execute(
            "SELECT value FROM store_meta WHERE key = 'hash_key_id' ORDER BY value LIMIT 1"
        ).fetchone()
        self._meta("hash_key_id", kid)
        return str(row[0]) if row is not None and row[0] != kid else None

    def _meta(self, key: str, value: str) -> None:
        now = self._now()
        self._committed(lambda: self.con.execute("INSERT INTO lake_meta VALUES (?, ?, ?, ?)",
                                                 [self.instance, key, value, now]))

    def beat(self, at: datetime | None = None) -> None:
        when = (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
        self._meta(f"{HEARTBEAT_KEY}{self.instance}", when)
        if self.lag is not None:
            self._meta(f"{LAG_KEY}{self.instance}", lag_value(self.lag))
            self.lag = None  # one note per measurement
        for (topic, partition), lost in self.lost.items():
            self._meta(lost_key(self.instance, topic, partition), lost_value(lost))
        self.lost = {}

    def note_lag(self, lag: ConsumerLag) -> None:
        """The consumer's latest lag, written with the next heartbeat (`Store.note_lag`)."""
        self.lag = lag

    def note_lost(self, lost: RecordsLost) -> None:
        """A partition's records lost to retention, written with the next heartbeat (`Store.note_lost`)."""
        self.lost[(lost.topic, lost.partition)] = lost

    def records_lost(self) -> dict[tuple[str, int], RecordsLost]:
        """This consumer's own loss notes per partition (`Store.records_lost`)."""
        rows = self.con.execute(
            "SELECT arg_max(value, updated_at) FROM lake_meta WHERE instance = ? AND starts_with(key, ?) GROUP BY key",
            [self.instance, lost_prefix(self.instance)],
        ).fetchall()
        notes = [lost for (value,) in rows if (lost := parse_lost(str(value))) is not None]
        return {(note.topic, note.partition): note for note in notes}

    def publish(self, final: bool = False) -> float:
        """Committed batches are visible to readers at once: a heartbeat, and maintenance when due (`lake_maintain`).

        Returns the heartbeat's seconds: a maintenance pass, once a minute over all writers, does not
        space out the heartbeats the caller paces by it. `final`: the writer is stopping, so the closed
        hours changed since the last pass are rolled now (`LakeMaintenance.settle`).
        """
        started = time.perf_counter()
        self.beat()
        spent = time.perf_counter() - started
        if not self.maintenance.when_due() and final:
            self.maintenance.settle()
        return spent

    def maintain(self, expire_after: timedelta | None = None) -> None:
        """A maintenance pass now (`lake_maintain`): rollups, coverage, retention, bounded versions, compaction."""
        self.maintenance.run(**({} if expire_after is None else {"expire_after": expire_after}))

    def write(self, batch: Batch, timeline: KeyTimeline) -> None:
        """The batch's rows, dead letters, snapshots, key timeline and positions: one lake transaction."""
        now = self._now()
        crash_point("batch_start")
        rows = classification_table(batch.judged, now) if batch.judged else None
        ids = rows.column("event_id").to_pylist() if rows is not None else []
        replaced = [(e, *self._versions[e]) for e in ids if e in self._versions]
        self._committed(lambda: self._write_once(batch, timeline, now, rows, replaced))
        crash_point("after_commit")
        if rows is not None:
            for event_id, ts_value in zip(ids, rows.column("ts").to_pylist(), strict=True):
                self._remember(event_id, ts_value, now)

    def _committed(self, body: Callable[[], object]) -> None:
        """`body` in one lake transaction, run again when the commit loses to a concurrent one.

        An append fails at commit when maintenance (`lake_maintain`) deleted inlined rows of its
        table meanwhile; nothing of it is stored then, and the same appends are made again.
        """
        for attempt in range(COMMIT_ATTEMPTS):
            self.con.begin()
            try:
                body()
                self.con.commit()
                return
            except duckdb.TransactionException as exc:
                with contextlib.suppress(duckdb.Error):
                    self.con.rollback()
                if "conflict" not in str(exc).lower() or attempt == COMMIT_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    self.con.rollback()
                raise

    def _write_once(self, batch: Batch, timeline: KeyTimeline, now: datetime, rows: pa.Table | None,
                    replaced: list[tuple[str, datetime, datetime]]) -> None:
        if rows is not None:
            self._append(rows, "lake_rows")
            if replaced:  # the versions these rows replace (remembered from this writer's recent rows)
                ts = pa.timestamp("us", tz="UTC")
                self._append(pa.table({
                    "event_id": [r[0] for r in replaced], "ts": pa.array([r[1] for r in replaced], ts),
                    "classified_at": pa.array([r[2] for r in replaced], ts),
                    "superseded_at": pa.repeat(pa.scalar(now, ts), len(replaced)),
                }), "lake_superseded")
            self._index_awaiting_key(rows)
            crash_point("after_rows")
        if batch.dead_letters:
            self._append(dead_letter_table(batch.dead_letters), "lake_dead_letters")
        if batch.snapshots:
            self._append(snapshot_table(batch.snapshots), "lake_snapshots")
        if batch.timeline_changed:
            keys = key_table(timeline)
            keys = keys.add_column(0, "version", pa.repeat(pa.scalar(now, pa.timestamp("us", "UTC")), len(keys)))
            self._append(keys.add_column(0, "instance", pa.repeat(pa.scalar(self.instance), len(keys))), "lake_keys")
        if batch.positions:
            self.con.executemany(  # a few partitions a batch
                "INSERT INTO lake_positions VALUES (?, ?, ?, ?, ?)",
                [[self.instance, s, p, o, now] for (s, p), o in batch.positions.items()],
            )
        crash_point("before_commit")

    def _append(self, table: pa.Table, into: str) -> None:
        self.con.register("_batch", table)
        self.con.execute(f"INSERT INTO {into} BY NAME SELECT * FROM _batch")
        self.con.unregister("_batch")

    def _index_awaiting_key(self, rows: pa.Table) -> None:
        """The batch's unknown_kid rows join the awaiting_key index (their earlier versions leave it as superseded)."""
        self.con.register("_judged", rows)
        try:
            self.con.execute(
                "INSERT INTO lake_awaiting SELECT event_id, ts, kid, source, source_partition, source_offset, "
                "token_sha256, classified_at, false FROM _judged WHERE cause = ? AND kid IS NOT NULL "
                "AND confidence <> ?", [Cause.UNKNOWN_KID.value, Confidence.REPORTED.value],
            )
        finally:
            self.con.unregister("_judged")

    def forget_awaiting_key(self, event_ids: list[str]) -> None:
        """Events that cannot be judged again (record or sample gone) leave the index: a `gone` row each."""
        if event_ids:
            now = self._now()
            self._committed(lambda: self.con.execute(
                "INSERT INTO lake_awaiting (event_id, classified_at, gone) SELECT unnest(?::VARCHAR[]), ?, true",
                [event_ids, now],
            ))

    def rejudge_relations(self) -> tuple[str, str]:
        """(awaiting_key, classifications) for `pipeline.rejudge`, narrowed to the partitions this writer owns now
        (whose latest position is its own): every writer reads every key snapshot, and only one may re-judge a row."""
        owned = (
            "(source, source_partition) IN (SELECT (source, source_partition) FROM (SELECT source, source_partition, "
            f"arg_max(instance, updated_at) AS owner FROM lake_positions GROUP BY ALL) WHERE owner = '{self.instance}')"
        )
        return f"(SELECT * FROM awaiting_key WHERE {owned})", f"(SELECT * FROM classifications WHERE {owned})"

    def note_candidates(self, rows: list[tuple[str, datetime]]) -> None:
        """Remember the stored versions of rows about to be judged again, so a changed one is noted superseded."""
        unknown = [(e, ts) for e, ts in rows if e not in self._versions]
        if not unknown:
            return
        for event_id, ts, at in self.con.execute(
            "SELECT event_id, ts, classified_at FROM classifications WHERE event_id IN (SELECT unnest(?::VARCHAR[])) "
            "AND ts >= ? AND ts <= ?",
            [[e for e, _ in unknown], min(t for _, t in unknown), max(t for _, t in unknown)],
        ).fetchall():
            self._remember(event_id, ts, at)

    def _remember(self, event_id: str, ts: datetime, version: datetime) -> None:
        self._versions[event_id] = (ts, version)
        self._versions.move_to_end(event_id)
        while len(self._versions) > RECENT_VERSIONS:
            self._versions.popitem(last=False)

    def positions(self) -> dict[tuple[str, int], int]:
        rows = self.con.execute(
            "SELECT source, source_partition, arg_max(next_offset, updated_at) FROM lake_positions "
            "WHERE instance = ? GROUP BY ALL", [self.instance]
        ).fetchall()
        return {(source, partition): offset for source, partition, offset in rows}

    def load_timeline(self) -> KeyTimeline:
        return timeline_from(self.con)

    def awaiting_samples(self, limit: int) -> list[tuple[AuthFailureEvent, Position]]:
        """The newest `limit` events still waiting (as `Store.awaiting_samples`), looking back WAITING_DAYS."""
        rows = self.con.execute(
            f"""
            SELECT * FROM (
                SELECT event_id, ts, service, token_sha256, reported_error, service_jwks_fetched_at,
                       client_id, request_id, source, source_partition, source_offset, classified_at
                FROM classifications
                WHERE ts >= (SELECT coalesce(max(ts) FILTER (WHERE ts <= ?), max(ts)) FROM lake_rows)
                            - INTERVAL {WAITING_DAYS} DAY
                  AND (source, source_partition) IN (
                      SELECT (source, source_partition) FROM lake_positions WHERE instance = ?)
                  AND {WAITING_CONDITION}
                ORDER BY ts DESC, source_offset DESC
                LIMIT ?
            ) ORDER BY ts, source_offset
            """,
            [newest_allowed(datetime.now(UTC)), self.instance, limit],  # a ts in year 9999 must not hide them
        ).fetchall()
        waiting = []
        for event_id, ts, service, sha, error, fetched_at, client, request, source, partition, offset, at in rows:
            event = AuthFailureEvent(
                event_id=event_id, ts=ts, service=service, token_sha256=sha, reported_error=error,
                service_jwks_fetched_at=fetched_at, client_id=client, request_id=request,
            )
            self._remember(event_id, ts, at)
            waiting.append((event, Position(source, partition, offset)))
        return waiting


def open_writer(path: str | Path, instance: str, retention_days: int = 30, rollup_retention_days: int = 400,
                data_path: str | None = None) -> Any:
    """A consumer's writer: a `LakeStore` for a `ducklake:` path, else a `store.Store` (the same calls)."""
    if is_lake(path):
        return LakeStore(path, instance, data_path, retention_days, rollup_retention_days)
    return Store(path, instance=instance, retention_days=retention_days, rollup_retention_days=rollup_retention_days)
