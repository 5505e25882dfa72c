"""The rollup files a reader reads, and the daily level a writer adds for closed days (issue 21).

Hourly rollups (`pipeline.rollups`) are one row per hour and key: a busy week is hundreds of thousands of
rows, and the report's histogram and per-client questions read every one of them. Most of its
questions are over whole days and only add rows up, so a writer also keeps, for each closed day whose
hours are merged into one file (`store_parts.day_rollup_name`), that day's rows summed per key
(`rollups.daily_sql`), up to 24x fewer:

    daily/<day>/<inst>-d<day>-v<version>.parquet     the daily rows of hourly/<day>/ of the same name

A daily file stands for exactly the hourly file of its name, so it counts only while that file is the
one readers count for the day (the latest version, no newer hour beside it, not cut by an open rollup);
a day rolled again (a late or re-judged row) has a new day file and no daily file until the writer's
next pass writes it, and readers read that day's hours meanwhile. Stores written before the level (no
`daily/`) read hours everywhere. The writer's pass writes the daily files missing, newest day first,
a few a pass (`add_daily`: an upgraded store's history is filled in over a few passes), and drops
`daily/` day folders with the hourly ones (the same retention).

Readers ask for it (`rollup_relation(…, days=True)`, `queries.coverage.by_day`) only for questions whose
answer is a sum, an extreme or a merge of rows that pass a filter on key columns and `ROW_FLAGS`: such a
question answers the same from a day's one row as from its hours. Only days wholly inside the window
and before the split's boundary are read from daily rows.
"""

from __future__ import annotations

import math
import os
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from pipeline.io.store_parts import (
    _DAY_ROLLUP,
    _OPEN_ROLLUP,
    _PINS,
    _READERS,
    _ROLLUP,
    FIRST_DAY,
    LAST_DAY,
    _epoch,
    _latest_rollups,
    _list_sql,
    _parquet_columns,
    copy_atomically,
    day_number,
    hourly_select,
)
from pipeline.io.store_schema import sql_path
from pipeline.rollups import HOUR_SECONDS, HOURLY_COLUMNS, daily_sql

#: The folder of the daily rollups, beside `hourly/`.
DAILY = "daily"

#: A reader connection's latest rollup files (file, its writer's open_from, its hours, where its daily rows would be)
#: and the listing and pin they follow.
_Latest = list[tuple[str, int | None, float, float, str]]
_LATEST: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, tuple[Any, _Latest]] = weakref.WeakKeyDictionary()


def rollup_relation(con: duckdb.DuckDBPyConnection, since: datetime | None, until: datetime | None,
                    days: bool = False, hours_on: frozenset[int] = frozenset()) -> str:
    """SQL, a FROM item named `classifications_hourly`: the view's rows, but on a reader connection read from only
    the latest files (`_latest_rollups`, the one rule) whose hours can fall in [since, until) (None: no bound).
    `days`: a day wholly inside [since, until) whose file has daily rows is read from those (see the module's
    docstring: its rows are then one per day and key, `hour` the day's start), but for the days numbered in
    `hours_on`.

    The view lists and ranks every rollup file and matches each row to its file by name, in every query:
    ~40 ms before a row of a week is counted, a dozen times a report. Here the ranking is evaluated once per
    connection and again when the files or the pinned open rollup change, and a week reads its ~8 day files.
    A file's hours are taken from its name (`rollup_name`, `day_rollup_name`, `open_rollup_name`: a writer
    rolls an hour into its day's folder, under its number). Any other connection (a writer's, the demo's
    single file, a lake) reads the view.
    """
    parts = _READERS.get(con)
    schema = None if parts is None else parts / "hourly" / "_schema" / "empty.parquet"
    if parts is None or schema is None or not schema.is_file():
        return "classifications_hourly"
    key = (_listing(parts / "hourly"), _PINS.get(con))
    seen = _LATEST.get(con)
    if seen is None or seen[0] != key:
        latest = con.execute(f"SELECT file, open_from FROM ({_latest_rollups(parts)})").fetchall()
        seen = (key, [(str(f), o, *_rollup_hours(Path(f)), str(daily_file(parts, Path(f)))) for f, o in latest])
        _LATEST[con] = seen
    first = -math.inf if since is None else _epoch(since) // HOUR_SECONDS
    end = math.inf if until is None else -(-_epoch(until) // HOUR_SECONDS)
    # the hours daily rows may stand for: the window's whole hours (a day file's are whole days); none without `days`
    day_first, day_end = math.inf, -math.inf
    if days:
        day_first = -math.inf if since is None else -(-_epoch(since) // HOUR_SECONDS)
        day_end = math.inf if until is None else _epoch(until) // HOUR_SECONDS
    whole, cut = [str(schema)], dict[int, list[str]]()  # the empty schema file: every column binds, as in the view
    by_day: list[str] = []
    for file, open_from, start, stop, daily in seen[1]:
        if start >= end or stop <= first:
            continue
        if open_from is None or stop <= open_from:  # the open rollup itself has no open_from: whole
            if (start >= day_first and stop <= day_end and stop - start == 24 and start // 24 not in hours_on
                    and os.path.isfile(daily)):
                by_day.append(daily)  # only a day file has daily rows (written for it under its name)
            else:
                whole.append(file)
        else:  # a closed file its writer's open rollup overlaps: its hours before that count, as in the view
            cut.setdefault(open_from, []).append(file)
    names = hourly_select(parts)
    reads = [f"SELECT {names} FROM read_parquet({_list_sql(whole)}, union_by_name = true)"]
    reads += [f"SELECT {names} FROM read_parquet({_list_sql(by_day)}, union_by_name = true)"] if by_day else []
    reads += [f"SELECT {names} FROM read_parquet({_list_sql(files)}, union_by_name = true) "
              f"WHERE hour < to_timestamp({open_from * HOUR_SECONDS})" for open_from, files in cut.items()]
    return f"({' UNION ALL '.join(reads)}) AS classifications_hourly"


def _listing(folder: Path) -> list[str]:
    """The names of the files in `folder`'s folders (os.scandir: a report asks for it ~19 times)."""
    found = []
    with os.scandir(folder) as folders:
        for child in folders:
            if child.is_dir():
                with os.scandir(child.path) as files:
                    found += [f"{child.name}/{f.name}" for f in files]
    return sorted(found)


def _rollup_hours(file: Path) -> tuple[float, float]:
    """The hours [first, end) a rollup file's rows can have, by its name (a day folder clamped to the first or last
    day Python can date may hold any hour: unbounded)."""
    folder = day_number(file.parent.name)
    if (m := _ROLLUP.match(file.name)) is not None:
        first, end = int(m["hour"]), int(m["hour"]) + 1
    elif (m := _DAY_ROLLUP.match(file.name)) is not None:
        first, end = int(m["day"]) * 24, int(m["day"]) * 24 + 24
    elif (m := _OPEN_ROLLUP.match(file.name)) is not None:
        return int(m["hour"]), math.inf
    else:
        return -math.inf, math.inf
    if folder is None or folder != first // 24 or folder in (FIRST_DAY, LAST_DAY):
        return -math.inf, math.inf
    return first, end


def daily_file(parts: Path, day_file: Path) -> Path:
    """Where the daily rows of the hourly day file `day_file` go (the same name under `daily/`)."""
    return parts / DAILY / day_file.parent.name / day_file.name


def write_daily(con: duckdb.DuckDBPyConnection, parts: Path, day_file: Path) -> Path:
    """Write the daily rows of one merged day file (`rollups.daily_sql`); columns an older writer's file lacks are
    NULL, as readers read them (`store_parts.hourly_select`)."""
    match = _DAY_ROLLUP.match(day_file.name)
    assert match is not None, day_file
    have = _parquet_columns(str(day_file), day_file.stat().st_mtime_ns)
    columns = ", ".join(name if name in have else f"NULL::{kind} AS {name}" for name, kind in HOURLY_COLUMNS)
    source = f"(SELECT {columns} FROM read_parquet('{sql_path(day_file)}'))"
    target = daily_file(parts, day_file)
    copy_atomically(con, f"SELECT *, '{match['inst']}' AS instance, {int(match['version'])}::BIGINT AS version "
                    f"FROM ({daily_sql(source)}) ORDER BY service, client_id, cause", target)
    return target


def add_daily(con: duckdb.DuckDBPyConnection, parts: Path, instance: str, limit: int | None) -> list[Path]:
    """Write the daily rows missing for `instance`'s closed days (those whose latest file is its merged day file),
    newest day first, at most `limit` (None: all); returns the files written."""
    written: list[Path] = []
    hourly = parts / "hourly"
    folders = sorted((f for f in (hourly.iterdir() if hourly.is_dir() else []) if day_number(f.name) is not None),
                     reverse=True)
    for folder in folders:
        if limit is not None and len(written) >= limit:
            break
        days, hours = [], []
        for path in folder.glob(f"{instance}-*.parquet"):
            if (m := _DAY_ROLLUP.match(path.name)) is not None and m["inst"] == instance:
                days.append((int(m["version"]), path))
            elif (m := _ROLLUP.match(path.name)) is not None and m["inst"] == instance:
                hours.append(int(m["version"]))
        if not days:
            continue
        version, latest = max(days)
        if any(v > version for v in hours) or daily_file(parts, latest).exists():
            continue  # an hour newer than the day file (merged at the next pass), or done
        written.append(write_daily(con, parts, latest))
    return written
