"""Benchmark: the outage stream, where every request of some services fails and users retry the same token.

    python bench/bench_outage.py [--users 3000] [--minutes 8] [--runs 2] [--quick] [--no-broker]

The stream (bench/outage.py): a steady baseline of ordinary failures, then a key rotation
that breaks three services' JWKS caches so all their traffic fails for `--minutes`
(`--users` distinct users, each retrying its token every few seconds until it expires, `ts`
increasing), then recovery. Four measurements, each beside its baseline from the same run:

  classify   `jwtriage classify`'s path in process (JSONL in, JSON lines out, start-up excluded),
             with judgement reuse on and off, against bare PyJWT `jwt.decode` of the same events
             (prepared keys, kid lookup, a failure caught): target >= 10x. The two verdict streams
             must be byte-identical (their md5 is printed).
  broker     the whole stream produced to fresh topics up front (a backlog: far above one
             consumer's capacity), then one `jwtriage consume` against a bare kafka-python loop
             (bench/bench_e2e.py's workers): sustained events/s, the lag curve, time to drain,
             CPU per event, peak RSS. Target >= 15,000/s and >= 0.3x the bare loop.
  burst      a paced producer: the steady rate, then 10x it for `--burst` seconds, then steady
             again, with one consumer running throughout; the lag (produced - stored) is sampled
             every second from the store's offsets: does it drain within the burst's length after?
"""

from __future__ import annotations

import argparse
import hashlib
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
    pipeline = Pipeline(config)
    out, errors = io.StringIO(), io.StringIO()
    sink = JsonlVerdictSink(out, errors)
    elapsed = 0.0
    with streaming_gc():  # as cmd_classify does
        for envelopes in FileSource(files.events, snapshots=files.jwks).batches():
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument("--no-broker", action="store_true", help="only the in-process classify comparison")
    parser.add_argument("--summary", type=Path, help="write the headline figures here as JSON (for run_all.py)")
    args = parser.parse_args(argv)
    users, minutes = (60, 1.0) if args.quick else (args.users, args.minutes)
    runs = 1 if args.quick else max(2, args.runs)
    header("outage: a rotation breaks three services' caches; users retry their tokens")
    files = outage_stream(users=users, minutes=minutes, baseline_per_s=10 if args.quick else 40)
    print(f"stream: {files.count():,} events in {files.events}; {load_note()}", flush=True)
    summary = Summary("outage", [])
    classify_case(files, runs, summary)
    summary.write(args.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
