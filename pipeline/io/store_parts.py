"""The consumers' store on disk: immutable Parquet files appended under `<db>.parts/`, read through views.

Each consumer keeps its working state in a private DuckDB file (`store.Store`); `publish()`
appends only what was committed since the last publish, so its cost follows the new rows,
never the store's size (the old publish copied the whole file). Layout of `<db>.parts/`:

    <instance>.live.duckdb                     the writer's working file (positions, recent rows)
    classifications/<day>/<inst>-L<n>-<a>-<b>.parquet   verdicts of events dated <day> (UTC)
    superseded/<day>/...                       (event_id, classified_at) of rows a re-judge replaced
    dead_letters/<day>/...                     dead letters, by the day they were received
    hourly/<day>/<inst>-h<hour>-v<version>.parquet      rollups of one closed hour (`pipeline.rollups`)
    hourly/<day>/<inst>-d<day>-v<version>.parquet       a closed day's rollups merged (one file a day, not 24)
    hourly/open/<inst>-o<hour>-t<us>-v<version>.parquet the open hours from <hour> on, rolled up to <us> (provisional)
    daily/<day>/<inst>-d<day>-v<version>.parquet        a merged day's rollups summed per day (`store_rollups`)
    state/<inst>/<table>.parquet               small tables rewritten whole (keys, positions, meta)
    <table>/_schema/..., state/_schema/...     empty files with the current columns (no glob is empty)

A file name says who wrote it and which publishes (`a`..`b`, the writer's publish numbers) it
holds, so a publish that is repeated after a crash rewrites the same file (a superset of it)
rather than adding a second copy. `classified_at` is the row's version: a re-judged row is
appended again with a later one and the old (event_id, classified_at) goes to `superseded`,
which the `classifications` view anti-joins (a 3,000-row anti-join costs ~40 ms on 2M rows where
a dedup by window over every row costs ~300 ms). A writer merges its small files of a day
(`FANOUT` files of a level into one of the next, and all of a closed day into one) and drops
whole day folders past retention, so files per day stay bounded and nothing rescans history.

`<db>` itself is a small DuckDB file of views over these files (`write_catalog`): plain DuckDB
opens it (`ATTACH '<db>' (READ_ONLY)`), and `store_readers.connect_readonly` builds the same
views (`view_sql`) in memory, wherever the folder was moved.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import weakref
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from pipeline.errors import StoreError
from pipeline.io.store_schema import sql_path
from pipeline.rollups import HOUR_SECONDS, HOURLY_COLUMNS

#: Folders of appended, day-partitioned files, and the column each writer's watermark follows.
APPENDED = ("classifications", "superseded", "dead_letters")
#: Small tables each writer rewrites whole at a publish (`state/<instance>/<table>.parquet`).
STATE_TABLES = ("jwks_snapshots", "jwks_keys", "source_positions", "store_meta")
#: Files of one level a writer merges into one file of the next level (per day and table).
FANOUT = 16
#: The level of the one file a closed day's remaining small files are merged into.
DAY_LEVEL = 9
#: Rows per row group of the files written (the live file's, see `store.ROW_GROUP_SIZE`): the Parquet
#: writer holds a row group in memory, and the writer's DuckDB has 100 MB.
ROW_GROUP_SIZE = 16_384
#: Rows per row group of a file merged from a day's files (`merge`). A reader parses a file's footer, one entry
#: per row group and column, before it reads a row: a full-rate day (17M rows) merged in 16,384-row groups had a
#: 4.5 MB footer, ~50 ms to parse, and in 65,536-row groups 12 ms. Writing them, a day's merge (one thread) peaked
#: at ~30 MB more resident memory than with 16,384 (DuckDB's default, 122,880: ~120 MB more).
MERGED_ROW_GROUP_SIZE = 65_536
#: Version of the views `write_catalog` puts in `<db>` (a writer rewrites an older catalog).
CATALOG_VERSION = 5  # 2: rollups gained alg and the histograms; 3: latest rollups by file name, a closed day merged;
# 4: the open hours' provisional rollup (`open_rollup_name`); 5: rollups gained the key and the signed-at range

_FILE = re.compile(r"^(?P<inst>.+)-L(?P<level>\d+)-(?P<first>\d+)-(?P<last>\d+)\.parquet$")
_ROLLUP = re.compile(r"^(?P<inst>.+)-h(?P<hour>\d+)-v(?P<version>\d+)\.parquet$")
_DAY_ROLLUP = re.compile(r"^(?P<inst>.+)-d(?P<day>\d+)-v(?P<version>\d+)\.parquet$")
_OPEN_ROLLUP = re.compile(r"^(?P<inst>.+)-o(?P<hour>\d+)-t(?P<through>\d+)-v(?P<version>\d+)\.parquet$")
#: The folder of the open hours' rollups (not a day: retention and day merges pass it by).
OPEN_FOLDER = "open"
#: A reader connection's DuckDB variable naming the open rollup (by its end, µs) it counts: set at its first
#: look at `store_coverage` (`pin_open_rollup`), so a pass that writes a newer one meanwhile changes none of
#: its answers (the writer keeps the one before the newest). Unset (plain DuckDB): the newest.
OPEN_PIN = "jwtriage_open_through"
#: A reader connection's DuckDB variable naming the files its `classifications` view reads (`create_views`).
RAW_FILES = "jwtriage_raw_files"

#: The live DuckDB tables only a consumer keeps (not in the DDL: the demo's single file has no use for them).
LIVE_DDL = """
CREATE TABLE IF NOT EXISTS superseded (
    event_id VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL, classified_at TIMESTAMPTZ NOT NULL,
    superseded_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS rollup_pending (hour_no BIGINT NOT NULL);
"""

#: The first and last day numbers Python can date (0001-01-01, 9999-12-31). DuckDB stores times far
#: outside them (a hostile `ts`): such rows go to the first or last day's folder, never crash a publish.
FIRST_DAY = (date.min - date(1970, 1, 1)).days
LAST_DAY = (date.max - date(1970, 1, 1)).days


def clamp_day(day_no: int) -> int:
    return min(max(day_no, FIRST_DAY), LAST_DAY)


def day_name(day_no: int) -> str:
    """The folder of day number `day_no` (days since the epoch, UTC; clamped to the days Python can date)."""
    return (date(1970, 1, 1) + timedelta(days=clamp_day(day_no))).isoformat()


@functools.lru_cache(maxsize=4096)
def day_number(name: str) -> int | None:
    """The day number of a day folder's name, None for any other folder (`_schema`). Cached: a report's questions
    ask it of every day folder ~30 times, and `strptime` is ~12 µs a call."""
    try:
        return (datetime.strptime(name, "%Y-%m-%d").replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).days
    except ValueError:
        return None


def is_parts_store(parts: Path) -> bool:
    """Does `parts` hold the appended layout (rather than the published DuckDB copies of older versions)?"""
    return (parts / "state").is_dir()


def _glob(parts: Path, pattern: str) -> str:
    return sql_path(parts / pattern)


def raw_files_sql(parts: Path) -> str:
    """Every day folder's files, the schema file first: `union_by_name` orders columns by the first file
    holding each, so a day written before a column was added must not come first (DuckDB 1.4 refuses a
    lazy view whose columns came out in another order than when it was created)."""
    schema_file = parts / "classifications" / "_schema" / "empty.parquet"
    every_day = _glob(parts, "classifications/*/*.parquet")
    return f"['{sql_path(schema_file)}', '{every_day}']" if schema_file.is_file() else f"'{every_day}'"


def view_sql(parts: Path, raw_files: str | None = None) -> dict[str, str]:
    """name → SELECT of every view readers see over the files in `parts` (the same in `<db>` and in memory).

    `raw_files`: an SQL expression naming the `classifications` files (default: the glob of every day folder).
    """
    read = "read_parquet('{}', union_by_name = true)"
    state = {t: read.format(_glob(parts, f"state/*/{t}.parquet")) for t in STATE_TABLES}
    hourly = hourly_select(parts, "r.")
    raw = raw_files_sql(parts) if raw_files is None else raw_files
    return {
        "classifications": (
            f"SELECT c.* FROM read_parquet({raw}, union_by_name = true) AS c "
            f"ANTI JOIN {read.format(_glob(parts, 'superseded/*/*.parquet'))} AS s USING (event_id, classified_at)"
        ),
        "dead_letters": "SELECT DISTINCT ON (source, source_partition, source_offset) * "
        f"FROM {read.format(_glob(parts, 'dead_letters/*/*.parquet'))}",
        "jwks_snapshots": f"SELECT DISTINCT ON (issuer, fetched_at) * FROM {state['jwks_snapshots']}",
        "jwks_keys": "SELECT DISTINCT ON (issuer, thumbprint, interval_no) * "
        f"FROM {state['jwks_keys']} ORDER BY last_seen DESC",
        "key_rotations": "SELECT issuer, kid, thumbprint, kty, 'added' AS action, first_seen AS ts FROM jwks_keys "
        "WHERE NOT initial UNION ALL SELECT issuer, kid, thumbprint, kty, 'removed' AS action, removed_at AS ts "
        "FROM jwks_keys WHERE removed_at IS NOT NULL",
        "source_positions": f"SELECT * FROM {state['source_positions']}",
        "store_meta": f"SELECT DISTINCT key, value FROM {state['store_meta']}",
        # One row per writer and key of an hour (its latest version): readers add rows up (`sum(events)`).
        # The latest version is chosen by file name (`rollup_name`), not by a window over every row: a
        # listing of the files costs milliseconds where the window cost ~0.2 s a million rows. A writer's
        # closed hours count before its open rollup's first hour, the open rollup from it on.
        "classifications_hourly": f"SELECT {hourly} FROM "
        f"read_parquet('{_glob(parts, 'hourly/*/*.parquet')}', union_by_name = true, filename = true) AS r "
        f"JOIN ({_latest_rollups(parts)}) AS f ON f.file = r.filename "
        f"WHERE f.open_from IS NULL OR r.hour < to_timestamp(f.open_from * {HOUR_SECONDS})",
        "store_coverage": _coverage_sql(parts),
    }


def hourly_select(parts: Path, prefix: str = "") -> str:
    """SQL, the select list of `HOURLY_COLUMNS` over the rollup files: a column none of them has yet (the store's
    writer is an older jwtriage, whose schema file lacks it) reads as NULL rather than failing every question."""
    schema = parts / "hourly" / "_schema" / "empty.parquet"
    have = _parquet_columns(str(schema), schema.stat().st_mtime_ns) if schema.is_file() else None
    return ", ".join(f"{prefix}{name}" if have is None or name in have else f"NULL::{kind} AS {name}"
                     for name, kind in HOURLY_COLUMNS)


@functools.lru_cache(maxsize=64)
def _parquet_columns(path: str, mtime_ns: int) -> frozenset[str]:
    """A Parquet file's column names, cached by its time (`mtime_ns`: a schema file is rewritten, never edited)."""
    with duckdb.connect() as con:  # not pyarrow.parquet: importing it costs every writer ~40 MB resident
        return frozenset(n for (n,) in con.execute("SELECT name FROM parquet_schema(?)", [path]).fetchall())


def _rollup_files_sql(parts: Path, folders: str = "*") -> str:
    """SQL: the rollup files (of `folders`) by their names' parts (`rollup_name`, `day_rollup_name`,
    `open_rollup_name`)."""
    name = "regexp_extract(file, '([^/]+)/([^/]+)-([hdo])([0-9]+)(?:-t([0-9]+))?-v([0-9]+)[.]parquet$', " \
           "['folder', 'inst', 'kind', 'no', 'through', 'version'])"
    return (f"SELECT file, n.folder, n.inst, n.kind, try_cast(n.no AS BIGINT) AS no, "
            f"try_cast(n.through AS BIGINT) AS through, try_cast(n.version AS BIGINT) AS v "
            f"FROM (SELECT file, {name} AS n FROM glob('{_glob(parts, f'hourly/{folders}/*.parquet')}'))")


def _open_rollups_sql(parts: Path) -> str:
    """SQL: each writer's open rollup readers count (its latest, or the one the connection pinned): file, inst,
    open_from (its first hour's number), through (microseconds)."""
    return (f"SELECT file, inst, no AS open_from, through FROM ({_rollup_files_sql(parts, OPEN_FOLDER)}) "
            f"WHERE kind = 'o' AND v IS NOT NULL AND coalesce(through = getvariable('{OPEN_PIN}'), true) "
            "QUALIFY v = max(v) OVER (PARTITION BY inst)")


def _coverage_sql(parts: Path) -> str:
    """SQL: `store_coverage`. `closed_through`: where every writer's closed hours end (the earliest). With one
    writer and its open rollup, `rolled_through` is where that rollup ends (readers roll minutes of raw rows,
    not the open hours); with more, raw rows carry no writer to cut each at its own point, so the closed
    hours' end."""
    meta = f"read_parquet('{_glob(parts, 'state/*/store_meta.parquet')}', union_by_name = true, filename = true)"
    return f"""WITH meta AS (SELECT regexp_extract(filename, '([^/]+)/store_meta[.]parquet$', 1) AS inst, key, value
                      FROM {meta}),
             opened AS ({_open_rollups_sql(parts)}),
             closed AS (SELECT least(min(value) FILTER (WHERE key = 'rolled_through')::TIMESTAMPTZ,
                                     (SELECT min(to_timestamp(open_from * {HOUR_SECONDS})) FROM opened)) AS closed_at
                        FROM meta),
             writers AS (SELECT count(DISTINCT inst) AS n FROM (SELECT inst FROM meta UNION SELECT inst FROM opened)),
             alone AS (SELECT any_value(through) AS through FROM opened WHERE (SELECT n FROM writers) = 1)
        SELECT (SELECT max(value) FILTER (WHERE key = 'raw_since')::TIMESTAMPTZ FROM meta) AS raw_since,
               coalesce(to_timestamp(0) + to_microseconds((SELECT through FROM alone)), (SELECT closed_at FROM closed))
                   AS rolled_through,
               (SELECT closed_at FROM closed) AS closed_through, (SELECT through FROM alone) AS open_through_us"""


def _latest_rollups(parts: Path) -> str:
    """SQL: the rollup files readers count (names: `rollup_name`, `day_rollup_name`, `open_rollup_name`) and, for
    a closed one, the hour its writer's open rollup starts at (`open_from`: its rows from then on do not count).
    Of each writer's hour or day, the latest version; an hour's file only if newer than its writer's file
    of the whole day (a day's merged file replaces its hours' files, and is rewritten, never added to,
    when an hour of it is rolled again), so at every moment each hour is counted once; of its open
    rollups, the latest."""
    return (f"SELECT f.file, o.open_from FROM ({_rollup_files_sql(parts)}) AS f "
            f"LEFT JOIN ({_open_rollups_sql(parts)}) AS o USING (inst) "
            "WHERE v IS NOT NULL AND kind IN ('h', 'd') QUALIFY v = max(v) OVER (PARTITION BY folder, inst, kind, no) "
            "AND (kind = 'd' OR v > coalesce(max(v) FILTER (WHERE kind = 'd') OVER (PARTITION BY folder, inst), -1)) "
            f"UNION ALL SELECT file, NULL FROM ({_open_rollups_sql(parts)})")


def pin_open_rollup(con: duckdb.DuckDBPyConnection, through_us: int) -> None:
    """Count the open rollup ending at `through_us` on this connection from now on (`OPEN_PIN`)."""
    con.execute(f"SET VARIABLE {OPEN_PIN} = {int(through_us)}::BIGINT")
    _PINS[con] = int(through_us)


#: The open rollup each connection pinned (`pin_open_rollup`): the latest files depend on it.
_PINS: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, int] = weakref.WeakKeyDictionary()
def raw_relation(con: duckdb.DuckDBPyConnection, since: datetime | None, until: datetime | None) -> str:
    """SQL, a FROM item named `classifications`: the view's rows, but on a reader connection read from only the day
    folders [since, until) can reach (None: no bound), and anti-joined with only those days' `superseded` files,
    not at all when they have none (a row and the rows replacing it are dated by the same `ts`).

    The view reads every day's files and, to anti-join them, every row's event_id (a 32-character string):
    the day at 200 events/s, 17M rows, took 1.5 s through the view and 0.7 s without the anti-join.
    Any other connection reads the view.
    """
    parts = _READERS.get(con)
    if parts is None or not (parts / "classifications" / "_schema" / "empty.parquet").is_file():
        return "classifications"
    first = -math.inf if since is None else _epoch(since) // 86400
    end = math.inf if until is None else -(-_epoch(until) // 86400)

    def files(table: str) -> list[str]:
        found: list[str] = []
        if not (parts / table).is_dir():
            return found
        with os.scandir(parts / table) as folders:
            for folder in folders:
                day = day_number(folder.name)
                if folder.is_dir() and (day is None or first <= day < end or day in (FIRST_DAY, LAST_DAY)):
                    with os.scandir(folder.path) as names:  # `_schema` (no day): every column binds, as in the view
                        found += [f.path for f in names if f.name.endswith(".parquet")]
        return sorted(found)

    rows = f"SELECT c.* FROM read_parquet({_list_sql(files('classifications'))}, union_by_name = true) AS c"
    replaced = [f for f in files("superseded") if Path(f).parent.name != "_schema"]
    if replaced:
        rows += (f" ANTI JOIN read_parquet({_list_sql(replaced)}, union_by_name = true) AS s "
                 "USING (event_id, classified_at)")
    return f"({rows}) AS classifications"


def _epoch(moment: datetime) -> float:
    """Seconds since the epoch; a time without a zone is UTC, as readers' DuckDB sessions take it (`TimeZone`)."""
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def _list_sql(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


#: Reader connections over a parts store (`store_readers.connect_readonly`) → the folder they read.
_READERS: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, Path] = weakref.WeakKeyDictionary()


def mark_reader(con: duckdb.DuckDBPyConnection, parts: Path) -> None:
    """Note that `con` reads the files in `parts` through the views (so `coverage_signature` applies to it)."""
    _READERS[con] = parts


def coverage_signature(con: duckdb.DuckDBPyConnection) -> tuple[str, ...] | None:
    """What `store_coverage` follows on a reader connection, as file names and stats: the writers' `store_meta`
    files (rewritten whole, so a new inode or time) and the open rollups' names. The same signature, the
    same coverage. None for any other connection (a writer's, the demo's single file)."""
    parts = _READERS.get(con)
    if parts is None:
        return None
    found = []
    for meta in sorted((parts / "state").glob("*/store_meta.parquet")):
        try:
            st = meta.stat()
        except FileNotFoundError:  # a writer replacing it this instant: no signature, no reuse
            return None
        found.append(f"{meta}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}")
    opened = parts / "hourly" / OPEN_FOLDER
    return (*found, "|", *sorted(p.name for p in (opened.iterdir() if opened.is_dir() else [])))


def create_views(con: duckdb.DuckDBPyConnection, parts: Path, lazy: bool = False) -> None:
    """The views of `view_sql` on `con`. `lazy` (a reader's connection): creating them reads no raw day's file.

    DuckDB binds a view when it is created, and binding `read_parquet(…, union_by_name = true)` parses every
    file's footer: a full-rate day's file has thousands of row groups, so a connection paid for every raw day
    kept although its questions read only their window's folders (`raw_relation`). A lazy `classifications`
    reads the files the variable `RAW_FILES` names: at creation the empty schema file, then every day folder.
    A view is bound again at each use, so it answers the same; the first question through it pays the footers.
    """
    # Every question reads the footers of every rollup file (a file an hour): read each once per connection.
    con.execute("SET parquet_metadata_cache = true")
    schema_file = parts / "classifications" / "_schema" / "empty.parquet"
    lazy = lazy and schema_file.is_file()
    if lazy:
        con.execute(f"SET VARIABLE {RAW_FILES} = ['{sql_path(schema_file)}']")
    for name, select in view_sql(parts, f"getvariable('{RAW_FILES}')" if lazy else None).items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {select}")
    if lazy:
        con.execute(f"SET VARIABLE {RAW_FILES} = {raw_files_sql(parts)}")


def write_catalog(db: Path, parts: Path) -> None:
    """Make `<db>` a DuckDB file of the views (absolute paths), replaced atomically so readers never see half.

    Kept when it already holds this version's views: a reader may have it open, and a
    rename leaves it reading the old one anyway.
    """
    if db.exists():
        try:
            with duckdb.connect(str(db), read_only=True) as con:
                tables = {t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
                row = (con.execute("SELECT value FROM store_catalog WHERE key = 'catalog_version'").fetchone()
                       if "store_catalog" in tables else None)
        except duckdb.Error as exc:
            raise StoreError(f"{db} is not a store consumers can share ({str(exc).splitlines()[0]}) "
                             "(hint: give the consumers a --db of their own)") from None
        if "store_catalog" not in tables:  # the demo's or a backfill's single file: never replaced
            raise StoreError(f"{db} is a single-file store (written by the demo or a backfill), not one "
                             "consumers share (hint: give the consumers a --db of their own)")
        if row and int(row[0]) >= CATALOG_VERSION:
            return
    tmp = db.with_name(f".{db.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    with duckdb.connect(str(tmp)) as con:
        con.execute("CREATE TABLE store_catalog (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
        con.execute("INSERT INTO store_catalog VALUES ('catalog_version', ?), ('parts', ?)",
                    [str(CATALOG_VERSION), str(parts.resolve())])
        create_views(con, parts.resolve())
    os.replace(tmp, db)


def write_schema_files(con: duckdb.DuckDBPyConnection, parts: Path) -> None:
    """Empty files with the current columns of every table, so each view's glob matches at least one file."""
    shapes = {
        "classifications/_schema/empty.parquet": "SELECT * FROM classifications LIMIT 0",
        "dead_letters/_schema/empty.parquet": "SELECT * FROM dead_letters LIMIT 0",
        "superseded/_schema/empty.parquet": "SELECT * FROM superseded LIMIT 0",
        "hourly/_schema/empty.parquet": "SELECT "
        + ", ".join(f"NULL::{kind} AS {name}" for name, kind in HOURLY_COLUMNS)
        + ", NULL::VARCHAR AS instance, NULL::BIGINT AS version LIMIT 0",
        **{f"state/_schema/{t}.parquet": f"SELECT * FROM {t} LIMIT 0" for t in STATE_TABLES},
    }
    for relative, select in shapes.items():
        copy_atomically(con, select, parts / relative)


def copy_atomically(con: duckdb.DuckDBPyConnection, select: str, target: Path, params: list[object] | None = None,
                    row_group_size: int = ROW_GROUP_SIZE) -> None:
    """COPY a SELECT to a Parquet file that appears whole or not at all (written aside, then renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # two writers may lay the same schema file at once
    con.execute(f"COPY ({select}) TO '{sql_path(tmp)}' (FORMAT parquet, COMPRESSION zstd, "
                f"ROW_GROUP_SIZE {row_group_size})", params or [])
    os.replace(tmp, target)


@dataclass(frozen=True)
class PartFile:
    path: Path
    instance: str
    level: int
    first: int
    last: int


def part_files(folder: Path, instance: str) -> list[PartFile]:
    """This writer's files in one day folder, oldest publish first."""
    found = []
    for path in folder.glob("*.parquet") if folder.is_dir() else []:
        match = _FILE.match(path.name)
        if match and match["inst"] == instance:
            found.append(PartFile(path, instance, int(match["level"]), int(match["first"]), int(match["last"])))
    return sorted(found, key=lambda f: (f.first, -f.last))


def part_name(instance: str, level: int, first: int, last: int) -> str:
    return f"{instance}-L{level}-{first:012d}-{last:012d}.parquet"


def remove_covered(files: list[PartFile]) -> list[PartFile]:
    """Delete the files a merged file already holds (a merge interrupted before it removed its inputs)."""
    kept = []
    for f in files:
        if any(o is not f and o.level > f.level and o.first <= f.first and f.last <= o.last for o in files):
            f.path.unlink(missing_ok=True)
        else:
            kept.append(f)
    return kept


def merge(con: duckdb.DuckDBPyConnection, files: list[PartFile], level: int) -> None:
    """Merge `files` (one writer's, one day's) into one file of `level`, then remove them.

    The merged file is in place before an input goes, so a reader never misses a row; a crash
    between the two leaves both until the writer's next start (`remove_covered`).
    """
    listing = ", ".join(f"'{sql_path(f.path)}'" for f in files)
    target = files[0].path.parent / part_name(files[0].instance, level, files[0].first, max(f.last for f in files))
    # No ORDER BY: a sort of a whole day would not fit the writer's memory limit, and each input is
    # sorted already, so the merged file's row groups keep narrow time ranges that readers skip by.
    copy_atomically(con, f"SELECT * FROM read_parquet([{listing}], union_by_name = true)", target,
                    row_group_size=MERGED_ROW_GROUP_SIZE)
    for f in files:
        if f.path != target:
            f.path.unlink(missing_ok=True)


def compact_day(con: duckdb.DuckDBPyConnection, folder: Path, instance: str, closed: bool) -> int:
    """Keep one writer's files of a day few: FANOUT files of a level become one; a closed day's small ones, one.

    Returns the number of merges. Each row is rewritten about log_FANOUT(rows per publish) times.
    """
    merges = 0
    files = remove_covered(part_files(folder, instance))
    for level in range(DAY_LEVEL - 1):
        at_level = [f for f in files if f.level == level]
        while len(at_level) >= FANOUT:
            merge(con, at_level[:FANOUT], level + 1)
            merges += 1
            at_level = at_level[FANOUT:]
        files = part_files(folder, instance)
    small = [f for f in files if f.level < DAY_LEVEL]
    if closed and (len(small) > 1 or (small and any(f.level == DAY_LEVEL for f in files))):
        merge(con, small, DAY_LEVEL)
        merges += 1
    return merges


def days_before(folder: Path, day_no: int) -> list[Path]:
    """The day folders of `folder` dated before `day_no`."""
    return [child for child in (folder.iterdir() if folder.is_dir() else [])
            if (number := day_number(child.name)) is not None and number < day_no]


def drop_days_before(folder: Path, day_no: int) -> bool:
    """Remove whole day folders dated before `day_no` (retention: no row is rewritten). True if any went."""
    days = days_before(folder, day_no)
    for child in days:
        shutil.rmtree(child, ignore_errors=True)  # another writer may be dropping it too
    return bool(days)


def rollup_files(folder: Path, instance: str, hour_no: int) -> list[tuple[int, Path]]:
    """(version, path) of this writer's rollups of one hour."""
    found = []
    for path in folder.glob(f"{instance}-h{hour_no}-v*.parquet") if folder.is_dir() else []:
        match = _ROLLUP.match(path.name)
        if match and match["inst"] == instance and int(match["hour"]) == hour_no:
            found.append((int(match["version"]), path))
    return sorted(found)


def open_rollup_name(instance: str, first_hour: int, through_us: int, version: int) -> str:
    """The open hours' rollup: this writer's rows from hour `first_hour` on dated before `through_us`."""
    return f"{instance}-o{first_hour}-t{through_us}-v{version}.parquet"


def open_rollup_files(hourly: Path, instance: str) -> list[tuple[int, Path]]:
    """(version, path) of this writer's open rollups in `hourly/open/`, oldest first."""
    folder = hourly / OPEN_FOLDER
    return sorted((int(m["version"]), p) for p in (folder.glob(f"{instance}-o*.parquet") if folder.is_dir() else [])
                  if (m := _OPEN_ROLLUP.match(p.name)) and m["inst"] == instance)


def rollup_name(instance: str, hour_no: int, version: int) -> str:
    return f"{instance}-h{hour_no}-v{version}.parquet"


def day_rollup_name(instance: str, day_no: int, version: int) -> str:
    return f"{instance}-d{day_no}-v{version}.parquet"


def day_rollup_files(folder: Path, instance: str) -> list[tuple[int, Path]]:
    """(version, path) of this writer's merged rollups of the day `folder` holds, oldest first."""
    found = []
    for path in folder.glob(f"{instance}-d*-v*.parquet") if folder.is_dir() else []:
        match = _DAY_ROLLUP.match(path.name)
        if match and match["inst"] == instance:
            found.append((int(match["version"]), path))
    return sorted(found)


def hour_rollup_files(folder: Path, instance: str) -> list[Path]:
    """Every version of every hour's rollup this writer has in the day `folder`."""
    return sorted(p for p in (folder.glob(f"{instance}-h*-v*.parquet") if folder.is_dir() else [])
                  if (m := _ROLLUP.match(p.name)) and m["inst"] == instance)


def schema_version_of(con: duckdb.DuckDBPyConnection) -> int | None:
    """The newest schema version any writer of the store recorded (None before the first publish)."""
    row = con.execute("SELECT max(value::INTEGER) FROM store_meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row and row[0] is not None else None
