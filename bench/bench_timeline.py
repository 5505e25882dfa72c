"""Benchmark: loading the key timeline from a store of heartbeat snapshots, 1k to 8k per issuer.

    python bench/bench_timeline.py [--sizes 1000,2000,4000,8000] [--baseline-max 4000] [--quick]

A DuckDB store's `jwks_snapshots` table is filled (through the store's own `snapshot_table`)
with N snapshots per issuer × 3 issuers, 5 minutes apart (the default heartbeat), each holding
two RSA-2048 keys, with a rotation step every 500 snapshots: months of an ordinary history.
Then, best of two:

  jwtriage   `store_readers.timeline_from(con)`: what consumer start-up, `explain --db` and a
             restart pay (the query, JSON, the snapshot model and `KeyTimeline.add`).
  baseline   the same rows through the timeline this replaced, copied below as
             `BaselineTimeline` (labelled baseline only; it rebuilt an issuer's intervals from
             all its sorted snapshots on every snapshot, and parsed every key of every snapshot).
             Quadratic: run up to --baseline-max snapshots per issuer (the issue measured
             21 s / 65 s / 146 s at 2k / 4k / 8k).

The target (issue 17): 8,000 per issuer in less than 10x the time of 1,000.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import duckdb
from common import Summary, header, load, load_note
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from pipeline.engine.keys import KeyInterval, load_public_key
from pipeline.io.store import snapshot_table
from pipeline.io.store_readers import timeline_from
from pipeline.models import JwksSnapshot

ISSUERS = ("https://a.bench.test", "https://b.bench.test", "https://c.bench.test")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROTATE_EVERY = 500


class BaselineTimeline:
    """BASELINE ONLY: the replaced KeyTimeline's loading (sorted rebuild per snapshot), for comparison."""

    def __init__(self) -> None:
        self._snapshots: dict[str, dict[datetime, list[str]]] = {}
        self.intervals: dict[tuple[str, str], list[KeyInterval]] = {}

    def add(self, snapshot: JwksSnapshot) -> None:
        held = [load_public_key(jwk)[3] for jwk in snapshot.jwks["keys"]]
        self._snapshots.setdefault(snapshot.issuer, {})[snapshot.fetched_at] = held
        self._rebuild(snapshot.issuer)

    def _rebuild(self, issuer: str) -> None:
        open_since: dict[str, tuple[datetime, datetime]] = {}
        intervals: dict[str, list[KeyInterval]] = {}
        for fetched_at, held in sorted(self._snapshots[issuer].items()):
            present = set(held)
            for thumbprint in present:
                first, _ = open_since.get(thumbprint, (fetched_at, fetched_at))
                open_since[thumbprint] = (first, fetched_at)
            for thumbprint in [t for t in open_since if t not in present]:
                first, last = open_since.pop(thumbprint)
                intervals.setdefault(thumbprint, []).append(KeyInterval(first, last, fetched_at))
        for thumbprint, (first, last) in open_since.items():
            intervals.setdefault(thumbprint, []).append(KeyInterval(first, last, None))
        for thumbprint, spans in intervals.items():
            self.intervals[(issuer, thumbprint)] = spans


def baseline_from(con: duckdb.DuckDBPyConnection) -> BaselineTimeline:
    timeline = BaselineTimeline()
    for issuer, fetched_at, jwks in con.execute(
        "SELECT issuer, fetched_at, jwks FROM jwks_snapshots ORDER BY issuer, fetched_at"
    ).fetchall():
        timeline.add(JwksSnapshot(issuer=issuer, fetched_at=fetched_at, jwks=json.loads(jwks)))
    return timeline


def make_store(per_issuer: int, keys: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("CREATE TABLE jwks_snapshots (issuer VARCHAR, fetched_at TIMESTAMPTZ, kids VARCHAR[], jwks JSON)")
    for issuer in ISSUERS:
        snapshots = []
        for n in range(per_issuer):
            step = n // ROTATE_EVERY
            held = [keys[step % len(keys)], keys[(step + 1) % len(keys)]]
            snapshots.append(JwksSnapshot(issuer=issuer, fetched_at=T0 + timedelta(minutes=5 * n), jwks={"keys": held}))
        rows = snapshot_table(snapshots)  # noqa: F841 (read by DuckDB's replacement scan below)
        con.execute("INSERT INTO jwks_snapshots SELECT * FROM rows")
    return con


def timed(measure: Any, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        measure()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,2000,4000,8000", help="snapshots per issuer (comma-separated)")
    parser.add_argument("--baseline-max", type=int, default=4000, help="run the baseline up to this size")
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument("--summary", type=Path, help="write the headline figures here as JSON (for run_all.py)")
    args = parser.parse_args()
    sizes = [100, 800] if args.quick else [int(s) for s in args.sizes.split(",")]
    baseline_max = 200 if args.quick else args.baseline_max
    header("key timeline: loading heartbeat snapshots from the store")
    keys = []
    for n in range(4):
        public = rsa.generate_private_key(65537, 2048).public_key()
        keys.append({**RSAAlgorithm.to_jwk(public, as_dict=True), "kid": f"rsa-{n}", "use": "sig", "alg": "RS256"})
    summary = Summary("timeline", [])
    print(
        f"{'per issuer':>10} {'snapshots':>9} {'jwtriage':>10} {'per snap':>9} {'baseline':>10} {'speed-up':>8}  load"
    )
    first: float | None = None
    for size in sizes:
        con = make_store(size, keys)
        new = timed(lambda: timeline_from(con), 2)  # noqa: B023 (called at once)
        old = timed(lambda: baseline_from(con), 1) if size <= baseline_max else None  # noqa: B023
        con.close()
        first = first if first is not None else new
        old_text = f"{old:9.2f}s" if old is not None else f"{'(skipped)':>10}"
        ratio = f"{old / new:7.0f}x" if old is not None else f"{'':>8}"
        total = size * len(ISSUERS)
        print(f"{size:>10,} {total:>9,} {new:9.3f}s {new / total * 1e6:7.0f}µs {old_text} {ratio}  {load_note()}")
        summary.add(f"timeline: load {size} per issuer", new, "s", baseline=old, load=load())
    if len(sizes) > 1:
        growth = new / first
        factor = sizes[-1] / sizes[0]
        met = growth < 10 if factor == 8 else None
        print(f"{sizes[-1]:,} per issuer took {growth:.1f}x the time of {sizes[0]:,} ({factor:g}x the snapshots)")
        summary.add("timeline: load time growth", growth, "x", target="< 10x for 8x the snapshots", met=met)
    summary.write(args.summary)


if __name__ == "__main__":
    main()
