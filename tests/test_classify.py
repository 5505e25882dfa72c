"""Every cause and attack of DESIGN.md, on tokens minted here with real keys over a rotation."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from pipeline.engine.validate import CURVE_ORDERS
from pipeline.models import Attack, Cause, Confidence
from tests.world import (
    AUDIENCE,
    CONFIG_TOML,
    CORP,
    DROP,
    STAGING,
    T0,
    World,
    forge,
    good_claims,
    mint,
    private_key,
    snapshot,
)


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


def test_kidless_token_that_no_key_verifies_is_bad_signature(world: World) -> None:
    """DESIGN.md step 3: a token without kid is tried against every key that fits the alg; none verifies."""
    c = world.judge(mint(None, signer="rogue")).classification
    assert (c.cause, c.findings[0], c.issuer, c.kid) == (Cause.BAD_SIGNATURE, Cause.BAD_SIGNATURE, None, None)
    assert "no kid" in (c.detail or "").lower()


def test_kidless_token_whose_alg_no_published_key_fits_is_bad_signature() -> None:
    """No Ed25519 key was ever published: nothing to try, so nothing verifies (not unknown_kid: there is no kid)."""
    world = World(snapshots=[snapshot(CORP, T0 - timedelta(days=10), ["rsa-1", "rsa-2", "ec-1"])])
    c = world.judge(mint(None, signer="ed-1")).classification
    assert c.cause is Cause.BAD_SIGNATURE


def test_kidless_token_that_verifies_continues_as_a_keyed_token(world: World) -> None:
    """Once a key verifies it, the rest of the order runs with that key: rsa-1 was retired 30 min ago."""
    c = world.judge(mint(None, signer="rsa-1")).classification
    assert (c.cause, c.issuer, c.kid) == (Cause.RETIRED_KEY, CORP, None)
    staged = world.judge(mint(None, signer="stg-1", claims=good_claims(iss=STAGING))).classification
    assert (staged.cause, staged.issuer) == (Cause.ISSUER_MISMATCH, STAGING)


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


#: RFC 7516 appendix A.1's JWE header ({"alg":"RSA-OAEP","enc":"A256GCM"}) as its first segment.
JWE_HEADER = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ"


def test_jwe_is_unverifiable_but_verified(world: World) -> None:
    c = world.judge(f"{JWE_HEADER}.a.b.c.d").classification
    assert (c.cause, c.confidence, c.findings) == (
        Cause.UNVERIFIABLE,
        Confidence.VERIFIED,
        [Cause.UNVERIFIABLE],
    )


@pytest.mark.parametrize(
    "token",
    [
        "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d",  # {"alg":"RSA-OAEP"}: no enc
        "aaaa.bbbb.cccc.dddd.eeee",  # the header is not JSON
        forge({"alg": "RS256", "kid": "rsa-2"}, good_claims()) + ".e30.e30",
    ],
)
def test_five_segments_without_enc_are_malformed_not_a_jwe(world: World, token: str) -> None:
    """DESIGN.md step 1: only a header with `enc` makes five segments a JWE."""
    c = world.judge(token).classification
    assert (c.cause, c.findings) == (Cause.MALFORMED, [Cause.MALFORMED])
    assert "5" in (c.detail or "")


@pytest.mark.parametrize(
    "crit",
    [["exp"], ["b64"], ["http://example.com/extension"], [], "b64"],
)
def test_a_crit_header_is_malformed(world: World, crit: object) -> None:
    """RFC 7515 §4.1.11: a recipient that does not understand a listed extension must reject the JWS;
    jwtriage understands none, so even a token that verifies is malformed."""
    token = mint("rsa-2", headers={"crit": crit, "b64": True})
    c = world.judge(token).classification
    assert (c.cause, c.findings) == (Cause.MALFORMED, [Cause.MALFORMED])
    assert "crit" in (c.detail or "") and c.kid == "rsa-2" and c.alg == "RS256"


def test_a_header_without_crit_still_verifies(world: World) -> None:
    assert world.judge(mint("rsa-2", headers={"b64": True})).classification.cause is Cause.VALID


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


#: The test world's config plus a service that accepts both issuers: corp allows PS256, staging does not.
_MIXED_SERVICE = f"""
[[services]]
name = "mixed-api"
issuers = ["corp", "staging"]
audience = "{AUDIENCE}"
"""
MIXED_TOML = CONFIG_TOML + _MIXED_SERVICE


@pytest.fixture(scope="module")
def mixed() -> World:
    import tomllib

    from pipeline.config import Config

    return World(cfg=Config.model_validate(tomllib.loads(MIXED_TOML)))


@pytest.mark.parametrize("kid", ["stg-1", None])
def test_alg_allowed_by_another_issuer_of_the_service_but_not_the_signers_is_bad_alg(
    mixed: World, kid: str | None
) -> None:
    """DESIGN.md step 3: it verifies with a key of an accepted issuer whose `algorithms` exclude the alg."""
    token = mint(kid, signer="stg-1", alg="PS256", claims=good_claims(iss=STAGING))
    c = mixed.judge(token, service="mixed-api").classification
    assert (c.cause, c.findings[0], c.issuer) == (Cause.BAD_ALG, Cause.BAD_ALG, STAGING)
    assert "PS256" in (c.detail or "") and "RS256" in (c.detail or "")
    control = mint(kid, signer="stg-1", alg="RS256", claims=good_claims(iss=STAGING))
    assert mixed.judge(control, service="mixed-api").classification.cause is Cause.VALID
    corp = mint("rsa-2" if kid else None, signer="rsa-2", alg="PS256")
    assert mixed.judge(corp, service="mixed-api").classification.cause is Cause.VALID


def test_alg_outside_every_issuer_of_the_service_is_bad_alg_before_any_key(mixed: World) -> None:
    c = mixed.judge(mint("stg-1", alg="RS384"), service="mixed-api").classification
    assert (c.cause, c.issuer) == (Cause.BAD_ALG, None)


def test_alg_that_fits_no_key_with_that_kid_in_any_issuer_is_bad_alg(mixed: World) -> None:
    """Every key named stg-1 (any issuer, any time) is RSA: ES256 cannot use any of them."""
    c = mixed.judge(forge({"alg": "ES256", "kid": "stg-1"}, good_claims(), bytes(64)), service="mixed-api")
    assert c.classification.cause is Cause.BAD_ALG


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
    assert world.judge(mint("rsa-2", claims=good_claims(exp=NOW - 29))).classification.cause is Cause.VALID


# (service, leeway, exp - ts, cause, skew_seconds): DESIGN.md step 6, `exp` fails when ts >= exp + leeway
# (RFC 7519 §4.1.4: the current time must be *before* exp); the window is 300 s.
EXP_BOUNDARIES = [
    ("orders-api", 0, 1, Cause.VALID, None),
    ("orders-api", 0, 0, Cause.CLOCK_SKEW, 0),  # ts == exp
    ("orders-api", 0, -300, Cause.CLOCK_SKEW, 300),
    ("orders-api", 0, -301, Cause.EXPIRED, 301),
    ("payments-api", 30, 0, Cause.VALID, None),  # ts == exp, inside the leeway
    ("payments-api", 30, -29, Cause.VALID, None),
    ("payments-api", 30, -30, Cause.CLOCK_SKEW, 0),  # ts == exp + leeway
    ("payments-api", 30, -31, Cause.CLOCK_SKEW, 1),
    ("payments-api", 30, -330, Cause.CLOCK_SKEW, 300),  # ts == exp + leeway + window
    ("payments-api", 30, -331, Cause.EXPIRED, 301),
]


@pytest.mark.parametrize(("service", "leeway", "exp_offset", "cause", "skew"), EXP_BOUNDARIES)
def test_exp_boundaries(world: World, service: str, leeway: int, exp_offset: int, cause: Cause, skew: int) -> None:
    claims = good_claims(exp=NOW + exp_offset, aud="api://orders" if service == "orders-api" else AUDIENCE)
    c = world.judge(mint("rsa-2", claims=claims), service=service).classification
    assert next(s for s in world.cfg.services if s.name == service).leeway_seconds == leeway
    assert (c.cause, c.skew_seconds) == (cause, skew)
    if exp_offset == 0 and cause is Cause.CLOCK_SKEW:
        assert "valid only before exp" in (c.detail or "")


# (nbf or iat - ts, cause, skew_seconds) at payments-api (leeway 30): fails when the claim > ts + leeway.
FUTURE_BOUNDARIES = [
    (30, Cause.VALID, None),  # claim == ts + leeway
    (31, Cause.CLOCK_SKEW, 1),
    (330, Cause.CLOCK_SKEW, 300),
    (331, Cause.NOT_YET_VALID, 301),
]


@pytest.mark.parametrize("claim", ["nbf", "iat"])
@pytest.mark.parametrize(("offset", "cause", "skew"), FUTURE_BOUNDARIES)
def test_nbf_and_iat_boundaries(world: World, claim: str, offset: int, cause: Cause, skew: int) -> None:
    c = world.judge(mint("rsa-2", claims=good_claims(**{claim: NOW + offset}))).classification
    assert (c.cause, c.skew_seconds) == (cause, skew)


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
    # A guess from the cache TTL, not a fact: DESIGN.md's `inferred`; the valid verdict stays verified.
    assert (young.confidence, old.confidence) == (Confidence.INFERRED, Confidence.VERIFIED)
    assert "inferred" in (young.detail or "") and "declares no TTL" in (young.detail or "")
    after_ttl = world.judge(
        mint("rsa-2", claims=good_claims(at=T0 + timedelta(days=2))),
        at=T0 + timedelta(days=2),
        service_jwks_fetched_at=None,
    ).classification
    assert after_ttl.cause is Cause.VALID


def _with_ttl(ttl: int) -> World:
    import tomllib

    from pipeline.config import Config

    text = CONFIG_TOML.replace(
        'authorized_parties = ["web-app"]\n', f'authorized_parties = ["web-app"]\njwks_cache_ttl_seconds = {ttl}\n', 1
    )
    cfg = Config.model_validate(tomllib.loads(text))
    assert next(s for s in cfg.services if s.name == "payments-api").jwks_cache_ttl_seconds == ttl
    return World(cfg=cfg)


def test_the_services_own_cache_ttl_judges_a_key_without_fetch_time() -> None:
    """rsa-2 was published 2 h before the event: young for a 3 h cache, not for a 5 min one (the global 24 h
    would call it stale either way)."""
    five_minutes, three_hours = _with_ttl(300), _with_ttl(3 * 3600)
    c = five_minutes.judge(mint("rsa-2"), service_jwks_fetched_at=None).classification
    assert (c.cause, c.confidence, c.findings) == (Cause.VALID, Confidence.VERIFIED, [])
    c = three_hours.judge(mint("rsa-2"), service_jwks_fetched_at=None).classification
    assert (c.cause, c.confidence) == (Cause.STALE_JWKS, Confidence.INFERRED)
    assert "payments-api's 3 h JWKS cache TTL" in (c.detail or "")
    # With a fetch time the TTL plays no part, and the verdict is verified either way.
    fetched = T0 - timedelta(hours=3)
    for world in (five_minutes, three_hours):
        c = world.judge(mint("rsa-2"), service_jwks_fetched_at=fetched).classification
        assert (c.cause, c.confidence) == (Cause.STALE_JWKS, Confidence.VERIFIED)


def test_ttl_boundary_without_fetch_time() -> None:
    """stale when ts - first_seen < ttl: at exactly the TTL the cache must have been refreshed."""
    world = _with_ttl(2 * 3600)  # rsa-2 is exactly 2 h old at T0
    assert world.judge(mint("rsa-2"), service_jwks_fetched_at=None).classification.cause is Cause.VALID
    before = T0 - timedelta(seconds=1)
    c = world.judge(mint("rsa-2", claims=good_claims(at=before)), at=before, service_jwks_fetched_at=None)
    assert c.classification.cause is Cause.STALE_JWKS


def test_a_stale_finding_behind_another_cause_keeps_the_verdict_verified(world: World) -> None:
    c = world.judge(mint("rsa-2", claims=good_claims(exp=NOW - 7200)), service_jwks_fetched_at=None).classification
    assert (c.cause, c.confidence) == (Cause.EXPIRED, Confidence.VERIFIED)
    assert c.findings == [Cause.EXPIRED, Cause.STALE_JWKS]


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
    assert c.skew_seconds is None  # Envoy's message states no time


def _idx10223(valid_to: str, now: str) -> str:
    return (
        "IDX10223: Lifetime validation failed. The token is expired. "
        f"ValidTo (UTC): '{valid_to}', Current time (UTC): '{now}'."
    )


@pytest.mark.parametrize(
    ("valid_to", "cause", "skew"),
    [
        ("11/20/2026 11:58:30 AM", Cause.CLOCK_SKEW, 60),  # 90 s past exp, 30 s leeway: 60 s beyond it
        ("11/20/2026 10:00:00 AM", Cause.EXPIRED, 7170),
    ],
)
def test_a_reported_message_that_states_the_times_is_split_like_a_token(
    world: World, valid_to: str, cause: Cause, skew: int
) -> None:
    """DESIGN.md: where the message states the failing time, the overshoot decides clock_skew vs expired."""
    message = _idx10223(valid_to, "11/20/2026 12:00:00 PM")
    c = world.judge(None, reported_error=message).classification  # payments-api: leeway 30 s
    assert (c.cause, c.confidence, c.findings) == (cause, Confidence.REPORTED, [cause])
    assert c.skew_seconds == pytest.approx(skew)
    assert "2026-11-20T12:00:00Z" in (c.detail or "") and "30 s leeway" in (c.detail or "")
    assert "not verified by jwtriage" in (c.detail or "")
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
    # verified once; the nine repeats find the result in the signature cache, or reuse the judgement around it
    reused = w.classifier.reuse.hits if w.classifier.reuse is not None else 0
    assert (w.classifier.cache.misses, w.classifier.cache.hits + reused) == (1, 9)


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
