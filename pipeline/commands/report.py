"""`jwtriage report`: the weekly IAM health report, as Markdown or one self-contained HTML page.

From the store alone (no config, no network), for one ISO week (UTC, Monday to Monday),
compared with the week before:

1. failures by cause (code, label, change, remediation) and by day; by service;
2. each key rotation step in the week: the failures it caused per service and when they stopped;
3. services whose JWKS cache outlives the issuer's rotation overlap (publish → first use);
4. rotation hygiene per issuer: key age, time from publishing to first use, from last use to removal;
5. token lifetimes over the policy (`--max-token-lifetime`, default 1 h), verified tokens only;
6. algorithms in use; 7. attacks; 8. dead letters received.

Every number comes from `pipeline.queries` (the dashboard and `triage` count the same way),
every remediation line from `pipeline.remediation`. Strings that come from tokens (alg,
client ids) are escaped and shortened; no token, fingerprint or subject ever appears.

A week without events (or an empty store) gives a short report that says so, with exit
status 0: a cron job gets a report every week. Exit 2 for a bad --week or a missing store.
"""

from __future__ import annotations

import argparse
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import duckdb

from pipeline import queries
from pipeline.errors import JwtriageError
from pipeline.models import CAUSE_LABELS, Attack, Cause
from pipeline.remediation import ATTACK_ADVICE, REMEDIATION
from pipeline.text import human_duration

WEEK = timedelta(days=7)
DEFAULT_MAX_TOKEN_LIFETIME = timedelta(hours=1)
DEFAULT_MAX_KEY_AGE = timedelta(days=90)
#: The rotation sparkline: from this long before a step to this long after, in buckets of this size.
SPARK_BEFORE, SPARK_AFTER, SPARK_BUCKET = timedelta(hours=2), timedelta(hours=12), timedelta(minutes=30)
BLOCKS = "▁▂▃▄▅▆▇█"

_WEEK = re.compile(r"^(\d{4})-W(\d{1,2})$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

#: A colour per cause, stable across reports; the rotation causes in warm colours.
CAUSE_COLOURS: dict[Cause, str] = {
    Cause.STALE_JWKS: "#d62728",
    Cause.UNPUBLISHED_KEY: "#ff7f0e",
    Cause.RETIRED_KEY: "#bcbd22",
    Cause.UNKNOWN_KID: "#9467bd",
    Cause.BAD_SIGNATURE: "#8c564b",
    Cause.BAD_ALG: "#e377c2",
    Cause.MALFORMED: "#7f7f7f",
    Cause.ISSUER_MISMATCH: "#17becf",
    Cause.AUDIENCE_MISMATCH: "#1f77b4",
    Cause.CLOCK_SKEW: "#aec7e8",
    Cause.EXPIRED: "#2ca02c",
    Cause.NOT_YET_VALID: "#98df8a",
    Cause.MISSING_CLAIM: "#ffbb78",
    Cause.VALID: "#c5b0d5",
    Cause.UNVERIFIABLE: "#c7c7c7",
}


class ReportError(JwtriageError, ValueError):
    """A bad argument (week, duration); the CLI turns it into a usage error."""


# -- weeks and durations -------------------------------------------------------------------


def parse_week(text: str) -> tuple[datetime, datetime]:
    """`2026-W47` → [Monday 00:00 UTC, next Monday 00:00 UTC)."""
    match = _WEEK.match(text.strip())
    if not match:
        raise ReportError(f"--week {text!r}: expected an ISO week like 2026-W47")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        monday = datetime.fromisocalendar(year, week, 1).replace(tzinfo=UTC)
    except ValueError:
        raise ReportError(f"--week {text!r}: {year} has no ISO week {week}") from None
    return monday, monday + WEEK


def week_name(when: datetime) -> str:
    year, week, _ = when.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def parse_duration(text: str) -> timedelta:
    """`1h`, `90m`, `1h30m`, `3600` (seconds), `2d`, `1w` → timedelta (positive)."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(cleaned)
    if not cleaned or not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ReportError(f"{text!r} is not a duration (e.g. 1h, 90m, 1h30m, 3600, 2d)")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ReportError(f"{text!r} must be longer than zero")
    return timedelta(seconds=seconds)


def _duration_arg(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ReportError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- the report as data --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Code:
    """A cell shown as code (a cause or attack code, a kid, an alg), with a colour swatch for a cause."""

    text: str
    colour: str | None = None
    note: str = ""  # plain text after the code (a key's type)


@dataclass(frozen=True, slots=True)
class Prose:
    """Our own text (a remediation line) whose `backtick` spans are shown as code."""

    text: str


@dataclass(frozen=True, slots=True)
class Spark:
    """A cell shown as a small line: failures per bucket, with the step at `marker`."""

    values: tuple[int, ...]
    marker: int
    caption: str


Cell = str | Code | Prose | Spark


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    numeric: bool = False
    nowrap: bool = False  # names and times: never broken across lines


@dataclass
class Section:
    key: str
    title: str
    intro: str
    columns: list[Column] = field(default_factory=list)
    rows: list[list[Cell]] = field(default_factory=list)
    empty: str = "Nothing this week."
    notes: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # per row: a sub-table heading (one table per value)
    facts: dict[str, Any] = field(default_factory=dict)  # raw figures for the summary

    def tables(self) -> list[tuple[str, list[list[Cell]]]]:
        """The rows cut into (heading, rows) runs; one run with heading "" when the section has no groups."""
        if not self.groups:
            return [("", self.rows)]
        runs: list[tuple[str, list[list[Cell]]]] = []
        for heading, row in zip(self.groups, self.rows, strict=True):
            if not runs or runs[-1][0] != heading:
                runs.append((heading, []))
            runs[-1][1].append(row)
        return runs


@dataclass
class DayStack:
    """Events per day and cause for the stacked bar chart."""

    days: list[datetime]
    counts: dict[Cause, list[int]]


@dataclass
class Report:
    week: str
    since: datetime
    until: datetime
    generated_at: datetime
    store: str
    events: int
    previous_events: int
    summary: list[str] = field(default_factory=list)
    daily: DayStack | None = None
    sections: list[Section] = field(default_factory=list)
    no_data: str | None = None  # set for a week without events: the one thing to say


# -- formatting helpers --------------------------------------------------------------------


def _n(value: int | float | None) -> str:
    return "–" if value is None else f"{int(value):,}"


def _change(current: int, previous: int) -> str:
    if previous == 0:
        return "new" if current else "–"
    if current == 0:
        return "gone"
    return f"{(current - previous) / previous:+.0%}"


def _dur(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    return ("−" if seconds < 0 else "") + human_duration(seconds)


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.astimezone(UTC).strftime("%d %b %H:%M")


def _day(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%a %d %b")


def _untrusted(text: Any, limit: int = 40) -> str:
    """A string that came from a token (alg, client id): control characters out, shortened."""
    if text is None:
        return "–"
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _label(cause: str) -> str:
    try:
        return CAUSE_LABELS[Cause(cause)]
    except ValueError:
        return cause


def _colour(cause: str) -> str | None:
    try:
        return CAUSE_COLOURS[Cause(cause)]
    except ValueError:
        return None


def _remedy(cause: str) -> str:
    try:
        return REMEDIATION[Cause(cause)]
    except ValueError:
        return ""


def _seconds_between(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds()


# -- building ------------------------------------------------------------------------------


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
    generated_at = now or datetime.now(UTC)
    first, last = queries.time_range(con)
    week = week or (week_name(last) if last is not None else week_name(generated_at))
    since, until = parse_week(week)
    window = queries.Filters(since=since, until=until)
    causes = queries.cause_counts_vs_previous(con, window)
    events = sum(int(r["events"]) for r in causes)
    previous = sum(int(r["previous"]) for r in causes)
    report = Report(week, since, until, generated_at, store, events, previous)
    if events == 0:
        if first is None or last is None:
            report.no_data = "The store holds no events yet: run `jwtriage consume` (or `jwtriage demo`) first."
        else:
            report.no_data = (
                f"No events in {week} ({_day(since)} – {_day(until - timedelta(days=1))}). The store holds events "
                f"from {_when(first)} ({week_name(first)}) to {_when(last)} ({week_name(last)}) UTC; pass "
                f"--week {week_name(last)}."
            )
        return report

    report.daily = _daily(con, since, until)
    services = queries.service_counts_vs_previous(con, window)
    hygiene = queries.key_hygiene(con, since, until)
    rotation = _rotation_section(con, since, until)
    caches = _cache_section(con, window, hygiene, until)
    lifetimes = _lifetime_section(con, window, max_token_lifetime)
    attacks = _attack_section(con, window)
    report.sections = [
        _cause_section(causes, events),
        _service_section(services),
        rotation,
        caches,
        _hygiene_section(hygiene, until, max_key_age),
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
    return DayStack(days, {c: counts[c] for c in Cause if c in counts})


def _cause_section(rows: list[dict[str, Any]], events: int) -> Section:
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
                Code(row["cause"], _colour(row["cause"])),
                _label(row["cause"]),
                _n(current),
                share,
                _n(prev),
                _change(current, prev),
                Prose(_remedy(row["cause"])),
            ]
        )
    return section


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
        top = ", ".join(f"{c['cause']} {_n(c['events'])}" for c in (row["causes"] or [])[:3])
        section.rows.append([row["service"], _n(current), _n(prev), _change(current, prev), top or "–"])
    return section


def _rotation_section(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime) -> Section:
    section = Section(
        "rotations",
        "Key rotations: impact and recovery",
        "Each key added to or removed from an issuer's JWKS this week, and the failures it caused on its own "
        "key (stale_jwks and unpublished_key after an addition, retired_key after a removal) per service. "
        f"The line shows those failures per {human_duration(SPARK_BUCKET.total_seconds())} from "
        f"{human_duration(SPARK_BEFORE.total_seconds())} before the step (the marker) to "
        f'{human_duration(SPARK_AFTER.total_seconds())} after; "last failure" is when the service recovered.',
        [
            Column("step"),
            Column("issuer"),
            Column("key"),
            Column("service", nowrap=True),
            Column("failures", True),
            Column("causes"),
            Column("first failure"),
            Column("last failure (recovered)"),
            Column("around the step"),
        ],
        empty="No key was added or removed this week.",
    )
    steps: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in _effects_per_service(queries.rotation_effects(con, since, until, near=timedelta(0))):
        steps.setdefault((row["step_ts"], row["issuer"], row["action"], row["kid"]), []).append(row)
    buckets = int((SPARK_BEFORE + SPARK_AFTER) / SPARK_BUCKET)
    marker = int(SPARK_BEFORE / SPARK_BUCKET)
    for (step_ts, issuer, action, kid), rows in sorted(steps.items(), key=lambda item: (item[0][0], item[0][1])):
        start = step_ts - SPARK_BEFORE
        values = [0] * buckets
        step = {"issuer": issuer, "kid": kid, "action": action}
        for point in queries.rotation_step_series(con, step, start, step_ts + SPARK_AFTER, SPARK_BUCKET):
            if 0 <= point["bucket"] < buckets:
                values[point["bucket"]] = int(point["failures"])
        spark = Spark(tuple(values), marker, f"{action} {kid} at {_when(step_ts)}: {sum(values):,} failures")
        hit = [r for r in rows if r["failures"]]
        total = sum(int(r["failures"]) for r in hit)
        section.facts["steps"] = section.facts.get("steps", 0) + 1
        section.facts["failures"] = section.facts.get("failures", 0) + total
        label = f"{_when(step_ts)} {action}"
        if not hit:
            section.rows.append([label, issuer, Code(kid or "–"), "none affected", "0", "–", "–", "–", spark])
            continue
        for n, row in enumerate(hit):
            section.rows.append(
                [
                    label if n == 0 else "",
                    issuer if n == 0 else "",
                    Code(kid or "–") if n == 0 else "",
                    row["service"],
                    _n(row["failures"]),
                    ", ".join(row["causes"] or []),
                    _when(row["first_failure"]),
                    f"{_when(row['last_failure'])} (+{_dur(_seconds_between(row['last_failure'], step_ts))})",
                    spark if n == 0 else "",
                ]
            )
        if len(hit) > 1:
            section.notes.append(f"{action} {kid} at {_when(step_ts)}: {total:,} failures across {len(hit)} services.")
    return section


def _effects_per_service(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rotation_effects` rows (one per step, service and cause) merged to one per step and service."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (row["step_ts"], row["issuer"], row["action"], row["kid"], row["service"])
        causes = row.get("causes") or ([row["cause"]] if row.get("cause") else [])
        into = merged.get(key)
        if into is None:
            merged[key] = {**row, "causes": sorted(set(causes)), "failures": int(row["failures"] or 0)}
            continue
        into["failures"] += int(row["failures"] or 0)
        into["causes"] = sorted(set(into["causes"]) | set(causes))
        for name, pick in (("first_failure", min), ("last_failure", max)):
            values = [v for v in (into[name], row[name]) if v is not None]
            into[name] = pick(values) if values else None
    return sorted(merged.values(), key=lambda r: (r["step_ts"], r["issuer"], -r["failures"], str(r["service"])))


def _cache_section(
    con: duckdb.DuckDBPyConnection, window: queries.Filters, hygiene: list[dict[str, Any]], until: datetime
) -> Section:
    section = Section(
        "caches",
        "JWKS caches that outlive the rotation overlap",
        "A service's JWKS cache must refresh within the overlap its issuer leaves between publishing a new key "
        "and signing with it, or it rejects the new tokens (stale_jwks). Cache lifetime: the oldest key set a "
        "service reported when rejecting (service_jwks_fetched_at), else the longest stale_jwks window (a "
        "lower bound). Overlap: the issuer's newest added key, from publication to first use.",
        [Column("service", nowrap=True), Column("issuer"), Column("cache lifetime", True), Column("evidence"),
         Column("overlap", True), Column("verdict")],
        empty="No service reported its JWKS fetch time or failed with stale_jwks this week.",
    )  # fmt: skip
    overlap: dict[str, tuple[float | None, str]] = {}
    for key in hygiene:
        if key["initial"] or key["first_seen"] >= until:
            continue
        seconds = _seconds_between(key["first_use"], key["first_seen"])
        overlap[key["issuer"]] = (seconds, key["kid"] or "?")  # hygiene is ordered by first_seen: newest wins
    for row in queries.cache_lifetime_by_service_issuer(con, window):
        reported, stale = row["reported_age_max_s"], row["stale_window_s"]
        if reported is None and stale is None:
            continue
        lifetime = max(v for v in (reported, stale) if v is not None)
        evidence = (
            f"reported on {_n(row['with_fetch_time'])} events"
            if reported is not None and (stale is None or reported >= stale)
            else f"stale_jwks up to {_dur(stale)} after publication"
        )
        issuer = row["issuer"]
        if issuer not in overlap:
            verdict, shown = "no rotation to compare", "–"
        else:
            seconds, kid = overlap[issuer]
            if seconds is None:
                verdict, shown = f"{kid} not used yet", "open"
            elif seconds <= 0:
                verdict, shown = f"outlives it: {kid} signed tokens before it was published", _dur(seconds)
            elif lifetime > seconds:
                verdict, shown = f"outlives the overlap by {_dur(lifetime - seconds)}", _dur(seconds)
            else:
                verdict, shown = "within the overlap", _dur(seconds)
        section.rows.append([row["service"], issuer, _dur(lifetime), evidence, shown, verdict])
        if verdict.startswith("outlives"):
            section.facts.setdefault("outliving", set()).add(row["service"])
    section.rows.sort(key=lambda r: (not str(r[5]).startswith("outlives"), str(r[0]), str(r[1])))
    return section


def _hygiene_section(hygiene: list[dict[str, Any]], until: datetime, max_key_age: timedelta) -> Section:
    section = Section(
        "hygiene",
        "Rotation hygiene per issuer",
        "Each signing key published during the week. First and last use: the first and last rejected token it "
        "signed (verified events); last signed: the newest such token's iat. A new key should be published a "
        "cache lifetime before first use; an old key should stay published until the last token it signed has "
        f"expired. Keys older than {human_duration(max_key_age.total_seconds())} are flagged.",
        [
            Column("key"),
            Column("published", nowrap=True),
            Column("first use", nowrap=True),
            Column("publish → first use", True),
            Column("last signed", nowrap=True),
            Column("last use", nowrap=True),
            Column("removed", nowrap=True),
            Column("last use → removal", True),
            Column("age", True),
            Column("flags"),
        ],
        empty="No key was published this week.",
    )
    for key in hygiene:
        flags = []
        initial = bool(key["initial"])
        lead = None if initial else _seconds_between(key["first_use"], key["first_seen"])
        if lead is not None and lead < 0:
            flags.append("signed before published")
        tail = _seconds_between(key["removed_at"], key["last_use"])
        if key["uses_after_removal"]:
            flags.append(f"used {_n(key['uses_after_removal'])}× after removal")
        end = key["removed_at"] or min(key["last_seen"], until)  # still published: as of its last snapshot
        age = (end - key["first_seen"]).total_seconds()
        if age > max_key_age.total_seconds():
            flags.append("older than policy")
        if not key["uses"]:
            flags.append("no use seen")
        kty = key["kty"] + (f" {key['crv']}" if key["crv"] else "")
        section.groups.append(key["issuer"])
        section.rows.append(
            [
                Code(key["kid"] or "–", note=kty),
                "before history" if initial else _when(key["first_seen"]),
                _when(key["first_use"]),
                "–" if initial else _dur(lead),
                _when(key["last_signed"]),
                _when(key["last_use"]),
                _when(key["removed_at"]) if key["removed_at"] else "still published",
                _dur(tail) if key["removed_at"] else "–",
                ("≥ " if initial else "") + _dur(age),
                ", ".join(flags) or "ok",
            ]
        )
    return section


def _lifetime_section(con: duckdb.DuckDBPyConnection, window: queries.Filters, policy: timedelta) -> Section:
    limit = policy.total_seconds()
    section = Section(
        "lifetimes",
        f"Token lifetimes over policy ({human_duration(limit)})",
        "Lifetime (exp − iat) of each distinct rejected token whose signature verified, per issuer and client "
        "(azp, else client_id). Long-lived tokens outlive key removals (retired_key) and widen the window a "
        f"stolen token can be replayed. Policy (--max-token-lifetime): {human_duration(limit)}.",
        [Column("issuer"), Column("client", nowrap=True), Column("tokens over policy", True), Column("of tokens", True),
         Column("their events", True), Column("longest", True), Column("typical", True)],
        empty="Every verified token this week lived within the policy.",
    )  # fmt: skip
    checked = over_total = 0
    for row in queries.token_lifetimes(con, window, limit):
        checked += int(row["with_lifetime"])
        over_total += int(row["over_policy"])
        if not row["over_policy"]:
            continue
        section.rows.append(
            [
                row["issuer"],
                _untrusted(row["client"]),
                _n(row["over_policy"]),
                _n(row["tokens"]),
                _n(row["events_over_policy"]),
                _dur(row["max_lifetime_s"]),
                _dur(row["median_lifetime_s"]),
            ]
        )
    section.notes.append(f"{over_total:,} of {checked:,} verified tokens with exp and iat are over the policy.")
    section.facts.update(over=over_total, checked=checked)
    return section


def _algorithm_section(con: duckdb.DuckDBPyConnection, window: queries.Filters) -> Section:
    section = Section(
        "algorithms",
        "Algorithms in use",
        "The `alg` header of rejected tokens, as sent. Verified: events whose signature verified with an issuer's "
        "key. A `none` variant or an HS* alg against public-key issuers is an attack pattern (see Attacks).",
        [Column("alg"), Column("events", True), Column("tokens", True), Column("verified", True),
         Column("issuers"), Column("main cause"), Column("attack events", True)],
        empty="No token carried a readable alg this week.",
    )  # fmt: skip
    without = 0
    rows = queries.algorithms_in_use(con, window)
    shown = [r for r in rows if r["alg"] is not None]
    for row in shown[:20]:
        section.rows.append(
            [
                Code(_untrusted(row["alg"], 24)),
                _n(row["events"]),
                _n(row["tokens"]),
                _n(row["verified"]),
                ", ".join(row["issuers"] or []) or "–",
                row["main_cause"],
                _n(row["attack_events"]),
            ]
        )
    if len(shown) > 20:
        rest = shown[20:]
        section.notes.append(f"{len(rest)} more algs with {sum(int(r['events']) for r in rest):,} events in all.")
    without = sum(int(r["events"]) for r in rows if r["alg"] is None)
    if without:
        section.notes.append(f"{without:,} events had no readable alg (no token sampled, or a malformed token).")
    return section


def _attack_section(con: duckdb.DuckDBPyConnection, window: queries.Filters) -> Section:
    section = Section(
        "attacks",
        "Attacks",
        "Hostile patterns in rejected tokens, whatever their cause.",
        [Column("attack"), Column("events", True), Column("services"), Column("clients", True),
         Column("first seen", nowrap=True), Column("last seen", nowrap=True), Column("what to do")],
        empty="No attack pattern seen this week.",
    )  # fmt: skip
    for row in queries.attacks(con, window):
        section.facts["events"] = section.facts.get("events", 0) + int(row["events"])
        section.facts.setdefault("kinds", []).append(row["attack"])
        try:
            advice = ATTACK_ADVICE[Attack(row["attack"])]
        except ValueError:
            advice = ""
        section.rows.append(
            [
                Code(row["attack"]),
                _n(row["events"]),
                ", ".join(row["services"] or []),
                _n(row["clients"]),
                _when(row["first_seen"]),
                _when(row["last_seen"]),
                Prose(advice),
            ]
        )
    return section


def _dead_letter_section(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime) -> Section:
    section = Section(
        "dead_letters",
        "Input that could not be read",
        "Records that failed their wire model (dead letters), by kind, received this week (consumer time). "
        "Each is kept in the store with its reason.",
        [Column("kind"), Column("records", True)],
        empty="No dead letters this week.",
    )
    for row in queries.dead_letters_received(con, since, until):
        section.rows.append([row["kind"], _n(row["records"])])
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
    verified = sum(int(r["verified"]) for r in causes)
    lines.append(
        f"{report.events:,} rejected tokens ({_change(report.events, report.previous_events)} against "
        f"{report.previous_events:,} the week before); {100 * verified / report.events:.0f}% verified "
        "(the token itself re-validated)."
    )
    top = [r for r in causes if r["events"]][:3]
    lines.append(
        "Top causes: " + "; ".join(f"`{r['cause']}` ({_label(r['cause'])}) {int(r['events']):,}" for r in top) + "."
    )
    first, last = queries.window_time_range(con, window)
    if first is not None and last is not None and (last - first) < WEEK - timedelta(days=1):
        lines.append(f"Data covers only {_when(first)} to {_when(last)} UTC of this week.")
    if rotation.facts.get("steps"):
        lines.append(f"{rotation.facts['steps']} rotation step(s) caused {rotation.facts['failures']:,} failures.")
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
        lines.append(f"{attacks.facts['events']:,} attack events ({kinds}).")
    return [line for line in lines if line]


# -- Markdown ------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _md_code(text: str) -> str:
    """A code span (a backtick inside would end it early: shown as a quote)."""
    return "`" + text.replace("`", "'").replace("\n", " ") + "`"


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


def _md_cell(cell: Cell) -> str:
    if isinstance(cell, Prose):
        return _md_text(cell.text)
    if isinstance(cell, Code):
        code = f"`{cell.text}`" if "`" not in cell.text and "|" not in cell.text else _md(cell.text)
        return f"{code} ({_md(cell.note)})" if cell.note else code
    if isinstance(cell, Spark):
        return spark_text(cell.values, cell.marker)
    return _md(cell)


def spark_text(values: Sequence[int], marker: int | None = None) -> str:
    """A Unicode sparkline (▁ for none, ▂ to █ scaled to the peak); `marker` puts a ┃ before that bucket."""
    top = max(values, default=0)
    chars = [BLOCKS[0] if not v else BLOCKS[max(1, min(7, math.ceil(7 * v / top)))] for v in values]
    if marker is not None and 0 <= marker <= len(chars):
        chars.insert(marker, "┃")
    return "".join(chars)


def render_markdown(report: Report) -> str:
    out = [
        f"# jwtriage weekly IAM health report — {report.week}",
        "",
        f"{_day(report.since)} – {_day(report.until - timedelta(days=1))} (UTC), compared with the week before. "
        f"Generated {report.generated_at.astimezone(UTC).strftime('%Y-%m-%d %H:%M')} UTC"
        + (f" from {_md_code(report.store)}." if report.store else "."),
        "",
    ]
    if report.no_data:
        out += ["## No data", "", _md_text(report.no_data), ""]
        return "\n".join(out)
    out += ["## Summary", ""]
    out += [f"- {_md_text(line)}" for line in report.summary]
    out.append("")
    for section in report.sections:
        out += [f"## {section.title}", "", _md_text(section.intro), ""]
        if section.key == "causes" and report.daily is not None:
            out += [*_md_daily(report.daily), ""]
        if not section.rows:
            out += [f"_{_md(section.empty)}_", ""]
        for heading, rows in section.tables() if section.rows else []:
            if heading:
                out += [f"### {_md(heading)}", ""]
            out.append("| " + " | ".join(_md(c.title) for c in section.columns) + " |")
            out.append("|" + "|".join("---:" if c.numeric else "---" for c in section.columns) + "|")
            for row in rows:
                out.append("| " + " | ".join(_md_cell(cell) for cell in row) + " |")
            out.append("")
        for note in section.notes:
            out += [_md_text(note), ""]
    out += ["---", "", "_No token, fingerprint or subject appears in this report; token-supplied strings are "
            "escaped and shortened._", ""]  # fmt: skip
    return "\n".join(out)


def _md_text(text: str) -> str:
    """Prose that may hold `code` spans of our own making: escape everything outside them."""
    parts = text.split("`")
    return "".join(f"`{p}`" if i % 2 else _md(p) for i, p in enumerate(parts))


def _md_daily(daily: DayStack) -> list[str]:
    causes = sorted(daily.counts, key=lambda c: -sum(daily.counts[c]))
    shown, rest = causes[:6], causes[6:]
    header = ["day", "events", *[f"`{c.value}`" for c in shown]] + (["other"] if rest else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for n, day in enumerate(daily.days):
        total = sum(daily.counts[c][n] for c in causes)
        cells = [_day(day), _n(total), *[_n(daily.counts[c][n]) for c in shown]]
        if rest:
            cells.append(_n(sum(daily.counts[c][n] for c in rest)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# -- HTML ----------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d2330;
margin:0;background:#f5f6f8}
main{max-width:1180px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 6px;padding-top:8px;border-top:1px solid #e3e6eb}
.meta,.intro,.note,.empty{color:#5b6473}.intro{max-width:900px;margin:0 0 10px}
ul.summary{background:#f0f4fa;border-left:4px solid #3b6fd8;padding:10px 14px 10px 30px;margin:16px 0}
table{border-collapse:collapse;width:100%;margin:6px 0 4px;font-size:13px}
th,td{border-bottom:1px solid #e3e6eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f7f8fa;font-weight:600}h3{font-size:14px;margin:14px 0 2px}
td.num,th.num{text-align:right}td.num{white-space:nowrap}small{color:#5b6473}
tbody tr:hover{background:#fafbfd}code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
background:#f1f3f6;padding:1px 4px;border-radius:3px;white-space:nowrap}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin:4px 0 8px;font-size:12px}
.scroll{overflow-x:auto}td.nowrap{white-space:nowrap}
span.swatch{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px;vertical-align:-1px}
td.fix{font-size:12px;color:#3d4452;max-width:420px}.bad{color:#b3261e;font-weight:600}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;fill:#5b6473}
footer{margin-top:36px;color:#8a92a0;font-size:12px}
""".strip()


def _h(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_text(text: str) -> str:
    parts = text.split("`")
    return "".join(f"<code>{_h(p)}</code>" if i % 2 else _h(p) for i, p in enumerate(parts))


def _html_cell(cell: Cell, column: Column) -> str:
    css = [name for name, on in (("num", column.numeric), ("nowrap", column.nowrap)) if on]
    if isinstance(cell, Code):
        swatch = f'<span class="swatch" style="background:{cell.colour}"></span>' if cell.colour else ""
        note = f"<br><small>{_h(cell.note)}</small>" if cell.note else ""
        body = f"{swatch}<code>{_h(cell.text)}</code>{note}"
    elif isinstance(cell, Prose):
        css.append("fix")
        body = _html_text(cell.text)
    elif isinstance(cell, Spark):
        body = spark_svg(cell.values, cell.marker, cell.caption)
    else:
        body = _h(cell)
        if cell.startswith(("outlives", "signed before", "used ")) or "after removal" in cell:
            body = f'<span class="bad">{body}</span>'
    return f'<td class="{" ".join(css)}">{body}</td>' if css else f"<td>{body}</td>"


def _nice_max(value: int) -> int:
    if value <= 0:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return int(step * magnitude)
    return int(10 * magnitude)


def stacked_bars_svg(daily: DayStack, width: int = 760, height: int = 260) -> str:
    """An inline SVG: one bar per day, stacked by cause, with a y axis and a <title> per segment."""
    left, right, top, bottom = 56, 12, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(v[n] for v in daily.counts.values()) for n in range(len(daily.days))]
    y_max = _nice_max(max(totals) if totals else 0)
    slot = plot_w / max(1, len(daily.days))
    bar = slot * 0.62
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'role="img" aria-label="Failures per day, stacked by cause">'
    ]
    for tick in range(5):
        value = y_max * tick / 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6eb"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{int(value):,}</text>')
    for n, day in enumerate(daily.days):
        x = left + slot * n + (slot - bar) / 2
        y = top + plot_h
        for cause, values in daily.counts.items():
            count = values[n]
            if not count:
                continue
            h = plot_h * count / y_max
            y -= h
            tip = f"{_day(day)} · {cause.value} ({CAUSE_LABELS[cause]}): {count:,}"
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{CAUSE_COLOURS[cause]}">'
                f"<title>{_h(tip)}</title></rect>"
            )
        label_x = left + slot * n + slot / 2
        parts.append(f'<text x="{label_x:.1f}" y="{height - 8}" text-anchor="middle">{_h(_day(day))}</text>')
        if totals[n]:
            parts.append(f'<text x="{label_x:.1f}" y="{y - 4:.1f}" text-anchor="middle">{totals[n]:,}</text>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#8a92a0"/>')
    parts.append("</svg>")
    return "".join(parts)


def spark_svg(values: Sequence[int], marker: int, caption: str, width: int = 140, height: int = 34) -> str:
    """An inline SVG line of failures per bucket with a dashed marker at the step."""
    pad = 3
    top = max(values) if values else 0
    count = max(1, len(values) - 1)
    points = []
    for n, value in enumerate(values):
        x = pad + (width - 2 * pad) * n / count
        y = height - pad - (height - 2 * pad) * (value / top if top else 0)
        points.append(f"{x:.1f},{y:.1f}")
    marker_x = pad + (width - 2 * pad) * marker / count
    area = f"{pad},{height - pad} " + " ".join(points) + f" {width - pad},{height - pad}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_h(caption)}"><title>{_h(caption)} (peak {top:,} per '
        f"{_h(human_duration(SPARK_BUCKET.total_seconds()))})</title>"
        f'<polygon points="{area}" fill="#fde2e1"/>'
        f'<polyline points="{" ".join(points)}" fill="none" stroke="#d62728" stroke-width="1.5"/>'
        f'<line x1="{marker_x:.1f}" x2="{marker_x:.1f}" y1="0" y2="{height}" stroke="#1d2330" '
        'stroke-dasharray="2,2"/></svg>'
    )


def render_html(report: Report) -> str:
    title = f"jwtriage weekly IAM health report — {report.week}"
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_h(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_h(title)}</h1>",
        f'<p class="meta">{_h(_day(report.since))} – {_h(_day(report.until - timedelta(days=1)))} (UTC), compared '
        f"with the week before. Generated {_h(report.generated_at.astimezone(UTC).strftime('%Y-%m-%d %H:%M'))} UTC"
        + (f" from <code>{_h(report.store)}</code>." if report.store else ".")
        + "</p>",
    ]
    if report.no_data:
        out += ["<h2>No data</h2>", f"<p>{_html_text(report.no_data)}</p>"]
    else:
        out.append('<ul class="summary">' + "".join(f"<li>{_html_text(s)}</li>" for s in report.summary) + "</ul>")
        for section in report.sections:
            out.append(f'<section id="{section.key}"><h2>{_h(section.title)}</h2>')
            out.append(f'<p class="intro">{_html_text(section.intro)}</p>')
            if section.key == "causes" and report.daily is not None:
                out.append(stacked_bars_svg(report.daily))
                out.append(
                    '<div class="legend">'
                    + "".join(
                        f'<span><span class="swatch" style="background:{CAUSE_COLOURS[c]}"></span>'
                        f"<code>{_h(c.value)}</code> {_h(CAUSE_LABELS[c])}</span>"
                        for c in report.daily.counts
                    )
                    + "</div>"
                )
            if not section.rows:
                out.append(f'<p class="empty">{_h(section.empty)}</p>')
            head = "".join(
                f'<th class="num">{_h(c.title)}</th>' if c.numeric else f"<th>{_h(c.title)}</th>"
                for c in section.columns
            )
            for heading, rows in section.tables() if section.rows else []:
                if heading:
                    out.append(f"<h3>{_h(heading)}</h3>")
                body = "".join(
                    "<tr>" + "".join(_html_cell(cell, col) for cell, col in zip(row, section.columns, strict=True))
                    + "</tr>"
                    for row in rows
                )  # fmt: skip
                out.append(
                    f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
                )
            out += [f'<p class="note">{_html_text(note)}</p>' for note in section.notes]
            out.append("</section>")
    out.append(
        "<footer>Built by <code>jwtriage report</code> from the store alone. No token, fingerprint or subject "
        "appears in this report; token-supplied strings are escaped and shortened. Opens offline: no scripts, "
        "fonts or images are fetched.</footer></main></body></html>"
    )
    return "\n".join(out) + "\n"


# -- the command ---------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    from pipeline.commands.common import EXIT_OK, store_path
    from pipeline.errors import StoreError, UsageError
    from pipeline.io.store_readers import connect_readonly

    fmt = args.format or ("html" if args.out and str(args.out).lower().endswith((".html", ".htm")) else "md")
    if args.week:
        try:
            parse_week(args.week)
        except ReportError as exc:
            raise UsageError(str(exc)) from None
    path = store_path(args)
    try:
        con = connect_readonly(path)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    try:
        report = build_report(
            con,
            args.week,
            max_token_lifetime=args.max_token_lifetime,
            max_key_age=args.max_key_age,
            store=Path(path).name,
        )
    except duckdb.CatalogException as exc:
        raise UsageError(f"{path} is not a jwtriage store: {exc}") from None
    finally:
        con.close()
    text = render_html(report) if fmt == "html" else render_markdown(report)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        state = "no data" if report.no_data else f"{report.events:,} events"
        print(f"wrote {out} ({fmt}, {report.week}, {state})", file=stdout)
    else:
        stdout.write(text)
    return EXIT_OK


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="the weekly IAM health report (Markdown or self-contained HTML) from the store",
        description="The weekly IAM health report for one ISO week (UTC), from the store alone: failures by cause "
        "and service with the change from the week before; each rotation's impact and recovery; services whose "
        "JWKS caches outlive the rotation overlap; rotation hygiene per issuer; token lifetimes over policy; "
        "algorithms in use; attacks. The HTML has its charts inline and opens offline. A week without events "
        "gives a short report saying so (exit 0); a bad --week or a missing store exits 2.",
        epilog="Examples: jwtriage report --db jwtriage-demo.duckdb; "
        "jwtriage report --week 2026-W47 --format html --out report.html",
    )
    parser.add_argument("--config", help="config TOML, only for the store path (optional)")
    parser.add_argument("--db", metavar="PATH", help="the store (default: $JWTRIAGE_DB, else the config's)")
    parser.add_argument("--week", metavar="YYYY-Www", help="ISO week, e.g. 2026-W47 (default: the latest with events)")
    parser.add_argument(
        "--format", choices=("md", "html"), help="output format (default: html when --out ends in .html, else md)"
    )
    parser.add_argument("--out", metavar="FILE", help="write the report here (default: stdout)")
    parser.add_argument(
        "--max-token-lifetime",
        type=_duration_arg,
        default=DEFAULT_MAX_TOKEN_LIFETIME,
        metavar="DURATION",
        help="token lifetime policy, e.g. 1h, 30m, 12h (default 1h)",
    )
    parser.add_argument(
        "--max-key-age",
        type=_duration_arg,
        default=DEFAULT_MAX_KEY_AGE,
        metavar="DURATION",
        help="flag signing keys older than this (default 90d)",
    )
    parser.set_defaults(handler=cmd_report)
