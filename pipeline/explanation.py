"""What `jwtriage explain` says about one token: each step of the re-validation order with its evidence.

Everything judged comes from the Classifier's own run: `judge` classifies with a `Trace`,
so each step's outcome (passed, failed with its findings, or skipped and why) and the
facts the step looked at are the ones the verdict was decided from. This module only lays
them out, adding what the key timeline shows (a key's publication intervals), what the
config knows (services, issuers, leeway), and what only the store knows (earlier
rejections of this token, the service's JWKS cache age). It applies no rule of
`engine.checks`, so `explain` and `classify` cannot disagree.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from pipeline import queries
from pipeline.config import Config, ServiceConfig
from pipeline.engine.checks import STEP_ORDER, Step, StepOutcome, Trace
from pipeline.engine.classify import Classifier, Verdict
from pipeline.engine.keys import KeyTimeline, TimelineKey
from pipeline.engine.tokens import fingerprint, redact_tokens
from pipeline.models import AuthFailureEvent, Cause, Confidence
from pipeline.text import human_duration, utc_text

EVENT_ID = "explain"
#: How far back the store's events are read for the service's JWKS cache age.
CACHE_AGE_LOOKBACK = timedelta(days=7)
#: The check names `explain` prints, in the re-validation order.
STEP_LABELS = {
    Step.PARSE: "parse",
    Step.ALG_POLICY: "alg policy",
    Step.KEY_AND_SIGNATURE: "key and signature",
    Step.ISSUER: "issuer (iss)",
    Step.AUDIENCE: "audience",
    Step.TIME: "time",
    Step.REQUIRED_CLAIMS: "required claims",
    Step.KEY_TIMING: "key timing",
}
TIME_CLAIMS = ("exp", "nbf", "iat")
_TIME_CAUSES = frozenset({Cause.CLOCK_SKEW, Cause.EXPIRED, Cause.NOT_YET_VALID})
JWT_LIKE = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")


def judge(
    classifier: Classifier, services: Iterable[ServiceConfig], token: str, at: datetime
) -> list[tuple[ServiceConfig, Verdict]]:
    """The traced verdict of `token` for each service, as if it had been rejected at `at` (no fetch time)."""
    verdicts = []
    for service in services:
        event = AuthFailureEvent(event_id=EVENT_ID, ts=at, service=service.name)
        verdicts.append((service, classifier.classify(event, token, Trace())))
    return verdicts


# -- where the keys come from, and the judging time -------------------------------------------


@dataclass
class KeySource:
    timeline: KeyTimeline
    label: str
    con: duckdb.DuckDBPyConnection | None = None

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


@dataclass
class Context:
    config: Config
    keys: KeySource
    at: datetime
    at_is_now: bool

    @property
    def timeline(self) -> KeyTimeline:
        return self.keys.timeline

    def relative(self, when: datetime) -> str:
        seconds = (when - self.at).total_seconds()
        if abs(seconds) < 1:
            return "now" if self.at_is_now else "at --at"
        span = human_duration(seconds)
        if self.at_is_now:
            return f"{span} ago" if seconds < 0 else f"in {span}"
        return f"{span} before --at" if seconds < 0 else f"{span} after --at"

    def when(self, when: datetime) -> str:
        return f"{stamp(when)} ({self.relative(when)})"

    def issuer_name(self, url: str | None) -> str:
        for issuer in self.config.issuers:
            if issuer.issuer == url:
                return issuer.name
        return str(url)

    def service_issuer_urls(self, service: ServiceConfig) -> list[str]:
        return [self.config.issuer_by_name(n).issuer for n in service.issuers]


def stamp(when: datetime) -> str:
    """Explain's times: to the second, in UTC (`text.TIME_FORMATS["second"]`)."""
    return utc_text(when, "second")


def shown(value: Any, limit: int = 100) -> str:
    """A value from the token, safe to print: no control characters, no embedded JWT, cut to `limit`."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = redact_tokens(JWT_LIKE.sub(lambda m: f"<a JWT, sha256 {fingerprint(m.group(0))[:12]}…>", text))
    text = "".join(
        ch if unicodedata.category(ch)[0] != "C" else ch.encode("unicode_escape").decode("ascii") for ch in text
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def claim_time(value: Any) -> datetime | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def outcome(verdict: Verdict, step: Step) -> StepOutcome | None:
    """What `step` did in the verdict's traced run; None if it never ran (or the run was not traced)."""
    return verdict.steps.get(step) if verdict.steps is not None else None


def fact(verdict: Verdict, step: Step, name: str) -> Any:
    """A fact `step` noted in the traced run, or None."""
    found = outcome(verdict, step)
    return found.facts.get(name) if found is not None else None


# -- the checks, as the trace recorded them ----------------------------------------------------


@dataclass
class Check:
    """One step of the re-validation order, with its outcome and the evidence for it."""

    number: int
    name: str
    status: str  # "pass", "fail" or "skip"
    evidence: list[str] = field(default_factory=list)
    causes: list[Cause] = field(default_factory=list)


def build_checks(ctx: Context, service: ServiceConfig, verdict: Verdict) -> list[Check]:
    """Each step of DESIGN.md's order as the traced run left it: its findings first, then the facts it looked at."""
    if verdict.steps is None:
        raise ValueError("build_checks needs a traced verdict: Classifier.classify(event, token, Trace())")
    checks = []
    for number, step in enumerate(STEP_ORDER, 1):
        done = outcome(verdict, step)
        if done is None:  # not in the trace: the procedure never reached it
            checks.append(Check(number, STEP_LABELS[step], "skip", ["not checked"]))
            continue
        check = Check(number, STEP_LABELS[step], done.status)
        if done.skipped is not None:
            check.evidence.append(done.skipped)
        else:
            check.causes = list(dict.fromkeys(f.cause for f in done.findings))
            check.evidence = [f.evidence for f in done.findings]
            check.evidence += _EVIDENCE[step](ctx, service, verdict, done)
        checks.append(check)
    return checks


def _parse_evidence(ctx: Context, service: ServiceConfig, verdict: Verdict, done: StepOutcome) -> list[str]:
    if done.findings:  # the finding says why
        return []
    return ["a compact JWS: 3 segments, header and claims are JSON objects, times are numbers"]


def _alg_evidence(ctx: Context, service: ServiceConfig, verdict: Verdict, done: StepOutcome) -> list[str]:
    allowed = ", ".join(done.facts["allowed"])
    return [f"alg {shown(done.facts['alg'])}; {service.name} accepts {allowed} (issuers {', '.join(service.issuers)})"]


def _key_evidence(ctx: Context, service: ServiceConfig, verdict: Verdict, done: StepOutcome) -> list[str]:
    facts = done.facts
    kid, candidates, signer = facts["kid"], facts["candidates"], facts["signer"]
    evidence: list[str] = []
    if kid is None:
        alg = shown(verdict.classification.alg)
        evidence.append(f"no kid in the header: every configured key that fits {alg} was tried")
    else:
        if not candidates:
            configured = {i.issuer for i in ctx.config.issuers}
            history = ", ".join(
                f"{ctx.issuer_name(url)} since {stamp(first)}"
                for url in ctx.timeline.issuers
                if url in configured and (first := ctx.timeline.earliest_snapshot(url)) is not None
            )
            evidence.append(f"kid {shown(kid)}: no configured issuer ever published it (JWKS history: {history})")
        for key in candidates:
            kind = key.kty + (f"/{key.crv}" if key.crv else "")
            mark = "  ← verifies the signature" if key is signer else ""
            evidence.append(f"kid {shown(kid)} of {ctx.issuer_name(key.issuer)} ({kind}): {intervals(ctx, key)}{mark}")
        strangers = sorted({k.issuer for k in ctx.timeline.keys_with_kid(kid) if k not in candidates})
        if strangers:
            evidence.append(f"also published by issuers not in the config: {', '.join(strangers)}")
    if signer is not None:
        whose = "accepts" if facts["signer_accepted"] else "does NOT accept"
        evidence.append(
            f"the signature verifies with {ctx.issuer_name(signer.issuer)}'s key "
            f"(thumbprint {signer.thumbprint[:12]}…), an issuer {service.name} {whose}"
        )
    elif kid is not None and facts["tried"]:
        evidence.append("the signature verifies with none of these keys")
    return evidence


def _issuer_evidence(ctx: Context, service: ServiceConfig, verdict: Verdict, done: StepOutcome) -> list[str]:
    iss = done.facts["iss"]
    label = f" ({ctx.issuer_name(iss)})" if isinstance(iss, str) and ctx.issuer_name(iss) != iss else ""
    accepted = ", ".join(ctx.service_issuer_urls(service))
    return [f"iss {shown(iss) if iss is not None else '(missing)'}{label}; {service.name} accepts {accepted}"]


def _audience_evidence(ctx: Context, service: ServiceConfig, verdict: Verdict, done: StepOutcome) -> list[str]:
    facts = done.facts
    aud = facts["aud"]
    evidence = [f"aud {shown(aud) if aud is not None else '(missing)'}; {service.name} expects {service.audience}"]
    if service.authorized_parties is not None:
        party = facts["party"]
        evidence.append(
            f"azp/client_id {shown(party) if party is not None else '(missing)'}; authorized parties: "
            f"{', '.join(service.authorized_parties)}"
        )
    return evidence


def _time_evidence(ctx: Context, service: ServiceConfig, verdict: Verdict, done: StepOutcome) -> list[str]:
    facts = done.facts
    evidence = []
    for claim, value in facts["times"].items():
        when = claim_time(value)
        evidence.append(f"{claim} {ctx.when(when)}" if when else f"{claim} {shown(value)} (out of range)")
    if not evidence:
        evidence.append("no exp, nbf or iat")
    evidence.append(
        f"{service.name}'s leeway {facts['leeway']:g} s; a miss of up to {facts['window']:g} s "
        "beyond it counts as clock skew"
    )
    return evidence


def _required_evidence(ctx: Context, service: ServiceConfig, verdict: Verdict, done: StepOutcome) -> list[str]:
    missing = done.facts["missing"]
    return [
        f"{service.name} requires {', '.join(service.required_claims) or 'nothing'}"
        + (f"; missing: {', '.join(missing)}" if missing else "; all present")
    ]


def _timing_evidence(ctx: Context, service: ServiceConfig, verdict: Verdict, done: StepOutcome) -> list[str]:
    key: TimelineKey = done.facts["key"]
    evidence = [f"kid {shown(key.kid)}: {intervals(ctx, key)}"]
    if done.findings and verdict.classification.cause not in {f.cause for f in done.findings}:
        evidence.append("not the verdict: key timing decides only for a token that passes every other check")
    return evidence


_EVIDENCE = {
    Step.PARSE: _parse_evidence,
    Step.ALG_POLICY: _alg_evidence,
    Step.KEY_AND_SIGNATURE: _key_evidence,
    Step.ISSUER: _issuer_evidence,
    Step.AUDIENCE: _audience_evidence,
    Step.TIME: _time_evidence,
    Step.REQUIRED_CLAIMS: _required_evidence,
    Step.KEY_TIMING: _timing_evidence,
}


def intervals(ctx: Context, key: TimelineKey) -> str:
    """When the key was published and removed, in words, relative to the judging time."""
    spans = []
    earliest = ctx.timeline.earliest_snapshot(key.issuer)
    for interval in key.intervals:
        start = (
            f"already in the first snapshot ({stamp(interval.first_seen)}, {ctx.relative(interval.first_seen)})"
            if interval.first_seen == earliest
            else f"published {ctx.when(interval.first_seen)}"
        )
        end = (
            f"removed {ctx.when(interval.removed_at)}"
            if interval.removed_at is not None
            else f"still published at the last snapshot ({stamp(interval.last_seen)})"
        )
        spans.append(f"{start}, {end}")
    return "; then ".join(spans)


# -- which service gets the detailed listing ---------------------------------------------------


@dataclass(frozen=True)
class Focus:
    """The service explained check by check, and why that one."""

    service: ServiceConfig
    verdict: Verdict
    why: str


def choose_focus(
    chosen: str | None,
    verdicts: list[tuple[ServiceConfig, Verdict]],
    con: duckdb.DuckDBPyConnection | None,
    token_fingerprint: str,
) -> Focus | None:
    """The chosen or only service, else the one whose audience (and issuer) checks pass, else the most rejecting one.

    The audience and issuer outcomes are the traced run's; the rejection counts come from the store (`con`).
    """
    if chosen is not None or len(verdicts) == 1:
        return Focus(*verdicts[0], "chosen" if chosen else "the only configured service")
    named = [pair for pair in verdicts if fact(pair[1], Step.AUDIENCE, "aud_accepted")]
    if len(named) > 1:  # several services share the audience: the ones that accept the token's iss
        named = [pair for pair in named if fact(pair[1], Step.ISSUER, "accepted")]
    if len(named) == 1:
        return Focus(*named[0], "the only service whose audience the token names")
    if con is not None:
        by_name = {s.name: (s, v) for s, v in verdicts}
        for row in queries.token_history(con, token_fingerprint):  # most rejections first
            if row["service"] in by_name:
                return Focus(*by_name[row["service"]], "the service that rejected this token most often")
    return None


# -- what the store and the timeline add --------------------------------------------------------


def key_source_warnings(ctx: Context, verdicts: Iterable[tuple[ServiceConfig, Verdict]]) -> list[str]:
    """When a kid is unknown, is the key history to blame? (none for an issuer, or it ends long before --at)"""
    unknown = [(s, v) for s, v in verdicts if v.classification.cause is Cause.UNKNOWN_KID]
    if not unknown:
        return []
    lines = []
    iss = fact(unknown[0][1], Step.ISSUER, "iss")
    urls = sorted({url for s, _ in unknown for url in ctx.service_issuer_urls(s) if url == iss or iss is None})
    for url in urls or sorted({url for s, _ in unknown for url in ctx.service_issuer_urls(s)}):
        first, last = ctx.timeline.earliest_snapshot(url), ctx.timeline.latest_snapshot(url)
        name = ctx.issuer_name(url)
        if first is None or last is None:
            lines.append(f"no JWKS snapshot of {name} ({url}) at all: every token it signs looks like an unknown kid")
        elif ctx.at < first:
            lines.append(f"the key history of {name} starts at {stamp(first)}, after {stamp(ctx.at)}: keys are unknown")
        elif ctx.at - last > timedelta(hours=1):
            lines.append(
                f"the last JWKS snapshot of {name} here is from {stamp(last)}, "
                f"{human_duration((ctx.at - last).total_seconds())} before the judging time: a key it published since "
                "would look unknown (is jwks-watch running?)"
            )
    return lines


def cause_context(ctx: Context, service: ServiceConfig, verdict: Verdict) -> list[str]:
    """The numbers behind the remediation line, for the causes where they change what to do."""
    c = verdict.classification
    key: TimelineKey | None = fact(verdict, Step.KEY_TIMING, "key")
    if c.cause is Cause.STALE_JWKS and key is not None:
        age = human_duration(fact(verdict, Step.KEY_TIMING, "age"))
        lines = [f"kid {shown(key.kid)} was {age} old at {stamp(ctx.at)}; {cache_age(ctx, service)}"]
        if c.confidence is Confidence.INFERRED:
            ttl = human_duration(fact(verdict, Step.KEY_TIMING, "cache_ttl"))
            whose = "its declared" if service.jwks_cache_ttl_seconds is not None else "the assumed maximum"
            lines.append(
                f"inferred, not verified: {service.name} reports no JWKS fetch time, so the key's age was compared "
                f"with {whose} {ttl} cache TTL (set jwks_cache_ttl_seconds, or have it report its fetch time)"
            )
        return lines
    if c.cause is Cause.UNPUBLISHED_KEY and key is not None:
        return [f"kid {shown(key.kid)} was first published {ctx.when(key.first_seen)}: it was signed with before that"]
    removed: datetime | None = fact(verdict, Step.KEY_TIMING, "removed")
    if c.cause is Cause.RETIRED_KEY and key is not None and removed is not None:
        line = f"kid {shown(key.kid)} was removed {ctx.when(removed)}"
        expires = claim_time(verdict.claims.get("exp")) if verdict.claims else None
        if expires is not None and expires > removed:
            later = human_duration((expires - removed).total_seconds())
            line += (
                f", but this token stays valid until {stamp(expires)}, {later} later: "
                "the key should have stayed published at least that long"
            )
        return [line]
    if c.cause in _TIME_CAUSES and c.skew_seconds is not None:
        leeway, window = fact(verdict, Step.TIME, "leeway"), fact(verdict, Step.TIME, "window")
        return [
            f"off by {human_duration(c.skew_seconds)} beyond {service.name}'s {leeway:g} s leeway "
            f"(skew window {window:g} s)"
        ]
    return []


def cache_age(ctx: Context, service: ServiceConfig) -> str:
    """How old the service's JWKS cache was, as far as the store's recent rejections tell."""
    unknown = (
        f"jwtriage does not know {service.name}'s JWKS cache age here; compare its cache TTL with the key's age, "
        "and have it refetch the JWKS once on an unknown kid"
    )
    if ctx.keys.con is None:
        return unknown + " (pass --db to use the store's events)"
    since = ctx.at - CACHE_AGE_LOOKBACK
    window = queries.Filters(since=since, until=ctx.at + timedelta(seconds=1), services=(service.name,))
    rows = queries.cache_age_by_service(ctx.keys.con, window)
    row = rows[0] if rows else None
    if row and row["reported_age_max_s"] is not None:
        return (
            f"{service.name}'s JWKS cache was up to {human_duration(row['reported_age_max_s'])} old "
            f"(median {human_duration(row['reported_age_median_s'])}) in the {row['events_with_fetch_time']:,} "
            "rejections that reported a fetch time in the 7 days up to then: a cache that old can predate the key"
        )
    if row and row["stale_window_s"] is not None:
        return (
            f"{service.name} does not report its fetch time, but it rejected new keys as stale up to "
            f"{human_duration(row['stale_window_s'])} after their publication: its cache lives at least that long"
        )
    return unknown


def history_lines(ctx: Context, token_fingerprint: str) -> list[str]:
    """Earlier rejections of this very token in the store."""
    if ctx.keys.con is None:
        return []
    rows = queries.token_history(ctx.keys.con, token_fingerprint)
    if not rows:
        return ["The store holds no earlier rejection of this token."]
    total = sum(r["events"] for r in rows)
    first = min(r["first_seen"] for r in rows)
    last = max(r["last_seen"] for r in rows)
    parts = ", ".join(f"{r['service']} {r['events']:,}× {r['cause']}" for r in rows[:6])
    return [
        f"In the store: this token was rejected {total:,} time(s) between {stamp(first)} and {stamp(last)}: {parts}"
        + (" …" if len(rows) > 6 else "")
    ]
