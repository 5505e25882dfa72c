"""The benchmark scripts still run: each in its tiny --quick mode, so `make bench` cannot rot.

No timing is asserted here (speed is measured by the scripts themselves, under `make bench`);
only that every script runs to the end and hands its headline figures to bench/run_all.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cache for signed tokens and simulated days (a `make bench` may be running beside us)."""
    return tmp_path_factory.mktemp("bench-cache")


def run_script(script: str, cache: Path, tmp_path: Path, *args: str) -> tuple[str, list[dict[str, object]]]:
    summary = tmp_path / f"{script}.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--summary", str(summary), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "JWTRIAGE_BENCH_CACHE": str(cache)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(summary.read_text())["rows"]
    assert rows and all({"name", "value", "unit", "load"} <= set(row) for row in rows), rows
    return done.stdout, rows


@pytest.mark.parametrize(
    "script",
    [
        "bench_stages.py", "bench_sink.py", "bench_scaling.py", "bench_timeline.py", "bench_retention.py",
        "bench_store.py", "split_probe.py",
    ],
)
def test_each_benchmark_runs_in_quick_mode(script: str, cache: Path, tmp_path: Path) -> None:
    stdout, _ = run_script(script, cache, tmp_path)
    assert "load" in stdout  # every figure is printed beside the load average


def test_the_classify_benchmark_reports_a_ratio_for_every_mix(cache: Path, tmp_path: Path) -> None:
    _, rows = run_script("bench_classify.py", cache, tmp_path)
    names = {str(row["name"]) for row in rows}
    for mix in ("RS256", "ES256", "EdDSA", "RS256+ES256+EdDSA"):
        assert {f"classify: {mix} unique", f"classify: {mix} each token x10"} <= names
    assert all(isinstance(row["ratio"], float) for row in rows)


def test_run_all_gathers_the_summaries(tmp_path: Path, cache: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--quick", "--only", "stages"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "JWTRIAGE_BENCH_CACHE": str(cache)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "== summary" in done.stdout and "pipeline minus Kafka" in done.stdout


@pytest.mark.kafka
def test_the_end_to_end_benchmark_runs_on_the_broker(cache: Path, tmp_path: Path) -> None:
    _, rows = run_script("bench_e2e.py", cache, tmp_path)
    assert any(str(row["name"]).startswith("e2e: 1 consumer") for row in rows)


@pytest.mark.kafka
def test_the_outage_benchmark_runs_on_the_broker_and_reuse_changes_no_verdict(cache: Path, tmp_path: Path) -> None:
    stdout, rows = run_script("bench_outage.py", cache, tmp_path)
    assert "byte-identical" in stdout  # the script exits non-zero when reuse changed a verdict
    names = {str(row["name"]) for row in rows}
    assert {"outage: classify, reuse on", "outage: 1 consumer events/s", "outage: burst 10x drained after"} <= names
    assert "lag curve" in stdout
    assert "bare    :" in stdout and "; cores: reader " in stdout  # the backlog's readers and broker, sampled
    assert "CPU by phase" in stdout and "burst: producer java" in stdout  # where the 2 cores went, cheap producer
    assert "lag as the Live page showed it:" in stdout and " readings; " in stdout  # the consumer's lag notes


@pytest.mark.kafka
@pytest.mark.parametrize("mode", [[], ["--http"]])
def test_the_reporter_benchmark_runs_in_process_and_over_http(mode: list[str], cache: Path, tmp_path: Path) -> None:
    stdout, rows = run_script("bench_reporter.py", cache, tmp_path, "--variants", "middleware,noop", *mode)
    names = {str(row["name"]) for row in rows}
    suffix = " over HTTP" if mode else ""
    assert {f"reporter: p99 latency, middleware{suffix}", f"reporter: p50 latency, noop{suffix}"} <= names
    assert ("timed at an HTTP client" if mode else "timed as the ASGI call") in stdout
    assert "'sent': 1000" in stdout  # the middleware's reports reached the broker (warm-up and run)


def test_the_day_files_benchmark_merges_a_day_and_opens_a_store(tmp_path: Path) -> None:
    """`bench_day_files.py` (no --quick: it measures the files it is given) on a tiny consumer's store."""
    from datetime import UTC, datetime

    from pipeline.io.store import Store
    from pipeline.io.store_schema import parts_dir
    from tests.test_store_parts import add_rows

    db = tmp_path / "k.duckdb"
    with Store(db, instance="c1") as store:
        add_rows(store, 0, 100, datetime(2026, 1, 1, tzinfo=UTC))
        store.publish()
    (day_file,) = (parts_dir(db) / "classifications" / "2026-01-01").glob("*.parquet")
    for args in (["merge", str(day_file), "--sizes", "16384,65536", "--out", str(tmp_path / "merged")],
                 ["open", str(db), "--repeat", "2"]):
        done = subprocess.run([sys.executable, str(BENCH / "bench_day_files.py"), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert done.stdout.count("(load ") == (2 if args[0] == "merge" else 1), done.stdout
