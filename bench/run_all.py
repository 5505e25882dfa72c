"""Run every benchmark in sequence and print a summary of the headline figures (`make bench`).

    python bench/run_all.py [--quick] [--only NAME,...] [--skip NAME,...]   (names: the SCRIPTS table below)

Each script prints its own figures beside its baseline, measured in the same run; this
runner gathers their headline figures (through --summary JSON files) into one table with
the ratio to the baseline, the target and the load average at the time. --quick runs every
script in a tiny mode (the smoke test in tests/test_bench_smoke.py uses it); its figures
mean nothing. The end-to-end, outage and reporter scripts need the local broker (`make kafka-up`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, load_note, machine, versions

BENCH = ROOT / "bench"

#: name → script, in the order they run (the cheap ones first).
SCRIPTS = {
    "stages": "bench_stages.py",
    "classify": "bench_classify.py",
    "sink": "bench_sink.py",
    "e2e": "bench_e2e.py",
    "outage": "bench_outage.py",
    "scaling": "bench_scaling.py",
    "reporter": "bench_reporter.py",
    "timeline": "bench_timeline.py",
    "reported": "bench_reported.py",
    "retention": "bench_retention.py",
    "store": "bench_store.py",
}


def run(name: str, quick: bool, folder: Path) -> tuple[int, list[dict[str, object]], float]:
    summary = folder / f"{name}.json"
    command = [sys.executable, str(BENCH / SCRIPTS[name]), "--summary", str(summary)] + (["--quick"] if quick else [])
    print(f"\n$ {' '.join(['python', f'bench/{SCRIPTS[name]}', *command[2:]])}", flush=True)
    started = time.perf_counter()
    status = subprocess.run(command, cwd=ROOT).returncode
    rows = json.loads(summary.read_text())["rows"] if summary.exists() else []
    return status, rows, time.perf_counter() - started


def fmt(value: object, unit: str = "") -> str:
    if value is None:
        return "–"
    if not isinstance(value, float):
        return f"{value} {unit}".strip()
    return f"{value:,.0f} {unit}".strip() if abs(value) >= 100 else f"{value:,.2f} {unit}".strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every script in its tiny mode (smoke test)")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(SCRIPTS)}")
    parser.add_argument("--skip", default="", help="comma-separated scripts to leave out")
    args = parser.parse_args(argv)
    names = [n for n in (args.only.split(",") if args.only else SCRIPTS) if n not in args.skip.split(",")]
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(SCRIPTS)}")
    print(f"jwtriage benchmarks{' (quick: figures mean nothing)' if args.quick else ''}\nmachine: {machine()}\n"
          f"{versions()}\n{load_note()} at start")
    failed: list[str] = []
    table: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="jwtriage-bench-") as tmp:
        for name in names:
            status, rows, seconds = run(name, args.quick, Path(tmp))
            print(f"({name}: {seconds:.0f} s, exit {status})", flush=True)
            if status != 0:
                failed.append(name)
            table.extend(rows)

    print(f"\n== summary ({load_note()} at the end) ==")
    print(f"{'figure':<52} {'value':>16} {'baseline':>14} {'ratio':>7} {'target':>12} {'met':>4} {'load':>5}")
    for row in table:
        unit = str(row["unit"])
        ratio = row.get("ratio")
        met = {True: "yes", False: "NO", None: ""}[row.get("met")]  # type: ignore[index]
        print(f"{row['name']!s:<52} {fmt(row['value'], unit):>16} {fmt(row.get('baseline')):>14} "
              f"{(f'{ratio:.2f}x' if isinstance(ratio, float) else '–'):>7} {row.get('target') or '':>12} "
              f"{met:>4} {float(row['load']):>5.2f}")  # type: ignore[arg-type]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
