"""The published JOSE examples, exactly as printed in the RFCs, through the classifier and the signature code.

The vectors live in tests/fixtures/rfc/vectors.json (tokens and the public members of the example keys):
RFC 7515 A.1-A.5, RFC 7519 3.1 and 6.1, RFC 8037 A.4, RFC 7520 4.1-4.3. None is regenerated: the ECDSA and
RSA-PSS signatures are randomized, so the published bytes are what must verify.

- RFC 7515 A.2/A.3 carry the claims {"iss":"joe","exp":1300819380,"http://example.com/is_root":true}: with the
  example key published by an issuer `iss = "joe"`, the key verifies, and the findings are the claims' own
  (no `aud`, then the time at the event, then `sub` where a service requires it).
- HS256 (RFC 7515 A.1 = RFC 7519 3.1) and alg none (RFC 7515 A.5 = RFC 7519 6.1) are `bad_alg`.
- RFC 7515 A.4, RFC 8037 A.4 and RFC 7520 sign text, not a JSON object of claims, so the token is `malformed`
  by the contract; `pipeline.engine.validate.verify` is checked on them directly instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from pipeline.config import Config
from pipeline.engine.classify import Classifier, Verdict
from pipeline.engine.keys import KeyTimeline, TimelineKey, load_public_key
from pipeline.engine.validate import CURVE_ORDERS, RAW_SIGNATURE_BYTES, is_psychic, verify
from pipeline.models import Attack, AuthFailureEvent, Cause, Confidence, JwksSnapshot

FIXTURE = Path(__file__).parent / "fixtures" / "rfc" / "vectors.json"
VECTORS: dict[str, dict[str, Any]] = json.loads(FIXTURE.read_text(encoding="utf-8"))["vectors"]

JOE = "joe"  # the examples' own `iss`
HOBBITON = "https://hobbiton.example"  # RFC 7520 tokens carry no claims; their keys need some issuer
EXP = 1300819380  # the examples' `exp`: 2011-03-22T18:43:00Z
EXPIRES = datetime.fromtimestamp(EXP, UTC)
PUBLISHED = datetime(2011, 1, 1, tzinfo=UTC)  # each issuer's only snapshot: its keys are never young
BEFORE_EXP = EXPIRES - timedelta(hours=1)
DAY_AFTER_EXP = EXPIRES + timedelta(days=1)

#: Which issuer publishes each vector's key (the HS256 and none examples have no key jwtriage could hold).
PUBLISHER = {
    "rfc7515-A.2": JOE,
    "rfc7515-A.3": JOE,
    "rfc7515-A.4": JOE,
    "rfc8037-A.4": JOE,
    "rfc7520-4.1": HOBBITON,
    "rfc7520-4.3": HOBBITON,  # 4.2 (PS384) uses the same RSA key as 4.1
}

CONFIG_TOML = f"""
[[issuers]]
name = "joe"
issuer = "{JOE}"
jwks_uri = "https://joe.example/jwks.json"
algorithms = ["RS256", "ES256", "ES512", "EdDSA"]

[[issuers]]
name = "hobbiton"
issuer = "{HOBBITON}"
jwks_uri = "{HOBBITON}/jwks.json"
algorithms = ["RS256", "PS384", "ES512"]

[[services]]
name = "joe-api"
issuers = ["joe"]
audience = "api://joe"

[[services]]
name = "joe-api-sub"
issuers = ["joe"]
audience = "api://joe"
required_claims = ["exp", "sub"]

[[services]]
name = "shire-api"
issuers = ["hobbiton"]
audience = "api://shire"
"""


def b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def header_of(token: str) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(b64decode(token.split(".")[0]))
    return header


def flip_bit(data: bytes, index: int | None = None) -> bytes:
    out = bytearray(data)
    out[len(out) // 2 if index is None else index] ^= 0x01
    return bytes(out)


def thumbprint(jwk: dict[str, Any]) -> str:
    return load_public_key(jwk)[3]


@dataclass
class RfcWorld:
    timeline: KeyTimeline
    classifier: Classifier

    def judge(self, token: str, *, service: str = "joe-api", at: datetime = BEFORE_EXP) -> Verdict:
        event = AuthFailureEvent(event_id="rfc-1", ts=at, service=service, token=token)
        return self.classifier.classify(event, token)

    def key(self, vector: str) -> TimelineKey:
        """The timeline's key for the vector's published JWK (the key object the classifier uses)."""
        wanted = thumbprint(VECTORS[vector]["key"])
        return next(k for k in self.timeline.all_keys() if k.thumbprint == wanted)


@pytest.fixture(scope="module")
def rfc() -> RfcWorld:
    keys: dict[str, list[dict[str, Any]]] = {JOE: [], HOBBITON: []}
    for vector, issuer in PUBLISHER.items():
        keys[issuer].append(VECTORS[vector]["key"])
    timeline = KeyTimeline(JwksSnapshot(issuer=i, fetched_at=PUBLISHED, jwks={"keys": k}) for i, k in keys.items())
    assert timeline.problems == []  # every RFC key loads as published
    cfg = Config.model_validate(tomllib.loads(CONFIG_TOML))
    return RfcWorld(timeline, Classifier(cfg, timeline))


# -- RFC 7515 A.2 (RS256) and A.3 (ES256): JSON claims from `joe` -----------------------------------------------

CLAIMS_VECTORS = ["rfc7515-A.2", "rfc7515-A.3"]

AUD, EXPIRED, SKEW, MISSING = Cause.AUDIENCE_MISMATCH, Cause.EXPIRED, Cause.CLOCK_SKEW, Cause.MISSING_CLAIM


@pytest.mark.parametrize(
    ("service", "at", "findings", "skew"),
    [
        pytest.param("joe-api", BEFORE_EXP, [AUD], None, id="before-exp"),
        pytest.param("joe-api", EXPIRES + timedelta(seconds=60), [AUD, SKEW], 60, id="exp-60s-ago"),
        pytest.param("joe-api", DAY_AFTER_EXP, [AUD, EXPIRED], 86400, id="exp-1d-ago"),
        pytest.param("joe-api-sub", BEFORE_EXP, [AUD, MISSING], None, id="sub-required-before-exp"),
        pytest.param("joe-api-sub", DAY_AFTER_EXP, [AUD, EXPIRED, MISSING], 86400, id="sub-required-exp-1d-ago"),
    ],
)
@pytest.mark.parametrize("vector", CLAIMS_VECTORS)
def test_rfc7515_claims_token_verifies_with_joes_key(
    rfc: RfcWorld, vector: str, service: str, at: datetime, findings: list[Cause], skew: int | None
) -> None:
    token = VECTORS[vector]["token"]
    verdict = rfc.judge(token, service=service, at=at)
    c = verdict.classification
    # The published key verified: the issuer is the one whose key matched, and it is that very key.
    assert c.issuer == JOE
    assert verdict.key_thumbprint == thumbprint(VECTORS[vector]["key"])
    assert (c.kid, c.alg) == (header_of(token).get("kid"), VECTORS[vector]["alg"])
    assert c.kid is None  # the examples' headers are {"alg":...} only
    # No `aud` in the example: audience_mismatch comes first, then the time check, then required claims.
    assert c.cause is Cause.AUDIENCE_MISMATCH
    assert c.findings == findings
    assert c.skew_seconds == skew
    assert c.audience is None
    assert c.attacks == []
    assert c.confidence is Confidence.VERIFIED
    assert "api://joe" in (c.detail or "")
    assert verdict.claims is not None and verdict.claims["iss"] == JOE and verdict.claims["exp"] == EXP


@pytest.mark.parametrize("vector", CLAIMS_VECTORS)
def test_rfc7515_claims_token_with_one_signature_bit_flipped_is_bad_signature(rfc: RfcWorld, vector: str) -> None:
    header, payload, signature = VECTORS[vector]["token"].split(".")
    tampered = base64.urlsafe_b64encode(flip_bit(b64decode(signature))).rstrip(b"=").decode()
    c = rfc.judge(f"{header}.{payload}.{tampered}").classification
    # No kid: every configured key of the alg's type is tried, and none verifies (DESIGN.md step 3).
    assert c.cause is Cause.BAD_SIGNATURE
    assert c.issuer is None


# -- HS256 and alg none: bad_alg --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vector", "attacks"),
    [
        pytest.param("rfc7515-A.1", [Attack.KEY_CONFUSION], id="rfc7515-A.1"),
        pytest.param("rfc7519-3.1", [Attack.KEY_CONFUSION], id="rfc7519-3.1"),
        pytest.param("rfc7515-A.5", [Attack.ALG_NONE], id="rfc7515-A.5"),
        pytest.param("rfc7519-6.1", [Attack.ALG_NONE], id="rfc7519-6.1"),
    ],
)
def test_symmetric_and_unsecured_examples_are_bad_alg(rfc: RfcWorld, vector: str, attacks: list[Attack]) -> None:
    token = VECTORS[vector]["token"]
    signing_input, _, signature = token.rpartition(".")
    if VECTORS[vector]["alg"] == "HS256":
        # The vector is intact (its MAC checks with the RFC's key), yet jwtriage accepts only asymmetric algs.
        mac = hmac.new(b64decode(VECTORS[vector]["key"]["k"]), signing_input.encode(), hashlib.sha256).digest()
        assert hmac.compare_digest(mac, b64decode(signature))
    else:
        assert signature == ""
    c = rfc.judge(token).classification
    assert c.cause is Cause.BAD_ALG
    assert c.findings == [Cause.BAD_ALG, Cause.AUDIENCE_MISMATCH]
    assert c.attacks == attacks  # HS*: joe publishes RSA/EC/OKP keys, so an HMAC token is key confusion
    assert c.alg == VECTORS[vector]["alg"] and c.kid is None
    assert c.issuer is None
    assert c.confidence is Confidence.VERIFIED


# -- Text payloads: malformed by the contract, and the signature code agrees with the RFC ------------------------

TEXT_VECTORS = {
    "rfc7515-A.4": "joe-api",
    "rfc8037-A.4": "joe-api",
    "rfc7520-4.1": "shire-api",
    "rfc7520-4.2": "shire-api",
    "rfc7520-4.3": "shire-api",
}


@pytest.mark.parametrize(("vector", "service"), TEXT_VECTORS.items(), ids=list(TEXT_VECTORS))
def test_text_payload_examples_are_malformed(rfc: RfcWorld, vector: str, service: str) -> None:
    token = VECTORS[vector]["token"]
    c = rfc.judge(token, service=service).classification
    assert c.cause is Cause.MALFORMED
    assert c.findings == [Cause.MALFORMED]
    assert "payload is not JSON" in (c.detail or "")
    assert c.alg == VECTORS[vector]["alg"]
    assert c.kid == header_of(token).get("kid")
    assert c.issuer is None and c.attacks == []
    assert c.confidence is Confidence.VERIFIED


def test_rfc7520_kid_is_bilbos() -> None:
    for vector in ("rfc7520-4.1", "rfc7520-4.2", "rfc7520-4.3"):
        assert header_of(VECTORS[vector]["token"])["kid"] == "bilbo.baggins@hobbiton.example"
        assert VECTORS[vector]["key"]["kid"] == "bilbo.baggins@hobbiton.example"


SIGNED_VECTORS = [
    "rfc7515-A.2",
    "rfc7515-A.3",
    "rfc7515-A.4",
    "rfc8037-A.4",
    "rfc7520-4.1",
    "rfc7520-4.2",
    "rfc7520-4.3",
]


@pytest.mark.parametrize("vector", SIGNED_VECTORS)
def test_published_signature_verifies_with_the_published_key(rfc: RfcWorld, vector: str) -> None:
    token, alg = VECTORS[vector]["token"], VECTORS[vector]["alg"]
    signing_input, _, signature_b64 = token.rpartition(".")
    key, message, signature = rfc.key(vector), signing_input.encode(), b64decode(signature_b64)
    assert verify(alg, key, message, signature) is True
    assert verify(alg, key, message, flip_bit(signature)) is False
    assert verify(alg, key, message, flip_bit(signature, -1)) is False
    assert verify(alg, key, flip_bit(message, -1), signature) is False


# -- RFC 7797: a crit header is malformed (RFC 7515 §4.1.11) ---------------------------------------------------


def test_rfc7797_examples_macs_are_intact() -> None:
    """4.1 MACs its base64url payload; 4.2 (b64 false) MACs the unencoded, detached payload `$.02`."""
    key = b64decode(VECTORS["rfc7797-4.1"]["key"]["k"])
    for vector, payload in (("rfc7797-4.1", "JC4wMg"), ("rfc7797-4.2", "$.02")):
        header, _, signature = VECTORS[vector]["token"].split(".")
        mac = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        assert hmac.compare_digest(mac, b64decode(signature)), vector


def test_rfc7797_unencoded_payload_with_crit_is_malformed_by_its_crit(rfc: RfcWorld) -> None:
    """jwtriage understands no extension, `b64` included: the crit header alone makes it malformed."""
    token = VECTORS["rfc7797-4.2"]["token"]
    assert header_of(token)["crit"] == ["b64"]
    c = rfc.judge(token).classification
    assert (c.cause, c.findings) == (Cause.MALFORMED, [Cause.MALFORMED])
    assert "crit" in (c.detail or "") and "RFC 7515" in (c.detail or "")
    assert c.attacks == [Attack.KEY_CONFUSION] and c.alg == "HS256"
    plain = rfc.judge(VECTORS["rfc7797-4.1"]["token"]).classification  # the same example without crit
    assert plain.cause is Cause.MALFORMED and "payload is not JSON" in (plain.detail or "")


# -- psychic_signature: only the raw r‖s form is read as (r, s) -------------------------------------------------

ES_VECTORS = {"rfc7515-A.3": "ES256", "rfc7515-A.4": "ES512", "rfc7520-4.3": "ES512"}


@pytest.mark.parametrize("vector", ES_VECTORS)
def test_published_es_signatures_are_not_psychic_raw_or_der(vector: str) -> None:
    """The RFCs' own ES256/ES512 signatures, raw (as printed) and DER-encoded (as some libraries emit):
    neither is psychic; a DER signature of any length, even or odd, is only ever a bad signature."""
    alg = ES_VECTORS[vector]
    raw = b64decode(VECTORS[vector]["token"].rsplit(".", 1)[1])
    half = len(raw) // 2
    assert len(raw) == RAW_SIGNATURE_BYTES[alg]
    r, s = int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    assert not is_psychic(alg, raw)
    der = encode_dss_signature(r, s)
    assert not is_psychic(alg, der)
    # The same values with high bits set, so their DER grows by a byte each: both parities are covered.
    for r2, s2 in ((r | 1 << (8 * half - 1), s), (r | 1 << (8 * half - 1), s | 1 << (8 * half - 1))):
        assert not is_psychic(alg, encode_dss_signature(r2, s2))
    order = CURVE_ORDERS[alg]
    assert is_psychic(alg, raw[:half] + order.to_bytes(half, "big"))
    assert is_psychic(alg, bytes(half) + raw[half:])


PSYCHIC_CASES = [
    # Wycheproof-style P1363 (raw r‖s) cases for ES256: the edge values of r and s.
    ("r=0 s=0", bytes(64), True),
    ("r=0 s=1", bytes(32) + (1).to_bytes(32, "big"), True),
    ("r=1 s=0", (1).to_bytes(32, "big") + bytes(32), True),
    ("r=n s=1", CURVE_ORDERS["ES256"].to_bytes(32, "big") + (1).to_bytes(32, "big"), True),
    ("r=n-1 s=n-1", (CURVE_ORDERS["ES256"] - 1).to_bytes(32, "big") * 2, False),
    ("r=1 s=2^256-1", (1).to_bytes(32, "big") + (2**256 - 1).to_bytes(32, "big"), True),
    # Not the raw length: never read as r‖s, even when all zero.
    ("63 zero bytes", bytes(63), False),
    ("65 zero bytes", bytes(65), False),
    ("96 zero bytes", bytes(96), False),
    ("empty", b"", False),
    # DER: SEQUENCE { INTEGER r, INTEGER s }, including DER's own encoding of zeros and of n.
    ("DER r=0 s=0", encode_dss_signature(0, 0), False),
    ("DER r=n s=n", encode_dss_signature(CURVE_ORDERS["ES256"], CURVE_ORDERS["ES256"]), False),
    ("DER 70 bytes", encode_dss_signature(2**255 - 19, 2**254 + 1), False),
    ("DER 71 bytes", encode_dss_signature(2**255 + 7, 2**254 + 1), False),
    ("DER 72 bytes", encode_dss_signature(2**255 + 7, 2**255 + 9), False),
]


@pytest.mark.parametrize(("case", "signature", "psychic"), PSYCHIC_CASES, ids=[case[0] for case in PSYCHIC_CASES])
def test_psychic_is_raw_length_only(case: str, signature: bytes, psychic: bool) -> None:
    assert is_psychic("ES256", signature) is psychic, case


def test_der_lengths_cover_both_parities() -> None:
    lengths = {len(encode_dss_signature(2**255 + 7, 2**254 + 1)), len(encode_dss_signature(2**255 + 7, 2**255 + 9))}
    assert lengths == {71, 72}


@pytest.mark.parametrize("vector", ["rfc7515-A.3"])
def test_a_der_encoded_es256_token_is_a_bad_signature_without_attack(rfc: RfcWorld, vector: str) -> None:
    header, payload, signature = VECTORS[vector]["token"].split(".")
    raw = b64decode(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    token = f"{header}.{payload}.{base64.urlsafe_b64encode(der).rstrip(b'=').decode()}"
    c = rfc.judge(token).classification
    assert c.cause is Cause.BAD_SIGNATURE and c.attacks == []
    assert rfc.judge(VECTORS[vector]["token"]).classification.cause is not Cause.BAD_SIGNATURE  # control
