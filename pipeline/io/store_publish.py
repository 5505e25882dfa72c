"""A consumer's publish: append what committed since the last one as Parquet, then keep the files few and bounded.

The layout and the readers' views are in `store_parts`. Exactly once as readers see it: the
writer's watermark (the newest `classified_at` published, which `Store` keeps strictly
increasing) and its publish number are stored in its live DuckDB file only after the files are
in place, so a publish cut short by a crash is redone with the same number and file names,
and each file is replaced by a superset of itself, never added twice.

Maintenance, at most every `MAINTENANCE_SECONDS`: roll closed hours into `hourly/`
(`pipeline.rollups.hourly_sql`), roll the open hours up to a minute ago into one provisional file
(`hourly/open/`, replaced at every pass: a reader of a single writer's store then rolls minutes of
raw rows, not up to 70 minutes of them), merge a day whose hours are all rolled into one rollup file
(readers open a file a day, not 24) and sum that day's rows per key (`daily/`, `store_rollups`: the
report's questions over whole days read up to 24x fewer rows), merge a closed day's small files, drop day
folders older than the retention (`[store] retention_days` raw, `rollup_retention_days` rollups) and prune the live
file to the rows re-judging and a restart can still need (`LIVE_HOURS`). Retention counts from the
newest event this writer stored, not the wall clock, so a backfill of old traffic is kept.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from pipeline.io.store_parts import (
    APPENDED,
    FIRST_DAY,
    LAST_DAY,
    OPEN_FOLDER,
    STATE_TABLES,
    clamp_day,
    compact_day,
    copy_atomically,
    day_name,
    day_number,
    day_rollup_files,
    day_rollup_name,
    days_before,
    drop_days_before,
    hour_rollup_files,
    open_rollup_files,
    open_rollup_name,
    part_files,
    part_name,
    remove_covered,
    rollup_files,
    rollup_name,
    write_schema_files,
)
from pipeline.io.store_rollups import DAILY, add_daily, daily_file
from pipeline.io.store_schema import sql_path
from pipeline.rollups import DAY_US, HOUR_SECONDS, hourly_sql, newest_allowed, retention_cutoffs

log = logging.getLogger(__name__)

#: Seconds between maintenance passes (rollups, day close, retention, live pruning).
MAINTENANCE_SECONDS = 60.0
#: DuckDB's memory limit during a maintenance pass only. Rolling up an hour and merging a day spill
#: to disk, but not all of their working set does: an outage hour of a few million rows ran out of
#: the writer's own limit. Set back to the writer's limit as soon as the pass ends.
MAINTENANCE_MEMORY_LIMIT = "1GB"
#: After a maintenance pass failed, the next one waits this long; classifying and publishing go on.
MAINTENANCE_RETRY_SECONDS = 600.0
#: An hour is rolled once the newest stored event is this far past its end (late events re-roll it).
ROLL_AFTER_SECONDS = 600
#: The open hours are rolled up to this long before the newest stored event (at a minute's edge), so that events
#: arriving a little out of order are in the raw rows readers read, not missing from a rollup until the next pass.
OPEN_ROLL_LAG_SECONDS = 60
#: Open hours holding more rows than this (an outage) are not rolled provisionally (it would cost the writer
#: seconds every pass, when it is busiest): readers roll them from raw rows, as before. Steady traffic of a
#: few hundred events/s stays under it (the open span is at most ~70 minutes).
OPEN_ROLL_MAX_ROWS = 1_000_000
#: Nor while rows come faster than this (rows published per second since the last open roll): a backlog drained
#: at thousands a second fills the open span past OPEN_ROLL_MAX_ROWS within minutes, and rolling it meanwhile
#: (again at every settle, as each publish brought late rows) took a large share of a drain's publishing.
OPEN_ROLL_MAX_RATE = 2_000
#: Rows published into hours already rolled (re-judged on a late sample or key, or late events) are rolled
#: again this soon, not at the next pass: readers count those hours from rollups. But never more often
#: than every SETTLE_COST_SHARE times what the last such roll cost (1/20 of the writer's time): an outage
#: hour rolled again costs seconds.
SETTLE_SECONDS = 5.0
SETTLE_COST_SHARE = 20
#: A rollup file a newer version replaced is removed this long after (a reader's question lists its files
#: first and reads them after).
RETIRE_AFTER_SECONDS = 120.0
#: Closed days a maintenance pass writes the daily rows of at most (`store_rollups.add_daily`), newest first: a day
#: closes once a day, and a store upgraded with a year of rollups is filled in over some passes, not in one long one.
DAILY_PER_PASS = 4
#: Hours of written rows the live file keeps: re-judging reaches only events held in
#: memory (at most 10,000 of each kind, minutes of traffic), a restart only the newest waiting ones.
LIVE_HOURS = 6

_HOUR_US = HOUR_SECONDS * 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: How each appended folder's files are sorted, and the column that dates a row into a day folder.
_ORDER = {"classifications": "ts", "superseded": "ts", "dead_letters": "received_at"}
#: An append of more rows than this (a backlog drained between two publishes) is written in arrival
#: order instead of sorted: DuckDB cannot spill this sort of wide rows, and it ran out of the writer's
#: memory limit on ~100k outage verdicts. A stream arrives nearly in `ts` order anyway.
SORTED_APPEND_ROWS = 25_000


def _lit(when: datetime) -> str:
    return f"TIMESTAMPTZ '{when.astimezone(UTC).isoformat()}'"


#: The last microsecond Python can date: a span that would end past it (an event dated in 9999) has no end.
_MAX_US = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


_MIN_US = FIRST_DAY * DAY_US


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=min(max(us, _MIN_US), _MAX_US))


def _span(column: str, start_us: int, end_us: int) -> str:
    """`column` in [start, end), in SQL; open-ended on a side past what Python can date (the clamped days)."""
    bounds = ([f"{column} >= {_lit(_at(start_us))}"] if start_us > _MIN_US else []) + (
        [f"{column} < {_lit(_at(end_us))}"] if end_us <= _MAX_US else [])
    return " AND ".join(bounds) or "TRUE"


class Publisher:
    """Appends one writer's committed rows to `<db>.parts/` and maintains its files there."""

    def __init__(self, con: duckdb.DuckDBPyConnection, parts: Path, instance: str,
                 retention_days: int = 30, rollup_retention_days: int = 400, memory_limit: str | None = None) -> None:
        self.con, self.parts, self.instance = con, parts, instance
        self.memory_limit = memory_limit  # the writer's own, restored after each maintenance pass
        self.maintenance_failures = 0
        self.retention_days, self.rollup_retention_days = retention_days, rollup_retention_days
        self.keys_dirty = True  # the key tables are rewritten at the first publish, then when they change
        self._last_maintenance = float("-inf")
        # Rows published into the span readers count from rollups (`_rolled_until_us`, unknown until a pass
        # rolled): a rollup counts them the old way until they are rolled again (`_settle`).
        self._behind = False
        self._rolled_until_us: int | None = None
        self._last_settle, self._settle_cost = float("-inf"), 0.0
        self._open_rolled_at, self._published_since_open = time.monotonic(), 0  # the open roll's rate check
        self._retired: list[tuple[float, Path]] = []  # (when, file) of rollups replaced: removed later
        write_schema_files(con, parts)

    # -- the writer's bookkeeping, in its live file's store_meta --------------------------------

    def meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM store_meta WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def _set(self, key: str, value: object) -> None:
        self.con.execute("INSERT OR REPLACE INTO store_meta VALUES (?, ?)", [key, str(value)])

    def watermark(self) -> datetime:
        """The newest `classified_at` published (the epoch before the first publish)."""
        stored = self.meta("published_through")
        return datetime.fromisoformat(stored) if stored else _EPOCH

    # -- publish ----------------------------------------------------------------------------------

    def publish(self, in_transaction: Callable[[], None] | None = None, final: bool = False) -> None:
        """Append what committed since the last publish; `in_transaction` runs in the bookkeeping's transaction
        (the heartbeat: each commit of the live file costs a WAL sync, one is enough). `final`: the writer is
        stopping, so its rollups are brought up to its rows now (`_settle`)."""
        seq = int(self.meta("publish_seq") or 1)
        since = self.watermark()
        dead_since = datetime.fromisoformat(self.meta("dead_letters_through") or _EPOCH.isoformat())
        (through, earliest_us) = self.con.execute(
            "SELECT max(classified_at), min(epoch_us(ts)) FROM classifications WHERE classified_at > ?", [since]
        ).fetchone() or (None, None)
        (dead_through,) = self.con.execute(
            "SELECT max(received_at) FROM dead_letters WHERE received_at > ?", [dead_since]
        ).fetchone() or (None,)
        rows = f"classified_at > {_lit(since)} AND classified_at <= {_lit(through)}" if through else None
        if rows:
            self._published_since_open += self._append("classifications", rows, seq)
            self._append("superseded", rows.replace("classified_at", "superseded_at"), seq)
        if dead_through:
            self._append("dead_letters", f"received_at > {_lit(dead_since)} AND received_at <= {_lit(dead_through)}",
                         seq)
        self.con.begin()
        try:
            if in_transaction is not None:
                in_transaction()
            if rows:
                self.con.execute(f"INSERT INTO rollup_pending SELECT DISTINCT epoch_us(ts) // {_HOUR_US} "
                                 f"FROM classifications WHERE {rows}")
                # Retention follows the newest traffic (a backfill of old days keeps them), never the future:
                # an event dated past the wall clock (year 9999) would make every real day look expired.
                (newest,) = self.con.execute(
                    f"SELECT max(ts) FROM classifications WHERE {rows} AND ts <= ?", [newest_allowed(datetime.now(UTC))]
                ).fetchone() or (None,)
                if newest is not None and newest > self.newest():
                    self._set("newest_ts", newest.isoformat())
                self._set("published_through", through.isoformat())
            if dead_through:
                self._set("dead_letters_through", dead_through.isoformat())
            if rows or dead_through:
                self._set("publish_seq", seq + 1)
            self.con.commit()
        except BaseException:
            self.con.rollback()
            raise
        if rows and (self._rolled_until_us is None or earliest_us is None or earliest_us < self._rolled_until_us):
            self._behind = True
        if rows or dead_through:
            self._compact_recent(seq)
        if final:
            self._published_since_open = 0  # stopping: rolling the open hours no longer competes with the stream
        if time.monotonic() - self._last_maintenance >= MAINTENANCE_SECONDS:
            self._maintain_or_wait()
        elif self._behind and (final or time.monotonic() - self._last_settle
                               >= max(SETTLE_SECONDS, SETTLE_COST_SHARE * self._settle_cost)):
            self._settle()
        self._remove_retired()
        self._write_state()

    def _append(self, table: str, where: str, seq: int) -> int:
        """This publish's rows of `table`, one file per day they fall in (usually one); returns how many."""
        column = _ORDER[table]
        days = self.con.execute(
            f"SELECT epoch_us({column}) // {DAY_US}, count(*) FROM {table} WHERE {where} GROUP BY 1"
        ).fetchall()
        rows_by_day: Counter[int] = Counter()  # days past what Python can date share the clamped day's file
        for day, count in days:
            rows_by_day[clamp_day(day)] += count
        for day, count in sorted(rows_by_day.items()):
            span = _span(column, day * DAY_US, (day + 1) * DAY_US)
            target = self.parts / table / day_name(day) / part_name(self.instance, 0, seq, seq)
            order = f" ORDER BY {column}" if count <= SORTED_APPEND_ROWS else ""
            copy_atomically(self.con, f"SELECT * FROM {table} WHERE {where} AND {span}{order}", target)
        return sum(rows_by_day.values())

    def _compact_recent(self, seq: int) -> None:
        """Merge FANOUT files of a level in the day folders this publish wrote to."""
        name = part_name(self.instance, 0, seq, seq)
        for table in APPENDED:
            for written in (self.parts / table).glob(f"*/{name}"):
                compact_day(self.con, written.parent, self.instance, closed=False)

    def _write_state(self) -> None:
        """Rewrite this writer's small tables (its heartbeat and positions at every publish; keys when changed)."""
        folder = self.parts / "state" / self.instance
        for table in STATE_TABLES:
            if table in ("jwks_snapshots", "jwks_keys") and not self.keys_dirty:
                continue
            copy_atomically(self.con, f"SELECT * FROM {table}", folder / f"{table}.parquet")
        self.keys_dirty = False

    # -- maintenance ------------------------------------------------------------------------------

    def newest(self) -> datetime:
        stored = self.meta("newest_ts")
        return datetime.fromisoformat(stored) if stored else _EPOCH

    def maintain(self) -> None:
        """Maintenance now (tests, a backfill's end), then the state readers see."""
        with self._roomy():
            self._maintain(daily_limit=None)
        self._remove_retired()
        self._write_state()

    def _maintain_or_wait(self) -> None:
        """A pass that fails (out of memory on a huge hour, a full disk) must not stop the consumer in
        the outage it is there to watch: the rows are published already, and an hour not rolled yet is
        rolled on read from its raw rows. It is logged and tried again later; each step of a pass
        (a merge, an hour's rollup) is complete or not done at all."""
        try:
            with self._roomy():
                self._maintain(daily_limit=DAILY_PER_PASS)
        except (duckdb.Error, OSError) as exc:
            self.maintenance_failures += 1
            self._last_maintenance = time.monotonic() - MAINTENANCE_SECONDS + MAINTENANCE_RETRY_SECONDS
            log.error("store maintenance failed (%s: %s); classifying and publishing go on, rollups and day "
                      "merges wait; next try in %d s (hint: more memory or disk for %s, or a larger "
                      "MAINTENANCE_MEMORY_LIMIT)", type(exc).__name__, str(exc).splitlines()[0][:200],
                      MAINTENANCE_RETRY_SECONDS, self.parts)

    @contextmanager
    def _roomy(self) -> Iterator[None]:
        if self.memory_limit is None:
            yield
            return
        self.con.execute(f"SET memory_limit = '{MAINTENANCE_MEMORY_LIMIT}'")
        try:
            yield
        finally:
            self.con.execute(f"SET memory_limit = '{self.memory_limit}'")

    def _settle(self) -> None:
        """Roll the hours rows were published into since the last roll, without a pass's merges and retention.

        Readers count a rollup where there is one, so a late or re-judged row in a span already rolled (a
        sample arriving after its event's verdict was rolled) is counted the old way until it is rolled
        again: at most `SETTLE_SECONDS` later while the writer runs, at once when it stops (a stopped
        writer's next pass is at its restart).
        """
        self._last_settle = started = time.monotonic()
        newest = self.newest()
        if newest == _EPOCH:
            return
        try:
            with self._roomy():
                newest_us = int((newest - _EPOCH).total_seconds() * 1_000_000)
                self._roll(newest_us, self._kept_from_day())
                self._roll_open(newest_us)
            self._behind = False
        except (duckdb.Error, OSError) as exc:
            log.error("rolling up re-judged or late rows failed (%s: %s); the rows are published, and the next "
                      "pass rolls them", type(exc).__name__, str(exc).splitlines()[0][:200])
        self._settle_cost = time.monotonic() - started

    def _kept_from_day(self) -> int:
        """The first day whose raw rows earlier passes kept (this pass's cutoff is not applied yet)."""
        expired = self.meta("raw_since")
        return (datetime.fromisoformat(expired) - _EPOCH).days if expired else FIRST_DAY

    def _maintain(self, daily_limit: int | None) -> None:
        """Roll closed hours, close old days (`daily_limit`: days given their daily rows at most), apply retention,
        prune the live file."""
        self._last_maintenance = time.monotonic()
        newest = self.newest()
        if newest == _EPOCH:
            return
        newest_us = int((newest - _EPOCH).total_seconds() * 1_000_000)
        raw_cutoff, rollup_cutoff = retention_cutoffs(newest_us, self.retention_days, self.rollup_retention_days)
        closed_before = (newest_us - _HOUR_US) // DAY_US  # a day closes an hour after it ends
        for table in APPENDED:
            for folder in sorted((self.parts / table).iterdir()):
                number = _day_of(folder)
                files = part_files(folder, self.instance) if number is not None else []
                remove_covered(files)  # a merge a crash cut short left its inputs: they are in the merged file
                if files and number is not None and number < closed_before:
                    compact_day(self.con, folder, self.instance, closed=True)
        self._roll(newest_us, self._kept_from_day())
        self._merge_rolled_days((newest_us - ROLL_AFTER_SECONDS * 1_000_000) // _HOUR_US)
        try:  # an optimisation for readers, who read a day's hours without it: it must not hold up the pass
            add_daily(self.con, self.parts, self.instance, daily_limit)
        except (duckdb.Error, OSError) as exc:
            log.error("writing a closed day's daily rollup rows failed (%s: %s); readers read its hourly rows, and "
                      "the next pass tries again", type(exc).__name__, str(exc).splitlines()[0][:200])
        self._roll_open(newest_us)
        expiring = any(days_before(self.parts / table, raw_cutoff) for table in APPENDED)
        if expiring or self.meta("raw_since"):
            # Said before the days go (their hours are rolled above): a pass cut short in between still says it.
            self._set("raw_since", _at(raw_cutoff * DAY_US).isoformat())
        for table in APPENDED:
            drop_days_before(self.parts / table, raw_cutoff)
        drop_days_before(self.parts / "hourly", rollup_cutoff)
        drop_days_before(self.parts / DAILY, rollup_cutoff)
        self._prune_live()
        self._behind = False

    def _roll(self, newest_us: int, kept_from_day: int) -> None:
        """Roll every pending hour that has closed into `hourly/<day>/`, a new version each time."""
        boundary = (newest_us - ROLL_AFTER_SECONDS * 1_000_000) // _HOUR_US  # hours below are closed
        pending = [h for (h,) in self.con.execute(
            "SELECT DISTINCT hour_no FROM rollup_pending WHERE hour_no < ? ORDER BY 1", [boundary]
        ).fetchall()]
        for hour_no in pending:
            day = hour_no * _HOUR_US // DAY_US
            # A hostile ts (outside what Python can date) is in no rollup; before `kept_from_day` the raw
            # rows are gone and the rollup stands as it is. Hours this pass is about to expire are rolled
            # first (a backfill, or passes that failed for days, reach them unrolled).
            if FIRST_DAY <= day < LAST_DAY and day >= kept_from_day:
                self._roll_hour(hour_no)
            self.con.execute("DELETE FROM rollup_pending WHERE hour_no = ?", [hour_no])
        self._set("rolled_through", _at(boundary * _HOUR_US).isoformat())

    def _rows(self, start_us: int, end_us: int) -> str | None:
        """SQL: this writer's current rows dated in [start, end) (None: it has no file of those days)."""
        days = [day_name(d) for d in range(clamp_day(start_us // DAY_US), clamp_day((end_us - 1) // DAY_US) + 1)]
        rows = [f for day in days for f in part_files(self.parts / "classifications" / day, self.instance)]
        if not rows:
            return None
        gone = [f for day in days for f in part_files(self.parts / "superseded" / day, self.instance)]
        gone_paths = [f.path for f in gone] or [self.parts / "superseded" / "_schema" / "empty.parquet"]
        return (
            f"(SELECT c.* FROM read_parquet({_list(f.path for f in rows)}, union_by_name = true) AS c "
            f"ANTI JOIN read_parquet({_list(gone_paths)}, union_by_name = true) AS s USING (event_id, classified_at) "
            f"WHERE {_span('c.ts', start_us, end_us)})"
        )

    def _roll_open(self, newest_us: int) -> None:
        """Roll the open hours (from `_roll`'s boundary on) up to a minute before the newest event into one file
        that replaces the last pass's (`open_rollup_name`): readers count it and the raw rows dated after it.

        Provisional: rows of those hours that arrive later (dated before its end) are counted by the next
        pass's file, as a late event of a closed hour is by its hour's next version. Not rolled while they hold
        over OPEN_ROLL_MAX_ROWS or rows came faster than OPEN_ROLL_MAX_RATE since the last pass (a backlog).
        """
        first_hour = (newest_us - ROLL_AFTER_SECONDS * 1_000_000) // _HOUR_US
        through_us = (newest_us - OPEN_ROLL_LAG_SECONDS * 1_000_000) // 60_000_000 * 60_000_000
        older = open_rollup_files(self.parts / "hourly", self.instance)
        now = time.monotonic()
        busy = self._published_since_open > OPEN_ROLL_MAX_RATE * max(now - self._open_rolled_at, SETTLE_SECONDS)
        self._open_rolled_at, self._published_since_open = now, 0
        source = (self._rows(first_hour * _HOUR_US, through_us)
                  if through_us > first_hour * _HOUR_US and not busy else None)
        if source is not None:
            (count,) = self.con.execute(f"SELECT count(*) FROM {source}").fetchone() or (0,)
            if count > OPEN_ROLL_MAX_ROWS:
                source = None
        # Nothing to roll, too much or coming too fast: an empty one, so readers read raw rows from the closed hours.
        if source is None:
            through_us = first_hour * _HOUR_US
            empty = self.parts / "classifications" / "_schema" / "empty.parquet"
            source = f"(SELECT * FROM read_parquet('{sql_path(empty)}'))"
        version = max([time.time_ns() // 1000, *(v + 1 for v, _ in older)])
        copy_atomically(self.con, f"SELECT *, '{self.instance}' AS instance, {version}::BIGINT AS version "
                        f"FROM ({hourly_sql(source)})", self.parts / "hourly" / OPEN_FOLDER
                        / open_rollup_name(self.instance, first_hour, through_us, version))
        self._rolled_until_us = through_us
        for _, path in older[:-1]:  # the one before stays a pass: a reader may have pinned it (`OPEN_PIN`)
            path.unlink(missing_ok=True)

    def _roll_hour(self, hour_no: int) -> None:
        day_no = hour_no * _HOUR_US // DAY_US
        day = day_name(day_no)
        source = self._rows(hour_no * _HOUR_US, (hour_no + 1) * _HOUR_US)
        if source is None:
            return
        folder = self.parts / "hourly" / day
        merged = day_rollup_files(folder, self.instance)
        older = rollup_files(folder, self.instance, hour_no)
        version = max([time.time_ns() // 1000, *(v + 1 for v, _ in [*older, *merged])])
        rolled = f"SELECT *, '{self.instance}' AS instance, {version}::BIGINT AS version FROM ({hourly_sql(source)})"
        if merged:  # the day is merged already: a new version of the day's file, never a file of the hour beside it
            copy_atomically(self.con, f"SELECT * FROM read_parquet('{sql_path(merged[-1][1])}', union_by_name = true) "
                            f"WHERE epoch_us(hour) // {_HOUR_US} <> {hour_no} UNION ALL BY NAME {rolled}",
                            folder / day_rollup_name(self.instance, day_no, version))
        else:
            copy_atomically(self.con, rolled, folder / rollup_name(self.instance, hour_no, version))
        self._retire([p for _, p in [*older, *merged]])  # readers count the latest version: these only take space

    def _merge_rolled_days(self, boundary_hour: int) -> None:
        """Merge each day whose hours are all rolled into one file (readers then open a file a day, not 24).

        The merged file is a newer version than every file it replaces, so readers (`store_parts`)
        count it and not them from the moment it appears; the inputs are removed after.
        """
        for folder in sorted((self.parts / "hourly").iterdir()):
            day_no = _day_of(folder)
            if day_no is None or (day_no + 1) * 24 > boundary_hour:
                continue
            hours = hour_rollup_files(folder, self.instance)
            if not hours:
                continue
            merged = day_rollup_files(folder, self.instance)
            latest: dict[int, tuple[int, Path]] = {}
            for path in hours:
                hour_no, version = (int(x) for x in re.findall(r"-[hv](\d+)", path.name[len(self.instance):]))
                if version > (merged[-1][0] if merged else -1) and version > latest.get(hour_no, (-1, path))[0]:
                    latest[hour_no] = (version, path)
            if not latest:  # only files a merged day already replaced (retired, or a merge cut short)
                self._retire(hours)
                continue
            parts = [f"SELECT * FROM read_parquet('{sql_path(p)}')" for _, p in latest.values()]
            if merged:
                parts.append(f"SELECT * FROM read_parquet('{sql_path(merged[-1][1])}') "
                             f"WHERE epoch_us(hour) // {_HOUR_US} NOT IN ({', '.join(str(h) for h in latest)})")
            version = max([time.time_ns() // 1000, *(v + 1 for v, _ in [*latest.values(), *merged])])
            copy_atomically(self.con, f"SELECT * FROM ({' UNION ALL BY NAME '.join(parts)}) ORDER BY hour",
                            folder / day_rollup_name(self.instance, day_no, version))
            self._retire([*hours, *(p for _, p in merged)])

    def _retire(self, paths: Iterable[Path]) -> None:
        """Remove rollup files a newer version replaced, but only `RETIRE_AFTER_SECONDS` later: a reader that
        listed one a moment ago is still reading it (removing it at once failed its question: "Cannot open
        file"). Files a crash left before their time are retired again by the next roll or merge of their day."""
        now = time.monotonic()
        # a day file's daily rows go with it (readers count them only beside it; an hour's file has none)
        self._retired += [(now, p) for path in paths for p in (path, daily_file(self.parts, path))]

    def _remove_retired(self) -> None:
        due = time.monotonic() - RETIRE_AFTER_SECONDS
        waiting: list[tuple[float, Path]] = []
        for when, path in self._retired:
            if when <= due:
                path.unlink(missing_ok=True)
            else:
                waiting.append((when, path))
        self._retired = waiting

    def _prune_live(self) -> None:
        """Drop published rows the live file no longer needs, so a restart reads only recent ones.

        By the time a row was written, not its event's time: re-judging reaches the events the
        consumer read last (held in memory), whatever their `ts`.
        """
        horizon = min(datetime.now(UTC) - timedelta(hours=LIVE_HOURS), self.watermark())
        self.con.execute("DELETE FROM classifications WHERE classified_at <= ?", [horizon])
        self.con.execute("DELETE FROM superseded WHERE superseded_at <= ?", [self.watermark()])
        dead = self.meta("dead_letters_through")
        if dead:
            self.con.execute("DELETE FROM dead_letters WHERE received_at <= ?",
                             [min(datetime.now(UTC) - timedelta(hours=LIVE_HOURS), datetime.fromisoformat(dead))])


def _day_of(folder: Path) -> int | None:
    return day_number(folder.name) if folder.is_dir() else None


def _list(paths: Iterable[Path]) -> str:
    return "[" + ", ".join(f"'{sql_path(p)}'" for p in paths) + "]"
