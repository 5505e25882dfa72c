"""The burst's consumer in process: `consume()` itself, fed from memory instead of Kafka.

    python bench/burst_replay.py [--events 5400000] [--ts cycled|shifted] [--batch 5000] [--every 1000000]
                                 [--drift RECORDS] [--order FILE] [--batches DIR] [--profile FILE]

Why: the 120 s burst (bench_outage.py --cases burst) costs the consumer ~80 µs of CPU per event
where draining the outage backlog alone costs ~50. A burst run takes 15 minutes and shares the
machine with the broker and the producer; this runs the consumer's own code (`commands.consume`:
the loop, the store, publishing and maintenance) on the same records, with no broker, and says
where the CPU goes for each million events.

The records are the burst producer's: the outage stream's lines cycled, each event id made
unique as bench/BurstProducer.java does. `--ts cycled` keeps each line's `ts` (what the burst
sends: every cycle dates its events in the same 12 minutes); `--ts shifted` moves each cycle
`--shift` seconds later, as a real stream's time goes on (its tokens then expire: the verdicts
differ from the cycled run's, and are printed).

`--drift N` delivers the records as a Kafka consumer of an unkeyed topic did (bench/results.md): half
the partitions N records behind the other half, each batch half from each. Without it the batches
are the stream in order, and each batch's upsert finds the rows it might replace in a few row groups.
`--order FILE` delivers the very batches a Kafka consumer was given (bench/batch_timing.py's log).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from outage import outage_stream

_TS = re.compile(rb'"ts":"([^"]+)"')
_ID = b'"event_id":"o'
_TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process, by thread name (`/proc/self/task/*/stat`)."""
    out: dict[str, float] = defaultdict(float)
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[name] += (int(fields[11]) + int(fields[12])) / _TICKS
    return dict(out)


def records(lines: list[bytes], total: int, mode: str, shift: float) -> Iterator[bytes]:
    """The burst producer's records: the stream cycled, ids made unique, `ts` kept or moved per cycle."""
    for sent in range(total):
        cycle, line = divmod(sent, len(lines))
        value = lines[line].replace(_ID, b'"event_id":"b%d-' % sent, 1)
        if mode == "shifted" and cycle:
            match = _TS.search(value)
            assert match is not None
            when = datetime.fromisoformat(match.group(1).decode()) + timedelta(seconds=cycle * shift)
            stamp = when.astimezone(UTC).isoformat().replace("+00:00", "Z").encode()
            value = value[: match.start(1)] + stamp + value[match.end(1) :]
        yield value


def sticky(values: Iterable[bytes], partitions: int) -> Iterator[tuple[int, bytes]]:
    """Each record with the partition the producer's sticky batches give it, unkeyed: 250 to one, then the next."""
    for n, value in enumerate(values):
        yield n // 250 % partitions, value


class Timers:
    """CPU seconds (`time.process_time`) spent inside wrapped methods, innermost call counted once."""

    def __init__(self) -> None:
        self.spent: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def wrap(self, owner: Any, name: str, label: str | None = None) -> None:
        original = getattr(owner, name)
        label = label or f"{owner.__name__}.{name}"
        spent, calls = self.spent, self.calls

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += time.process_time() - started
                calls[label] += 1

        setattr(owner, name, timed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_400_000)
    parser.add_argument("--ts", choices=("cycled", "shifted"), default="cycled")
    parser.add_argument("--shift", type=float, default=720.0, help="seconds each cycle moves with --ts shifted")
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--every", type=int, default=1_000_000, help="report every this many events")
    parser.add_argument("--drift", type=int, default=0, help="records the lagging half of the partitions is behind")
    parser.add_argument("--order", type=Path, help="deliver the batches a Kafka consumer got, as logged by "
                        "bench/batch_timing.py with JWTRIAGE_BENCH_ORDER=1 (order-*.txt: a line per batch of "
                        "partition:n); --ts cycled only")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the consumer (main thread CPU) here")
    parser.add_argument("--keep", type=Path, help="the store's folder (kept); default a temporary one, removed")
    parser.add_argument("--batches", type=Path, help="also log each batch's CPU by part here (bench/batch_timing.py) "
                        "and report it per --step events at the end, as bench/burst_backlog.py does for Kafka")
    parser.add_argument("--step", type=int, default=200_000, help="events per line of the --batches report")
    args = parser.parse_args(argv)

    from pipeline.commands import consume as consume_module
    from pipeline.config import load_config
    from pipeline.io import store as store_module
    from pipeline.io import store_publish
    from pipeline.records import Envelope, Position, RecordKind
    from pipeline.runner import Pipeline

    files = outage_stream()
    lines = files.events.read_bytes().splitlines()
    snapshots = files.jwks.read_bytes().splitlines()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="jwtriage-replay-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = load_config(files.config, environ={"JWTRIAGE_DB": str(workdir / "store.duckdb"),
                                                "JWTRIAGE_HASH_KEY": "00" * 32})
    timers = Timers()
    timers.wrap(Pipeline, "process")
    timers.wrap(store_module.Store, "write")
    timers.wrap(store_module.Store, "_upsert_verdicts")
    timers.wrap(store_module.Store, "publish")
    for name in ("_append", "_compact_recent", "_maintain", "_settle", "_roll_open", "_roll", "_prune_live",
                 "_write_state", "_merge_rolled_days"):
        timers.wrap(store_publish.Publisher, name)
    if args.batches is not None:
        from batch_timing import install

        args.batches.mkdir(parents=True, exist_ok=True)
        install(args.batches)
    gc_time: Counter[int] = Counter()
    gc_started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started.append(time.process_time())
        elif gc_started:
            gc_time[info["generation"]] += time.process_time() - gc_started.pop()

    gc.callbacks.append(on_gc)
    total, batch_size = args.events, args.batch
    partitions = 4

    class MemorySource:
        """What `consume()` asks of a KafkaSource, from memory: snapshots at start-up, then the events."""

        def __init__(self, *_: Any, **__: Any) -> None:
            self.done = 0

        def read_jwks_to_end(self) -> list[Envelope]:
            return [Envelope(RecordKind.SNAPSHOT, line, Position("auth.jwks", 0, n))
                    for n, line in enumerate(snapshots)]

        def replay_samples(self) -> list[Envelope]:
            return []

        def fetch(self, positions: Any, max_bytes: int) -> dict[Position, bytes]:
            return {}

        def batches(self) -> Iterator[list[Envelope]]:
            if args.order is not None:
                yield from self.logged(args.order)
                return
            sent = sticky(records(lines, total, args.ts, args.shift), partitions)
            lead: list[tuple[int, bytes]] = []  # records of the leading partitions (0, 1) not yet read
            lag: list[tuple[int, bytes]] = []  # of the lagging ones (2, 3)
            offsets = [0] * partitions
            produced = 0
            while self.done < total:
                while produced < total and len(lead) < args.drift + batch_size:
                    partition, value = next(sent)
                    (lead if partition < partitions // 2 else lag).append((partition, value))
                    produced += 1
                lag_share = batch_size // 2 if len(lag) > args.drift or produced >= total else 0
                taken = lag[:lag_share] + lead[: batch_size - lag_share]
                del lag[:lag_share]
                del lead[: batch_size - lag_share]
                if not taken:
                    taken, lag = lag[:batch_size], lag[batch_size:]
                batch = []
                for partition, value in taken:
                    batch.append(Envelope(RecordKind.EVENT, value, Position("auth.failures", partition,
                                                                            offsets[partition])))
                    offsets[partition] += 1
                self.done += len(batch)
                yield batch

        def logged(self, path: Path) -> Iterator[list[Envelope]]:
            """The batches a Kafka consumer of the burst's records was given, each record rebuilt from its `n`."""
            offsets: Counter[int] = Counter()
            for text in path.read_text().splitlines():
                batch = []
                for item in text.split():
                    partition, n = map(int, item.split(":"))
                    value = lines[n % len(lines)].replace(_ID, b'"event_id":"b%d-' % n, 1)
                    batch.append(Envelope(RecordKind.EVENT, value, Position("auth.failures", partition,
                                                                            offsets[partition])))
                    offsets[partition] += 1
                if batch:
                    self.done += len(batch)
                    yield batch
            self.done = total

        def commit(self, positions: Any) -> None:
            pass

        def lag(self) -> dict[tuple[str, int], int]:
            return {("auth.failures", 0): total - self.done}

        def take_holes(self) -> list[Any]:
            return []

        def check_gaps(self) -> None:
            pass

        def caught_up(self) -> bool:
            return self.done >= total

        def close(self) -> None:
            pass

    consume_module.KafkaSource = MemorySource  # type: ignore[misc,assignment]
    marks: list[tuple[int, float, float, dict[str, float], Counter[str], Counter[int]]] = []
    causes: Counter[str] = Counter()
    seen = [0]

    def mark() -> None:
        marks.append((seen[0], time.perf_counter(), time.process_time(), thread_cpu(), Counter(timers.spent),
                      Counter(gc_time)))

    def on_batch(batch: Any, source: Any) -> None:
        seen[0] += len(batch.judged)
        for judged in batch.judged:
            causes[judged.verdict.classification.cause] += 1
        if seen[0] // args.every != (seen[0] - len(batch.judged)) // args.every:
            mark()
            report(marks[-2], marks[-1])

    def report(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
        events = b[0] - a[0]
        per = 1e6 / events
        threads = {k: b[3].get(k, 0.0) - a[3].get(k, 0.0) for k in b[3]}
        parts = {k: (b[4][k] - a[4][k]) * per for k in b[4]}
        gcs = {k: (b[5][k] - a[5][k]) * per for k in (0, 1, 2)}
        print(f"events {a[0]:>9,}-{b[0]:<9,}: {(b[2] - a[2]) * per:5.1f} us CPU/event, "
              f"{(b[1] - a[1]) * per:5.1f} us wall"
              f" | threads " + ", ".join(f"{k} {v * per:.1f}" for k, v in sorted(threads.items()) if v > 0.005)
              + " | " + ", ".join(f"{k.split('.')[-1]} {v:.1f}" for k, v in sorted(parts.items()) if v > 0.05)
              + " | gc " + "/".join(f"{v:.1f}" for v in gcs.values()), flush=True)

    print(f"replaying {total:,} events ({args.ts} ts) in batches of {batch_size:,} into {workdir}; "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    mark()
    started = time.perf_counter(), time.process_time()
    if args.profile is not None:  # the main thread's CPU by function, as bench_e2e's worker with PROFILE_CLOCK=thread
        import cProfile

        profiler = cProfile.Profile(time.thread_time)
        stats = profiler.runcall(consume_module.consume, config, instance="c0", exit_when_idle=1.0,
                                 batch_size=batch_size, on_batch=on_batch)
        profiler.dump_stats(str(args.profile))
    else:
        stats = consume_module.consume(config, instance="c0", exit_when_idle=1.0, batch_size=batch_size,
                                       on_batch=on_batch)
    mark()
    if marks[-1][0] != marks[-2][0]:
        report(marks[-2], marks[-1])
    wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
    print(f"total: {stats.events:,} events in {wall:.1f} s, {cpu / max(1, stats.events) * 1e6:.1f} us CPU/event; "
          f"calls {dict(timers.calls)}; load {os.getloadavg()[0]:.1f}")
    print("causes: " + ", ".join(f"{k} {v:,}" for k, v in causes.most_common()))
    if args.batches is not None:
        from batch_timing import summarize

        print(summarize(sorted(args.batches.glob(f"batches-{os.getpid()}.jsonl")), args.step))
    if args.keep is None:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
