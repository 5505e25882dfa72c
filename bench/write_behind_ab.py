"""A/B of the consumer's write-behind on the outage backlog: events/s, CPU of the MAIN thread per event, same rows.

    python bench/write_behind_ab.py --rounds 3 --modes base,behind,sequential --base /tmp/main-copy

The outage stream (bench/outage.py) is produced once to kept topics (named in
`--work`/topics.json, reused by later launches); then, interleaved, one consumer per run
(`consume()` in a child process, a fresh group and store each) with the tree of its mode on
PYTHONPATH: `base` (another tree, e.g. `git archive` of main), `behind` (this tree, the
default) and `sequential` (this tree, `write_behind=False`). Between the first batch and the
last, `time.thread_time()` in `on_batch` (which runs on the main thread) gives the main
thread's CPU, `time.process_time()` the whole process's. The burst's drain is bound by the
main thread (bench/results.md), so that is the figure it needs. Every run prints an md5 of
every stored row (all columns but `classified_at`, the write's own time), ordered by event_id:
it must be the same in every mode. Delete the topics with `--delete` when done.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def worker(config_path: Path, out: Path, mode: str) -> None:
    from pipeline.commands import consume as consume_module
    from pipeline.config import load_config
    from pipeline.io.store_readers import connect_readonly

    times: dict[str, float] = {}
    counts = {"events": 0, "first_batch": 0}

    def on_batch(batch: Any, source: Any) -> None:
        assert threading.current_thread() is threading.main_thread()
        events = len(batch.judged)
        if not events:
            return
        if "first" not in times:
            times["first"], times["first_main"], times["first_cpu"] = (
                time.perf_counter(), time.thread_time(), time.process_time())
            counts["first_batch"] = events
        counts["events"] += events
        times["last"], times["last_main"], times["last_cpu"] = (
            time.perf_counter(), time.thread_time(), time.process_time())

    config = load_config(config_path, environ={})
    options: dict[str, Any] = {} if mode == "base" else {"write_behind": mode == "behind"}
    consume_module.consume(config, instance="c0", exit_when_idle=1.0, on_batch=on_batch, **options)
    events = counts["events"] - counts["first_batch"]  # the first batch's work came before its on_batch
    con = connect_readonly(config.store.path)
    try:
        columns = [c for (c,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'classifications' "
            "AND column_name <> 'classified_at' ORDER BY ordinal_position").fetchall()]
        rows = con.execute(f"SELECT {', '.join(columns)} FROM classifications ORDER BY event_id").fetchall()
    finally:
        con.close()
    out.write_text(json.dumps({
        "rows": len(rows), "md5": hashlib.md5(repr(rows).encode()).hexdigest(),
        "rate": events / (times["last"] - times["first"]),
        "main_us": (times["last_main"] - times["first_main"]) / events * 1e6,
        "cpu_us": (times["last_cpu"] - times["first_cpu"]) / events * 1e6,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="base,behind,sequential")
    parser.add_argument("--base", type=Path, help="the baseline tree (for mode `base`)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/write-behind-ab"))
    parser.add_argument("--delete", action="store_true", help="delete the kept topics and stop")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]), args.worker[2])
        return
    sys.path.insert(0, str(HERE))
    from bench_e2e import BOOTSTRAP, Topics, delete_topics, make_topics
    from bench_outage import _produce_stream
    from outage import outage_stream

    args.work.mkdir(parents=True, exist_ok=True)
    kept = args.work / "topics.json"
    if args.delete:
        if kept.exists():
            delete_topics(Topics(**json.loads(kept.read_text())))
            kept.unlink()
        return
    files = outage_stream(quiet=True)
    if kept.exists():
        topics = Topics(**json.loads(kept.read_text()))
    else:
        topics = make_topics("wb-outage")
        rate = _produce_stream(files, topics)
        kept.write_text(json.dumps(topics.__dict__))
        print(f"produced {files.count():,} events at {rate:,.0f}/s to {topics.failures}", flush=True)
    trees = {"base": str(args.base or ROOT), "behind": str(ROOT), "sequential": str(ROOT)}
    for round_no in range(1, args.rounds + 1):
        for mode in args.modes.split(","):
            folder = args.work / f"{mode}-{uuid.uuid4().hex[:6]}"
            folder.mkdir()
            config = folder / "jwtriage.toml"
            config.write_text(
                files.config.read_text()
                + f'\n[kafka]\nbootstrap_servers = "{BOOTSTRAP}"\ngroup_id = "wb-{folder.name}"\n'
                f'failures_topic = "{topics.failures}"\nsamples_topic = "{topics.samples}"\n'
                f'jwks_topic = "{topics.jwks}"\n\n[store]\npath = "{folder / "store.duckdb"}"\n')
            before = os.getloadavg()[0]
            subprocess.run([sys.executable, __file__, "--worker", str(config), str(folder / "out.json"), mode],
                           cwd=trees[mode], env={**os.environ, "PYTHONPATH": trees[mode]}, check=True)
            r = json.loads((folder / "out.json").read_text())
            print(f"round {round_no} {mode:<10} {r['rate']:>8,.0f} events/s  main thread {r['main_us']:5.1f} us/event  "
                  f"process {r['cpu_us']:5.1f} us/event  rows {r['rows']:,} md5 {r['md5'][:10]}  "
                  f"load {before:.2f}->{os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
