"""The simulator's independent judge: the ground truth each event's truth row carries.

DESIGN.md's re-validation order, applied with knowledge the pipeline never has: which key
really signed a token. Independent of `pipeline.engine` on purpose (it imports nothing from
it): it is the yardstick the classifier's accuracy is measured with. The key timeline it
uses is derived from the JWKS snapshots exactly as emitted, never from the issuers'
internal publication times, so the two can be cross-checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.models import Attack, Cause
from pipeline.simulator.cast import ISSUER_BY_NAME, SKEW_WINDOW_SECONDS, ServiceSpec
from pipeline.simulator.clock import SECOND
from pipeline.simulator.keys import P256_ORDER, load_keys, strict_b64, strict_object

_TIME_CLAIMS = ("exp", "nbf", "iat")
_KID_INJECTION_MARKERS = ("../", "/dev/", "'", '"', ";", "|", "`", "$", "\x00")


@dataclass(frozen=True, slots=True)
class SeenKey:
    """A published key as the snapshots show it: when it first appeared and when it vanished."""

    issuer: str  # issuer name
    kid: str
    kty: str
    crv: str | None
    first_seen: int
    removed_at: int | None


class Timeline:
    """Key timing derived from the snapshots exactly as emitted (DESIGN.md step 8)."""

    def __init__(self, snapshots: Sequence[tuple[str, int, tuple[str, ...]]]) -> None:
        self.earliest: dict[str, int] = {}
        first: dict[tuple[str, str], int] = {}
        removed: dict[tuple[str, str], int] = {}
        present: dict[str, set[str]] = {}
        for issuer, fetched, kids in sorted(snapshots, key=lambda s: (s[0], s[1])):
            self.earliest.setdefault(issuer, fetched)
            for kid in kids:
                first.setdefault((issuer, kid), fetched)
            for kid in sorted(present.get(issuer, set()) - set(kids)):
                removed.setdefault((issuer, kid), fetched)
            present[issuer] = set(kids)
        keys = load_keys()
        self.by_kid: dict[str, list[SeenKey]] = {}
        self.by_issuer_kid: dict[tuple[str, str], SeenKey] = {}
        for (issuer, kid), seen in first.items():
            key = keys[kid]
            entry = SeenKey(issuer, kid, key.kty, key.crv, seen, removed.get((issuer, kid)))
            self.by_kid.setdefault(kid, []).append(entry)
            self.by_issuer_kid[(issuer, kid)] = entry

    def first_seen(self, issuer: str, kid: str) -> int | None:
        entry = self.by_issuer_kid.get((issuer, kid))
        return entry.first_seen if entry else None

    def removed_at(self, issuer: str, kid: str) -> int | None:
        entry = self.by_issuer_kid.get((issuer, kid))
        return entry.removed_at if entry else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_ALG_KEY_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    **{a: ("RSA", ()) for a in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", ("P-256",)),
    "ES384": ("EC", ("P-384",)),
    "ES512": ("EC", ("P-521",)),
    "EdDSA": ("OKP", ("Ed25519", "Ed448")),
}


def _fits(alg: str, key: SeenKey) -> bool:
    spec = _ALG_KEY_TYPES.get(alg)
    return spec is not None and spec[0] == key.kty and (not spec[1] or key.crv in spec[1])


#: ES* alg → (raw r‖s signature length, curve order) (RFC 7518 §3.4; FIPS 186-4 D.1.2).
_RAW_ECDSA: dict[str, tuple[int, int]] = {
    "ES256": (64, P256_ORDER),
    "ES384": (
        96,
        int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16),
    ),
    "ES512": (
        132,
        int(
            "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
            16,
        ),
    ),
}


def _attacks(header: dict[str, Any], signature: bytes | None) -> list[str]:
    """Every attack label of DESIGN.md that applies (every service here publishes asymmetric keys)."""
    found: set[Attack] = set()
    alg = header.get("alg")
    if isinstance(alg, str):
        if alg.lower() == "none":
            found.add(Attack.ALG_NONE)
        if alg.upper().startswith("HS"):
            found.add(Attack.KEY_CONFUSION)
        raw = _RAW_ECDSA.get(alg)  # only the raw r‖s length is read as (r, s): never a DER signature
        if raw is not None and signature is not None and len(signature) == raw[0]:
            half = raw[0] // 2
            r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            if min(r, s) == 0 or max(r, s) >= raw[1]:
                found.add(Attack.PSYCHIC_SIGNATURE)
    if "jwk" in header:
        found.add(Attack.JWK_INJECTION)
    if "jku" in header or "x5u" in header:
        found.add(Attack.JKU_INJECTION)
    kid = header.get("kid")
    if isinstance(kid, str) and any(marker in kid for marker in _KID_INJECTION_MARKERS):
        found.add(Attack.KID_INJECTION)
    return [a.value for a in Attack if a in found]


#: A parsed token (header, claims, alg, attacks), or a parse failure's (cause, attacks).
_Parsed = tuple[dict[str, Any], dict[str, Any], str, list[str]] | tuple[Cause, list[str]]


class Judge:
    """DESIGN.md's re-validation order, applied with knowledge of which key really signed.

    Signature checks are replaced by the simulator's own knowledge (`signer`: the kid of the
    published key whose valid signature a token carries, else None); everything else is read
    from the token text and the snapshot-derived timeline.
    """

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self._parsed: dict[str, _Parsed] = {}

    def token(
        self, text: str, signer: str | None, service: ServiceSpec, ts: int, fetched: int | None
    ) -> tuple[Cause, list[str]]:
        """The true cause and attack labels of `text` rejected by `service` at `ts`."""
        parsed = self._parsed.get(text)
        if parsed is None:
            parsed = self._parsed[text] = self._parse(text)
        if isinstance(parsed[0], Cause):
            return parsed[0], parsed[1]
        header, claims, alg, attacks = parsed
        key = self._key(header, alg, signer, service)
        if isinstance(key, Cause):
            return key, attacks
        cause = self._claims(claims, service, ts)
        return (cause if cause is not None else self._timing(key, ts, fetched, service.judged_ttl_s)), attacks

    @staticmethod
    def _parse(text: str) -> _Parsed:
        """Step 1 (parse), done once per token: (header, claims, alg, attacks), else (cause, attacks)."""
        parts = text.split(".")
        if len(parts) == 5:  # a JWE only when its header names `enc`
            try:
                return (Cause.UNVERIFIABLE if "enc" in strict_object(parts[0]) else Cause.MALFORMED), []
            except (ValueError, UnicodeDecodeError):
                return Cause.MALFORMED, []
        if len(parts) != 3:
            return Cause.MALFORMED, []
        try:
            header = strict_object(parts[0])
        except (ValueError, UnicodeDecodeError):
            return Cause.MALFORMED, []
        try:
            claims = strict_object(parts[1])
            signature = strict_b64(parts[2])
        except (ValueError, UnicodeDecodeError):
            return Cause.MALFORMED, _attacks(header, None)
        alg = header.get("alg")
        if (
            not isinstance(alg, str)
            or "crit" in header  # RFC 7515 §4.1.11: no extension is understood here
            or any(c in claims and not _is_number(claims[c]) for c in _TIME_CLAIMS)
        ):
            return Cause.MALFORMED, _attacks(header, None)
        return header, claims, alg, _attacks(header, signature)

    def _key(self, header: dict[str, Any], alg: str, signer: str | None, service: ServiceSpec) -> SeenKey | Cause:
        """Steps 2 and 3: the alg policy, then the key that verifies it, else the cause."""
        # 2. Alg policy: the service's issuers' algorithms; then the kid's key types (only
        # when the kid names keys at all: an unknown kid is step 3's unknown_kid).
        allowed = {a for name in service.issuers for a in ISSUER_BY_NAME[name].algorithms}
        if alg not in allowed:
            return Cause.BAD_ALG
        kid = header.get("kid")
        if kid is None:
            # 3, without a kid: tried against every key that fits the alg (the service's issuers
            # first, those allowing the alg first); none verifies → bad_signature.
            def rank(k: SeenKey) -> tuple[bool, bool]:
                return k.issuer not in service.issuers, alg not in ISSUER_BY_NAME[k.issuer].algorithms

            signers = [k for keys in self.timeline.by_kid.values() for k in keys if _fits(alg, k) and k.kid == signer]
            key = min(signers, key=rank, default=None)
        else:
            candidates = self.timeline.by_kid.get(kid, []) if isinstance(kid, str) else []
            if candidates and not any(_fits(alg, k) for k in candidates):
                return Cause.BAD_ALG
            # 3. Key and signature against every configured issuer's keys, removed ones included.
            if not candidates:
                return Cause.UNKNOWN_KID
            key = next((k for k in candidates if _fits(alg, k) and k.kid == signer), None)
        if key is None:
            return Cause.BAD_SIGNATURE
        if key.issuer not in service.issuers:
            return Cause.ISSUER_MISMATCH
        if alg not in ISSUER_BY_NAME[key.issuer].algorithms:  # the signing key's issuer's own policy
            return Cause.BAD_ALG
        return key

    @staticmethod
    def _claims(claims: dict[str, Any], service: ServiceSpec, ts: int) -> Cause | None:
        """Steps 4 to 7 (iss, aud then azp, time, required claims): the first that fails, else None."""
        if claims.get("iss") not in {ISSUER_BY_NAME[n].url for n in service.issuers}:
            return Cause.ISSUER_MISMATCH
        aud = claims.get("aud")
        if not (aud == service.audience or (isinstance(aud, list) and service.audience in aud)):
            return Cause.AUDIENCE_MISMATCH
        if service.parties is not None and claims.get("azp", claims.get("client_id")) not in service.parties:
            return Cause.AUDIENCE_MISMATCH
        # 6. Time at the event's ts, with the service's leeway.
        leeway = service.leeway_s * SECOND
        for claim in _TIME_CLAIMS:
            if claim not in claims:
                continue
            value = claims[claim] * SECOND
            # exp fails at ts >= exp + leeway (RFC 7519: the time must be before exp); nbf/iat past ts + leeway.
            overshoot = ts - (value + leeway) if claim == "exp" else value - (ts + leeway)
            if overshoot > 0 or (overshoot == 0 and claim == "exp"):
                if overshoot <= SKEW_WINDOW_SECONDS * SECOND:
                    return Cause.CLOCK_SKEW
                return Cause.EXPIRED if claim == "exp" else Cause.NOT_YET_VALID
        if any(c not in claims for c in service.required):
            return Cause.MISSING_CLAIM
        return None

    def _timing(self, key: SeenKey, ts: int, fetched: int | None, ttl_s: int) -> Cause:
        """Step 8: key timing, from the snapshots as emitted; VALID when nothing is wrong.

        Without a fetch time, a key younger than the service's cache TTL (`ttl_s`: its declared
        one, else the global maximum) and not there from the issuer's first snapshot is stale.
        """
        if key.first_seen > ts:
            return Cause.UNPUBLISHED_KEY
        if key.removed_at is not None and key.removed_at <= ts:
            return Cause.RETIRED_KEY
        if fetched is not None:
            if fetched < key.first_seen:
                return Cause.STALE_JWKS
        elif ts - key.first_seen < ttl_s * SECOND and key.first_seen > self.timeline.earliest[key.issuer]:
            return Cause.STALE_JWKS
        return Cause.VALID
