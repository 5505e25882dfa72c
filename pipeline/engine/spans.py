"""Whole verdicts of repeated events, reused over spans of time in which nothing of the verdict changes.

`reuse` keeps steps 2 to 5 of a (token, service) pair; steps 6 to 8 and the sentence still
ran for every event, and in an outage they are most of the work left: the same sentence
("last fetched its JWKS at 08:57 (9 min before the event), but kid k-new was first
published at 09:02 (4 min before the event)") is rendered for every retry of every user.
DESIGN.md allows a verdict to be reused for an event whose `ts` and fetch time lie in the
same interval of every time-dependent input. This module finds such intervals, exactly:

- **Key timing** (step 8) is a function of `ts` once the key, the service and its fetch
  time (with its UTC offset, which the sentence prints) are fixed. Between two consecutive
  publication or removal times of the key, the branch the check takes is fixed and every
  duration it prints moves one way with `ts`, so each finding it can give (or none) holds
  on one contiguous stretch. A span around an event's `ts` is guessed from the grid where
  `human_duration`'s text can change and kept only when the check itself, run at the span's
  two ends, gives the finding it gave at `ts`: by contiguity it gives it everywhere between.
  Spans are shared by every token signed with the key: an outage has a handful.
- **The verdict's tail** (every field but `event_id`, and its JSON text) is a function of
  the static judgement's content (`StaticJudgement.tail_key`), the key-timing finding and
  whether the fetch time is missing (the `inferred` confidence), provided the token's time
  claims and required claims pass at `ts` (checked per event, the same comparisons as
  steps 6 and 7). A verdict whose cause is `valid` prints the event's time and is never
  reused; neither is one whose time check fails (its `skew_seconds` moves with `ts`).

A tail is learned from a verdict judged in full, and only when its key-timing finding is
the span's (checked, not assumed). Everything is forgotten when the key timeline changes.
Only with `classify.reuse_judgements` on; tests/test_verdict_spans.py compares every verdict
with a fresh judgement on random streams.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipeline.bounded import BoundedCache
from pipeline.engine.checks import Findings, check_key_timing, inside_time_bounds, since_epoch, time_bounds
from pipeline.engine.tokens import has_token
from pipeline.models import Cause, Classification

if TYPE_CHECKING:
    from pipeline.engine.checks import Finding, ServicePolicy
    from pipeline.engine.classify import StaticJudgement, Verdict
    from pipeline.engine.keys import KeyTimeline, TimelineKey
    from pipeline.engine.tokens import ParsedToken
    from pipeline.models import AuthFailureEvent

_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Microseconds kept clear of a guessed edge of `human_duration`'s grid (float rounding near a tie).
_MARGIN_US = 2
#: Spans kept per (key, fetch time, service), newest first: events arrive nearly in time order.
_SPANS_PER_KEY = 8
_MISS: Any = object()  # no span covers the event's time
_NO_FINDING: Any = object()  # a span's finding when key timing finds nothing (or there is no key)
_SERIALIZER = Classification.__pydantic_serializer__
_CAUSE_FIELD = b',"cause":'  # cannot occur inside the event_id's JSON string (its quotes are escaped)
_VALID, _MISSING_CLAIM = Cause.VALID, Cause.MISSING_CLAIM


def _grid_cell(seconds: float) -> tuple[float, float]:
    """Seconds around `seconds` (>= 0) between two places where `human_duration`'s text may change (a guess).

    Its text changes at most at a half second below 2 min (`.0f`), at a half minute below
    90 min, at whole minutes below 48 h and at whole hours beyond. The guess is verified by
    the caller, so float ties at the edges cost only a missed span.
    """
    if seconds < 120:
        n = math.floor(seconds + 0.5)
        return max(n - 0.5, 0.0), min(n + 0.5, 120.0)
    if seconds < 5400:
        k = math.floor(seconds / 60 + 0.5)
        return max(60.0 * k - 30, 120.0), min(60.0 * k + 30, 5400.0)
    if seconds < 48 * 3600:
        m = math.floor(seconds / 60)
        return 60.0 * m, 60.0 * m + 60
    h = math.floor(min(seconds, 1e12) / 3600)
    return 3600.0 * h, 3600.0 * h + 3600


def _micros(when: datetime) -> int:
    return (when - _EPOCH) // _US


@dataclass(slots=True)
class _Probe:
    """What `check_key_timing` reads of an event, at another time: to run the check at a span's ends."""

    ts: datetime
    service_jwks_fetched_at: datetime | None
    service: str


def _finding_at(
    at_us: int, fetched: datetime | None, service: str, key: TimelineKey, timeline: KeyTimeline, policy: ServicePolicy
) -> tuple[Cause, str] | None:
    findings = Findings()
    probe = _Probe(_EPOCH + timedelta(microseconds=at_us), fetched, service)
    check_key_timing(probe, key, timeline, policy, findings)  # type: ignore[arg-type]
    if not findings.items:
        return None
    finding = findings.items[0]
    return finding.cause, finding.evidence


def _segment(key: TimelineKey, at_us: int) -> tuple[float, float]:
    """The stretch around `at_us` between two of the key's publication or removal times: one branch of step 8."""
    lo, hi = -math.inf, math.inf
    for interval in key.intervals:
        for when in (interval.first_seen, interval.removed_at):
            if when is None:
                continue
            edge = _micros(when)
            if edge <= at_us:
                lo = max(lo, edge)
            else:
                hi = min(hi, edge)
    return lo, hi


def _guess_span(at_us: int, bases: Sequence[int], segment: tuple[float, float]) -> tuple[int, int] | None:
    """Microseconds [first, last] around `at_us`, inside `segment`, where no printed duration should change."""
    low, high = segment[0], segment[1] - 1
    for base in bases:
        lo, hi = _grid_cell(abs(at_us - base) / 1e6)
        if at_us >= base:
            low, high = max(low, base + lo * 1e6), min(high, base + hi * 1e6)
        else:
            low, high = max(low, base - hi * 1e6), min(high, base - lo * 1e6)
    if math.isinf(low) or math.isinf(high):
        return None
    first, last = math.ceil(low) + _MARGIN_US, math.floor(high) - _MARGIN_US
    return (first, last) if first <= at_us <= last else None


@dataclass(slots=True)
class _Tail:
    """A verdict's fields but `event_id`, and its JSON line after `event_id`."""

    cause: Cause
    confidence: Any
    causes: tuple[Cause, ...]
    issuer: str | None
    detail: str
    findings: tuple[Finding, ...]
    line_tail: bytes
    finding: Any  # the span's finding it was learned with (kept alive: its id is in the key)


def _tail_bytes(key: Any, tail: _Tail) -> int:
    return 300 + len(tail.detail) + len(tail.line_tail)


def _spans_bytes(key: Any, spans: list[Any]) -> int:
    return 200 + sum(100 + len(s[2][1]) if isinstance(s[2], tuple) else 100 for s in spans)


class VerdictSpans:
    """Key-timing findings by span of time, and verdict tails by what they depend on; for one timeline version."""

    def __init__(self, timeline: KeyTimeline, capacity: int = 4_096, max_bytes: int = 8 * 1024 * 1024) -> None:
        from pipeline.engine.classify import Verdict, _judged_classification  # classify imports this module

        self._verdict, self._classification = Verdict, _judged_classification
        self._timeline = timeline
        self._version = timeline.version
        # (id(key), fetch time from the epoch or None, its tzinfo, service) → [(first µs, last µs, finding, key)],
        # newest first
        self.spans: BoundedCache[tuple[Any, ...], list[Any]] = BoundedCache(capacity, max_bytes, _spans_bytes)
        # (static tail key, id(span finding), fetch time missing) → the verdict's tail
        self.tails: BoundedCache[tuple[Any, ...], _Tail] = BoundedCache(capacity, max_bytes, _tail_bytes)
        self.hits = 0

    def _current(self) -> None:
        version = self._timeline.version
        if version != self._version:
            self.spans.clear()
            self.spans.bytes = 0
            self.tails.clear()
            self.tails.bytes = 0
            self._version = version

    def _key_timing(
        self, fetched: datetime | None, service: str, key: TimelineKey, at_us: int, policy: ServicePolicy, make: bool
    ) -> Any:
        """The span covering `at_us`, (first µs, last µs, its finding or `_NO_FINDING`, key), or `_MISS`.

        `fetched` and `service` are the event's fetch time and service. With `make`, a missing
        span is made, from the second event of its (key, fetch time, service) on: a stream
        whose every event has its own fetch time never pays for one.
        """
        # the fetch time and its tzinfo (the sentence prints its offset); the same tzinfo as `ts`'s is cheap
        since = None if fetched is None else since_epoch(fetched)
        memo_key = (id(key), since, None if fetched is None else fetched.tzinfo, service)
        spans = self.spans.get(memo_key)
        if spans is not None:
            for span in spans:
                if span[0] <= at_us <= span[1]:
                    return span
        if not make:
            return _MISS
        if spans is None:  # first sight of this fetch time: a stream of unique ones never pays for spans
            self.spans.put(memo_key, [])
            return _MISS
        timeline = self._timeline
        bases = [_micros(i.first_seen) for i in key.intervals]
        bases += [_micros(i.removed_at) for i in key.intervals if i.removed_at is not None]
        if since is not None:
            bases.append(since // _US)
        guess = _guess_span(at_us, bases, _segment(key, at_us))
        if guess is None:
            return _MISS
        first, last = guess
        try:
            found = _finding_at(at_us, fetched, service, key, timeline, policy)
            if (
                _finding_at(first, fetched, service, key, timeline, policy) != found
                or _finding_at(last, fetched, service, key, timeline, policy) != found
            ):
                return _MISS
        except OverflowError:  # a span's end past year 9999 (or before year 1): no span there
            return _MISS
        span = (first, last, _NO_FINDING if found is None else found, key)
        spans.insert(0, span)
        del spans[_SPANS_PER_KEY:]
        self.spans.put(memo_key, spans)
        return span

    @staticmethod
    def _fast_checks(at_us: int, token: ParsedToken, policy: ServicePolicy) -> bool:
        """Do steps 6 and 7 pass at `at_us` (the event's time in µs), as `check_times`' shortcut decides?"""
        bounds = token.time_bounds
        if bounds is None:
            bounds = token.time_bounds = time_bounds(token.claims)
        # `at_us / 10**6` is `total_seconds()` itself: the timedelta's microseconds over 10**6, one division
        if not inside_time_bounds(bounds, at_us / 1_000_000, policy.service.leeway_seconds):
            return False
        return token.claims.keys() >= policy.required_claims

    def verdict(
        self, event: AuthFailureEvent, token: ParsedToken, policy: ServicePolicy, static: StaticJudgement
    ) -> Verdict | None:
        """The event's verdict from a learned tail, or None (judge it in full, then `learn`)."""
        tail = self.tail(since_epoch(event.ts) // _US, event.service_jwks_fetched_at, event.service, token, policy,
                         static)
        return None if tail is None else self._reused(event, token, static, tail)

    def tail(
        self,
        at_us: int,
        fetched: datetime | None,
        service: str,
        token: ParsedToken,
        policy: ServicePolicy,
        static: StaticJudgement,
    ) -> _Tail | None:
        """The learned tail of an event at `at_us` (µs from the epoch) with this fetch time and service, or None.

        A retry usually falls in the span its token's previous event took its tail from: that
        span, with the tail, is kept on the token's static judgement (`last_span`) when the
        token's time claims pass at both of its ends (each check is monotonic in `ts`, so they
        pass everywhere between), and an event of the same fetch time inside it takes the tail
        after one comparison, without the span and tail look-ups. `line_reuse` asks here
        without building the event.
        """
        if self._timeline.version != self._version:
            self._current()
        last = static.last_span
        if last and static.version == self._version:
            first, final, tail, was_fetched = last
            if first <= at_us <= final and (
                fetched is was_fetched
                or (fetched is not None and was_fetched is not None
                    and fetched.tzinfo is was_fetched.tzinfo and fetched == was_fetched)
            ):
                self.hits += 1
                return tail
        if not self.tails or not self._fast_checks(at_us, token, policy):
            return None
        key = static.key
        if key is None:
            span, finding = None, _NO_FINDING
        else:
            span = self._key_timing(fetched, service, key, at_us, policy, False)
            if span is _MISS:
                return None
            finding = span[2]
        tail = self.tails.get((static.tail_key, id(finding), fetched is None))
        if tail is None:
            return None
        if span is not None and static.version == self._version:
            first, final = span[0], span[1]
            bounds, leeway = token.time_bounds, policy.service.leeway_seconds  # set by `_fast_checks`
            if (
                bounds is not None
                and inside_time_bounds(bounds, first / 1_000_000, leeway)
                and inside_time_bounds(bounds, final / 1_000_000, leeway)
            ):
                static.last_span[:] = (first, final, tail, fetched)
        self.hits += 1
        return tail

    def _reused(self, event: AuthFailureEvent, token: ParsedToken, static: StaticJudgement, tail: _Tail) -> Verdict:
        """The event's verdict: `tail`'s fields, the event's id, the token's own facts."""
        key = static.key
        return self._verdict(
            self._classification(
                event.event_id,
                tail.cause,
                tail.confidence,
                list(static.attacks),
                list(tail.causes),
                tail.issuer,
                static.kid,
                token.alg,
                token.claims.get("aud"),
                None,
                tail.detail,
            ),
            token.fingerprint,
            token.header,
            token.stored_claims,
            token.header_json,
            token.claims_json,
            key.thumbprint if key is not None else None,
            key.first_seen if key is not None else None,
            list(tail.findings),
            None,
            True,  # its fields are the learned verdict's, proven token-free when it was learned
            tail.line_tail,
        )

    def learn(
        self,
        event: AuthFailureEvent,
        token: ParsedToken,
        policy: ServicePolicy,
        static: StaticJudgement,
        verdict: Verdict,
    ) -> None:
        """Keep the tail of a verdict judged in full, when later events in its span may take it."""
        c = verdict.classification
        if c.cause is _VALID or c.skew_seconds is not None or static.tail_key is None:
            return
        self._current()
        at_us = since_epoch(event.ts) // _US
        if not self._fast_checks(at_us, token, policy):
            return
        key = static.key
        if key is None:
            finding = _NO_FINDING
        else:
            span = self._key_timing(event.service_jwks_fetched_at, event.service, key, at_us, policy, True)
            if span is _MISS:
                return
            finding = span[2]
        # What steps 6 to 8 added after the static findings must be exactly the span's finding.
        added = verdict.findings[len(static.findings):]
        if finding is _NO_FINDING:
            if added:
                return
        elif len(added) != 1 or (added[0].cause, added[0].evidence) != finding:
            return
        aud = c.audience
        if has_token("\x00".join((c.detail or "", c.kid or "", c.issuer or "", c.alg or "", aud or ""))):
            return  # `engine.redaction.without_tokens` would redact it: judged in full every time
        line = _SERIALIZER.to_json(c)
        self.tails.put(
            (static.tail_key, id(finding), event.service_jwks_fetched_at is None),
            _Tail(c.cause, c.confidence, tuple(c.findings), c.issuer, c.detail or "", tuple(verdict.findings),
                  line[line.index(_CAUSE_FIELD):], finding),
        )

