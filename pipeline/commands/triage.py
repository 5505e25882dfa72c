"""`jwtriage triage`: the first command an on-call engineer runs — what is failing, what changed, since when.

From the store only (no config needed): failures per cause in the window against the
window just before and the same window a day and a week earlier; the causes that spiked,
with their services, clients and onset; the key rotations in or near the window and the
failures they caused; attack bursts; a sparkline for each; and the one or two lines to
read first. Every number comes from `pipeline.queries`, so the dashboard and the report
count the same way; every remediation line from `pipeline.remediation`.

The spike rule, stated once: a cause spiked when it has at least `SPIKE_MIN_EVENTS` events
in the window and at least `SPIKE_RATIO` times its baseline, or is new (none in the
baseline). The baseline is the same window a day earlier when the store reaches back that
far, else the window just before; a comparison window the store covers only in part is
scaled to its full length (shown as "~N"), and one it covers less than a quarter of is
not used ("–").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import duckdb
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pipeline import queries
from pipeline.commands.common import parse_time_flag, store_path
from pipeline.config import load_config, resolve_config_path
from pipeline.errors import ConfigError, StoreError, UsageError
from pipeline.io.store_readers import connect_readonly
from pipeline.models import CAUSE_LABELS, Attack, Cause
from pipeline.remediation import ATTACK_ADVICE, REMEDIATION
from pipeline.text import human_duration

SPIKE_MIN_EVENTS = 20
SPIKE_RATIO = 3.0
BUCKETS = 12
#: A comparison window needs at least this share of it covered by the store's history.
MIN_COVERAGE = 0.25
#: Rotation steps this long before the window are listed when their failures reach into it.
ROTATION_LOOKBACK = timedelta(hours=24)
BLOCKS = "▁▂▃▄▅▆▇█"
_SINCE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_ROTATION_CAUSES = {"added": ("stale_jwks", "unpublished_key"), "removed": ("retired_key",)}


# -- the command line ------------------------------------------------------------------------


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "triage",
        help="what is failing now, what changed, since when: the first command to run on call",
        description="A terminal summary from the store: failures per cause in the window against the window "
        "before and the same window a day and a week earlier; the causes that spiked (at least "
        f"{SPIKE_MIN_EVENTS} events and {SPIKE_RATIO:g}x the baseline, or new) with their services, clients and "
        "onset; key rotations in or near the window and the failures they caused; attack bursts; and the one "
        "or two lines to read first. The window ends now, or at the store's last event when its data ends "
        "earlier than the window (old or simulated data), or at --until.",
        epilog="Examples: jwtriage triage; jwtriage triage --since 6h --service payments-api; "
        "jwtriage triage --since 1h --until 2026-11-23T11:00:00Z --json",
    )
    parser.add_argument("--config", help="config TOML, only for the store path and issuer names (optional)")
    parser.add_argument("--db", metavar="PATH", help="the store (default: $JWTRIAGE_DB, else the config's)")
    parser.add_argument(
        "--since", default="1h", metavar="DURATION", help="window length: 15m, 1h, 6h, 1d, 7d (default 1h)"
    )
    parser.add_argument("--until", metavar="RFC3339", help="end of the window, for a past incident (default: now)")
    parser.add_argument("--service", metavar="NAME", help="only this service's failures")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.set_defaults(handler=cmd_triage)


def cmd_triage(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    window = parse_since(args.since)
    until = parse_time_flag("--until", args.until) if args.until else None
    path = store_path(args)
    try:
        con = connect_readonly(path)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    try:
        try:
            names = _issuer_names(args)
            summary = summarize(
                con, window, until=until, service=args.service, now=datetime.now(UTC), issuer_names=names
            )
        except duckdb.CatalogException:
            raise UsageError(f"{path} is not a jwtriage store (no classifications table)") from None
        summary.store = str(path)
        summary.read_first = read_first(summary)
    finally:
        con.close()
    if args.json:
        stdout.write(json.dumps(summary.to_json(), default=_json_default) + "\n")
    else:
        render(Console(file=stdout, highlight=False), summary)
    stdout.flush()
    return 0


def parse_since(text: str) -> timedelta:
    """'15m', '1h', '6h', '1d', '7d' (minutes, hours, days, weeks)."""
    match = _SINCE.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"--since {text!r}: give a duration such as 15m, 1h, 6h, 1d or 7d")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _issuer_names(args: argparse.Namespace) -> dict[str, str]:
    """Issuer URL → short name, from the config when there is one (triage works without it)."""
    path = resolve_config_path(getattr(args, "config", None), os.environ)
    if not path.exists():
        return {}
    try:
        config = load_config(path, os.environ)
    except ConfigError:
        if args.config:
            raise
        return {}
    return {i.issuer: i.name for i in config.issuers}


# -- the summary -----------------------------------------------------------------------------


@dataclass
class Comparison:
    """One comparison window: its counts per cause, scaled to the window's length when the store covers part of it."""

    name: str
    since: datetime
    until: datetime
    coverage: float
    counts: dict[str, float] = field(default_factory=dict)
    total: float = 0.0

    @property
    def usable(self) -> bool:
        return self.coverage >= MIN_COVERAGE

    def count(self, cause: str) -> float | None:
        return self.counts.get(cause, 0.0) if self.usable else None

    def shown(self, value: float | None) -> str:
        if value is None:
            return "–"
        return f"~{value:,.0f}" if self.coverage < 0.9 else f"{value:,.0f}"


@dataclass
class Spike:
    cause: str
    events: int
    baseline: float
    ratio: float | None  # None when new
    onset: datetime | None
    onset_before: datetime | None  # set when it was already high at the start of the lookback
    services: list[dict[str, Any]]
    clients: list[dict[str, Any]]
    rotations: list[dict[str, Any]] = field(default_factory=list)
    cache_age: str | None = None

    @property
    def rotation(self) -> dict[str, Any] | None:
        return self.rotations[0] if self.rotations else None

    @property
    def label(self) -> str:
        return "new" if self.ratio is None else f"{_ratio(self.ratio)}x"


@dataclass
class Summary:
    since: datetime
    until: datetime
    reference: datetime
    reference_source: str  # "now", "store_end", "until"
    reference_note: str
    service: str | None
    store_first: datetime | None
    store_last: datetime | None
    total: int = 0
    causes: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    baseline: Comparison | None = None
    sparklines: dict[str, list[int]] = field(default_factory=dict)
    spikes: list[Spike] = field(default_factory=list)
    rotations: list[dict[str, Any]] = field(default_factory=list)
    attacks: list[dict[str, Any]] = field(default_factory=list)
    read_first: list[str] = field(default_factory=list)
    message: str | None = None
    store: str = ""
    issuer_names: dict[str, str] = field(default_factory=dict)

    @property
    def window(self) -> timedelta:
        return self.until - self.since

    def issuer(self, url: str) -> str:
        return self.issuer_names.get(url) or urlsplit(url).netloc or url

    def to_json(self) -> dict[str, Any]:
        comparisons = {c.name: c for c in self.comparisons}

        def compared(cause: str | None) -> dict[str, float | None]:
            out: dict[str, float | None] = {}
            for name, c in comparisons.items():
                value = (c.total if c.usable else None) if cause is None else c.count(cause)
                out[name] = None if value is None else round(value, 1)
            return out

        return {
            "store": self.store,
            "service": self.service,
            "since": self.since,
            "until": self.until,
            "window_seconds": self.window.total_seconds(),
            "reference": self.reference,
            "reference_source": self.reference_source,
            "reference_note": self.reference_note,
            "bucket_seconds": self.window.total_seconds() / BUCKETS,
            "message": self.message,
            "total": {"window": self.total, **compared(None)},
            "baseline": self.baseline.name if self.baseline else None,
            "comparison_coverage": {c.name: round(c.coverage, 3) for c in self.comparisons},
            "causes": [
                {
                    "cause": row["cause"],
                    "events": row["events"],
                    **compared(row["cause"]),
                    "sparkline": self.sparklines.get(row["cause"], [0] * BUCKETS),
                    "spike": any(s.cause == row["cause"] for s in self.spikes),
                }
                for row in self.causes
            ],
            "spikes": [
                {
                    "cause": s.cause,
                    "events": s.events,
                    "baseline": round(s.baseline, 1),
                    "ratio": None if s.ratio is None else round(s.ratio, 1),
                    "new": s.ratio is None,
                    "since": s.onset,
                    "already_high_before": s.onset_before,
                    "services": s.services,
                    "clients": s.clients,
                    "rotation": s.rotation,
                    "rotations": s.rotations,
                    "remediation": REMEDIATION[Cause(s.cause)],
                }
                for s in self.spikes
            ],
            "rotations": self.rotations,
            "attacks": self.attacks,
            "read_first": self.read_first,
        }


def summarize(
    con: duckdb.DuckDBPyConnection,
    window: timedelta,
    until: datetime | None = None,
    service: str | None = None,
    now: datetime | None = None,
    issuer_names: dict[str, str] | None = None,
) -> Summary:
    """Everything triage shows, from the store; `now` is the wall clock (a parameter for tests)."""
    now = now or datetime.now(UTC)
    services = (service,) if service else None
    first, last = queries.time_range(con)
    first, last = _utc(first), _utc(last)
    reference, source, note = _reference(now, last, window, until)
    end = reference + timedelta(microseconds=1) if source == "store_end" else reference
    summary = Summary(end - window, end, reference, source, note, service, first, last)
    summary.issuer_names = dict(issuer_names or {})
    if last is None:
        summary.message = "The store holds no classified events yet (run `jwtriage consume`, or `jwtriage demo`)."
        return summary
    if service and service not in queries.services_seen(con):
        seen = ", ".join(queries.services_seen(con))
        summary.message = f"The store has no failures for service {service!r} at all (services seen: {seen})."
        return summary
    here = queries.Filters(summary.since, summary.until, services)
    summary.total = queries.total_events(con, here)
    summary.causes = queries.cause_counts(con, here)
    for name, shift in (("previous", window), ("day_before", timedelta(days=1)), ("week_before", timedelta(days=7))):
        summary.comparisons.append(
            _comparison(con, name, summary.since - shift, summary.until - shift, first, services)
        )
    by_name = {c.name: c for c in summary.comparisons}
    summary.baseline = next((by_name[n] for n in ("day_before", "previous") if by_name[n].usable), None)
    for name in ("previous", "day_before"):  # causes that vanished still deserve a row
        seen_now = {r["cause"] for r in summary.causes}
        for cause, count in by_name[name].counts.items():
            if cause not in seen_now and count >= SPIKE_MIN_EVENTS and by_name[name].usable:
                summary.causes.append({"cause": cause, "events": 0, "verified": 0, "percent": 0.0})
    if summary.total == 0:
        summary.message = (
            f"No auth failures in the {span(window)} up to {_stamp(reference)}"
            + (f" for {service}" if service else "")
            + f". The store's events run from {_stamp(first)} to {_stamp(last)}."
        )
        return summary
    summary.sparklines = _series(con, summary, "cause", here)
    summary.rotations = _rotations(con, summary, services)
    summary.spikes = _spikes(con, summary, services)
    summary.attacks = _attacks(con, summary, here)
    return summary


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _reference(
    now: datetime, last: datetime | None, window: timedelta, until: datetime | None
) -> tuple[datetime, str, str]:
    """Where the window ends: --until, else now, else the store's last event when its data ends before the window."""
    if until is not None:
        return until, "until", "--until"
    if last is None:
        return now, "now", "now"
    if last < now - window:
        return (
            last,
            "store_end",
            f"the store's last event; its data ends {human_duration((now - last).total_seconds())} ago",
        )
    if last > now + timedelta(minutes=5):
        return last, "store_end", "the store's last event, which is ahead of this machine's clock"
    return now, "now", "now"


def _comparison(
    con: duckdb.DuckDBPyConnection,
    name: str,
    since: datetime,
    until: datetime,
    first: datetime | None,
    services: tuple[str, ...] | None,
) -> Comparison:
    width = (until - since).total_seconds()
    covered = 0.0 if first is None or first >= until else (until - max(since, first)).total_seconds()
    coverage = max(0.0, min(1.0, covered / width)) if width > 0 else 0.0
    result = Comparison(name, since, until, coverage)
    if result.usable:
        rows = queries.cause_counts(con, queries.Filters(since, until, services))
        result.counts = {r["cause"]: r["events"] / coverage for r in rows}
        result.total = sum(result.counts.values())
    return result


def _series(
    con: duckdb.DuckDBPyConnection, summary: Summary, by: str, filters: queries.Filters
) -> dict[str, list[int]]:
    series: dict[str, list[int]] = {}
    for row in queries.window_buckets(con, summary.since, summary.until, BUCKETS, by, filters):
        series.setdefault(str(row["key"]), [0] * BUCKETS)[row["bucket"]] = row["events"]
    return series


def _spikes(con: duckdb.DuckDBPyConnection, summary: Summary, services: tuple[str, ...] | None) -> list[Spike]:
    baseline = summary.baseline
    if baseline is None:
        return []
    spikes = []
    for row in summary.causes:
        cause, events = row["cause"], row["events"]
        base = baseline.count(cause) or 0.0
        if events < SPIKE_MIN_EVENTS or (base > 0 and events < SPIKE_RATIO * base):
            continue
        only = queries.Filters(summary.since, summary.until, services, causes=(cause,))
        onset, before = _onset(con, summary, cause, base, services)
        spike = Spike(
            cause,
            events,
            base,
            None if base == 0 else events / base,
            onset,
            before,
            [{"service": r["value"], "events": r["events"]} for r in queries.top(con, "service", only, 3)],
            [{"client_id": r["value"], "events": r["events"]} for r in queries.top(con, "client_id", only, 3)],
        )
        spike.rotations = _linked_rotations(summary, cause, events)
        if cause == "stale_jwks" and spike.services:
            spike.cache_age = _cache_age(con, summary, spike.services[0]["service"])
        spikes.append(spike)
    return sorted(spikes, key=lambda s: (s.rotation is None, -(s.events - s.baseline)))


def _onset(
    con: duckdb.DuckDBPyConnection, summary: Summary, cause: str, baseline: float, services: tuple[str, ...] | None
) -> tuple[datetime | None, datetime | None]:
    """When the spike began: the first event of the run of hot buckets that holds the window's peak.

    Buckets span the window and one window before it; a bucket is hot when it holds more than
    SPIKE_RATIO times the baseline's share of a bucket (any event, for a new cause). When the
    run reaches back to the start of the lookback, the cause was already high then.
    """
    start = summary.since - summary.window
    filters = queries.Filters(services=services, causes=(cause,))
    counts = [0] * (2 * BUCKETS)
    for row in queries.window_buckets(con, start, summary.until, 2 * BUCKETS, "cause", filters):
        counts[row["bucket"]] = row["events"]
    threshold = SPIKE_RATIO * baseline / BUCKETS
    peak = max(range(BUCKETS, 2 * BUCKETS), key=lambda i: counts[i])
    first = peak
    while first > 0 and counts[first - 1] > threshold:
        first -= 1
    width = summary.window / BUCKETS
    bucket_start = start + first * width
    onset = queries.first_event(con, queries.Filters(bucket_start, summary.until, services, causes=(cause,)))
    already = bucket_start if first == 0 and (summary.store_first or start) < start else None
    return _utc(onset), already


def _cache_age(con: duckdb.DuckDBPyConnection, summary: Summary, service: str) -> str | None:
    rows = queries.cache_age_by_service(con, queries.Filters(summary.since, summary.until, (service,)))
    if not rows:
        return None
    row = rows[0]
    if row["reported_age_max_s"] is not None:
        return f"its JWKS cache is up to {human_duration(row['reported_age_max_s'])} old (as its events report)"
    if row["stale_window_s"] is not None:
        return (
            f"it still rejected a key {human_duration(row['stale_window_s'])} after its publication "
            "(it does not report its cache age)"
        )
    return None


def _rotations(
    con: duckdb.DuckDBPyConnection, summary: Summary, services: tuple[str, ...] | None
) -> list[dict[str, Any]]:
    """Rotation steps in or near the window, each with the failures it caused in the window (per service and cause)."""
    steps: dict[tuple[Any, ...], dict[str, Any]] = {}
    per_service: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for row in queries.rotation_effects(con, summary.since, summary.until, ROTATION_LOOKBACK, services):
        step_ts = _utc(row["step_ts"])
        assert step_ts is not None
        key = (row["issuer"], row["kid"], row["action"], step_ts)
        step = steps.setdefault(
            key,
            {
                "issuer": row["issuer"],
                "issuer_name": summary.issuer(row["issuer"]),
                "kid": row["kid"],
                "action": row["action"],
                "ts": step_ts,
                "in_window": summary.since <= step_ts < summary.until,
                "failures": 0,
                "causes": {},
                "services": [],
                "first_failure": None,
            },
        )
        if row["service"] is None:
            continue
        first, last = _utc(row["first_failure"]), _utc(row["last_failure"])
        step["failures"] += row["failures"]
        step["causes"][row["cause"]] = step["causes"].get(row["cause"], 0) + row["failures"]
        entry = per_service.setdefault(key, {}).setdefault(
            row["service"],
            {"service": row["service"], "failures": 0, "causes": {}, "first_failure": first, "last_failure": last},
        )
        entry["failures"] += row["failures"]
        entry["causes"][row["cause"]] = row["failures"]
        entry["first_failure"] = min(entry["first_failure"], first) if first else entry["first_failure"]
        entry["last_failure"] = max(entry["last_failure"], last) if last else entry["last_failure"]
        if first is not None and (step["first_failure"] is None or first < step["first_failure"]):
            step["first_failure"] = first
    for key, step in steps.items():
        step["services"] = sorted(per_service.get(key, {}).values(), key=lambda e: (-e["failures"], e["service"]))
        filters = queries.Filters(services=services, causes=_ROTATION_CAUSES[step["action"]])
        counts = [0] * BUCKETS
        for row in queries.window_buckets(con, summary.since, summary.until, BUCKETS, "kid", filters):
            if row["key"] == step["kid"]:
                counts[row["bucket"]] += row["events"]
        step["sparkline"] = counts
    return sorted(steps.values(), key=lambda s: s["ts"])


def _linked_rotations(summary: Summary, cause: str, events: int) -> list[dict[str, Any]]:
    """The rotation steps behind this cause's failures in the window: most first, each with at least a fifth of them."""
    linked = [step for step in summary.rotations if step["causes"].get(cause, 0) * 5 >= max(events, 1)]
    return sorted(linked, key=lambda step: -int(step["causes"][cause]))


def _attacks(con: duckdb.DuckDBPyConnection, summary: Summary, here: queries.Filters) -> list[dict[str, Any]]:
    clients: dict[str, list[dict[str, Any]]] = {}
    for row in queries.attack_clients(con, here, 3):
        clients.setdefault(row["attack"], []).append({"client_id": row["client_id"], "events": row["events"]})
    series = _series(con, summary, "attack", here)
    return [
        {
            "attack": row["attack"],
            "events": row["events"],
            "services": list(row["services"]),
            "clients": clients.get(row["attack"], []),
            "distinct_clients": row["clients"],
            "first_seen": _utc(row["first_seen"]),
            "last_seen": _utc(row["last_seen"]),
            "sparkline": series.get(row["attack"], [0] * BUCKETS),
            "advice": ATTACK_ADVICE[Attack(row["attack"])],
        }
        for row in queries.attacks(con, here)
    ]


# -- the lines to read first -----------------------------------------------------------------


def read_first(summary: Summary) -> list[str]:
    """The one or two most important findings, as sentences with what to do."""
    if summary.message:
        return [summary.message]
    lines = []
    if summary.spikes:
        lines.append(_spike_sentence(summary, summary.spikes[0]))
    if summary.attacks:
        top = max(summary.attacks, key=lambda a: a["events"])
        others = [a["attack"] for a in summary.attacks if a is not top]
        who = _clients_phrase(top["clients"])
        also = f" (with {', '.join(others)})" if others else ""
        lines.append(
            f"Attack burst: {top['attack']}{also}, {top['events']:,} events from {who} against "
            f"{', '.join(top['services'])}, {_clock(summary, top['first_seen'])}–{_clock(summary, top['last_seen'])}. "
            f"→ {top['advice']}"
        )
    if len(lines) < 2 and len(summary.spikes) > 1:
        lines.append(_spike_sentence(summary, summary.spikes[1]))
    if not summary.spikes:
        rotation = _rotation_sentence(summary) if summary.baseline is None else None
        lines.insert(0, rotation or _steady_sentence(summary))
    return lines[:2]


def _steady_sentence(summary: Summary) -> str:
    top_cause = summary.causes[0]
    if summary.baseline is not None:
        before = f"{summary.baseline.total:,.0f}"
        against = f" against {_baseline_label(summary)} ({summary.total:,} failures vs {before})"
    else:
        against = " (the store does not reach back far enough to compare)"
    return (
        f"No cause spiked{against}. The most common is {top_cause['cause']} "
        f"({top_cause['events']:,} of {summary.total:,}, {top_cause['percent']}%). "
        f"→ {REMEDIATION[Cause(top_cause['cause'])]}"
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
        f"most after {step['issuer_name']} {step['action']} kid {step['kid']} at {_clock(summary, step['ts'])} "
        f"({step['failures']:,}, mainly {cause}, in {where}). → {REMEDIATION[Cause(cause)]}"
    )


def _spike_sentence(summary: Summary, spike: Spike) -> str:
    where = ", ".join(f"{s['service']} ({s['events']:,})" for s in spike.services) or "every service"
    base = f"{spike.baseline:,.0f}" if spike.baseline >= 1 or spike.baseline == 0 else f"{spike.baseline:.1f}"
    jump = (
        f"appeared ({spike.events:,} events, none in {_baseline_label(summary)})"
        if spike.ratio is None
        else f"spiked {spike.label} ({spike.events:,} events vs {base} in {_baseline_label(summary)})"
    )
    when = ""
    if spike.onset_before is not None:
        when = f", already high before {_clock(summary, spike.onset_before)}"
    elif spike.onset is not None:
        when = f" since {_clock(summary, spike.onset)}"
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
        sentence += f", {rel} {step['issuer_name']} {verb} kid {step['kid']} ({_clock(summary, step['ts'])})"
        for other in spike.rotations[1:2]:
            share = other["causes"][spike.cause]
            sentence += (
                f" (and {share:,} more after {other['issuer_name']} {other['action']} kid {other['kid']} "
                f"at {_clock(summary, other['ts'])})"
            )
        reason = {
            "stale_jwks": f"the services' JWKS caches predate the new key{'s' if len(spike.rotations) > 1 else ''}"
            + (f"; {spike.services[0]['service']}: {spike.cache_age}" if spike.cache_age and spike.services else ""),
            "unpublished_key": f"{step['issuer_name']} signed with the key before publishing it",
            "retired_key": "tokens signed with the removed key are still in use",
        }.get(spike.cause)
        if reason:
            sentence += f": {reason}"
    elif spike.clients:
        top = spike.clients[0]
        sentence += f"; top client {_client(top['client_id'])} ({top['events']:,})"
    return f"{sentence}. → {REMEDIATION[Cause(spike.cause)]}"


def _baseline_label(summary: Summary) -> str:
    if summary.baseline is None:
        return ""
    return (
        "the same window a day earlier"
        if summary.baseline.name == "day_before"
        else f"the {span(summary.window)} before"
    )


def span(value: timedelta) -> str:
    """A window length as people say it: '15 min', '1 h', '6 h', '1 d', '2 d 12 h'."""
    seconds = int(value.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds < 3600:
        return f"{seconds // 60} min"
    return human_duration(seconds)


def _clients_phrase(clients: list[dict[str, Any]]) -> str:
    named = [f"{c['client_id']} ({c['events']:,})" for c in clients if c["client_id"] is not None]
    anonymous = sum(c["events"] for c in clients if c["client_id"] is None)
    parts = named + ([f"{anonymous:,} without a client_id"] if anonymous else [])
    return " and ".join(parts) if len(parts) <= 2 else ", ".join(parts)


def _client(value: Any) -> str:
    return "(no client_id)" if value is None else str(value)


# -- the terminal output ---------------------------------------------------------------------


def sparkline(counts: Sequence[int]) -> str:
    """Unicode blocks, scaled to the row's peak; an empty bucket is the lowest block, any event at least the next."""
    peak = max(counts, default=0)
    if peak == 0:
        return BLOCKS[0] * len(counts)
    return "".join(BLOCKS[0] if c == 0 else BLOCKS[max(1, math.ceil(c / peak * 7))] for c in counts)


def _ratio(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def _stamp(when: datetime | None) -> str:
    return "–" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _clock(summary: Summary, when: datetime | None) -> str:
    """'10:42' on the reference's day, else 'Sun 22:15' (times are UTC; the header says so)."""
    if when is None:
        return "–"
    when = when.astimezone(UTC)
    return when.strftime("%H:%M" if when.date() == summary.reference.date() else "%a %H:%M")


def render(console: Console, summary: Summary) -> None:
    length = span(summary.window)
    scope = f" · service {escape(summary.service)}" if summary.service else ""
    console.print(
        f"[bold]jwtriage triage[/] · last {length} up to {_stamp(summary.reference)} ({escape(summary.reference_note)})"
        f"{scope} · {escape(summary.store)}"
    )
    if summary.message:
        console.print(Text(summary.message))
        return
    compared = "  ".join(
        f"{_COMPARISON_LABEL[c.name](length)}: {c.shown(c.total if c.usable else None)}" for c in summary.comparisons
    )
    console.print(f"{summary.total:,} failures  ({compared})  [dim]times UTC[/]\n")

    console.print("[bold]Read first[/]")
    for n, line in enumerate(summary.read_first, 1):
        console.print(Text(f" {n}. {line}"))
    console.print()
    console.print(_causes_table(summary, length))
    if summary.spikes:
        console.print(_spikes_table(summary))
    if summary.rotations:
        console.print(_rotations_table(summary))
    if summary.attacks:
        console.print(_attacks_table(summary))
    console.print(
        f"[dim]Sparklines: {BUCKETS} buckets of {span(summary.window / BUCKETS)} over the window, "
        "each row scaled to its own peak. "
        f"Spike: ≥ {SPIKE_MIN_EVENTS} events and ≥ {SPIKE_RATIO:g}x the baseline ("
        + (_baseline_label(summary) if summary.baseline else "none: the store does not reach back far enough")
        + "), or new. ~N: scaled from partial history; –: no history that far back.[/]"
    )


_COMPARISON_LABEL = {
    "previous": lambda length: f"{length} before",
    "day_before": lambda length: "a day earlier",
    "week_before": lambda length: "a week earlier",
}


def _causes_table(summary: Summary, length: str) -> Table:
    table = Table(title="Failures by cause", title_justify="left")
    table.add_column("cause")
    table.add_column("events", justify="right")
    for c in summary.comparisons:
        table.add_column(_COMPARISON_LABEL[c.name](length), justify="right")
    table.add_column("trend")
    table.add_column("")
    spikes = {s.cause: s for s in summary.spikes}
    for row in summary.causes:
        cause = row["cause"]
        spike = spikes.get(cause)
        mark = f"[bold red]▲ {spike.label}[/]" if spike else ""
        table.add_row(
            f"{cause} [dim]{escape(CAUSE_LABELS[Cause(cause)])}[/]",
            f"{row['events']:,}",
            *(c.shown(c.count(cause)) for c in summary.comparisons),
            sparkline(summary.sparklines.get(cause, [0] * BUCKETS)),
            mark,
        )
    return table


def _spikes_table(summary: Summary) -> Table:
    table = Table(title="Spikes", title_justify="left")
    for column in ("cause", "events", "vs baseline", "since", "services", "clients"):
        table.add_column(column, justify="right" if column == "events" else "left")
    for s in summary.spikes:
        since = f"before {_clock(summary, s.onset_before)}" if s.onset_before else _clock(summary, s.onset)
        table.add_row(
            s.cause,
            f"{s.events:,}",
            s.label if s.ratio is None else f"{s.label} (~{s.baseline:,.0f})",
            since,
            Text(", ".join(f"{x['service']} {x['events']:,}" for x in s.services)),
            Text(", ".join(f"{_client(x['client_id'])} {x['events']:,}" for x in s.clients)),
        )
    return table


def _rotations_table(summary: Summary) -> Table:
    table = Table(title="Key rotations in or near the window, and the failures they caused in it", title_justify="left")
    for column in ("when", "issuer", "step", "failures", "services", "trend"):
        table.add_column(column, justify="right" if column == "failures" else "left")
    for step in summary.rotations:
        when = _clock(summary, step["ts"]) + ("" if step["in_window"] else " [dim](before)[/]")
        if step["ts"] >= summary.until:
            when = _clock(summary, step["ts"]) + " [dim](after)[/]"
        services = ", ".join(_service_effect(s) for s in step["services"][:4]) + (
            " …" if len(step["services"]) > 4 else ""
        )
        table.add_row(
            when,
            Text(step["issuer_name"]),
            Text(f"{step['action']} {step['kid']}"),
            f"{step['failures']:,}",
            Text(services or "none so far"),
            sparkline(step["sparkline"]),
        )
    return table


def _service_effect(entry: dict[str, Any]) -> str:
    causes = entry["causes"]
    if len(causes) == 1:
        return f"{entry['service']} {entry['failures']:,} ({next(iter(causes))})"
    parts = ", ".join(f"{cause} {count:,}" for cause, count in sorted(causes.items(), key=lambda kv: -kv[1]))
    return f"{entry['service']} {entry['failures']:,} ({parts})"


def _attacks_table(summary: Summary) -> Table:
    table = Table(title="Attack bursts", title_justify="left")
    for column in ("attack", "events", "services", "clients", "first–last", "trend"):
        table.add_column(column, justify="right" if column == "events" else "left")
    for a in summary.attacks:
        table.add_row(
            a["attack"],
            f"{a['events']:,}",
            Text(", ".join(a["services"])),
            Text(", ".join(f"{_client(c['client_id'])} {c['events']:,}" for c in a["clients"])),
            f"{_clock(summary, a['first_seen'])}–{_clock(summary, a['last_seen'])}",
            sparkline(a["sparkline"]),
        )
    return table


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
