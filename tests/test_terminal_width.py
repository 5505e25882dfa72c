"""Issue 18: `demo` and `triage` read well at 80 columns and use the width they have above that.

rich takes the width from COLUMNS when output is not a terminal, so each run sets it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize("since", ["12h", "1d"])  # 12 h: spikes, and rotations from before the window
def test_triage_never_breaks_a_name_at_80_columns(tmp_path: Path, since: str) -> None:
    # rich narrows the widest columns past their longest word ("partner-gatewa" over "y 137"); triage
    # chooses the wrapping columns' widths itself, and drops a table's trend column when they cannot fit.
    # The default demo's attacks each hit four services from two clients: the smaller store's fit anyway.
    _run(["demo", "--db", "d.duckdb"], 200, tmp_path)
    store = str(tmp_path / "d.duckdb")
    found = json.loads(_run(["triage", "--db", store, "--since", since, "--json"], 200, tmp_path))
    names = {
        "Spikes": {x["service"] for s in found["spikes"] for x in s["services"]}
        | {x["client_id"] for s in found["spikes"] for x in s["clients"] if x["client_id"]},
        "Key rotations in or near": {x["service"] for r in found["rotations"] for x in r["services"][:4]},
        "Attack bursts": {x for a in found["attacks"] for x in a["services"]},
    }
    assert all(names.values()) or since == "1d", names
    text = _run(["triage", "--db", store, "--since", since], 80, tmp_path)
    assert max(len(line) for line in text.splitlines()) <= 80
    # Each table on its own: the lines to read first name the same services.
    starts = sorted((text.index(title), title) for title in names if title in text)
    ends = [start for start, _ in starts[1:]] + [text.index("Sparklines:")]
    for (start, title), end in zip(starts, ends, strict=True):
        words = {word.strip(",()") for word in text[start:end].split()}
        assert names[title] <= words, (sorted(names[title] - words), text[start:end])
    if since == "1d":
        assert "trend" in text[starts[0][0] : ends[0]].split()  # a table that fits keeps its sparklines


_WORD = st.text(alphabet="abcdefghij-_0123456789", min_size=1, max_size=18)


@settings(max_examples=200, deadline=None)
@given(
    cells=st.lists(st.lists(st.lists(_WORD, min_size=1, max_size=6), min_size=4, max_size=4), min_size=1, max_size=5),
    width=st.integers(40, 160),
    trend=st.booleans(),
)
def test_chosen_widths_keep_every_word_whole(cells: list[list[list[str]]], width: int, trend: bool) -> None:
    from rich.console import Console

    from pipeline.tables import keep_words_whole, summary_table

    table = summary_table("t")
    table.add_column("name", no_wrap=True)
    table.add_column("services", overflow="fold")
    table.add_column("clients", overflow="fold")
    table.add_column("since", overflow="fold")
    if trend:
        table.add_column("trend", no_wrap=True, min_width=12)
    for row in cells:
        table.add_row(*(" ".join(words) for words in row), *(["▁▂▃▄▅▆▇█▇▆▅▄"] if trend else []))
    console = Console(width=width, file=io.StringIO(), color_system=None)
    if not keep_words_whole(table, width):
        return
    with console.capture() as drawn:
        console.print(table)
    lines = drawn.get().splitlines()
    assert max(len(line) for line in lines) <= width
    assert {w for row in cells for words in row for w in words} <= set(drawn.get().split())
