"""The literal gates in front of the reported table change no verdict, only what runs.

Each row's regex and each slot anchor runs only on a message that holds its fixed text
(`reported_match.LiteralGate`). These tests compare the gated table with the same table
ungated (every anchor, every row searched, as before the gates) on every row's example,
hostile messages and random text, and check that `fold` knows every character Python's
IGNORECASE equates with an ASCII one.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipeline.engine.reported as reported
from pipeline.engine.reported_match import _FOLD, MASK, LiteralGate, SlotMasker, fold, normalise

TS = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def ungated() -> Iterator[None]:
    rows, gates = reported._GATED_ROWS, reported._MASKER._gates
    reported._GATED_ROWS = tuple((LiteralGate(None), row) for _, row in rows)
    reported._MASKER._gates = [LiteralGate(None)] * len(gates)
    try:
        yield
    finally:
        reported._GATED_ROWS, reported._MASKER._gates = rows, gates


def both(message: str) -> tuple[object, object]:
    gated = reported.judge_reported(message, TS, 30, 300), reported.mask_reported(message)
    with ungated():
        plain = reported.judge_reported(message, TS, 30, 300), reported.mask_reported(message)
    return gated, plain


def test_fold_covers_every_character_ignorecase_equates_with_ascii() -> None:
    everything = "".join(chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c < 0xE000)
    equated = {m.group() for m in re.finditer(r"[\x00-\x7f]", everything, re.IGNORECASE)}
    assert equated == {chr(c) for c in _FOLD}
    for char in equated:
        assert re.fullmatch(re.escape(fold(char)), char, re.IGNORECASE)


def test_every_row_and_anchor_has_a_gate_and_its_example_passes_it() -> None:
    for gate, row in reported._GATED_ROWS:
        assert gate.requirement is not None, row.pattern.pattern
        masked = reported.mask_reported(row.example)
        if row.pattern.search(masked):
            assert gate.passes(fold(masked)), row.pattern.pattern
    assert all(gate.requirement is not None for gate in reported._MASKER._gates)


def test_a_gate_fails_only_when_its_pattern_cannot_match() -> None:
    gate = LiteralGate.of(re.compile(r"\bkid(?: is)?: '|\bno (?:key|jwk) for\b", re.IGNORECASE))
    assert gate.passes(fold("KID: 'x"))
    assert gate.passes(fold("no jwk for it"))
    assert not gate.passes(fold("no key"))  # neither alternative's fixed text is all there
    assert gate.passes(fold("\u212aid: 'x"))  # the Kelvin sign matches k under IGNORECASE
    assert LiteralGate.of(re.compile("kid")).requirement is None  # case-sensitive: never gated


@pytest.mark.parametrize("row", reported.REPORTED_ERRORS, ids=lambda row: row.pattern.pattern[:40])
def test_each_example_reads_the_same_gated_and_ungated(row: reported.ReportedPattern) -> None:
    for message in (row.example, row.example * 30, ":" * 1500 + row.example, row.example.upper() + " ' " * 300):
        gated, plain = both(message)
        assert gated == plain


HOSTILE = [
    ":" * 2000, "'" * 2000, '"' * 2000, "_" * 2000, "\\" * 2000, "jwt " * 500, "token " * 333, 'kid "' * 400,
    "jwt_authn_access_denied{" * 90, "the token " * 200, "%20" * 666, "&amp;" * 400,
    " ".join(row.example for row in reported.REPORTED_ERRORS)[:2000],
    " ".join(reversed([row.example for row in reported.REPORTED_ERRORS]))[:2000],
]


@pytest.mark.parametrize("message", HOSTILE, ids=lambda m: repr(m[:12]))
def test_hostile_messages_read_the_same_gated_and_ungated(message: str) -> None:
    gated, plain = both(message)
    assert gated == plain


_WORDS = st.sampled_from(
    ["kid", "KID", "\u212aid", "k\u0131d", "jwt", "token", "expired", "is", ":", "'", '"', " ", "_", "{", "}",
     "IDX10223", "signature", "Jwt_is_expired", "jwt_authn_access_denied{", "not", "valid", MASK, "\u017f"]
    + [row.example[: len(row.example) // 2] for row in reported.REPORTED_ERRORS[::7]]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_WORDS | st.text(max_size=6), max_size=60).map("".join))
def test_random_messages_read_the_same_gated_and_ungated(message: str) -> None:
    gated, plain = both(message)
    assert gated == plain


def test_the_masker_finds_the_same_spans_with_any_set_of_anchors() -> None:
    masker = reported._MASKER
    plain = SlotMasker(masker.slots)
    plain._gates = [LiteralGate(None)] * len(plain._gates)
    for row in reported.REPORTED_ERRORS:
        for text in (row.example, row.example + " " + reported.REPORTED_ERRORS[0].example, "kid: '" + row.example):
            read = normalise(text)
            assert masker.spans(read.text, read.truncated) == plain.spans(read.text, read.truncated)


def test_the_benchmark_runs_in_quick_mode(tmp_path: Path) -> None:
    summary = tmp_path / "reported.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_reported.py"), "--quick", "--summary", str(summary)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "ungated" in done.stdout and summary.exists()
