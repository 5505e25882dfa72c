"""The weekly report: ISO weeks and durations, every section on the simulated store, week-over-week
change, no-data weeks, a self-contained HTML page, no token material, hostile strings escaped, and
a report read while a consumer keeps writing."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline import queries
from pipeline.causes import REMEDIATION
from pipeline.cli import main
from pipeline.commands.demo import scenario_config, scenario_envelopes
from pipeline.commands.report import (
    ReportError,
    build_report,
    parse_duration,
    parse_week,
    render_html,
    render_markdown,
    spark_text,
    week_name,
)
from pipeline.io.base import chunked
from pipeline.io.store import Store
from pipeline.io.store_readers import connect_readonly
from pipeline.io.store_schema import create_statement
from pipeline.models import CAUSE_LABELS, Cause
from pipeline.runner import Pipeline
from pipeline.simulator import simulate

# -- weeks and durations -------------------------------------------------------------------


def test_parse_week() -> None:
    assert parse_week("2026-W47") == (datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))
    assert parse_week("2026-W01")[0] == datetime(2025, 12, 29, tzinfo=UTC)  # ISO week 1 starts in the old year
    assert parse_week("2026-W53")[0] == datetime(2026, 12, 28, tzinfo=UTC)
    for bad in ("2025-W53", "2026-W00", "2026-47", "W47", "2026-W47x", ""):
        with pytest.raises(ReportError):
            parse_week(bad)
    assert week_name(datetime(2026, 11, 23, 0, 0, tzinfo=UTC)) == "2026-W48"
    assert week_name(datetime(2026, 11, 22, 23, 59, tzinfo=UTC)) == "2026-W47"


def test_parse_duration() -> None:
    assert parse_duration("1h") == timedelta(hours=1)
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("3600") == timedelta(hours=1)
    assert parse_duration("2d") == timedelta(days=2)
    for bad in ("", "h", "1x", "-1h", "0", "1h bogus"):
        with pytest.raises(ReportError):
            parse_duration(bad)


def test_spark_text() -> None:
    assert spark_text([0, 1, 7, 0], marker=1) == "▁┃▂█▁"
    assert spark_text([0, 0]) == "▁▁"


# -- the simulated store -------------------------------------------------------------------


def _week_totals(db: Path, week: str) -> dict[str, int]:
    since, until = parse_week(week)
    con = connect_readonly(db)
    try:
        return dict(
            con.execute(
                "SELECT cause, count(*) FROM classifications WHERE ts >= ? AND ts < ? GROUP BY cause", [since, until]
            ).fetchall()
        )
    finally:
        con.close()


def _report(db: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(["report", "--db", str(db), *args])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_a_report_of_a_given_week_with_events_reads_no_store_time_range(simulated_db: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's time range scans every rollup row: a report asks it only to choose the week, or to say where
    the events are when its week has none."""
    con = connect_readonly(simulated_db)
    try:
        _, last = queries.time_range(con)
        assert last is not None
        asked: list[Any] = []
        real = queries.time_range
        monkeypatch.setattr(queries, "time_range", lambda *a: asked.append(a) or real(*a))
        assert build_report(con, week_name(last)).events > 0 and asked == []
        assert build_report(con).week == week_name(last) and len(asked) == 1
        empty = build_report(con, week_name(last + timedelta(days=28)))
        assert empty.no_data and week_name(last) in empty.no_data and len(asked) == 2
    finally:
        con.close()


def test_markdown_report_of_the_latest_week(simulated_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, text = _report(simulated_db, capsys=capsys)
    assert status == 0
    con = connect_readonly(simulated_db)
    _, last = queries.time_range(con)
    con.close()
    assert last is not None
    week = week_name(last)
    assert text.startswith(f"# jwtriage weekly IAM health report — {week}\n")
    assert " inferred (" in text and "judged from a service's JWKS cache TTL because it reports no fetch time" in text
    totals = _week_totals(simulated_db, week)
    # Failures by cause: every cause of the week by its code, with its label, count and remediation line.
    for cause, events in totals.items():
        line = next(line for line in text.splitlines() if line.startswith(f"| `{cause}` |"))
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert cells[1] == CAUSE_LABELS[Cause(cause)].replace("_", "\\_")
        assert cells[2] == f"{events:,}"
        assert cells[5] == "new"  # the simulated store holds one week only
        advice = cells[6].replace("\\", "")
        if cause == Cause.UNKNOWN_KID:  # remediation per finding: never "add the kid" without "only if you trust it"
            assert "only if its issuer is one you trust" in advice
        else:  # the cause's line, with a warning appended where some events carry attack labels
            assert advice.startswith(REMEDIATION[Cause(cause)].replace("\\", "")), cause
    assert f"{sum(totals.values()):,} rejected tokens (new against 0 the week before)" in text
    for heading in (
        "## Failures by cause",
        "## Failures by service",
        "## Key rotations: impact and recovery",
        "## JWKS caches that outlive the rotation overlap",
        "## Rotation hygiene per issuer",
        "## Token lifetimes over policy (60 min)",
        "## Algorithms in use",
        "## Attacks",
    ):
        assert heading in text
    # The scenario's rotations, stale caches, long-lived tokens and attacks all show.
    assert re.search(r"\| \d\d \w{3} \d\d:\d\d added \| https://login\.acme\.test \| `corp-rs-2026-11` \|", text)
    assert "removed | https://login.acme.test | `corp-rs-2026-10`" in text
    assert "outlives the overlap by" in text
    assert "after removal" in text  # the retired key kept being used
    assert "signed before published" in text  # partner signed with a key before publishing it
    assert "| https://login.acme.test | batch-exporter |" in text
    assert "| `alg_none` |" in text
    assert "| `RS256` |" in text


def test_the_report_counts_as_the_shared_queries_do(simulated_db: Path) -> None:
    con = connect_readonly(simulated_db)
    try:
        report = build_report(con, now=datetime(2026, 12, 1, tzinfo=UTC))
        window = queries.Filters(report.since, report.until)
        assert report.events == queries.total_events(con, window)
        causes = next(s for s in report.sections if s.key == "causes")
        shown = {str(getattr(r[0], "text", r[0])): int(str(r[2]).replace(",", "")) for r in causes.rows}
        assert shown == {r["cause"]: r["events"] for r in queries.cause_counts(con, window)}
        attacks = next(s for s in report.sections if s.key == "attacks")
        assert {str(getattr(r[0], "text", r[0])) for r in attacks.rows} == {
            r["attack"] for r in queries.attacks(con, window)
        }
        assert report.daily is not None
        assert sum(sum(v) for v in report.daily.counts.values()) == report.events
    finally:
        con.close()


def test_token_lifetime_policy_flag(simulated_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, strict = _report(simulated_db, "--max-token-lifetime", "20m", capsys=capsys)
    _, lax = _report(simulated_db, "--max-token-lifetime", "1d", capsys=capsys)
    assert "## Token lifetimes over policy (20 min)" in strict
    assert "| https://login.acme.test | web-app |" in strict  # 1 h tokens are over a 20 min policy
    assert "_Every verified token this week lived within the policy._" in lax


def test_html_report_is_self_contained(simulated_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "weekly" / "report.html"
    status, said = _report(simulated_db, "--out", str(out), capsys=capsys)
    assert status == 0 and said.startswith(f"wrote {out} (html, ")
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")

    class Refs(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []
            self.refs: list[tuple[str, str, str | None]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(tag)
            for name, value in attrs:
                if name in {"src", "href", "xlink:href", "srcset", "action", "poster", "data"}:
                    self.refs.append((tag, name, value))

    parser = Refs()
    parser.feed(page)
    assert parser.refs == []  # nothing to fetch: no scripts, stylesheets, fonts or images
    assert "script" not in parser.tags and "link" not in parser.tags and "img" not in parser.tags
    assert "@import" not in page and "url(" not in page and "@font-face" not in page
    assert parser.tags.count("svg") >= 2  # the daily stacked bars and at least one rotation line
    assert page.count('<rect x="') > 5
    assert "<code>stale_jwks</code> Stale JWKS cache" in page  # the legend: code and label
    # A headless browser would show the same; the page never names a host to load from.
    assert not re.search(r"(src|href)\s*=", page)


def test_format_md_to_a_file_and_html_to_stdout(
    simulated_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.md"
    assert main(["report", "--db", str(simulated_db), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("# jwtriage weekly IAM health report")
    capsys.readouterr()
    assert main(["report", "--db", str(simulated_db), "--format", "html"]) == 0
    assert capsys.readouterr().out.startswith("<!doctype html>")


def test_no_token_material_in_the_report(simulated_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, md = _report(simulated_db, capsys=capsys)
    _, page = _report(simulated_db, "--format", "html", capsys=capsys)
    con = connect_readonly(simulated_db)
    try:
        fingerprints = [
            r[0] for r in con.execute("SELECT DISTINCT token_sha256 FROM classifications").fetchall() if r[0]
        ]
        subjects = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT token_claims->>'sub' FROM classifications WHERE token_claims IS NOT NULL"
            ).fetchall()
            if r[0]
        ]
        jtis = [
            r[0] for r in con.execute("SELECT DISTINCT token_claims->>'jti' FROM classifications").fetchall() if r[0]
        ]
    finally:
        con.close()
    assert fingerprints and subjects and jtis
    for text in (md, page):
        assert "eyJ" not in text  # no compact JWS (header or payload) anywhere
        assert "sha256:" not in text
        assert not any(fp[:12] in text for fp in fingerprints)
        assert not any(sub in text for sub in subjects)
        assert not any(jti in text for jti in jtis)


# -- week over week, no data, errors ------------------------------------------------------


@pytest.fixture(scope="module")
def two_weeks(simulated_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated store plus a previous week: half the events, one week earlier, and no `valid` ones;
    this week loses its `not_yet_valid` events."""
    db = tmp_path_factory.mktemp("two-weeks") / "two.duckdb"
    shutil.copyfile(simulated_db, db)
    con = duckdb.connect(str(db))
    try:
        con.execute(
            """INSERT INTO classifications SELECT * REPLACE (event_id || '-prev' AS event_id,
                                                             ts - INTERVAL 7 DAY AS ts)
               FROM classifications WHERE hash(event_id) % 2 = 0 AND cause <> 'valid'"""
        )
        con.execute("DELETE FROM classifications WHERE cause = 'not_yet_valid' AND NOT event_id LIKE '%-prev'")
    finally:
        con.close()
    return db


def test_week_over_week_change(two_weeks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, text = _report(two_weeks, capsys=capsys)
    assert status == 0
    con = connect_readonly(two_weeks)
    _, last = queries.time_range(con)
    con.close()
    assert last is not None
    this_week = week_name(last)
    previous_week = week_name(last - timedelta(days=7))
    now, before = _week_totals(two_weeks, this_week), _week_totals(two_weeks, previous_week)
    rows = {
        cells[0].strip("`"): cells
        for line in text.split("## Failures by service")[0].splitlines()
        if line.startswith("| `")
        for cells in [[c.strip() for c in line.strip("|").split(" | ")]]
    }
    expired = rows["expired"]
    assert expired[2] == f"{now['expired']:,}" and expired[4] == f"{before['expired']:,}"
    assert expired[5] == f"{(now['expired'] - before['expired']) / before['expired']:+.0%}"
    assert rows["valid"][5] == "new"
    assert rows["not_yet_valid"][5] == "gone"
    total_now, total_before = sum(now.values()), sum(before.values())
    assert (
        f"{total_now:,} rejected tokens ({(total_now - total_before) / total_before:+.0%} against {total_before:,}"
        in (text)
    )
    # The previous week has its own report, compared with an empty week before it.
    status, earlier = _report(two_weeks, "--week", previous_week, capsys=capsys)
    assert status == 0 and f"— {previous_week}" in earlier and "(new against 0 the week before)" in earlier


def test_a_week_without_data_says_so(simulated_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, text = _report(simulated_db, "--week", "2026-W10", capsys=capsys)
    assert status == 0
    assert "## No data" in text and "No events in 2026-W10" in text
    assert "--week 2026-W" in text  # points at the weeks that have data
    status, page = _report(simulated_db, "--week", "2026-W10", "--format", "html", capsys=capsys)
    assert status == 0 and "<h2>No data</h2>" in page


def test_an_empty_store_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "empty.duckdb"
    Store(db).close()
    status, text = _report(db, capsys=capsys)
    assert status == 0 and "The store holds no events yet" in text


def test_usage_errors_exit_2(simulated_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, text = _report(simulated_db, "--week", "2026-47", capsys=capsys)
    assert status == 2 and "expected an ISO week like 2026-W47" in text
    status, text = _report(tmp_path / "missing.duckdb", capsys=capsys)
    assert status == 2 and "no store at" in text
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--db", str(simulated_db), "--max-token-lifetime", "soon"])
    assert exit_info.value.code == 2
    capsys.readouterr()


def test_hostile_strings_are_escaped(simulated_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "hostile.duckdb"
    shutil.copyfile(simulated_db, db)
    con = duckdb.connect(str(db))
    try:
        con.execute(
            """UPDATE classifications SET alg = '<script>x</script>|`y`'
               WHERE event_id IN (SELECT event_id FROM classifications WHERE alg = 'HS256' LIMIT 3)"""
        )
        con.execute(
            """UPDATE classifications SET token_claims = json_merge_patch(token_claims, '{"azp": "evil|<b>bold</b>"}')
               WHERE event_id IN (SELECT event_id FROM classifications
                                  WHERE coalesce(token_claims->>'azp', token_claims->>'client_id', client_id)
                                        = 'batch-exporter')"""
        )
    finally:
        con.close()
    _, md = _report(db, capsys=capsys)
    _, page = _report(db, "--format", "html", capsys=capsys)
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;|`y`" in page
    assert "<b>bold</b>" not in page and "evil|&lt;b&gt;bold&lt;/b&gt;" in page
    assert "\\<script\\>x\\</script\\>\\|\\`y\\`" in md  # a code span cannot hold it: escaped text
    assert "evil\\|\\<b\\>bold\\</b\\>" in md
    for line in md.splitlines():
        if line.startswith("| ") and "evil" in line:
            assert line.count(" | ") == 6  # the pipe in the client id did not split the row


# -- a consumer writing while the report reads ------------------------------------------------


def test_report_while_a_consumer_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "live.duckdb"
    scenario = simulate(seed=4, events=400, hours=24.0)
    pipeline = Pipeline(scenario_config(scenario, db))
    chunks = list(chunked(scenario_envelopes(scenario), 150))
    store = Store(db, instance="consumer-1")
    try:
        half = len(chunks) // 2
        for chunk in chunks[:half]:
            store.write(pipeline.process(chunk), pipeline.timeline)
        store.publish()
        status, first = _report(db, capsys=capsys)  # the writer still holds its working file open
        assert status == 0 and "## Failures by cause" in first
        for chunk in chunks[half:]:
            store.write(pipeline.process(chunk), pipeline.timeline)
        store.publish()
        status, second = _report(db, capsys=capsys)
        assert status == 0
    finally:
        store.close()
    counts = [
        int(m.group(1).replace(",", ""))
        for m in (re.search(r"- ([\d,]+) rejected tokens", t) for t in (first, second))
        if m
    ]
    assert len(counts) == 2 and 0 < counts[0] < counts[1]


def test_render_functions_take_a_report(simulated_db: Path) -> None:
    con = connect_readonly(simulated_db)
    try:
        report = build_report(con, store="x.duckdb", now=datetime(2026, 12, 1, 9, 30, tzinfo=UTC))
    finally:
        con.close()
    md, page = render_markdown(report), render_html(report)
    assert "Generated 2026-12-01 09:30 UTC from `x.duckdb`." in md
    assert "Generated 2026-12-01 09:30 UTC from <code>x.duckdb</code>." in page


def test_a_store_without_dead_letters_reads_no_raw_rows_to_date_them(tmp_path: Path) -> None:
    """Dating dead letters reads every raw row's position (their neighbours): with none to date, nothing is read."""
    raw = tmp_path / "raw.parquet"
    con = duckdb.connect(":memory:")
    try:
        con.execute(create_statement("dead_letters"))
        con.execute(f"COPY (SELECT 't' AS source, 0 AS source_partition, 1::BIGINT AS source_offset, now() AS ts) "
                    f"TO '{raw}'")
        con.execute(f"CREATE VIEW classifications AS SELECT * FROM read_parquet('{raw}')")
        raw.unlink()  # reading the raw rows now fails
        week = datetime(2026, 3, 2, tzinfo=UTC)
        assert queries.dead_letters_in(con, week, week + timedelta(days=7)) == []
        con.execute("INSERT INTO dead_letters (source, source_partition, source_offset, received_at, kind, reason, "
                    "excerpt) VALUES ('t', 0, 5, ?, 'event', 'bad json', '{')", [week])
        with pytest.raises(duckdb.Error):  # with one, its neighbours are read
            queries.dead_letters_in(con, week, week + timedelta(days=7))
    finally:
        con.close()


def test_dead_letters_are_filed_by_event_time_not_wall_clock(simulated_store: Any) -> None:
    """Issue 18: a demo's dead letters were received today but belong to the simulated week."""
    con = connect_readonly(simulated_store.db)
    try:
        report = build_report(con)
        shown = next(s for s in report.sections if s.key == "dead_letters")
        assert sum(int(str(row[2]).replace(",", "")) for row in shown.rows) == simulated_store.dead_letters > 0
        assert all(not str(row[5].text).count("eyJ") for row in shown.rows)  # excerpts stay redacted
        received = queries.dead_letters_received(con, report.since, report.until)
        assert received == []  # the wall clock puts them in another week: the report no longer goes by it
    finally:
        con.close()
