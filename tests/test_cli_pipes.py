"""The command line's ends: a reader that goes away, and DuckDB's own hint on a mistyped query."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [
    ["triage", "--since", "6h"],
    ["sql", "SELECT * FROM classifications"],
    ["report"],
])
def test_a_reader_that_went_away_is_not_an_error(command: list[str], simulated_db: Path) -> None:
    """`jwtriage triage | head -1`: rich would exit 1 on the broken pipe; the other commands exit 0."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line is written: every write breaks the pipe
    try:
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", command[0], "--db", str(simulated_db),
                               *command[1:]], stdout=write, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_a_mistyped_table_keeps_duckdbs_suggestion(simulated_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sql", "--db", str(simulated_db), "SELECT * FROM clasifications"]) == 2
    err = capsys.readouterr().err
    assert "clasifications does not exist" in err and 'Did you mean "classifications"?' in err
    assert "LINE 1" not in err  # the query DuckDB quotes after its hint is not repeated


def test_an_unknown_option_is_refused_with_the_commands_own_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["triage", "--sinse", "6h"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "usage: jwtriage triage" in err and "unrecognized arguments: --sinse 6h" in err


def test_a_token_given_as_a_stray_argument_is_not_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    with pytest.raises(SystemExit):
        cli.main(["triage", "--since", "6h", token])
    err = capsys.readouterr().err
    assert token not in err and "eyJ" not in err and "unrecognized arguments: <token>" in err


def test_sql_reads_days_in_utc_whatever_the_machines_zone(simulated_db: Path) -> None:
    """Every surface shows times in UTC; a day in `jwtriage sql` is the report's day, not the machine's."""
    query = "SELECT date_trunc('day', ts) AS day, count(*) AS n FROM classifications GROUP BY ALL ORDER BY ALL"
    days = {}
    for zone in ("UTC", "America/Los_Angeles", "Asia/Kolkata"):
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", "sql", "--csv", "--db", str(simulated_db), query],
                              capture_output=True, text=True, cwd=ROOT, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "TZ": zone})
        assert done.returncode == 0, done.stderr
        days[zone] = done.stdout
    assert days["UTC"] == days["America/Los_Angeles"] == days["Asia/Kolkata"], days
    assert "+00" in days["UTC"]


def test_the_printed_way_to_open_the_store_works_in_plain_duckdb(
    simulated_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import duckdb

    assert cli.main(["sql", "--db", str(simulated_db)]) == 0
    statements = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    con = duckdb.connect(":memory:")
    for statement in statements:
        con.execute(statement)
    zone, rows = con.execute("SELECT current_setting('TimeZone'), count(*) FROM classifications").fetchone()  # type: ignore[misc]
    assert zone == "UTC" and rows > 2_000
