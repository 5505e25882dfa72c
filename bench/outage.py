"""A realistic failure stream for the outage benchmark: steady baseline, a rotation that breaks caches, recovery.

    outage_stream(users=3000, minutes=8) -> OutageFiles (events.jsonl, jwks.jsonl, jwtriage.toml), cached

The story, in event time (`ts` only ever increases):

- baseline: a few hundred failures a minute across every service: tokens past `exp` (some
  within the skew window), a wrong audience, a bad signature, and "valid" rejections;
- at `rotation` the issuer publishes a new key and signs every new token with it; the
  services in `BROKEN` keep their old JWKS (their `service_jwks_fetched_at` predates the
  rotation, or is absent and the key is younger than their cache TTL), so every request of
  their users fails for `minutes`: `users` distinct users, each retrying its token every
  few seconds until it expires (exp = iat + 10 min, so retries cross exp, leeway and the
  skew window), then getting a fresh one;
- the old key is removed halfway through (retries of old tokens become `retired_key`);
- recovery: the broken services fetch the new JWKS, their traffic stops failing, the
  baseline goes on.

Signing costs about a millisecond per RS256 token, so a stream is signed once in a process
pool and cached under bench/.cache/ like the other corpora.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common import CACHE, StreamFiles, _publish

ISSUER = "https://login.outage.test"
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SERVICES = ("payments-api", "orders-api", "search-api", "profile-api", "cart-api", "notify-api")
BROKEN = ("payments-api", "orders-api", "cart-api")
TOKEN_LIFETIME = 600
RETRY_EVERY = 4.0


def config_toml() -> str:
    parts = [f'[[issuers]]\nname = "corp"\nissuer = "{ISSUER}"\njwks_uri = "{ISSUER}/jwks"\nalgorithms = ["RS256"]\n']
    for n, name in enumerate(SERVICES):
        ttl = "jwks_cache_ttl_seconds = 900\n" if n % 2 else ""
        parts.append(
            f'[[services]]\nname = "{name}"\nissuers = ["corp"]\naudience = "api://{name}"\n'
            f'leeway_seconds = {30 * (n % 3)}\nrequired_claims = ["exp", "iat", "sub"]\n{ttl}'
        )
    return "\n".join(parts)


@dataclass(frozen=True)
class OutageFiles(StreamFiles):
    """The outage stream's files (`StreamFiles`) and how many events it holds."""

    def count(self) -> int:
        with self.events.open("rb") as f:
            return sum(1 for _ in f)


def _stamp(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _keys() -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("k-old", "k-new")}


_SIGNING: dict[str, Any] = {}


def _sign(job: tuple[dict[str, Any], str, bytes]) -> str:
    import jwt
    from cryptography.hazmat.primitives import serialization

    claims, kid, pem = job
    if kid not in _SIGNING:
        _SIGNING[kid] = serialization.load_pem_private_key(pem, password=None)
    return jwt.encode(claims, _SIGNING[kid], algorithm="RS256", headers={"kid": kid})


@dataclass
class _Plan:
    """One event before signing: its token is `token_index` into the list of claims to sign."""

    ts: float
    service: str
    token_index: int
    fetched: float | None


Claims = list[tuple[dict[str, Any], str]]


def _plan(users: int, minutes: float, baseline_per_s: float, seed: int) -> tuple[list[_Plan], Claims]:
    rng = random.Random(seed)
    t0 = START.timestamp()
    before, outage = 120.0, minutes * 60
    rotation, recovery = t0 + before, t0 + before + outage
    end = recovery + 120.0
    removal = rotation + outage / 2
    tokens: list[tuple[dict[str, Any], str]] = []
    plans: list[_Plan] = []

    def token(service: str, sub: str, iat: float, kid: str, **extra: Any) -> int:
        claims = {"iss": ISSUER, "aud": f"api://{service}", "sub": sub, "iat": int(iat),
                  "exp": int(iat) + TOKEN_LIFETIME, "jti": f"j{len(tokens)}", **extra}
        tokens.append((claims, kid))
        return len(tokens) - 1

    # the baseline: a pool of tokens per service, failing for ordinary reasons, retried now and then
    pool: list[tuple[str, int]] = []
    for n in range(max(20, int(baseline_per_s * 30))):
        service = SERVICES[n % len(SERVICES)]
        kind = n % 5
        if kind == 0:  # long expired
            index = token(service, f"b{n}", t0 - 3 * TOKEN_LIFETIME, "k-old")
        elif kind == 1:  # expires during the run: crosses exp, leeway and skew window
            index = token(service, f"b{n}", t0 - TOKEN_LIFETIME + rng.uniform(0, before + outage), "k-old")
        elif kind == 2:
            index = token(service, f"b{n}", t0 - 60, "k-old", aud="api://elsewhere")
        else:  # valid: the rejection is not the token's fault
            index = token(service, f"b{n}", t0 - 60 + rng.uniform(0, 100), "k-old")
        pool.append((service, index))
    t = t0
    while t < end:
        t += rng.expovariate(baseline_per_s)
        service, index = rng.choice(pool)
        fetched = rotation - 3600 if t < rotation else rotation + 30
        plans.append(_Plan(t, service, index, fetched))

    # the outage: every user of a broken service retries its new-key token until it expires, then gets another
    for u in range(users):
        service = BROKEN[u % len(BROKEN)]
        reports_fetch = u % 4 != 0  # a quarter of the services' events lack service_jwks_fetched_at
        at = rotation + rng.uniform(0, outage * 0.5)
        while at < recovery:
            index = token(service, f"user-{u}", at - rng.uniform(0, 5), "k-new")
            expires = at + TOKEN_LIFETIME + rng.uniform(-40, 400)  # some clients keep retrying past exp
            step = rng.uniform(0.5, 2) * RETRY_EVERY
            while at < min(expires, recovery):
                plans.append(_Plan(at, service, index, (rotation - 300) if reports_fetch else None))
                at += step
        # and some old-key tokens retried after the old key's removal
        if u % 10 == 0:
            index = token(service, f"old-{u}", removal - 200, "k-old")
            for k in range(8):
                plans.append(_Plan(removal - 30 + k * 10, service, index, rotation - 300))
    plans.sort(key=lambda p: p.ts)
    return plans, tokens


def outage_stream(users: int = 3000, minutes: float = 8.0, baseline_per_s: float = 40.0, seed: int = 22,
                  quiet: bool = False) -> OutageFiles:
    """The stream's files (signed once, cached)."""
    folder = CACHE / f"outage-{users}-{minutes:g}-{baseline_per_s:g}-{seed}"
    files = OutageFiles(folder)
    if files.events.exists():
        return files
    from cryptography.hazmat.primitives import serialization
    from jwt.algorithms import RSAAlgorithm

    plans, claims = _plan(users, minutes, baseline_per_s, seed)
    if not quiet:
        print(f"signing {len(claims):,} RS256 tokens for an outage stream of {len(plans):,} events into {folder} "
              "(once; cached) …", flush=True)
    keys = _keys()
    pems = {kid: key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()) for kid, key in keys.items()}
    jobs = [(c, kid, pems[kid]) for c, kid in claims]
    if len(jobs) < 500:
        signed = [_sign(job) for job in jobs]
    else:
        with multiprocessing.get_context("fork").Pool(os.cpu_count() or 2) as pool:
            signed = pool.map(_sign, jobs, chunksize=200)
    tmp = folder.with_name(folder.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    def jwk(kid: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(keys[kid].public_key()))
        value.update(kid=kid, use="sig", alg="RS256")
        return value

    t0 = START.timestamp()
    rotation = t0 + 120.0
    removal = rotation + minutes * 30
    snapshots = [(t0 - 86400 * 30, ["k-old"])]
    at = t0 - 86400 * 30 + 3600
    while at < t0 + 120 + minutes * 60 + 120:  # the watcher's hourly polls, then every minute around the incident
        held = (["k-old"] if at < removal else []) + (["k-new"] if at >= rotation else [])
        snapshots.append((at, held))
        at += 3600 if at < t0 - 600 else 60
    snapshots += [(rotation, ["k-old", "k-new"]), (removal, ["k-new"])]
    snapshots.sort()
    with (tmp / "jwks.jsonl").open("w") as f:
        for when, held in snapshots:
            f.write(json.dumps({"issuer": ISSUER, "fetched_at": _stamp(datetime.fromtimestamp(when, UTC)),
                                "jwks": {"keys": [jwk(kid) for kid in held]}}) + "\n")
    with (tmp / "events.jsonl").open("w") as f:
        for n, plan in enumerate(plans):
            event: dict[str, Any] = {
                "event_id": f"o{n:09d}", "ts": _stamp(datetime.fromtimestamp(round(plan.ts, 3), UTC)),
                "service": plan.service, "token": signed[plan.token_index],
                "reported_error": "Signature verification failed", "client_id": "web-app",
            }
            if plan.fetched is not None:
                event["service_jwks_fetched_at"] = _stamp(datetime.fromtimestamp(plan.fetched, UTC))
            f.write(json.dumps(event, separators=(",", ":")) + "\n")
    (tmp / "jwtriage.toml").write_text(config_toml())
    _publish(tmp, folder)
    return files
