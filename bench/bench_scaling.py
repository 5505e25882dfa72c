"""Benchmark: throughput and peak RSS at 10k, 100k and 1M events; dashboard p95 at 1M and 10M rows.

    python bench/bench_scaling.py [--sizes 10000,100000,1000000] [--dashboard-rows 1000000,10000000] [--quick]

Pipeline: for each size, `pipeline.simulator` writes a simulated day (seed 7, 24 h) to JSONL
once, in its own process (the simulator holds the whole scenario in memory, which is not
the pipeline's); then a fresh child process runs the file/in-memory runner path,
`pipeline.runner.run(FileSource(...), Pipeline(config), Store(db))`, and reports its events/s
and its peak RSS (`getrusage(RUSAGE_SELF).ru_maxrss` in the child, the same figure the
parent reads as RUSAGE_CHILDREN). Token mix: the simulator's clients reuse a token while it
is valid, as real ones do, so a larger day repeats tokens more (the child reports distinct
signature checks); every cause of DESIGN.md appears, joins through sampled tokens included.
The baseline is the smallest size: throughput and RSS should stay flat as the stream grows,
because the join state and the caches are capped (PipelineLimits, SignatureCache, the
parse cache).

Dashboard: runs bench/bench_dashboard.py (the dashboard engineer's; it synthesises the rows
in DuckDB from a classified demo day) at each row count, stores cached under bench/.cache/.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CACHE, ROOT, Summary, header, load, load_note, simulated_files

DASHBOARD_TARGET_P95_S = 1.0


def child(args: argparse.Namespace) -> None:
    """Run the pipeline on the files into a fresh store; print one JSON line of figures."""
    from pipeline.config import load_config
    from pipeline.io.files import FileSource
    from pipeline.io.store import Store
    from pipeline.runner import Pipeline, run

    folder = Path(args.child)
    config = load_config(folder / "jwtriage.toml", environ={})
    pipeline = Pipeline(config)
    source = FileSource(folder / "events.jsonl", snapshots=folder / "jwks.jsonl", samples=folder / "samples.jsonl")
    rss_samples: list[float] = []  # the resident set after each batch (VmRSS), MB

    def on_batch(batch: object, stats: object) -> None:
        status = Path("/proc/self/status").read_text()
        rss_samples.append(int(status.split("VmRSS:")[1].split()[0]) / 1024)

    with Store(Path(args.db)) as store:
        started_cpu = time.process_time()
        stats = run(source, pipeline, store, on_batch=on_batch)
        cpu = time.process_time() - started_cpu
    second_half = sorted(rss_samples[len(rss_samples) // 2 :]) or [0.0]
    print(json.dumps({
        "events": pipeline.counts["events"], "records": stats.records, "seconds": stats.seconds, "cpu": cpu,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_median_mb": second_half[len(second_half) // 2],
        "signature_checks": pipeline.classifier.cache.misses, "state": pipeline.state_sizes,
        "parsed_tokens": len(pipeline.classifier.parse_cache),
    }))


def run_size(events: int) -> dict[str, float]:
    paths = simulated_files(events)
    with tempfile.TemporaryDirectory(prefix="jwtriage-scaling-") as tmp:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(paths["events"].parent), "--db", str(Path(tmp) / "s.duckdb")],
            check=True, capture_output=True, text=True, cwd=ROOT,
        )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = load()
    return result


def dashboard(rows: int, quick: bool) -> tuple[float | None, float | None, str]:
    """bench_dashboard.py at `rows`: (worst page p95 s, baseline p50 s, its output)."""
    script = Path(__file__).resolve().parent / "bench_dashboard.py"
    if not script.exists():
        return None, None, "bench/bench_dashboard.py is missing"
    label = f"{rows // 1_000_000}M" if rows >= 1_000_000 else f"{rows // 1000}k"
    cmd = [sys.executable, str(script), "--rows", str(rows), "--store", str(CACHE / f"dashboard-{label}.duckdb")]
    if quick:
        cmd += ["--days", "2", "--base-events", "500", "--repeat", "2",
                "--base", str(_quick_base())]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    text = done.stdout + done.stderr
    p95s, baseline = [], None
    for line in done.stdout.splitlines():
        match = re.match(r"^(.*?)\s+([\d.]+)\s+([\d.]+)\s+\d+x", line)
        if match:
            if match.group(1).startswith("baseline"):
                baseline = float(match.group(2)) / 1e3
            else:
                p95s.append(float(match.group(3)) / 1e3)
    return (max(p95s) if p95s else None), baseline, text


def _quick_base() -> Path:
    """A tiny classified store for the smoke test's dashboard run (the demo on 500 events)."""
    base = CACHE / "dashboard-quick-base.duckdb"
    if not base.exists():
        import io

        from rich.console import Console

        from pipeline.commands.demo import run_demo

        CACHE.mkdir(parents=True, exist_ok=True)
        run_demo(Console(file=io.StringIO()), db=base, seed=7, events=500, hours=24.0)
    return base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="event counts for the pipeline runs")
    parser.add_argument("--dashboard-rows", default="1000000,10000000", help="row counts for the dashboard runs")
    parser.add_argument("--runs", type=int, default=2, help="runs per size; the best throughput is kept")
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument("--summary", type=Path, help="write the headline figures here as JSON (for run_all.py)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    sizes = [1_000, 2_000] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    rows = [20_000] if args.quick else [int(s) for s in args.dashboard_rows.split(",") if s]
    runs = 1 if args.quick else max(2, args.runs)
    header("scaling: the runner path (simulated day, file source, DuckDB store) at growing sizes")
    summary = Summary("scaling", [])
    results: dict[int, dict[str, float]] = {}
    for size in sizes:
        simulated_files(size)  # simulate (once) before timing anything
        tries = [run_size(size) for _ in range(runs)]
        best = max(tries, key=lambda r: r["events"] / r["seconds"])
        best["rss_mb"] = max(r["rss_mb"] for r in tries)  # peak RSS: the worst of the runs
        results[size] = best
        print(f"  {size:>9,} events: " + "; ".join(
            f"{r['events'] / r['seconds']:,.0f} events/s, peak RSS {r['rss_mb']:.0f} MB (load {r['load']:.2f})"
            for r in tries), flush=True)
    base = results[sizes[0]]
    print(f"\n{'events':>10} {'events/s':>9} {'vs first':>8} {'CPU us/event':>12} {'peak RSS MB':>11} "
          f"{'median RSS MB':>13} {'sig. checks':>11} {'load':>5}")
    print("(median RSS: the resident set between batches over the second half of the run)")
    for size, r in results.items():
        rate = r["events"] / r["seconds"]
        print(f"{size:>10,} {rate:>9,.0f} {rate / (base['events'] / base['seconds']):>7.2f}x "
              f"{r['cpu'] / r['events'] * 1e6:>12.0f} {r['rss_mb']:>11.0f} {r['rss_median_mb']:>13.0f} "
              f"{int(r['signature_checks']):>11,} {r['load']:>5.2f}")
        summary.add(f"scaling: {size:,} events events/s", rate, "events/s",
                    baseline=base["events"] / base["seconds"], load=r["load"])
        summary.add(f"scaling: {size:,} events peak RSS", r["rss_mb"], "MB", load=r["load"])
        summary.add(f"scaling: {size:,} events median RSS", r["rss_median_mb"], "MB", load=r["load"])
    if len(sizes) >= 2:
        big, mid = results[sizes[-1]], results[sizes[-2]]
        growth = big["rss_mb"] / mid["rss_mb"]
        print(f"peak RSS {sizes[-1]:,} / {sizes[-2]:,} events: {growth:.2f}x (flat means about 1.0x)")
        summary.add("scaling: peak RSS largest / second", growth, "x", target="about 1.0x (flat)",
                    met=growth <= 1.15)

    for count in rows:
        print(f"\ndashboard at {count:,} rows (bench/bench_dashboard.py; {load_note()}):", flush=True)
        worst, baseline, text = dashboard(count, args.quick)
        print("\n".join("  " + line for line in text.strip().splitlines() if "\r" not in line))
        if worst is not None:
            summary.add(f"dashboard p95 (worst page) at {count:,} rows", worst * 1e3, "ms",
                        baseline=baseline * 1e3 if baseline else None,
                        target=f"< {DASHBOARD_TARGET_P95_S * 1e3:.0f} ms", met=worst < DASHBOARD_TARGET_P95_S)
    summary.write(args.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
