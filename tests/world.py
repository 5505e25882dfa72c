"""A small world for tests: real RSA, EC and Ed25519 keys on a rotation timeline.

Timeline of issuer `corp` (T0 is the events' time):
- T0-10d: first snapshot, holds rsa-1, ec-1, ed-1 (keys from before history began)
- T0-2h:  rsa-2 published beside rsa-1
- T0-30m: rsa-1 removed (retired)
- T0+1h:  rsa-3 published (anything signed with it before then used an unpublished key)
Issuer `staging` publishes stg-1 from T0-10d; only `staging-api` accepts it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from pipeline.config import Config
from pipeline.engine.classify import Classifier, Verdict
from pipeline.engine.keys import KeyTimeline
from pipeline.models import AuthFailureEvent, JwksSnapshot

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CORP = "https://login.acme.test"
STAGING = "https://login.staging.acme.test"
AUDIENCE = "api://payments"

#: The Classification fields DESIGN.md fixes, in order (a literal on purpose: the contract, not the model).
CONTRACT_FIELDS = [
    "event_id",
    "cause",
    "confidence",
    "attacks",
    "findings",
    "issuer",
    "kid",
    "alg",
    "audience",
    "skew_seconds",
    "detail",
]

CONFIG_TOML = f"""
[[issuers]]
name = "corp"
issuer = "{CORP}"
jwks_uri = "{CORP}/.well-known/jwks.json"
algorithms = ["RS256", "PS256", "ES256", "EdDSA"]

[[issuers]]
name = "staging"
issuer = "{STAGING}"
jwks_uri = "{STAGING}/.well-known/jwks.json"
algorithms = ["RS256"]

[[services]]
name = "payments-api"
issuers = ["corp"]
audience = "{AUDIENCE}"
leeway_seconds = 30
required_claims = ["exp", "iat", "sub"]
authorized_parties = ["web-app"]

[[services]]
name = "orders-api"
issuers = ["corp"]
audience = "api://orders"

[[services]]
name = "staging-api"
issuers = ["staging"]
audience = "{AUDIENCE}"
"""

_KEYS: dict[str, Any] = {}


def _key(name: str, make: Any) -> Any:
    if name not in _KEYS:
        _KEYS[name] = make()
    return _KEYS[name]


def rsa_key(name: str) -> rsa.RSAPrivateKey:
    return _key(name, lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(name: str, curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return _key(name, lambda: ec.generate_private_key(curve or ec.SECP256R1()))


def ed_key(name: str) -> ed25519.Ed25519PrivateKey:
    return _key(name, ed25519.Ed25519PrivateKey.generate)


def public_jwk(private: Any, kid: str, **extra: Any) -> dict[str, Any]:
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = json.loads(RSAAlgorithm.to_jwk(public))
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = json.loads(ECAlgorithm.to_jwk(public))
    else:
        jwk = json.loads(OKPAlgorithm.to_jwk(public))
    jwk.update(kid=kid, use="sig", **extra)
    return jwk


def private_key(kid: str) -> Any:
    return {
        "rsa-1": lambda: rsa_key("rsa-1"),
        "rsa-2": lambda: rsa_key("rsa-2"),
        "rsa-3": lambda: rsa_key("rsa-3"),
        "ec-1": lambda: ec_key("ec-1"),
        "ed-1": lambda: ed_key("ed-1"),
        "stg-1": lambda: rsa_key("stg-1"),
        "rogue": lambda: rsa_key("rogue"),
    }[kid]()


def snapshot(issuer: str, at: datetime, kids: list[str]) -> JwksSnapshot:
    return JwksSnapshot(issuer=issuer, fetched_at=at, jwks={"keys": [public_jwk(private_key(k), k) for k in kids]})


def default_snapshots() -> list[JwksSnapshot]:
    return [
        snapshot(CORP, T0 - timedelta(days=10), ["rsa-1", "ec-1", "ed-1"]),
        snapshot(CORP, T0 - timedelta(hours=2), ["rsa-1", "rsa-2", "ec-1", "ed-1"]),
        snapshot(CORP, T0 - timedelta(minutes=30), ["rsa-2", "ec-1", "ed-1"]),
        snapshot(CORP, T0 + timedelta(hours=1), ["rsa-2", "rsa-3", "ec-1", "ed-1"]),
        snapshot(STAGING, T0 - timedelta(days=10), ["stg-1"]),
    ]


def config() -> Config:
    import tomllib

    return Config.model_validate(tomllib.loads(CONFIG_TOML))


def good_claims(at: datetime = T0, **changes: Any) -> dict[str, Any]:
    now = int(at.timestamp())
    claims: dict[str, Any] = {
        "iss": CORP,
        "sub": "user-42",
        "aud": AUDIENCE,
        "azp": "web-app",
        "iat": now - 60,
        "exp": now + 600,
    }
    for name, value in changes.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


DROP = object()

#: A JWE as DESIGN.md step 1 tells one: five segments, the header (RFC 7516 A.1's) names `enc`.
JWE = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.bbbb.cccc.dddd.eeee"

_ALG_FOR = {"rsa": "RS256", "ec": "ES256", "ed": "EdDSA", "stg": "RS256", "rogue": "RS256"}


def mint(
    kid: str | None = "rsa-2",
    claims: dict[str, Any] | None = None,
    alg: str | None = None,
    headers: dict[str, Any] | None = None,
    signer: str | None = None,
) -> str:
    """A real signed token; `signer` picks the key when `kid` is absent or a lie."""
    key_name = signer or kid or "rsa-2"
    alg = alg or _ALG_FOR[key_name.split("-")[0]]
    extra = dict(headers or {})
    if kid is not None:
        extra["kid"] = kid
    return jwt.encode(
        claims if claims is not None else good_claims(), private_key(key_name), algorithm=alg, headers=extra
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A hand-built token: any header, any claims, any signature bytes."""
    return ".".join((b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)))


@dataclass
class World:
    snapshots: list[JwksSnapshot] = field(default_factory=default_snapshots)
    cfg: Config = field(default_factory=config)

    def __post_init__(self) -> None:
        self.timeline = KeyTimeline(self.snapshots)
        self.classifier = Classifier(self.cfg, self.timeline)

    def event(
        self, token: str | None = None, *, at: datetime = T0, service: str = "payments-api", **fields: Any
    ) -> AuthFailureEvent:
        fields.setdefault("event_id", "evt-1")
        # By default the service fetched its JWKS after rsa-2 appeared; stale-cache tests override it.
        fields.setdefault("service_jwks_fetched_at", at - timedelta(minutes=10))
        return AuthFailureEvent(ts=at, service=service, token=token, **fields)

    def judge(self, token: str | None, *, at: datetime = T0, service: str = "payments-api", **fields: Any) -> Verdict:
        event = self.event(token, at=at, service=service, **fields)
        return self.classifier.classify(event, token if token is not None else None)
