"""The demo end to end and the shared queries, on a simulated store."""

from __future__ import annotations

import io
import os
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console

from pipeline import queries
from pipeline.causes import ATTACK_ADVICE, REMEDIATION
from pipeline.commands.demo import DemoResult, run_demo
from pipeline.errors import UsageError
from pipeline.io.store import Store
from pipeline.io.store_readers import connect_readonly
from pipeline.models import Cause

TOKEN_SEGMENT = re.compile(rb"eyJ[A-Za-z0-9_-]{10,}")


def test_demo_classifies_the_simulated_truth(simulated_store: DemoResult) -> None:
    assert simulated_store.stored > 2_800
    assert simulated_store.accuracy >= 0.99
    assert simulated_store.dead_letters > 0


def test_no_token_segment_anywhere_in_the_store_file(simulated_db: Path) -> None:
    raw = simulated_db.read_bytes()
    assert TOKEN_SEGMENT.search(raw) is None
    wal = simulated_db.with_name(simulated_db.name + ".wal")
    assert not wal.exists() or TOKEN_SEGMENT.search(wal.read_bytes()) is None


def test_the_demo_summary_names_causes_rotations_and_accuracy(tmp_path: Path) -> None:
    out = io.StringIO()
    result = run_demo(Console(file=out, width=160), db=tmp_path / "d.duckdb", seed=3, events=1_500, hours=12)
    text = out.getvalue()
    for heading in ("Why were tokens rejected?", "Key rotations", "JWKS cache age", "Accuracy"):
        assert heading in text
    assert "stale_jwks" in text and f"{result.accuracy:.2%}" in text
    assert "Confidence: " in text and " verified (" in text
    rerun = run_demo(Console(file=io.StringIO()), db=tmp_path / "d.duckdb", seed=3, events=1_500, hours=12)
    assert rerun.stored == result.stored  # a fresh store each run, the same rows


@pytest.mark.parametrize("case", ["own config", "other file", "consumer store", "store without config"])
def test_the_demo_replaces_nothing_it_did_not_write(case: str, tmp_path: Path) -> None:
    """`--db` (or JWTRIAGE_DB) may name a user's store or the folder of their own jwtriage.toml."""
    made: dict[str, bytes] = {}
    if case == "own config":
        db, made["jwtriage.toml"] = tmp_path / "jwtriage.duckdb", b"# my real config\n"
    elif case == "other file":
        db, made["notes.txt"] = tmp_path / "notes.txt", b"my notes\n"
    elif case == "consumer store":
        db, made["real.duckdb"] = tmp_path / "real.duckdb", b"not the demo's"
        (tmp_path / "real.duckdb.parts").mkdir()
        made["real.duckdb.parts/c1.live.duckdb"] = b"a consumer's rows"
    else:
        db, made["kept.duckdb"] = tmp_path / "kept.duckdb", b"rows"
    for name, content in made.items():
        (tmp_path / name).write_bytes(content)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(UsageError, match="hint: choose another path"):
        run_demo(Console(file=io.StringIO()), db=db, seed=3, events=200, hours=1)
    assert sorted(os.listdir(tmp_path)) == before  # nothing deleted, nothing written
    assert all((tmp_path / name).read_bytes() == content for name, content in made.items())


def test_queries_on_the_simulated_store(simulated_db: Path) -> None:
    con = connect_readonly(simulated_db)
    try:
        total = queries.total_events(con)
        counts = queries.cause_counts(con)
        assert sum(r["events"] for r in counts) == total
        assert {r["cause"] for r in counts} <= {c.value for c in Cause}
        start, end = queries.time_range(con)
        assert start is not None and end is not None
        half = queries.Filters(since=start, until=start + (end - start) / 2)
        assert 0 < queries.total_events(con, half) < total
        only = queries.Filters(services=("payments-api",))
        assert queries.total_events(con, only) == sum(r["events"] for r in queries.top(con, "service", only))
        buckets = queries.failures_over_time(con, "1 hour")
        assert sum(r["events"] for r in buckets) == total
        steps = queries.rotations(con)
        assert {"added", "removed"} <= {r["action"] for r in steps}
        impact = queries.rotation_impact(con)
        assert impact and all(r["failures"] > 0 for r in impact)
        assert {c for r in impact for c in r["causes"]} <= {"stale_jwks", "unpublished_key", "retired_key"}
        ages = queries.cache_age_by_service(con)
        assert any(r["reported_age_max_s"] for r in ages)
        assert {r["attack"] for r in queries.attacks(con)} >= {"alg_none", "kid_injection"}
        rows = queries.events(con, queries.Filters(causes=("expired",)), limit=5)
        assert len(rows) == 5 and all(r["cause"] == "expired" and r["detail"] for r in rows)
        assert queries.dead_letter_counts(con)
    finally:
        con.close()


def test_every_cause_and_attack_has_remediation() -> None:
    assert set(REMEDIATION) == set(Cause)
    assert len(ATTACK_ADVICE) == 6


def test_rotation_damage_never_counts_an_event_with_an_attack_label(simulated_db: Path, tmp_path: Path) -> None:
    """DESIGN.md "Rotation damage": unpublished_key, stale_jwks, retired_key, never with an attack label."""
    db = tmp_path / "labelled.duckdb"
    shutil.copy(simulated_db, db)
    con = connect_readonly(db)
    try:
        before = queries.step_failure_counts(con)
        impact_before = sum(r["failures"] for r in queries.rotation_impact(con))
    finally:
        con.close()
    with Store(db) as writer:  # ten stale_jwks verdicts that also carry an attack label
        labelled = writer.con.execute(
            """UPDATE classifications SET attacks = ['jwk_injection']
               WHERE event_id IN (SELECT event_id FROM classifications
                                  WHERE cause = 'stale_jwks' AND kid IS NOT NULL ORDER BY event_id LIMIT 10)
               RETURNING kid"""
        ).fetchall()
    assert len(labelled) == 10
    con = connect_readonly(db)
    try:
        after = queries.step_failure_counts(con)
        assert sum(before.values()) - sum(after.values()) == 10
        assert sum(r["failures"] for r in queries.rotation_impact(con)) <= impact_before - 10
        assert all(after.get(key, 0) <= n for key, n in before.items())
    finally:
        con.close()


def test_the_merged_queries_take_an_optional_window(simulated_db: Path) -> None:
    con = connect_readonly(simulated_db)
    try:
        start, end = queries.time_range(con)
        assert start is not None and end is not None
        everything = queries.filter_values(con)
        assert set(everything["cause"]) == {r["cause"] for r in queries.cause_counts(con)}
        first_hour = queries.filter_values(con, queries.Filters(since=start, until=start + timedelta(hours=1)))
        assert set(first_hour["service"]) <= set(everything["service"])
        assert sum(queries.step_failure_counts(con, end).values()) <= sum(queries.step_failure_counts(con).values())
        assert queries.step_failure_counts(con, end + timedelta(seconds=1)) == {}
        narrowed = queries.events(con, queries.Filters(), limit=50, kids=("no-such-kid",))
        assert narrowed == []
    finally:
        con.close()


def test_confidence_counts_show_inferred_apart_from_verified(simulated_db: Path) -> None:
    """DESIGN.md `confidence`: inferred only for stale_jwks whose service reports no fetch time."""
    con = connect_readonly(simulated_db)
    try:
        counts = {r["confidence"]: r["events"] for r in queries.confidence_counts(con)}
        assert sum(counts.values()) == queries.total_events(con)
        assert counts.keys() == {"verified", "inferred", "reported"} and counts["inferred"] > 0
        inferred = con.execute("SELECT DISTINCT cause FROM classifications WHERE confidence = 'inferred'").fetchall()
        assert inferred == [("stale_jwks",)]
    finally:
        con.close()
    assert causes_confidence_text_mentions_all(counts)


def causes_confidence_text_mentions_all(counts: dict[str, int]) -> bool:
    from pipeline.causes import confidence_text

    text = confidence_text([{"confidence": k, "events": v, "percent": 1.0} for k, v in counts.items()])
    return text.index("verified") < text.index("inferred") < text.index("reported")
