"""Per-batch CPU of a bench consumer's parts, logged as it runs (JWTRIAGE_BENCH_BATCHES=DIR in bench_e2e's worker).

    python bench/batch_timing.py DIR/batches-*.jsonl [--step 200000]     # CPU per event by part, per step

Each batch the consumer stores adds one JSON line: its events, the CPU (`time.process_time`) and wall seconds
of `KafkaSource.poll`, `Pipeline.process`, `Store.write` and, inside it, `Store._upsert_verdicts`, and of any
`Store.publish` since the batch before, with the batch's `ts` range and each partition's offsets. Why: the
burst's consumer spent more CPU per event as its live table grew, and only the Kafka delivery order showed it
(bench/results.md); stack samples give shares of wall time, this gives each part's CPU against rows stored.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def install(folder: Path) -> None:
    """Wrap the consumer's parts; each stored batch appends a line to `folder/batches-<pid>.jsonl`."""
    import pyarrow.compute as pc

    from pipeline.io.kafka import KafkaSource
    from pipeline.io.store import Store
    from pipeline.runner import Pipeline

    log = (folder / f"batches-{os.getpid()}.jsonl").open("w")
    spent: dict[str, Any] = {}

    def timed(owner: type, name: str, key: str, note: Callable[..., None] | None = None) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if note is not None:
                note(*args)
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - wall
                spent[key + "_cpu"] = spent.get(key + "_cpu", 0.0) + time.process_time() - cpu

        setattr(owner, name, wrapper)

    def note_rows(store: Any, table: Any, now: Any) -> None:
        span = pc.min_max(table["ts"]).as_py()
        offsets: dict[int, list[int]] = {}
        for partition, offset in zip(table["source_partition"].to_pylist(), table["source_offset"].to_pylist(),
                                     strict=True):
            low, high = offsets.get(partition, [offset, offset])
            offsets[partition] = [min(low, offset), max(high, offset)]
        spent.update(ts_min=span["min"].isoformat(), ts_max=span["max"].isoformat(), offsets=offsets)

    def note_write(store: Any, batch: Any, timeline: Any) -> None:
        spent["events"] = len(batch.judged)

    timed(KafkaSource, "poll", "poll")
    timed(Pipeline, "process", "process")
    timed(Store, "_upsert_verdicts", "upsert", note_rows)
    timed(Store, "publish", "publish")
    timed(Store, "write", "write", note_write)
    original_write = Store.write

    def write_and_log(self: Any, batch: Any, timeline: Any) -> None:
        original_write(self, batch, timeline)
        log.write(json.dumps({"at": time.time(), **spent}) + "\n")
        log.flush()
        spent.clear()

    Store.write = write_and_log  # type: ignore[method-assign]


def summarize(paths: list[Path], step: int = 200_000) -> str:
    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines()]
    rows = [row for row in rows if row.get("events")]
    lines, chunk, done = [], [], 0

    def flush() -> None:
        events = sum(row["events"] for row in chunk)
        if not events:
            return

        def per_event(key: str) -> float:
            return sum(row.get(key, 0.0) for row in chunk) / events * 1e6

        sizes = sorted(row["events"] for row in chunk)
        upsert_ms = statistics.median(row.get("upsert_cpu", 0.0) for row in chunk) * 1e3
        median = sizes[len(sizes) // 2]
        lines.append(f"{done - events:>10,} +{events:<8,} {len(chunk):4d} batches (median {median:,}) | "
                     f"CPU us/event: process {per_event('process_cpu'):5.1f}, write {per_event('write_cpu'):5.1f} "
                     f"(upsert {per_event('upsert_cpu'):5.1f}), poll {per_event('poll_cpu'):4.1f}, publish "
                     f"{per_event('publish_cpu'):4.1f} | upsert {upsert_ms:5.1f} ms CPU per batch (median)")

    for row in rows:
        chunk.append(row)
        done += row["events"]
        if sum(r["events"] for r in chunk) >= step:
            flush()
            chunk = []
    flush()
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", type=Path, nargs="+")
    parser.add_argument("--step", type=int, default=200_000, help="events per line of the report")
    args = parser.parse_args(argv)
    print(summarize(args.paths, args.step))
    return 0


if __name__ == "__main__":
    sys.exit(main())
