"""Benchmark: the weekly report and the dashboard's pages on a simulated 60-day history at 200 events/s,
from hourly rollups and the open tail of raw rows at the full rate (issue 21).

    python bench/bench_retention.py [--days 60] [--rate 200] [--raw-days 30] [--full-days 1] [--raw-rate 2]
                                    [--repeat 10] [--store PATH] [--reuse] [--baseline CHECKOUT]

60 days at 200 events/s is about a billion events. The store is laid out as a consumer's writer
leaves it (`pipeline.io.store_parts`), written directly with DuckDB's `range()` (no Python loop):
one rollup file per closed hour under `hourly/<day>/` (tens of services, issuers whose key ids
rotate every three days, hundreds of clients, a handful of causes per client, service and hour,
rare attacks; event counts summing to --rate events/s), the writer's own maintenance pass then
merging each rolled day into one file and writing its daily rows (`daily/`, `store_rollups`); raw
rows as one merged file per day under `classifications/<day>/` for the last --raw-days: the latest
--full-days at --rate (a request id, a verdict sentence, a token per client and minute with its
fingerprint and claims: ~56 B a row on disk), older days at --raw-rate; plus one raw day and one
rollup day past the retention, which the writer's maintenance (`Publisher.maintain`) must remove.
`store_coverage` then says raw_since = end - raw-days and rolled_through = end - 2 h: the open tail
readers roll on read is 2 h of raw rows (1.44M at 200/s). Disk per day is measured from the files;
the bound for --raw-days at --rate is extrapolated from it. `--add-daily` gives a store built before
the daily level (`--reuse`) the daily rows its writer would now have written, as the writer's pass
writes them (one thread, its maintenance memory limit), and says what that cost per day.

Timed, each --repeat times after a warm-up, uncached, one read-only connection per run: the
weekly report (`build_report`) of an old week (before raw_since: rollups only) and of the
latest full week, and the dashboard pages' loaders as `bench_dashboard` runs them; beside them
(`--baseline`) the same questions with another checkout's code on the same store. Target: p95
under 1 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
logging.getLogger("streamlit.runtime.caching.cache_data_api").setLevel(logging.ERROR)

from bench_dashboard import percentile  # noqa: E402
from common import CACHE, Summary, load  # noqa: E402

from dashboards import data  # noqa: E402
from pipeline.io.store import WRITER_THREADS, Store  # noqa: E402
from pipeline.io.store_parts import (  # noqa: E402
    DAY_LEVEL,
    MERGED_ROW_GROUP_SIZE,
    copy_atomically,
    day_name,
    part_name,
    rollup_name,
)
from pipeline.io.store_publish import MAINTENANCE_MEMORY_LIMIT  # noqa: E402
from pipeline.io.store_readers import connect_readonly  # noqa: E402
from pipeline.io.store_rollups import DAILY, add_daily  # noqa: E402
from pipeline.io.store_schema import parts_dir, sql_path  # noqa: E402
from pipeline.report.build import build_report  # noqa: E402
from pipeline.report.model import week_name  # noqa: E402
from pipeline.rollups import CACHE_AGE_EDGES, HOUR_SECONDS, LIFETIME_EDGES, TOKEN_SKETCH  # noqa: E402

TARGET_P95_S = 1.0
END = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday: the history ends with a full week
SERVICES, ISSUERS, CLIENTS, SERVICES_PER_CLIENT, CAUSES_PER_PAIR = 30, 4, 300, 2, 4
ROTATE_HOURS, OVERLAP_HOURS = 72, 6
#: The writer whose files the build lays out, and the hours after the last rollup (raw rows, rolled on read).
INSTANCE, TAIL_HOURS = "bench", 2
#: How far before the end the triage question that ends inside an hour ends: as a page at the wall clock's time
#: (10:37) asks, its hour starts before the closed hours end (10:00) and it ends inside the open one, so the raw
#: rows from there on answer (`rolled.counted`, `rolled.hits`), not a rolled tail.
INSIDE_AN_HOUR = timedelta(hours=1, minutes=7)
TRIAGE_INSIDE_AN_HOUR = "triage (last hour to 22:53, events)"

#: The causes a client and service show, weighted as a busy day looks (index by a hash mod 20).
CAUSE_MIX = (["expired"] * 8 + ["stale_jwks"] * 3 + ["unknown_kid"] * 2 + ["retired_key", "unpublished_key",
             "audience_mismatch", "issuer_mismatch", "not_yet_valid", "malformed", "bad_signature"])  # fmt: skip
CONFIDENCE = "CASE WHEN cause IN ('malformed') THEN 'reported' WHEN cause = 'stale_jwks' AND h % 5 = 0 " \
             "THEN 'inferred' ELSE 'verified' END"  # fmt: skip


def _kid(issuer: str, hour: str, back: int = 0) -> str:
    """SQL: the key id `issuer` signs with in `hour` (hours since the history began), `back` rotations ago."""
    return f"'k' || {issuer} || '-' || (({hour} + {issuer} * 17) // {ROTATE_HOURS} - {back})"


def _one_bucket(count: str, bucket: str, edges: int) -> str:
    """SQL: a histogram (`pipeline.rollups`) holding `count` in bucket `bucket`, nothing elsewhere."""
    return f"list_transform(range({edges + 1}), lambda b: CASE WHEN b = {bucket} THEN {count} ELSE 0 END)::BIGINT[]"


def _causes_sql() -> str:
    return "[" + ", ".join(f"'{c}'" for c in CAUSE_MIX) + "]"


ROLLUP_SQL = f"""
WITH grid AS (
    SELECT h, c, j, k, (c * 7 + j * 11) % {SERVICES} AS s, c % {ISSUERS} AS i,
           {_causes_sql()}[1 + (hash(c, j, k, h // 24) % {len(CAUSE_MIX)})::INTEGER] AS cause,
           hash(h, c, j, k) AS r
    FROM range($first, $first + $hours) a(h), range({CLIENTS}) b(c), range({SERVICES_PER_CLIENT}) d(j),
         range({CAUSES_PER_PAIR}) e(k)
),
keyed AS (
    SELECT *, {_kid("i", "h")} AS kid FROM grid
    UNION ALL  -- the previous key, still in some caches, in the hours after a rotation
    SELECT *, {_kid("i", "h", 1)} FROM grid WHERE (h + i * 17) % {ROTATE_HOURS} < {OVERLAP_HOURS} AND k = 1
),
rows AS (
    SELECT to_timestamp(epoch($origin) + h * 3600) AS hour, 'svc-' || s AS service, 'https://idp' || i || '.test'
               AS issuer, kid, 'client-' || c AS client_id, cause, {CONFIDENCE} AS confidence,
           CASE WHEN r % 97 = 0 THEN 'alg_none' WHEN r % 89 = 0 THEN 'kid_injection' END AS attack,
           greatest(1, round($mean * (0.25 + 1.5 * ((r >> 8) % 1000) / 1000.0)))::BIGINT AS n, r, c
    FROM keyed
)
SELECT hour, service, issuer, kid, client_id, cause, confidence, attack,
       CASE WHEN attack = 'alg_none' THEN 'none' ELSE 'RS256' END AS alg,
       'thumb-' || substr(kid, 2) AS key_thumbprint, n AS events,
       CASE WHEN attack IS NULL THEN 0 ELSE n END AS attack_events,
       CASE WHEN service < 'svc-2' THEN n ELSE 0 END AS with_fetch_time, n AS with_key,
       hour + to_seconds((r >> 20) % 60) AS first_ts, hour + to_seconds(3540 + (r >> 26) % 60) AS last_ts,
       -5.0 AS min_skew_seconds, 5.0 AS max_skew_seconds, 300.0 AS max_cache_age_s, 7200.0 AS max_key_age_s,
       list_sort(list_transform(range(least({TOKEN_SKETCH}, greatest(1, n // 8))),
                                lambda x: hash(r, x)::UBIGINT)) AS token_sketch,
       greatest(1, n // 8) AS tokens,
       {_one_bucket("greatest(1, n // 8)", "lb", len(LIFETIME_EDGES))} AS lifetime_tokens,
       {_one_bucket("n", "lb", len(LIFETIME_EDGES))} AS lifetime_events,
       CASE WHEN lb = {LIFETIME_EDGES.index(86400)} THEN 86400.0 ELSE 3600.0 END AS max_lifetime_s,
       {_one_bucket("with_fetch", str(CACHE_AGE_EDGES.index(300)), len(CACHE_AGE_EDGES))} AS cache_age_events,
       epoch(first_ts) - 3600 * (1 + c % 3) AS min_iat, epoch(last_ts) - 3600 * (1 + c % 3) AS max_iat,
       '{INSTANCE}' AS instance, $version::BIGINT AS version,
       epoch_us(hour) // {HOUR_SECONDS * 1_000_000} AS hour_no
FROM (SELECT *, CASE WHEN client_id LIKE '%0' THEN {LIFETIME_EDGES.index(86400)} ELSE {LIFETIME_EDGES.index(3600)} END
                    AS lb,  -- one client in ten signs day-long tokens
             CASE WHEN service < 'svc-2' THEN n ELSE 0 END AS with_fetch FROM rows)
"""

#: One raw row per event, as the writer stores it: a request id and a verdict sentence per event,
#: a token per client and minute (retried ~40 times at 200/s), its fingerprint and claims.
RAW_SQL = f"""
WITH ev AS (
    SELECT n, to_timestamp(epoch($start) + n / $rate) AS ts, hash(n, $salt) AS r FROM range($count) t(n)
),
keyed AS (
    SELECT *, (r % {CLIENTS}) AS c, ((r >> 10) % {SERVICES_PER_CLIENT}) AS j, ((r >> 12) % {CAUSES_PER_PAIR}) AS k,
           (epoch(ts) - epoch($origin))::BIGINT // 3600 AS h, epoch(ts)::BIGINT // 60 AS minute FROM ev
),
judged AS (
    SELECT *, {_causes_sql()}[1 + (hash(c, j, k, h // 24) % {len(CAUSE_MIX)})::INTEGER] AS cause,
           sha256(c::VARCHAR || '/' || minute::VARCHAR) AS token_sha256,
           (minute * 60 - 3600 * (1 + (c % 3)))::BIGINT AS iat FROM keyed
)
SELECT md5(n::VARCHAR || $salt) AS event_id, ts, 'svc-' || ((c * 7 + j * 11) % {SERVICES}) AS service, cause,
       'verified' AS confidence,
       CASE WHEN r % 97 = 0 THEN ['alg_none'] ELSE []::VARCHAR[] END AS attacks, [cause] AS findings,
       'https://idp' || (c % {ISSUERS}) || '.test' AS issuer, {_kid(f"(c % {ISSUERS})", "h")} AS kid,
       'RS256' AS alg, ('"api://svc-' || ((c * 7 + j * 11) % {SERVICES}) || '"')::JSON AS audience,
       (r % 7200)::DOUBLE / 10 AS skew_seconds,
       cause || ': ' || ((r >> 16) % 3600) || ' s past the limit at ' || strftime(ts, '%H:%M:%S') AS detail,
       'client-' || c AS client_id, left(md5(r::VARCHAR), 16) AS request_id, token_sha256,
       '{{"alg": "RS256", "typ": "JWT", "kid": "' || {_kid(f"(c % {ISSUERS})", "h")} || '"}}' AS token_header,
       ('{{"iss": "https://idp' || (c % {ISSUERS}) || '.test", "sub": "' || left(token_sha256, 12) ||
        '", "aud": "api", "azp": "client-' || c || '", "iat": ' || iat || ', "exp": ' ||
        (iat + CASE WHEN c % 10 = 0 THEN 86400 ELSE 3600 END) || '}}')::JSON AS token_claims,
       'thumb-' || substr({_kid(f"(c % {ISSUERS})", "h")}, 2) AS key_thumbprint, ts - INTERVAL 2 HOUR AS key_first_seen,
       ts - to_seconds(r % 600) AS service_jwks_fetched_at,
       'exp claim timestamp check failed' AS reported_error, 'bench' AS source, (r % 12)::INTEGER AS source_partition,
       n AS source_offset, ts + INTERVAL 1 SECOND AS classified_at
FROM judged
"""

KEYS_SQL = f"""
INSERT INTO jwks_keys
SELECT 'https://idp' || i || '.test', 'k' || i || '-' || g, 'thumb-' || i || '-' || g, 'RSA', NULL, 0,
       to_timestamp(epoch($origin) + (g * {ROTATE_HOURS} - i * 17) * 3600), to_timestamp(epoch($end)),
       CASE WHEN g < $last THEN to_timestamp(epoch($origin) + ((g + 1) * {ROTATE_HOURS} - i * 17 + {OVERLAP_HOURS})
                                             * 3600) END,
       g = 0
FROM range({ISSUERS}) a(i), range($last + 1) b(g)
"""


@dataclass
class Built:
    """What a build wrote and took (bytes are the files on disk)."""

    rollup_rows: int = 0
    rolled_events: float = 0.0
    rollup_bytes: int = 0
    daily_bytes: int = 0  # the daily rows of the closed days (`daily/`), in rollup_bytes too
    rollup_s: float = 0.0
    raw: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # day → (rows, bytes, seconds)
    swept: list[str] = field(default_factory=list)  # what the retention sweep removed (folders)
    kept_bytes: int = 0  # the whole store after the sweep


def build(path: Path, days: int, rate: float, raw_days: int, raw_rate: float, full_days: int,
          tail_hours: int = TAIL_HOURS) -> Built:
    """The history store in the writer's layout (see the module's docstring); returns what it took."""
    parts = parts_dir(path)
    shutil.rmtree(parts, ignore_errors=True)
    path.unlink(missing_ok=True)
    start = END - timedelta(days=days)
    store = Store(path, instance=INSTANCE, retention_days=raw_days, rollup_retention_days=days)
    built = Built()
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = true")
        con.execute(f"SET temp_directory = '{sql_path(path.parent / 'tmp')}'")
        begun = time.perf_counter()
        # one rollup day more than kept, before the history: the sweep must remove it
        write_rollups(con, parts, start, -24, days * 24 - tail_hours, rate)
        built.rollup_s = time.perf_counter() - begun
        raw_since = END - timedelta(days=raw_days)
        for number in range(-1, raw_days):  # day -1: one before the retention, which the sweep must remove
            day = raw_since + timedelta(days=number)
            full = number >= raw_days - full_days
            begun = time.perf_counter()
            rows, size = write_raw_day(con, parts, day, rate if full else raw_rate, start, salt=number)
            built.raw[day.date().isoformat() + (" (full rate)" if full else "")] = (
                rows, size, time.perf_counter() - begun)
        store.con.execute(KEYS_SQL, {"origin": start, "end": END, "last": days * 24 // ROTATE_HOURS + 1})
        built.swept = sweep(store, parts, tail_hours)
        note_tail(store, tail_hours)
        figures = con.execute(
            f"SELECT count(*), sum(events) FROM read_parquet('{sql_path(parts / 'hourly')}/*/*.parquet')"
        ).fetchone()
        assert figures is not None
        built.rollup_rows, built.rolled_events = int(figures[0]), float(figures[1] or 0)
        built.daily_bytes = folder_bytes(parts / DAILY)
        built.rollup_bytes = folder_bytes(parts / "hourly") + built.daily_bytes
        built.kept_bytes = folder_bytes(parts)
        return built
    finally:
        con.close()
        store.close()


def write_rollups(con: duckdb.DuckDBPyConnection, parts: Path, origin: datetime, first_hour: int, end_hour: int,
                  rate: float) -> None:
    """`hourly/<day>/<instance>-h<hour>-v<version>.parquet` for hours [first_hour, end_hour) after `origin`, as the
    writer rolls them (one file per hour)."""
    rows_per_hour = CLIENTS * SERVICES_PER_CLIENT * CAUSES_PER_PAIR
    staging = parts.parent / (parts.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    params = {"origin": origin, "mean": rate * 3600 / rows_per_hour, "version": time.time_ns() // 1000}
    for first in range(first_hour, end_hour, 24 * 5):  # five days a statement: bounded memory
        span = min(24 * 5, end_hour - first)
        con.execute(
            f"COPY ({ROLLUP_SQL.replace('$first', str(first)).replace('$hours', str(span))}) "
            f"TO '{sql_path(staging)}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (hour_no), "
            f"OVERWRITE_OR_IGNORE, FILENAME_PATTERN 'part{first}_{{i}}')", params)
    for folder in staging.iterdir():
        hour_no = int(folder.name.split("=")[1])
        day = parts / "hourly" / day_name(hour_no * 3600 // 86400)
        day.mkdir(parents=True, exist_ok=True)
        for number, file in enumerate(sorted(folder.glob("*.parquet"))):
            file.rename(day / rollup_name(INSTANCE, hour_no, params["version"] + number))
    shutil.rmtree(staging, ignore_errors=True)


def write_raw_day(con: duckdb.DuckDBPyConnection, parts: Path, day: datetime, rate: float, origin: datetime,
                  salt: int) -> tuple[int, int]:
    """One day's raw rows at `rate` events/s as the writer leaves a closed day (one merged file); (rows, bytes)."""
    count = int(86400 * rate)
    day_no = int(day.timestamp()) // 86400
    target = parts / "classifications" / day_name(day_no) / part_name(INSTANCE, DAY_LEVEL, day_no, day_no)
    copy_atomically(con, RAW_SQL, target, {"start": day, "rate": rate, "count": count, "origin": origin, "salt": salt},
                    row_group_size=MERGED_ROW_GROUP_SIZE)  # fmt: skip
    return count, target.stat().st_size


def sweep(store: Store, parts: Path, tail_hours: int = TAIL_HOURS) -> list[str]:
    """The writer's maintenance pass (`Publisher.maintain`) as at the history's end: the day folders it removed.

    The tail's hours are marked as published since the last pass (the build wrote their raw rows
    directly), so the pass rolls them as the writer would: the closed ones, and the open hours up to
    a minute before the end into the open rollup (`hourly/open/`).
    """
    before = {p for p in parts.glob("*/*") if p.is_dir()}
    store.con.execute("INSERT OR REPLACE INTO store_meta VALUES ('newest_ts', ?)",
                      [(END - timedelta(microseconds=1)).isoformat()])
    end_hour = int(END.timestamp()) // HOUR_SECONDS
    store.con.executemany("INSERT INTO rollup_pending VALUES (?)",
                          [[h] for h in range(end_hour - tail_hours, end_hour)])
    store.publisher.maintain()  # type: ignore[union-attr]
    return sorted(str(p.relative_to(parts)) for p in before - {p for p in parts.glob("*/*") if p.is_dir()})


def note_tail(store: Store, tail_hours: int = TAIL_HOURS) -> None:
    """Say the closed hours end `tail_hours` before the end (the writer says one: it rolls an hour ~10 min after
    it closes, `ROLL_AFTER_SECONDS`), so that readers without the open rollup (an older checkout, or a store
    with several writers) roll a tail of `tail_hours` of raw rows, more than they meet."""
    store.con.execute("INSERT OR REPLACE INTO store_meta VALUES ('rolled_through', ?)",
                      [(END - timedelta(hours=tail_hours)).isoformat()])
    store.publisher._write_state()  # type: ignore[union-attr]


def add_daily_level(path: Path) -> None:
    """Write the daily rows the store's closed days lack, as the writer's maintenance pass does, and print what
    they took: the writer's extra work per closed day, and the disk beside the day's hourly file."""
    parts = parts_dir(path)
    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {WRITER_THREADS}")
        con.execute(f"SET memory_limit = '{MAINTENANCE_MEMORY_LIMIT}'")
        seconds, written = [], []
        while True:
            started = time.perf_counter()
            found = add_daily(con, parts, INSTANCE, 1)
            if not found:
                break
            seconds.append(time.perf_counter() - started)
            written += found
        if not written:
            print("daily rows: every closed day has them already")
            return
        hourly = [parts / "hourly" / f.parent.name / f.name for f in written]
        rows = [(con.execute(f"SELECT count(*) FROM read_parquet({[str(f) for f in files]})").fetchone() or (0,))[0]
                for files in (written, hourly)]
    finally:
        con.close()
    daily_bytes, hourly_bytes = [f.stat().st_size for f in written], [f.stat().st_size for f in hourly]
    print(f"daily rows written for {len(written)} closed days: {rows[0]:,} rows from {rows[1]:,} hourly ones; "
          f"{statistics.mean(daily_bytes) / 1e6:.2f} MB a day beside {statistics.mean(hourly_bytes) / 1e6:.2f} MB of "
          f"hourly rows; {statistics.median(seconds) * 1e3:.0f} ms a day (median; max {max(seconds) * 1e3:.0f})")


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def questions(path: str, old_week: str, last_week: str) -> dict[str, Callable[[], Any]]:
    """name → one run of the report or a page's first load (uncached), as `bench_dashboard` runs the pages."""
    ref = END

    def report(week: str) -> Callable[[], Any]:
        def run() -> Any:
            con = connect_readonly(path)
            try:
                return build_report(con, week, now=END)
            finally:
                con.close()

        return run

    def overview(length: timedelta | None) -> Callable[[], Any]:
        def run() -> Any:
            status = data.load_status(path)
            since = status.first_ts if length is None else ref - length
            data.load_choices(path, since, ref)
            return data.load_overview(path, since, ref, compare=since > status.first_ts)

        return run

    def triage(end: datetime) -> Callable[[], Any]:
        def run() -> Any:
            data.load_status(path)
            data.load_triage(path, end, timedelta(hours=1), 7)
            return data.load_events(path, end - timedelta(hours=1), end)

        return run

    def rotations() -> Any:
        data.load_status(path)
        return data.load_rotations(path, ref - timedelta(days=7))

    return {
        f"weekly report {old_week} (before raw_since)": report(old_week),
        f"weekly report {last_week} (latest week)": report(last_week),
        "overview, last 24 h": overview(timedelta(hours=24)),
        "overview, last 7 days": overview(timedelta(days=7)),
        "overview, all data": overview(None),
        "triage (last hour vs 7 days, events)": triage(ref),
        # a window ending inside an hour (as a page at the wall clock's time): its attacks from the raw tail
        TRIAGE_INSIDE_AN_HOUR: triage(ref - INSIDE_AN_HOUR),
        "rotations (steps of the last 7 days)": rotations,
        "live (last hour)": lambda: data.load_live(path, END),
    }


def timed(run: Callable[[], Any], repeat: int) -> tuple[float, float]:
    with data.one_connection_per_run():
        run()
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        with data.one_connection_per_run():
            run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), percentile(seconds, 0.95)


#: Times one question with another checkout's code (`--baseline`): its `questions` and `timed`, on the same store
#: (the triage ending inside an hour, which a checkout older than it lacks, made here as `questions` makes it).
BASELINE_SCRIPT = f"""
import json, sys
from datetime import timedelta
sys.path[:0] = [sys.argv[1], sys.argv[1] + '/bench']
import bench_retention as b
runs = b.questions(sys.argv[2], sys.argv[3], sys.argv[4])
def inside_an_hour():
    end = b.END - timedelta(seconds={INSIDE_AN_HOUR.total_seconds()})
    b.data.load_status(sys.argv[2])
    b.data.load_triage(sys.argv[2], end, timedelta(hours=1), 7)
    return b.data.load_events(sys.argv[2], end - timedelta(hours=1), end)
runs.setdefault({TRIAGE_INSIDE_AN_HOUR!r}, inside_an_hour)
print("timed:", json.dumps(b.timed(runs[sys.argv[5]], int(sys.argv[6]))))
"""


def baseline_timed(tree: Path, path: str, old_week: str, last_week: str, name: str, repeat: int
                   ) -> tuple[float, float] | None:
    """(p50, p95) of `name` with the code in `tree`, in a process of its own; None if it failed."""
    done = subprocess.run([sys.executable, "-c", BASELINE_SCRIPT, str(tree), path, old_week, last_week, name,
                           str(repeat)], capture_output=True, text=True, cwd=tree,
                          env={**os.environ, "PYTHONPATH": str(tree)})  # fmt: skip
    if done.returncode != 0:
        print(f"  baseline failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    p50, p95 = json.loads(done.stdout.rsplit("timed: ", 1)[-1].splitlines()[0])
    return float(p50), float(p95)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=60, help="days of history (default 60)")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s of the history (default 200)")
    parser.add_argument("--raw-days", type=int, default=30, help="raw retention in days (default 30)")
    parser.add_argument("--full-days", type=int, default=1,
                        help="the latest days whose raw rows are written at --rate (default 1; the open tail is in it)")
    parser.add_argument("--raw-rate", type=float, default=2.0,
                        help="events/s of the older raw days' rows (default 2)")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per question (default 10)")
    parser.add_argument("--store", type=Path, default=CACHE / "retention.duckdb")
    parser.add_argument("--reuse", action="store_true", help="time the --store a previous run built (no build)")
    parser.add_argument("--add-daily", action="store_true",
                        help="with --reuse: first write the daily rows the store's closed days lack")
    parser.add_argument("--baseline", type=Path, help="a checkout whose code times the same questions beside")
    parser.add_argument("--baseline-repeat", type=int, help="timed runs a question, baseline")
    parser.add_argument("--only", help="time only the questions whose name contains one of these (commas)")
    parser.add_argument("--quick", action="store_true", help="a tiny history (the smoke test); figures mean nothing")
    parser.add_argument("--summary", type=Path, help="write the headline figures here as JSON (run_all.py)")
    args = parser.parse_args(argv)
    if args.quick:
        args.days, args.raw_days, args.rate, args.raw_rate, args.repeat = 15, 8, 1.0, 0.05, 2
    args.full_days = min(args.full_days, args.raw_days)
    args.store.parent.mkdir(parents=True, exist_ok=True)
    print(f"{args.days} days of rollups at {args.rate:g} events/s; raw rows for the last {args.raw_days} days, the "
          f"latest {args.full_days} at {args.rate:g} events/s, older ones at {args.raw_rate:g}; in "
          f"{parts_dir(args.store)} …", flush=True)  # fmt: skip
    if args.reuse and args.store.exists():
        print("reusing it as built before (disk and build figures: that run's)")
        if args.add_daily:
            add_daily_level(args.store)
    else:
        report_build(build(args.store, args.days, args.rate, args.raw_days, args.raw_rate, args.full_days), args)
    old_week = week_name(END - timedelta(days=args.raw_days + 7))
    last_week = week_name(END - timedelta(days=1))
    summary = Summary("retention", [])
    print(f"load {load():.2f}; {args.repeat} timed runs per question after one warm-up, uncached")
    print(f"{'question':<46} {'p50/p95 ms':>20} {'baseline p50/p95 ms':>21}")
    ok = True
    for name, run in questions(str(args.store), old_week, last_week).items():
        if args.only and not any(part in name for part in args.only.split(",")):
            continue
        p50, p95 = timed(run, args.repeat)
        base = (baseline_timed(args.baseline, str(args.store), old_week, last_week, name,
                               args.baseline_repeat or args.repeat)
                if args.baseline else None)  # fmt: skip
        ok = ok and p95 < TARGET_P95_S
        mark = "" if p95 < TARGET_P95_S else f"  over the {TARGET_P95_S:.0f} s target"
        shown = f"{base[0] * 1e3:>9.0f} {base[1] * 1e3:>9.0f}" if base else f"{'-':>9} {'-':>9}"
        print(f"{name:<46} {p50 * 1e3:>9.0f} {p95 * 1e3:>9.0f}  {shown}{mark}  (load {load():.1f})", flush=True)
        summary.add(f"retention: {name} p95", p95 * 1e3, "ms", base[1] * 1e3 if base else None, "< 1000 ms",
                    p95 < TARGET_P95_S)
    print(f"target: p95 under {TARGET_P95_S * 1e3:.0f} ms: {'met' if ok else 'MISSED'}; load {load():.2f}")
    if args.summary:
        summary.write(args.summary)
    return 0 if ok or args.quick else 1


def report_build(built: Built, args: argparse.Namespace) -> None:
    """Print what the build wrote and took, what the sweep removed, and the disk bound at --rate."""
    full = [(rows, size, took) for day, (rows, size, took) in built.raw.items() if "full" in day]
    per_day = statistics.mean(size for _, size, _ in full) if full else 0.0
    per_row = sum(size for _, size, _ in full) / max(1, sum(rows for rows, _, _ in full))
    rolled_day = built.rollup_bytes / args.days
    print(f"rollups: {built.rollup_rows:,} rows for {built.rolled_events:,.0f} events, "
          f"{built.rollup_bytes / 1e9:.2f} GB kept ({rolled_day / 1e6:.1f} MB a day), "
          f"written in {built.rollup_s:.0f} s; of them daily rows {built.daily_bytes / 1e6:.0f} MB "
          f"({built.daily_bytes / max(1, args.days - 1) / 1e6:.2f} MB a closed day)")
    for day, (rows, size, took) in built.raw.items():
        print(f"raw {day}: {rows:,} rows, {size / 1e6:,.1f} MB ({size / max(1, rows):.1f} B a row), {took:.0f} s")
    print(f"retention sweep removed: {', '.join(built.swept) or 'nothing'}")
    print(f"store after the sweep: {built.kept_bytes / 1e9:.2f} GB")
    if full:
        bound = args.raw_days * per_day + args.days * rolled_day
        print(f"at {args.rate:g} events/s: {per_day / 1e9:.2f} GB of raw rows a day ({per_row:.1f} B a row); "
              f"the bound for {args.raw_days} raw days + {args.days} days of rollups is {bound / 1e9:,.1f} GB "
              f"({args.raw_days * 86400 * args.rate / 1e6:,.0f}M raw rows)")


if __name__ == "__main__":
    sys.exit(main())
