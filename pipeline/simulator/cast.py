"""The fixed cast of the simulated day: issuers and their rotation plans, services, clients.

Data tables, with the DESIGN.md constants the config is written with and the validator
messages the services report. The story these tables tell is told in `scenario`'s
docstring; what happens when is scheduled by `world` and planned by `plan`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.models import Cause

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

#: DESIGN.md's defaults: written into the scenario's config, and what the judge applies.
SKEW_WINDOW_SECONDS = 300
MAX_JWKS_CACHE_TTL_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class IssuerSpec:
    """An issuer and its rotation plan (fractions of the window; None = before the window)."""

    name: str
    url: str
    algorithms: tuple[str, ...]
    first_snapshot_before_s: int  # the watcher's first snapshot is this long before `start`
    heartbeat_min: int  # the watcher re-emits an unchanged set this often
    keys: tuple[tuple[str, float | None, float | None], ...]  # (kid, published, removed)
    lanes: tuple[tuple[str, tuple[tuple[str, float | None], ...]], ...]  # (lane, ((kid, signs from), ...))


ISSUERS: tuple[IssuerSpec, ...] = (
    IssuerSpec(
        "corp",
        "https://login.acme.test",
        ("RS256", "ES256"),
        120,
        15,
        (("corp-rs-2026-10", None, 0.62), ("corp-es-2026", None, None), ("corp-rs-2026-11", 0.20, None)),
        (("rsa", (("corp-rs-2026-10", None), ("corp-rs-2026-11", 0.40))), ("ec", (("corp-es-2026", None),))),
    ),
    IssuerSpec(
        "partner",
        "https://id.partner.test",
        ("ES256", "EdDSA"),
        45,
        30,
        (("partner-es-01", None, 0.55), ("partner-ed-02", 0.36, None)),
        (("main", (("partner-es-01", None), ("partner-ed-02", 0.30))),),
    ),
    IssuerSpec(
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
class ServiceSpec:
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
    # Whether the config declares its cache TTL (`jwks_cache_ttl_seconds`) to jwtriage.
    ttl_declared: bool = True

    @property
    def judged_ttl_s(self) -> int:
        """The cache TTL a key's age is judged by when the service reports no fetch time (DESIGN.md step 8)."""
        return self.ttl_s if self.ttl_declared else MAX_JWKS_CACHE_TTL_SECONDS


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "payments-api", ("corp",), "api://payments", 30, ("exp", "iat", "sub"),
        parties=("web-app", "checkout-worker", "reconcile-job"),
        ttl_s=6 * 3600, refresh_on_unknown_kid=False, fetch_time="reported", style="jsonwebtoken",
        utc_offset_min=0, traffic=0.20, anchor=("corp", 0.3, 0.9),
    ),
    ServiceSpec(
        "orders-api", ("corp",), "api://orders", 60, ("exp", "sub"), parties=None,
        ttl_s=3600, refresh_on_unknown_kid=True, fetch_time="reported", style="jose",
        utc_offset_min=0, traffic=0.18, anchor=None,
    ),
    ServiceSpec(
        "inventory-svc", ("corp",), "api://inventory", 0, ("exp",), parties=None,
        ttl_s=24 * 3600, refresh_on_unknown_kid=False, fetch_time="reported", style="golang-jwt",
        utc_offset_min=0, traffic=0.10, anchor=("corp", 0.25, 0.5),
    ),
    ServiceSpec(
        "partner-gateway", ("corp", "partner"), "api://partner-gateway", 120, ("exp", "iat"),
        parties=("partner-sync", "partner-portal"),
        ttl_s=12 * 3600, refresh_on_unknown_kid=False, fetch_time="reported", style="golang-jwt",
        utc_offset_min=0, traffic=0.12, anchor=("partner", 0.3, 0.7),
    ),
    ServiceSpec(
        "billing-legacy", ("corp",), "api://billing", 0, ("exp", "sub"), parties=None,
        ttl_s=24 * 3600, refresh_on_unknown_kid=False, fetch_time="absent", style="dotnet",
        utc_offset_min=60, traffic=0.08, anchor=("corp", 0.45, 0.75),
        ttl_declared=False,  # nobody documented the legacy service's cache: jwtriage assumes the maximum
    ),
    ServiceSpec(
        "reports-api", ("corp", "partner"), "api://reports", 10, ("exp",), parties=None,
        ttl_s=15 * 60, refresh_on_unknown_kid=True, fetch_time="reported", style="pyjwt",
        utc_offset_min=0, traffic=0.10, anchor=None,
    ),
    ServiceSpec(
        "edge-proxy", ("corp", "partner"), "api://edge", 60, ("exp",), parties=None,
        ttl_s=5 * 60, refresh_on_unknown_kid=False, fetch_time="null", style="envoy",
        utc_offset_min=0, traffic=0.22, anchor=None,
    ),
)  # fmt: skip

#: What each validator style says for a builder's message key (a cause's value, or
#: `clock_skew_exp` for a token just past its exp); only messages from REPORTED_ERRORS. A key
#: a style does not list (`nbf`, `valid`, ...) means that service reports no message.
STYLE_MESSAGES: dict[str, dict[str, str]] = {
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
class ClientSpec:
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
CLIENTS: tuple[ClientSpec, ...] = (
    ClientSpec("web-app", "corp", "rsa", (_PAY, _ORD, _REP, _EDGE), "azp", 3600, "user",
                ("payments-api", "orders-api", "reports-api", "edge-proxy")),
    ClientSpec("mobile-app", "corp", "ec", (_ORD, _EDGE, _REP), "azp", 1800, "user",
                ("orders-api", "edge-proxy", "reports-api")),
    ClientSpec("checkout-worker", "corp", "rsa", (_PAY, _INV, _BIL), "client_id", 3600, "svc-checkout",
                ("payments-api", "inventory-svc", "billing-legacy"), drift_s=-250),
    ClientSpec("batch-exporter", "corp", "rsa", (_REP, _INV, _BIL), "client_id", 12 * 3600, "svc-exporter",
                ("reports-api", "inventory-svc", "billing-legacy")),
    ClientSpec("reconcile-job", "corp", "rsa", (_PAY, _BIL), "client_id", 3600, None,
                ("payments-api", "billing-legacy")),
    ClientSpec("tv-app", "corp", "rsa", (_EDGE, _ORD), "azp", 3600, "user",
                ("edge-proxy", "orders-api"), drift_s=-200),
    ClientSpec("kiosk-fleet", "corp", "rsa", (_EDGE, _ORD, _INV), "client_id", 3600, "svc-kiosk",
                ("edge-proxy", "orders-api", "inventory-svc"), drift_s=170),
    ClientSpec("pos-terminal", "corp", "rsa", (_EDGE, _ORD, _INV), "client_id", 3600, "svc-pos",
                ("edge-proxy", "orders-api", "inventory-svc"), drift_s=5400),
    ClientSpec("partner-sync", "partner", "main", (_PGW, _REP, _EDGE), "azp", 3600, "partner-svc-sync",
                ("partner-gateway", "reports-api", "edge-proxy")),
    ClientSpec("partner-portal", "partner", "main", (_PGW, _EDGE), "azp", 12 * 3600, "user",
                ("partner-gateway", "edge-proxy")),
    ClientSpec("qa-runner", "staging", "rsa", (_PAY, _ORD), "azp", 3600, "qa-bot",
                ("payments-api", "orders-api")),
    ClientSpec("dev-laptop", None, "", (_ORD, _EDGE, _REP), "azp", 3600, "user",
                ("orders-api", "edge-proxy", "reports-api")),
    ClientSpec("analytics-etl", "corp", "rsa", (_REP,), "client_id", 3600, "svc-analytics",
                ("reports-api",), alg="RS512"),
    ClientSpec("sso-bridge", "corp", "rsa", (_ORD, _REP), "azp", 3600, "user",
                ("orders-api", "reports-api"), kid_override="corp-es-2026"),
)  # fmt: skip

ISSUER_BY_NAME = {i.name: i for i in ISSUERS}
SERVICE_BY_NAME = {s.name: s for s in SERVICES}
CLIENT_BY_NAME = {c.name: c for c in CLIENTS}

#: Clients whose ordinary tokens are otherwise valid everywhere they call (rotation victims).
ORDINARY = (
    "web-app", "mobile-app", "checkout-worker", "batch-exporter", "tv-app", "partner-sync", "partner-portal",
)  # fmt: skip
#: Clients holding long-lived tokens, which outlive a key's removal.
LONG_LIVED = ("batch-exporter", "partner-portal")
