"""Every cause and attack of DESIGN.md, on tokens minted here with real keys over a rotation."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from pipeline.engine.validate import CURVE_ORDERS
from pipeline.models import Attack, Cause, Confidence
from tests.world import AUDIENCE, CORP, DROP, STAGING, T0, World, forge, good_claims, mint, private_key


@pytest.fixture(scope="module")
def world() -> World:
    return World()


NOW = int(T0.timestamp())


# -- valid, on every key type ---------------------------------------------------------------------


@pytest.mark.parametrize(("kid", "alg"), [("rsa-2", "RS256"), ("rsa-2", "PS256"), ("ec-1", "ES256"), ("ed-1", "EdDSA")])
def test_valid_token_on_every_key_type(world: World, kid: str, alg: str) -> None:
    verdict = world.judge(mint(kid, alg=alg))
    c = verdict.classification
    assert c.cause is Cause.VALID
    assert c.findings == []
    assert c.confidence is Confidence.VERIFIED
    assert c.issuer == CORP and c.kid == kid and c.alg == alg
    assert c.audience == AUDIENCE and c.skew_seconds is None and c.attacks == []
    assert "passes every check" in (c.detail or "")


def test_kidless_token_is_matched_by_trying_the_issuers_keys(world: World) -> None:
    c = world.judge(mint(None, signer="ec-1")).classification
    assert c.cause is Cause.VALID and c.issuer == CORP and c.kid is None


def test_kidless_token_that_no_key_verifies_is_unknown_kid(world: World) -> None:
    c = world.judge(mint(None, signer="rogue")).classification
    assert c.cause is Cause.UNKNOWN_KID


# -- 1. parse -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("definitely not a token", "3 segments"),
        ("a.b", "3 segments"),
        ("a.b.c.d", "3 segments"),
        ("###.e30.sig", "base64url"),
        (forge({"alg": "RS256"}, {}, b"abc") + "=", "base64url"),
        ("W10.e30.", "not a JSON object"),  # header is []
        (forge({"alg": 256}, {}), "alg"),
        (forge({"typ": "JWT"}, {}), "alg"),
        (forge({"alg": "RS256"}, {"exp": "tomorrow"}), "exp claim is not a number"),
        (forge({"alg": "RS256"}, {"iat": True}), "iat claim is not a number"),
        ("eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", "payload is not JSON"),
        ("tökén.a.b", "not ASCII"),
    ],
)
def test_malformed(world: World, token: str, why: str) -> None:
    c = world.judge(token).classification
    assert c.cause is Cause.MALFORMED
    assert c.findings == [Cause.MALFORMED]
    assert c.confidence is Confidence.VERIFIED
    assert why in (c.detail or "")


def test_malformed_token_still_shows_header_attacks(world: World) -> None:
    c = world.judge(forge({"alg": "none", "jku": "http://127.0.0.1/x"}, {"exp": "x"})).classification
    assert c.cause is Cause.MALFORMED
    assert c.attacks == [Attack.ALG_NONE, Attack.JKU_INJECTION]


def test_jwe_is_unverifiable_but_verified(world: World) -> None:
    c = world.judge("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d").classification
    assert (c.cause, c.confidence, c.findings) == (
        Cause.UNVERIFIABLE,
        Confidence.VERIFIED,
        [Cause.UNVERIFIABLE],
    )


# -- 2. alg policy --------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_any_case(world: World, alg: str) -> None:
    c = world.judge(forge({"alg": alg, "kid": "rsa-2"}, good_claims())).classification
    assert c.cause is Cause.BAD_ALG
    assert Attack.ALG_NONE in c.attacks
    assert c.issuer is None


def test_key_confusion_hs256_signed_with_the_public_key(world: World) -> None:
    public_pem = (
        private_key("rsa-2")
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "kid": "rsa-2"}
    signing_input = forge(header, good_claims()).rsplit(".", 1)[0]
    import hashlib
    import hmac

    from tests.world import b64

    token = signing_input + "." + b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    c = world.judge(token).classification
    assert c.cause is Cause.BAD_ALG
    assert c.attacks == [Attack.KEY_CONFUSION]
    assert c.findings == [Cause.BAD_ALG]


def test_alg_outside_the_issuers_allowlist(world: World) -> None:
    c = world.judge(mint("rsa-2", alg="RS512")).classification
    assert c.cause is Cause.BAD_ALG and c.attacks == []
    assert "RS512" in (c.detail or "")


def test_alg_that_does_not_fit_the_keys_type(world: World) -> None:
    # ES256 is allowed, but kid rsa-2 names an RSA key: the header cannot choose the verifier.
    token = mint("rsa-2", signer="ec-1", alg="ES256")
    c = world.judge(token).classification
    assert c.cause is Cause.BAD_ALG
    assert "RSA" in (c.detail or "")


# -- 3. key and signature -------------------------------------------------------------------------


def test_unknown_kid(world: World) -> None:
    c = world.judge(mint("nope", signer="rogue")).classification
    assert c.cause is Cause.UNKNOWN_KID and c.issuer is None
    assert "'nope'" in (c.detail or "")


def test_bad_signature_tampered_payload(world: World) -> None:
    header, _, signature = mint("rsa-2").split(".")
    from tests.world import b64

    payload = b64(json.dumps(good_claims(sub="admin")).encode())
    c = world.judge(f"{header}.{payload}.{signature}").classification
    assert c.cause is Cause.BAD_SIGNATURE and c.issuer is None


def test_bad_signature_known_kid_wrong_signer(world: World) -> None:
    assert world.judge(mint("rsa-2")).classification.cause is Cause.VALID  # control: the right signer verifies
    assert world.judge(mint("rsa-2", signer="rogue")).classification.cause is Cause.BAD_SIGNATURE


def test_issuer_mismatch_staging_token_in_prod(world: World) -> None:
    token = mint("stg-1", claims=good_claims(iss=STAGING))
    c = world.judge(token).classification
    assert c.cause is Cause.ISSUER_MISMATCH
    assert c.issuer == STAGING  # the issuer whose key verified
    assert c.findings == [Cause.ISSUER_MISMATCH]
    # The same token is fine where staging is accepted (the time rules still apply).
    assert world.judge(token, service="staging-api").classification.cause is Cause.VALID


def test_issuer_mismatch_iss_claim_not_accepted(world: World) -> None:
    c = world.judge(mint("rsa-2", claims=good_claims(iss="https://evil.test"))).classification
    assert c.cause is Cause.ISSUER_MISMATCH
    assert c.issuer == CORP
    assert "evil.test" in (c.detail or "")


def test_missing_iss_is_issuer_mismatch(world: World) -> None:
    assert world.judge(mint("rsa-2", claims=good_claims(iss=DROP))).classification.cause is Cause.ISSUER_MISMATCH


# -- 5. audience and authorized party -------------------------------------------------------------


@pytest.mark.parametrize("aud", ["api://orders", ["api://orders", "api://other"], DROP, 42])
def test_audience_mismatch(world: World, aud: object) -> None:
    c = world.judge(mint("rsa-2", claims=good_claims(aud=aud))).classification
    assert c.cause is Cause.AUDIENCE_MISMATCH
    assert c.audience == (None if aud is DROP else aud)


def test_audience_in_a_list_is_accepted(world: World) -> None:
    c = world.judge(mint("rsa-2", claims=good_claims(aud=["api://orders", AUDIENCE]))).classification
    assert c.cause is Cause.VALID


def test_azp_not_authorized(world: World) -> None:
    c = world.judge(mint("rsa-2", claims=good_claims(azp="mobile-app"))).classification
    assert c.cause is Cause.AUDIENCE_MISMATCH and "mobile-app" in (c.detail or "")


def test_client_id_stands_in_for_azp(world: World) -> None:
    ok = world.judge(mint("rsa-2", claims=good_claims(azp=DROP, client_id="web-app"))).classification
    bad = world.judge(mint("rsa-2", claims=good_claims(azp=DROP))).classification
    assert (ok.cause, bad.cause) == (Cause.VALID, Cause.AUDIENCE_MISMATCH)


# -- 6. time, at the event's ts -------------------------------------------------------------------


def test_clock_skew_on_exp_reports_seconds_beyond_leeway(world: World) -> None:
    # exp 100 s before the event; leeway 30 s → 70 s beyond it, inside the 300 s window.
    c = world.judge(mint("rsa-2", claims=good_claims(exp=NOW - 100))).classification
    assert c.cause is Cause.CLOCK_SKEW and c.skew_seconds == pytest.approx(70)


def test_exp_within_leeway_is_fine(world: World) -> None:
    assert world.judge(mint("rsa-2", claims=good_claims(exp=NOW - 30))).classification.cause is Cause.VALID


def test_expired_beyond_the_window(world: World) -> None:
    c = world.judge(mint("rsa-2", claims=good_claims(exp=NOW - 7200))).classification
    assert c.cause is Cause.EXPIRED and c.skew_seconds == pytest.approx(7170)
    assert "2 h" in (c.detail or "")


def test_window_edge_is_clock_skew(world: World) -> None:
    c = world.judge(mint("rsa-2", claims=good_claims(exp=NOW - 330))).classification
    assert c.cause is Cause.CLOCK_SKEW and c.skew_seconds == pytest.approx(300)
    c = world.judge(mint("rsa-2", claims=good_claims(exp=NOW - 331))).classification
    assert c.cause is Cause.EXPIRED


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_future_nbf_or_iat(world: World, claim: str) -> None:
    skewed = world.judge(mint("rsa-2", claims=good_claims(**{claim: NOW + 120}))).classification
    assert skewed.cause is Cause.CLOCK_SKEW and skewed.skew_seconds == pytest.approx(90)
    far = world.judge(mint("rsa-2", claims=good_claims(**{claim: NOW + 3600}))).classification
    assert far.cause is Cause.NOT_YET_VALID


def test_time_is_judged_at_the_event_not_the_wall_clock(world: World) -> None:
    token = mint("ec-1", claims=good_claims())
    assert world.judge(token).classification.cause is Cause.VALID
    later = world.judge(token, at=T0 + timedelta(days=1)).classification
    assert later.cause is Cause.EXPIRED  # same token, same cache entry, a different verdict


def test_fractional_and_huge_time_claims(world: World) -> None:
    assert world.judge(mint("rsa-2", claims=good_claims(exp=NOW + 0.5))).classification.cause is Cause.VALID
    assert world.judge(mint("rsa-2", claims=good_claims(exp=10**400))).classification.cause is Cause.VALID
    huge_nbf = world.judge(mint("rsa-2", claims=good_claims(nbf=10**400))).classification
    assert huge_nbf.cause is Cause.NOT_YET_VALID


# -- 7. required claims ---------------------------------------------------------------------------


def test_missing_required_claim(world: World) -> None:
    c = world.judge(mint("rsa-2", claims=good_claims(sub=DROP))).classification
    assert c.cause is Cause.MISSING_CLAIM and "sub" in (c.detail or "")


def test_default_required_claim_is_exp(world: World) -> None:
    claims = good_claims(exp=DROP, aud="api://orders")
    assert world.judge(mint("rsa-2", claims=claims), service="orders-api").classification.cause is Cause.MISSING_CLAIM


# -- 8. key timing --------------------------------------------------------------------------------


def test_unpublished_key(world: World) -> None:
    c = world.judge(mint("rsa-3")).classification
    assert c.cause is Cause.UNPUBLISHED_KEY and c.issuer == CORP
    assert "after the event" in (c.detail or "")
    assert world.judge(mint("rsa-3"), at=T0 + timedelta(hours=2)).classification.cause is not Cause.UNPUBLISHED_KEY


def test_retired_key(world: World) -> None:
    c = world.judge(mint("rsa-1")).classification
    assert c.cause is Cause.RETIRED_KEY
    assert "30 min before the event" in (c.detail or "")


def test_stale_jwks_from_the_services_fetch_time(world: World) -> None:
    c = world.judge(mint("rsa-2"), service_jwks_fetched_at=T0 - timedelta(hours=3)).classification
    assert c.cause is Cause.STALE_JWKS
    assert "3 h" in (c.detail or "") and "rsa-2" in (c.detail or "")


def test_stale_jwks_without_fetch_time_for_a_young_key(world: World) -> None:
    young = world.judge(mint("rsa-2"), service_jwks_fetched_at=None).classification
    old = world.judge(mint("ec-1"), service_jwks_fetched_at=None).classification
    assert (young.cause, old.cause) == (Cause.STALE_JWKS, Cause.VALID)
    after_ttl = world.judge(
        mint("rsa-2", claims=good_claims(at=T0 + timedelta(days=2))),
        at=T0 + timedelta(days=2),
        service_jwks_fetched_at=None,
    ).classification
    assert after_ttl.cause is Cause.VALID


def test_key_timing_is_only_a_finding_for_an_otherwise_bad_token(world: World) -> None:
    c = world.judge(mint("rsa-1", claims=good_claims(exp=NOW - 7200))).classification
    assert c.cause is Cause.EXPIRED
    assert c.findings == [Cause.EXPIRED, Cause.RETIRED_KEY]


def test_findings_keep_check_order(world: World) -> None:
    claims = good_claims(iss="https://evil.test", aud="api://orders", exp=NOW - 7200, sub=DROP)
    c = world.judge(mint("rsa-1", claims=claims)).classification
    assert c.findings == [
        Cause.ISSUER_MISMATCH,
        Cause.AUDIENCE_MISMATCH,
        Cause.EXPIRED,
        Cause.MISSING_CLAIM,
        Cause.RETIRED_KEY,
    ]
    assert c.cause is c.findings[0]
    assert "Also failed: audience_mismatch, expired, missing_claim, retired_key" in (c.detail or "")


def test_a_key_removed_and_republished_is_judged_by_its_interval() -> None:
    from tests.world import snapshot

    snaps = [
        snapshot(CORP, T0 - timedelta(days=10), ["ec-1"]),
        snapshot(CORP, T0 - timedelta(days=5), ["rsa-1", "ec-1"]),
        snapshot(CORP, T0 - timedelta(days=3), ["ec-1"]),
        snapshot(CORP, T0 - timedelta(days=1), ["rsa-1", "ec-1"]),
    ]
    w = World(snapshots=snaps)
    assert w.judge(mint("rsa-1")).classification.cause is Cause.VALID
    at = T0 - timedelta(days=2)
    c = w.judge(mint("rsa-1", claims=good_claims(at=at)), at=at).classification
    assert c.cause is Cause.RETIRED_KEY


# -- attacks --------------------------------------------------------------------------------------


def test_jwk_injection(world: World) -> None:
    from tests.world import public_jwk

    c = world.judge(mint("rogue-1", signer="rogue", headers={"jwk": public_jwk(private_key("rogue"), "x")}))
    assert c.classification.cause is Cause.UNKNOWN_KID
    assert c.classification.attacks == [Attack.JWK_INJECTION]


@pytest.mark.parametrize("header", ["jku", "x5u"])
def test_jku_and_x5u_injection(world: World, header: str) -> None:
    c = world.judge(mint("rsa-2", signer="rogue", headers={header: "https://attacker.test/jwks"})).classification
    assert c.cause is Cause.BAD_SIGNATURE  # the key came from our timeline, never from the URL
    assert c.attacks == [Attack.JKU_INJECTION]


@pytest.mark.parametrize(
    "kid", ["../../dev/null", "/dev/null", "x' OR '1'='1", 'a"b', "k;rm", "a|b", "`id`", "$(id)", "k\x00"]
)
def test_kid_injection(world: World, kid: str) -> None:
    c = world.judge(mint(kid, signer="rogue")).classification
    assert c.cause is Cause.UNKNOWN_KID and c.attacks == [Attack.KID_INJECTION]


@pytest.mark.parametrize(
    "signature",
    [
        bytes(64),
        bytes(32) + (1).to_bytes(32, "big"),
        CURVE_ORDERS["ES256"].to_bytes(32, "big") + (1).to_bytes(32, "big"),
        (1).to_bytes(32, "big") + (2**256 - 1).to_bytes(32, "big"),
    ],
    ids=["r=s=0", "r=0", "r=n", "s>n"],
)
def test_psychic_signature(world: World, signature: bytes) -> None:
    c = world.judge(forge({"alg": "ES256", "kid": "ec-1"}, good_claims(), signature)).classification
    assert c.cause is Cause.BAD_SIGNATURE
    assert c.attacks == [Attack.PSYCHIC_SIGNATURE]


def test_every_attack_label_at_once(world: World) -> None:
    header = {"alg": "none", "kid": "../x", "jwk": {}, "jku": "http://127.0.0.1:1/"}
    c = world.judge(forge(header, good_claims())).classification
    assert c.attacks == [Attack.ALG_NONE, Attack.JWK_INJECTION, Attack.JKU_INJECTION, Attack.KID_INJECTION]


def test_curve_orders_have_the_curves_sizes() -> None:
    assert [CURVE_ORDERS[a].bit_length() for a in ("ES256", "ES384", "ES512")] == [256, 384, 521]


# -- confidence -----------------------------------------------------------------------------------


def test_event_without_token_takes_the_reported_error(world: World) -> None:
    c = world.judge(None, reported_error="Jwt is expired").classification
    assert (c.cause, c.confidence) == (Cause.EXPIRED, Confidence.REPORTED)
    assert world.judge(None).classification.cause is Cause.UNVERIFIABLE


def test_a_token_always_beats_the_reported_error(world: World) -> None:
    c = world.judge(mint("rsa-2"), reported_error="Jwt is expired").classification
    assert (c.cause, c.confidence) == (Cause.VALID, Confidence.VERIFIED)


# -- the signature cache --------------------------------------------------------------------------


def test_repeated_tokens_verify_once_per_key() -> None:
    w = World()
    token = mint("rsa-2")
    for minutes in range(10):
        w.judge(token, at=T0 + timedelta(minutes=minutes))
    assert (w.classifier.cache.misses, w.classifier.cache.hits) == (1, 9)


def test_cache_is_bounded() -> None:
    from pipeline.engine.validate import SignatureCache

    w = World()
    w.classifier.cache = SignatureCache(capacity=5)
    for n in range(20):
        w.judge(mint("ec-1", claims=good_claims(jti=str(n))))
    assert len(w.classifier.cache) == 5


def test_stored_claims_hash_the_subject(world: World) -> None:
    # Without a configured key (this world's config has none) the subject is redacted, never hashed unkeyed.
    verdict = world.judge(mint("rsa-2"))
    assert verdict.claims is not None and verdict.claims["sub"] == "redacted:no-hash-key"
    assert "user-42" not in str(verdict.claims) and "user-42" not in (verdict.claims_json or "")
    assert verdict.fingerprint and len(verdict.fingerprint) == 64
    store = world.cfg.store.model_copy(update={"hash_key": SecretStr("k" * 32)})
    verdict = World(cfg=world.cfg.model_copy(update={"store": store})).judge(mint("rsa-2"))
    assert verdict.claims is not None and verdict.claims["sub"].startswith("hmac:")
    assert "user-42" not in (verdict.claims_json or "")
    assert verdict.claims["azp"] == "web-app"  # a client id stays readable
