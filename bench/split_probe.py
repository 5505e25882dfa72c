"""What one consumer would gain by judging in a second process: one process against a judge and a writer.

    python bench/split_probe.py [--events 500000] [--runs 2] [--quick] [--summary FILE]

Why: issue 22 asks one consumer for 0.3x a bare kafka-python loop, and a consumer is bound by
one process (bench/results.md: 1.1 cores while 0.8 of the machine idles). Splitting it means
moving the pipeline's state (and its re-judging of stored rows) across a process boundary; this
measures what the split could give at best, before anyone pays for it. No Kafka, no publishing:
the burst's records (bench/burst_replay.py's, the outage stream cycled, ids unique) in batches of
5,000, after the stream's key snapshots.

  one    `Pipeline.process`, then `Store.write` (the Arrow build, the upsert, the commit), in turn.
  split  a child process judges and builds each batch's Arrow table and sends it as Arrow IPC over a
         pipe; the parent writes it with the same `Store.write`. Timed from the first batch the
         parent gets (the child's start-up is not counted), so it is the pair's steady rate.

Runs alternate (one, split, one, split, ...) and the best of each is printed with the parent's CPU
per event: what is left of the parent's core for kafka-python (~8.5 µs per event through the broker).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Summary, header, load, load_note
from outage import OutageFiles, outage_stream

BATCH = 5_000


def _batches(files: OutageFiles, total: int) -> Iterator[list[Any]]:
    """The burst producer's records, `total` of them, 250 to a partition in turn, in batches."""
    from burst_replay import records, sticky

    from pipeline.records import Envelope, Position, RecordKind

    batch: list[Any] = []
    offsets = [0] * 4
    for partition, value in sticky(records(files.events.read_bytes().splitlines(), total, "cycled", 0.0), 4):
        batch.append(Envelope(RecordKind.EVENT, value, Position("auth.failures", partition, offsets[partition])))
        offsets[partition] += 1
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _pipeline(files: OutageFiles) -> Any:
    """A consumer's pipeline (it holds judged events for late snapshots) that has read the stream's snapshots."""
    from pipeline.config import load_config
    from pipeline.records import Envelope, Position, RecordKind
    from pipeline.runner import Pipeline

    config = load_config(files.config, environ={"JWTRIAGE_HASH_KEY": "00" * 32})
    pipeline = Pipeline(config)
    pipeline.process([Envelope(RecordKind.SNAPSHOT, line, Position("auth.jwks", 0, n))
                      for n, line in enumerate(files.jwks.read_bytes().splitlines())])
    return pipeline


def _judge(conn: Connection, folder: str, total: int) -> None:
    """The child: judge each batch, send its Arrow table (IPC bytes) and positions; b"" at the end."""
    from pipeline.io.verdict_table import classification_table
    from pipeline.runner import streaming_gc

    files = OutageFiles(Path(folder))
    pipeline = _pipeline(files)
    now = datetime.now(UTC)
    with streaming_gc():
        for envelopes in _batches(files, total):
            batch = pipeline.process(envelopes)
            table = classification_table(batch.judged, now)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            conn.send_bytes(sink.getvalue())
            conn.send(batch.positions)
    conn.send_bytes(b"")
    conn.close()


def run(mode: str, files: OutageFiles, total: int) -> tuple[float, float]:
    """(events/s, parent CPU µs per event) of one run; checks every event was stored once."""
    from pipeline.io import store as store_module
    from pipeline.records import Batch
    from pipeline.runner import streaming_gc

    folder = Path(tempfile.mkdtemp(prefix="jwtriage-split-"))
    store = store_module.Store(folder / "store.duckdb", instance="probe")
    stored = 0
    try:
        if mode == "one":
            pipeline = _pipeline(files)
            started, cpu = time.perf_counter(), time.process_time()
            with streaming_gc():
                for envelopes in _batches(files, total):
                    batch = pipeline.process(envelopes)
                    store.write(batch, pipeline.timeline)
                    stored += len(batch.judged)
        else:
            context = mp.get_context("spawn")  # a forked child would inherit the parent's DuckDB
            ours, theirs = context.Pipe(duplex=False)
            child = context.Process(target=_judge, args=(theirs, str(files.folder), total))
            child.start()
            theirs.close()
            received: list[pa.Table] = []
            original = store_module.classification_table
            store_module.classification_table = lambda judged, now: received[-1]  # the child built it
            try:
                first: tuple[float, float] | None = None
                with streaming_gc():
                    while data := ours.recv_bytes():
                        first = first or (time.perf_counter(), time.process_time())
                        received[:] = [pa.ipc.open_stream(data).read_all()]
                        batch = Batch()
                        batch.judged = [None]  # type: ignore[list-item]  # only its truth is read
                        batch.positions = ours.recv()
                        store.write(batch, None)  # type: ignore[arg-type]  # no snapshot: never read
                        stored += received[0].num_rows
            finally:
                store_module.classification_table = original
            child.join()
            assert first is not None, "the child sent nothing"
            started, cpu = first
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        rows = store.con.execute("SELECT count(*), count(DISTINCT event_id) FROM classifications").fetchone()
        assert rows == (total, total) and stored == total, f"{mode}: stored {rows} of {total}"
    finally:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)
    return total / wall, cpu / total * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=2, help="runs of each mode, alternating")
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument("--summary", type=Path, help="write the headline figures here (JSON, for run_all.py)")
    args = parser.parse_args(argv)
    header("a second process for judging: one consumer's ceiling")
    files = outage_stream(users=60, minutes=1.0, baseline_per_s=10) if args.quick else outage_stream()
    total, runs = (20_000, 1) if args.quick else (args.events, args.runs)
    print(f"{total:,} events (the outage stream cycled) in batches of {BATCH:,}; {load_note()}", flush=True)
    best: dict[str, tuple[float, float]] = {}
    for n in range(runs):
        for mode in ("one", "split"):
            rate, cpu = run(mode, files, total)
            print(f"  run {n + 1}: {mode:<5}: {rate:>8,.0f} events/s ({1e6 / rate:5.1f} us wall/event), "
                  f"parent CPU {cpu:5.1f} us/event; load {load():.2f}", flush=True)
            if mode not in best or rate > best[mode][0]:
                best[mode] = (rate, cpu)
    (one, _), (split, parent) = best["one"], best["split"]
    print(f"split {split:,.0f}/s against one process {one:,.0f}/s ({split / one:.2f}x); the parent is busy "
          f"{parent:.1f} us per event")
    summary = Summary("split_probe.py", [])
    summary.add("split probe: judged in a child", split, "events/s", baseline=one, load=load())
    if args.summary:
        summary.write(args.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
