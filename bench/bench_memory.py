"""Benchmark: peak RSS under floods of big, distinct records, side by side for several flood sizes.

    python bench/bench_memory.py [--sizes 100,1200,1000000] [--ceiling-mb 600]

For each size N, a fresh child process builds a `Pipeline` with the production limits
(`PipelineLimits()`, the parse and signature caches, the header cache) over the
simulator's config and keys, and feeds it, in batches cut like a Kafka fetch (at most
2,000 records or 50 MB):

- min(N, 1,200) distinct ~1 MB samples (over the 256 KB token limit: dead letters),
- min(N, 1,200) distinct samples just under the token limit (~250 KB: held, until the
  samples' byte budget forgets the oldest),
- min(N, 1,200) events whose ~250 KB tokens name made-up kids (they wait for a key),
- N events whose small tokens name made-up kids (a flood of unknown kids),
- N events waiting for a sample that never comes, each with a 2 KB request id (held with
  the event; not a validator message, whose matching costs up to ~40 ms an event and would
  make this a CPU benchmark).

It prints each child's peak RSS (VmHWM, the whole process: interpreter and imports
included), the join state's entries and bytes at the end (`Pipeline.cache_usage`) and the
time taken. Before issue 17 the caps counted records only: 1,200 distinct 1 MB samples
took the process from 160 MB to 2.5 GB. The target: the peak stays under the ceiling, the
same at every size.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FETCH_RECORDS = 2_000
FETCH_BYTES = 50 * 1024 * 1024
BIG = 1_200


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def records(n: int, service: str, issuer: str, ts: str) -> Iterator[tuple[str, bytes]]:
    """(kind, value) of the flood, built lazily (the flood itself holds no memory)."""
    header = _b64(json.dumps({"alg": "RS256", "kid": "made-up"}).encode())

    def token(i: int, pad: int, kid: str | None = None) -> str:
        head = header if kid is None else _b64(json.dumps({"alg": "RS256", "kid": kid}).encode())
        claims = {"iss": issuer, "sub": f"u{i}", "jti": f"j{i}", "pad": "p" * pad}
        return f"{head}.{_b64(json.dumps(claims).encode())}.{_b64(i.to_bytes(8, 'big'))}"

    for i in range(min(n, BIG)):
        yield "sample", json.dumps({"token": token(i, 760_000)}).encode()  # ~1 MB: over the token limit
        yield "sample", json.dumps({"token": token(i, 186_000)}).encode()  # ~250 KB: held
        event = {"event_id": f"big-{i}", "ts": ts, "service": service, "token": token(i, 186_000, f"big-kid-{i}")}
        yield "event", json.dumps(event).encode()
    padding = "r" * 2_000
    for i in range(n):
        event = {"event_id": f"kid-{i}", "ts": ts, "service": service, "token": token(i, 0, f"kid-{i}")}
        yield "event", json.dumps(event).encode()
        fp = hashlib.sha256(f"never-{i}".encode()).hexdigest()
        waiting = {"event_id": f"wait-{i}", "ts": ts, "service": service, "token_sha256": fp,
                   "request_id": padding}
        yield "event", json.dumps(waiting).encode()


def child(n: int) -> dict[str, object]:
    from pipeline.config import Config
    from pipeline.engine.keys import KeyTimeline
    from pipeline.models import JwksSnapshot
    from pipeline.records import Envelope, Position, RecordKind
    from pipeline.runner import Pipeline
    from pipeline.simulator import simulate

    sc = simulate(seed=7, events=50, hours=1)
    config = Config.model_validate(tomllib.loads(sc.config_toml))
    snapshots = [JwksSnapshot.model_validate_json(r.value) for r in sc.snapshots]
    pipeline = Pipeline(config, KeyTimeline(snapshots))
    service, issuer = config.services[0].name, config.issuers[0].issuer
    ts = max(s.fetched_at for s in snapshots).isoformat()
    del sc
    started = time.perf_counter()
    batch: list[Envelope] = []
    size = 0
    dead = 0
    for offset, (kind, value) in enumerate(records(n, service, issuer, ts)):
        batch.append(Envelope(RecordKind(kind), value, Position(kind, 0, offset)))
        size += len(value)
        if len(batch) >= FETCH_RECORDS or size >= FETCH_BYTES:
            dead += len(pipeline.process(batch).dead_letters)
            batch, size = [], 0
    dead += len(pipeline.process(batch).dead_letters)
    status = Path("/proc/self/status").read_text()
    peak_mb = int(status.split("VmHWM:")[1].split()[0]) / 1024
    return {
        "n": n, "peak_rss_mb": round(peak_mb), "seconds": round(time.perf_counter() - started, 1),
        "dead_letters": dead, "usage": pipeline.cache_usage(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1200,1000000")
    parser.add_argument("--ceiling-mb", type=int, default=600)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True,
                             cwd=ROOT, check=True)
        results.append(json.loads(out.stdout))
        print(f"N={n:>9,}: peak RSS {results[-1]['peak_rss_mb']:>4} MB in {results[-1]['seconds']} s", flush=True)
    print()
    print("| cache | " + " | ".join(f"N={r['n']:,} entries / MB" for r in results) + " | cap entries / MB |")
    print("|---|" + "---|" * (len(results) + 1))
    for cache in results[0]["usage"]:
        cells = [f"{r['usage'][cache][0]:,} / {r['usage'][cache][1] / 2**20:.1f}" for r in results]
        cap = results[0]["usage"][cache]
        print(f"| {cache} | " + " | ".join(cells) + f" | {cap[2]:,} / {cap[3] / 2**20:.0f} |")
    print("| **peak RSS (MB)** | " + " | ".join(str(r["peak_rss_mb"]) for r in results) + f" | ≤ {args.ceiling_mb} |")
    worst = max(int(r["peak_rss_mb"]) for r in results)
    print(f"\npeak RSS at most {worst} MB: {'under' if worst <= args.ceiling_mb else 'OVER'} the "
          f"{args.ceiling_mb} MB ceiling")
    if worst > args.ceiling_mb:
        sys.exit(1)


if __name__ == "__main__":
    main()
