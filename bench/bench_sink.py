"""Benchmark: rows/s into DuckDB through `Store.write`, against a bare Arrow insert of the same rows.

    python bench/bench_sink.py [--events 100000] [--batch-size 2000] [--quick]

The rows are real verdicts: a simulated day (`pipeline.simulator`, cached under
bench/.cache/) is classified once, untimed, into batches as the runner makes them. Then,
in the same run and into fresh stores with the real schema:

  jwtriage   `Store.write(batch)` per batch: the Arrow table built from the verdicts, upserted
             by (event_id, ts) (the stored rows that join the batch on that key deleted, then
             the batch appended: the table has no index), dead letters, source positions, one
             transaction each; what the consumer and the demo pay.
  bare       the same rows as Arrow tables built beforehand (not timed), one plain
             `INSERT INTO classifications SELECT * FROM batch` per batch in its own transaction:
             the floor DuckDB sets for this schema (DESIGN.md quotes ~250,000 rows/s).

Also shown: the Arrow build alone and the store's upsert of the prebuilt tables, so the
gap splits into "building the table" and "upsert instead of append". Best of two runs each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import duckdb
import pyarrow as pa
from common import Summary, header, load, load_note, simulated_files

from pipeline.config import load_config
from pipeline.io.files import FileSource
from pipeline.io.store import Store, classification_table
from pipeline.io.store_schema import DDL
from pipeline.records import Batch
from pipeline.runner import Pipeline


def classify_once(paths: dict[str, Path], batch_size: int) -> tuple[list[Batch], Pipeline]:
    config = load_config(paths["config"], environ={})
    pipeline = Pipeline(config)
    source = FileSource(paths["events"], snapshots=paths["jwks"], samples=paths["samples"], batch_size=batch_size)
    return [pipeline.process(envelopes) for envelopes in source.batches()], pipeline


def best(runs: int, measure: Callable[[Path], float], folder: Path) -> float:
    results = []
    for n in range(max(2, runs)):
        results.append(measure(folder / f"run{n}-{time.perf_counter_ns()}.duckdb"))
    return min(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="simulated events (rows), default 100,000")
    parser.add_argument("--batch-size", type=int, default=2_000, help="rows per transaction, as the consumer")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument("--summary", type=Path, help="write the headline figures here as JSON (for run_all.py)")
    args = parser.parse_args(argv)
    events = 1_000 if args.quick else args.events
    header("sink: rows/s into DuckDB, Store.write vs a bare Arrow insert of the same rows")
    batches, pipeline = classify_once(simulated_files(events), args.batch_size)
    rows = sum(len(b.judged) for b in batches)
    at = datetime.now(UTC)
    tables = [classification_table(b.judged, at) for b in batches if b.judged]

    def jwtriage(path: Path) -> float:
        with Store(path) as store:
            started = time.perf_counter()
            for batch in batches:
                store.write(batch, pipeline.timeline)
            return time.perf_counter() - started

    def bare(path: Path) -> float:
        con = duckdb.connect(str(path))
        con.execute(DDL)
        started = time.perf_counter()
        for table in tables:
            con.begin()
            con.register("_rows", table)
            con.execute("INSERT INTO classifications SELECT * FROM _rows")
            con.unregister("_rows")
            con.commit()
        elapsed = time.perf_counter() - started
        con.close()
        return elapsed

    def upsert_only(path: Path) -> float:
        with Store(path) as store:
            started = time.perf_counter()
            for table in tables:
                store.con.begin()
                store._upsert(table, "classifications", ("event_id", "ts"))  # what Store.write runs for the rows
                store.con.commit()
            return time.perf_counter() - started

    def arrow_only(_: Path) -> float:
        started = time.perf_counter()
        for batch in batches:
            if batch.judged:
                classification_table(batch.judged, at)
        return time.perf_counter() - started

    with tempfile.TemporaryDirectory(prefix="jwtriage-sink-") as tmp:
        folder = Path(tmp)
        ours = best(args.runs, jwtriage, folder)
        load_ours = load()
        baseline = best(args.runs, bare, folder)
        load_bare = load()
        upsert = best(args.runs, upsert_only, folder)
        build = best(args.runs, arrow_only, folder)
    size = sum(t.nbytes for t in tables) / max(1, rows)
    print(f"{rows:,} rows (a simulated day: {events:,} events, every cause), {len(batches)} batches of "
          f"<= {args.batch_size:,}, ~{size:.0f} B/row in Arrow; pyarrow {pa.__version__}; {load_note()}")
    print(f"  {'bare Arrow INSERT (prebuilt tables)':<46} {rows / baseline:>10,.0f} rows/s  load {load_bare:.2f}")
    print(f"  {'upsert by event_id (prebuilt tables)':<46} {rows / upsert:>10,.0f} rows/s")
    print(f"  {'classification_table alone (Arrow build)':<46} {rows / build:>10,.0f} rows/s")
    print(f"  {'jwtriage Store.write (build + upsert + pos.)':<46} {rows / ours:>10,.0f} rows/s  load {load_ours:.2f}")
    print(f"  ratio Store.write / bare insert: {baseline / ours:.2f}x (higher is better)")
    summary = Summary("sink", [])
    summary.add("sink: Store.write rows/s", rows / ours, "rows/s", baseline=rows / baseline, load=load_ours)
    summary.write(args.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
