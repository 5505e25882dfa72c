"""Benchmark: the weekly report and the dashboard's pages on a simulated 60-day history at 200 events/s,
from hourly rollups, beside the same questions over raw rows in the same run (issue 21).

    python bench/bench_retention.py [--days 60] [--rate 200] [--raw-rate 2] [--raw-days 30] [--repeat 10]

60 days at 200 events/s is about a billion events: too many to write here. So the store is
built as the writer would have left it, directly in SQL: `classifications_hourly` for every
hour of the history, with the rows the writer would have rolled (tens of services, a few
issuers whose key ids rotate every three days, hundreds of clients, a handful of causes per
client and service and hour, rare attacks) and their event counts summing to --rate events/s;
raw rows (`classifications`) for the last --raw-days only, at --raw-rate events/s, the
affordable rate (the disk a raw window at --rate takes is extrapolated from the measured bytes
per raw row); `store_coverage` saying raw_since = end - raw-days and rolled_through = end - 2 h.

Timed, each --repeat times after a warm-up, uncached, one read-only connection per run:
the weekly report (`build_report`) of an old week (before raw_since: rollups only) and of the
latest full week, and the dashboard pages' loaders as `bench_dashboard` runs them. The
baseline is the same questions on a copy of the same store whose `store_coverage` says "no
rollups", so every count reads the raw rows (the --raw-rate set). Target: p95 under 1 s from
rollups.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import time
from collections.abc import Callable
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
from pipeline.io.store import Store  # noqa: E402
from pipeline.io.store_readers import connect_readonly  # noqa: E402
from pipeline.report.build import build_report  # noqa: E402
from pipeline.report.model import week_name  # noqa: E402
from pipeline.rollups import CACHE_AGE_EDGES, LIFETIME_EDGES, TOKEN_SKETCH, create_hourly_sql  # noqa: E402

TARGET_P95_S = 1.0
END = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday: the history ends with a full week
SERVICES, ISSUERS, CLIENTS, SERVICES_PER_CLIENT, CAUSES_PER_PAIR = 30, 4, 300, 2, 4
ROTATE_HOURS, OVERLAP_HOURS = 72, 6

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
INSERT INTO classifications_hourly BY NAME
WITH grid AS (
    SELECT h, c, j, k, (c * 7 + j * 11) % {SERVICES} AS s, c % {ISSUERS} AS i,
           {_causes_sql()}[1 + (hash(c, j, k, h // 24) % {len(CAUSE_MIX)})::INTEGER] AS cause,
           hash(h, c, j, k) AS r
    FROM range($hours) a(h), range({CLIENTS}) b(c), range({SERVICES_PER_CLIENT}) d(j), range({CAUSES_PER_PAIR}) e(k)
),
keyed AS (
    SELECT *, {_kid("i", "h")} AS kid FROM grid
    UNION ALL  -- the previous key, still in some caches, in the hours after a rotation
    SELECT *, {_kid("i", "h", 1)} FROM grid WHERE (h + i * 17) % {ROTATE_HOURS} < {OVERLAP_HOURS} AND k = 1
),
rows AS (
    SELECT to_timestamp(epoch($start) + h * 3600) AS hour, 'svc-' || s AS service, 'https://idp' || i || '.test'
               AS issuer, kid, 'client-' || c AS client_id, cause, {CONFIDENCE} AS confidence,
           CASE WHEN r % 97 = 0 THEN 'alg_none' WHEN r % 89 = 0 THEN 'kid_injection' END AS attack,
           greatest(1, round($mean * (0.25 + 1.5 * ((r >> 8) % 1000) / 1000.0)))::BIGINT AS n, r
    FROM keyed
)
SELECT hour, service, issuer, kid, client_id, cause, confidence, attack,
       CASE WHEN attack = 'alg_none' THEN 'none' ELSE 'RS256' END AS alg, n AS events,
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
       {_one_bucket("with_fetch", str(CACHE_AGE_EDGES.index(300)), len(CACHE_AGE_EDGES))} AS cache_age_events
FROM (SELECT *, CASE WHEN client_id LIKE '%0' THEN {LIFETIME_EDGES.index(86400)} ELSE {LIFETIME_EDGES.index(3600)} END
                    AS lb,  -- one client in ten signs day-long tokens
             CASE WHEN service < 'svc-2' THEN n ELSE 0 END AS with_fetch FROM rows)
"""

RAW_SQL = f"""
INSERT INTO classifications BY NAME
WITH ev AS (
    SELECT n, to_timestamp(epoch($start) + n / $rate) AS ts, hash(n) AS r FROM range($count) t(n)
),
keyed AS (
    SELECT *, (r % {CLIENTS}) AS c, ((r >> 10) % {SERVICES_PER_CLIENT}) AS j, ((r >> 12) % {CAUSES_PER_PAIR}) AS k,
           (epoch(ts) - epoch($origin))::BIGINT // 3600 AS h FROM ev
)
SELECT 'e' || n AS event_id, ts, 'svc-' || ((c * 7 + j * 11) % {SERVICES}) AS service,
       {_causes_sql()}[1 + (hash(c, j, k, h // 24) % {len(CAUSE_MIX)})::INTEGER] AS cause,
       'verified' AS confidence,
       CASE WHEN r % 97 = 0 THEN ['alg_none'] ELSE []::VARCHAR[] END AS attacks, ['expired'] AS findings,
       'https://idp' || (c % {ISSUERS}) || '.test' AS issuer, {_kid(f"(c % {ISSUERS})", "h")} AS kid,
       'RS256' AS alg, 1.5 AS skew_seconds, 'client-' || c AS client_id,
       md5((c * 1000 + n // 500)::VARCHAR) || md5((n // 500)::VARCHAR) AS token_sha256,
       '{{"alg": "RS256"}}'::JSON AS token_header, '{{"iat": 1, "exp": 3601}}'::JSON AS token_claims,
       'thumb-' || (c % {ISSUERS}) AS key_thumbprint, ts - INTERVAL 2 HOUR AS key_first_seen,
       ts - to_seconds(r % 600) AS service_jwks_fetched_at, 'bench' AS source, 0 AS source_partition,
       n AS source_offset, ts AS classified_at
FROM keyed
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


def build(path: Path, days: int, rate: float, raw_days: int, raw_rate: float) -> dict[str, float]:
    """The history store (see the module's docstring); returns what it took."""
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    Store(path).close()
    start, hours = END - timedelta(days=days), days * 24
    raw_since, rolled_through = END - timedelta(days=raw_days), END - timedelta(hours=2)
    rows_per_hour = CLIENTS * SERVICES_PER_CLIENT * CAUSES_PER_PAIR
    con = duckdb.connect(str(path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        # a single-file store computes its rollups on read (views); this one holds them, as the writer leaves them
        con.execute("DROP VIEW IF EXISTS classifications_hourly")
        con.execute("DROP VIEW IF EXISTS store_coverage")
        con.execute(create_hourly_sql())
        begun = time.perf_counter()
        params = {"start": start, "mean": rate * 3600 / rows_per_hour}
        for first in range(0, hours, 24 * 5):  # five days a statement: bounded memory
            span = min(24 * 5, hours - first)
            con.execute(ROLLUP_SQL.replace("$hours", str(span)), {**params, "start": start + timedelta(hours=first)})
        con.execute("DELETE FROM classifications_hourly WHERE hour >= ?", [rolled_through])
        con.execute("CHECKPOINT")
        rollup_s, rollup_bytes = time.perf_counter() - begun, used_bytes(con)
        begun = time.perf_counter()
        count = int(raw_days * 86400 * raw_rate)
        chunk = int(86400 * raw_rate)
        for first in range(0, count, chunk):
            con.execute(
                RAW_SQL,
                {"start": raw_since + timedelta(seconds=first / raw_rate), "rate": raw_rate,
                 "count": min(chunk, count - first), "origin": start},
            )  # fmt: skip
        con.execute(KEYS_SQL, {"origin": start, "end": END, "last": hours // ROTATE_HOURS + 1})
        con.execute("CREATE TABLE store_coverage (raw_since TIMESTAMPTZ, rolled_through TIMESTAMPTZ)")
        con.execute("INSERT INTO store_coverage VALUES (?, ?)", [raw_since, rolled_through])
        con.execute("CHECKPOINT")
        figures = con.execute("SELECT count(*), sum(events) FROM classifications_hourly").fetchone()
        assert figures is not None
        return {"rollup_rows": figures[0], "rolled_events": float(figures[1]), "rollup_s": rollup_s,
                "rollup_bytes": rollup_bytes, "raw_rows": count, "raw_s": time.perf_counter() - begun,
                "raw_bytes": used_bytes(con) - rollup_bytes}  # fmt: skip
    finally:
        con.close()


def used_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """The bytes the store's blocks in use take (the file may hold freed blocks too)."""
    row = con.execute("SELECT used_blocks * block_size FROM pragma_database_size()").fetchone()
    return int(row[0]) if row else 0


def raw_only_copy(path: Path) -> Path:
    """The same store with `store_coverage` saying "no rollups": every question reads the raw rows."""
    copy = path.with_name(path.stem + "-raw.duckdb")
    shutil.copyfile(path, copy)
    con = duckdb.connect(str(copy))
    try:
        con.execute("UPDATE store_coverage SET raw_since = NULL, rolled_through = NULL")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return copy


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

    def triage() -> Any:
        data.load_status(path)
        data.load_triage(path, ref, timedelta(hours=1), 7)
        return data.load_events(path, ref - timedelta(hours=1), ref)

    def rotations() -> Any:
        data.load_status(path)
        return data.load_rotations(path, ref - timedelta(days=7))

    return {
        f"weekly report {old_week} (before raw_since)": report(old_week),
        f"weekly report {last_week} (latest week)": report(last_week),
        "overview, last 24 h": overview(timedelta(hours=24)),
        "overview, last 7 days": overview(timedelta(days=7)),
        "overview, all data": overview(None),
        "triage (last hour vs 7 days, events)": triage,
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=60, help="days of history (default 60)")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s the rollups stand for (default 200)")
    parser.add_argument("--raw-days", type=int, default=30, help="raw retention in days (default 30)")
    parser.add_argument("--raw-rate", type=float, default=2.0, help="events/s of the raw rows written (default 2)")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per question (default 10)")
    parser.add_argument("--store", type=Path, default=CACHE / "retention.duckdb")
    parser.add_argument("--reuse", action="store_true", help="time the --store a previous run built (no build)")
    parser.add_argument("--quick", action="store_true", help="a tiny history (the smoke test); figures mean nothing")
    parser.add_argument("--summary", type=Path, help="write the headline figures here as JSON (run_all.py)")
    args = parser.parse_args(argv)
    if args.quick:
        args.days, args.raw_days, args.raw_rate, args.repeat = 15, 8, 0.05, 2
    args.store.parent.mkdir(parents=True, exist_ok=True)
    print(f"building {args.days} days of rollups at {args.rate:g} events/s, raw rows for the last {args.raw_days} "
          f"days at {args.raw_rate:g} events/s, in {args.store} …", flush=True)  # fmt: skip
    if args.reuse and args.store.exists():
        print("reusing it as built before (disk and build figures: that run's)")
    else:
        report_build(build(args.store, args.days, args.rate, args.raw_days, args.raw_rate), args)
    raw = raw_only_copy(args.store)
    old_week = week_name(END - timedelta(days=args.raw_days + 7))
    last_week = week_name(END - timedelta(days=1))
    summary = Summary("retention", [])
    print(f"load {load():.2f}; {args.repeat} timed runs per question after one warm-up, uncached")
    print(f"{'question':<46} {'rollups p50/p95 ms':>20} {'raw rows p50/p95 ms':>21}")
    ok = True
    raw_questions = questions(str(raw), old_week, last_week)
    for name, run in questions(str(args.store), old_week, last_week).items():
        p50, p95 = timed(run, args.repeat)
        b50, b95 = timed(raw_questions[name], args.repeat)
        ok = ok and p95 < TARGET_P95_S
        mark = "" if p95 < TARGET_P95_S else f"  over the {TARGET_P95_S:.0f} s target"
        print(f"{name:<46} {p50 * 1e3:>9.0f} {p95 * 1e3:>9.0f}  {b50 * 1e3:>9.0f} {b95 * 1e3:>9.0f}{mark}", flush=True)
        summary.add(f"retention: {name} p95", p95 * 1e3, "ms", b95 * 1e3, "< 1000 ms", p95 < TARGET_P95_S)
    print(f"target: p95 under {TARGET_P95_S * 1e3:.0f} ms from rollups: {'met' if ok else 'MISSED'}; load {load():.2f}")
    if args.summary:
        summary.write(args.summary)
    raw.unlink(missing_ok=True)
    return 0 if ok or args.quick else 1


def report_build(built: dict[str, float], args: argparse.Namespace) -> None:
    """Print what the build took and the disk bound it implies."""
    per_raw_row = built["raw_bytes"] / max(1, built["raw_rows"])
    per_day_rollups = built["rollup_bytes"] / args.days
    bound = args.raw_days * 86400 * args.rate * per_raw_row
    print(
        f"rollups: {built['rollup_rows']:,} rows for {built['rolled_events']:,.0f} events, "
        f"{built['rollup_bytes'] / 1e9:.2f} GB ({per_day_rollups / 1e6:.1f} MB a day), "
        f"built in {built['rollup_s']:.0f} s\n"
        f"raw: {built['raw_rows']:,} rows, {built['raw_bytes'] / 1e9:.2f} GB ({per_raw_row:.0f} B a row), built in "
        f"{built['raw_s']:.0f} s; at {args.rate:g} events/s the {args.raw_days}-day raw window is "
        f"{args.raw_days * 86400 * args.rate / 1e6:,.0f}M rows, about {bound / 1e9:,.0f} GB at that size a row"
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
