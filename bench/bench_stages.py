"""Where the time goes per event: each stage of the consumer's path timed on its own, same run.

    python bench/bench_stages.py [--events 20000] [--quick]

On events that each carry a unique RS256 token (the end-to-end workload), every stage is
run alone over the same events, in the order the consumer runs them:

  pydantic decode   `decode_record` of the raw JSON line into an AuthFailureEvent
  token parse       `tokens.parse`: split, base64url, JSON header and claims, fingerprint, sub hash
  RS256 verify      `validate.verify`: the signature check itself (cryptography / OpenSSL)
  classify logic    `Classifier.classify` with parse and signature already cached: the checks, the sentence
  Pipeline.process  all of the above together, as the consumer calls it (no cache warm)
  Arrow build       `store.classification_table` of a batch of verdicts
  Store.write       Arrow build + DuckDB upsert (delete the batch's keys, insert) + positions, one
                    transaction per batch
  JSON encode       `Classification.model_dump_json` (only `jwtriage classify` prints it)

The Kafka fetch per event is measured by bench_e2e.py (the bare consume loop). Each stage is
timed twice and the best kept; the microseconds per event add up to about the whole.
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

from common import Summary, bench_config, header, load, load_note, signed_corpus

import pipeline.engine.classify as classify_module
from pipeline.engine.tokens import parse
from pipeline.engine.validate import verify
from pipeline.io.base import chunked
from pipeline.io.store import Store, classification_table
from pipeline.models import AuthFailureEvent
from pipeline.records import Envelope, Position, RecordKind, decode_record
from pipeline.runner import Pipeline

Row = tuple[str, float, float, float]  # label, wall us/event, CPU us/event, load


def timed(label: str, events: int, run: Callable[[], object], rows: list[Row]) -> float:
    """Best of two runs: wall seconds (returned) and CPU seconds of this process, both per event."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(2):
        started, started_cpu = time.perf_counter(), time.process_time()
        run()
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - started_cpu)
    rows.append((label, wall / events * 1e6, cpu / events * 1e6, load()))
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument("--summary", type=Path, help="write the headline figures here as JSON (for run_all.py)")
    args = parser.parse_args(argv)
    n = 300 if args.quick else args.events
    header("stages: microseconds per event, each stage alone (unique RS256 token per event)")
    corpus = signed_corpus(max(n, 100_000) if not args.quick else n)
    lines = corpus.events.read_bytes().splitlines()[:n]
    config = bench_config()
    envelopes = [Envelope(RecordKind.EVENT, line, Position("bench", 0, i)) for i, line in enumerate(lines)]
    snap_env = Envelope(RecordKind.SNAPSHOT, corpus.jwks.read_bytes().splitlines()[0], Position("jwks", 0, 0))
    rows: list[Row] = []

    events = [decode_record(line, AuthFailureEvent) for line in lines]
    timed("pydantic decode (decode_record)", n, lambda: [decode_record(line, AuthFailureEvent) for line in lines], rows)
    tokens = [e.token for e in events if e.token]
    parsed = [parse(t) for t in tokens]
    timed("token parse (tokens.parse)", n, lambda: [parse(t) for t in tokens], rows)

    def fresh_pipeline() -> Pipeline:
        pipeline = Pipeline(config)
        pipeline.process([snap_env])
        return pipeline

    key = fresh_pipeline().timeline.keys_with_kid("bench-RS256")[0]
    timed("RS256 verify (validate.verify)", n,
          lambda: [verify(p.alg, key, p.signing_input, p.signature) for p in parsed], rows)

    # The parse cache holds 5,000 tokens: widened here so that this stage really finds every parse cached.
    parse_cache_size = classify_module.PARSE_CACHE_SIZE
    classify_module.PARSE_CACHE_SIZE = max(n, parse_cache_size)
    warm = fresh_pipeline().classifier
    for event in events:
        warm.classify(event, event.token)
    assert warm.cache.misses == n, "every token is unique"
    timed("classify logic (parse + signature cached)", n,
          lambda: [warm.classify(event, event.token) for event in events], rows)
    classify_module.PARSE_CACHE_SIZE = parse_cache_size

    batches = list(chunked(envelopes, args.batch_size))
    produced: list = []

    def process_all() -> None:
        pipeline = fresh_pipeline()
        produced[:] = [pipeline.process(b) for b in batches]

    process_seconds = timed("Pipeline.process: all of the above, cold", n, process_all, rows)
    now = datetime.now(UTC)
    timed("Arrow build (classification_table)", n,
          lambda: [classification_table(b.judged, now) for b in produced], rows)

    timeline = fresh_pipeline().timeline
    with tempfile.TemporaryDirectory(prefix="jwtriage-stages-") as tmp:

        def write_all() -> None:
            with Store(Path(tmp) / f"s{time.perf_counter_ns()}.duckdb") as store:
                for b in produced:
                    store.write(b, timeline)

        write_seconds = timed("Store.write: Arrow build + DuckDB insert + positions", n, write_all, rows)
    verdicts = [j.verdict.classification for b in produced for j in b.judged]
    timed("JSON encode (model_dump_json; classify CLI only)", n, lambda: [v.model_dump_json() for v in verdicts], rows)

    total = process_seconds + write_seconds
    print(f"{n:,} events, batches of {args.batch_size:,}; {load_note()}")
    print(f"{'stage':<56} {'wall us/event':>13} {'CPU us/event':>12} {'load':>5}")
    for label, micros, cpu, at in rows:
        print(f"{label:<56} {micros:>13.1f} {cpu:>12.1f} {at:>5.2f}")
    print(f"{'process + write (the consumer minus Kafka)':<56} {total / n * 1e6:>9.1f} -> {n / total:,.0f} events/s "
          "on one core")
    summary = Summary("stages", [])
    for label, micros, _, at in rows:
        summary.add(label, micros, "us/event", load=at)
    summary.add("pipeline minus Kafka", n / total, "events/s")
    summary.write(args.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
