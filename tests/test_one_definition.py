"""Issue 18: the demo, the report, the dashboard and triage tell the same rotation figures on the demo store.

Each number has one query (`pipeline.queries.rotations`): rotation damage, a step's failures
per service, time to recover. This test reads them through each surface's own code.
"""

from __future__ import annotations

import io
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from dashboards import data
from pipeline import queries
from pipeline.causes import ROTATION_DAMAGE
from pipeline.commands.demo import DemoResult, print_summary
from pipeline.io.store import Store
from pipeline.io.store_readers import connect_readonly
from pipeline.report import build_report
from pipeline.triage import summarize

Figures = dict[tuple[str, str, str, str], tuple[int, float]]  # (issuer, kid, action, service) → failures, recover


def _report(con: Any) -> tuple[int, dict[tuple[str, str], int]]:
    report = build_report(con)
    section = next(s for s in report.sections if s.key == "rotations")
    per_step: dict[tuple[str, str], int] = {}
    for row in queries.rotation_effects(con, queries.Filters(since=report.since, until=report.until)):
        per_step[(row["kid"], row["action"])] = per_step.get((row["kid"], row["action"]), 0) + row["failures"]
    return int(section.facts["damage"]), per_step


def _damage_sql(con: Any) -> int:
    marks = ", ".join("?" for _ in ROTATION_DAMAGE)
    row = con.execute(
        f"SELECT count(*) FROM classifications WHERE cause IN ({marks}) AND len(attacks) = 0", list(ROTATION_DAMAGE)
    ).fetchone()
    return int(row[0])


def _surfaces(db: Path, result: DemoResult) -> dict[str, Any]:
    con = connect_readonly(db)
    try:
        con.execute("SET TimeZone = 'UTC'")
        first, last = queries.time_range(con)
        assert first is not None and last is not None
        out = io.StringIO()
        print_summary(Console(file=out, width=200), con, result)
        impact = queries.rotation_impact(con)
        demo_figures: Figures = {
            (r["issuer"], r["kid"], r["action"], r["service"]): (r["failures"], round(r["recovered_after_s"]))
            for r in impact
        }
        report_damage, report_steps = _report(con)
        summary = summarize(con, timedelta(days=7), until=last + timedelta(seconds=1))
        direct = _damage_sql(con)
    finally:
        con.close()
    triage_figures: Figures = {}
    for step in summary.rotations:
        for entry in step["services"]:
            recover = max(0.0, (entry["last_failure"] - step["ts"]).total_seconds())
            key = (step["issuer"], step["kid"], step["action"], entry["service"])
            triage_figures[key] = (entry["failures"], round(recover))
    steps = data.load_rotations(str(db))
    dashboard_figures: Figures = {}
    for _, row in steps.iterrows():
        step = {k: (v.to_pydatetime() if hasattr(v, "to_pydatetime") else v) for k, v in row.to_dict().items()}
        detail = data.load_rotation(str(db), step, timedelta(days=2), last + timedelta(seconds=1), timedelta(0))
        for _, service in detail.services[detail.services["failures"] > 0].iterrows():
            key = (step["issuer"], step["kid"], step["action"], service["service"])
            dashboard_figures[key] = (int(service["failures"]), round(service["recovered_after_s"]))
    overview = data.load_overview(str(db), first, last + timedelta(seconds=1))
    tile = overview.causes[overview.causes["cause"].isin(ROTATION_DAMAGE)]
    return {
        "demo_text": out.getvalue(),
        "demo": demo_figures,
        "demo_damage": sum(f for f, _ in demo_figures.values()),
        "report_damage": report_damage,
        "report_steps": report_steps,
        "triage": triage_figures,
        "triage_damage": sum(step["failures"] for step in summary.rotations),
        "dashboard": dashboard_figures,
        "dashboard_damage": int(steps["failures"].sum()),
        "tile": int((tile["events"] - tile["with_attacks"]).sum()),
        "direct": direct,
    }


def test_the_four_surfaces_agree_on_the_demo_store(simulated_store: DemoResult) -> None:
    seen = _surfaces(simulated_store.db, simulated_store)
    damage = seen["direct"]
    assert damage > 0
    for name in ("demo_damage", "report_damage", "triage_damage", "dashboard_damage", "tile"):
        assert seen[name] == damage, name
    assert f"{damage:,} failures" in seen["demo_text"]
    assert seen["triage"] == seen["demo"] == seen["dashboard"]
    per_step: dict[tuple[str, str], int] = {}
    for (_, kid, action, _), (failures, _) in seen["demo"].items():
        per_step[(kid, action)] = per_step.get((kid, action), 0) + failures
    assert {k: v for k, v in seen["report_steps"].items() if v} == per_step


def test_no_surface_counts_an_attack_or_an_unknown_kid(simulated_store: DemoResult, tmp_path: Path) -> None:
    db = tmp_path / "relabelled.duckdb"
    shutil.copy(simulated_store.db, db)
    before = _surfaces(db, simulated_store)["direct"]
    with Store(db) as writer:  # 10 stale_jwks with an attack label, 10 retired_key turned unknown_kid
        writer.con.execute(
            """UPDATE classifications SET attacks = ['kid_injection']
               WHERE event_id IN (SELECT event_id FROM classifications WHERE cause = 'stale_jwks'
                                  ORDER BY event_id LIMIT 10)"""
        )
        writer.con.execute(
            """UPDATE classifications SET cause = 'unknown_kid'
               WHERE event_id IN (SELECT event_id FROM classifications WHERE cause = 'retired_key'
                                  ORDER BY event_id LIMIT 10)"""
        )
    seen = _surfaces(db, simulated_store)
    assert seen["direct"] == before - 20
    for name in ("demo_damage", "report_damage", "triage_damage", "dashboard_damage", "tile"):
        assert seen[name] == before - 20, name


def test_attack_figures_count_events_and_name_the_clients(simulated_store: DemoResult, tmp_path: Path) -> None:
    """One token can carry two attack labels: every surface's "attack events" counts it once, and the tables
    that list an attack's clients say how many of its events named none (a count of named clients hid them)."""
    db = tmp_path / "doubled.duckdb"
    shutil.copy(simulated_store.db, db)
    with Store(db) as writer:  # 10 events with two labels, 10 anonymous ones
        writer.con.execute(
            """UPDATE classifications SET attacks = ['alg_none', 'jwk_injection']
               WHERE event_id IN (SELECT event_id FROM classifications WHERE len(attacks) = 0
                                  ORDER BY event_id LIMIT 10)"""
        )
        writer.con.execute(
            """UPDATE classifications SET client_id = NULL
               WHERE event_id IN (SELECT event_id FROM classifications WHERE 'alg_none' IN attacks
                                  ORDER BY event_id LIMIT 10)"""
        )
    con = connect_readonly(db)
    try:
        first, last = queries.time_range(con)
        assert first is not None and last is not None
        end = last + timedelta(seconds=1)
        direct = con.execute("SELECT count(*) FROM classifications WHERE len(attacks) > 0").fetchone()[0]  # type: ignore[index]
        labels = con.execute("SELECT sum(len(attacks)) FROM classifications").fetchone()[0]  # type: ignore[index]
        report = build_report(con)
        out = io.StringIO()
        print_summary(Console(file=out, width=200), con, simulated_store)
    finally:
        con.close()
    assert labels > direct > 0
    section = next(s for s in report.sections if s.key == "attacks")
    assert section.facts["events"] == direct
    assert data.load_triage(str(db), end, end - first, 7).attack_events == direct
    overview = data.load_overview(str(db), first, end)
    assert int(overview.causes["with_attacks"].sum()) == direct
    alg_none = next(row for row in section.rows if "alg_none" in str(row[0]))
    assert "no client id on" in str(alg_none[3]), alg_none
    assert "no client id on" in out.getvalue()


def test_uses_after_a_removal_say_how_many_the_removal_broke(simulated_store: DemoResult) -> None:
    """Rotation hygiene counts every rejected token a removed key signed, expired ones too; its flag says how many
    were still valid, the same figure as the rotation section's retired_key failures for that removal."""
    con = connect_readonly(simulated_store.db)
    try:
        report = build_report(con)
    finally:
        con.close()
    rotation = next(s for s in report.sections if s.key == "rotations")
    broken = {f["kid"]: f["failures"] for f in rotation.facts["issuer_faults"] if f["fault"] == "removed_in_use"}
    hygiene = next(s for s in report.sections if s.key == "hygiene")
    flagged = {str(row[0]): str(row[-1]) for row in hygiene.rows if "after removal" in str(row[-1])}
    assert flagged and broken
    for kid, failures in broken.items():
        flag = next(text for name, text in flagged.items() if kid in name)
        assert f"{failures:,} of them still valid" in flag, flag
