"""The live table's upsert when batches mix drifting partitions: a DELETE per batch against the Bloom filter's skip.

Two live files (the writer's settings: 16,384-row groups, one thread, 100 MB), the same batches
into each, interleaved: 5,000 new event ids a batch, each batch's `ts` spread over `--spread`
minutes behind a clock that moves 1 minute per 100,000 events (partitions drained unevenly, as
in the burst), and `--repeat` of each batch's rows re-sent (a re-judge). Prints the CPU per
batch of each upsert by rows stored, and checks both files hold the same rows.

    python bench/bench_live_upsert.py --rows 2000000 --spread 12
    python bench/bench_live_upsert.py --rows 2000000 --baseline /work/main   # this tree's filter against another's

With `--baseline TREE` the first file is upserted by TREE's `LiveVerdicts` instead of a DELETE per batch
(A/B of two versions of the filter, interleaved, their order swapped every batch); the mean per batch
is printed beside the median, since the filter's rebuilds are rare and long.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from common import module_from_tree

from pipeline.io.live_verdicts import LiveVerdicts

T0 = datetime(2026, 12, 6, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
TABLES = (
    "CREATE TABLE classifications (event_id VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL, cause VARCHAR, "
    "token_claims JSON, classified_at TIMESTAMPTZ NOT NULL);"
    "CREATE TABLE superseded (event_id VARCHAR, ts TIMESTAMPTZ, classified_at TIMESTAMPTZ, superseded_at TIMESTAMPTZ)"
)


def open_live(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"ATTACH '{path}' AS store (ROW_GROUP_SIZE 16384)")
    con.execute("USE store")
    con.execute("SET memory_limit = '100MB'")
    con.execute("SET threads = 1")
    con.execute(TABLES)
    return con


def delete_every_batch(con: duckdb.DuckDBPyConnection, table: pa.Table, now: datetime) -> None:
    """The upsert before the filter (`LiveVerdicts.upsert` without `StoredIds`)."""
    con.register("_batch", table)
    replaced = con.execute(
        "DELETE FROM classifications USING _batch WHERE classifications.event_id = _batch.event_id "
        "AND classifications.ts = _batch.ts RETURNING classifications.event_id, classifications.ts, "
        "classifications.classified_at"
    ).fetchall()
    con.execute("INSERT INTO classifications BY NAME SELECT * FROM _batch")
    con.unregister("_batch")
    for event_id, ts, classified_at in replaced:
        con.execute("INSERT INTO superseded VALUES (?, ?, ?, ?)", [event_id, ts, classified_at, now])


def baseline_upsert(tree: Path, con: duckdb.DuckDBPyConnection) -> Any:
    """`LiveVerdicts(con).upsert` as another tree's `pipeline/io/live_verdicts.py` has it."""
    return module_from_tree(tree, "pipeline/io/live_verdicts.py", "baseline_live_verdicts").LiveVerdicts(con).upsert


def batches(rows: int, size: int, spread_minutes: float, repeat: int, seed: int = 7):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    sent: list[tuple[str, datetime]] = []
    claims = '{"iss":"https://idp.example/","aud":"payments-api","sub":"' + "h" * 64 + '","exp":1796000000}'
    for start in range(0, rows, size):
        clock = T0 + timedelta(minutes=start / 100_000)
        ids = [f"b{rng.getrandbits(40):x}-{start + i}" for i in range(size - repeat)]
        times = [clock - timedelta(seconds=rng.uniform(0, spread_minutes * 60)) for _ in ids]
        recent = sent[-50_000:]  # re-judged: the same (event_id, ts) of a recent event
        again = rng.sample(recent, min(repeat, len(recent)))
        sent.extend(zip(ids, times, strict=True))
        ids += [event_id for event_id, _ in again]
        times += [ts for _, ts in again]
        now = T0 + timedelta(hours=1, seconds=start / 1000)
        yield start, now, pa.table({
            "event_id": ids, "ts": pa.array(times, TS), "cause": ["stale_jwks"] * len(ids),
            "token_claims": [claims] * len(ids), "classified_at": pa.repeat(pa.scalar(now, TS), len(ids)),
        })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--spread", type=float, default=12.0, help="minutes of ts one batch spans")
    parser.add_argument("--repeat", type=int, default=0, help="rows of each batch re-judged (already stored)")
    parser.add_argument("--baseline", type=Path, help="a tree whose LiveVerdicts upserts the first file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old, new = open_live(Path(tmp) / "old.duckdb"), open_live(Path(tmp) / "new.duckdb")
        live = LiveVerdicts(new)
        first = (f"baseline {args.baseline}", baseline_upsert(args.baseline, old)) if args.baseline else (
            "delete every batch", lambda t, n: delete_every_batch(old, t, n))
        contenders = [(first[0], old, first[1]), ("Bloom filter", new, live.upsert)]
        cost: dict[str, dict[int, list[float]]] = {name: {} for name, _, _ in contenders}
        step = max(args.rows // 5, args.batch)
        for start, now, table in batches(args.rows, args.batch, args.spread, args.repeat):
            for name, con, upsert in contenders if start // args.batch % 2 else contenders[::-1]:
                con.begin()
                began = time.process_time()
                upsert(table, now)
                con.commit()
                cost[name].setdefault(start // step, []).append(time.process_time() - began)
        print(f"{args.rows:,} rows in batches of {args.batch:,}, ts spread {args.spread} min, "
              f"{args.repeat} re-judged a batch; CPU ms per batch, median / mean (mean per event) by rows stored:")
        for name, by_size in cost.items():
            cells = [f"{k * step / 1e6:.1f}M+: {statistics.median(v) * 1e3:5.1f} / {statistics.mean(v) * 1e3:5.1f} "
                     f"({statistics.mean(v) / args.batch * 1e6:4.2f} us)" for k, v in sorted(by_size.items())]
            print(f"  {name:20} " + "  ".join(cells))
        same = old.execute("SELECT count(*), sum(hash(event_id, ts, classified_at)) FROM classifications").fetchone()
        assert same == new.execute("SELECT count(*), sum(hash(event_id, ts, classified_at)) FROM classifications"
                                   ).fetchone(), "the two upserts stored different rows"
        superseded = "SELECT count(*), sum(hash(event_id, ts, classified_at, superseded_at)) FROM superseded"
        assert old.execute(superseded).fetchone() == new.execute(superseded).fetchone()
        print(f"  same rows in both ({same[0]:,} stored), same superseded versions")


if __name__ == "__main__":
    main()
