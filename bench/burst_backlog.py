"""The burst's records as a Kafka backlog, drained by one consumer that logs each batch's CPU by part.

    python bench/burst_backlog.py [--seconds 60] [--rate 35000] [--ts shifted|cycled] [--step 200000] [--keep DIR]

The burst (bench_outage.py --cases burst) takes 15 minutes and measures the drain only while the producer
and the broker share the machine. This is its drain alone, in ~6 minutes for 2.1M records: the burst's
own producer (bench/BurstProducer.java, unkeyed, event ids made unique, each cycle of the outage stream
dated one stream span later unless `--ts cycled`) fills a fresh topic, then `jwtriage consume` reads it
(bench_e2e's worker) with bench/batch_timing.py logging every batch: CPU per event of each part against
the rows stored so far. That showed the upsert's cost growing with the live table under Kafka's delivery
order, which the in-process replay (bench/burst_replay.py) does not reproduce (bench/results.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_note
from outage import outage_stream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds the producer sends for")
    parser.add_argument("--rate", type=float, default=35_000.0, help="records a second it sends")
    parser.add_argument("--ts", choices=("shifted", "cycled"), default="shifted")
    parser.add_argument("--step", type=int, default=200_000, help="events per line of the report")
    parser.add_argument("--keep", type=Path, help="copy the per-batch logs here (bench/batch_timing.py reads them)")
    args = parser.parse_args(argv)

    from batch_timing import summarize
    from bench_e2e import delete_topics, launch, make_topics
    from bench_outage import _produce_stream
    from burst_load import cycle_shift, start_load

    files = outage_stream()
    topics = make_topics("bench-backlog")
    workdir = Path(tempfile.mkdtemp(prefix="jwtriage-backlog-"))
    batches = workdir / "batches"
    batches.mkdir()
    results: list[dict[str, Any]] = []
    try:
        _produce_stream(files, topics, count=0)  # the snapshots
        shift = cycle_shift(files.events) if args.ts == "shifted" else 0.0
        load = start_load("java", files.events, topics.failures, [(args.seconds, args.rate)], ts_shift=shift)
        load.done.wait()
        load.join()
        print(f"produced {load.sent[-1][1]:,} records ({args.ts} ts), {load.acked[-1][1]:,} acknowledged; "
              f"{load_note()}", flush=True)
        os.environ["JWTRIAGE_BENCH_BATCHES"] = str(batches)
        try:
            launch("jwtriage", 1, workdir, topics, 0, config_toml=files.config.read_text(), causes=None,
                   results_out=results, idle=5.0)
        except RuntimeError as exc:
            if "the store holds" not in str(exc):  # the causes of a cycled stream are not checked here
                raise
        finally:
            del os.environ["JWTRIAGE_BENCH_BATCHES"]
        done = results[0]
        print(f"drained {done['events']:,} events in {done['last'] - done['first']:.1f} s, "
              f"{done['cpu'] / max(1, done['events']) * 1e6:.1f} us CPU/event; {load_note()}")
        print(summarize(sorted(batches.glob("batches-*.jsonl")), args.step, whole=True))
        if args.keep is not None:
            shutil.copytree(batches, args.keep, dirs_exist_ok=True)
    finally:
        delete_topics(topics)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
