"""Benchmark: the outage stream, where every request of some services fails and users retry the same token.

    python bench/bench_outage.py [--users 3000] [--minutes 8] [--runs 2] [--burst 120] [--quick] [--no-broker]
                                 [--cases classify,broker,burst,parts] [--capacity EVENTS_PER_S]
                                 [--producer java|python] [--keyed] [--producer-cpus 1] [--ts shifted|cycled]

The stream (bench/outage.py): a steady baseline of ordinary failures, then a key rotation
that breaks three services' JWKS caches so all their traffic fails for `--minutes`
(`--users` distinct users, each retrying its token every few seconds until it expires, `ts`
increasing), then recovery. Three measurements, each beside its baseline from the same run:

  parts      (only when asked: `--cases parts`) CPU per event of `Pipeline.process`, the Arrow build and
             the JSON lines, `time.process_time`, reuse on: what a per-event change moves.
  classify   `jwtriage classify`'s path in process (JSONL in, JSON lines out, start-up excluded),
             with judgement reuse on and off, against bare PyJWT `jwt.decode` of the same events
             (prepared keys, kid lookup, a failure caught): target >= 10x. The two verdict streams
             must be byte-identical (their md5 is printed).
  broker     the whole stream produced to fresh topics up front (a backlog: far above one
             consumer's capacity), then one `jwtriage consume` against a bare kafka-python loop
             (bench/bench_e2e.py's workers): sustained events/s, the lag curve, time to drain,
             CPU per event, peak RSS. Target >= 15,000/s and >= 0.3x the bare loop.
  burst      a paced producer: the steady rate (the broker case's rate / 6, or `--capacity` / 6),
             then 10x it for `--burst` seconds, then steady again, with one consumer running
             throughout; the lag (produced - stored) is sampled every second from the store's
             offsets: does it drain within the burst's length after? The producer (bench/burst_load.py)
             is its own JVM by default, so that it takes little of the consumer's 2 cores;
             `--producer python` is the original kafka-python thread of this process. The CPU each
             process took in each phase is printed (bench/cpu_share.py), and every record sent must
             be acknowledged and stored exactly once. The stream is cycled (the burst needs ~20 times
             its events); each cycle is dated one stream span later (`--ts shifted`, the default), as a
             real outage's time moves on; `--ts cycled` repeats the stream's own minutes every cycle,
             which made each batch's upsert scan every earlier cycle's rows (bench/results.md).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import io
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Summary, header, load, load_note
from outage import ISSUER, OutageFiles, outage_stream

TARGET_CLASSIFY = 10.0
TARGET_CONSUMER = 15_000
TARGET_BARE_RATIO = 0.3


# -- classify, in process ----------------------------------------------------------------------


def _lines(files: OutageFiles) -> list[dict[str, Any]]:
    with files.events.open("rb") as f:
        return [json.loads(line) for line in f]


def bare_decode(files: OutageFiles, events: list[dict[str, Any]]) -> float:
    """Seconds for PyJWT to decode every event's token (prepared keys by kid; a failure caught, as a validator does)."""
    import jwt
    from jwt.algorithms import RSAAlgorithm

    keys: dict[str, Any] = {}
    for line in files.jwks.read_text().splitlines():
        for jwk in json.loads(line)["jwks"]["keys"]:
            keys[jwk["kid"]] = RSAAlgorithm.from_jwk(jwk)
    started = time.perf_counter()
    for event in events:
        token = event["token"]
        try:
            key = keys[jwt.get_unverified_header(token)["kid"]]
            jwt.decode(token, key, algorithms=["RS256"], audience=f"api://{event['service']}", issuer=ISSUER, leeway=30)
        except jwt.PyJWTError:
            pass
    return time.perf_counter() - started


def jwtriage_classify(files: OutageFiles, reuse: bool) -> tuple[float, str, dict[str, int]]:
    """Seconds for the classify path (JSONL in, JSON lines out; the JWKS read untimed), its output's md5, the causes."""
    from pipeline.config import ClassifyConfig, Config
    from pipeline.io.files import FileSource, JsonlVerdictSink
    from pipeline.records import RecordKind
    from pipeline.runner import Pipeline, streaming_gc

    config = Config.model_validate(tomllib.loads(files.config.read_text()))
    config = config.model_copy(update={"classify": ClassifyConfig(reuse_judgements=reuse)})
    source = FileSource(files.events, snapshots=files.jwks)
    known = inspect.signature(Pipeline).parameters  # as cmd_classify builds it (an older tree: what it knows)
    pipeline = Pipeline(config, snapshots_first=source.snapshots_first,
                        **({"reused_lines": True} if "reused_lines" in known else {}))
    out, errors = io.StringIO(), io.StringIO()
    sink = JsonlVerdictSink(out, errors)
    elapsed = 0.0
    with streaming_gc():  # as cmd_classify does
        for envelopes in source.batches():
            timed = any(envelope.kind is RecordKind.EVENT for envelope in envelopes)
            started = time.perf_counter()
            sink.write(pipeline.process(envelopes), pipeline.timeline)
            elapsed += (time.perf_counter() - started) if timed else 0.0
    text = out.getvalue()
    causes: dict[str, int] = {}
    for line in text.splitlines():
        cause = json.loads(line)["cause"]
        causes[cause] = causes.get(cause, 0) + 1
    return elapsed, hashlib.md5(text.encode()).hexdigest(), causes


def classify_case(files: OutageFiles, runs: int, summary: Summary) -> None:
    events = _lines(files)
    n = len(events)
    bare = on = off = float("inf")
    digests: set[str] = set()
    causes: dict[str, int] = {}
    for _ in range(runs):  # interleaved, so a change in the machine's load hits every side alike
        bare = min(bare, bare_decode(files, events))
        seconds, digest, causes = jwtriage_classify(files, reuse=True)
        on, digests = min(on, seconds), digests | {digest}
        seconds, digest, _ = jwtriage_classify(files, reuse=False)
        off, digests = min(off, seconds), digests | {digest}
    at = load()
    print(f"causes: {json.dumps(dict(sorted(causes.items(), key=lambda kv: -kv[1])))}")
    print(f"classify {n:,} outage events | bare jwt.decode {n / bare:>8,.0f}/s ({bare / n * 1e6:5.1f} us) | "
          f"jwtriage reuse on {n / on:>8,.0f}/s ({on / n * 1e6:5.1f} us, {bare / on:4.2f}x) | "
          f"reuse off {n / off:>8,.0f}/s ({off / n * 1e6:5.1f} us, {bare / off:4.2f}x) | load {at:.2f}", flush=True)
    same = len(digests) == 1
    print(f"verdicts with and without reuse: {'byte-identical' if same else 'DIFFERENT'} (md5 {', '.join(digests)})")
    if not same:
        raise SystemExit("reuse changed a verdict")
    summary.add("outage: classify, reuse on", n / on, "events/s", baseline=n / bare, target=f">= {TARGET_CLASSIFY:g}x",
                met=bare / on >= TARGET_CLASSIFY, load=at)
    summary.add("outage: classify, reuse off", n / off, "events/s", baseline=n / bare, load=at)


def parts_case(files: OutageFiles, runs: int) -> None:
    """CPU per event (`time.process_time`) of each part of the per-event path, reuse on, best of `runs`.

    `Pipeline.process` (decode, join, classify, hold), the store's Arrow build
    (`classification_table`) and `classify`'s JSON lines (`JsonlVerdictSink.write`), each
    batch through all three in turn, as `classify` (the first and last) and a consumer (the
    first two) run them. Run it with PYTHONPATH=<another tree>, interleaved, for its baseline.
    """
    from datetime import UTC, datetime

    from pipeline.config import Config
    from pipeline.io.files import FileSource, JsonlVerdictSink
    from pipeline.io.store import classification_table
    from pipeline.records import RecordKind
    from pipeline.runner import Pipeline, streaming_gc

    best: dict[str, float] = {}
    for _ in range(runs):
        pipeline = Pipeline(Config.model_validate(tomllib.loads(files.config.read_text())))
        sink = JsonlVerdictSink(io.StringIO(), io.StringIO())
        now = datetime.now(UTC)
        spent = dict.fromkeys(("process", "arrow", "lines"), 0.0)
        events = 0
        with streaming_gc():
            for envelopes in FileSource(files.events, snapshots=files.jwks).batches():
                started = time.process_time()
                batch = pipeline.process(envelopes)
                processed = time.process_time()
                classification_table(batch.judged, now)
                built = time.process_time()
                sink.write(batch, pipeline.timeline)
                if any(envelope.kind is RecordKind.EVENT for envelope in envelopes):
                    events += sum(1 for envelope in envelopes if envelope.kind is RecordKind.EVENT)
                    spent["process"] += processed - started
                    spent["arrow"] += built - processed
                    spent["lines"] += time.process_time() - built
        spent["all"] = sum(spent.values())
        for part, seconds in spent.items():
            best[part] = min(best.get(part, float("inf")), seconds / events * 1e6)
    print(f"CPU per event, best of {runs}: " + " | ".join(f"{part} {us:.2f} us" for part, us in best.items())
          + f" | load {load():.2f}", flush=True)


# -- on the broker ----------------------------------------------------------------------------


def _expected_causes(files: OutageFiles) -> dict[str, int]:
    _, _, causes = jwtriage_classify(files, reuse=True)
    return causes


def _produce_stream(files: OutageFiles, topics: Any, count: int | None = None) -> float:
    """Every snapshot, then every event (or the first `count`), as fast as the producer goes; returns events/s."""
    from bench_e2e import BOOTSTRAP

    from pipeline.config import KafkaConfig
    from pipeline.io.kafka import produce

    kafka = KafkaConfig(bootstrap_servers=BOOTSTRAP)
    produce(kafka, ((topics.jwks, "corp", line) for line in files.jwks.read_bytes().splitlines()))
    lines = files.events.read_bytes().splitlines()[:count]
    started = time.perf_counter()
    produce(kafka, ((topics.failures, json.loads(line)["service"], line) for line in lines))
    return len(lines) / (time.perf_counter() - started)


Series = list[tuple[float, int]]


def _lag_curve(per_batch: Series, produced: Series, step: float) -> Series:
    """(seconds from the start, produced - stored) every `step` seconds."""
    start = min([t for t, _ in produced] + [t for t, _ in per_batch])
    end = max([t for t, _ in produced] + [t for t, _ in per_batch])
    curve: list[tuple[float, int]] = []
    at = start
    while at <= end + step:
        made = max((n for t, n in produced if t <= at), default=0)
        stored = sum(n for t, n in per_batch if t <= at)
        curve.append((at - start, made - stored))
        at += step
    return curve


def broker_case(files: OutageFiles, runs: int, summary: Summary) -> float:
    """The whole stream as a backlog: one jwtriage consumer against a bare loop; returns jwtriage's events/s."""
    import shutil
    import tempfile

    from bench_e2e import delete_topics, launch, make_topics
    from cpu_share import CpuSampler

    count = files.count()
    causes = _expected_causes(files)
    topics = make_topics("bench-outage")
    workdir = Path(tempfile.mkdtemp(prefix="jwtriage-outage-"))
    best: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    try:
        rate = _produce_stream(files, topics)
        print(f"produced {count:,} outage events to {topics.failures} at {rate:,.0f}/s (a backlog); {load_note()}",
              flush=True)
        for run in range(runs):
            for kind in ("bare", "jwtriage"):
                got: list[dict[str, Any]] = []
                sampler = CpuSampler(_reader_roles(kind), period=0.2)
                sampler.start()
                try:
                    outcome = launch(kind, 1, workdir, topics, count, config_toml=files.config.read_text(),
                                     causes=causes, results_out=got)
                finally:
                    sampler.stop()
                extra = (f", {outcome.cpu_us:.0f} us CPU/event, peak RSS {outcome.rss_mb:.0f} MB"
                         if outcome.cpu_us else "")
                cores = sampler.cores(min(r["first"] for r in got if r["first"]), max(r["last"] for r in got))
                print(f"  run {run + 1}: {kind:<8}: {outcome.rate:>8,.0f} events/s, drained {count:,} in "
                      f"{outcome.wall:5.2f} s{extra}; cores: reader {cores.get('reader', 0):.2f}, broker "
                      f"{cores.get('broker', 0):.2f}, machine {cores.get('machine', 0):.2f}; load {outcome.load:.2f}",
                      flush=True)
                if kind not in best or outcome.rate > best[kind].rate:
                    best[kind] = outcome
                    if kind == "jwtriage":
                        results = got
    finally:
        delete_topics(topics)
        shutil.rmtree(workdir, ignore_errors=True)
    bare, ours = best["bare"], best["jwtriage"]
    per_batch = [(t, n) for r in results for t, n in r["per_batch"]]
    first = min(r["first"] for r in results if r["first"])
    curve = _lag_curve(per_batch, [(first, count)], max(ours.wall / 10, 0.05))
    print("lag curve (s from the first record: events not yet stored): "
          + ", ".join(f"{t:.1f}s {lag:,}" for t, lag in curve))
    print(f"one consumer: {ours.rate:,.0f} events/s vs bare kafka-python {bare.rate:,.0f}/s "
          f"({ours.rate / bare.rate:.2f}x; targets >= {TARGET_CONSUMER:,}/s and >= {TARGET_BARE_RATIO}x); "
          f"{ours.cpu_us:.0f} us CPU/event; peak RSS {ours.rss_mb:.0f} MB; time to drain {ours.wall:.1f} s")
    summary.add("outage: 1 consumer events/s", ours.rate, "events/s", baseline=bare.rate,
                target=f">= {TARGET_CONSUMER:,}/s", met=ours.rate >= TARGET_CONSUMER, load=ours.load)
    summary.add("outage: 1 consumer / bare loop", ours.rate / bare.rate, "x", target=f">= {TARGET_BARE_RATIO}x",
                met=ours.rate / bare.rate >= TARGET_BARE_RATIO, load=ours.load)
    summary.add("outage: CPU per event", float(ours.cpu_us or 0), "us", load=ours.load)
    summary.add("outage: peak RSS", float(ours.rss_mb or 0), "MB", load=ours.load)
    return ours.rate


def burst_case(files: OutageFiles, capacity: float, burst: float, summary: Summary, producer: str = "java",
               keyed: bool = False, producer_cpus: str | None = None, ts: str = "shifted", consumers: int = 1) -> None:
    """Steady, then 10x steady for `burst` seconds, then steady: does the lag drain within `burst` seconds after?

    The load comes from bench/burst_load.py (`producer`: its own JVM by default, or the original
    kafka-python thread); the CPU each process took is sampled throughout (bench/cpu_share.py).
    `consumers`: jwtriage instances in one group (the README's scale-out), one store; the load is the same
    (`capacity` is still one consumer's).
    """
    import shutil
    import tempfile
    import threading

    from bench_e2e import delete_topics, launch, make_topics
    from burst_load import cycle_shift, java_available, start_load
    from cpu_share import CpuSampler

    if producer == "java" and not java_available():
        print("burst: no java/javac or .kafka/lib here: the Python producer instead")
        producer = "python"
    steady = max(50.0, capacity / 6)  # drains in `burst` s only if capacity >= 5.5x steady: one consumer's share
    plan = [(burst, steady), (burst, 10 * steady), (2 * burst, steady)]
    total = int(sum(seconds * rate for seconds, rate in plan))
    topics = make_topics("bench-burst")
    workdir = Path(tempfile.mkdtemp(prefix="jwtriage-burst-"))
    results: list[dict[str, Any]] = []
    notes: list[tuple[float, float, int]] = []  # (read at, measured at, records): what the Live page showed
    shift = cycle_shift(files.events) if ts == "shifted" else 0.0
    print(f"burst: producer {producer} ({'keyed by service' if keyed else 'unkeyed'}"
          f"{f', pinned to CPUs {producer_cpus}' if producer_cpus else ''}; "
          f"{f'each cycle of the stream dated {shift:g} s after the last' if shift else 'ts cycled as in the file'}"
          f"); {consumers} consumer{'s' if consumers > 1 else ''} in one group; {load_note()}", flush=True)
    try:
        _produce_stream(files, topics, count=0)  # the snapshots
        generator = start_load(producer, files.events, topics.failures, plan, keyed=keyed, cpus=producer_cpus,
                               ts_shift=shift)
        sampler = CpuSampler(_cpu_roles(generator))
        sampler.start()
        watcher = threading.Thread(target=_watch_lag_notes, args=(workdir, notes, generator.done), daemon=True)
        watcher.start()
        try:
            # What must be read is what the producer managed to send, known only once it is done: a producer
            # slower than the plan (10x a fast consumer's share) sends less than `total`.
            launch("jwtriage", consumers, workdir, topics, 0, config_toml=files.config.read_text(),
                   causes=None, results_out=results, idle=max(15.0, burst))  # a loaded machine's producer pauses
        except RuntimeError as exc:
            if "the store holds" not in str(exc):  # the causes of a cycled stream are not checked here
                raise
        generator.join()
        sampler.stop()
        log, acked = generator.sent, generator.acked
        read, produced, acknowledged = sum(r["events"] for r in results), log[-1][1], acked[-1][1]
        rows, distinct = _stored_rows(workdir)
        check_every_record_stored(produced, acknowledged, read, rows, distinct)
    finally:
        delete_topics(topics)
        shutil.rmtree(workdir, ignore_errors=True)
    per_batch = [(t, n) for r in results for t, n in r["per_batch"]]
    start = log[0][0]
    burst_end = start + 2 * burst
    curve = _lag_curve(per_batch, log, max(burst / 10, 0.25))
    peak = max(lag for _, lag in curve)
    before = max([lag for t, lag in curve if t < burst] or [0])
    drained = next((t for t, lag in curve if start + t >= burst_end and lag <= before + 2_000), None)
    after = (start + drained - burst_end) if drained is not None else None
    made = log[-1][1] / (log[-1][0] - start)
    drain_end = start + drained if drained is not None else max(t for t, _ in per_batch)
    drain_stored = sum(n for t, n in per_batch if burst_end < t <= drain_end)
    drain_rate = drain_stored / (drain_end - burst_end) if drain_end > burst_end else 0.0
    print(f"burst: steady {steady:,.0f}/s, 10x for {burst:g} s (produced {log[-1][1]:,} of {total:,} planned, "
          f"{made:,.0f}/s on average; every one acknowledged and stored once); "
          f"peak lag {peak:,}; drained {f'{after:.1f} s' if after is not None else 'NOT'} after the burst "
          f"(target <= {burst:g} s); the consumer{'s' if consumers > 1 else ''} stored {drain_rate:,.0f} events/s "
          f"from the burst's end until "
          f"drained; {load_note()}")
    print("lag curve: " + ", ".join(f"{t:.0f}s {lag:,}" for t, lag in curve[:: max(1, len(curve) // 24)]))
    _report_cpu(sampler, [("steady before", start, start + burst), ("burst", start + burst, burst_end),
                          ("drain", burst_end, drain_end), ("steady after", drain_end, log[-1][0])], per_batch, log)
    label = "outage: burst 10x drained after" + (f" ({consumers} consumers)" if consumers > 1 else "")
    summary.add(label, after if after is not None else float("inf"), "s",
                target=f"<= {burst:g} s", met=after is not None and after <= burst)
    _report_lag_notes(notes, per_batch, log)
    _report_lag_notes(notes, per_batch, acked, "against what the broker had acknowledged")


def check_every_record_stored(produced: int, acknowledged: int, read: int, rows: int, distinct: int) -> None:
    """Every record the burst's producer sent was acknowledged, read and stored once, or the run fails.

    (A consumer may read a record twice, after a rebalance; the store keeps it once.)
    """
    if not (acknowledged == produced and read >= produced and rows == distinct == produced):
        raise RuntimeError(f"jwtriage: {produced} events produced, {acknowledged} acknowledged, {read} read, "
                           f"{rows} rows stored ({distinct} distinct event ids)")


def _stored_rows(workdir: Path) -> tuple[int, int]:
    """Rows and distinct event ids in the burst consumer's store (read before the work folder goes)."""
    from pipeline.io.store_readers import connect_readonly

    con = connect_readonly(next(workdir.glob("jwtriage-*/store.duckdb")))
    try:
        row = con.execute("SELECT count(*), count(DISTINCT event_id) FROM classifications").fetchone()
    finally:
        con.close()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _reader_roles(kind: str) -> Any:
    """Who to watch while a backlog drains: the reading worker (bare loop or jwtriage) and the broker."""
    import os

    from burst_load import broker_pid
    from cpu_share import children

    me, broker = os.getpid(), broker_pid()
    return lambda: {"reader": [(pid, None) for pid in children(me, f"--{kind}-worker")],
                    "broker": [(broker, None)] if broker else []}


def _cpu_roles(load: Any) -> Any:
    """Who to watch: the consumer (a child process), the generator, the rest of this launcher, the broker."""
    import os

    from burst_load import broker_pid
    from cpu_share import children

    me, broker = os.getpid(), broker_pid()

    def roles() -> dict[str, list[tuple[int, int | None]]]:
        producer = list(load.tasks)
        ours = {tid for pid, tid in producer if pid == me}
        threads = [int(task.name) for task in Path(f"/proc/{me}/task").iterdir()]
        return {
            "consumer": [(pid, None) for pid in children(me, "--jwtriage-worker")],
            "producer": producer,
            "launcher": [(me, tid) for tid in threads if tid not in ours],
            "broker": [(broker, None)] if broker else [],
        }

    return roles


def _report_cpu(sampler: Any, phases: list[tuple[str, float, float]], per_batch: Series, sent: Series) -> None:
    """Cores per role in each phase, and what a record cost its producer and an event the consumer."""
    roles = ("consumer", "producer", "broker", "launcher", "other", "machine")
    print("CPU by phase (cores of the machine's 2; 'other' is busy time no role accounts for):")
    for name, start, end in phases:
        used = sampler.cores(start, end)
        if not used or end - start < 2:
            continue
        span = end - start
        stored = sum(n for t, n in per_batch if start < t <= end)
        made = max((n for t, n in sent if t <= end), default=0) - max((n for t, n in sent if t <= start), default=0)
        costs = (f"; consumer {used['consumer'] * span / stored * 1e6:.0f} us CPU/event" if stored else "") + (
            f", producer {used['producer'] * span / made * 1e6:.1f} us CPU/record" if made else "")
        print(f"  {name:<13} {span:6.1f} s: " + " | ".join(f"{role} {used.get(role, 0.0):4.2f}" for role in roles)
              + f"; stored {stored / span:,.0f}/s, sent {made / span:,.0f}/s{costs}", flush=True)


def _watch_lag_notes(workdir: Path, notes: list[tuple[float, float, int]], done: Any) -> None:
    """Every second, the lag the Live page would show (the consumer's note in the published store)."""
    from pipeline.io.consumer_health import consumer_lag
    from pipeline.io.store_readers import connect_readonly

    while not done.wait(1.0):
        try:
            con = connect_readonly(next(workdir.glob("jwtriage-*/store.duckdb")))
        except Exception:  # nothing published yet
            continue
        try:
            lag = consumer_lag(con)
        finally:
            con.close()
        if lag is not None:
            notes.append((time.time(), lag.measured_at.timestamp(), lag.records))


def _report_lag_notes(notes: list[tuple[float, float, int]], per_batch: Series, produced: Series,
                      against: str = "") -> None:
    """How far the shown lag was from the truth (produced - stored) at the moment it was measured."""
    if not notes:
        print("lag as the Live page showed it: no note was read (is the store published?)")
        return

    def truth(at: float) -> int:
        return max((n for t, n in produced if t <= at), default=0) - sum(n for t, n in per_batch if t <= at)

    errors = sorted(abs(records - truth(measured)) for _, measured, records in notes)
    peak = max(truth(measured) for _, measured, _ in notes) or 1
    stale = max(read - measured for read, measured, _ in notes)
    _, at, shown = max(notes, key=lambda note: abs(note[2] - truth(note[1])))
    print(f"lag as the Live page showed it{f' ({against})' if against else ''}: {len(notes)} readings; shown vs "
          f"true lag when measured: median off by {errors[len(errors) // 2]:,}, at worst {errors[-1]:,} records "
          f"({errors[-1] / peak:.1%} of the peak {peak:,}; {at - produced[0][0]:.0f} s in, shown {shown:,}, true "
          f"{truth(at):,}); oldest reading {stale:.1f} s old when read")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument("--burst", type=float, default=120.0, help="seconds of the 10x burst")
    parser.add_argument("--no-broker", action="store_true", help="only the in-process classify comparison")
    parser.add_argument("--cases", default="classify,broker,burst",
                        help="cases to run, comma-separated (PYTHONPATH=<another tree>: its baseline)")
    parser.add_argument("--producer", choices=("java", "python"), default="java",
                        help="the burst's load generator (bench/burst_load.py): its own JVM, or kafka-python in a "
                             "thread of this process (the original)")
    parser.add_argument("--keyed", action="store_true", help="key the burst's records by service (default unkeyed)")
    parser.add_argument("--producer-cpus", help="pin the burst's producer to these CPUs (taskset list, e.g. 1)")
    parser.add_argument("--ts", choices=("shifted", "cycled"), default="shifted",
                        help="the burst's event time: each cycle of the stream dated a stream span later (default), "
                             "or every cycle repeating the stream's own ts (the bench before 2026-12-06)")
    parser.add_argument("--capacity", type=float,
                        help="the consumer's events/s that sets the burst's steady rate (capacity / 6), instead of "
                             "measuring it with the broker case first")
    parser.add_argument("--consumers", type=int, default=1,
                        help="jwtriage instances in one group for the burst (the README's scale-out; default 1)")
    parser.add_argument("--summary", type=Path, help="write the headline figures here as JSON (for run_all.py)")
    args = parser.parse_args(argv)
    users, minutes = (60, 1.0) if args.quick else (args.users, args.minutes)
    runs = 1 if args.quick else max(2, args.runs)
    header("outage: a rotation breaks three services' caches; users retry their tokens")
    files = outage_stream(users=users, minutes=minutes, baseline_per_s=10 if args.quick else 40)
    print(f"stream: {files.count():,} events in {files.events}; {load_note()}", flush=True)
    summary = Summary("outage", [])
    cases = {"classify"} if args.no_broker else set(args.cases.split(","))
    if "classify" in cases:
        classify_case(files, runs, summary)
    if "parts" in cases:
        parts_case(files, runs)
    capacity = args.capacity or 0.0
    if "broker" in cases or ("burst" in cases and not capacity):  # the burst's steady rate is a share of it
        capacity = broker_case(files, runs, summary)
    if "burst" in cases:
        burst_case(files, args.capacity or capacity, 3.0 if args.quick else args.burst, summary,
                   producer=args.producer, keyed=args.keyed, producer_cpus=args.producer_cpus, ts=args.ts,
                   consumers=args.consumers)
    summary.write(args.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
