"""Benchmark: end to end on the real broker, `jwtriage consume` against a bare kafka-python loop.

    python bench/bench_e2e.py [--events 100000] [--consumers 1,2] [--runs 2] [--quick]

Workload: --events auth-failure events, each carrying its own freshly signed RS256 token
(signed once in a process pool and cached under bench/.cache/), produced to fresh topics
(4 partitions, keyed by event_id) with the JWKS snapshot on the key topic. Then, per
consumer count, on the same topic and the same fetch settings:

  bare       N processes of a bare kafka-python group consumer: poll(max_poll_records=2000),
             touch each value, commit_async per poll, until the topic is read to the end.
  jwtriage   N processes running `pipeline.commands.consume.consume()` (what `jwtriage consume
             --exit-when-idle 1 --instance cK` runs) into a fresh store, each with its own
             --instance in one group: decode, classify, DuckDB, offsets, group commit, publish.

Both sides are timed from inside: from the first poll that returned records to the end of
the last batch (for jwtriage: its DuckDB commit and group commit), so imports, store
opening, the JWKS read and joining the group are start-up and not counted; N processes
start together (a file barrier) and the wall time runs from the first one's first record
to the last one's last batch. With two consumers the group rebalances once at start (the
broker's initial rebalance delay is 0); "steady" is the rate once both hold their final
partitions. The broker, both consumers and the OS share the 2 cores: see results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CONFIG_TOML, ROOT, Summary, header, load, load_note, signed_corpus

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # kafka-python 3.0 on Python 3.11
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.admin import NewTopic

BOOTSTRAP = os.environ.get("JWTRIAGE_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9092")
PARTITIONS = 4
MAX_POLL_RECORDS = 2_000
TARGET_PER_CONSUMER = 5_000
TARGET_TWO_OVER_ONE = 1.7


# -- the workers (run as child processes) ------------------------------------------------------


def _barrier(folder: Path, name: str) -> None:
    (folder / f"ready-{name}").touch()
    while not (folder / "go").exists():
        time.sleep(0.01)


def bare_worker(args: argparse.Namespace) -> None:
    """A bare kafka-python group consumer reading the topic to the end."""
    from pipeline.config import KafkaConfig
    from pipeline.io.kafka import fetch_options

    consumer = KafkaConsumer(
        bootstrap_servers=BOOTSTRAP.split(","),
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=MAX_POLL_RECORDS,
        **fetch_options(KafkaConfig()),  # the consumer's own fetch settings
    )
    consumer.subscribe([args.topic])
    folder = Path(args.folder)
    _barrier(folder, args.name)
    first = last = None
    count = size = 0
    while True:
        polled = consumer.poll(timeout_ms=500, max_records=MAX_POLL_RECORDS)
        if polled:
            now = time.time()
            first = first or now
            for messages in polled.values():
                count += len(messages)
                size += sum(len(m.value) for m in messages)
            consumer.commit_async()
            last = time.time()
            continue
        assigned = consumer.assignment()
        if first is not None and assigned:
            ends = consumer.end_offsets(list(assigned))
            if all(consumer.position(tp) >= end for tp, end in ends.items()):
                break
        if first is None and time.time() - os.path.getmtime(folder / "go") > 60:
            break  # nothing came: the other consumer read everything
    consumer.close(autocommit=False)
    _report(folder, args.name, {"first": first, "last": last, "events": count, "bytes": size})


def jwtriage_worker(args: argparse.Namespace) -> None:
    """`jwtriage consume --exit-when-idle 1 --instance NAME`, timed from inside."""
    import logging

    from pipeline.commands import consume as consume_module
    from pipeline.config import load_config
    from pipeline.records import RecordKind

    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    assignments: list[float] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "partitions assigned" in record.getMessage():
                assignments.append(time.time())

    logging.getLogger("pipeline").addHandler(Handler())
    logging.getLogger("pipeline").setLevel(logging.INFO)
    times: dict[str, float] = {}
    counts = {"events": 0}
    per_batch: list[tuple[float, int]] = []

    class TimedSource(consume_module.KafkaSource):
        def poll(self) -> list[Any]:
            # No local holds the unit: kafka-python keeps this frame alive (pipeline.io.base.handed_over).
            return self._timed(super().poll())

        def _timed(self, envelopes: list[Any]) -> list[Any]:
            if "first" not in times and any(e.kind is RecordKind.EVENT for e in envelopes):
                times["first"], times["first_cpu"] = time.time(), time.process_time()
            return envelopes

    def on_batch(batch: Any, source: Any) -> None:
        events = len(batch.judged)
        if events:
            counts["events"] += events
            times["last"] = time.time()
            times["last_cpu"] = time.process_time()
            per_batch.append((times["last"], events))

    consume_module.KafkaSource = TimedSource  # type: ignore[misc]
    config = load_config(Path(args.config), environ={})
    folder = Path(args.folder)
    _barrier(folder, args.name)
    idle = float(args.idle or 1.0)
    profile = os.environ.get("JWTRIAGE_BENCH_PROFILE")  # a folder: the consumer's cProfile lands there
    sampled = os.environ.get("JWTRIAGE_BENCH_SAMPLE")  # a folder: its main thread's sampled stacks land there
    if os.environ.get("JWTRIAGE_BENCH_BATCHES"):  # a folder: each batch's CPU by part lands there
        from batch_timing import install

        install(Path(os.environ["JWTRIAGE_BENCH_BATCHES"]))
    sampler = None
    if sampled:
        import threading

        from stack_sampler import StackSampler

        sampler = StackSampler(threading.get_ident(), period=0.01)
        sampler.start()
    if profile:
        import cProfile

        # JWTRIAGE_BENCH_PROFILE_CLOCK=thread: the main thread's CPU, not wall time (which counts its waits for the GIL)
        clock = time.thread_time if os.environ.get("JWTRIAGE_BENCH_PROFILE_CLOCK") == "thread" else None
        profiler = cProfile.Profile(clock) if clock is not None else cProfile.Profile()
        stats = profiler.runcall(consume_module.consume, config, instance=args.name, exit_when_idle=idle,
                                 on_batch=on_batch)
        profiler.dump_stats(str(Path(profile) / f"consume-{args.name}-{os.getpid()}.prof"))
    else:
        stats = consume_module.consume(config, instance=args.name, exit_when_idle=idle, on_batch=on_batch)
    if sampler is not None and sampled:
        sampler.stop()
        sampler.dump(Path(sampled) / f"stacks-{args.name}-{os.getpid()}.json")
    _report(folder, args.name, {
        "first": times.get("first"), "last": times.get("last"), "events": counts["events"],
        "batches": stats.batches, "assigned": assignments, "per_batch": per_batch,
        "cpu": times.get("last_cpu", 0.0) - times.get("first_cpu", 0.0),
        "rss_mb": _peak_rss_mb(),
    })


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not `ru_maxrss`: Linux carries that across exec from the
    forking parent, so a launcher that held a big corpus in memory would show up as the worker's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _report(folder: Path, name: str, result: dict[str, Any]) -> None:
    (folder / f"result-{name}.json").write_text(json.dumps(result))


# -- the launcher ------------------------------------------------------------------------------


@dataclass
class Topics:
    failures: str
    samples: str
    jwks: str


def make_topics(prefix: str) -> Topics:
    tag = uuid.uuid4().hex[:10]
    topics = Topics(f"{prefix}-failures-{tag}", f"{prefix}-samples-{tag}", f"{prefix}-jwks-{tag}")
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP.split(","))
    try:
        # No size retention on a bench topic (deleted after the run): the dev broker keeps 256 MB a
        # partition, and a burst's backlog outgrew it, so the broker deleted records before they were read.
        admin.create_topics([NewTopic(t, num_partitions=PARTITIONS, replication_factor=1,
                                      topic_configs={"retention.bytes": "-1"})
                             for t in (topics.failures, topics.samples, topics.jwks)])
    finally:
        admin.close()
    return topics


def delete_topics(topics: Topics) -> None:
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP.split(","))
    try:
        admin.delete_topics([topics.failures, topics.samples, topics.jwks])
    except Exception as exc:
        print(f"  (could not delete the bench topics: {exc})")
    finally:
        admin.close()


def produce_corpus(corpus: Any, topics: Topics) -> float:
    """Produce the JWKS snapshot and every event; returns events/s of producing (for the record)."""
    from pipeline.config import KafkaConfig
    from pipeline.io.kafka import produce

    kafka = KafkaConfig(bootstrap_servers=BOOTSTRAP)
    produce(kafka, [(topics.jwks, "bench", corpus.jwks.read_bytes().strip())])
    with corpus.events.open("rb") as f:
        lines = [line.rstrip(b"\n") for line in f]
    started = time.perf_counter()
    produce(kafka, ((topics.failures, json.loads(line)["event_id"], line) for line in lines))
    return len(lines) / (time.perf_counter() - started)


@dataclass
class Outcome:
    consumers: int
    events: int
    wall: float
    steady: float | None
    per_process: list[float]
    load: float
    rss_mb: float | None
    cpu_us: float | None  # CPU time of the consumer process(es) per event, first record to last batch

    @property
    def rate(self) -> float:
        return self.events / self.wall


def launch(
    kind: str,
    consumers: int,
    workdir: Path,
    topics: Topics,
    expected: int,
    config_toml: str = CONFIG_TOML,
    causes: dict[str, int] | None = None,
    results_out: list[dict[str, Any]] | None = None,
    idle: float = 1.0,
) -> Outcome:
    """Run `consumers` worker processes of `kind` together; their combined figures.

    The store must hold `causes` (cause → count; default: every event valid); each worker's
    raw result (its per-batch times included) is appended to `results_out` when given.
    """
    folder = workdir / f"{kind}-{consumers}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    group = f"bench-{kind}-{uuid.uuid4().hex[:10]}"
    config = folder / "jwtriage.toml"
    config.write_text(
        config_toml
        + f'\n[kafka]\nbootstrap_servers = "{BOOTSTRAP}"\ngroup_id = "{group}"\nfailures_topic = "{topics.failures}"\n'
        f'samples_topic = "{topics.samples}"\njwks_topic = "{topics.jwks}"\n'
        f'\n[store]\npath = "{folder / "store.duckdb"}"\n'
    )
    names = [f"c{n}" for n in range(consumers)]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, f"--{kind}-worker", "--name", name, "--folder", str(folder),
             "--group", group, "--topic", topics.failures, "--config", str(config), "--idle", str(idle)],
            cwd=ROOT,
        )
        for name in names
    ]
    deadline = time.monotonic() + 300
    while not all((folder / f"ready-{name}").exists() for name in names):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            for p in procs:
                p.kill()
            raise RuntimeError(f"a {kind} worker did not start")
        time.sleep(0.05)
    (folder / "go").touch()
    for p in procs:
        if p.wait(timeout=1800) != 0:
            raise RuntimeError(f"a {kind} worker failed with status {p.returncode}")
    results = [json.loads((folder / f"result-{name}.json").read_text()) for name in names]
    if results_out is not None:
        results_out.extend(results)
    busy = [r for r in results if r["first"] is not None]
    first = min(r["first"] for r in busy)
    last = max(r["last"] for r in busy)
    events = sum(r["events"] for r in results)
    if events < expected:
        raise RuntimeError(f"{kind}: read {events} of {expected} events")
    steady = None
    if kind == "jwtriage" and len(busy) > 1:
        settled = max(max(r["assigned"], default=r["first"]) for r in busy)
        done = sum(n for r in busy for t, n in r["per_batch"] if t > settled)
        steady = done / (last - settled) if last > settled else None
    if kind == "jwtriage":
        check_store(folder / "store.duckdb", expected, causes)
    rss = max((r.get("rss_mb") or 0 for r in results), default=0) or None
    cpu = sum(r.get("cpu", 0.0) for r in results) / events * 1e6 if kind == "jwtriage" else None
    return Outcome(consumers, events, last - first, steady,
                   [r["events"] / (r["last"] - r["first"]) for r in busy if r["last"] > r["first"]], load(), rss, cpu)


def check_store(db: Path, expected: int, causes: dict[str, int] | None = None) -> None:
    """The benchmark measures real work: every event is in the store, once, with its cause (default: valid)."""
    from pipeline.io.store_readers import connect_readonly

    con = connect_readonly(db)
    try:
        rows = dict(con.execute("SELECT cause, count(*) FROM classifications GROUP BY cause").fetchall())
    finally:
        con.close()
    wanted = causes if causes is not None else {"valid": expected}
    if rows != wanted:
        raise RuntimeError(f"the store holds {rows}, expected {wanted}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--consumers", default="1,2", help="consumer process counts to run, e.g. 1,2")
    parser.add_argument("--runs", type=int, default=2, help="runs of each case; the best is kept")
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument("--summary", type=Path, help="write the headline figures here as JSON (for run_all.py)")
    parser.add_argument("--keep", action="store_true", help="keep the topics and stores")
    for kind in ("bare", "jwtriage"):
        parser.add_argument(f"--{kind}-worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("name", "folder", "group", "topic", "config", "idle"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_worker:
        bare_worker(args)
        return 0
    if args.jwtriage_worker:
        jwtriage_worker(args)
        return 0

    events = 500 if args.quick else args.events
    runs = 1 if args.quick else max(2, args.runs)
    counts = [int(c) for c in args.consumers.split(",")]
    header(f"end to end on the broker at {BOOTSTRAP}: jwtriage consume vs a bare kafka-python loop")
    corpus = signed_corpus(events)
    topics = make_topics("bench-e2e")
    workdir = Path(tempfile.mkdtemp(prefix="jwtriage-e2e-"))
    best: dict[tuple[str, int], Outcome] = {}
    try:
        rate = produce_corpus(corpus, topics)
        print(f"produced {events:,} events (unique RS256 token each, ~{corpus.events.stat().st_size / events:.0f} B) "
              f"to {topics.failures} ({PARTITIONS} partitions) at {rate:,.0f}/s; {load_note()}", flush=True)
        for run in range(runs):
            for consumers in counts:
                for kind in ("bare", "jwtriage"):
                    outcome = launch(kind, consumers, workdir, topics, events)
                    steady = f", steady {outcome.steady:,.0f}/s" if outcome.steady else ""
                    per = ", ".join(f"{r:,.0f}" for r in outcome.per_process)
                    rss = f", peak RSS {outcome.rss_mb:.0f} MB" if outcome.rss_mb else ""
                    rss += f", {outcome.cpu_us:.0f} us CPU/event" if outcome.cpu_us else ""
                    print(f"  run {run + 1}: {kind:<8} x{consumers}: {outcome.rate:>8,.0f} events/s in "
                          f"{outcome.wall:5.2f} s (per process {per}{steady}{rss}); load {outcome.load:.2f}",
                          flush=True)
                    if (kind, consumers) not in best or outcome.rate > best[(kind, consumers)].rate:
                        best[(kind, consumers)] = outcome
    finally:
        if not args.keep:
            delete_topics(topics)
            shutil.rmtree(workdir, ignore_errors=True)

    summary = Summary("e2e", [])
    print(f"\nbest of {runs} ({events:,} events, unique RS256 token each):")
    print(f"{'consumers':<10} {'bare events/s':>14} {'jwtriage events/s':>18} {'per consumer':>13} {'ratio':>6} "
          f"{'load':>5}")
    for consumers in counts:
        bare, ours = best[("bare", consumers)], best[("jwtriage", consumers)]
        print(f"{consumers:<10} {bare.rate:>14,.0f} {ours.rate:>18,.0f} {ours.rate / consumers:>13,.0f} "
              f"{ours.rate / bare.rate:>5.2f}x {ours.load:>5.2f}")
        summary.add(f"e2e: {consumers} consumer(s) events/s", ours.rate, "events/s", baseline=bare.rate,
                    target=f">= {TARGET_PER_CONSUMER * consumers:,}/s",
                    met=ours.rate / consumers >= TARGET_PER_CONSUMER, load=ours.load)
    if 1 in counts and 2 in counts:
        one, two = best[("jwtriage", 1)], best[("jwtriage", 2)]
        scale = two.rate / one.rate
        bare_scale = best[("bare", 2)].rate / best[("bare", 1)].rate
        print(f"two consumers / one: jwtriage {scale:.2f}x (target >= {TARGET_TWO_OVER_ONE}x), "
              f"bare loop {bare_scale:.2f}x")
        summary.add("e2e: two consumers / one", scale, "x", baseline=None, target=f">= {TARGET_TWO_OVER_ONE}x",
                    met=scale >= TARGET_TWO_OVER_ONE, load=two.load)
    summary.write(args.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
