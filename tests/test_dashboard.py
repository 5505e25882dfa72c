"""The dashboard: every page in Streamlit's AppTest on the simulated store, its data layer, and `jwtriage dashboard`.

AppTest runs the app in this process (no browser, no server); the browser test is
tests/test_dashboard_browser.py.
"""

from __future__ import annotations

import io
import re
import shutil
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from dashboards import charts, data, ui
from pipeline import queries
from pipeline.cli import build_parser
from pipeline.commands import dashboard as dashboard_cmd
from pipeline.errors import UsageError
from pipeline.io.consumer_health import ConsumerLag, RecordsLost
from pipeline.io.store import Store
from pipeline.io.store_readers import connect_readonly
from pipeline.io.store_schema import parts_dir
from pipeline.models import Cause

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "dashboards" / "app.py")
PAGES = ("views/overview.py", "views/rotations.py", "views/triage.py", "views/live.py", "views/dead_letters.py")
TITLES = {"views/overview.py": "Overview", "views/rotations.py": "Rotations", "views/triage.py": "Triage",
          "views/live.py": "Live", "views/dead_letters.py": "Dead letters"}  # fmt: skip
TOKEN = re.compile(r"eyJ[A-Za-z0-9_-]{10,}")
STEP = "rotation"  # the rotation picker (and its URL parameter)


def open_app(db: Path, monkeypatch: pytest.MonkeyPatch, page: str | None = None) -> AppTest:
    monkeypatch.setenv("JWTRIAGE_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def charts_on(at: AppTest) -> list[Any]:
    return list(at.get("vega_lite_chart"))


def metric(at: AppTest, label: str) -> str:
    for m in at.metric:
        if m.label.startswith(label):
            return str(m.value)
    raise AssertionError(f"no metric {label!r} among {[m.label for m in at.metric]}")


def all_text(at: AppTest) -> str:
    """Every string the page shows: markdown, metrics, alerts, code, and the cells of its tables."""
    parts: list[str] = []
    for kind in ("markdown", "caption", "code", "info", "warning", "success", "error", "title", "subheader"):
        parts += [str(e.value) for e in at.get(kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [d.value.to_csv() for d in at.dataframe]
    return "\n".join(parts)


def count(db: Path, sql: str, params: list[Any] | None = None) -> int:
    con = connect_readonly(db)
    try:
        return int(con.execute(sql, params or []).fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


def con_rows(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = connect_readonly(db)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def assert_clean(at: AppTest, page: str) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert [t.value for t in at.title] == [TITLES[page]]
    assert TOKEN.search(all_text(at)) is None, "something that looks like a raw token is on the page"


# -- every page on the simulated store ------------------------------------------------------------


def test_overview_shows_the_trend_rotations_and_totals(simulated_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(simulated_db, monkeypatch)  # the default page
    assert_clean(at, "views/overview.py")
    assert len(charts_on(at)) == 2  # the rotation lane above the stacked trend
    total = count(simulated_db, "SELECT count(*) FROM classifications")
    assert metric(at, "Failures") == f"{total:,}"  # the default range (24 h) covers the simulated day
    causes = at.dataframe[0].value
    assert set(causes["cause"]) <= {c.value for c in Cause} and causes["failures"].sum() == total
    assert "Stale JWKS cache" in set(causes["meaning"])
    text = all_text(at)
    assert "refresh the JWKS once on an unknown kid" in text  # stale_jwks' remediation
    assert "relative to the newest event" in text  # which reference time is used


def test_an_overview_filter_changes_the_numbers(simulated_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(simulated_db, monkeypatch)
    before = metric(at, "Failures")
    at.multiselect(key="service").set_value(["payments-api"]).run()
    assert_clean(at, "views/overview.py")
    want = count(simulated_db, "SELECT count(*) FROM classifications WHERE service = 'payments-api'")
    assert metric(at, "Failures") == f"{want:,}" != before
    at.selectbox(key="range").set_value("Last hour").run()  # payments-api may be absent: it stays chosen
    assert_clean(at, "views/overview.py")
    assert at.multiselect(key="service").value == ["payments-api"]
    at.selectbox(key="range").set_value("Last 24 hours").run()
    at.multiselect(key="cause").set_value(["stale_jwks"]).run()
    want = count(
        simulated_db,
        "SELECT count(*) FROM classifications WHERE service = 'payments-api' AND cause = 'stale_jwks'",
    )
    assert metric(at, "Failures") == f"{want:,}"
    assert list(at.dataframe[0].value["cause"]) == ["stale_jwks"]


def test_an_overview_time_range_compares_with_the_period_before(
    simulated_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app(simulated_db, monkeypatch)
    at.selectbox(key="range").set_value("Last 6 hours").run()
    assert_clean(at, "views/overview.py")
    failures = next(m for m in at.metric if m.label == "Failures")
    con = connect_readonly(simulated_db)
    try:
        last = queries.store_summary(con)["last_ts"]
        end = last + timedelta(microseconds=1)
        now = queries.total_events(con, queries.Filters(since=end - timedelta(hours=6), until=end))
        before = queries.total_events(
            con, queries.Filters(since=end - timedelta(hours=12), until=end - timedelta(hours=6))
        )
    finally:
        con.close()
    assert failures.value == f"{now:,}"
    assert failures.delta is not None and failures.delta.startswith(f"{now - before:+,}")
    at.selectbox(key="range").set_value("Custom…").run()
    assert_clean(at, "views/overview.py")
    assert at.slider(key="custom").value


def test_rotations_follow_a_step_to_each_service_verdict(simulated_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(simulated_db, monkeypatch, "views/rotations.py")
    assert_clean(at, "views/rotations.py")
    options = at.selectbox(key=STEP).options
    assert len(options) == 6 and " removed " in options[at.selectbox(key=STEP).index]  # newest with failures
    assert at.query_params["rotation"].startswith("removed:")  # the chosen rotation is in the URL
    assert len(charts_on(at)) == 1
    verdicts = at.dataframe[0].value
    assert set(verdicts["verdict"]) <= {"recovered", "still failing", "never affected"}
    assert "recovered" in set(verdicts["verdict"]) and "never affected" in set(verdicts["verdict"])
    assert "time to recover" in verdicts.columns and "JWKS cache age (reported median / max)" in verdicts.columns
    assert "cache lifetime inferred ≥" not in verdicts.columns  # a removed key has no stale_jwks to infer from
    retired = at.dataframe[1].value  # tokens still signed by the retired key
    assert retired["rejections"].sum() > 0 and "Tokens still signed by the retired key" in all_text(at)

    added = next(n for n, label in enumerate(options) if " added corp-rs" in label)
    at.selectbox(key=STEP).select_index(added).run()
    assert_clean(at, "views/rotations.py")
    verdicts = at.dataframe[0].value
    assert "cache lifetime inferred ≥" in verdicts.columns  # stale_jwks failures bound the cache lifetime
    stale = verdicts[verdicts["failures"] > 0]
    assert not stale.empty and all("stale_jwks" in c for c in stale["causes"])
    assert at.query_params["rotation"] == "added:corp-rs-2026-11@login.acme.test"

    quiet = next(n for n, label in enumerate(options) if "no failures" in label)
    at.selectbox(key=STEP).select_index(quiet).run()
    assert_clean(at, "views/rotations.py")
    assert not charts_on(at) and any("No service failed" in s.value for s in at.success)
    assert set(at.dataframe[0].value["verdict"]) == {"never affected"}


def test_a_key_added_view_shows_no_retired_key_table(simulated_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the tables of the step's kind: an added key's failures are stale_jwks/unpublished_key, not retired_key."""
    options = open_app(simulated_db, monkeypatch, "views/rotations.py").selectbox(key=STEP).options
    for option, label in enumerate(options):
        at = open_app(simulated_db, monkeypatch, "views/rotations.py")
        at.selectbox(key=STEP).select_index(option).run()
        assert_clean(at, "views/rotations.py")
        retired_shown = "Tokens still signed by the retired key" in [h.value for h in at.subheader]
        if " added " in label:
            assert not retired_shown and len(at.dataframe) == 1, label
            assert "retired key" not in all_text(at).lower(), label
        else:
            assert " removed " in label
            assert retired_shown or "no failures" in label, label


def test_a_rotation_link_opens_that_rotation(simulated_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = AppTest.from_file(APP, default_timeout=30)
    monkeypatch.setenv("JWTRIAGE_DB", str(simulated_db))
    at.query_params.update(rotation="added:partner-ed-02@id.partner.test", follow="6h", quiet="15m")
    at.switch_page("views/rotations.py").run()
    assert_clean(at, "views/rotations.py")
    assert at.selectbox(key=STEP).value == "added:partner-ed-02@id.partner.test"
    assert at.select_slider(key="follow").value == timedelta(hours=6)
    assert at.select_slider(key="quiet").value == timedelta(minutes=15)
    assert "Key **added** `partner-ed-02`" in all_text(at)
    assert at.query_params == {"rotation": "added:partner-ed-02@id.partner.test", "follow": "6h", "quiet": "15m"}

    stale = AppTest.from_file(APP, default_timeout=30)  # a link to a rotation the store does not hold
    stale.query_params["rotation"] = "added:gone@nowhere.test"
    stale.switch_page("views/rotations.py").run()
    assert not stale.exception and any("not among the rotations" in w.value for w in stale.warning)
    assert stale.query_params["rotation"].startswith("removed:")  # the URL now says what the page shows


def test_triage_compares_ranks_drills_down_and_shows_evidence(
    simulated_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app(simulated_db, monkeypatch, "views/triage.py")
    assert_clean(at, "views/triage.py")
    last = count(
        simulated_db,
        "SELECT count(*) FROM classifications WHERE ts > (SELECT max(ts) FROM classifications) - INTERVAL 1 HOUR",
    )
    assert metric(at, "Failures, last hour") == f"{last:,}"
    assert len(charts_on(at)) == 4  # this hour by cause, then services, clients and kids by cause
    assert any("No past days to compare with" in i.value for i in at.info)  # the store holds one day
    assert "No attack patterns" in all_text(at)  # none in the last hour; the earlier ones sit in an expander
    events = at.dataframe[-2].value
    assert len(events) == min(last, 500) and events["detail"].notna().all()
    assert "token_fp" in events.columns and events["token_fp"].dropna().str.fullmatch(r"[0-9a-f]{12}").all()

    at.multiselect(key="ev_cause").set_value(["expired"]).run()
    assert_clean(at, "views/triage.py")
    events = at.dataframe[-2].value
    assert len(events) and set(events["cause"]) == {"expired"}
    evidence = at.dataframe[-1].value
    assert {"event_id", "token fingerprint", "validator said"} <= set(evidence["field"])
    assert "client is not refreshing tokens" in all_text(at)  # expired's remediation beside the evidence


def test_triage_shows_attacks_with_advice(simulated_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(simulated_db, monkeypatch, "views/triage.py")
    at.selectbox(key="window").set_value(timedelta(hours=12)).run()
    assert_clean(at, "views/triage.py")
    text = all_text(at)
    assert "carry an attack pattern" in text and "alg_none" in text
    assert "block the client and confirm every validator rejects alg none" in text  # ATTACK_ADVICE


def test_the_attack_table_names_clients_and_counts_events_without_one(
    simulated_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app(simulated_db, monkeypatch, "views/triage.py")
    at.selectbox(key="window").set_value(timedelta(hours=24)).run()
    assert_clean(at, "views/triage.py")
    table = next(d.value for d in at.dataframe if "no client id" in d.value.columns)
    assert "clients" not in table.columns  # a bare count ("clients 1") named nobody
    end = count(simulated_db, "SELECT epoch_us(max(ts)) + 1 FROM classifications")
    window = "ts >= make_timestamp(?) - INTERVAL 24 HOUR AND ts < make_timestamp(?)"
    for attack, named, without in zip(table["attack"], table["clients (failures)"], table["no client id"], strict=True):
        sql = f"SELECT count(*) FROM classifications WHERE list_contains(attacks, ?) AND {window}"
        want = count(simulated_db, sql + " AND client_id IS NULL", [attack, end, end])
        assert without == want, attack
        top = con_rows(
            simulated_db,
            f"""SELECT client_id, count(*) FROM classifications WHERE list_contains(attacks, ?) AND {window}
                AND client_id IS NOT NULL GROUP BY client_id ORDER BY count(*) DESC, client_id LIMIT 1""",
            [attack, end, end],
        )
        if top:
            assert named.startswith(f"{top[0][0]} ({top[0][1]:,})"), (attack, named)
    assert table["no client id"].sum() > 0 and table["clients (failures)"].str.len().gt(0).any()


def test_triage_opens_a_past_window_from_its_url(simulated_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`/triage?window=3h&until=…` shows that window (as `jwtriage triage --until` does), filters included."""
    monkeypatch.setenv("JWTRIAGE_DB", str(simulated_db))
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params.update(window="3h", until="2026-11-23T12:00Z", ev_cause=["expired", "clock_skew"], days="3")
    at.switch_page("views/triage.py").run()
    assert_clean(at, "views/triage.py")
    assert at.selectbox(key="window").value == timedelta(hours=3)
    assert at.datetime_input(key="until").value == datetime(2026, 11, 23, 12, 0)
    assert at.multiselect(key="ev_cause").value == ["expired", "clock_skew"] and at.slider(key="days").value == 3
    want = count(
        simulated_db,
        "SELECT count(*) FROM classifications WHERE ts >= TIMESTAMPTZ '2026-11-23 09:00:00+00' "
        "AND ts < TIMESTAMPTZ '2026-11-23 12:00:00+00'",
    )
    assert metric(at, "Failures, 3 hours to Mon 23 Nov 12:00 UTC") == f"{want:,}"
    assert "Mon 23 Nov 09:00 UTC – Mon 23 Nov 12:00 UTC" in all_text(at)
    events = at.dataframe[-2].value
    assert set(events["cause"]) <= {"expired", "clock_skew"} and len(events)
    assert events["time"].str.contains(r"Mon 23 Nov (?:09|10|11):").all()  # only the window's events

    # Changing a filter writes the URL; going back to "now" takes `until` out of it.
    at.selectbox(key="window").set_value(timedelta(hours=6)).run()
    at.multiselect(key="ev_cause").set_value(["expired"]).run()
    assert at.query_params == {"window": "6h", "until": "2026-11-23T12:00Z", "ev_cause": "expired", "days": "3"}
    at.datetime_input(key="until").set_value(None).run()
    assert_clean(at, "views/triage.py")
    assert "until" not in at.query_params and metric(at, "Failures, last 6 hours")


def test_a_broken_link_falls_back_to_the_defaults(simulated_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWTRIAGE_DB", str(simulated_db))
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params.update(window="5h", until="yesterday", days="many")
    at.switch_page("views/triage.py").run()
    assert_clean(at, "views/triage.py")
    assert at.selectbox(key="window").value == timedelta(hours=1) and at.datetime_input(key="until").value is None
    assert metric(at, "Failures, last hour") and at.query_params == {}  # the URL says what the page shows
    early = AppTest.from_file(APP, default_timeout=30)  # a time before the store: its first minute
    early.query_params.update(until="2020-01-01T00:00Z")
    early.switch_page("views/triage.py").run()
    assert_clean(early, "views/triage.py")
    assert early.datetime_input(key="until").value == datetime(2026, 11, 23, 0, 0)


def test_overview_filters_round_trip_through_the_url(simulated_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWTRIAGE_DB", str(simulated_db))
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params.update(range="6h", service="payments-api", cause=["stale_jwks", "expired"])
    at.run()
    assert_clean(at, "views/overview.py")
    assert at.selectbox(key="range").value == "Last 6 hours"
    assert at.multiselect(key="service").value == ["payments-api"]
    assert at.multiselect(key="cause").value == ["stale_jwks", "expired"]
    assert set(at.dataframe[0].value["cause"]) <= {"stale_jwks", "expired"}
    at.multiselect(key="service").set_value(["payments-api", "orders-api"]).run()
    at.selectbox(key="range").set_value("Custom…").run()
    assert_clean(at, "views/overview.py")
    params = at.query_params
    assert params["range"] == "custom" and params["service"] == ["payments-api", "orders-api"]
    assert len(params["custom"]) == 2 and all(re.fullmatch(r"2026-11-2\dT\d\d:\d\dZ", t) for t in params["custom"])
    reopened = AppTest.from_file(APP, default_timeout=30)  # the URL pasted elsewhere opens the same view
    reopened.query_params.update(params)
    reopened.run()
    assert_clean(reopened, "views/overview.py")
    assert metric(reopened, "Failures") == metric(at, "Failures")
    assert reopened.slider(key="custom").value == at.slider(key="custom").value
    at.selectbox(key="range").set_value("Last 24 hours").run()  # the default leaves the URL
    assert "range" not in at.query_params and "custom" not in at.query_params


def test_the_dead_letters_page_shows_reasons_and_redacted_excerpts(
    simulated_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app(simulated_db, monkeypatch, "views/dead_letters.py")
    assert_clean(at, "views/dead_letters.py")
    total = count(simulated_db, "SELECT count(*) FROM dead_letters")
    assert total and metric(at, "Dead letters") == f"{total:,}"
    reasons, records = at.dataframe[0].value, at.dataframe[1].value
    assert reasons["records"].sum() == total and "ts: Field required" in set(reasons["reason"])
    assert len(records) == total and records["excerpt (redacted)"].str.contains("<redacted>").any()
    assert {"source", "partition", "offset", "reason"} <= set(records.columns)
    at.multiselect(key="reason").set_value(["ts: Field required"]).run()
    assert_clean(at, "views/dead_letters.py")
    want = count(simulated_db, "SELECT count(*) FROM dead_letters WHERE reason = 'ts: Field required'")
    assert len(at.dataframe[1].value) == want and set(at.dataframe[1].value["reason"]) == {"ts: Field required"}
    assert at.query_params == {"reason": "ts: Field required"}


def test_the_dead_letters_page_with_none_and_with_nothing_else(
    simulated_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = tmp_path / "clean.duckdb"
    shutil.copy(simulated_db, clean)
    with Store(clean) as writer:
        writer.con.execute("DELETE FROM dead_letters")
    at = open_app(clean, monkeypatch, "views/dead_letters.py")
    assert_clean(at, "views/dead_letters.py")
    assert any("No dead letters" in s.value for s in at.success)

    only = tmp_path / "only-dead-letters.duckdb"  # every record was bad: nothing judged, but much to see
    shutil.copy(simulated_db, only)
    with Store(only) as writer:
        writer.con.execute("DELETE FROM classifications")
    at = open_app(only, monkeypatch, "views/dead_letters.py")
    assert_clean(at, "views/dead_letters.py")
    assert metric(at, "Dead letters") == f"{count(simulated_db, 'SELECT count(*) FROM dead_letters'):,}"


def test_live_shows_the_newest_events(simulated_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(simulated_db, monkeypatch, "views/live.py")
    assert_clean(at, "views/live.py")
    assert len(charts_on(at)) == 1
    assert any("No consumer has written this store" in i.value for i in at.info)  # a demo day: no heartbeat
    recent = at.dataframe[0].value
    assert len(recent) == 25 and "detail" in recent.columns
    assert at.toggle(key="live_auto").value is True


def test_live_picks_up_what_a_writer_adds_between_refreshes(
    simulated_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "growing.duckdb"
    shutil.copy(simulated_db, db)
    at = open_app(db, monkeypatch, "views/live.py")
    before = at.dataframe[0].value["time"].iloc[0]
    with Store(db) as writer:  # the consumer writes a batch between two refreshes (the dashboard holds nothing)
        writer.con.execute(
            """INSERT INTO classifications SELECT * REPLACE (event_id || '-later' AS event_id,
                                                             ts + INTERVAL 2 MINUTE AS ts)
               FROM classifications ORDER BY ts DESC LIMIT 5"""
        )
    at.run()  # what the fragment's timer does every few seconds
    assert_clean(at, "views/live.py")
    after = at.dataframe[0].value["time"].iloc[0]
    assert after != before and len(at.dataframe[0].value) == 25


def test_live_judges_the_consumer_by_its_heartbeat_not_by_event_times(
    simulated_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: an idle, current consumer was reported "idle or not running" because its events were old."""
    db = tmp_path / "beating.duckdb"
    shutil.copy(simulated_db, db)
    with Store(db) as writer:
        writer.instance = "c0"
        writer.beat(datetime.now(UTC) - timedelta(seconds=3))  # the simulated day's events are days old
    at = open_app(db, monkeypatch, "views/live.py")
    assert_clean(at, "views/live.py")
    assert any("running and current" in i.value and "the stream is quiet" in i.value for i in at.info)
    assert not any("not running" in i.value for i in [*at.info, *at.warning])
    with Store(db) as writer:
        writer.instance = "c0"
        writer.beat(datetime.now(UTC) - timedelta(minutes=10))  # it stopped beating ten minutes ago
    at.run()
    assert any("has not been heard from for 10" in w.value for w in at.warning)


def test_live_says_when_a_running_consumer_is_far_behind_its_topics(
    simulated_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22: in a burst the consumer beats and writes rows seconds old, yet is minutes behind."""
    db = tmp_path / "behind.duckdb"
    shutil.copy(simulated_db, db)
    now = datetime.now(UTC)
    with Store(db) as writer:
        writer.instance = "c0"
        writer.note_lag(ConsumerLag(now - timedelta(seconds=4), 400_000, 2_000.0))
        writer.beat(now - timedelta(seconds=2))
    at = open_app(db, monkeypatch, "views/live.py")
    assert_clean(at, "views/live.py")
    assert any(m.label == "Behind its topics" and m.value == "400,000 records" for m in at.metric)
    warning = next(w.value for w in at.warning if "records behind" in w.value)
    assert "400,000 records behind its topics" in warning and "2,000 events/s" in warning
    with Store(db) as writer:  # caught up: a lag of a second's work is no warning
        writer.instance = "c0"
        writer.note_lag(ConsumerLag(datetime.now(UTC), 900, 2_000.0))
        writer.beat()
    at.run()
    assert any(m.label == "Behind its topics" and m.value == "900 records" for m in at.metric)
    assert not any("records behind" in w.value for w in at.warning)


def test_live_says_how_many_records_the_broker_deleted_before_the_consumer_read_them(
    simulated_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22: retention deleted 12.5% of a burst before it was read, and every page looked whole."""
    db = tmp_path / "holed.duckdb"
    shutil.copy(simulated_db, db)
    at = open_app(db, monkeypatch, "views/live.py")
    assert not any("lost to broker retention" in m.value for m in [*at.warning, *at.caption])  # none noted: none said
    now = datetime.now(UTC)
    with Store(db) as writer:
        for instance, partition, records, first in (("c0", 0, 201_684, 392_018), ("c1", 2, 190_498, 403_240)):
            writer.instance = instance
            writer.note_lost(RecordsLost(now - timedelta(minutes=partition + 1), records, "auth.failures", partition,
                                         first, first + records - 1))
            writer.beat(now)
    at.run()
    assert_clean(at, "views/live.py")
    warning = next(w.value for w in at.warning if "lost to broker retention" in w.value)
    assert warning.startswith("392,182 records lost to broker retention")
    assert "201,684 records of auth.failures[0], offsets 392,018–593,701" in warning  # the newest hole
    assert "raise retention.ms/bytes or add consumers" in warning
    with Store(db) as writer:  # two days later the hole is history: said, but no longer a warning
        for instance in ("c0", "c1"):
            writer.instance = instance
            writer.note_lost(RecordsLost(now - timedelta(days=2), 5, "auth.failures", 0 if instance == "c0" else 2,
                                         1, 5))
            writer.beat(now)
    at.run()
    assert not any("lost to broker retention" in w.value for w in at.warning)
    assert any(c.value.startswith("10 records lost to broker retention") for c in at.caption)


def test_no_page_keeps_the_store_open(simulated_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Readers open, ask, close: after every page has run, a writer can open the store at once."""
    db = tmp_path / "copy.duckdb"
    shutil.copy(simulated_db, db)
    at = open_app(db, monkeypatch)
    for page in PAGES:
        at.switch_page(page).run()
        assert_clean(at, page)
    writer = Store(db)  # raises when any connection with another configuration is still open
    writer.close()


def test_a_store_held_by_its_writer_gets_a_warning_not_a_traceback(
    simulated_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "busy.duckdb"
    shutil.copy(simulated_db, db)
    monkeypatch.setattr(data, "OPEN_PAUSE", 0.01)
    with Store(db):  # a writer holds the store in this process: a read-only open is refused
        at = open_app(db, monkeypatch, "views/live.py")
        assert not at.exception
        assert any("Cannot read the store" in w.value for w in at.warning)
        at.switch_page("views/overview.py").run()
        assert not at.exception and any("Cannot read the store" in w.value for w in at.warning)


def test_a_store_published_by_consumers(simulated_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Consumers publish snapshots in `<db>.parts/`; the dashboard reads them through the same --db."""
    db = tmp_path / "consumed.duckdb"  # no file here: only the published parts
    parts = parts_dir(db)
    parts.mkdir()
    # Consumers split the events by partition: each part holds its own half, and every key.
    for name, keep in (("consumer-a.duckdb", 0), ("consumer-b.duckdb", 1)):
        shutil.copy(simulated_db, parts / name)
        con = duckdb.connect(str(parts / name))
        con.execute("DELETE FROM classifications WHERE hash(event_id) % 2 <> ?", [keep])
        con.close()
    total = count(simulated_db, "SELECT count(*) FROM classifications")
    at = open_app(db, monkeypatch)
    assert_clean(at, "views/overview.py")
    assert metric(at, "Failures") == f"{total:,}"
    for page in PAGES[1:]:
        at.switch_page(page).run()
        assert_clean(at, page)


# -- empty, missing and foreign stores -------------------------------------------------------


@pytest.fixture
def empty_db(tmp_path: Path) -> Path:
    db = tmp_path / "empty.duckdb"
    Store(db).close()
    return db


@pytest.mark.parametrize("page", PAGES)
def test_an_empty_store_gets_a_friendly_message(empty_db: Path, page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_app(empty_db, monkeypatch, page)
    assert_clean(at, page)
    assert any("Nothing to show yet" in i.value for i in at.info)
    assert f"jwtriage demo --db {empty_db}" in all_text(at)


@pytest.mark.parametrize("page", PAGES)
def test_a_missing_store_says_how_to_create_one(tmp_path: Path, page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere.duckdb"
    at = open_app(missing, monkeypatch, page)
    assert_clean(at, page)
    text = all_text(at)
    assert "No store yet" in text and f"jwtriage demo --db {missing}" in text and "jwtriage consume" in text
    assert not missing.exists()  # a reader never creates the store


def test_a_duckdb_file_that_is_not_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    at = open_app(other, monkeypatch)
    assert not at.exception and any("not a jwtriage store" in w.value for w in at.warning)


# -- the data layer ----------------------------------------------------------------------------


def test_the_store_path_comes_from_db_then_the_environment_then_the_default() -> None:
    assert data.store_path_from(["--db", "a.duckdb"], {"JWTRIAGE_DB": "b.duckdb"}) == Path("a.duckdb")
    assert data.store_path_from(["--db=c.duckdb"], {}) == Path("c.duckdb")
    assert data.store_path_from(["-q", "--dbx", "x"], {"JWTRIAGE_DB": "b.duckdb"}) == Path("b.duckdb")
    assert data.store_path_from([], {}) == Path("jwtriage.duckdb")


def test_the_reference_time_is_now_only_while_events_arrive() -> None:
    now = datetime(2026, 11, 29, 12, 0, 30, tzinfo=UTC)
    live = data.reference_time(now - timedelta(seconds=20), now)
    assert live.live and live.at == now and live.end == datetime(2026, 11, 29, 12, 1, tzinfo=UTC)
    old = data.reference_time(now - timedelta(days=3), now)
    assert not old.live and old.at == now - timedelta(days=3) and old.end > old.at


@pytest.mark.parametrize(
    "offset",
    [timedelta(minutes=10), timedelta(hours=2), timedelta(days=3), -timedelta(minutes=10), -timedelta(hours=5)],
)
def test_triage_and_the_dashboard_end_the_last_n_at_the_same_moment(simulated_db: Path, offset: timedelta) -> None:
    """One rule (`pipeline.triage.window`): now while the store is live, else its last event; a stall 2 h ago too."""
    from pipeline.triage import summarize

    con = connect_readonly(simulated_db)
    try:
        last = queries.time_range(con)[1].astimezone(UTC)
        now = last + offset
        triage = summarize(con, timedelta(hours=6), now=now)
    finally:
        con.close()
    ref = data.reference_time(last, now)
    assert triage.reference == ref.at
    assert (triage.reference_source == "now") == (ref.live and ref.at == now)
    assert not ref.live or ref.end - timedelta(minutes=1) <= triage.until <= ref.end  # the dashboard rounds up


def test_buckets_line_up_with_duckdb(simulated_db: Path) -> None:
    assert data.choose_bucket(timedelta(hours=1)) == "1 minute"
    assert data.choose_bucket(timedelta(hours=24)) == "15 minutes"
    assert data.choose_bucket(timedelta(days=30)) == "6 hours"
    assert data.choose_bucket(timedelta(days=365)) == "1 day"
    since = datetime(2026, 11, 23, 3, 7, tzinfo=UTC)
    for bucket in data.BUCKET_WIDTH:
        with data.reading(simulated_db) as con:
            rows = queries.failures_over_time(
                con, bucket, queries.Filters(since=since, until=since + timedelta(days=2))
            )
        grid = set(data.bucket_grid(since, since + timedelta(days=2), bucket))
        assert {r["bucket"] for r in rows} <= grid, bucket


def test_overview_series_is_zero_filled_and_sums_to_the_total(simulated_db: Path) -> None:
    status = data.load_status(str(simulated_db))
    assert status.ok and status.last_ts is not None
    end = status.last_ts + timedelta(microseconds=1)
    view = data.load_overview(str(simulated_db), end - timedelta(hours=6), end)
    assert view.series["events"].sum() == view.causes["events"].sum()
    per_bucket = view.series.groupby("cause")["bucket"].count()
    assert per_bucket.nunique() == 1  # every cause has every bucket, zeros included
    assert (view.series["per_minute"] == view.series["events"] / 5).all()  # 5-minute buckets for 6 h


def test_rotation_verdicts() -> None:
    end, quiet = datetime(2026, 11, 23, 12, tzinfo=UTC), timedelta(minutes=30)
    assert data.verdict(0, None, end, quiet) == "never affected"
    assert data.verdict(5, end - timedelta(minutes=10), end, quiet) == "still failing"
    assert data.verdict(5, end - timedelta(hours=2), end, quiet) == "recovered"
    steps = [
        {"issuer": "i", "kid": "new", "action": "added", "ts": end},
        {"issuer": "i", "kid": "old", "action": "removed", "ts": end + timedelta(hours=5)},
        {"issuer": "j", "kid": "x", "action": "removed", "ts": end + timedelta(hours=1)},
    ]
    assert data.retired_by(steps[0], steps) == steps[1]
    assert data.retired_by(steps[2], steps) == steps[2]
    assert data.retired_by({**steps[0], "issuer": "k"}, steps) is None


def test_the_trend_chart_marks_rotations_by_action(simulated_db: Path) -> None:
    status = data.load_status(str(simulated_db))
    assert status.last_ts is not None
    end = status.last_ts + timedelta(microseconds=1)
    view = data.load_overview(str(simulated_db), end - timedelta(hours=24), end)
    spec = charts.failures_chart(view.series, view.rotations, end - timedelta(hours=24), end, view.bucket).to_dict()
    area, rules = spec["layer"]
    assert area["mark"]["type"] == "area" and area["encoding"]["y"]["stack"] == "zero"
    assert rules["mark"]["type"] == "rule" and rules["encoding"]["stroke"]["field"] == "action"
    lane = charts.rotation_lane(view.rotations, end - timedelta(hours=24), end).to_dict()
    assert lane["layer"][0]["encoding"]["y"]["field"] == "issuer_host"  # one lane per issuer
    assert len(view.rotations) == 6


def test_every_cause_has_a_colour_a_place_and_a_label() -> None:
    assert set(ui.CAUSE_ORDER) == {c.value for c in Cause} == set(ui.CAUSE_COLORS)
    assert ui.cause_name("stale_jwks") == "stale_jwks · Stale JWKS cache"
    assert ui.fmt_seconds(None) == "–" and ui.fmt_seconds(5000) == "83 min"


# -- jwtriage dashboard ------------------------------------------------------------------------


def test_the_dashboard_command_runs_streamlit_on_localhost() -> None:
    args = build_parser().parse_args(["dashboard", "--db", "x.duckdb"])
    assert (args.host, args.port) == ("127.0.0.1", 8501)
    command = dashboard_cmd.streamlit_command(Path("dashboards/app.py"), Path("/s/x.duckdb"), args.host, args.port)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", "dashboards/app.py"]
    flags = dict(zip(command[5:-3:2], command[6:-3:2], strict=True))
    assert flags == {
        "--server.address": "127.0.0.1",
        "--server.port": "8501",
        "--server.headless": "true",
        "--browser.gatherUsageStats": "false",
        "--client.toolbarMode": "viewer",  # no Deploy button
    }
    assert command[-3:] == ["--", "--db", "/s/x.duckdb"]
    assert (dashboard_cmd.dashboards_dir() / "app.py").is_file()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dashboard", "--port", "70000"])


def test_the_dashboard_command_passes_the_store_and_stops_streamlit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[list[str], dict[str, str]]] = []

    class FakeStreamlit:
        def __init__(self, command: list[str], env: dict[str, str]) -> None:
            started.append((command, env))

        def wait(self, timeout: float | None = None) -> int:
            return 0

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(dashboard_cmd.subprocess, "Popen", FakeStreamlit)
    monkeypatch.delenv("JWTRIAGE_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    args = build_parser().parse_args(["dashboard", "--db", "store.duckdb", "--port", "8600"])
    assert args.handler(args, io.BytesIO(), out) == 0
    ((command, env),) = started
    assert env["JWTRIAGE_DB"] == str(tmp_path / "store.duckdb") and command[-1] == str(tmp_path / "store.duckdb")
    assert "http://127.0.0.1:8600" in out.getvalue()


def test_the_dashboard_command_says_when_the_app_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard_cmd, "dashboards_dir", lambda: tmp_path / "dashboards")
    args = build_parser().parse_args(["dashboard"])
    with pytest.raises(UsageError, match="dashboard is missing"):
        args.handler(args, io.BytesIO(), io.StringIO())


# -- the benchmark script, and a store of several days ----------------------------------------


@pytest.fixture(scope="module")
def bench_module() -> Iterator[Any]:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import bench_dashboard

        yield bench_dashboard
    finally:
        sys.path.remove(str(REPO / "bench"))


@pytest.fixture(scope="module")
def three_days(simulated_db: Path, bench_module: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated day copied onto three days by the benchmark's builder (12,000 events)."""
    target = tmp_path_factory.mktemp("bench") / "three-days.duckdb"
    bench_module.build_store(simulated_db, target, rows=12_000, days=3)
    return target


def test_the_benchmark_builds_a_store_and_reports_every_page(three_days: Path, bench_module: Any) -> None:
    assert bench_module.store_rows(three_days) == 12_000
    assert count(three_days, "SELECT count(DISTINCT event_id) FROM classifications") == 12_000
    con = connect_readonly(three_days)
    try:
        assert len({s["ts"].date() for s in queries.rotations(con)}) == 3  # each day has its own rotations
    finally:
        con.close()
    out = io.StringIO()
    assert bench_module.report(bench_module.measure(three_days, repeat=1), out)
    text = out.getvalue()
    for page in ("baseline", "overview", "rotations", "triage", "live"):
        assert page in text
    assert "target: p95 under 1000 ms on every page: met" in text


def test_triage_compares_with_past_days_and_overview_with_the_day_before(
    three_days: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app(three_days, monkeypatch, "views/triage.py")
    assert_clean(at, "views/triage.py")
    assert metric(at, "Usual for this hour (median of 2 days)")
    table = at.dataframe[0].value
    assert {"now", "yesterday", "usual (median)"} <= set(table.columns)
    at.switch_page("views/overview.py").run()
    assert_clean(at, "views/overview.py")
    failures = next(m for m in at.metric if m.label == "Failures")
    assert failures.delta and "previous period" in at.dataframe[0].value.columns
