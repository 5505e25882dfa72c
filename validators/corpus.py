"""The corpus: one token per failure the contract names, plus valid controls, built with PyJWT + cryptography.

Tokens are assembled segment by segment rather than through `jwt.encode`, because most of them
are things PyJWT refuses to make (alg `none` in odd case, HS256 keyed with a public PEM, a zeroed
ES256 signature, a `crit` header, five segments). Every case names the cause we meant to
produce; the cause the harness scores against is jwtriage's own verdict on the token, not this
intent, so a case whose intent and verdict differ shows up rather than hiding.

Cases run in three JWKS phases, in order (see `Phase`): the harness changes what its JWKS
endpoint serves between them, so each library's own fetching and caching is exercised by the
rotation (the new key must be fetched on a kid miss; the retired key must drop out of its cache).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ALGORITHMS = ("RS256", "ES256")


class Phase(StrEnum):
    """What the JWKS endpoint serves while a case runs."""

    INITIAL = "initial"  # k1 (RSA) and e1 (EC P-256)
    PUBLISHED = "published"  # k2 added next to them: the rotation's new key
    RETIRED = "retired"  # k1 removed: the rotation's old key is gone


@dataclass(frozen=True, slots=True)
class Case:
    """One token and why it was made."""

    name: str
    phase: Phase
    token: str
    intent: str  # the cause this token was built to produce (jwtriage's verdict is what counts)
    note: str = ""


@dataclass(frozen=True, slots=True)
class Keys:
    """The signing keys: k1 and k2 rotate, e1 stays, `attacker` is never published."""

    k1: rsa.RSAPrivateKey
    k2: rsa.RSAPrivateKey
    e1: ec.EllipticCurvePrivateKey
    attacker: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> Keys:
        def rsa_key() -> rsa.RSAPrivateKey:
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)

        return cls(k1=rsa_key(), k2=rsa_key(), e1=ec.generate_private_key(ec.SECP256R1()), attacker=rsa_key())

    def jwks(self, phase: Phase) -> dict[str, Any]:
        """The JWK Set document the issuer publishes in `phase`."""
        keys = {"k1": _rsa_jwk(self.k1, "k1"), "e1": _ec_jwk(self.e1, "e1"), "k2": _rsa_jwk(self.k2, "k2")}
        published = {Phase.INITIAL: ("k1", "e1"), Phase.PUBLISHED: ("k1", "e1", "k2"), Phase.RETIRED: ("e1", "k2")}
        return {"keys": [keys[kid] for kid in published[phase]]}


def _rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk = dict(RSAAlgorithm.to_jwk(key.public_key(), as_dict=True))
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def _ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    jwk = dict(ECAlgorithm.to_jwk(key.public_key(), as_dict=True))
    return {**jwk, "kid": kid, "use": "sig", "alg": "ES256"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def _signature(alg: str, key: Any, signing_input: bytes) -> bytes:
    """Sign as `alg` with `key`; HS* takes raw bytes (the key-confusion attack keys it with a PEM)."""
    if alg.startswith("HS"):
        return hmac.new(key, signing_input, getattr(hashlib, "sha" + alg[2:])).digest()
    if alg.startswith("RS"):
        return RSAAlgorithm(getattr(RSAAlgorithm, "SHA" + alg[2:])).sign(signing_input, key)
    if alg.startswith("ES"):
        return ECAlgorithm(getattr(ECAlgorithm, "SHA" + alg[2:])).sign(signing_input, key)
    return b""  # alg none, in any case


def sign(header: dict[str, Any], claims: dict[str, Any], key: Any, alg: str | None = None) -> str:
    """A compact JWS over `header` and `claims`; `alg` picks the signing primitive (default: the header's)."""
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    algorithm = alg if alg is not None else str(header.get("alg"))
    return f"{signing_input}.{b64url(_signature(algorithm, key, signing_input.encode()))}"


class CorpusBuilder:
    """Builds every case for one issuer, audience and start time (Unix seconds)."""

    def __init__(self, keys: Keys, issuer: str, audience: str, now: int) -> None:
        self.keys, self.issuer, self.audience, self.now = keys, issuer, audience, now

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Claims that pass every check; an override of None drops the claim."""
        base = {"iss": self.issuer, "aud": self.audience, "sub": "user-1", "iat": self.now - 60, "exp": self.now + 3600}
        merged = {**base, **overrides}
        return {name: value for name, value in merged.items() if value is not None}

    def rs256(self, kid: str | None = "k1", key: Any = None, **claims: Any) -> str:
        header = {"alg": "RS256", "typ": "JWT"} | ({"kid": kid} if kid is not None else {})
        return sign(header, self.claims(**claims), key or self.keys.k1)

    def build(self) -> list[Case]:
        return [
            *self.controls(),
            *self.alg_cases(),
            *self.key_cases(),
            *self.claim_cases(),
            *self.malformed_cases(),
            *self.injection_cases(),
            *self.rotation_cases(),
        ]

    def controls(self) -> list[Case]:
        es256 = sign({"alg": "ES256", "typ": "JWT", "kid": "e1"}, self.claims(), self.keys.e1)
        return [
            Case("valid_rs256", Phase.INITIAL, self.rs256(), "valid", "control: RS256 with k1"),
            Case("valid_es256", Phase.INITIAL, es256, "valid", "control: ES256 with e1"),
        ]

    def alg_cases(self) -> list[Case]:
        k1_pem = self.keys.k1.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        claims = self.claims()
        return [
            Case("alg_none", Phase.INITIAL, sign({"alg": "none", "typ": "JWT", "kid": "k1"}, claims, None),
                 "bad_alg", "alg none, empty signature"),
            Case("alg_none_mixed_case", Phase.INITIAL, sign({"alg": "nOnE", "typ": "JWT", "kid": "k1"}, claims, None),
                 "bad_alg", "alg nOnE, empty signature"),
            Case("key_confusion_hs256", Phase.INITIAL,
                 sign({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims, k1_pem),
                 "bad_alg", "HS256 keyed with k1's public PEM"),
            Case("alg_not_allowed_rs384", Phase.INITIAL,
                 sign({"alg": "RS384", "typ": "JWT", "kid": "k1"}, claims, self.keys.k1),
                 "bad_alg", "RS384 with k1; only RS256 and ES256 are allowed"),
            Case("alg_key_type_mismatch", Phase.INITIAL,
                 sign({"alg": "ES256", "typ": "JWT", "kid": "k1"}, claims, self.keys.e1),
                 "bad_alg", "ES256 header naming the RSA key k1"),
        ]

    def key_cases(self) -> list[Case]:
        good = self.rs256()
        head, body, sig = good.split(".")
        flipped = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
        flipped[10] ^= 0x01
        other_body = _segment(self.claims(sub="admin"))
        return [
            Case("unknown_kid", Phase.INITIAL, self.rs256(kid="k-unknown", key=self.keys.attacker),
                 "unknown_kid", "kid never published, signed by an unpublished key"),
            Case("no_kid_foreign_key", Phase.INITIAL, self.rs256(kid=None, key=self.keys.attacker),
                 "bad_signature", "no kid; signed by an unpublished key"),
            Case("bad_signature", Phase.INITIAL, f"{head}.{body}.{b64url(bytes(flipped))}",
                 "bad_signature", "k1 token with one signature bit flipped"),
            Case("tampered_payload", Phase.INITIAL, f"{head}.{other_body}.{sig}",
                 "bad_signature", "k1 signature over another payload (sub changed)"),
        ]

    def claim_cases(self) -> list[Case]:
        now = self.now
        return [
            Case("issuer_mismatch", Phase.INITIAL, self.rs256(iss="https://evil.example"), "issuer_mismatch"),
            Case("audience_mismatch", Phase.INITIAL, self.rs256(aud="api://other"), "audience_mismatch"),
            Case("audience_missing", Phase.INITIAL, self.rs256(aud=None), "audience_mismatch", "no aud claim"),
            Case("expired", Phase.INITIAL, self.rs256(iat=now - 7200, exp=now - 3600), "expired", "exp 1 h ago"),
            Case("expired_within_skew", Phase.INITIAL, self.rs256(iat=now - 600, exp=now - 60), "clock_skew",
                 "exp 60 s ago: inside the 300 s skew window"),
            Case("not_yet_valid", Phase.INITIAL, self.rs256(nbf=now + 7200), "not_yet_valid", "nbf 2 h ahead"),
            Case("nbf_within_skew", Phase.INITIAL, self.rs256(nbf=now + 120), "clock_skew", "nbf 120 s ahead"),
            Case("iat_in_future", Phase.INITIAL, self.rs256(iat=now + 7200, exp=now + 10800), "not_yet_valid",
                 "iat 2 h ahead"),
            Case("missing_exp", Phase.INITIAL, self.rs256(exp=None), "missing_claim", "no exp; exp is required"),
        ]

    def malformed_cases(self) -> list[Case]:
        head, body, sig = self.rs256().split(".")
        bad_exp = sign({"alg": "RS256", "typ": "JWT", "kid": "k1"}, self.claims(exp="tomorrow"), self.keys.k1)
        crit = sign({"alg": "RS256", "typ": "JWT", "kid": "k1", "crit": ["x-acme"], "x-acme": 1},
                    self.claims(), self.keys.k1)
        numeric_alg = sign({"alg": 256, "typ": "JWT", "kid": "k1"}, self.claims(), self.keys.k1, alg="RS256")
        jwe_header = _segment({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "k1"})
        return [
            Case("malformed_two_segments", Phase.INITIAL, f"{head}.{body}", "malformed"),
            Case("malformed_bad_base64", Phase.INITIAL, f"!!{head[2:]}.{body}.{sig}", "malformed",
                 "header segment is not base64url"),
            Case("malformed_header_not_json", Phase.INITIAL, f"{b64url(b'not json')}.{body}.{sig}", "malformed"),
            Case("malformed_payload_not_object", Phase.INITIAL,
                 sign({"alg": "RS256", "typ": "JWT", "kid": "k1"}, [1, 2, 3], self.keys.k1),  # type: ignore[arg-type]
                 "malformed", "payload is a JSON array"),
            Case("malformed_exp_not_number", Phase.INITIAL, bad_exp, "malformed", 'exp is "tomorrow"'),
            Case("malformed_alg_not_string", Phase.INITIAL, numeric_alg, "malformed", "alg is the number 256"),
            Case("malformed_five_segments", Phase.INITIAL, f"{head}.{body}.{sig}.{body}.{sig}", "malformed",
                 "five segments, no enc"),
            Case("crit_unknown_extension", Phase.INITIAL, crit, "malformed", "crit names an unknown extension"),
            Case("jwe_compact", Phase.INITIAL, f"{jwe_header}.{b64url(b'k' * 32)}.{b64url(b'i' * 12)}."
                 f"{b64url(b'c' * 40)}.{b64url(b't' * 16)}", "unverifiable", "a JWE (five segments, enc)"),
        ]

    def injection_cases(self) -> list[Case]:
        attacker_jwk = {**RSAAlgorithm.to_jwk(self.keys.attacker.public_key(), as_dict=True), "kid": "k1"}
        jwk_header = {"alg": "RS256", "typ": "JWT", "kid": "k1", "jwk": attacker_jwk}
        jku_header = {"alg": "RS256", "typ": "JWT", "kid": "k1", "jku": "http://127.0.0.1:9/attacker/jwks.json"}
        psychic_head = _segment({"alg": "ES256", "typ": "JWT", "kid": "e1"})
        return [
            Case("jwk_header_injection", Phase.INITIAL, sign(jwk_header, self.claims(), self.keys.attacker),
                 "bad_signature", "kid k1, attacker key embedded as jwk and used to sign"),
            Case("jku_header_injection", Phase.INITIAL, sign(jku_header, self.claims(), self.keys.attacker),
                 "bad_signature", "kid k1, jku points at an attacker JWKS"),
            Case("kid_injection_path", Phase.INITIAL, self.rs256(kid="../../../../dev/null", key=self.keys.attacker),
                 "unknown_kid", "path-traversal kid"),
            Case("kid_injection_sql", Phase.INITIAL, self.rs256(kid="k1' OR '1'='1", key=self.keys.attacker),
                 "unknown_kid", "SQL-injection kid"),
            Case("psychic_signature", Phase.INITIAL,
                 f"{psychic_head}.{_segment(self.claims())}.{b64url(bytes(64))}",
                 "bad_signature", "ES256 with r = s = 0 (CVE-2022-21449)"),
        ]

    def rotation_cases(self) -> list[Case]:
        k2 = self.rs256(kid="k2", key=self.keys.k2)
        return [
            Case("unpublished_key", Phase.INITIAL, k2, "unpublished_key", "signed with k2 before k2 is published"),
            Case("valid_rotated_key", Phase.PUBLISHED, k2, "valid", "control: k2 after it is published"),
            Case("retired_key", Phase.RETIRED, self.rs256(), "retired_key", "k1 after k1 left the JWKS"),
            Case("valid_after_retirement", Phase.RETIRED, k2, "valid", "control: k2 once k1 is gone"),
        ]
