"""The weekly report's questions read only the files of their window (issue 21): a report of an old week on a store
of 30 full-rate raw days must not parse those days' footers, and its answers stay those of the views."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline import queries
from pipeline.io.store import Store
from pipeline.io.store_readers import connect_readonly
from pipeline.io.store_schema import parts_dir
from pipeline.queries.coverage import coverage
from pipeline.report.model import SPARK_AFTER, SPARK_BEFORE, SPARK_BUCKET
from tests.test_store_parts import DAY0, add_rows

DAY1 = DAY0 + timedelta(days=1)


def damage_store(db: Path) -> None:
    """Two days of rows every 30 minutes; key `k` of issuer `i` added at 01:00 on day 0 and removed at 06:00 on day 1
    (two rotation steps), with stale_jwks, unpublished_key and retired_key rows on it (one attacked) around them."""
    with Store(db, instance="c1", retention_days=5, rollup_retention_days=10) as store:
        assert store.publisher is not None
        add_rows(store, 0, 96, DAY0, step=timedelta(minutes=30))
        store.con.execute("""UPDATE classifications SET issuer = 'i', kid = 'k', key_thumbprint = 't',
                                    service = CASE WHEN source_offset % 3 = 0 THEN 'orders' ELSE 'payments-api' END,
                                    cause = CASE WHEN source_offset < 2 THEN 'unpublished_key'
                                                 WHEN source_offset < 8 THEN 'stale_jwks'
                                                 WHEN source_offset >= 60 THEN 'retired_key' ELSE 'expired' END
                             WHERE source_offset % 2 = 0 OR source_offset < 8""")
        store.con.execute("UPDATE classifications SET attacks = ['alg_none'] WHERE source_offset = 4")
        store.con.execute("INSERT INTO jwks_keys VALUES ('i', 'k', 't', 'RSA', NULL, 0, ?, ?, ?, false)",
                          [DAY0 + timedelta(hours=1), DAY1 + timedelta(hours=5), DAY1 + timedelta(hours=6)])
        store.con.execute("INSERT INTO jwks_keys VALUES ('i', 'k0', 't0', 'RSA', NULL, 0, ?, ?, NULL, true)",
                          [DAY0, DAY1 + timedelta(hours=23)])
        store.publisher.keys_dirty = True
        store.publish()
        store.publisher.maintain()


def rotation_answers(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The report's rotation questions over a day before the rollups' boundary, and over one across it."""
    found: dict[str, Any] = {}
    for name, window in (("old", queries.Filters(since=DAY0, until=DAY1)),
                         ("across", queries.Filters(since=DAY0, until=DAY1 + timedelta(days=1)))):  # fmt: skip
        effects = queries.rotation_effects(con, window)
        steps = [{"issuer": r["issuer"], "kid": r["kid"], "action": r["action"], "ts": r["step_ts"]} for r in effects]
        found[name] = {
            "effects": effects,
            "impact": queries.rotation_impact(con, window),
            "faults": queries.issuer_faults(con, window),
            "damage": queries.rotation_damage_count(con, window),
            "series": queries.rotation_step_series_many(con, steps, SPARK_BEFORE, SPARK_AFTER, SPARK_BUCKET,
                                                        hourly=True),
        }
    return found


def test_the_rotation_questions_read_no_raw_day_outside_their_window(tmp_path: Path) -> None:
    """The rotation attribution's raw rows come from the day folders from the rollups' boundary on (or the open
    tail's table), not the `classifications` view over every day: a broken file in an old folder is not read, and
    the answers are those a connection reading the views gives."""
    db = tmp_path / "k.duckdb"
    damage_store(db)
    plain = duckdb.connect(str(db), read_only=True)  # plain DuckDB: the catalog's views over every file
    try:
        expected = rotation_answers(plain)
    finally:
        plain.close()
    assert sum(r["failures"] for r in expected["old"]["effects"]) == 2 + 5  # unpublished, stale (one attacked)
    assert sum(r["failures"] for r in expected["across"]["effects"]) == 7 + 18  # and retired_key from offset 60
    assert expected["across"]["series"]
    broken = parts_dir(db) / "classifications" / "2025-12-01"
    broken.mkdir()
    (broken / "x-L0-000000000001-000000000001.parquet").write_bytes(b"not parquet")
    con = connect_readonly(db)
    try:
        boundary = coverage(con).rolled_through
        assert boundary is not None and DAY1 < boundary < DAY1 + timedelta(days=1)
        assert rotation_answers(con) == expected
        with pytest.raises(duckdb.Error):  # the view reads every day folder
            con.execute("SELECT count(*) FROM classifications").fetchone()
    finally:
        con.close()
