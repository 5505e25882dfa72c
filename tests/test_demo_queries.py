"""The demo end to end and the shared queries, on a simulated store."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from pathlib import Path

from rich.console import Console

from pipeline import queries
from pipeline.commands.demo import DemoResult, run_demo
from pipeline.io.store_readers import connect_readonly
from pipeline.models import Cause
from pipeline.remediation import ATTACK_ADVICE, REMEDIATION

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
    rerun = run_demo(Console(file=io.StringIO()), db=tmp_path / "d.duckdb", seed=3, events=1_500, hours=12)
    assert rerun.stored == result.stored  # a fresh store each run, the same rows


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
        impact = queries.rotation_impact(con, timedelta(hours=12))
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
