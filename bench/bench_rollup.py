"""Benchmark: rolling one outage hour up (`hourly_sql`), new vs the first version, same input, same run (issue 21/22).

    python bench/bench_rollup.py [--parquet GLOB] [--copies 8] [--limits 100MB,1GB] [--repeat 2] [--versions old,new]
                                 [--summary FILE]

The writer rolls each closed hour inside the consumer's publish, so while it runs nothing is classified.
The input is an outage hour as the consumer wrote it: --copies copies of the day files matching
--parquet (by default the 281,578 verdicts of a simulated outage, written by a consumer under
/tmp/oom) with each copy's token fingerprints made distinct (sha256 of fingerprint and copy number),
so 8 copies are 2.25M verdicts of 36,000 tokens. Each run is a fresh process (DuckDB threads=1 and
the given memory_limit, spilling to a temporary directory) that copies the rollup of the input to
a Parquet file as the writer does; timed is that COPY, and the process's peak RSS is reported beside
its RSS before the query. The first version of `hourly_sql` is the reference kept in
tests/test_rollup_sql.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from common import Summary, header, load_note  # noqa: E402

DEFAULT_PARQUET = "/tmp/oom/s2/k.duckdb.parts/classifications/2026-11-23/*.parquet"


def build_input(parquet: str, copies: int, target: Path) -> int:
    """`copies` copies of the verdicts in `parquet`, tokens distinct per copy, as one Parquet file; its rows."""
    con = duckdb.connect()
    copied = " UNION ALL ".join(
        f"SELECT * REPLACE (sha256(token_sha256 || '{n}') AS token_sha256) FROM read_parquet('{parquet}')"
        for n in range(copies)
    )
    con.execute(f"COPY ({copied}) TO '{target}' (FORMAT parquet)")
    return int(con.execute(f"SELECT count(*) FROM '{target}'").fetchone()[0])  # type: ignore[index]


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_once(version: str, data: Path, limit: str, scratch: Path) -> dict[str, object]:
    """In this process: roll `data` up with `version` ("new" or "old") under `limit`; seconds and RSS (MiB)."""
    from test_rollup_sql import _hourly_sql_reference

    from pipeline.rollups import hourly_sql

    sql = hourly_sql if version == "new" else _hourly_sql_reference
    con = duckdb.connect()
    con.execute("SET threads = 1")
    con.execute(f"SET memory_limit = '{limit}'")
    con.execute(f"SET temp_directory = '{scratch / 'spill'}'")
    before = peak_rss_mib()
    started = time.perf_counter()
    try:
        con.execute(f"COPY ({sql(f'(SELECT * FROM read_parquet({str(data)!r}))')}) "
                    f"TO '{scratch / (version + '.parquet')}' (FORMAT parquet)")
        outcome = "ok"
    except duckdb.OutOfMemoryException as error:
        outcome = f"out of memory: {str(error).splitlines()[0][:80]}"
    seconds = time.perf_counter() - started
    peak = peak_rss_mib()
    return {"version": version, "limit": limit, "seconds": seconds, "rss_before": before, "rss_peak": peak,
            "outcome": outcome}


def measure(version: str, data: Path, limit: str, scratch: Path) -> dict[str, object]:
    """`run_once` in a fresh process (its peak RSS is the query's alone)."""
    done = subprocess.run([sys.executable, __file__, "--child", version, str(data), limit, str(scratch)],
                          check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def same_rows(scratch: Path) -> bool:
    con = duckdb.connect()
    new, old = f"'{scratch / 'new.parquet'}'", f"'{scratch / 'old.parquet'}'"
    differ = con.execute(f"SELECT (SELECT count(*) FROM (FROM {new} EXCEPT ALL FROM {old})) "
                         f"+ (SELECT count(*) FROM (FROM {old} EXCEPT ALL FROM {new}))").fetchone()
    return differ is not None and differ[0] == 0


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        print(json.dumps(run_once(sys.argv[2], Path(sys.argv[3]), sys.argv[4], Path(sys.argv[5]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parquet", default=DEFAULT_PARQUET)
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--limits", default="100MB,1GB")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--versions", default="old,new", help="which to run (the ratio needs both)")
    parser.add_argument("--summary", type=Path)
    args = parser.parse_args()
    header("Rolling one outage hour up: hourly_sql, new vs first version")
    summary = Summary("bench_rollup", [])
    with tempfile.TemporaryDirectory(prefix="bench-rollup-") as tmp:
        scratch = Path(tmp)
        rows = build_input(args.parquet, args.copies, scratch / "input.parquet")
        print(f"input: {rows:,} verdicts ({args.copies} copies of {args.parquet}); {load_note()}")
        print(f"{'limit':>6} {'version':>7} {'best s':>7} {'runs s':>16} {'RSS MiB before/peak':>20}  outcome")
        for limit in args.limits.split(","):
            best: dict[str, float] = {}
            for version in args.versions.split(","):
                runs = [measure(version, scratch / "input.parquet", limit, scratch) for _ in range(args.repeat)]
                ok = [run for run in runs if run["outcome"] == "ok"] or runs
                fastest = min(ok, key=lambda run: float(str(run["seconds"])))
                if fastest["outcome"] == "ok":
                    best[version] = float(str(fastest["seconds"]))
                times = ", ".join(f"{float(str(run['seconds'])):.2f}" for run in runs)
                rss = f"{float(str(fastest['rss_before'])):.0f}/{max(float(str(r['rss_peak'])) for r in runs):.0f}"
                print(f"{limit:>6} {version:>7} {float(str(fastest['seconds'])):>7.2f} {times:>16} {rss:>20}  "
                      f"{fastest['outcome']}", flush=True)
            if len(best) == 2:
                print(f"{limit:>6} new/old {best['new'] / best['old']:.3f}; same rows: {same_rows(scratch)}; "
                      f"{load_note()}")
            if "new" in best:
                summary.add(f"roll {rows:,} verdicts, {limit}", best["new"], "s", baseline=best.get("old"))
    summary.write(args.summary)


if __name__ == "__main__":
    main()
