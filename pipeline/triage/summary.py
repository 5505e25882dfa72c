"""What triage finds in the store: the window, its comparisons, spikes, rotations and attacks.

The spike rule, stated once: a cause spiked when it has at least `SPIKE_MIN_EVENTS` events
in the window and at least `SPIKE_RATIO` times its baseline, or is new (none in the
baseline). The baseline is the same window a day earlier when the store reaches back that
far, else the window just before; a comparison window the store covers only in part (its
overlap with the store's first to last event) is scaled to its full length (shown as "~N"),
and one it covers less than a quarter of is not used ("–"). Every number comes from
`pipeline.queries`, so the dashboard and the report count the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import duckdb

from pipeline import queries
from pipeline.causes import Cause, attack_advice, finding_remediation
from pipeline.text import human_duration, utc_text
from pipeline.triage.window import window_end

SPIKE_MIN_EVENTS = 20


SPIKE_RATIO = 3.0


BUCKETS = 12


#: A comparison window needs at least this share of it covered by the store's history.
MIN_COVERAGE = 0.25

#: How far back a spike's onset is followed (at least two windows); see `_onset`.
ONSET_LOOKBACK = timedelta(days=1)

#: An onset bucket is active above the quiet level plus this share of the way to the window's mean.
ONSET_SHARE = 0.25


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
    attack_events: int = 0  # of `events`, how many carry an attack label
    attack_kinds: list[str] = field(default_factory=list)
    with_fetch_time: int | None = None  # of `events`, how many report the service's JWKS fetch time

    @property
    def attack(self) -> bool:
        """Mostly attack-labelled: part of an attack, never a misconfiguration to fix by trusting the token."""
        return 2 * self.attack_events >= max(self.events, 1) and self.attack_events > 0

    @property
    def remediation(self) -> str:
        """What to do, from this spike's evidence (attack labels, reported fetch times), not its cause alone."""
        return finding_remediation(self.cause, self.events, self.attack_events, self.attack_kinds, self.with_fetch_time)

    @property
    def rotation(self) -> dict[str, Any] | None:
        return self.rotations[0] if self.rotations else None

    @property
    def label(self) -> str:
        return "new" if self.ratio is None else f"{ratio_text(self.ratio)}x"


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
    confidence: list[dict[str, Any]] = field(default_factory=list)  # events per confidence in the window
    read_first: list[str] = field(default_factory=list)
    message: str | None = None
    store: str = ""
    issuer_names: dict[str, str] = field(default_factory=dict)
    coverage_note: str | None = None  # the window reaches before the raw rows: counts from hourly rollups

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
                    "attack_events": s.attack_events,
                    "attacks": s.attack_kinds,
                    "remediation": s.remediation,
                }
                for s in self.spikes
            ],
            "rotations": self.rotations,
            "attacks": self.attacks,
            "confidence": {row["confidence"]: row["events"] for row in self.confidence},
            "read_first": self.read_first,
        } | ({"coverage_note": self.coverage_note} if self.coverage_note else {})


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
    first, last = queries.time_range(con, now)
    first, last = as_utc(first), as_utc(last)
    reference, source, note = _reference(now, last, until)
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
    expired = queries.expired_note(con, summary.since)
    if expired:
        summary.coverage_note = f"{expired} (rotations to the hour; cache ages cover only the raw period)"
    summary.total = queries.total_events(con, here)
    summary.causes = queries.cause_counts(con, here)
    summary.confidence = queries.confidence_counts(con, here)
    for name, shift in (("previous", window), ("day_before", timedelta(days=1)), ("week_before", timedelta(days=7))):
        summary.comparisons.append(
            _comparison(con, name, summary.since - shift, summary.until - shift, first, last, services)
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
            f"No auth failures in the {span(window)} up to {utc_text(reference)}"
            + (f" for {service}" if service else "")
            + f". The store's events run from {utc_text(first)} to {utc_text(last)}."
        )
        return summary
    summary.sparklines = _series(con, summary, "cause", here)
    summary.rotations = _rotations(con, summary, services)
    faults = queries.issuer_faults(con, queries.Filters(until=summary.until, services=services))
    for step in summary.rotations:  # the issuer's own faults on a step's key, wherever their failures fell
        kinds = ("signed_before_published",) if step["action"] == "added" else ("removed_in_use",)
        step["issuer_faults"] = [
            f for f in faults if f["issuer"] == step["issuer"] and f["kid"] == step["kid"] and f["fault"] in kinds
        ]
    summary.spikes = _spikes(con, summary, services)
    summary.attacks = _attacks(con, summary, here)
    return summary


def as_utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _reference(now: datetime, last: datetime | None, until: datetime | None) -> tuple[datetime, str, str]:
    """Where the window ends: --until, else `window_end`'s rule (now while the store is live, else its last event).

    When the window ends at the store's last event, the note says how long ago that was: for
    a live store whose consumer stopped, that is what tells on-call the data stopped.
    """
    if until is not None:
        return until, "until", "--until"
    if last is None:
        return now, "now", "now"
    end, live = window_end(last, now)
    if end > now:
        return end, "store_end", "the store's last event, which is ahead of this machine's clock"
    if live:
        return now, "now", "now"
    return end, "store_end", f"the store's last event; its data ends {human_duration((now - end).total_seconds())} ago"


def _comparison(
    con: duckdb.DuckDBPyConnection,
    name: str,
    since: datetime,
    until: datetime,
    first: datetime | None,
    last: datetime | None,
    services: tuple[str, ...] | None,
) -> Comparison:
    """Counts in `[since, until)`, scaled by how much of it the store's data covers: its overlap with [first, last].

    Both ends count: a window reaching past the store's last event is covered only up to it,
    so counts are never invented for time the store holds no data for.
    """
    width = (until - since).total_seconds()
    covered = 0.0
    if first is not None and last is not None:
        covered = (min(until, last) - max(since, first)).total_seconds()
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
        top = [{"service": r["value"], "events": r["events"]} for r in queries.top(con, "service", only, 3)]
        # the spike is about its top service when that holds at least half of it: its onset is that service's
        scope = (top[0]["service"],) if top and 2 * top[0]["events"] >= events else services
        onset, before = _onset(con, summary, cause, scope)
        spike = Spike(
            cause,
            events,
            base,
            None if base == 0 else events / base,
            onset,
            before,
            top,
            [{"client_id": r["value"], "events": r["events"]} for r in queries.top(con, "client_id", only, 3)],
        )
        spike.attack_events = int(row.get("with_attacks") or 0)
        if spike.attack_events:
            spike.attack_kinds = [r["attack"] for r in queries.attacks(con, only)]
        spike.with_fetch_time = row.get("with_fetch_time")
        spike.rotations = [] if spike.attack else _linked_rotations(summary, cause, events)
        if cause == Cause.STALE_JWKS and spike.services:
            spike.cache_age = _cache_age(con, summary, spike.services[0]["service"])
        spikes.append(spike)
    return sorted(spikes, key=lambda s: (not s.attack, s.rotation is None, -(s.events - s.baseline)))


def _onset(
    con: duckdb.DuckDBPyConnection, summary: Summary, cause: str, scope: tuple[str, ...] | None
) -> tuple[datetime | None, datetime | None]:
    """When the spike began: the start of the run of active buckets that holds the window's peak.

    The cause's events in `scope` (the spike's top service when it holds half the spike, else
    the window's services) are counted in buckets as wide as the sparkline's, ending at the
    window's end and reaching back `ONSET_LOOKBACK` (at least two windows), not before the
    bucket holding the store's first event. The quiet level is the fewest events in a bucket
    the store covers whole: a level the incident does not raise unless it fills the whole
    lookback (the baseline, which may already hold the incident, plays no part). A bucket is
    active when it holds more than the quiet level plus `ONSET_SHARE` of the way from it to
    the window's mean per bucket. From the window's busiest bucket the run of active buckets
    (one quiet bucket inside it is let pass: low counts fluctuate) is followed back, past the
    window's start when it goes on. The onset is the run's first event; when the quiet level
    is zero, the first event of the quiet bucket just before the run if it has any (the
    incident rose from silence inside that bucket). So a steady incident keeps its onset
    whatever --until; a cause that is only noisy, with no clear rise, has no sharp onset and
    may still move. When the run reaches the lookback's first bucket and the store holds
    earlier data, the cause was already high then: `onset_before` is that bucket's start.
    """
    width = summary.window / BUCKETS
    first, last = summary.store_first, summary.store_last
    earliest = summary.until - max(ONSET_LOOKBACK, 2 * summary.window)
    if first is not None and first > earliest:
        earliest = first
    n = max(BUCKETS, math.ceil((summary.until - earliest) / width))
    start = summary.until - n * width
    counts = [0] * n
    only = queries.Filters(services=scope, causes=(cause,))
    for row in queries.window_buckets(con, start, summary.until, n, "cause", only):
        counts[row["bucket"]] = row["events"]
    whole = [
        count
        for i, count in enumerate(counts)
        if first is not None and last is not None and first <= start + i * width and start + (i + 1) * width <= last
    ]
    quiet = min(whole or counts)
    threshold = quiet + ONSET_SHARE * (sum(counts[-BUCKETS:]) / BUCKETS - quiet)
    run = max(range(n - BUCKETS, n), key=lambda i: counts[i])
    while run > 0:  # one quiet bucket between active ones does not end the run: low counts fluctuate
        step = next((k for k in (1, 2) if run - k >= 0 and counts[run - k] > threshold), 0)
        if not step:
            break
        run -= step
    rise = start + run * width
    if run > 0 and quiet == 0 and counts[run - 1] > 0:
        rise -= width
    onset = queries.first_event(con, queries.Filters(rise, summary.until, scope, causes=(cause,)))
    already = start if run == 0 and first is not None and first < start else None
    return as_utc(onset), already


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
    for row in queries.rotation_effects(con, queries.Filters(summary.since, summary.until, services)):
        step_ts = as_utc(row["step_ts"])
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
        first, last = as_utc(row["first_failure"]), as_utc(row["last_failure"])
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
    width = summary.window / BUCKETS
    for key, step in steps.items():
        step["services"] = sorted(per_service.get(key, {}).values(), key=lambda e: (-e["failures"], e["service"]))
        counts = [0] * BUCKETS
        for row in queries.rotation_step_series(con, step, summary.since, summary.until, width, services):
            counts[min(int(row["bucket"]), BUCKETS - 1)] += int(row["failures"])
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
            "first_seen": as_utc(row["first_seen"]),
            "last_seen": as_utc(row["last_seen"]),
            "sparkline": series.get(row["attack"], [0] * BUCKETS),
            "advice": attack_advice(row["attack"]),
        }
        for row in queries.attacks(con, here)
    ]


def ratio_text(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def clock(summary: Summary, when: datetime | None) -> str:
    """'10:42' on the reference's day, else 'Sun 22:15' (times are UTC; the header says so)."""
    same_day = when is not None and when.astimezone(UTC).date() == summary.reference.date()
    return utc_text(when, "clock" if same_day else "weekday_time")


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
