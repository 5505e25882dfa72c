"""`jwtriage triage` on the simulated store (rotations, spikes, attacks) and on an empty one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import cli, queries
from pipeline.causes import ATTACK_ADVICE, REMEDIATION
from pipeline.commands.triage import BUCKETS, parse_since, sparkline, summarize
from pipeline.io.store import Store
from pipeline.io.store_readers import connect_readonly
from pipeline.models import Attack, Cause


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("JWTRIAGE_DB", "JWTRIAGE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no ./jwtriage.toml
    monkeypatch.setenv("COLUMNS", "400")


def triage(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["triage", *args])
    out, err = capsys.readouterr()
    return status, out, err


def triage_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    status, out, err = triage(capsys, *args, "--json")
    assert status == 0, err
    assert len(out.splitlines()) == 1
    return dict(json.loads(out))


def flat(text: str) -> str:
    return " ".join(text.split())


def _store_span(db: Path) -> tuple[datetime, datetime]:
    con = connect_readonly(db)
    try:
        first, last = queries.time_range(con)
    finally:
        con.close()
    assert first is not None and last is not None
    return first.astimezone(UTC), last.astimezone(UTC)


def _rotation_kids(db: Path, action: str) -> set[str]:
    con = connect_readonly(db)
    try:
        return {r["kid"] for r in queries.rotations(con) if r["action"] == action}
    finally:
        con.close()


# -- a window with key removals: retired_key is new, the removal is named ------------------------


def test_the_spike_and_the_rotation_that_caused_it_are_named(
    simulated_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = triage_json(capsys, "--db", str(simulated_db), "--since", "12h")
    spikes = {s["cause"]: s for s in data["spikes"]}
    assert "retired_key" in spikes
    retired = spikes["retired_key"]
    assert retired["new"] and retired["events"] >= 20 and retired["since"] is not None
    assert retired["rotation"]["action"] == "removed"
    assert retired["rotation"]["kid"] in _rotation_kids(simulated_db, "removed")
    assert retired["remediation"] == REMEDIATION[Cause.RETIRED_KEY]

    status, out, _ = triage(capsys, "--db", str(simulated_db), "--since", "12h")
    assert status == 0
    text = flat(out)
    assert data["read_first"][0].startswith("Attack burst:")  # the window holds an attack: it comes first
    first_line = data["read_first"][1]
    assert first_line.startswith("retired_key appeared")
    assert f"removed kid {retired['rotation']['kid']}" in first_line
    assert flat(first_line) in text
    assert "Read first" in text and "Spikes" in text and "Key rotations in or near the window" in text
    assert f"removed {retired['rotation']['kid']}" in text
    assert "▲ new" in text


def test_a_window_with_a_rotation_and_the_issuer_signing_before_publishing(
    simulated_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _ = _store_span(simulated_db)
    until = first.replace(minute=0, second=0, microsecond=0) + timedelta(hours=10)
    data = triage_json(capsys, "--db", str(simulated_db), "--since", "6h", "--until", until.isoformat())
    assert data["reference_source"] == "until"
    spikes = {s["cause"]: s for s in data["spikes"]}
    assert "unpublished_key" in spikes
    step = spikes["unpublished_key"]["rotation"]
    assert step["action"] == "added" and step["kid"] in _rotation_kids(simulated_db, "added")
    rotations = {(r["action"], r["kid"]): r for r in data["rotations"]}
    assert rotations[("added", step["kid"])]["in_window"]
    assert rotations[("added", step["kid"])]["failures"] > 0
    # the issuer signed before publishing: the first failures precede the step
    assert spikes["unpublished_key"]["since"] < step["ts"]
    assert any(line.startswith("unpublished_key appeared") and "before" in line for line in data["read_first"])
    status, out, _ = triage(capsys, "--db", str(simulated_db), "--since", "6h", "--until", until.isoformat())
    assert status == 0 and f"added {step['kid']}" in out and "signed with the key before publishing it" in flat(out)


def test_json_structure(simulated_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = triage_json(capsys, "--db", str(simulated_db), "--since", "1d")
    for key in ("since", "until", "reference", "reference_source", "total", "causes", "spikes", "rotations"):
        assert key in data
    assert data["reference_source"] == "store_end"  # simulated data ends days before the wall clock
    assert data["window_seconds"] == 86400 and data["message"] is None
    assert data["total"]["window"] == sum(c["events"] for c in data["causes"]) > 2_800
    assert set(data["total"]) == {"window", "previous", "day_before", "week_before"}
    assert data["total"]["week_before"] is None  # the store does not reach back a week
    for cause in data["causes"]:
        assert Cause(cause["cause"])
        assert len(cause["sparkline"]) == BUCKETS and sum(cause["sparkline"]) == cause["events"]
    assert {a["attack"] for a in data["attacks"]} <= {a.value for a in Attack}
    for attack in data["attacks"]:
        assert attack["advice"] == ATTACK_ADVICE[Attack(attack["attack"])]
        assert sum(attack["sparkline"]) == attack["events"] and attack["clients"]
    for step in data["rotations"]:
        assert step["action"] in ("added", "removed") and len(step["sparkline"]) == BUCKETS
    assert 1 <= len(data["read_first"]) <= 2
    datetime.fromisoformat(data["until"])
    # inferred (stale_jwks from a cache TTL) apart from verified and reported
    assert set(data["confidence"]) <= {"verified", "inferred", "reported"} and data["confidence"]["verified"] > 0
    assert sum(data["confidence"].values()) == data["total"]["window"]


def test_without_history_the_rotations_are_read_first(simulated_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = triage_json(capsys, "--db", str(simulated_db), "--since", "1d")
    assert data["baseline"] is None and data["spikes"] == []  # nothing before the window to compare with
    assert data["attacks"] and data["read_first"][0].startswith("Attack burst:")  # an attack is always first
    first = data["read_first"][1]
    assert first.startswith("No earlier history to compare with, but key rotations caused")
    assert any(f"kid {step['kid']}" in first for step in data["rotations"])


def test_attack_bursts_are_read_first(simulated_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = triage_json(capsys, "--db", str(simulated_db), "--since", "12h")
    assert data["attacks"]
    assert any(line.startswith("Attack burst:") for line in data["read_first"])
    status, out, _ = triage(capsys, "--db", str(simulated_db), "--since", "12h")
    assert status == 0 and "Attack bursts" in out and "kid_injection" in out


def test_one_service(simulated_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    everything = triage_json(capsys, "--db", str(simulated_db), "--since", "1d")
    data = triage_json(capsys, "--db", str(simulated_db), "--since", "1d", "--service", "payments-api")
    assert data["service"] == "payments-api"
    assert 0 < data["total"]["window"] < everything["total"]["window"]
    for spike in data["spikes"]:
        assert [s["service"] for s in spike["services"]] == ["payments-api"]
    for step in data["rotations"]:
        assert {s["service"] for s in step["services"]} <= {"payments-api"}


def test_a_service_without_events_says_so(simulated_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = triage(capsys, "--db", str(simulated_db), "--service", "no-such-api")
    assert status == 0 and "no failures for service 'no-such-api'" in flat(out) and "payments-api" in out


def test_a_window_without_events(simulated_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = triage(capsys, "--db", str(simulated_db), "--until", "2026-01-01T00:00:00Z")
    assert status == 0 and "No auth failures in the" in flat(out)


# -- an empty store, a missing one, bad flags --------------------------------------------------


def test_empty_store_gives_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "empty.duckdb"
    Store(db).close()
    status, out, err = triage(capsys, "--db", str(db))
    assert status == 0, err
    assert "The store holds no classified events yet" in flat(out)
    data = triage_json(capsys, "--db", str(db))
    assert data["message"] and data["causes"] == [] and data["spikes"] == []


def test_empty_store_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "env.duckdb"
    Store(db).close()
    monkeypatch.setenv("JWTRIAGE_DB", str(db))
    status, out, _ = triage(capsys)
    assert status == 0 and "no classified events" in out


def test_missing_store_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = triage(capsys, "--db", str(tmp_path / "missing.duckdb"))
    assert status == 2 and "no store at" in err


@pytest.mark.parametrize("since", ["2x", "0h", "h", "-1h"])
def test_bad_since(tmp_path: Path, capsys: pytest.CaptureFixture[str], since: str) -> None:
    db = tmp_path / "s.duckdb"
    Store(db).close()
    status, _, err = triage(capsys, "--db", str(db), f"--since={since}")
    assert status == 2 and "15m, 1h, 6h, 1d or 7d" in err


@pytest.mark.parametrize(
    ("text", "seconds"), [("15m", 900), ("1h", 3600), ("6h", 21600), ("1d", 86400), ("7d", 604800)]
)
def test_since_durations(text: str, seconds: int) -> None:
    assert parse_since(text).total_seconds() == seconds


# -- the reference time and the pieces ------------------------------------------------------------


def test_reference_is_the_wall_clock_for_live_data_and_the_store_end_for_old_data(simulated_db: Path) -> None:
    _, last = _store_span(simulated_db)
    con = connect_readonly(simulated_db)
    try:
        live = summarize(con, timedelta(hours=1), now=last + timedelta(minutes=10))
        old = summarize(con, timedelta(hours=1), now=last + timedelta(days=3))
        ahead = summarize(con, timedelta(hours=1), now=last - timedelta(hours=5))
    finally:
        con.close()
    assert live.reference_source == "now" and live.until == last + timedelta(minutes=10)
    assert old.reference_source == "store_end" and old.since <= last < old.until
    assert "ends 3 d ago" in old.reference_note
    assert ahead.reference_source == "store_end" and "ahead" in ahead.reference_note


def test_a_stalled_store_ends_at_its_last_event_and_says_how_long_ago(simulated_db: Path) -> None:
    """A consumer stopped 2 h ago: the window ends at its last event (not now, which would show a falling count)."""
    _, last = _store_span(simulated_db)
    con = connect_readonly(simulated_db)
    try:
        stalled = summarize(con, timedelta(hours=6), now=last + timedelta(hours=2))
        counted = queries.total_events(con, queries.Filters(stalled.since, stalled.until))
        full = queries.total_events(con, queries.Filters(last - timedelta(hours=6), last + timedelta(seconds=1)))
    finally:
        con.close()
    assert stalled.reference_source == "store_end" and stalled.since <= last < stalled.until
    assert "its data ends 2 h ago" in stalled.reference_note
    assert stalled.total == counted == full


def test_a_longer_window_never_counts_fewer_failures(simulated_db: Path) -> None:
    """Every window over an old store ends at its last event, whatever its length (14 d once ended now)."""
    _, last = _store_span(simulated_db)
    now = last + timedelta(days=13)
    con = connect_readonly(simulated_db)
    try:
        week, fortnight = (summarize(con, timedelta(days=days), now=now) for days in (7, 14))
    finally:
        con.close()
    assert week.until == fortnight.until == last + timedelta(microseconds=1)
    assert week.total == fortnight.total > 0
    assert "ends 13 d ago" in fortnight.reference_note


def test_a_comparison_counts_only_the_part_of_it_the_store_holds_data_for(simulated_db: Path) -> None:
    """Coverage is the overlap with [first event, last event]: nothing is scaled up past the store's end."""
    first, last = _store_span(simulated_db)
    con = connect_readonly(simulated_db)
    try:
        fortnight = summarize(con, timedelta(days=14), until=last + timedelta(days=13))
        straddling = summarize(con, timedelta(hours=1), until=last + timedelta(days=1, minutes=30))
    finally:
        con.close()
    held = (last - first).total_seconds()
    for c in fortnight.comparisons:  # the store holds one day: no comparison may claim more of it
        assert c.coverage * (c.until - c.since).total_seconds() <= held + 1
    assert fortnight.baseline is None and fortnight.to_json()["total"]["day_before"] is None
    day_before = {c.name: c for c in straddling.comparisons}["day_before"]
    assert day_before.since < last < day_before.until and day_before.coverage == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("hours", [6, 4])  # the 3 h before covered whole, then a third of it
def test_the_spikes_table_shows_a_tilde_only_for_a_baseline_scaled_from_partial_history(
    simulated_db: Path, capsys: pytest.CaptureFixture[str], hours: int
) -> None:
    first, _ = _store_span(simulated_db)
    until = first.replace(minute=0, second=0, microsecond=0) + timedelta(hours=hours)
    args = ("--db", str(simulated_db), "--since", "3h", "--until", until.isoformat())
    data = triage_json(capsys, *args)
    coverage = data["comparison_coverage"][data["baseline"]]
    _, out, _ = triage(capsys, *args)
    spikes = [s for s in data["spikes"] if not s["new"]]
    assert spikes
    for spike in spikes:  # as the causes table shows it (Comparison.shown)
        shown = f"~{spike['baseline']:,.0f}" if coverage < 0.9 else f"{spike['baseline']:,.0f}"
        row = next(line for line in out.splitlines() if line.split()[:1] == [spike["cause"]] and "x (" in line)
        assert f"x ({shown})" in row


def test_a_steady_incident_keeps_its_onset_whatever_the_until(simulated_db: Path) -> None:
    """stale_jwks in partner-gateway runs steadily from 08:41 after the partner rotation: every window ending
    inside it names that start, though the 1 h before (the baseline) already holds the incident."""
    first, _ = _store_span(simulated_db)
    day = first.replace(hour=0, minute=0, second=0, microsecond=0)
    con = connect_readonly(simulated_db)
    try:
        spikes = []
        for minutes in (9 * 60 + 40, 9 * 60 + 50, 10 * 60):
            summary = summarize(con, timedelta(hours=1), until=day + timedelta(minutes=minutes))
            spikes.append(next(s for s in summary.spikes if s.cause == Cause.STALE_JWKS))
        service = spikes[0].services[0]["service"]
        started = queries.first_event(con, queries.Filters(services=(service,), causes=(Cause.STALE_JWKS,)))
    finally:
        con.close()
    assert service == "partner-gateway" and started is not None
    assert {(s.onset, s.onset_before) for s in spikes} == {(started.astimezone(UTC), None)}


def test_comparisons_show_a_dash_without_history(simulated_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = triage(capsys, "--db", str(simulated_db), "--since", "1h")
    assert status == 0
    assert "a week earlier: –" in out and "1 h before: " in out


def test_sparkline() -> None:
    assert sparkline([0, 0, 0]) == "▁▁▁"
    assert sparkline([0, 1, 8]) == "▁▂█"
    assert len(sparkline([5] * BUCKETS)) == BUCKETS and set(sparkline([5] * BUCKETS)) == {"█"}
