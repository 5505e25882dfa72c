"""The decision procedure of DESIGN.md: why was this token rejected, as of the event's time?

Never trust the token: the service chooses the issuers and their algs, keys come only
from the JWKS timeline, and times are judged at the event's `ts` with the service's
leeway. Every failed check is a finding, in check order; the first is the cause. A
key-timing finding (`unpublished_key`, `retired_key`, `stale_jwks`) is the cause only for
an otherwise valid token: those are the rejections a rotation caused.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.config import ClassifyConfig, Config, ServiceConfig
from pipeline.engine.keys import KeyTimeline, TimelineKey
from pipeline.engine.reported import match_reported
from pipeline.engine.tokens import (
    MalformedToken,
    ParsedToken,
    fingerprint,
    parse,
    segment_count,
    to_json,
)
from pipeline.engine.validate import SignatureCache, fits, is_psychic
from pipeline.models import Attack, AuthFailureEvent, Cause, Classification, Confidence
from pipeline.text import human_duration, stamp

#: Distinct tokens whose parse is kept (about 2 KB each, 10 MB in all): repeated tokens are parsed once.
PARSE_CACHE_SIZE = 5_000
#: Time claims are clamped to this many seconds from the epoch (about 31 million years).
_TIME_LIMIT = 10**15
_KID_INJECTION_MARKERS = ("../", "/dev/", "'", '"', ";", "|", "`", "$", "\x00")
_KID_INJECTION = re.compile("|".join(re.escape(marker) for marker in _KID_INJECTION_MARKERS))


@dataclass(slots=True)
class Verdict:
    """A Classification plus the redacted token facts the store keeps beside it; read-only by convention.

    Not `frozen`, like `ParsedToken`: one is made per event, and frozen costs ~2 µs each.
    """

    classification: Classification
    fingerprint: str | None = None
    header: dict[str, Any] | None = None
    claims: dict[str, Any] | None = None
    header_json: str | None = None  # `header` and `claims` as the store writes them (JSON text)
    claims_json: str | None = None
    key_thumbprint: str | None = None
    key_first_seen: datetime | None = None
    notes: dict[Cause, str] = field(default_factory=dict)  # the evidence sentence of each finding


@dataclass(frozen=True, slots=True)
class _ServicePolicy:
    """What one service accepts, precomputed once per service."""

    service: ServiceConfig
    algorithms: frozenset[str]
    issuer_urls: frozenset[str]
    required_claims: frozenset[str]


class _Findings:
    """The failed checks of one token, in check order, each with its evidence sentence."""

    __slots__ = ("causes", "notes")

    def __init__(self) -> None:
        self.causes: list[Cause] = []
        self.notes: dict[Cause, str] = {}

    def add(self, cause: Cause, note: str) -> None:
        if cause not in self.notes:
            self.causes.append(cause)
            self.notes[cause] = note


def _classification(**fields: Any) -> Classification:
    """`Classification(**fields)`, validated the same way, by the model's own validator.

    Calling it directly skips `BaseModel.__init__`'s Python frame and keyword re-packing:
    about 1 µs less per event, a third of the model's cost. Strict, as every caller passes the
    enum members themselves: no coercion is tried (about 0.5 µs less).
    """
    classification: Classification = Classification.__pydantic_validator__.validate_python(fields, strict=True)
    return classification


def _header_text(value: Any) -> str | None:
    """A header value as a string for output (`kid`, `alg`); non-strings as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)[:200]


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
        self._parsed: OrderedDict[str, ParsedToken | MalformedToken] = OrderedDict()
        self._asymmetric: dict[str, tuple[int, bool]] = {}  # service → (timeline version, answer)
        # (service, alg, kid) → (candidates, fitting) as of `_choices_version`; see `_key_choices`
        self._choices: dict[tuple[str, str, str | None], tuple[list[TimelineKey], list[TimelineKey]]] = {}
        self._choices_version = -1
        self._configured_urls = frozenset(i.issuer for i in config.issuers)
        self._policies = {
            s.name: _ServicePolicy(
                s,
                frozenset(a for n in s.issuers for a in config.issuer_by_name(n).algorithms),
                frozenset(config.issuer_by_name(n).issuer for n in s.issuers),
                frozenset(s.required_claims),
            )
            for s in config.services
        }

    # -- entry point -----------------------------------------------------------------------

    def classify(self, event: AuthFailureEvent, token: str | None) -> Verdict:
        """The verdict for `event`; `token` is the inline or joined token, if any."""
        policy = self._policies.get(event.service)
        if policy is None:
            raise KeyError(f"service {event.service!r} is not in the config")
        if token is None:
            return self._from_reported(event)
        parsed = self._parse(token)
        if isinstance(parsed, ParsedToken):
            return self._judge(event, parsed, policy)
        # A JWE never parses (5 segments, not 3), so it is told apart only among the failures.
        if segment_count(token) == 5:
            detail = (
                "The token is a JWE (5 segments): encrypted, so jwtriage cannot read or verify it; "
                "check that the service expects encrypted tokens."
            )
            return Verdict(
                _classification(
                    event_id=event.event_id,
                    cause=Cause.UNVERIFIABLE,
                    confidence=Confidence.VERIFIED,
                    findings=[Cause.UNVERIFIABLE],
                    detail=detail,
                ),
                fingerprint=fingerprint(token),
                notes={Cause.UNVERIFIABLE: detail},
            )
        return self._malformed(event, token, policy, parsed)

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
        policies: list[_ServicePolicy] = []
        for service, token in itertools.islice(tokens, PARSE_CACHE_SIZE // 2):  # all stay cached until judged
            policy = self._policies.get(service)
            if policy is None:
                continue
            result = self._parse(token)  # a JWE is cached as the MalformedToken it is, and skipped
            if isinstance(result, ParsedToken):
                parsed.append(result)
                policies.append(policy)
        for parsed_token, policy in zip(parsed, policies, strict=True):
            alg = parsed_token.alg
            if alg.lower() != "none" and alg in policy.algorithms:
                self._find_key(parsed_token, policy, _Findings())

    def _parse(self, token: str) -> ParsedToken | MalformedToken:
        """Parse once per distinct token (a bounded cache: parsing is pure, verdicts are not cached)."""
        cached = self._parsed.get(token)
        if cached is not None:
            self._parsed.move_to_end(token)
            return cached
        try:
            result: ParsedToken | MalformedToken = parse(token)
        except MalformedToken as exc:
            # Kept as a fresh exception: the raised one holds its traceback, whose frames hold
            # their callers' frames and locals, i.e. the whole batch, for as long as it is cached.
            result = MalformedToken(exc.reason, exc.header)
        self._parsed[token] = result
        if len(self._parsed) > PARSE_CACHE_SIZE:
            self._parsed.popitem(last=False)
        return result

    # -- the two short paths ---------------------------------------------------------------

    def _from_reported(self, event: AuthFailureEvent) -> Verdict:
        row = match_reported(event.reported_error)
        cause = row.cause if row is not None else Cause.UNVERIFIABLE
        why = "no token was sampled for it" if event.token_sha256 else "it carried no token"
        if row is None:
            detail = (
                f"Unverifiable: {why}, and the validator's message says nothing jwtriage recognises; "
                "sample the token to get a verified cause."
            )
        else:
            detail = (
                f"Reported as {cause.value} by the rejecting validator (a {row.validator} message; {why}); "
                "not verified by jwtriage: sample the token to confirm."
            )
        return Verdict(
            _classification(
                event_id=event.event_id,
                cause=cause,
                confidence=Confidence.REPORTED,
                findings=[cause] if cause is not Cause.VALID else [],
                detail=detail,
            ),
            fingerprint=event.token_sha256.lower() if event.token_sha256 else None,
            notes={cause: detail},
        )

    def _malformed(self, event: AuthFailureEvent, token: str, policy: _ServicePolicy, exc: MalformedToken) -> Verdict:
        attacks = detect_attacks(exc.header, None, self._publishes_asymmetric(policy))
        header = exc.header
        detail = f"Malformed token: {exc.reason}; the sender is not producing a compact JWS."
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
            notes={Cause.MALFORMED: detail},
        )

    # -- the full procedure ----------------------------------------------------------------

    def _judge(self, event: AuthFailureEvent, token: ParsedToken, policy: _ServicePolicy) -> Verdict:
        service = policy.service
        findings = _Findings()
        alg, claims = token.alg, token.claims
        attacks = detect_attacks(token.header, token.signature, self._publishes_asymmetric(policy))

        # 2. Alg policy, then 3. key and signature.
        key: TimelineKey | None = None
        if alg.lower() == "none":
            findings.add(Cause.BAD_ALG, f"alg {alg!r} means an unsigned token, which no service accepts")
        elif alg not in policy.algorithms:
            findings.add(
                Cause.BAD_ALG,
                f"alg {alg} is not among the algorithms {sorted(policy.algorithms)} that "
                f"{service.name}'s issuers allow",
            )
        else:
            key = self._find_key(token, policy, findings)

        # 4. iss, 5. aud and azp.
        iss = claims.get("iss")
        if not isinstance(iss, str) or iss not in policy.issuer_urls:
            findings.add(
                Cause.ISSUER_MISMATCH,
                f"iss {_quote(iss)} is not an issuer {service.name} accepts ({', '.join(sorted(policy.issuer_urls))})",
            )
        elif key is not None and key.issuer != iss:
            findings.add(
                Cause.ISSUER_MISMATCH,
                f"iss {_quote(iss)} but the signing key kid={key.kid} belongs to {key.issuer}",
            )
        self._check_audience(claims, service, findings)

        # 6. Time at the event's ts, 7. required claims.
        skew = self._check_times(claims, event.ts, service, findings)
        if not claims.keys() >= policy.required_claims:  # one C call when nothing is missing
            missing = [c for c in service.required_claims if c not in claims]
            findings.add(Cause.MISSING_CLAIM, f"required claim(s) {', '.join(missing)} missing for {service.name}")

        # 8. Key timing: the verdict only for an otherwise valid token.
        if key is not None:
            self._check_key_timing(event, key, findings)

        # Key timing is checked last, so it is the cause only when nothing else failed.
        cause = findings.causes[0] if findings.causes else Cause.VALID
        return Verdict(
            _classification(
                event_id=event.event_id,
                cause=cause,
                confidence=Confidence.VERIFIED,
                attacks=attacks,
                findings=findings.causes,  # validation copies it
                issuer=key.issuer if key is not None else None,
                kid=_header_text(token.kid),
                alg=alg,
                audience=claims.get("aud"),
                skew_seconds=skew,
                detail=self._detail(cause, findings, event, service, key),
            ),
            fingerprint=token.fingerprint,
            header=token.header,
            claims=token.stored_claims,
            header_json=token.header_json,
            claims_json=token.claims_json,
            key_thumbprint=key.thumbprint if key is not None else None,
            key_first_seen=key.first_seen if key is not None else None,
            notes=findings.notes,  # `findings` ends here: no copy needed
        )

    def _publishes_asymmetric(self, policy: _ServicePolicy) -> bool:
        """Do the service's issuers publish RSA/EC/OKP keys (the precondition of key confusion)?"""
        version, answer = self._asymmetric.get(policy.service.name, (-1, False))
        if version != self.timeline.version:
            answer = any(self.timeline.all_keys(url) for url in policy.issuer_urls)
            self._asymmetric[policy.service.name] = (self.timeline.version, answer)
        return answer

    def _find_key(self, token: ParsedToken, policy: _ServicePolicy, findings: _Findings) -> TimelineKey | None:
        """Step 3: the configured key that verifies the signature, trying the service's issuers first."""
        alg, kid = token.alg, token.kid
        candidates, fitting = self._key_choices(alg, kid, policy)
        if not candidates:
            what = f"kid {_quote(kid)}" if kid is not None else f"no kid, and no {alg} key"
            findings.add(
                Cause.UNKNOWN_KID,
                f"{what} was never published by any configured issuer ({', '.join(sorted(self._configured_urls))})",
            )
            return None
        if not fitting:
            kinds = sorted({f"{k.kty}{'/' + k.crv if k.crv else ''}" for k in candidates})
            findings.add(Cause.BAD_ALG, f"alg {alg} cannot be used with kid {_quote(kid)}, a {', '.join(kinds)} key")
            return None
        for key in fitting:
            if self.cache.verify(token.fingerprint, alg, key, token.signing_input, token.signature):
                if key.issuer not in policy.issuer_urls:
                    findings.add(
                        Cause.ISSUER_MISMATCH,
                        f"signed by {key.issuer} (kid={key.kid}), an issuer {policy.service.name} does not accept",
                    )
                return key
        if kid is None:
            findings.add(Cause.UNKNOWN_KID, f"no kid, and none of the {len(fitting)} configured {alg} keys verifies it")
        else:
            findings.add(
                Cause.BAD_SIGNATURE,
                f"kid {_quote(kid)} is known ({fitting[0].issuer}) but the signature does not verify with it",
            )
        return None

    def _key_choices(
        self, alg: str, kid: Any, policy: _ServicePolicy
    ) -> tuple[list[TimelineKey], list[TimelineKey]]:
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
        if len(fitting) > 1:
            fitting.sort(key=lambda k: k.issuer not in policy.issuer_urls)
        if cache_key is not None and candidates:
            self._choices[cache_key] = (candidates, fitting)
        return candidates, fitting

    def _configured_keys(self) -> list[TimelineKey]:
        return [k for k in self.timeline.all_keys() if k.issuer in self._configured_urls]

    @staticmethod
    def _check_audience(claims: dict[str, Any], service: ServiceConfig, findings: _Findings) -> None:
        aud = claims.get("aud")
        accepted = (
            aud == service.audience if isinstance(aud, str) else (isinstance(aud, list) and service.audience in aud)
        )
        if not accepted:
            findings.add(
                Cause.AUDIENCE_MISMATCH,
                f"aud {_quote(aud) if aud is not None else '(missing)'} does not include {service.audience}",
            )
        if service.authorized_parties is not None:
            party = claims.get("azp", claims.get("client_id"))
            if party not in service.authorized_parties:
                findings.add(
                    Cause.AUDIENCE_MISMATCH,
                    f"azp/client_id {_quote(party)} is not an authorized party of {service.name}",
                )

    def _check_times(
        self, claims: dict[str, Any], ts: datetime, service: ServiceConfig, findings: _Findings
    ) -> float | None:
        """Step 6; returns the first failing claim's overshoot beyond the leeway, in seconds."""
        now = ts.timestamp()
        leeway = service.leeway_seconds
        window = self.settings.skew_window_seconds
        skew: float | None = None
        for claim in ("exp", "nbf", "iat"):
            raw: Any = claims.get(claim)
            if type(raw) is not int and type(raw) is not float:  # `is_number` for decoded JSON (bool is neither)
                continue
            if not -_TIME_LIMIT <= raw <= _TIME_LIMIT:  # 10**400 is a number too
                raw = min(max(raw, -_TIME_LIMIT), _TIME_LIMIT)
            value = float(raw)
            overshoot = now - (value + leeway) if claim == "exp" else value - (now + leeway)
            if overshoot <= 0:
                continue
            skew = overshoot if skew is None else skew
            off_by = human_duration(overshoot + leeway)
            beyond = f"{human_duration(overshoot)} beyond {service.name}'s {leeway:g} s leeway"
            when = {
                "exp": f"the token expired {off_by} before the event",
                "nbf": f"the token is not valid until {off_by} after the event",
                "iat": f"the token was issued {off_by} after the event",
            }[claim]
            if overshoot <= window:
                findings.add(
                    Cause.CLOCK_SKEW,
                    f"{claim}: {when}, {beyond}, within the {window:g} s skew window: a clock is off",
                )
            else:
                findings.add(Cause.EXPIRED if claim == "exp" else Cause.NOT_YET_VALID, f"{claim}: {when} ({beyond})")
        return skew

    def _check_key_timing(self, event: AuthFailureEvent, key: TimelineKey, findings: _Findings) -> None:
        ts = event.ts
        if key.first_seen > ts:
            findings.add(
                Cause.UNPUBLISHED_KEY,
                f"kid {key.kid} of {key.issuer} verifies, but it was first published {stamp(key.first_seen)}, "
                f"{human_duration((key.first_seen - ts).total_seconds())} after the event: the issuer signed "
                "with it before publishing it",
            )
            return
        removed = key.removed_before(ts)
        if removed is not None:
            findings.add(
                Cause.RETIRED_KEY,
                f"kid {key.kid} of {key.issuer} had been removed from the JWKS at {stamp(removed)}, "
                f"{human_duration((ts - removed).total_seconds())} before the event: the token was signed with a "
                "retired key",
            )
            return
        published = key.interval_start(ts)
        fetched = event.service_jwks_fetched_at
        age = (ts - published).total_seconds()
        if fetched is not None:
            if fetched < published:
                findings.add(
                    Cause.STALE_JWKS,
                    f"{event.service} last fetched its JWKS at {stamp(fetched)} "
                    f"({human_duration((ts - fetched).total_seconds())} before the event), but kid {key.kid} "
                    f"was first published at {stamp(published)} ({human_duration(age)} before the event)",
                )
        elif age < self.settings.max_jwks_cache_ttl_seconds and self.timeline.is_young(key):
            findings.add(
                Cause.STALE_JWKS,
                f"kid {key.kid} of {key.issuer} was first published only {human_duration(age)} before the event, "
                f"within the {human_duration(self.settings.max_jwks_cache_ttl_seconds)} a JWKS cache may live "
                f"({event.service} does not report its fetch time)",
            )

    # -- the sentence ----------------------------------------------------------------------

    @staticmethod
    def _detail(
        cause: Cause,
        findings: _Findings,
        event: AuthFailureEvent,
        service: ServiceConfig,
        key: TimelineKey | None,
    ) -> str:
        if cause is Cause.VALID:
            signer = f" (signed by {key.issuer}, kid {key.kid})" if key else ""
            return (
                f"The token passes every check at {stamp(event.ts)}{signer}: the rejection is not the token's fault; "
                f"check {service.name}'s validator configuration and key cache."
            )
        first = findings.notes[cause]
        sentence = f"{first[0].upper()}{first[1:]}."
        others = [c.value for c in findings.causes[1:]]
        if others:
            sentence += f" Also failed: {', '.join(others)}."
        return sentence


def _quote(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return repr(text[:80] + ("…" if len(text) > 80 else ""))
