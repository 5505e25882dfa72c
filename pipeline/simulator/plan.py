"""The story of the day: how many events of each kind, and when, where and for whom each happens.

The mix fixes the share of each kind; rotation kinds happen only inside the intervals the
world's schedule makes possible (a service whose cache predates a publication, a key removed
while long-lived tokens live on), everything else at (service, client) pairs weighted by the
service's traffic, more by day than by night. The planner only decides; the token builders
and the event writer make the lines.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.simulator.cast import (
    CLIENT_BY_NAME,
    LONG_LIVED,
    ORDINARY,
    SERVICE_BY_NAME,
    SERVICES,
    ServiceSpec,
)
from pipeline.simulator.clock import HOUR, MINUTE, SECOND
from pipeline.simulator.world import World

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

#: Which (service, client, weight) pairs each kind happens at; service traffic multiplies in.
_PAIRS: dict[str, tuple[tuple[str, str | None, float], ...]] = {
    "expired-token-reuse": tuple(
        (s, c, 1.0)
        for c in ("web-app", "mobile-app", "checkout-worker", "tv-app", "partner-sync", "partner-portal")
        for s in CLIENT_BY_NAME[c].services
    ),
    "clock-behind": tuple(
        (s, c, 1.0) for c in ("checkout-worker", "tv-app") for s in CLIENT_BY_NAME[c].services
    ),
    "clock-ahead": tuple((s, "kiosk-fleet", 1.0) for s in CLIENT_BY_NAME["kiosk-fleet"].services),
    "clock-far-ahead": tuple((s, "pos-terminal", 1.0) for s in CLIENT_BY_NAME["pos-terminal"].services),
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
    "dev-key": tuple((s, "dev-laptop", 1.0) for s in CLIENT_BY_NAME["dev-laptop"].services),
    "wrong-alg": (
        ("reports-api", "analytics-etl", 1.0), ("orders-api", "sso-bridge", 0.5),
        ("reports-api", "sso-bridge", 0.5),
    ),
    "malformed": tuple(
        (s, c, 1.0) for c in ("web-app", "mobile-app", "partner-sync") for s in CLIENT_BY_NAME[c].services
    ),
    "jwe": (("payments-api", "web-app", 1.0), ("partner-gateway", "partner-sync", 1.0)),
    "reported-only": (
        ("edge-proxy", None, 3.0), ("billing-legacy", "checkout-worker", 4.0),
        ("inventory-svc", "batch-exporter", 1.0), ("partner-gateway", "partner-sync", 1.0),
        ("payments-api", "web-app", 0.5), ("reports-api", "web-app", 1.0), ("orders-api", "mobile-app", 0.5),
    ),
}  # fmt: skip


@dataclass(slots=True)
class Plan:
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


class Planner:
    """Plans the window's events against the world's schedule, drawing from its one rng."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.rng = world.rng

    def plan(self, total: int) -> list[Plan]:
        """Every event to build, with its time, kind, service and client; in time order."""
        intervals = self.rotation_intervals()
        kinds = [k for k, _ in _MIX]
        counts = dict(zip(kinds, _allocate(total, [s for _, s in _MIX]), strict=True))
        for kind in intervals:  # a rotation that cannot happen at this size gives its share to expiry
            if not intervals[kind]:
                counts["expired-token-reuse"] += counts[kind]
                counts[kind] = 0
        plans: list[Plan] = []
        for kind in kinds:
            count = counts[kind]
            if kind in intervals and count:
                plans.extend(self._plan_rotations(kind, intervals[kind], count))
            elif kind == "attack":
                plans.extend(self._plan_attacks(count))
            elif kind in ("malformed", "bad-line"):
                plans.extend(self._plan_scattered(kind, count))
            else:
                plans.extend(self._plan_episodes(kind, count))
        plans.sort(key=lambda p: p.ts)
        return plans

    def _plan_rotations(self, kind: str, pool: list[_Interval], count: int) -> list[Plan]:
        """Rotation damage: intervals drawn by weight, a time in each where tokens are affected."""
        weights = [i.weight for i in pool]
        return [
            Plan(self.sample_interval(interval), kind, kind, interval.service, interval.client, interval.kid)
            for interval in self.rng.choices(pool, weights=weights, k=count)
        ]

    def _plan_scattered(self, kind: str, count: int) -> list[Plan]:
        """Malformed tokens and bad lines: every variant, at scattered times."""
        plans = []
        for variant in _round_robin(self.rng, _MALFORMED if kind == "malformed" else _BAD_LINES, count):
            service, client = self._pick(_PAIRS["malformed"])
            plans.append(Plan(self.diurnal_time(), kind, variant, service, client))
        return plans

    def _plan_episodes(self, kind: str, count: int) -> list[Plan]:
        """Clock and expiry trouble comes in episodes: a client retries a few times within a
        minute or two with the same token. Other kinds are episodes of one."""
        plans: list[Plan] = []
        while len(plans) < count:
            service, client = self._pick(_PAIRS[kind])
            when = self.diurnal_time(self._earliest_time(kind, service), None)
            size = 1 + int(self.rng.expovariate(1 / 3)) if kind in _EPISODIC else 1
            for _ in range(min(size, count - len(plans))):
                plans.append(Plan(min(when, self.world.end - 1), kind, kind, service, client))
                when += self.rng.randrange(3 * SECOND, 40 * SECOND)
        return plans

    def _plan_attacks(self, count: int) -> list[Plan]:
        """A burst: one attacker probing a few services for about half an hour."""
        world = self.world
        begin = world.at(0.72) or world.start
        length = max(min(30 * MINUTE, (world.end - world.start) // 12), MINUTE)
        end = min(begin + length, world.end)
        targets = (
            ("edge-proxy", 0.4),
            ("payments-api", 0.25),
            ("orders-api", 0.2),
            ("partner-gateway", 0.15),
        )
        plans = []
        for variant in _round_robin(self.rng, _ATTACKS, count):
            service = self.rng.choices([t for t, _ in targets], weights=[w for _, w in targets], k=1)[0]
            plans.append(Plan(self.rng.randrange(begin, end), "attack", variant, service, None))
        return plans

    def _earliest_time(self, kind: str, service: str) -> int:
        """A buggy validator's rejection is `valid` only once the service's own cache postdates
        its issuers' first snapshots; before that DESIGN.md's rule would call it stale_jwks."""
        if kind != "buggy-validator":
            return self.world.start
        earliest = max(self.world.timeline.earliest[i] for i in SERVICE_BY_NAME[service].issuers)
        return min(self.world.first_fetch_after(service, earliest) or self.world.start, self.world.end - 1)

    def _pick(self, pairs: Sequence[tuple[str, str | None, float]]) -> tuple[str, str | None]:
        weights = [w * SERVICE_BY_NAME[s].traffic for s, _, w in pairs]
        service, client, _ = self.rng.choices(pairs, weights=weights, k=1)[0]
        return service, client

    # -- times -------------------------------------------------------------------------------------

    def sample_interval(self, interval: _Interval) -> int:
        """A time in the interval, denser where more tokens are affected."""
        for _ in range(64):
            when = self.rng.randrange(interval.start, interval.end)
            if interval.decay_to is not None:
                weight = (interval.decay_to - when) / max(interval.decay_to - interval.start, 1)
            else:
                weight = min(1.0, max(0.05, (when - interval.ramp_from) / HOUR))
            if self.rng.random() < weight:
                return when
        return self.rng.randrange(interval.start, interval.end)

    def diurnal_time(self, low: int | None = None, high: int | None = None) -> int:
        """A time with more traffic in the (UTC) working day than at night."""
        low = self.world.start if low is None else low
        high = self.world.end if high is None else high
        for _ in range(64):
            when = self.rng.randrange(low, high)
            hour = (when // HOUR) % 24
            if self.rng.random() * 1.45 < 1 + 0.45 * math.sin(2 * math.pi * (hour - 9) / 24):
                return when
        return self.rng.randrange(low, high)

    # -- the rotation intervals ----------------------------------------------------------------------

    def rotation_intervals(self) -> dict[str, list[_Interval]]:
        """Where and when each service rejects tokens because of a rotation, per kind."""
        out: dict[str, list[_Interval]] = {
            "rotation-stale-cache": [],
            "rotation-unpublished-key": [],
            "rotation-retired-key": [],
        }
        for service in SERVICES:
            for issuer in service.issuers:
                for lane, new, since, old in self.world.switches(issuer):
                    ordinary = _callers(service.name, issuer, lane, ORDINARY)
                    out["rotation-unpublished-key"] += self._unpublished(service, issuer, new, since, ordinary)
                    out["rotation-stale-cache"] += self._stale(service, issuer, new, since, ordinary)
                    long_lived = _callers(service.name, issuer, lane, LONG_LIVED)
                    out["rotation-retired-key"] += self._retired(service, issuer, old, since, long_lived)
        return out

    def _unpublished(
        self, service: ServiceSpec, issuer: str, new: str, since: int, clients: list[str]
    ) -> list[_Interval]:
        """Signed with before it was published: every service rejects it until then."""
        seen = self.world.timeline.first_seen(issuer, new)
        published = seen if seen is not None else self.world.end
        if published <= since:
            return []
        end = min(published, self.world.end)
        return [_interval(service, client, new, since, end, since) for client in clients]

    def _stale(
        self, service: ServiceSpec, issuer: str, new: str, since: int, clients: list[str]
    ) -> list[_Interval]:
        """Published, but this service's cache predates it until its next fetch."""
        seen = self.world.timeline.first_seen(issuer, new)
        if seen is None:
            return []
        begin = max(since, seen)
        refresh = self.world.first_fetch_after(service.name, seen) or self.world.end
        end = min(refresh, self.world.end)
        if service.fetch_time != "reported":
            end = min(end, seen + service.judged_ttl_s * SECOND)  # DESIGN.md's heuristic horizon
        if end <= begin:
            return []
        return [_interval(service, client, new, begin, end, since) for client in clients]

    def _retired(
        self, service: ServiceSpec, issuer: str, old: str, since: int, clients: list[str]
    ) -> list[_Interval]:
        """The old key was removed while long-lived tokens signed with it live on."""
        removed = self.world.timeline.removed_at(issuer, old)
        if removed is None:
            return []
        dropped = self.world.first_fetch_after(service.name, removed)
        if dropped is None:
            return []
        out = []
        for client in clients:
            # The last token signed with the old key expires at `dies`.
            dies = since + CLIENT_BY_NAME[client].lifetime_s * SECOND
            end = min(self.world.end, dies - 2 * MINUTE)
            if end > dropped:
                # Old-key tokens die out linearly towards `dies`: weight by the mean survivors.
                alive = ((dies - dropped) + (dies - end)) / 2 / (dies - dropped)
                weight = service.traffic * (end - dropped) / HOUR * alive
                out.append(_Interval(service.name, client, old, dropped, end, weight, since, dies))
        return out


def _callers(service: str, issuer: str, lane: str, names: Sequence[str]) -> list[str]:
    """The clients among `names` holding that issuer's tokens of that lane and calling `service`."""
    return [
        n
        for n in names
        if CLIENT_BY_NAME[n].issuer == issuer
        and CLIENT_BY_NAME[n].lane == lane
        and service in CLIENT_BY_NAME[n].services
    ]


def _interval(service: ServiceSpec, client: str, kid: str, start: int, end: int, ramp_from: int) -> _Interval:
    """An interval whose weight is the service's traffic over it, ramped up over the hour from
    `ramp_from` as clients pick up new-key tokens."""
    length = max(end - start, 0)
    ramp = (
        sum(min(1.0, max(0.05, (start + length * (i + 0.5) / 16 - ramp_from) / HOUR)) for i in range(16))
        / 16
    )
    return _Interval(service.name, client, kid, start, end, service.traffic * length / HOUR * ramp, ramp_from)
