"""One event dated in year 9999 (a hostile sender, a client with a broken clock) must not move what the
report, triage and the dashboard call "the latest": it would make every default window an empty one.

The stores are the simulated day (raw rows) and its copy with rollups (`expired_db`), each with one row
copied and dated 9999-01-01.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipeline import queries
from pipeline.io.store_readers import connect_readonly
from pipeline.report.build import build_report
from pipeline.triage import summarize
from tests.test_rollup_readers import expired_db  # noqa: F401  (a fixture)

FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


def with_a_future_row(source: Path, target: Path) -> Path:
    shutil.copyfile(source, target)
    con = duckdb.connect(str(target))
    try:
        con.execute("INSERT INTO classifications SELECT * REPLACE ('from-9999' AS event_id, ?::TIMESTAMPTZ AS ts) "
                    "FROM classifications LIMIT 1", [FUTURE])
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return target


@pytest.mark.parametrize("store", ["raw", "rolled"])
def test_a_row_dated_9999_moves_neither_the_latest_week_nor_the_last_hour(
    store: str, simulated_db: Path, expired_db: tuple[Path, datetime], tmp_path: Path  # noqa: F811
) -> None:
    clean = simulated_db if store == "raw" else expired_db[0]
    hostile = with_a_future_row(clean, tmp_path / "hostile.duckdb")
    wall = datetime(2026, 12, 5, tzinfo=UTC)  # after the simulated day, long before 9999
    before, after = connect_readonly(clean), connect_readonly(hostile)
    try:
        real_last = queries.store_summary(before, wall)["last_ts"]
        summary = queries.store_summary(after, wall)
        assert summary["last_ts"] == real_last and summary["events"] == queries.store_summary(before)["events"] + 1
        assert queries.time_range(after, wall)[1] == real_last
        assert build_report(after, now=wall).week == build_report(before, now=wall).week
        triage = summarize(after, timedelta(hours=1), now=wall)
        assert triage.reference == summarize(before, timedelta(hours=1), now=wall).reference
        assert triage.total > 0
        # A machine whose clock is behind all the data (every event "in the future"): the newest of all.
        assert queries.store_summary(after, datetime(2000, 1, 1, tzinfo=UTC))["last_ts"] == FUTURE
    finally:
        before.close()
        after.close()
