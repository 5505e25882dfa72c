"""Issue 18: `demo` and `triage` read well at 80 columns and use the width they have above that.

rich takes the width from COLUMNS when output is not a terminal, so each run sets it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Every column header each table shows (single words: a header may wrap, it may not vanish or be cut).
DEMO_HEADERS = ("cause", "events", "share", "verified", "service", "failures", "causes", "recover", "fault",
                "stale_jwks", "window", "attack", "services", "clients", "first–last")  # fmt: skip
TRIAGE_HEADERS = ("cause", "events", "before", "earlier", "trend", "spike", "when", "issuer", "step",
                  "failures", "services", "attack", "clients", "first–last")  # fmt: skip


def _run(args: list[str], columns: int, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWTRIAGE_")}
    env.update(PYTHONPATH=str(ROOT), COLUMNS=str(columns))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _check(text: str, columns: int, headers: tuple[str, ...]) -> None:
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= columns, max(lines, key=len)
    words = set(text.split())
    missing = [h for h in headers if h not in words]
    assert not missing, missing


@pytest.mark.parametrize("columns", [80, 200])
def test_demo_fits_the_terminal(tmp_path: Path, columns: int) -> None:
    text = _run(["demo", "--db", "d.duckdb", "--events", "3000"], columns, tmp_path)
    _check(text, columns, DEMO_HEADERS)
    assert "billing-legacy" in text and "https:/…" not in text and "unpublis…" not in text
    table = text[text.index("JWKS cache age per service") :].splitlines()
    rule = next(n for n, line in enumerate(table) if line.strip().startswith("─"))
    end = next(n for n in range(rule, len(table)) if not table[n].strip())
    rows = table[rule + 1 : end]
    assert rows and all(line[:2].strip() for line in rows), rows  # a row a line: no duration wrapped
    if columns == 200:
        assert "Stale JWKS cache" in text  # the labels, where there is room


@pytest.mark.parametrize("columns", [80, 200])
@pytest.mark.parametrize("since", ["12h", "1d"])
def test_triage_fits_the_terminal(simulated_db: Path, tmp_path: Path, columns: int, since: str) -> None:
    text = _run(["triage", "--db", str(simulated_db), "--since", since], columns, tmp_path)
    _check(text, columns, TRIAGE_HEADERS + (("baseline",) if since == "12h" else ()))  # 12 h holds spikes
    assert "unknown_…" not in text and "stale_jw…" not in text
    if columns == 200:
        assert "Unknown signing key" in text or "Stale JWKS cache" in text


def test_triage_never_folds_a_name_at_80_columns(tmp_path: Path) -> None:
    # rich narrows the widest columns past their longest word; a table then drops its trend column instead.
    # The default demo's attacks each hit four services from two clients: the smaller store's fit anyway.
    _run(["demo", "--db", "d.duckdb"], 200, tmp_path)
    store = str(tmp_path / "d.duckdb")
    found = json.loads(_run(["triage", "--db", store, "--since", "1d", "--json"], 200, tmp_path))
    attacked = {s for a in found["attacks"] for s in a["services"]}
    rotated = {s["service"] for r in found["rotations"] for s in r["services"][:4]}
    assert attacked and rotated
    text = _run(["triage", "--db", store, "--since", "1d"], 80, tmp_path)
    # Each table on its own: the lines to read first name the same services.
    rotations = text[text.index("Key rotations in or near") : text.index("Attack bursts")]
    attacks = text[text.index("Attack bursts") : text.index("Sparklines:")]
    for names, table in ((rotated, rotations), (attacked, attacks)):
        words = {word.strip(",()") for word in table.split()}
        assert names <= words, (sorted(names - words), table)
    assert "trend" in rotations.split()  # a table that fits keeps its sparklines
