"""The numbers of the weekly report: every figure from `pipeline.queries`, every cause fact from `pipeline.causes`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from pipeline import queries
from pipeline.causes import (
    CAUSES,
    ROTATION_DAMAGE,
    Cause,
    cause_label,
    confidence_text,
    finding_remediation,
    issuer_fault_text,
)
from pipeline.queries.coverage import split
from pipeline.queries.daily import share_days
from pipeline.report.model import (
    DEFAULT_MAX_KEY_AGE,
    DEFAULT_MAX_TOKEN_LIFETIME,
    WEEK,
    Column,
    DayStack,
    Prose,
    Report,
    Section,
    cause_code,
    change_text,
    count_text,
    day_text,
    parse_week,
    week_name,
    when_text,
)
from pipeline.report.sections import (
    _algorithm_section,
    _attack_section,
    _cache_section,
    _dead_letter_section,
    _hygiene_section,
    _lifetime_section,
    _rotation_section,
)


def latest_week(con: duckdb.DuckDBPyConnection) -> str | None:
    """The ISO week of the store's newest event, or None for an empty store."""
    _, last = queries.time_range(con)
    return None if last is None else week_name(last)


def build_report(
    con: duckdb.DuckDBPyConnection,
    week: str | None = None,
    max_token_lifetime: timedelta = DEFAULT_MAX_TOKEN_LIFETIME,
    max_key_age: timedelta = DEFAULT_MAX_KEY_AGE,
    store: str = "",
    now: datetime | None = None,
) -> Report:
    """Everything the report shows for `week` (default: the latest week with events)."""
    con.execute("SET TimeZone = 'UTC'")
    share_days(con)  # a dozen counting questions of the week and the week before: one pass over their days
    generated_at = now or datetime.now(UTC)
    if week is None:  # the store's time range (a scan of every rollup row) only when the week is not given
        _, last = queries.time_range(con, generated_at)
        week = week_name(last) if last is not None else week_name(generated_at)
    since, until = parse_week(week)
    window = queries.Filters(since=since, until=until)
    causes = queries.cause_counts_vs_previous(con, window)
    events = sum(int(r["events"]) for r in causes)
    previous = sum(int(r["previous"]) for r in causes)
    report = Report(week, since, until, generated_at, store, events, previous)
    if events == 0:
        first, last = queries.time_range(con, generated_at)
        if first is None or last is None:
            report.no_data = "The store holds no events yet: run `jwtriage consume` (or `jwtriage demo`) first."
        else:
            report.no_data = (
                f"No events in {week} ({day_text(since)} – {day_text(until - timedelta(days=1))}). "
                "The store holds events "
                f"from {when_text(first)} ({week_name(first)}) to {when_text(last)} ({week_name(last)}) UTC; pass "
                f"--week {week_name(last)}."
            )
        return report

    report.daily = _daily(con, since, until)
    services = queries.service_counts_vs_previous(con, window)
    hygiene = queries.key_hygiene(con, since, until)
    rotation = _rotation_section(con, since, until)
    caches = _cache_section(con, window, hygiene, until)
    lifetimes = _lifetime_section(con, window, max_token_lifetime)
    attacks = _attack_section(con, window, causes)
    report.sections = [
        _cause_section(causes, events, _attacks_per_cause(con, window, causes)),
        _service_section(services),
        rotation,
        caches,
        _hygiene_section(hygiene, until, max_key_age, rotation.facts.get("issuer_faults", [])),
        lifetimes,
        _algorithm_section(con, window),
        attacks,
        _dead_letter_section(con, since, until),
    ]
    report.summary = _summary(con, report, causes, window, rotation, caches, lifetimes, attacks)
    return report


def _daily(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime) -> DayStack:
    days = [since + timedelta(days=n) for n in range(7)]
    counts: dict[Cause, list[int]] = {}
    for row in queries.window_buckets(con, since, until, buckets=7, by="cause"):
        try:
            cause = Cause(row["key"])
        except ValueError:
            continue
        counts.setdefault(cause, [0] * 7)[int(row["bucket"])] += int(row["events"])
    return DayStack(days, {info.cause: counts[info.cause] for info in CAUSES if info.cause in counts})


def _cause_section(rows: list[dict[str, Any]], events: int, attacks: dict[str, list[str]]) -> Section:
    """Per cause, with what to do as its evidence says (attack-labelled unknown_kid is never "add the kid")."""
    section = Section(
        "causes",
        "Failures by cause",
        "Every rejected token's root cause, as re-validated by jwtriage, against the week before.",
        [
            Column("cause", nowrap=True),
            Column("label"),
            Column("events", True),
            Column("share", True),
            Column("previous week", True),
            Column("change", True),
            Column("what to do"),
        ],
    )
    for row in rows:
        current, prev = int(row["events"]), int(row["previous"])
        share = f"{100 * current / events:.1f}%" if events else "–"
        section.rows.append(
            [
                cause_code(row["cause"]),
                cause_label(row["cause"]),
                count_text(current),
                share,
                count_text(prev),
                change_text(current, prev),
                Prose(
                    finding_remediation(
                        row["cause"], current, int(row["with_attacks"] or 0), attacks.get(row["cause"], [])
                    )
                ),
            ]
        )
    return section


def _attacks_per_cause(
    con: duckdb.DuckDBPyConnection, window: queries.Filters, causes: list[dict[str, Any]]
) -> dict[str, list[str]]:
    """The attack kinds seen per cause, for the causes with attack-labelled events (one query for all)."""
    with_attacks = tuple(row["cause"] for row in causes if row["with_attacks"])
    return queries.attack_kinds_by_cause(con, replace(window, causes=with_attacks)) if with_attacks else {}


def _service_section(rows: list[dict[str, Any]]) -> Section:
    section = Section(
        "services",
        "Failures by service",
        "Rejections per service against the week before, with the service's main causes this week.",
        [Column("service", nowrap=True), Column("events", True), Column("previous week", True),
         Column("change", True), Column("main causes")],
    )  # fmt: skip
    for row in rows:
        current, prev = int(row["events"] or 0), int(row["previous"] or 0)
        top = ", ".join(f"{c['cause']} {count_text(c['events'])}" for c in (row["causes"] or [])[:3])
        section.rows.append(
            [row["service"], count_text(current), count_text(prev), change_text(current, prev), top or "–"]
        )
    return section


def _summary(
    con: duckdb.DuckDBPyConnection,
    report: Report,
    causes: list[dict[str, Any]],
    window: queries.Filters,
    rotation: Section,
    caches: Section,
    lifetimes: Section,
    attacks: Section,
) -> list[str]:
    lines = []
    if note := queries.expired_note(con, window.since):
        lines.append(
            note[0].upper() + note[1:] + " (rotations to the hour; key hygiene's uses too, those after a key's "
            "removal in the hour of it as at least one)."
        )
    if split(con, window) is not None:
        lines.append(
            "Hours before the last rolled hour are read from hourly rollups: token lifetimes and median cache ages "
            "from fixed buckets (a median is its bucket's upper edge), and token counts add up each hour's "
            "distinct tokens (a token seen in several hours counts in each)."
        )
    verified = sum(int(r["verified"]) for r in causes)
    lines.append(
        f"{report.events:,} rejected tokens ({change_text(report.events, report.previous_events)} against "
        f"{report.previous_events:,} the week before); {100 * verified / report.events:.0f}% verified "
        "(the token itself re-validated)."
    )
    confidence = queries.confidence_counts(con, window)
    if any(r["confidence"] == "inferred" for r in confidence):
        lines.append(
            f"Confidence: {confidence_text(confidence)}; inferred = stale_jwks judged from a service's JWKS cache "
            "TTL because it reports no fetch time (likely, not proven)."
        )
    top = [r for r in causes if r["events"]][:3]
    lines.append(
        "Top causes: "
        + "; ".join(f"`{r['cause']}` ({cause_label(r['cause'])}) {int(r['events']):,}" for r in top)
        + "."
    )
    first, last = queries.window_time_range(con, window)
    if first is not None and last is not None and (last - first) < WEEK - timedelta(days=1):
        lines.append(f"Data covers only {when_text(first)} to {when_text(last)} UTC of this week.")
    if rotation.facts.get("steps"):
        lines.append(
            f"Caused by key rotations: {rotation.facts['damage']:,} failures ({', '.join(ROTATION_DAMAGE)}; never "
            f"an event with an attack label, never unknown_kid), from {rotation.facts['steps']} rotation step(s)."
        )
    for fault in rotation.facts.get("issuer_faults", []):
        lines.append("The issuer's fault: " + issuer_fault_text(fault))
    if caches.facts.get("outliving"):
        names = ", ".join(sorted(caches.facts["outliving"]))
        lines.append(f"JWKS caches that outlive the rotation overlap: {names}.")
    if lifetimes.facts.get("over"):
        lines.append(
            f"{lifetimes.facts['over']:,} of {lifetimes.facts['checked']:,} verified tokens live longer than the "
            "token lifetime policy."
        )
    if attacks.facts.get("events"):
        kinds = ", ".join(f"`{k}`" for k in attacks.facts["kinds"])
        several = " (a token can carry several)" if len(attacks.facts["kinds"]) > 1 else ""
        lines.append(f"{attacks.facts['events']:,} events with an attack pattern: {kinds}{several}.")
    return [line for line in lines if line]
