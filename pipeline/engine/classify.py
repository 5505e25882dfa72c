"""The decision procedure of DESIGN.md: why was this token rejected, as of the event's time?

Never trust the token: the service chooses the issuers and their algs, keys come only
from the JWKS timeline, and times are judged at the event's `ts` with the service's
leeway. The checks themselves (one function per step) live in `checks`; this module runs
them in order and decides from their findings: every failed check is a finding, in check
order; the first is the cause. A key-timing finding (`unpublished_key`, `retired_key`,
`stale_jwks`) is the cause only for an otherwise valid token: those are the rejections a
rotation caused. `explain` asks for a `Trace` of the same run and renders it.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.bounded import BoundedCache
from pipeline.config import ClassifyConfig, Config, ServiceConfig
from pipeline.engine.checks import (
    Finding,
    Findings,
    ServicePolicy,
    Step,
    StepOutcome,
    Trace,
    check_alg_policy,
    check_audience,
    check_issuer,
    check_key_and_signature,
    check_key_timing,
    check_required_claims,
    check_times,
    time_bounds,
)
from pipeline.engine.identifiers import hasher_from
from pipeline.engine.keys import KeyTimeline, TimelineKey
from pipeline.engine.reported import judge_reported
from pipeline.engine.reuse import JudgementReuse
from pipeline.engine.spans import VerdictSpans
from pipeline.engine.tokens import (
    EncryptedToken,
    MalformedToken,
    ParsedToken,
    fingerprint,
    parse,
    to_json,
)
from pipeline.engine.validate import SignatureCache, fits, is_psychic
from pipeline.models import Attack, AuthFailureEvent, Cause, Classification, Confidence
from pipeline.text import stamp

#: Distinct tokens whose parse is kept (about 2 KB each, 10 MB in all): repeated tokens are parsed once.
#: And the bytes they may hold: a token is up to 256 KB, so 5,000 of them could hold 2.5 GB.
PARSE_CACHE_SIZE = 5_000
PARSE_CACHE_MAX_BYTES = 32 * 1024 * 1024
# Enum members read for every event, as module constants: on Python 3.11 a member lookup
# (`Cause.VALID`) costs about 0.08 µs, the price of a whole check.
_VALID, _VERIFIED, _REPORTED, _REPORTED_STEP = Cause.VALID, Confidence.VERIFIED, Confidence.REPORTED, Step.REPORTED
_STALE, _INFERRED = Cause.STALE_JWKS, Confidence.INFERRED
_KID_INJECTION_MARKERS = ("../", "/dev/", "'", '"', ";", "|", "`", "$", "\x00")
_KID_INJECTION = re.compile("|".join(re.escape(marker) for marker in _KID_INJECTION_MARKERS))


def _parsed_bytes(token: str, result: ParsedToken | MalformedToken) -> int:
    """What a parse cache entry holds: the token, and a parse's signing input, JSON texts and claims."""
    if isinstance(result, MalformedToken):
        return len(token) + 200
    return len(token) + len(result.signing_input) + len(result.header_json) + 2 * len(result.claims_json) + 400


@dataclass(slots=True)
class Verdict:
    """A Classification plus the redacted token facts the store keeps beside it; read-only by convention.

    Not `frozen`, like `ParsedToken`: one is made per event, and frozen costs ~2 µs each.
    `findings` are the failed checks behind `classification.findings` (which lists each cause
    once, in check order); `steps` is set only when the run was traced (`Classifier.classify`
    with a `Trace`, as `explain` does): every step's outcome, passed, failed or skipped.
    """

    classification: Classification
    fingerprint: str | None = None
    header: dict[str, Any] | None = None
    claims: dict[str, Any] | None = None
    header_json: str | None = None  # `header` and `claims` as the store writes them (JSON text)
    claims_json: str | None = None
    key_thumbprint: str | None = None
    key_first_seen: datetime | None = None
    findings: list[Finding] = field(default_factory=list)  # every failed check, in check order
    steps: dict[Step, StepOutcome] | None = None
    # set by `engine.redaction.without_tokens` once `classification`'s free-text fields are proven token-free
    redacted: bool = field(default=False, compare=False)
    # the classification's JSON after its `event_id` (from `,"cause":` on), when reused from a span (`spans`)
    line_tail: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class StaticJudgement:
    """Steps 2 to 5 of one token for one service against one timeline version: no time of the event enters them.

    `findings`/`causes` are those steps' failed checks in order; `version` is the key timeline's
    version they were judged against (a new snapshot can change the keys a kid names);
    `kid` is the header's kid as the verdict prints it (`_header_text`), kept with them.
    `tail_key` is everything of them a verdict prints, hashable (None when the `aud` claim is
    not a string or null): what `spans` keys a reused verdict's tail by. `last_span` is
    `spans`' memo of this token's latest span (its own list, the judgement being frozen).
    """

    attacks: tuple[Attack, ...]
    key: TimelineKey | None
    findings: tuple[Finding, ...]
    causes: tuple[Cause, ...]
    version: int
    kid: str | None = None
    tail_key: tuple[Any, ...] | None = None
    last_span: list[Any] = field(default_factory=list, compare=False, repr=False)


def _classification(**fields: Any) -> Classification:
    """`Classification(**fields)`, validated the same way, by the model's own validator.

    Calling it directly skips `BaseModel.__init__`'s Python frame and keyword re-packing:
    about 1 µs less per event, a third of the model's cost. Strict, as every caller passes the
    enum members themselves: no coercion is tried (about 0.5 µs less).
    """
    classification: Classification = Classification.__pydantic_validator__.validate_python(fields, strict=True)
    return classification


_new, _setattr = object.__new__, object.__setattr__
_FIELD_NAMES = tuple(Classification.model_fields)


def _judged_classification(
    event_id: str,
    cause: Cause,
    confidence: Confidence,
    attacks: list[Attack],
    findings: list[Cause],
    issuer: str | None,
    kid: str | None,
    alg: str,
    audience: Any,
    skew_seconds: float | None,
    detail: str,
) -> Classification:
    """The `Classification` `judge_at` makes, built as the validator builds it, without validating.

    Every value is already of its field's type: the members themselves, new lists, strings from
    a parsed token and the timeline, a float overshoot (`check_times`), the `aud` claim as
    decoded (an `Any` field keeps the object as it is). So the validator would only copy
    them: this sets the same `__dict__`, fields set (all), extra and private as it does, at
    half its cost (~0.7 µs an event). tests/test_judged_classification.py holds it equal to
    the validated model, field by field and byte by byte, on every verdict of a stream.
    """
    classification: Classification = _new(Classification)
    _setattr(classification, "__dict__", {
        "event_id": event_id,
        "cause": cause,
        "confidence": confidence,
        "attacks": attacks,
        "findings": findings,
        "issuer": issuer,
        "kid": kid,
        "alg": alg,
        "audience": audience,
        "skew_seconds": skew_seconds,
        "detail": detail,
    })
    _setattr(classification, "__pydantic_fields_set__", set(_FIELD_NAMES))
    _setattr(classification, "__pydantic_extra__", None)
    _setattr(classification, "__pydantic_private__", None)
    return classification


def _header_text(value: Any) -> str | None:
    """A header value as a string for output (`kid`, `alg`); non-strings as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)[:200]


def _parse_failure(
    cause: Cause, detail: str, trace: Trace | None
) -> tuple[list[Finding], dict[Step, StepOutcome] | None]:
    """The findings of a token that fails step 1 (malformed, or a JWE), and its trace: nothing later runs."""
    if trace is None:
        return [Finding(Step.PARSE, cause, detail)], None
    trace.add(Step.PARSE, cause, detail)
    why = "the token is encrypted" if cause is Cause.UNVERIFIABLE else "the token does not parse"
    trace.skip_from(Step.ALG_POLICY, f"not checked: {why}")
    return trace.items, trace.steps


def detect_attacks(
    header: dict[str, Any] | None, signature: bytes | None, service_publishes_asymmetric_keys: bool
) -> list[Attack]:
    """Every hostile pattern in the header and signature, whatever the cause turns out to be."""
    if not header:
        return []
    found: list[Attack] = []  # appended in the order of `Attack`, each at most once
    alg = header.get("alg")
    if not isinstance(alg, str):
        alg = None
    if alg is not None and alg.lower() == "none":
        found.append(Attack.ALG_NONE)
    if alg is not None and alg.upper().startswith("HS") and service_publishes_asymmetric_keys:
        found.append(Attack.KEY_CONFUSION)
    if "jwk" in header:
        found.append(Attack.JWK_INJECTION)
    if "jku" in header or "x5u" in header:
        found.append(Attack.JKU_INJECTION)
    kid = header.get("kid")
    if isinstance(kid, str) and _KID_INJECTION.search(kid):
        found.append(Attack.KID_INJECTION)
    if alg is not None and signature is not None and is_psychic(alg, signature):
        found.append(Attack.PSYCHIC_SIGNATURE)
    return found


class Classifier:
    """Classifies events against a config and a key timeline; holds the signature cache."""

    def __init__(self, config: Config, timeline: KeyTimeline, cache: SignatureCache | None = None) -> None:
        self.config = config
        self.settings: ClassifyConfig = config.classify
        self.timeline = timeline
        self.cache = cache or SignatureCache(config.classify.signature_cache_size)
        self.parse_cache: BoundedCache[str, ParsedToken | MalformedToken] = BoundedCache(
            PARSE_CACHE_SIZE, PARSE_CACHE_MAX_BYTES, _parsed_bytes
        )
        self._hasher = hasher_from(config.store.hash_key)  # stored personal claims: keyed hashes
        # the time-independent checks of repeated tokens (None: every event judged afresh)
        self.reuse = JudgementReuse(self, self.parse_cache.capacity) if config.classify.reuse_judgements else None
        # whole verdicts over spans of time in which none of their text changes (with reuse only)
        self.spans = VerdictSpans(timeline) if self.reuse is not None else None
        self._asymmetric: dict[str, tuple[int, bool]] = {}  # service → (timeline version, answer)
        # (service, alg, kid) → (candidates, fitting) as of `_choices_version`; see `_key_choices`
        self._choices: dict[tuple[str, str, str | None], tuple[list[TimelineKey], list[TimelineKey]]] = {}
        self._choices_version = -1
        self._configured_urls = frozenset(i.issuer for i in config.issuers)
        self._prepared: dict[int, ParsedToken | MalformedToken] = {}  # see `prepare`
        self._prepared_tokens: list[str] = []
        self._policies = {
            s.name: ServicePolicy(
                s,
                frozenset(a for n in s.issuers for a in config.issuer_by_name(n).algorithms),
                frozenset(config.issuer_by_name(n).issuer for n in s.issuers),
                frozenset(s.required_claims),
                {config.issuer_by_name(n).issuer: frozenset(config.issuer_by_name(n).algorithms) for n in s.issuers},
                s.jwks_cache_ttl_seconds
                if s.jwks_cache_ttl_seconds is not None
                else config.classify.max_jwks_cache_ttl_seconds,
            )
            for s in config.services
        }

    # -- entry point -----------------------------------------------------------------------

    def classify(self, event: AuthFailureEvent, token: str | None, trace: Trace | None = None) -> Verdict:
        """The verdict for `event`; `token` is the inline or joined token, if any.

        With a `trace` (a fresh one per call), the same procedure also records every step's
        outcome and facts in it and the verdict's `steps`: what `explain` renders.
        """
        policy = self._policies.get(event.service)
        if policy is None:
            raise KeyError(f"service {event.service!r} is not in the config")
        if token is None:
            return self._from_reported(event, policy)
        parsed = self._prepared.get(id(token))  # the batch's own token object, parsed by `prepare`
        if parsed is None:
            parsed = self._parse(token)
        if isinstance(parsed, ParsedToken):
            return self._judge(event, parsed, policy, trace)
        # A JWE never parses (5 segments, not 3): `parse` tells it apart by its header's `enc`.
        if isinstance(parsed, EncryptedToken):
            detail = (
                "The token is a JWE (5 segments): encrypted, so jwtriage cannot read or verify it; "
                "check that the service expects encrypted tokens."
            )
            findings, steps = _parse_failure(Cause.UNVERIFIABLE, detail, trace)
            return Verdict(
                _classification(
                    event_id=event.event_id,
                    cause=Cause.UNVERIFIABLE,
                    confidence=Confidence.VERIFIED,
                    findings=[Cause.UNVERIFIABLE],
                    detail=detail,
                ),
                fingerprint=fingerprint(token),
                findings=findings,
                steps=steps,
            )
        return self._malformed(event, token, policy, parsed, trace)

    def prepare(self, tokens: Iterable[tuple[str, str]]) -> None:
        """Parse a batch's (service, token) pairs and check their signatures ahead of judging them.

        Only the pure, cached steps run here, exactly as `classify` would run them (the same
        alg policy, the same keys in the same order), so judging then finds both in the
        caches: the same work, but each kind (JSON, OpenSSL) back to back instead of
        interleaved with the checks, which keeps it in the CPU caches and makes a batch of
        unique tokens about a third faster. Verdicts are still made one by one, in order.
        """
        # Two parallel lists rather than a (token, policy) tuple each: a batch's worth of tuples
        # lives long enough to reach the oldest GC generation and make full collections come sooner.
        parsed: list[ParsedToken] = []
        policies: list[ServicePolicy] = []
        known = self.reuse.current() if self.reuse is not None else None  # the timeline does not change here
        # Each event's token object → its parse, for `classify` to take without a second look-up in the
        # parse cache. Keyed by `id`: the tokens are kept alive beside it, so no other object has their id.
        prepared, alive = self._prepared, self._prepared_tokens
        prepared.clear()
        alive.clear()
        for service, token in itertools.islice(tokens, PARSE_CACHE_SIZE // 2):  # all stay cached until judged
            policy = self._policies.get(service)
            if policy is None:
                continue
            result = self._parse(token)  # a JWE is cached as the MalformedToken it is, and skipped
            prepared[id(token)] = result
            alive.append(token)
            if isinstance(result, ParsedToken) and (known is None or (result.fingerprint, service) not in known):
                parsed.append(result)
                policies.append(policy)
        for parsed_token, policy in zip(parsed, policies, strict=True):
            findings = Findings()  # thrown away: only the caches matter here
            if check_alg_policy(parsed_token.alg, policy, findings):
                choices = self._key_choices(parsed_token.alg, parsed_token.kid, policy)
                check_key_and_signature(parsed_token, policy, choices, self.cache, self._configured_urls, findings)

    def _parse(self, token: str) -> ParsedToken | MalformedToken:
        """Parse once per distinct token (a bounded cache: parsing is pure, verdicts are not cached)."""
        cached = self.parse_cache.get(token)
        if cached is not None:
            self.parse_cache.move_to_end(token)
            return cached
        try:
            result: ParsedToken | MalformedToken = parse(token, self._hasher)
        except MalformedToken as exc:
            # Kept as a fresh exception: the raised one holds its traceback, whose frames hold
            # their callers' frames and locals, i.e. the whole batch, for as long as it is cached.
            result = type(exc)(exc.reason, exc.header)
        self.parse_cache.put(token, result)
        return result

    # -- the two short paths ---------------------------------------------------------------

    def _from_reported(self, event: AuthFailureEvent, policy: ServicePolicy) -> Verdict:
        """No token: the rejecting validator's message is the evidence (`reported.judge_reported`).

        Where the message states the failing time, the overshoot beyond the service's leeway
        splits clock_skew from expired / not_yet_valid as for a token, and is `skew_seconds`.
        """
        judged = judge_reported(
            event.reported_error, event.ts, policy.service.leeway_seconds, self.settings.skew_window_seconds
        )
        cause, row = judged.cause, judged.row
        why = "no token was sampled for it" if event.token_sha256 else "it carried no token"
        if row is None:
            detail = (
                f"Unverifiable: {why}, and the validator's message says nothing jwtriage recognises; "
                "sample the token to get a verified cause."
            )
        else:
            facts = judged.detail_facts[1:]  # the first only repeats the row's own cause
            article = "an" if row.validator[0] in "aeiou" else "a"  # an envoy message, a kong message
            stated = f": {'; '.join(facts)}" if facts else ""
            detail = (
                f"Reported as {cause.value} by the rejecting validator ({article} {row.validator} message; "
                f"{why}){stated}; "
                "not verified by jwtriage: sample the token to confirm."
            )
        valid = cause is _VALID
        return Verdict(
            _classification(
                event_id=event.event_id,
                cause=cause,
                confidence=_REPORTED,
                findings=[] if valid else [cause],
                skew_seconds=judged.skew_seconds,
                detail=detail,
            ),
            fingerprint=event.token_sha256.lower() if event.token_sha256 else None,
            findings=[] if valid else [Finding(_REPORTED_STEP, cause, detail)],
        )

    def _malformed(
        self, event: AuthFailureEvent, token: str, policy: ServicePolicy, exc: MalformedToken, trace: Trace | None
    ) -> Verdict:
        attacks = detect_attacks(exc.header, None, self._publishes_asymmetric(policy))
        header = exc.header
        detail = f"Malformed token: {exc.reason}; the sender is not producing a compact JWS."
        findings, steps = _parse_failure(Cause.MALFORMED, detail, trace)
        return Verdict(
            _classification(
                event_id=event.event_id,
                cause=Cause.MALFORMED,
                confidence=Confidence.VERIFIED,
                attacks=attacks,
                findings=[Cause.MALFORMED],
                kid=_header_text(header.get("kid")) if header else None,
                alg=_header_text(header.get("alg")) if header else None,
                detail=detail,
            ),
            fingerprint=fingerprint(token),
            header=header,
            header_json=to_json(header, False) if header is not None else None,
            findings=findings,
            steps=steps,
        )

    # -- the full procedure ----------------------------------------------------------------

    def _judge(
        self, event: AuthFailureEvent, token: ParsedToken, policy: ServicePolicy, trace: Trace | None
    ) -> Verdict:
        """Steps 2 to 8 of DESIGN.md in order (1, parsing, is done), then the decision from their findings.

        Steps 2 to 5 and the attack labels depend on nothing but the token, the service and the
        key timeline (`judge_static`); the rest is judged at the event's time (`judge_at`). A
        repeated token takes the first part from `reuse` (same token, service and timeline);
        an event whose time falls in a span where none of the verdict's text can change
        takes the whole verdict from `spans`, and any other runs the second part afresh.
        """
        if trace is None and (reuse := self.reuse) is not None:
            spans = self.spans
            static = reuse.cached(token, policy)
            if static is not None and spans is not None and static.tail_key is not None:
                reused = spans.verdict(event, token, policy, static)
                if reused is not None:
                    return reused
            findings = Findings()
            if static is None:
                static = reuse.judged(token, policy, findings)
            else:
                findings.items.extend(static.findings)
                findings.causes.extend(static.causes)
            verdict = self.judge_at(event, token, policy, static, findings)
            if spans is not None and static.tail_key is not None:
                spans.learn(event, token, policy, static, verdict)
            return verdict
        findings = Findings() if trace is None else trace
        if trace is not None:
            trace.note(Step.PARSE, segments=3)
        static = self.judge_static(token, policy, findings)
        return self.judge_at(event, token, policy, static, findings)

    def judge_static(self, token: ParsedToken, policy: ServicePolicy, findings: Findings) -> StaticJudgement:
        """Steps 2 to 5 and the attacks, into `findings`: what no time of the event can change."""
        trace = findings if findings.tracing else None
        alg, claims = token.alg, token.claims
        attacks = detect_attacks(token.header, token.signature, self._publishes_asymmetric(policy))
        key: TimelineKey | None = None
        if check_alg_policy(alg, policy, findings):
            choices = self._key_choices(alg, token.kid, policy)
            key = check_key_and_signature(token, policy, choices, self.cache, self._configured_urls, findings)
        elif trace is not None:
            trace.skip(Step.KEY_AND_SIGNATURE, "not checked: the alg is refused first")
        check_issuer(claims, policy, key, findings)
        check_audience(claims, policy.service, findings)
        version = self.timeline.version
        kid, aud = _header_text(token.kid), claims.get("aud")
        items, causes = tuple(findings.items), tuple(findings.causes)
        tail_key = (
            (id(key), policy.service.name, tuple((f.cause, f.evidence) for f in items), causes, tuple(attacks),
             kid, token.alg, aud)
            if aud is None or isinstance(aud, str)
            else None
        )
        return StaticJudgement(tuple(attacks), key, items, causes, version, kid, tail_key)

    def judge_at(
        self,
        event: AuthFailureEvent,
        token: ParsedToken,
        policy: ServicePolicy,
        static: StaticJudgement,
        findings: Findings,
    ) -> Verdict:
        """Steps 6 to 8 at the event's `ts` (after `static`'s findings, already in `findings`), and the verdict."""
        service = policy.service
        trace = findings if isinstance(findings, Trace) else None
        claims, key = token.claims, static.key
        bounds = token.time_bounds
        if bounds is None:
            bounds = token.time_bounds = time_bounds(claims)
        skew = check_times(claims, event.ts, service, self.settings.skew_window_seconds, findings, bounds)
        check_required_claims(claims, policy, findings)
        if key is not None:
            check_key_timing(event, key, self.timeline, policy, findings)
        elif trace is not None:
            trace.skip(Step.KEY_TIMING, "not checked: no configured key verified the signature")

        # Key timing is checked last, so it is the cause only when nothing else failed.
        cause = findings.causes[0] if findings.causes else _VALID
        # stale_jwks without the service's fetch time rests on its cache TTL: a guess (DESIGN.md `confidence`).
        guessed = cause is _STALE and event.service_jwks_fetched_at is None
        return Verdict(
            _judged_classification(
                event.event_id,
                cause,
                _INFERRED if guessed else _VERIFIED,
                list(static.attacks),
                list(findings.causes),  # its own list, as validation would copy it
                key.issuer if key is not None else None,
                static.kid,
                token.alg,
                claims.get("aud"),
                skew,
                self._detail(cause, findings, event, service, key),
            ),
            # positional, in the field order (fingerprint, header, claims, header_json, claims_json,
            # key_thumbprint, key_first_seen, findings, steps): keywords cost ~0.15 µs more per event
            token.fingerprint,
            token.header,
            token.stored_claims,
            token.header_json,
            token.claims_json,
            key.thumbprint if key is not None else None,
            key.first_seen if key is not None else None,
            findings.items,  # `findings` ends here: no copy needed
            trace.steps if trace is not None else None,
        )

    def _publishes_asymmetric(self, policy: ServicePolicy) -> bool:
        """Do the service's issuers publish RSA/EC/OKP keys (the precondition of key confusion)?"""
        version, answer = self._asymmetric.get(policy.service.name, (-1, False))
        if version != self.timeline.version:
            answer = any(self.timeline.all_keys(url) for url in policy.issuer_urls)
            self._asymmetric[policy.service.name] = (self.timeline.version, answer)
        return answer

    def _key_choices(self, alg: str, kid: Any, policy: ServicePolicy) -> tuple[list[TimelineKey], list[TimelineKey]]:
        """The configured keys `kid` names (any kty), and those `alg` can use, the service's issuers first.

        They depend only on the timeline, the service, alg and kid, and every token is looked
        up twice (`prepare`, then `classify`), mostly under a handful of kids: kept until the
        timeline changes. Only kids that name a key are kept, so the cache is bounded by
        services × their algs × published kids whatever kids tokens make up. Callers must not
        modify the lists.
        """
        if self._choices_version != self.timeline.version:
            self._choices.clear()
            self._choices_version = self.timeline.version
        cache_key = (policy.service.name, alg, kid) if kid is None or isinstance(kid, str) else None
        if cache_key is not None:
            cached = self._choices.get(cache_key)
            if cached is not None:
                return cached
        if kid is None:
            candidates = [k for k in self._configured_keys() if fits(alg, k)]
        else:
            candidates = [k for k in self.timeline.keys_with_kid(kid) if k.issuer in self._configured_urls]
        fitting = [k for k in candidates if fits(alg, k)]
        if len(fitting) > 1:  # the service's issuers first, those that allow the alg before those that do not
            allowed = policy.issuer_algorithms
            fitting.sort(key=lambda k: (k.issuer not in allowed, alg not in allowed.get(k.issuer, ())))
        if cache_key is not None and candidates:
            self._choices[cache_key] = (candidates, fitting)
        return candidates, fitting

    def _configured_keys(self) -> list[TimelineKey]:
        return [k for k in self.timeline.all_keys() if k.issuer in self._configured_urls]

    # -- the sentence ----------------------------------------------------------------------

    @staticmethod
    def _detail(
        cause: Cause,
        findings: Findings,
        event: AuthFailureEvent,
        service: ServiceConfig,
        key: TimelineKey | None,
    ) -> str:
        if cause is _VALID:
            signer = f" (signed by {key.issuer}, kid {key.kid})" if key else ""
            return (
                f"The token passes every check at {stamp(event.ts)}{signer}: the rejection is not the token's fault; "
                f"check {service.name}'s validator configuration and key cache."
            )
        first = findings.items[0].evidence  # the first finding is the cause's
        sentence = f"{first[0].upper()}{first[1:]}."
        others = [c.value for c in findings.causes[1:]]
        if others:
            sentence += f" Also failed: {', '.join(others)}."
        return sentence
