"""The lake's maintenance: hourly rollups, store_coverage, retention and bounded version tables (`pipeline.io.lake`).

Run by a writer between batches (`LakeStore.publish`), at most every `MAINTENANCE_SECONDS` across
all writers (the last pass is noted in the lake). Nothing here stops a batch: in DuckLake a DELETE
fails at commit when another transaction inserted into the same table meanwhile, while an INSERT
never fails for a concurrent DELETE. So every delete is its own short transaction, tried again a
few times, and a pass that still loses is redone at the next one; batches only append.

**Rollups: one writer at a time rolls whole hours.** A pass rolls every closed hour that changed
since the previous pass (rows written, or versions superseded, since then), over *all* writers'
rows of that hour, and appends the result with a version; `classifications_hourly` keeps the
latest version of each hour. Each version is complete by itself, so two writers that roll the
same hour at once (both passes ran) cost work, never a double count: readers add up the rows of
one version (`sum(events)`, as `pipeline.rollups` documents). Rolling per writer would need every
writer to see the re-judges other writers make of its rows; this needs nothing of the kind.
"Changed since": rows with `classified_at` (a batch's start) after the previous pass minus
`COMMIT_SLACK`, so a batch that committed after the pass read its snapshot is seen next time.
Hours not yet closed are kept pending in the lake's meta.

**Retention and bounds.** Raw rows (verdicts, superseded notes, the awaiting_key index, dead
letters) older than `retention_days` before the newest event, rollups older than
`rollup_retention_days`, and every version but the latest of a rollup hour, a position, a meta
key (heartbeats) and a writer's key timeline are deleted; then DuckLake's own maintenance:
`ducklake_merge_adjacent_files` (the small files of per-batch commits), `ducklake_expire_snapshots`
and `ducklake_cleanup_old_files` (the files only expired snapshots referred to, after
`EXPIRE_AFTER` so running readers keep theirs).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from pipeline.rollups import (
    DAY_US,
    HOUR_SECONDS,
    HOURLY_COLUMNS,
    create_hourly_sql,
    hourly_sql,
    newest_allowed,
    retention_cutoffs,
)

log = logging.getLogger(__name__)

#: Seconds between maintenance passes over all writers of a lake.
MAINTENANCE_SECONDS = 60.0
#: An hour is rolled once the newest stored event is this far past its end (later rows re-roll it).
ROLL_AFTER_SECONDS = 600
#: How long a batch's transaction may run between its `classified_at` and its commit and still have
#: its hours rolled again (rows of a longer one would be missed by the next pass).
COMMIT_SLACK = timedelta(minutes=10)
#: Snapshots (and the files only they refer to) older than this are expired and removed.
EXPIRE_AFTER = timedelta(hours=1)
#: Tries of one delete transaction that loses to concurrent inserts before the pass gives it up.
DELETE_ATTEMPTS = 8
#: The `lake_meta` instance under which the lake-wide state is kept (not a valid writer name).
LAKE_INSTANCE = "*lake"

_HOUR_US = HOUR_SECONDS * 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOURLY = ", ".join(name for name, _ in HOURLY_COLUMNS)

#: The rollup table: `HOURLY_COLUMNS` (whatever `pipeline.rollups` says) + the version and who rolled it.
HOURLY_TABLE = create_hourly_sql("lake_hourly")
HOURLY_VIEW = (f"SELECT {_HOURLY} FROM lake_hourly "
               "QUALIFY dense_rank() OVER (PARTITION BY hour ORDER BY version DESC, rolled_by DESC) = 1")
COVERAGE_VIEW = ("SELECT max(value) FILTER (WHERE key = 'raw_since')::TIMESTAMPTZ AS raw_since, "
                 "max(value) FILTER (WHERE key = 'rolled_through')::TIMESTAMPTZ AS rolled_through FROM store_meta")


def migrate_hourly(con: duckdb.DuckDBPyConnection) -> None:
    """Create `lake_hourly`, and add any column `HOURLY_COLUMNS` gained since (inside the caller's transaction)."""
    con.execute(HOURLY_TABLE)
    have = {name for (name,) in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = 'lake' "
        "AND table_name = 'lake_hourly'").fetchall()}
    for name, kind in [*HOURLY_COLUMNS, ("version", "BIGINT"), ("rolled_by", "VARCHAR")]:
        if name not in have:
            con.execute(f"ALTER TABLE lake_hourly ADD COLUMN {name} {kind}")


def _us(when: datetime) -> int:
    return int((when - _EPOCH).total_seconds() * 1_000_000)


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


class LakeMaintenance:
    """One writer's maintenance passes over a shared lake (`con` has it attached and in use)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, instance: str, retention_days: int,
                 rollup_retention_days: int) -> None:
        self.con, self.instance = con, instance
        self.retention_days, self.rollup_retention_days = retention_days, rollup_retention_days
        self._last = 0.0
        self.lost: list[str] = []  # deletes a pass gave up on (concurrent inserts won every try)

    # -- lake-wide state ---------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.con.execute(
            "SELECT arg_max(value, updated_at) FROM lake_meta WHERE instance = ? AND key = ?", [LAKE_INSTANCE, key]
        ).fetchone()
        return str(row[0]) if row and row[0] is not None else None

    def _set(self, key: str, value: str) -> None:
        self.con.execute("INSERT INTO lake_meta VALUES (?, ?, ?, ?)", [LAKE_INSTANCE, key, value, datetime.now(UTC)])

    # -- passes ------------------------------------------------------------------------------

    def when_due(self) -> bool:
        """A pass if none ran in this lake for `MAINTENANCE_SECONDS` (by any writer); True if one ran."""
        if time.monotonic() - self._last < MAINTENANCE_SECONDS:
            return False
        self._last = time.monotonic()
        last = self.meta("maintained_at")
        if last and datetime.now(UTC) - datetime.fromisoformat(last) < timedelta(seconds=MAINTENANCE_SECONDS):
            return False
        try:
            self.run()
        except duckdb.Error as exc:  # the lake refused a step (a conflict, a server away): the next pass again
            log.warning("lake maintenance stopped: %s; the next pass tries again", str(exc).strip().splitlines()[0])
        return True

    def settle(self) -> None:
        """Roll the closed hours changed since the last pass, without retention or compaction.

        Readers count a closed hour from its rollup, so a late or re-judged row in one is counted the old
        way until a pass rolls it again; when every writer has stopped, none comes. A writer calls this
        at its stop.
        """
        started = datetime.now(UTC)
        row = self.con.execute("SELECT max(ts) FROM lake_rows WHERE ts <= ?", [newest_allowed(started)]).fetchone()
        if row is None or row[0] is None:
            return
        newest_us = _us(row[0])
        try:
            self._transaction(lambda: self._roll(newest_us, started))
        except duckdb.Error as exc:  # a conflict, a server away: the next pass (any writer's) rolls them
            log.warning("lake rollups at stop: %s; the next pass rolls them", str(exc).strip().splitlines()[0])

    def run(self, expire_after: timedelta = EXPIRE_AFTER) -> None:
        """Roll changed closed hours, apply retention, bound the version tables, then DuckLake's own maintenance."""
        started = datetime.now(UTC)
        self.lost = []
        self._transaction(lambda: self._set("maintained_at", started.isoformat()))
        # Retention counts from the newest event (the same policy as the files' store: `newest_allowed`),
        # so a hostile ts (year 9999) moves nothing.
        row = self.con.execute("SELECT max(ts) FROM lake_rows WHERE ts <= ?", [newest_allowed(started)]).fetchone()
        if row is None or row[0] is None:
            return
        newest_us = _us(row[0])
        raw_day, rollup_day = retention_cutoffs(newest_us, self.retention_days, self.rollup_retention_days)
        self._transaction(lambda: self._roll(newest_us, started))
        self._retention(raw_day * DAY_US, rollup_day * DAY_US)
        self._bound_versions()
        self._lake_maintenance(expire_after)
        if self.lost:
            log.warning("lake maintenance: %s lost to concurrent writers every try; the next pass tries again",
                        ", ".join(self.lost))

    def _transaction(self, body: Callable[[], object]) -> bool:
        """`body` in one lake transaction; True once it commits."""
        self.con.begin()
        try:
            body()
            self.con.commit()
            return True
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                self.con.rollback()
            raise

    # -- rollups -----------------------------------------------------------------------------

    def _roll(self, newest_us: int, started: datetime) -> None:
        """Roll the closed hours changed since the last pass (one version each); note coverage."""
        state = json.loads(self.meta("rollup_state") or '{"rolled_at": null, "pending": []}')
        since = datetime.fromisoformat(state["rolled_at"]) - COMMIT_SLACK if state["rolled_at"] else _EPOCH
        changed = {h for (h,) in self.con.execute(
            f"SELECT DISTINCT epoch_us(ts) // {_HOUR_US} FROM lake_rows WHERE classified_at > ? UNION "
            f"SELECT DISTINCT epoch_us(ts) // {_HOUR_US} FROM lake_superseded WHERE superseded_at > ?",
            [since, since]).fetchall()} | set(state["pending"])
        boundary = (newest_us - ROLL_AFTER_SECONDS * 1_000_000) // _HOUR_US  # hours below it are closed
        # An hour retention already cut into keeps its rollup (rolling what is left would undercount it).
        expired = self.meta("raw_since")
        kept_from = _us(datetime.fromisoformat(expired)) if expired else 0
        closed = sorted(h for h in changed if h < boundary and h * _HOUR_US >= kept_from)
        if closed:
            hours = ", ".join(str(h) for h in closed)
            source = (f"(SELECT * FROM classifications WHERE ts >= ? AND ts < ? "
                      f"AND epoch_us(ts) // {_HOUR_US} IN ({hours}))")
            version = time.time_ns() // 1000
            self.con.execute(
                f"INSERT INTO lake_hourly BY NAME SELECT *, {version}::BIGINT AS version, ? AS rolled_by "
                f"FROM ({hourly_sql(source)})",
                [self.instance, _at(closed[0] * _HOUR_US), _at((closed[-1] + 1) * _HOUR_US)],
            )
        pending = sorted(h for h in changed if h >= boundary)
        self._set("rollup_state", json.dumps({"rolled_at": started.isoformat(), "pending": pending}))
        self._set("rolled_through", _at(boundary * _HOUR_US).isoformat())

    # -- deletes -----------------------------------------------------------------------------

    def _delete(self, what: str, sql: str, params: list[Any] | None = None, after: str | None = None) -> None:
        """One DELETE (and `after`) in its own transaction, tried again while concurrent inserts make it conflict."""
        def body() -> None:
            self.con.execute(sql, params or []).fetchall()
            if after:
                self.con.execute(after).fetchall()

        for attempt in range(DELETE_ATTEMPTS):
            try:
                self._transaction(body)
                return
            except duckdb.TransactionException:
                time.sleep(0.05 * (attempt + 1))
            except duckdb.Error as exc:
                if "conflict" not in str(exc).lower():
                    raise
                time.sleep(0.05 * (attempt + 1))
        self.lost.append(what)

    def _retention(self, raw_cutoff_us: int, rollup_cutoff_us: int) -> None:
        raw, rolled = _at(raw_cutoff_us), _at(rollup_cutoff_us)
        [(old,)] = self.con.execute("SELECT count(*) FROM lake_rows WHERE ts < ?", [raw]).fetchall()
        if old or self.meta("raw_since"):
            # Said before the rows go (their hours are rolled): a pass cut short in between still says it.
            self._transaction(lambda: self._set("raw_since", raw.isoformat()))
        if old:
            self._delete("raw rows", "DELETE FROM lake_rows WHERE ts < ?", [raw])
        for table, column in (("lake_superseded", "ts"), ("lake_awaiting", "ts"), ("lake_dead_letters", "received_at")):
            self._delete(table, f"DELETE FROM {table} WHERE {column} < ?", [raw])
        self._delete("rollups", "DELETE FROM lake_hourly WHERE hour < ?", [rolled])

    def _bound_versions(self) -> None:
        """Every version but the latest of rollup hours, positions, meta keys, key timelines; forgotten index rows."""
        self._delete("old rollup versions", "DELETE FROM lake_hourly WHERE (hour, version, rolled_by) NOT IN ("
                     "SELECT (hour, version, rolled_by) FROM lake_hourly QUALIFY dense_rank() OVER ("
                     "PARTITION BY hour ORDER BY version DESC, rolled_by DESC) = 1)")
        self._delete("old positions", "DELETE FROM lake_positions WHERE (instance, source, source_partition, "
                     "updated_at) NOT IN (SELECT (instance, source, source_partition, max(updated_at)) "
                     "FROM lake_positions GROUP BY instance, source, source_partition)")
        self._delete("old meta", "DELETE FROM lake_meta WHERE (instance, key, updated_at) NOT IN ("
                     "SELECT (instance, key, max(updated_at)) FROM lake_meta GROUP BY instance, key)")
        self._delete("old key timelines", "DELETE FROM lake_keys WHERE (instance, version) NOT IN ("
                     "SELECT (instance, max(version)) FROM lake_keys GROUP BY instance)")
        self._dedup("lake_snapshots", "issuer, fetched_at")  # every writer appends every snapshot at each start
        self._dedup("lake_dead_letters", "source, source_partition, source_offset")  # a batch replayed after a crash
        self._delete("settled awaiting_key rows", "DELETE FROM lake_awaiting WHERE (event_id, classified_at) IN ("
                     "SELECT (event_id, classified_at) FROM lake_awaiting EXCEPT "
                     "SELECT (event_id, classified_at) FROM awaiting_key)")

    def _dedup(self, table: str, key: str) -> None:
        """One row per key in an append-only table whose rows of a key are equal (the view shows one anyway)."""
        [(dups,)] = self.con.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {table} GROUP BY {key} HAVING count(*) > 1)").fetchall()
        if not dups:
            return
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE _keep AS SELECT DISTINCT ON ({key}) * FROM {table} "
                         f"WHERE ({key}) IN (SELECT ({key}) FROM {table} GROUP BY {key} HAVING count(*) > 1)")
        try:
            self._delete(f"repeated {table}", f"DELETE FROM {table} WHERE ({key}) IN (SELECT ({key}) FROM _keep)",
                         after=f"INSERT INTO {table} SELECT * FROM _keep")
        finally:
            self.con.execute("DROP TABLE IF EXISTS temp._keep")

    def _lake_maintenance(self, expire_after: timedelta) -> None:
        """DuckLake's own: merge small files, expire old snapshots, remove the files nothing refers to any more."""
        older = datetime.now(UTC) - expire_after
        for what, sql, params in (
            ("merging files", "CALL ducklake_merge_adjacent_files('lake')", []),
            ("expiring snapshots", "CALL ducklake_expire_snapshots('lake', older_than => ?)", [older]),
            ("removing old files", "CALL ducklake_cleanup_old_files('lake', older_than => ?)", [older]),
        ):
            try:
                self.con.execute(sql, params).fetchall()
            except duckdb.Error as exc:  # a concurrent writer's commit: the next pass does it
                self.lost.append(f"{what} ({str(exc).strip().splitlines()[0][:120]})")
