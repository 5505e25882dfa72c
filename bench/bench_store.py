"""Publish cost per batch and reader freshness against the size of the store: append (new) vs copy (old).

    python bench/bench_store.py [--sizes 1000000,10000000] [--batches 20] [--quick] [--summary FILE]

For each size N a synthetic history of N verdict rows is laid down twice, in the same run:
- new: a consumer's store (`Store(db, instance=...)`): N rows as Parquet day files (30 days, merged
  one file a day, as a closed day ends up), the live file holding only the newest rows;
- old: one DuckDB file holding all N rows, published as the old `Store.publish` did (CHECKPOINT,
  byte copy, rename).
Then 2,000-row batches are committed and published one at a time: *publish* is the seconds the
publish took; *freshness* is publish plus a new reader opening the store and finding the batch
(`connect_readonly` + a count over the last minute, as the Live page asks).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.io.store import Store
from pipeline.io.store_parts import DAY_LEVEL, part_name
from pipeline.io.store_readers import connect_readonly
from pipeline.io.store_schema import DDL, parts_dir

END = datetime(2026, 12, 1, tzinfo=UTC)
DAYS = 30
BATCH = 2_000
LIVE_ROWS = 500_000  # the newest rows the new layout keeps in its live file (six hours at ~23 events/s)

_ROWS = """SELECT 'ev-' || lpad(i::VARCHAR, 12, '0') AS event_id,
       ?::TIMESTAMPTZ + to_microseconds((i - ?) * ?) AS ts,
       ['payments-api', 'orders-api', 'search-api'][1 + i % 3] AS service,
       ['expired', 'stale_jwks', 'bad_signature', 'unknown_kid', 'audience_mismatch'][1 + i % 5] AS cause,
       'verified' AS confidence, []::VARCHAR[] AS attacks, ['expired']::VARCHAR[] AS findings,
       'https://login.acme.test' AS issuer, 'rsa-' || (i % 7) AS kid, 'RS256' AS alg, '"api://payments"' AS audience,
       NULL::DOUBLE AS skew_seconds, 'the token expired ' || (i % 977) || ' s before the event' AS detail,
       'client-' || (i % 50) AS client_id, md5(i::VARCHAR) AS request_id, sha256(i::VARCHAR) AS token_sha256,
       '{"alg":"RS256","kid":"rsa-1"}' AS token_header,
       '{"sub":"hmac:' || md5((i % 5000)::VARCHAR) || '","exp":1700000000}' AS token_claims,
       NULL AS key_thumbprint, NULL::TIMESTAMPTZ AS key_first_seen, NULL::TIMESTAMPTZ AS service_jwks_fetched_at,
       NULL AS reported_error, 'auth.failures' AS source, (i % 6)::INTEGER AS source_partition,
       i AS source_offset, ?::TIMESTAMPTZ AS classified_at
FROM range(?, ?) r(i)"""


def rows_sql(first: int, n: int, start: datetime, step_us: int, at: datetime) -> tuple[str, list[object]]:
    return _ROWS, [start, first, step_us, at, first, first + n]


def lay_new(folder: Path, n: int) -> Path:
    """A consumer store holding `n` rows: day files for the history, the newest rows also in its live file."""
    db = folder / "new.duckdb"
    with Store(db, instance="bench") as store:
        store.close()
    con = duckdb.connect()
    con.execute(DDL)
    per_day, step = n // DAYS, int(86_400_000_000 // max(n // DAYS, 1))
    at = END - timedelta(hours=1)
    for day in range(DAYS):
        start = END - timedelta(days=DAYS - day)
        target = parts_dir(db) / "classifications" / start.strftime("%Y-%m-%d") / part_name("bench", DAY_LEVEL, 0, 0)
        target.parent.mkdir(parents=True, exist_ok=True)
        sql, params = rows_sql(day * per_day, per_day, start, step, at)
        con.execute(f"COPY ({sql} ORDER BY ts) TO '{target}' (FORMAT parquet, COMPRESSION zstd)", params)
    con.close()
    with Store(db, instance="bench") as store:
        live = min(LIVE_ROWS, n)
        sql, params = rows_sql(n - live, live, END - timedelta(seconds=live * step / 1e6), step, at)
        store.con.execute(f"INSERT INTO classifications {sql}", params)
        store.con.execute("INSERT OR REPLACE INTO store_meta VALUES ('published_through', ?), ('publish_seq', '1')",
                          [at.isoformat()])
    return db


def lay_old(folder: Path, n: int) -> Path:
    """The old layout: one DuckDB file with all `n` rows (the consumer's working file, copied at each publish)."""
    db = folder / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute(DDL)
    step = int(DAYS * 86_400_000_000 // max(n, 1))
    for first in range(0, n, 5_000_000):
        size = min(5_000_000, n - first)
        sql, params = rows_sql(first, size, END - timedelta(days=DAYS) + timedelta(microseconds=first * step), step,
                               END - timedelta(hours=1))
        con.execute(f"INSERT INTO classifications {sql}", params)
    con.close()
    return db


def old_publish(con: duckdb.DuckDBPyConnection, live: Path, published: Path) -> None:
    con.execute("CHECKPOINT")
    tmp = published.with_name(f".{published.name}.tmp")
    shutil.copyfile(live, tmp)
    os.replace(tmp, published)


def freshness_query(con: duckdb.DuckDBPyConnection, since: datetime) -> int:
    row = con.execute("SELECT count(*) FROM classifications WHERE ts >= ?", [since]).fetchone()
    return int(row[0]) if row else 0


def run_new(db: Path, n: int, batches: int) -> tuple[list[float], list[float]]:
    publish, fresh = [], []
    with Store(db, instance="bench") as store:
        for b in range(batches):
            start = END + timedelta(seconds=b * 10)
            sql, params = rows_sql(n + b * BATCH, BATCH, start, 5_000, store._now())
            store.con.execute(f"INSERT INTO classifications {sql}", params)
            started = time.perf_counter()
            store.publish()
            publish.append(time.perf_counter() - started)
            con = connect_readonly(db)
            seen = freshness_query(con, start)
            con.close()
            fresh.append(time.perf_counter() - started)
            assert seen == BATCH, seen
    return publish, fresh


def run_old(db: Path, n: int, batches: int) -> tuple[list[float], list[float]]:
    publish, fresh = [], []
    published = db.with_name("old.published.duckdb")
    con = duckdb.connect(str(db))
    for b in range(batches):
        start = END + timedelta(seconds=b * 10)
        sql, params = rows_sql(n + b * BATCH, BATCH, start, 5_000, datetime.now(UTC))
        con.execute(f"INSERT INTO classifications {sql}", params)
        started = time.perf_counter()
        old_publish(con, db, published)
        publish.append(time.perf_counter() - started)
        reader = duckdb.connect(str(published), read_only=True)
        seen = freshness_query(reader, start)
        reader.close()
        fresh.append(time.perf_counter() - started)
        assert seen == BATCH, seen
    con.close()
    return publish, fresh


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
            "max": ordered[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--old-batches", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test")
    parser.add_argument("--summary", help="write the headline figures here as JSON")
    parser.add_argument("--dir", help="where to lay the stores (default: a temporary folder)")
    args = parser.parse_args()
    sizes = [20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    batches, old_batches = (3, 2) if args.quick else (args.batches, args.old_batches)
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            folder = Path(tmp)
            laid = time.perf_counter()
            new_db, old_db = lay_new(folder, n), lay_old(folder, n)
            laid = time.perf_counter() - laid
            disk_new = sum(p.stat().st_size for p in parts_dir(new_db).rglob("*") if p.is_file())
            disk_old = old_db.stat().st_size
            new_pub, new_fresh = run_new(new_db, n, batches)
            old_pub, old_fresh = run_old(old_db, n, old_batches)
        row = {"rows": n, "lay_seconds": laid, "disk_new_bytes": disk_new, "disk_old_bytes": disk_old,
               "new_publish": summary(new_pub), "new_freshness": summary(new_fresh),
               "old_publish": summary(old_pub), "old_freshness": summary(old_fresh)}
        results.append(row)
        print(f"{n:>12,} rows (laid in {laid:.0f} s; parts {disk_new / 1e9:.2f} GB, old file {disk_old / 1e9:.2f} GB; "
              f"load {os.getloadavg()[0]:.2f})")
        for what in ("publish", "freshness"):
            new, old = row[f"new_{what}"], row[f"old_{what}"]
            print(f"  {what:<10} append: median {new['median'] * 1000:8.1f} ms  p95 {new['p95'] * 1000:8.1f} ms"
                  f"   |  copy (old): median {old['median'] * 1000:8.1f} ms  p95 {old['p95'] * 1000:8.1f} ms")
    if args.summary:
        Path(args.summary).write_text(json.dumps({"rows": headline(results), "detail": results}, indent=1),
                                      encoding="utf-8")


def headline(results: list[dict[str, object]]) -> list[dict[str, object]]:
    """run_all.py's rows: the median publish and freshness per size, the old copy-publish as the baseline."""
    rows: list[dict[str, object]] = []
    for r in results:
        for what in ("publish", "freshness"):
            new, old = r[f"new_{what}"], r[f"old_{what}"]
            assert isinstance(new, dict) and isinstance(old, dict)
            rows.append({"name": f"store: {what} per 2,000-row batch at {r['rows']:,} rows", "unit": "ms",
                         "value": new["median"] * 1000, "baseline": old["median"] * 1000,
                         "ratio": new["median"] / old["median"], "target": "flat", "met": None,
                         "load": os.getloadavg()[0]})
    return rows


if __name__ == "__main__":
    main()
