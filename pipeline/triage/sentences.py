"""The one or two lines triage asks to read first: what spiked, why, and what to do."""

from __future__ import annotations

from typing import Any

from pipeline.causes import Cause, cause_info, finding_remediation, issuer_fault_text, remediation
from pipeline.text import human_duration
from pipeline.triage.summary import Spike, Summary, clock, span


def read_first(summary: Summary) -> list[str]:
    """The one or two most important findings, as sentences with what to do."""
    if summary.message:
        return [summary.message]
    lines = []
    if summary.attacks:  # an attack is always the headline
        lines.append(_attack_sentence(summary))
    # spikes that are mostly attack-labelled are the attack itself: said above, never "fixed" by trusting them
    others = [spike for spike in summary.spikes if not (summary.attacks and spike.attack)]
    lines += [_spike_sentence(summary, spike) for spike in others[: 2 - len(lines)]]
    if not others:
        rotation = _rotation_sentence(summary) if summary.baseline is None else None
        lines.append(rotation or _steady_sentence(summary, apart_from_attack=bool(summary.spikes)))
    return lines[:2]


def _attack_sentence(summary: Summary) -> str:
    top = max(summary.attacks, key=lambda a: a["events"])
    others = [a["attack"] for a in summary.attacks if a is not top]
    who = _clients_phrase(top["clients"])
    also = f" (with {', '.join(others)})" if others else ""
    spiked = [s for s in summary.spikes if s.attack]
    behind = (
        " It is behind the spike in " + ", ".join(f"{s.cause} ({s.label})" for s in spiked) + ": do not add those "
        "kids or issuers to the config or to jwks-watch."
        if spiked
        else ""
    )
    return (
        f"Attack burst: {top['attack']}{also}, {top['events']:,} events from {who} against "
        f"{', '.join(top['services'])}, {clock(summary, top['first_seen'])}–{clock(summary, top['last_seen'])}."
        f"{behind} → {top['advice']}"
    )


def _steady_sentence(summary: Summary, apart_from_attack: bool = False) -> str:
    spiked = {s.cause for s in summary.spikes}
    top_cause = next((row for row in summary.causes if row["cause"] not in spiked), summary.causes[0])
    if summary.baseline is not None:
        before = f"{summary.baseline.total:,.0f}"
        against = f" against {baseline_label(summary)} ({summary.total:,} failures vs {before})"
    else:
        against = " (the store does not reach back far enough to compare)"
    lead = "Apart from the attack, no cause spiked" if apart_from_attack else "No cause spiked"
    return (
        f"{lead}{against}. The most common is {top_cause['cause']} "
        f"({top_cause['events']:,} of {summary.total:,}, {top_cause['percent']}%). "
        f"→ {_remedy(top_cause)}"
    )


def _rotation_sentence(summary: Summary) -> str | None:
    """Without history to find spikes in, the rotation that caused the most failures in the window, if any."""
    steps = [step for step in summary.rotations if step["failures"]]
    if not steps:
        return None
    step = max(steps, key=lambda st: st["failures"])
    cause = max(step["causes"], key=lambda c: step["causes"][c])
    total = sum(st["failures"] for st in steps)
    where = ", ".join(f"{e['service']} ({e['failures']:,})" for e in step["services"][:3])
    return (
        f"No earlier history to compare with, but key rotations caused {total:,} of the {summary.total:,} failures: "
        f"most after {step['issuer_name']} {step['action']} kid {step['kid']} at {clock(summary, step['ts'])} "
        f"({step['failures']:,}, mainly {cause}, in {where}). → {remediation(cause)}"
    )


def _spike_sentence(summary: Summary, spike: Spike) -> str:
    where = ", ".join(f"{s['service']} ({s['events']:,})" for s in spike.services) or "every service"
    base = f"{spike.baseline:,.0f}" if spike.baseline >= 1 or spike.baseline == 0 else f"{spike.baseline:.1f}"
    jump = (
        f"appeared ({spike.events:,} events, none in {baseline_label(summary)})"
        if spike.ratio is None
        else f"spiked {spike.label} ({spike.events:,} events vs {base} in {baseline_label(summary)})"
    )
    when = ""
    if spike.onset_before is not None:
        when = f", already high before {clock(summary, spike.onset_before)}"
    elif spike.onset is not None:
        when = f" since {clock(summary, spike.onset)}"
    sentence = f"{spike.cause} {jump} in {where}{when}"
    step = spike.rotation
    if step is not None:
        verb = "added" if step["action"] == "added" else "removed"
        if spike.onset is not None:
            gap = (spike.onset - step["ts"]).total_seconds()
            rel = (
                "within a minute of when"
                if abs(gap) < 60
                else f"{human_duration(gap)} {'after' if gap >= 0 else 'before'}"
            )
        else:
            rel = "around when"
        sentence += f", {rel} {step['issuer_name']} {verb} kid {step['kid']} ({clock(summary, step['ts'])})"
        for other in spike.rotations[1:2]:
            share = other["causes"][spike.cause]
            sentence += (
                f" (and {share:,} more after {other['issuer_name']} {other['action']} kid {other['kid']} "
                f"at {clock(summary, other['ts'])})"
            )
        info = cause_info(spike.cause)
        reason = ""
        if info is not None and info.blame:
            keys = "keys" if len(spike.rotations) > 1 else "key"
            reason = info.blame.format(issuer=step["issuer_name"], keys=keys)
            if spike.cause == Cause.STALE_JWKS and spike.cache_age and spike.services:
                reason += f"; {spike.services[0]['service']}: {spike.cache_age}"
            for fault in step.get("issuer_faults", []):
                if fault["fault"] == "signed_before_published" and spike.cause != Cause.UNPUBLISHED_KEY:
                    reason += f"; the issuer's fault too: {issuer_fault_text(fault).rstrip('.')}"
        if reason:
            sentence += f": {reason}"
    elif spike.clients:
        top = spike.clients[0]
        sentence += f"; top client {client_text(top['client_id'])} ({top['events']:,})"
    if spike.attack_events and not spike.attack:
        sentence += f" ({spike.attack_events:,} of them with attack labels: {', '.join(spike.attack_kinds)})"
    return f"{sentence}. → {spike.remediation}"


def _remedy(row: dict[str, Any]) -> str:
    """The remediation for a row of `queries.cause_counts`, from its evidence."""
    return finding_remediation(
        row["cause"], int(row["events"]), int(row.get("with_attacks") or 0), (), row.get("with_fetch_time")
    )


def baseline_label(summary: Summary) -> str:
    if summary.baseline is None:
        return ""
    return (
        "the same window a day earlier"
        if summary.baseline.name == "day_before"
        else f"the {span(summary.window)} before"
    )


def _clients_phrase(clients: list[dict[str, Any]]) -> str:
    named = [f"{c['client_id']} ({c['events']:,})" for c in clients if c["client_id"] is not None]
    anonymous = sum(c["events"] for c in clients if c["client_id"] is None)
    parts = named + ([f"{anonymous:,} without a client_id"] if anonymous else [])
    return " and ".join(parts) if len(parts) <= 2 else ", ".join(parts)


def client_text(value: Any) -> str:
    return "(no client_id)" if value is None else str(value)
