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
