"""The checks of DESIGN.md's re-validation order: one function per step, each emitting findings.

To change a rule, change its check here. `classify.Classifier` runs the steps in order and
decides from their findings (the first is the cause; key timing only for an otherwise
valid token); `explain` renders the same findings. Neither re-derives a rule.

A check reports each failure as a `Finding` (step, cause, evidence sentence). When the
classifier runs with a `Trace` instead of plain `Findings` (only `explain` does), each
check also notes the facts it looked at (the keys a kid names, the signing key, the
overshoot, the key's age...) and the steps that did not run, so `explain` can print
every step, passed or failed, without judging anything itself. On the hot path nothing
of that is built: a check tests `findings.tracing` first, once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from functools import lru_cache
from typing import Any

from pydantic_core import TzInfo

from pipeline.config import ServiceConfig
from pipeline.engine.keys import KeyTimeline, TimelineKey
from pipeline.engine.tokens import ParsedToken
from pipeline.engine.validate import SignatureCache
from pipeline.models import AuthFailureEvent, Cause
from pipeline.text import human_duration, stamp

#: Time claims are clamped to this many seconds from the epoch (about 31 million years).
_TIME_LIMIT = 10**15


@lru_cache(maxsize=4096)
def _stamp_at(when: datetime, offset: Any) -> str:
    return stamp(when)


def _key_stamp(when: datetime) -> str:
    """`stamp` of a time key timing names (publication, removal, a service's fetch time), printed once each.

    A handful of distinct values that every event of an outage repeats; bounded (4,096). Keyed
    by the UTC offset too: equal instants with other offsets are equal datetimes, printed apart.
    """
    return _stamp_at(when, when.utcoffset())


class Step(StrEnum):
    """A named check, in DESIGN.md's re-validation order; the values are stable."""

    PARSE = "parse"
    ALG_POLICY = "alg_policy"
    KEY_AND_SIGNATURE = "key_and_signature"
    ISSUER = "issuer"
    AUDIENCE = "audience"
    TIME = "time"
    REQUIRED_CLAIMS = "required_claims"
    KEY_TIMING = "key_timing"
    #: Not a re-validation step: with no token, the rejecting validator's own message is the evidence.
    REPORTED = "reported"


#: The re-validation order (`REPORTED` is not part of it).
STEP_ORDER: tuple[Step, ...] = tuple(step for step in Step if step is not Step.REPORTED)
# The steps as module constants for the checks below: on Python 3.11 looking up an enum member
# (`Step.TIME`) costs about 0.1 µs, and a check names its step once per finding of every event.
_PARSE, _ALG_POLICY, _KEY_AND_SIGNATURE, _ISSUER, _AUDIENCE, _TIME, _REQUIRED_CLAIMS, _KEY_TIMING = STEP_ORDER


@dataclass(slots=True)
class Finding:
    """One failed check: its step, the cause it points to, and the evidence sentence.

    Read-only by convention; not `frozen` (that costs about 0.3 µs more, and one is made
    per failed check of every event).
    """

    step: Step
    cause: Cause
    evidence: str


@dataclass(slots=True)
class StepOutcome:
    """What one step did for one token, as a `Trace` records it.

    Its findings, the facts it looked at, or why it did not run.
    """

    step: Step
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why the step did not run

    @property
    def status(self) -> str:
        """'pass', 'fail' or 'skip'."""
        if self.skipped is not None:
            return "skip"
        return "fail" if self.findings else "pass"


class Findings:
    """The failed checks of one token, in check order; `causes` holds each cause once, first occurrence first."""

    # `tracing` is a slot, not a class attribute: a check tests it about eight times per token,
    # and reading a slot costs a third of reading a class attribute through the instance.
    __slots__ = ("causes", "items", "tracing")

    def __init__(self) -> None:
        self.items: list[Finding] = []
        self.causes: list[Cause] = []
        self.tracing = False  # True on a `Trace`: checks note facts and skipped steps only then

    def add(self, step: Step, cause: Cause, evidence: str) -> None:
        self.items.append(Finding(step, cause, evidence))
        if cause not in self.causes:
            self.causes.append(cause)

    def note(self, step: Step, **facts: Any) -> None:
        """Facts a step looked at, for `explain`; kept only by a `Trace` (call it under `if findings.tracing`)."""

    def skip(self, step: Step, why: str) -> None:
        """A step that did not run, and why; kept only by a `Trace`."""


class Trace(Findings):
    """`Findings` that also keep every step's outcome and facts: what `explain` renders."""

    __slots__ = ("steps",)

    def __init__(self) -> None:
        super().__init__()
        self.tracing = True
        self.steps: dict[Step, StepOutcome] = {}

    def outcome(self, step: Step) -> StepOutcome:
        found = self.steps.get(step)
        if found is None:
            found = self.steps[step] = StepOutcome(step)
        return found

    def add(self, step: Step, cause: Cause, evidence: str) -> None:
        super().add(step, cause, evidence)
        self.outcome(step).findings.append(self.items[-1])

    def note(self, step: Step, **facts: Any) -> None:
        self.outcome(step).facts.update(facts)

    def skip(self, step: Step, why: str) -> None:
        self.outcome(step).skipped = why

    def skip_from(self, first: Step, why: str) -> None:
        """`first` and every later step did not run."""
        for step in STEP_ORDER[STEP_ORDER.index(first) :]:
            self.skip(step, why)


@dataclass(frozen=True, slots=True)
class ServicePolicy:
    """What one service accepts, precomputed once per service."""

    service: ServiceConfig
    algorithms: frozenset[str]
    issuer_urls: frozenset[str]
    required_claims: frozenset[str]
    #: each accepted issuer's own `algorithms`, by `iss` URL (the signing key's issuer decides)
    issuer_algorithms: dict[str, frozenset[str]] = field(default_factory=dict)
    #: how long the service's JWKS cache may live: its own `jwks_cache_ttl_seconds`, else the global maximum
    cache_ttl: float = 86_400.0


def quote(value: Any) -> str:
    """A value from the token for an evidence sentence: quoted, at most 80 characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return repr(text[:80] + ("…" if len(text) > 80 else ""))


# -- 2. alg policy -----------------------------------------------------------------------------


def check_alg_policy(alg: str, policy: ServicePolicy, findings: Findings) -> bool:
    """Step 2: may the service's issuers use `alg` at all? (The key type is checked with the key, step 3.)"""
    if findings.tracing:
        findings.note(_ALG_POLICY, alg=alg, allowed=sorted(policy.algorithms))
    if alg.lower() == "none":
        findings.add(_ALG_POLICY, Cause.BAD_ALG, f"alg {alg!r} means an unsigned token, which no service accepts")
        return False
    if alg not in policy.algorithms:
        findings.add(
            _ALG_POLICY,
            Cause.BAD_ALG,
            f"alg {alg} is not among the algorithms {sorted(policy.algorithms)} that "
            f"{policy.service.name}'s issuers allow",
        )
        return False
    return True


# -- 3. key and signature ----------------------------------------------------------------------


def check_key_and_signature(
    token: ParsedToken,
    policy: ServicePolicy,
    choices: tuple[list[TimelineKey], list[TimelineKey]],
    cache: SignatureCache,
    configured_urls: frozenset[str],
    findings: Findings,
) -> TimelineKey | None:
    """Step 3: the configured key that verifies the signature, or None.

    `choices` are the configured keys the kid names (any type) and those the alg can use,
    the service's issuers first (`Classifier._key_choices`); each signature is verified once per key (`cache`).
    An alg that fits none of the kid's keys is step 2's rule, decided here because it needs the keys.
    """
    alg, kid = token.alg, token.kid
    candidates, fitting = choices
    if findings.tracing:
        findings.note(_KEY_AND_SIGNATURE, kid=kid, candidates=candidates, tried=len(fitting), signer=None)
    if not candidates and kid is None:
        findings.add(
            _KEY_AND_SIGNATURE,
            Cause.BAD_SIGNATURE,
            f"no kid, and no configured issuer ({', '.join(sorted(configured_urls))}) ever published "
            f"a key {alg} can use, so nothing verifies it",
        )
        return None
    if not candidates:
        findings.add(
            _KEY_AND_SIGNATURE,
            Cause.UNKNOWN_KID,
            f"kid {quote(kid)} was never published by any configured issuer ({', '.join(sorted(configured_urls))})",
        )
        return None
    if not fitting:
        kinds = sorted({f"{k.kty}{'/' + k.crv if k.crv else ''}" for k in candidates})
        findings.add(
            _KEY_AND_SIGNATURE,
            Cause.BAD_ALG,
            f"alg {alg} cannot be used with kid {quote(kid)}, a {', '.join(kinds)} key",
        )
        return None
    for key in fitting:
        if cache.verify(token.fingerprint, alg, key, token.signing_input, token.signature):
            accepted = key.issuer in policy.issuer_urls
            if findings.tracing:
                findings.note(_KEY_AND_SIGNATURE, signer=key, signer_accepted=accepted)
            if not accepted:
                findings.add(
                    _KEY_AND_SIGNATURE,
                    Cause.ISSUER_MISMATCH,
                    f"signed by {key.issuer} (kid={key.kid}), an issuer {policy.service.name} does not accept",
                )
            elif alg not in policy.issuer_algorithms[key.issuer]:
                findings.add(
                    _KEY_AND_SIGNATURE,
                    Cause.BAD_ALG,
                    f"alg {alg} verifies with kid {key.kid} of {key.issuer}, but that issuer allows only "
                    f"{sorted(policy.issuer_algorithms[key.issuer])}",
                )
            return key
    if kid is None:
        findings.add(
            _KEY_AND_SIGNATURE,
            Cause.BAD_SIGNATURE,
            f"no kid, and none of the {len(fitting)} configured keys {alg} can use verifies it",
        )
    else:
        findings.add(
            _KEY_AND_SIGNATURE,
            Cause.BAD_SIGNATURE,
            f"kid {quote(kid)} is known ({fitting[0].issuer}) but the signature does not verify with it",
        )
    return None


# -- 4. iss, 5. aud and azp --------------------------------------------------------------------


def check_issuer(claims: dict[str, Any], policy: ServicePolicy, key: TimelineKey | None, findings: Findings) -> None:
    """Step 4: the token's `iss` is one the service accepts, and the signing key's issuer."""
    iss = claims.get("iss")
    accepted = isinstance(iss, str) and iss in policy.issuer_urls
    if findings.tracing:
        findings.note(_ISSUER, iss=iss, accepted=accepted, signer_issuer=key.issuer if key else None)
    if not accepted:
        findings.add(
            _ISSUER,
            Cause.ISSUER_MISMATCH,
            f"iss {quote(iss)} is not an issuer {policy.service.name} accepts "
            f"({', '.join(sorted(policy.issuer_urls))})",
        )
    elif key is not None and key.issuer != iss:
        findings.add(
            _ISSUER,
            Cause.ISSUER_MISMATCH,
            f"iss {quote(iss)} but the signing key kid={key.kid} belongs to {key.issuer}",
        )


def check_audience(claims: dict[str, Any], service: ServiceConfig, findings: Findings) -> None:
    """Step 5: `aud` names the service; `azp` (or `client_id`) is an authorized party where it names them."""
    aud = claims.get("aud")
    accepted = aud == service.audience if isinstance(aud, str) else (isinstance(aud, list) and service.audience in aud)
    if not accepted:
        findings.add(
            _AUDIENCE,
            Cause.AUDIENCE_MISMATCH,
            f"aud {quote(aud) if aud is not None else '(missing)'} does not include {service.audience}",
        )
    party: Any = None
    if service.authorized_parties is not None:
        party = claims.get("azp", claims.get("client_id"))
        if party not in service.authorized_parties:
            findings.add(
                _AUDIENCE,
                Cause.AUDIENCE_MISMATCH,
                f"the token's azp/client_id {quote(party)} is not an authorized party of {service.name}",
            )
    if findings.tracing:
        findings.note(_AUDIENCE, aud=aud, aud_accepted=accepted, party=party)


# -- 6. time, 7. required claims ---------------------------------------------------------------

_WHEN = {
    "exp": "the token expired {} before the event",
    "nbf": "the token is not valid until {} after the event",
    "iat": "the token was issued {} after the event",
}


def time_bounds(claims: dict[str, Any]) -> tuple[float, float] | tuple[()]:
    """(the latest of `nbf`/`iat`, `exp`) as `check_times` reads them (±inf when absent); () when one is NaN.

    Between them (leeway applied by `check_times`, with its own float expressions) no time
    claim fails, which is where a retried token's events nearly all fall.
    """
    start, end = -math.inf, math.inf
    for claim in ("exp", "nbf", "iat"):
        raw: Any = claims.get(claim)
        if type(raw) is not int and type(raw) is not float:
            continue
        if not -_TIME_LIMIT <= raw <= _TIME_LIMIT:
            raw = min(max(raw, -_TIME_LIMIT), _TIME_LIMIT)
        value = float(raw)
        if value != value:  # NaN (json accepts it): compares false everywhere, so no shortcut
            return ()
        if claim == "exp":
            end = value
        else:
            start = max(start, value)
    return (start, end)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIXED_OFFSETS = (TzInfo, timezone)  # tzinfo types whose offset never changes
_epoch_in: tuple[Any, datetime] = (UTC, _EPOCH)  # the latest (tzinfo, the epoch in it)


def epoch_in(tz: Any) -> datetime:
    """The epoch in `tz` when `tz` is a fixed offset, else in UTC: subtracting it from a datetime of the same
    tzinfo object is of the naive fields, asking no offset, and gives the same exact timedelta."""
    return _EPOCH.astimezone(tz) if type(tz) in _FIXED_OFFSETS else _EPOCH


def since_epoch(ts: datetime) -> timedelta:
    """`ts - epoch`, without asking `ts`'s tzinfo for its offset when it is a fixed offset.

    With the epoch expressed in `ts`'s own fixed-offset tzinfo, the subtraction is of the
    naive fields (the same tzinfo object) and gives the same exact timedelta as with the
    epoch in UTC. pydantic's `TzInfo` answers `utcoffset` through Python, twice per aware
    `timestamp()`: this is ~0.4 µs less per event. Its `total_seconds()` is `ts.timestamp()`.
    """
    global _epoch_in
    tz = ts.tzinfo
    tz_seen, epoch = _epoch_in
    if tz is not tz_seen:
        epoch = epoch_in(tz)
        _epoch_in = (tz, epoch)
    return ts - epoch


def _timestamp(ts: datetime) -> float:
    """`ts.timestamp()` (`since_epoch`)."""
    return since_epoch(ts).total_seconds()


def inside_time_bounds(bounds: tuple[float, float] | tuple[()], now: float, leeway: float) -> bool:
    """Does no time claim fail at `now` (seconds from the epoch), as the claims' `time_bounds` tell at once?

    The same float comparisons `check_times` makes for `exp` and for the latest of `nbf`/`iat`
    (float subtraction is monotonic, so the latest start decides). False also when the
    bounds cannot tell (`()`): then the claims are checked one by one.
    """
    if not bounds:
        return False
    start, end = bounds
    return now - (end + leeway) < 0 and start - (now + leeway) <= 0


def check_times(
    claims: dict[str, Any],
    ts: datetime,
    service: ServiceConfig,
    window: float,
    findings: Findings,
    bounds: tuple[float, float] | tuple[()] = (),
) -> float | None:
    """Step 6, at the event's time; returns the first failing claim's overshoot beyond the leeway, in seconds.

    `exp` fails when ts >= exp + leeway (RFC 7519 §4.1.4: the time must be *before* exp, so an
    overshoot of 0 fails); `nbf`/`iat` fail when the claim > ts + leeway. An overshoot of at most
    `window` (the skew window) is clock skew, else expired or not yet valid. With the claims'
    `bounds` (`time_bounds`), an event inside them returns at once: the same comparisons as
    the loop below makes (float subtraction is monotonic, so the latest start decides).
    """
    now = _timestamp(ts)
    leeway = service.leeway_seconds
    if not findings.tracing and inside_time_bounds(bounds, now, leeway):
        return None
    skew: float | None = None
    for claim in ("exp", "nbf", "iat"):
        raw: Any = claims.get(claim)
        if type(raw) is not int and type(raw) is not float:  # `is_number` for decoded JSON (bool is neither)
            continue
        if not -_TIME_LIMIT <= raw <= _TIME_LIMIT:  # 10**400 is a number too
            raw = min(max(raw, -_TIME_LIMIT), _TIME_LIMIT)
        value = float(raw)
        if claim == "exp":
            overshoot = now - (value + leeway)
            if overshoot < 0:
                continue
        else:
            overshoot = value - (now + leeway)
            if overshoot <= 0:
                continue
        skew = overshoot if skew is None else skew
        if claim == "exp" and overshoot + leeway <= 0:  # ts == exp exactly, no leeway
            when = "the token expires at the event's very second (it is valid only before exp)"
        else:
            when = _WHEN[claim].format(human_duration(overshoot + leeway))
        beyond = f"{human_duration(overshoot)} beyond {service.name}'s {leeway:g} s leeway"
        if overshoot <= window:
            findings.add(
                _TIME,
                Cause.CLOCK_SKEW,
                f"{claim}: {when}, {beyond}, within the {window:g} s skew window: a clock is off",
            )
        else:
            cause = Cause.EXPIRED if claim == "exp" else Cause.NOT_YET_VALID
            findings.add(_TIME, cause, f"{claim}: {when} ({beyond})")
    if findings.tracing:
        times = {claim: claims[claim] for claim in ("exp", "nbf", "iat") if claim in claims}
        findings.note(_TIME, times=times, leeway=leeway, window=window, skew=skew)
    return skew


def check_required_claims(claims: dict[str, Any], policy: ServicePolicy, findings: Findings) -> None:
    """Step 7: every claim the service requires is present."""
    missing: list[str] = []
    if not claims.keys() >= policy.required_claims:  # one C call when nothing is missing
        missing = [c for c in policy.service.required_claims if c not in claims]
        findings.add(
            _REQUIRED_CLAIMS,
            Cause.MISSING_CLAIM,
            f"required claim(s) {', '.join(missing)} missing for {policy.service.name}",
        )
    if findings.tracing:
        findings.note(_REQUIRED_CLAIMS, missing=missing)


# -- 8. key timing -----------------------------------------------------------------------------


def check_key_timing(
    event: AuthFailureEvent, key: TimelineKey, timeline: KeyTimeline, policy: ServicePolicy, findings: Findings
) -> None:
    """Step 8: was the signing key published, still published, and in the service's JWKS cache at the event's time?

    Without the service's JWKS fetch time on the event, a key younger than the service's cache
    TTL (`policy.cache_ttl`: its `jwks_cache_ttl_seconds`, else `max_jwks_cache_ttl_seconds`), and
    not there from the issuer's first snapshot, may be missing from the cache: a guess, which
    the classifier labels `inferred`.
    """
    cache_ttl = policy.cache_ttl
    ts, fetched, service = event.ts, event.service_jwks_fetched_at, event.service
    removed: datetime | None = None
    published: datetime | None = None
    age: float | None = None
    # The key's latest interval begun by `ts`, in one pass: what `removed_before` and `interval_start` each look for.
    latest = None
    for interval in key.intervals:
        if interval.first_seen <= ts:
            latest = interval
    if latest is None or key.first_seen > ts:
        findings.add(
            _KEY_TIMING,
            Cause.UNPUBLISHED_KEY,
            f"kid {key.kid} of {key.issuer} verifies, but it was first published {_key_stamp(key.first_seen)}, "
            f"{human_duration((key.first_seen - ts).total_seconds())} after the event: the issuer signed "
            "with it before publishing it",
        )
    elif (removed := latest.removed_at) is not None and removed <= ts:
        findings.add(
            _KEY_TIMING,
            Cause.RETIRED_KEY,
            f"kid {key.kid} of {key.issuer} had been removed from the JWKS at {_key_stamp(removed)}, "
            f"{human_duration((ts - removed).total_seconds())} before the event: the token was signed with a "
            "retired key",
        )
    else:
        removed = None
        published = latest.first_seen
        age = (ts - published).total_seconds()
        if fetched is not None:
            if fetched < published:
                findings.add(
                    _KEY_TIMING,
                    Cause.STALE_JWKS,
                    f"{service} last fetched its JWKS at {_key_stamp(fetched)} "
                    f"({human_duration((ts - fetched).total_seconds())} before the event), but kid {key.kid} "
                    f"was first published at {_key_stamp(published)} ({human_duration(age)} before the event)",
                )
        elif age < cache_ttl and timeline.is_young(key):
            ttl = (
                f"{service}'s {human_duration(cache_ttl)} JWKS cache TTL"
                if policy.service.jwks_cache_ttl_seconds is not None
                else f"the {human_duration(cache_ttl)} a JWKS cache may live ({service} declares no TTL)"
            )
            findings.add(
                _KEY_TIMING,
                Cause.STALE_JWKS,
                f"kid {key.kid} of {key.issuer} was first published only {human_duration(age)} before the event, "
                f"within {ttl}; inferred, as {service} does not report its fetch time",
            )
    if findings.tracing:
        findings.note(
            _KEY_TIMING, key=key, fetched=fetched, removed=removed, published=published, age=age, cache_ttl=cache_ttl
        )
