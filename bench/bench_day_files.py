"""Benchmark: what a raw day's file costs its writer and its readers (issue 21).

    python bench/bench_day_files.py merge DAY_FILE [--sizes 16384,65536,122880] [--out DIR]
    python bench/bench_day_files.py open STORE [STORE …] [--repeat 9]

`merge`: the writer's day merge (`store_parts.merge`: one thread, the maintenance pass's memory limit) of
DAY_FILE into one file per row-group size, each in a process of its own: its time and peak resident
memory, then the merged file's row groups, the time to bind a view over it (its footer parsed) and a
15-minute chart's scan of it. `open`: `connect_readonly` on each store, timed; run it with
`PYTHONPATH=<checkout>` for each checkout to compare.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb

_MERGE = """
import resource, sys, time, duckdb
size, source, target, limit = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
con = duckdb.connect()
con.execute("SET threads = 1")
con.execute(f"SET memory_limit = '{limit}'")
start = time.perf_counter()
con.execute(f"COPY (SELECT * FROM read_parquet(['{source}'], union_by_name = true)) TO '{target}' "
            f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {size})")
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def merge(day_file: Path, sizes: list[int], out: Path) -> None:
    from pipeline.io.store_publish import MAINTENANCE_MEMORY_LIMIT

    out.mkdir(parents=True, exist_ok=True)
    print("row group rows   merge s  peak RSS MB   file MB  row groups  bind ms  15-min scan ms", flush=True)
    for size in sizes:
        target = out / f"day-{size}.parquet"
        done = subprocess.run([sys.executable, "-c", _MERGE, str(size), str(day_file), str(target),
                               MAINTENANCE_MEMORY_LIMIT], check=True, capture_output=True, text=True)
        seconds, rss = (float(v) for v in done.stdout.split())
        groups, bind, scan = _read(target)
        print(f"{size:>14,} {seconds:9.1f} {rss:12.0f} {target.stat().st_size / 1e6:9.0f} {groups:11,} "
              f"{bind:8.0f} {scan:15.0f}  (load {os.getloadavg()[0]:.1f})", flush=True)
        target.unlink()


def _read(file: Path) -> tuple[int, float, float]:
    """(row groups, median ms to bind a view over `file` on a new connection, median ms of a 15-minute chart)."""
    binds = []
    for _ in range(5):
        with duckdb.connect() as con:
            start = time.perf_counter()
            con.execute(f"CREATE VIEW v AS SELECT * FROM read_parquet(['{file}'], union_by_name = true)")
            binds.append((time.perf_counter() - start) * 1000)
    with duckdb.connect() as con:
        row = con.execute("SELECT count(DISTINCT row_group_id) FROM parquet_metadata(?)", [str(file)]).fetchone()
        scans = []
        for _ in range(3):
            start = time.perf_counter()
            con.execute(f"SELECT time_bucket(INTERVAL 15 MINUTE, ts), cause, count(*), sum(len(attacks)) "
                        f"FROM read_parquet(['{file}']) GROUP BY ALL").fetchall()
            scans.append((time.perf_counter() - start) * 1000)
    return int(row[0]) if row else 0, statistics.median(binds), statistics.median(scans)


def open_times(stores: list[str], repeat: int) -> None:
    from pipeline.io.store_readers import connect_readonly

    for store in stores:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            connect_readonly(store).close()
            times.append((time.perf_counter() - start) * 1000)
        print(f"{store}: open ms min {min(times):.0f} / median {statistics.median(times):.0f} / max {max(times):.0f}"
              f"  (load {os.getloadavg()[0]:.1f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    merging = sub.add_parser("merge", help="a day's merge per row-group size, and reading what it wrote")
    merging.add_argument("day_file", type=Path)
    merging.add_argument("--sizes", default="16384,65536,122880")
    merging.add_argument("--out", type=Path, default=Path("/tmp/jwtriage-day-files"))
    opening = sub.add_parser("open", help="connect_readonly on each store, timed")
    opening.add_argument("stores", nargs="+")
    opening.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    if args.what == "merge":
        merge(args.day_file, [int(s) for s in args.sizes.split(",")], args.out)
    else:
        open_times(args.stores, args.repeat)


if __name__ == "__main__":
    main()
