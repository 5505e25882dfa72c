"""What reading a reported message costs: typical messages and hostile 2 KB ones, gated and ungated.

    python bench/bench_reported.py [--repeat 200] [--quick]

`reported.judge_reported` (normalise, mask the token's values, search the table, read a
stated time) on two sets of messages, per message, best of three:

  typical   every row's own `example` (what validators really print), plus Envoy's access-log form
  hostile   2,000-character messages built to make regexes work: runs of one separator
            (`:`, quotes, `_`, `\\`), repeated keywords every row starts with (`jwt `,
            `token `, `kid "`), every anchor's fixed text at once, and every row's fixed
            text cut one character short (each gate passes a word, no row matches)

The baseline is the same code with the literal gates switched off (every slot anchor in one
alternation, every row's regex searched), which is what ran before the gates: the two are
timed in the same run on the same messages, and every verdict is checked to agree.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Summary, header, load, load_note

import pipeline.engine.reported as reported
from pipeline.engine.reported_match import LiteralGate, Requirement

TS = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _words(requirement: Requirement | None) -> list[str]:
    if requirement is None:
        return []
    runs, groups = requirement
    return [*runs, *(word for group in groups for word in _words(group[0]))]


def typical_messages() -> list[str]:
    examples = [row.example for row in reported.REPORTED_ERRORS]
    return [*examples, "jwt_authn_access_denied{Jwt_is_expired}", "Jwt is expired", "Unauthorized"]


def hostile_messages() -> dict[str, str]:
    words = [w for gate, _ in reported._GATED_ROWS for w in _words(gate.requirement) if len(w) > 3]
    anchors = [w for gate in reported._MASKER._gates for w in _words(gate.requirement)]
    cut = " ".join(w[:-1] for w in words)
    return {
        "colons": ":" * 2000,
        "single quotes": "'" * 2000,
        "double quotes": '"' * 2000,
        "underscores": "_" * 2000,
        "backslashes": "\\" * 2000,
        "jwt ×500": "jwt " * 500,
        "token ×333": "token " * 333,
        'kid " ×400': 'kid "' * 400,
        "every anchor": (" ".join(anchors) * 20)[:2000],
        "every row word, cut short": (cut * 3)[:2000],
        "envoy braces": ("jwt_authn_access_denied{" * 90)[:2000],
    }


@contextmanager
def ungated() -> Iterator[None]:
    """The table as it ran before the gates: every anchor and every row's regex tried on every message."""
    rows, gates, subsets = reported._GATED_ROWS, reported._MASKER._gates, reported._MASKER._subsets
    reported._GATED_ROWS = tuple((LiteralGate(None), row) for _, row in rows)
    reported._MASKER._gates = [LiteralGate(None)] * len(gates)
    try:
        yield
    finally:
        reported._GATED_ROWS, reported._MASKER._gates, reported._MASKER._subsets = rows, gates, subsets


def per_message(messages: list[str], repeat: int) -> list[float]:
    """Microseconds per `judge_reported` call for each message, best of three rounds of `repeat`."""
    judge: Callable[..., object] = reported.judge_reported
    out = []
    for message in messages:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(repeat):
                judge(message, TS, 30, 300)
            best = min(best, (time.perf_counter() - started) / repeat)
        out.append(best * 1e6)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument("--summary", type=Path, help="write the headline figures here as JSON (for run_all.py)")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    header("reported messages: microseconds per judge_reported, literal gates vs none (same run)")
    typical, hostile = typical_messages(), hostile_messages()
    summary = Summary("bench_reported.py", [])
    for name, messages in (("typical", typical), ("hostile", list(hostile.values()))):
        gated_verdicts = [reported.judge_reported(m, TS, 30, 300) for m in messages]
        gated = per_message(messages, repeat if name == "hostile" else max(1, repeat // 4))
        with ungated():
            old_verdicts = [reported.judge_reported(m, TS, 30, 300) for m in messages]
            old = per_message(messages, repeat if name == "hostile" else max(1, repeat // 4))
        if gated_verdicts != old_verdicts:
            print(f"  {name}: the gated table disagrees with the ungated one", file=sys.stderr)
            return 1
        for stat, pick in (("median", statistics.median), ("worst", max)):
            new_us, old_us = pick(gated), pick(old)
            print(f"  {name:8s} {stat:6s} {new_us:9.1f} us   ungated {old_us:9.1f} us   "
                  f"{old_us / new_us:5.1f}x   ({len(messages)} messages, load {load():.1f})")
            summary.add(f"reported: {name} {stat}", new_us, "us/message", baseline=old_us)
        if name == "hostile":
            for (label, _), new_us, old_us in zip(hostile.items(), gated, old, strict=True):
                print(f"      {label:28s} {new_us:9.1f} us   ungated {old_us:9.1f} us")
    print(f"  {load_note()}")
    summary.write(args.summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
