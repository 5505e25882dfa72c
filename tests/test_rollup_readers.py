"""The report, triage and the dashboard on a store whose oldest raw rows expired (issue 21): counts from hourly
rollups match the raw counts, and every view says the raw detail expired.

The store is the simulated day with its first half rolled up and its first quarter's raw rows
deleted, as the writer's retention would leave it (`store_coverage` a table here: the writer's
is a view with the same columns).
"""

from __future__ import annotations

import io
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from rich.console import Console
from streamlit.testing.v1 import AppTest

from pipeline import queries
from pipeline.io.store_readers import connect_readonly
from pipeline.report.build import build_report
from pipeline.report.markdown import render_markdown
from pipeline.triage import render, summarize
from tests.test_dashboard import APP, all_text, metric
from tests.test_rollups import roll_up_and_expire

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def expired_db(simulated_db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime]:
    """A copy of the simulated store: rolled up through its middle hour, raw rows kept from a quarter on."""
    db = tmp_path_factory.mktemp("expired") / "expired.duckdb"
    shutil.copyfile(simulated_db, db)
    con = duckdb.connect(str(db))
    try:
        first, last = con.execute("SELECT min(ts), max(ts) FROM classifications").fetchone()  # type: ignore[misc]
        rolled_through = hour_of(first + (last - first) / 2)
        raw_since = hour_of(first + (last - first) / 4)
        roll_up_and_expire(con, rolled_through, raw_since)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return db, raw_since


def test_the_report_counts_from_rollups_and_says_so(simulated_db: Path, expired_db: tuple[Path, datetime]) -> None:
    db, raw_since = expired_db
    original, expired = connect_readonly(simulated_db), connect_readonly(db)
    try:
        before, after = build_report(original, now=NOW), build_report(expired, now=NOW)
    finally:
        original.close()
        expired.close()
    assert (after.week, after.events, after.previous_events) == (before.week, before.events, before.previous_events)
    assert after.sections[0].rows == before.sections[0].rows  # failures by cause, with what to do
    assert after.sections[1].rows == before.sections[1].rows  # by service
    assert after.daily == before.daily
    note = f"Raw detail expired before {raw_since:%Y-%m-%d %H:%M} UTC; counts from hourly rollups"
    assert after.summary[0].startswith(note) and not any("Raw detail" in line for line in before.summary)
    assert note in render_markdown(after)


def test_triage_counts_from_rollups_and_says_so(simulated_db: Path, expired_db: tuple[Path, datetime]) -> None:
    db, raw_since = expired_db
    original, expired = connect_readonly(simulated_db), connect_readonly(db)
    try:
        _, last = queries.time_range(original)
        assert last is not None
        before = summarize(original, timedelta(hours=24), until=last + timedelta(seconds=1), now=NOW)
        after = summarize(expired, timedelta(hours=24), until=last + timedelta(seconds=1), now=NOW)
        recent = summarize(expired, timedelta(hours=1), until=last + timedelta(seconds=1), now=NOW)
    finally:
        original.close()
        expired.close()
    assert after.total == before.total and after.causes == before.causes
    assert before.coverage_note is None and "coverage_note" not in before.to_json()
    assert after.coverage_note and after.coverage_note.startswith(f"raw detail expired before {raw_since:%Y-%m-%d}")
    assert after.to_json()["coverage_note"] == after.coverage_note
    assert recent.coverage_note is None  # the last hour is all raw
    out = io.StringIO()
    render(Console(file=out, width=200), after)
    assert "raw detail expired before" in out.getvalue()


def test_the_overview_counts_from_rollups_and_says_so(
    simulated_db: Path, expired_db: tuple[Path, datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = {}
    for name, db in (("raw", simulated_db), ("expired", expired_db[0])):
        monkeypatch.setenv("JWTRIAGE_DB", str(db))
        at = AppTest.from_file(APP, default_timeout=30)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        pages[name] = at
    assert metric(pages["expired"], "Failures") == metric(pages["raw"], "Failures")
    assert "Raw detail expired before" in all_text(pages["expired"])
    assert "Raw detail expired" not in all_text(pages["raw"])


def test_the_triage_page_says_the_event_detail_expired(
    expired_db: tuple[Path, datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWTRIAGE_DB", str(expired_db[0]))
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at.switch_page("views/triage.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Raw detail expired before" in all_text(at)  # the past days it compares with are rollups
