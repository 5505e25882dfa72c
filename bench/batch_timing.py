"""Per-batch CPU of a bench consumer's parts, logged as it runs (JWTRIAGE_BENCH_BATCHES=DIR in bench_e2e's worker).

    python bench/batch_timing.py DIR/batches-*.jsonl [--step 200000]     # CPU per event by part, per step

Each batch the consumer stores adds one JSON line: its events, the CPU (`time.process_time`) and wall seconds
of `KafkaSource.poll`, `Pipeline.process`, `Store.write` and, inside it, the Arrow build
(`classification_table`) and `Store._upsert_verdicts` (of it the Bloom filter's `StoredIds` work and
rebuilds), of the group commit and the lag measurement, and of any `Store.publish` since the batch before
(of it the appends, the compactions, the maintenance passes, settles and state files), with the batch's `ts`
range, each partition's offsets, the cyclic GC's CPU by generation (inside whichever part ran it), and the
process's and the main thread's CPU since the line before (`loop`, `main`: what no part names is their
difference from the parts). Why: the burst's consumer spent more CPU per event than the backlog's, and only
the Kafka delivery order showed some of it (bench/results.md); stack samples give shares of wall time, this
gives each part's CPU against rows stored. Each part is also logged by the main thread's CPU (`--thread`):
the process's clock counts kafka-python's IO threads in whichever part the main thread was running. With
the reuse counters' moves per batch and, with JWTRIAGE_BENCH_ORDER=1, each batch's records as
`partition:n` (`order-<pid>.txt`, which `burst_replay.py --order` delivers again in process); with
JWTRIAGE_BENCH_THREADS=1, every thread's CPU so far (kafka-python's IO threads apart, by thread id).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The parts a report line shows, in order: (label, key), each as CPU µs per event.
PARTS = (("process", "process_cpu"), ("write", "write_cpu"), ("table", "table_cpu"), ("upsert", "upsert_cpu"),
         ("filter", "filter_cpu"), ("hash", "hash_cpu"), ("rebuild", "rebuild_cpu"), ("poll", "poll_cpu"),
         ("commit", "commit_cpu"), ("lag", "lag_cpu"), ("publish", "publish_cpu"), ("append", "append_cpu"),
         ("compact", "compact_cpu"), ("maintain", "maintain_cpu"), ("settle", "settle_cpu"), ("state", "state_cpu"),
         ("gc0", "gc0_cpu"), ("gc1", "gc1_cpu"), ("gc2", "gc2_cpu"))
#: Parts that lie inside another one (not added again for the unnamed rest).
_NESTED = {"table_cpu", "upsert_cpu", "filter_cpu", "hash_cpu", "rebuild_cpu", "append_cpu", "compact_cpu",
           "maintain_cpu", "settle_cpu", "state_cpu", "gc0_cpu", "gc1_cpu", "gc2_cpu"}


def install(folder: Path) -> None:
    """Wrap the consumer's parts; each stored batch appends a line to `folder/batches-<pid>.jsonl`."""
    import pyarrow.compute as pc

    from pipeline.io import store as store_module
    from pipeline.io.kafka import KafkaSource
    from pipeline.io.live_verdicts import StoredIds
    from pipeline.io.store import Store
    from pipeline.io.store_publish import Publisher
    from pipeline.records import RecordKind
    from pipeline.runner import Pipeline

    log = (folder / f"batches-{os.getpid()}.jsonl").open("w")
    spent: dict[str, Any] = {}
    collecting: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        """The cyclic GC's CPU, wherever it ran (inside the parts): `gc<generation>_cpu`."""
        if phase == "start":
            collecting.append(time.process_time())
        elif collecting:
            key = f"gc{info['generation']}_cpu"
            spent[key] = spent.get(key, 0.0) + time.process_time() - collecting.pop()

    gc.callbacks.append(on_gc)
    last = {"loop": time.process_time(), "main": time.thread_time()}

    def timing(original: Callable[..., Any], key: str, note: Callable[..., None] | None = None) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if note is not None:
                note(*args)
            wall, cpu, thread = time.perf_counter(), time.process_time(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - wall
                spent[key + "_cpu"] = spent.get(key + "_cpu", 0.0) + time.process_time() - cpu
                spent[key + "_thread"] = spent.get(key + "_thread", 0.0) + time.thread_time() - thread

        return wrapper

    def timed(owner: Any, name: str, key: str, note: Callable[..., None] | None = None) -> None:
        setattr(owner, name, timing(getattr(owner, name), key, note))

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

    order = (folder / f"order-{os.getpid()}.txt").open("w") if os.environ.get("JWTRIAGE_BENCH_ORDER") else None
    original_process = Pipeline.process

    def process_counted(self: Any, envelopes: Any) -> Any:
        """`process` with the reuse counters' moves and the batch's partitions (and its records' order)."""
        envelopes = list(envelopes)
        classifier = self.classifier
        reuse, spans = classifier.reuse, classifier.spans
        before = (reuse.hits, reuse.misses, spans.hits) if reuse is not None and spans is not None else (0, 0, 0)
        try:
            return original_process(self, envelopes)
        finally:
            if reuse is not None and spans is not None:
                for key, was, now in zip(("reuse_hits", "reuse_misses", "span_hits"), before,
                                         (reuse.hits, reuse.misses, spans.hits), strict=True):
                    spent[key] = spent.get(key, 0) + now - was
            spent["partitions"] = len({e.position.partition for e in envelopes if e.kind is RecordKind.EVENT})
            if order is not None:  # each event's partition and its producer's sequence number (`b<n>-`)
                order.write(" ".join(f"{e.position.partition}:{e.value[14:e.value.index(b'-', 14)].decode()}"
                                     for e in envelopes if e.kind is RecordKind.EVENT) + "\n")
                order.flush()

    Pipeline.process = process_counted  # type: ignore[method-assign]
    timed(KafkaSource, "poll", "poll")
    timed(KafkaSource, "commit", "commit")
    timed(KafkaSource, "lag", "lag")
    timed(Pipeline, "process", "process")
    timed(store_module, "classification_table", "table")
    timed(Store, "_upsert_verdicts", "upsert", note_rows)
    timed(StoredIds, "may_hold", "filter")
    timed(StoredIds, "add", "filter")  # a rebuild happens inside `add`: counted here and as `rebuild`
    timed(StoredIds, "rebuild", "rebuild")
    if hasattr(StoredIds, "hashes"):  # the ids' hashes, asked of DuckDB once a batch (and by a rebuild)
        timed(StoredIds, "hashes", "hash")
    timed(Store, "publish", "publish")
    timed(Publisher, "_append", "append")
    timed(Publisher, "_compact_recent", "compact")
    timed(Publisher, "_maintain_or_wait", "maintain")
    timed(Publisher, "_settle", "settle")
    timed(Publisher, "_write_state", "state")
    timed(Store, "write", "write", note_write)
    original_write = Store.write

    def write_and_log(self: Any, batch: Any, timeline: Any) -> None:
        original_write(self, batch, timeline)
        loop, main = time.process_time(), time.thread_time()
        spent.update(loop_cpu=loop - last["loop"], main_cpu=main - last["main"])
        if os.environ.get("JWTRIAGE_BENCH_THREADS"):  # every thread's CPU so far, by thread id (creation order)
            spent["threads"] = _threads_cpu()
        last.update(loop=loop, main=main)
        log.write(json.dumps({"at": time.time(), **spent}) + "\n")
        log.flush()
        spent.clear()

    Store.write = write_and_log  # type: ignore[method-assign]


def _threads_cpu() -> dict[str, float]:
    """CPU seconds of each thread of this process so far: `tid name` → seconds (/proc/self/task)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[f"{task.name} {stat[stat.index('(') + 1 : stat.rindex(')')]}"] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def summarize(paths: list[Path], step: int = 200_000, whole: bool = False, thread: bool = False) -> str:
    """One line per `step` events: CPU µs per event of each part; a batch without events adds to the next.

    `whole`: a last line for all of it (its first batch, holding the start-up's CPU, left out). `thread`:
    each part by the main thread's CPU, not the process's (which counts kafka-python's IO threads'
    CPU in whichever part the main thread was running meanwhile).
    """
    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines()]
    lines: list[str] = []
    chunk: list[dict[str, Any]] = []
    done = 0

    def flush(label: str | None = None) -> None:
        events = sum(row.get("events", 0) for row in chunk)
        if not events:
            return

        def per_event(key: str) -> float:
            if thread and key.endswith("_cpu") and any(key[:-4] + "_thread" in row for row in chunk):
                key = key[:-4] + "_thread"
            return sum(row.get(key, 0.0) for row in chunk) / events * 1e6

        counted = [row for row in chunk if row.get("events")]
        sizes = sorted(row["events"] for row in counted)
        upsert_ms = statistics.median(row.get("upsert_cpu", 0.0) for row in counted) * 1e3
        median = sizes[len(sizes) // 2]
        parts = ", ".join(f"{label} {per_event(key):5.1f}" for label, key in PARTS
                          if label in ("process", "write", "upsert", "poll", "publish") or per_event(key) >= 0.05)
        where = f"{label:>10}" if label else f"{done - events:>10,}"
        line = (f"{where} +{events:<8,} {len(counted):4d} batches (median {median:,}) | "
                f"CPU us/event: {parts} | upsert {upsert_ms:5.1f} ms CPU per batch (median)")
        if any("reuse_hits" in row for row in chunk):
            total = {key: sum(row.get(key, 0) for row in chunk) for key in ("reuse_hits", "reuse_misses", "span_hits")}
            parts_seen = statistics.median(row.get("partitions", 0) for row in counted)
            line += (f" | per event: judgement hits {total['reuse_hits'] / events:.3f}, misses "
                     f"{total['reuse_misses'] / events:.3f}, span hits {total['span_hits'] / events:.3f}; "
                     f"partitions per batch {parts_seen:g} (median)")
        if any("loop_cpu" in row for row in chunk):
            named = sum(per_event(key) for _, key in PARTS if key not in _NESTED)
            line += (f" | all {per_event('loop_cpu'):5.1f} (main thread {per_event('main_cpu'):5.1f}), "
                     f"unnamed {per_event('main_cpu' if thread else 'loop_cpu') - named:4.1f}")
        lines.append(line)

    for row in rows:
        chunk.append(row)
        done += row.get("events", 0)
        if sum(r.get("events", 0) for r in chunk) >= step:
            flush()
            chunk = []
    flush()
    if whole and len(rows) > 1:
        chunk = rows[1:]
        flush("whole run")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", type=Path, nargs="+")
    parser.add_argument("--step", type=int, default=200_000, help="events per line of the report")
    parser.add_argument("--whole", action="store_true", help="and a line for the whole run (but its first batch)")
    parser.add_argument("--thread", action="store_true", help="parts by the main thread's CPU (not the process's)")
    args = parser.parse_args(argv)
    print(summarize(args.paths, args.step, args.whole, args.thread))
    return 0


if __name__ == "__main__":
    sys.exit(main())
