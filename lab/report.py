"""Compare what jwtriage stored with what the lab knows happened; print the table and the last line.

Rows are joined by `request_id` (each service logs the X-Request-Id the lab sent). A rejection
that reached no stored verdict counts as a disagreement (`missing`). The queries the report and
dashboard use are checked against the lab's own counts: the causes, the rotation steps, the
attackers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lab.traffic import Sent
from lab.truth import KeyLife, Truth, agrees, expected


@dataclass(frozen=True)
class Judged:
    sent: Sent
    truth: Truth
    cause: str  # jwtriage's, or "missing"
    confidence: str
    agree: bool
    message_level: bool
    reported_error: str | None


def judge_all(
    sent: list[Sent],
    stored: list[dict[str, Any]],
    leeways: dict[str, int],
    skew_window: int,
    keys: dict[str, KeyLife],
    fetches: dict[str, list[datetime]],
) -> list[Judged]:
    by_request = {row["request_id"]: row for row in stored if row.get("request_id")}
    judged: list[Judged] = []
    for request in sent:
        if request.status != 401:
            continue
        truth = expected(request, leeways[request.service], skew_window, keys, fetches[request.service])
        row = by_request.get(request.request_id)
        if row is None:
            judged.append(Judged(request, truth, "missing", "-", False, False, None))
            continue
        ok, coarse = agrees(
            truth, row["cause"], list(row.get("attacks") or []), row["confidence"], row.get("reported_error")
        )
        judged.append(
            Judged(request, truth, row["cause"], row["confidence"], ok, ok and coarse, row.get("reported_error"))
        )
    return judged


def print_table(judged: list[Judged]) -> None:
    groups: dict[tuple[str, str, str], list[Judged]] = defaultdict(list)
    for j in judged:
        groups[(j.sent.service, j.truth.cause, j.cause)].append(j)
    print(
        f"{'service':<13} {'what happened':<18} {'jwtriage says':<18} {'rejections':>10} {'verified':>8} "
        f"{'agree':>6} {'msg-level':>9}"
    )
    for (service, truth, cause), rows in sorted(groups.items()):
        verified = sum(1 for j in rows if j.confidence == "verified")
        agree = sum(1 for j in rows if j.agree)
        coarse = sum(1 for j in rows if j.message_level)
        print(f"{service:<13} {truth:<18} {cause:<18} {len(rows):>10} {verified:>8} {agree:>6} {coarse:>9}")


def print_disagreements(judged: list[Judged], limit: int = 12) -> None:
    wrong = [j for j in judged if not j.agree]
    if not wrong:
        return
    print(f"\ndisagreements ({len(wrong)}; the first {min(limit, len(wrong))}):")
    for j in wrong[:limit]:
        print(
            f"  {j.sent.sent_at.isoformat(timespec='milliseconds')} {j.sent.service} {j.sent.client_id} "
            f"intent={j.sent.intent} kid={(j.sent.kid or '-')[:8]} lab={j.truth.cause} ({j.truth.why}) "
            f"jwtriage={j.cause}/{j.confidence} reported={j.reported_error!r}"
        )


def check_queries(judged: list[Judged], queries: dict[str, Any], keys: dict[str, KeyLife]) -> list[str]:
    """What the report/dashboard queries say, next to the lab's own counts; one line per check."""
    lines: list[str] = []
    stored_causes = Counter(j.cause for j in judged if j.cause != "missing")
    query_causes = {row["cause"]: row["events"] for row in queries["cause_counts"]}
    lines.append(
        _check("cause counts (queries.failures.cause_counts)", dict(stored_causes) == query_causes, f"{query_causes}")
    )
    added = {row["kid"] for row in queries["rotations"] if row["action"] == "added"}
    removed = {row["kid"] for row in queries["rotations"] if row["action"] == "removed"}
    lab_removed = {k.kid for k in keys.values() if k.removed is not None}
    lines.append(
        _check(
            "keys published (queries.rotations)", set(keys) <= added | _initial(queries, keys), f"{len(added)} added"
        )
    )
    lines.append(_check("keys removed (queries.rotations)", removed == lab_removed, f"{len(removed)} removed"))
    attackers = {j.sent.client_id for j in judged if j.truth.attacks}
    attack_labels = {row["attack"] for row in queries["attacks"]}
    lab_labels = {a for j in judged if j.confidence == "verified" for a in j.truth.attacks}
    lines.append(
        _check(
            "attack labels (queries.tokens.attacks)",
            lab_labels <= attack_labels,
            f"{sorted(attack_labels)} from {sorted(attackers)}",
        )
    )
    return lines


def _initial(queries: dict[str, Any], keys: dict[str, KeyLife]) -> set[str]:
    """Keys present in the first snapshot (a query may not list them as 'added')."""
    earliest = min(keys.values(), key=lambda k: k.published)
    return {earliest.kid}


def _check(what: str, ok: bool, detail: str) -> str:
    return f"  {'ok      ' if ok else 'MISMATCH'} {what}: {detail}"


def headline(judged: list[Judged]) -> tuple[str, float]:
    agreeing = sum(1 for j in judged if j.agree)
    total = len(judged)
    pct = 100.0 * agreeing / total if total else 0.0
    return f"lab: {agreeing} of {total} rejections classified as what happened ({pct:.1f}%)", pct
