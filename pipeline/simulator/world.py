"""The world of the simulated window: when keys are published, signed with and removed, what
the JWKS watcher emits, and when each service's JWKS cache is fetched.

These are the day's fixed facts, scheduled once before any event is planned. The issuers'
plans (in `cast`) are fractions of the window; here they become epoch milliseconds snapped
to the watcher's 5-minute polls. The key timeline the judge uses is derived from the
snapshots this emits, not from the plans.
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
from datetime import UTC, datetime

from pipeline.simulator.cast import ISSUERS, SERVICES, ClientSpec, IssuerSpec, ServiceSpec
from pipeline.simulator.clock import HOUR, MINUTE, SECOND, dt, iso, ms
from pipeline.simulator.judge import Timeline
from pipeline.simulator.keys import load_keys
from pipeline.simulator.records import Record

_WATCHER_POLL = 5 * MINUTE
_REFRESH_COOLDOWN = 5 * MINUTE


class World:
    """The window `start`..`end` (epoch ms): signing lanes, snapshots, and JWKS fetch times.

    `rng` is the scenario's one random source; the world draws from it only while
    scheduling the caches, before anything else does.
    """

    def __init__(self, rng: random.Random, hours: float, start: datetime) -> None:
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("start must be timezone-aware (DESIGN.md: times are RFC 3339 with an offset)")
        if hours <= 0:
            raise ValueError("hours must be positive")
        self.rng = rng
        self.start = ms(start.astimezone(UTC).replace(microsecond=start.microsecond // 1000 * 1000))
        self.end = self.start + round(hours * HOUR)
        self.keys = load_keys()
        self.lanes: dict[tuple[str, str], list[tuple[str, int | None]]] = {}
        self.snapshot_sets: list[tuple[str, int, tuple[str, ...]]] = []
        self.snapshot_records: list[Record] = []
        self._schedule_issuers()
        self.timeline = Timeline(self.snapshot_sets)
        self.fetches: dict[str, list[int]] = {}
        self._schedule_caches()

    def at(self, fraction: float | None) -> int | None:
        return None if fraction is None else self.start + round(fraction * (self.end - self.start))

    # -- issuers and the watcher ----------------------------------------------------------------

    def _schedule_issuers(self) -> None:
        """Each issuer's signing lanes, then the snapshots the watcher emits, in time order."""
        for spec in ISSUERS:
            for lane, steps in spec.lanes:
                self.lanes[(spec.name, lane)] = [(kid, self.at(frac)) for kid, frac in steps]
            self._watch(spec)
        order = sorted(range(len(self.snapshot_records)), key=lambda i: (self.snapshot_sets[i][1], i))
        self.snapshot_records = [self.snapshot_records[i] for i in order]

    def _watch(self, spec: IssuerSpec) -> None:
        """The watcher's polls of one issuer: a snapshot when its key set changes, else a heartbeat."""
        first = self.start - spec.first_snapshot_before_s * SECOND
        polls = list(range(first, self.end + 1, _WATCHER_POLL))
        lives = [(kid, self._snap(polls, pub), self._snap(polls, rem)) for kid, pub, rem in spec.keys]
        last_kids: tuple[str, ...] | None = None
        last_emit = first
        for poll in polls:
            kids = tuple(
                kid for kid, pub, rem in lives if (pub is None or pub <= poll) and (rem is None or poll < rem)
            )
            if kids != last_kids or poll - last_emit >= spec.heartbeat_min * MINUTE:
                self.snapshot_sets.append((spec.name, poll, kids))
                document = {
                    "issuer": spec.url,
                    "fetched_at": iso(poll),
                    "jwks": {"keys": [self.keys[k].public_jwk for k in kids]},
                }
                self.snapshot_records.append(
                    Record(spec.url, json.dumps(document, separators=(",", ":")).encode(), dt(poll))
                )
                last_kids, last_emit = kids, poll

    def _snap(self, polls: list[int], fraction: float | None) -> int | None:
        """A publication or removal, at the first poll that sees it (after the window: never)."""
        moment = self.at(fraction)
        if moment is None:
            return None
        index = bisect.bisect_left(polls, moment)
        return polls[index] if index < len(polls) else self.end + HOUR

    def signing_key(self, issuer: str, lane: str, when: int) -> str:
        """The kid the issuer signs with on that lane at `when` (its plan, not what it published)."""
        current = self.lanes[(issuer, lane)][0][0]
        for kid, since in self.lanes[(issuer, lane)]:
            if since is None or since <= when:
                current = kid
        return current

    def key_for(self, client: ClientSpec, when: int) -> str:
        """The kid the client's tokens are signed with at `when` (a developer's own key if no issuer)."""
        if client.issuer is None:
            return "dev-laptop-rs"
        return self.signing_key(client.issuer, client.lane, when)

    def signing_since(self, client: ClientSpec, kid: str) -> int:
        """Since when the client's issuer signs with `kid` (long before the window if always)."""
        if client.issuer is None:
            return self.start - 10 * HOUR
        for key, since in self.lanes[(client.issuer, client.lane)]:
            if key == kid:
                return since if since is not None else self.start - 10 * HOUR
        return self.start - 10 * HOUR

    def switches(self, issuer: str) -> list[tuple[str, str, int, str]]:
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
        unknown kid."""
        for service in SERVICES:
            ttl = service.ttl_s * SECOND
            anchor = self._cache_anchor(service, ttl)
            first = anchor - ((anchor - self.start) // ttl + 1) * ttl  # the last fetch before the window
            scheduled = list(range(first, self.end + 1, ttl))
            fetches = list(scheduled)
            if service.refresh_on_unknown_kid:
                fetches += self._refreshes(service, scheduled)
            self.fetches[service.name] = sorted(fetches)

    def _cache_anchor(self, service: ServiceSpec, ttl: int) -> int:
        """One fetch of the service's TTL grid: where the story wants the first refresh after
        a publication to fall, else at a random phase."""
        if service.anchor is not None:
            issuer, low, high = service.anchor
            _, new, since, _ = self.switches(issuer)[0]
            seen = self.timeline.first_seen(issuer, new)
            if seen is not None:
                begin = max(since, seen)
                limit = min(seen + ttl, self.end)
                if limit > begin:
                    return begin + round((limit - begin) * self.rng.uniform(low, high))
                return seen + round(ttl * self.rng.uniform(0.05, 0.95))
        return self.start + round(ttl * self.rng.uniform(0.0, 1.0))

    def _refreshes(self, service: ServiceSpec, scheduled: list[int]) -> list[int]:
        """Refetches on an unknown kid after each switch, rate-limited to one per 5 minutes
        while the kid stays unknown (until the issuer publishes it, or a TTL fetch brings it)."""
        out: list[int] = []
        for issuer in service.issuers:
            for _, new, since, _ in self.switches(issuer):
                seen = self.timeline.first_seen(issuer, new)
                attempt = since + self.rng.randrange(1 * SECOND, 20 * SECOND)
                while attempt <= self.end:
                    last = scheduled[bisect.bisect_right(scheduled, attempt) - 1]
                    if seen is not None and last >= seen:
                        break  # its scheduled fetch already brought the key
                    out.append(attempt)
                    if seen is not None and attempt >= seen:
                        break
                    attempt += _REFRESH_COOLDOWN + self.rng.randrange(0, 30 * SECOND)
        return out

    def fetched_at(self, service: str, when: int) -> int:
        """The service's last JWKS fetch at `when` (its cache's age)."""
        fetches = self.fetches[service]
        return fetches[max(bisect.bisect_right(fetches, when) - 1, 0)]

    def first_fetch_after(self, service: str, when: int) -> int | None:
        fetches = self.fetches[service]
        index = bisect.bisect_left(fetches, when)
        return fetches[index] if index < len(fetches) else None
