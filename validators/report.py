"""Score each library's messages against jwtriage's verified verdicts; print the table; write the JSON.

For every rejection, the reported cause (jwtriage reading only the library's message) is
compared with the verified cause (jwtriage judging the token itself, at the same moment):
`agree` when they are equal, `unverifiable` when the message maps to nothing, `disagree`
otherwise. Accepting a token jwtriage finds failing (`missed`) and rejecting a valid one
(`false reject`) are counted too: they are facts about the library, not about the table.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from validators.judge import Observation

VALID, UNVERIFIABLE = "valid", "unverifiable"


@dataclass(frozen=True, slots=True)
class Row:
    """One observation with both verdicts attached."""

    seen: Observation
    intent: str
    verified: dict[str, Any]
    reported: dict[str, Any] | None

    @property
    def verified_cause(self) -> str:
        return str(self.verified["cause"])

    @property
    def reported_cause(self) -> str | None:
        return None if self.reported is None else str(self.reported["cause"])

    @property
    def outcome(self) -> str:
        if not self.seen.rejected:
            return "missed" if self.verified_cause != VALID else "accepted"
        if self.verified_cause == VALID:
            return "false_reject"
        if self.reported_cause == self.verified_cause:
            return "agree"
        return "unverifiable" if self.reported_cause == UNVERIFIABLE else "disagree"


def rows(observations: list[Observation], intents: dict[str, str], verdicts: dict[str, dict[str, Any]]) -> list[Row]:
    out = []
    for seen in observations:
        reported = verdicts.get(seen.event_id("reported")) if seen.rejected else None
        out.append(Row(seen, intents[seen.case], verdicts[seen.event_id("token")], reported))
    return out


def agreement_table(all_rows: list[Row], runners: list[str]) -> str:
    """Per library: rejections of failing tokens, and how their reported causes fared."""
    header = (f"{'library':<14} {'failing':>7} {'rejected':>8} {'agree':>5} {'disagree':>8} {'unverif.':>8} "
              f"{'missed':>6} {'false rej.':>10} {'agreement':>9}")
    lines = [header, "-" * len(header)]
    for runner in runners:
        mine = [row for row in all_rows if row.seen.runner == runner]
        counts = Counter(row.outcome for row in mine)
        failing = sum(1 for row in mine if row.verified_cause != VALID)
        rejected = counts["agree"] + counts["disagree"] + counts["unverifiable"]
        share = f"{counts['agree'] / rejected:.0%}" if rejected else "-"
        lines.append(f"{runner:<14} {failing:>7} {rejected:>8} {counts['agree']:>5} {counts['disagree']:>8} "
                     f"{counts['unverifiable']:>8} {counts['missed']:>6} {counts['false_reject']:>10} {share:>9}")
    return "\n".join(lines)


def _listing(title: str, selected: list[Row], with_reported: bool) -> list[str]:
    lines = [f"\n{title} ({len(selected)}):"]
    for row in selected:
        said = f" -> reported {row.reported_cause}" if with_reported else ""
        message = row.seen.reply.get("logged")
        lines.append(f"  {row.seen.runner:<13} {row.seen.case:<28} verified {row.verified_cause:<17}{said}")
        if message is not None:
            lines.append(f"      {message!r}")
    return lines


def details(all_rows: list[Row]) -> str:
    """The messages that disagree or say too little, then the library facts (missed, false rejects)."""
    by = {kind: [row for row in all_rows if row.outcome == kind] for kind in
          ("disagree", "unverifiable", "missed", "false_reject")}
    lines = _listing("Messages whose reported cause disagrees with the verified verdict", by["disagree"], True)
    lines += _listing("Messages that map to unverifiable (too little to say, or not in the table)",
                      by["unverifiable"], False)
    lines += _listing("Failing tokens the library accepted", by["missed"], False)
    lines += _listing("Valid tokens the library rejected", by["false_reject"], False)
    return "\n".join(lines)


def intent_gaps(all_rows: list[Row]) -> str:
    """Cases where jwtriage's verdict is not the cause the token was built for (DESIGN.md's rule)."""
    gaps = sorted({(row.seen.case, row.intent, row.verified_cause) for row in all_rows
                   if row.intent != row.verified_cause})
    lines = [f"\njwtriage verdicts that differ from the case's intended cause ({len(gaps)}):"]
    lines += [f"  {case:<28} intended {intent:<17} verified {cause}" for case, intent, cause in gaps]
    return "\n".join(lines)


def _message_record(row: Row, libraries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    reply = row.seen.reply
    library = libraries[row.seen.runner]
    return {
        "library": library["library"],
        "version": library["version"],
        "case": row.seen.case,
        "cause": row.verified_cause,
        "intent": row.intent,
        "attacks": row.verified.get("attacks", []),
        "error_class": reply.get("error_class"),
        "message": reply.get("message"),
        "logged": reply.get("logged"),
    }


def fixture(all_rows: list[Row], libraries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The curated record of real messages: every rejection, with the cause jwtriage verified on its token."""
    return {
        "description": "Error messages printed by real JWT libraries on the validators/ corpus (validators/README.md). "
        "`cause` and `attacks` are jwtriage's verified verdict on the same token at the same moment, "
        "`intent` the cause the case was built to produce under DESIGN.md (they differ where the engine "
        "does not yet follow the contract); "
        "`message` is the library's own text, `logged` the form its ecosystem logs it in (what a service "
        "would report as reported_error). Regenerate with: make validators-fixture",
        "libraries": {name: {k: v for k, v in info.items() if k != "jwks_fetches"} for name, info in libraries.items()},
        "messages": [_message_record(row, libraries) for row in all_rows if row.seen.rejected],
        "accepted_failing": [
            {"library": libraries[row.seen.runner]["library"], "case": row.seen.case, "cause": row.verified_cause,
             "intent": row.intent}
            for row in all_rows if not row.seen.rejected and (row.intent, row.verified_cause) != (VALID, VALID)
        ],
    }


def raw_messages(all_rows: list[Row], libraries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Everything the run saw (no tokens): every reply, both verdicts, fetch times."""
    return {
        "libraries": libraries,
        "observations": [
            {
                "runner": row.seen.runner,
                "case": row.seen.case,
                "intent": row.intent,
                "ts": row.seen.ts.isoformat(),
                "jwks_fetched_at": row.seen.jwks_fetched_at.isoformat() if row.seen.jwks_fetched_at else None,
                "reply": row.seen.reply,
                "outcome": row.outcome,
                "verified": row.verified,
                "reported": row.reported,
            }
            for row in all_rows
        ],
    }


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
