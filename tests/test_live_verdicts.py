"""A consumer's live upsert skips the DELETE for ids its Bloom filter rules out, and stores exactly what it did before.

The reference is the upsert as it was: every batch's DELETE … USING on (event_id, ts), then the INSERT,
and each replaced row's version in `superseded`. Random batches (ids and times from small pools, so
repeats within and across batches are common), rows leaving the table as `_prune_live` removes them,
and a filter small enough to be resized and to say "may be stored" falsely: both stores must agree
after every batch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.io import live_verdicts
from pipeline.io.live_verdicts import LiveVerdicts, StoredIds

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
TABLES = (
    "CREATE TABLE classifications (event_id VARCHAR, ts TIMESTAMPTZ, classified_at TIMESTAMPTZ, cause VARCHAR);"
    "CREATE TABLE superseded (event_id VARCHAR, ts TIMESTAMPTZ, classified_at TIMESTAMPTZ, superseded_at TIMESTAMPTZ)"
)


def connection() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(TABLES)
    return con


def batch(rows: list[tuple[int, int, str]], at: datetime) -> pa.Table:
    return pa.table({
        "event_id": [f"e{n}" for n, _, _ in rows],
        "ts": pa.array([T0 + timedelta(minutes=minute) for _, minute, _ in rows], TS),
        "classified_at": pa.repeat(pa.scalar(at, TS), len(rows)),
        "cause": [cause for _, _, cause in rows],
    })


def reference_upsert(con: duckdb.DuckDBPyConnection, table: pa.Table, now: datetime) -> None:
    """The upsert before the filter: a DELETE for every batch."""
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


def contents(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    rows = con.execute("SELECT * FROM classifications ORDER BY ALL").fetchall()
    superseded = con.execute("SELECT * FROM superseded ORDER BY ALL").fetchall()
    return rows, superseded


rows_strategy = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 3), st.sampled_from(["valid", "expired"])),
                         max_size=30)


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.tuples(rows_strategy, st.booleans()), max_size=12))
def test_the_filtered_upsert_stores_what_the_delete_for_every_batch_stored(
        batches: list[tuple[list[tuple[int, int, str]], bool]]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(live_verdicts, "MIN_BITS", 64)  # resized often, and false "may be stored" common
        patch.setattr(live_verdicts, "BITS_PER_ID", 2)
        check_against_the_reference(batches)


def check_against_the_reference(batches: list[tuple[list[tuple[int, int, str]], bool]]) -> None:
    ours, reference = connection(), connection()
    live = LiveVerdicts(ours)
    for step, (rows, prune) in enumerate(batches):
        now = T0 + timedelta(seconds=step + 1)
        for con in (ours, reference):
            con.begin()
        live.upsert(batch(rows, now), now)
        reference_upsert(reference, batch(rows, now), now)
        if prune:  # rows leave the table; the filter keeps their ids
            for con in (ours, reference):
                con.execute("DELETE FROM classifications WHERE classified_at <= ?", [now - timedelta(seconds=2)])
        for con in (ours, reference):
            con.commit()
        assert contents(ours) == contents(reference), step


def test_a_restart_builds_the_filter_from_the_stored_rows() -> None:
    """Ids stored before the filter existed (a restart's live file) are replaced, not stored twice."""
    con = connection()
    reference_upsert(con, batch([(1, 0, "unknown_kid"), (2, 1, "valid")], T0), T0)
    again = T0 + timedelta(seconds=1)
    LiveVerdicts(con).upsert(batch([(1, 0, "retired_key"), (3, 2, "valid")], again), again)
    rows, superseded = contents(con)
    assert [(r[0], r[3]) for r in rows] == [("e1", "retired_key"), ("e2", "valid"), ("e3", "valid")]
    assert superseded == [("e1", T0, T0, again)]


def test_new_ids_are_ruled_out_so_their_batch_runs_no_delete() -> None:
    con = connection()
    reference_upsert(con, batch([(n, n % 50, "valid") for n in range(20_000)], T0), T0)
    ids = StoredIds(con, "classifications")
    con.register("_new", pa.table({"event_id": [f"new-{n}" for n in range(100_000)]}))
    con.register("_old", pa.table({"event_id": [f"e{n}" for n in range(20_000)]}))
    assert ids.may_hold(ids.hashes("_old")).all()  # never a false "not stored"
    assert ids.may_hold(ids.hashes("_new")).sum() <= 5  # ~1 in 10^7 this empty; at its fullest ~1 in 10^5


def test_setting_bits_keeps_every_id_whose_bits_share_a_byte() -> None:
    """Many ids into a 64-bit filter: their bits collide in every byte, and each must still be set."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(live_verdicts, "MIN_BITS", 64)
        con = connection()
        ids = StoredIds(con, "classifications")
        hashes = np.random.default_rng(7).integers(0, 2**63, size=3, dtype=np.uint64)
        ids.add(hashes)
        reference = np.zeros(8, dtype=np.uint8)
        for h in hashes.tolist():
            first, step = h & 0xFFFFFFFF, (h >> 32) | 1
            for i in range(live_verdicts.HASHES):
                index = (first + i * step) % 64
                reference[index >> 3] |= 1 << (index & 7)
        assert ids.bits.tolist() == reference.tolist()
        assert ids.may_hold(hashes).all()
