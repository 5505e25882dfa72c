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

This module is the day itself: it plans the events (`plan`), has each one's token built
(`builders`, `tokens`), writes the event line the rejecting service would log, and asks
the judge (`judge`) for its true cause. The one `random.Random(seed)` is drawn from in a
fixed order: the world's cache schedule, then the plan, then each event as it is built.

Truth follows DESIGN.md's re-validation order exactly. Each event is planned with an
intended cause and built so that only that check fails; the truth row is then computed
by an independent judge (`pipeline.simulator.judge`) from the token text, which key really
signed it, and the key timeline derived from the JWKS snapshots as emitted (never from the
internal publication times), so the two can be cross-checked.

Raw tokens appear only in the events and samples streams, never in the truth.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.models import Cause
from pipeline.simulator.builders import BUILDERS
from pipeline.simulator.cast import CLIENT_BY_NAME, REPORTED_ERRORS, SERVICE_BY_NAME, STYLE_MESSAGES, ServiceSpec
from pipeline.simulator.clock import DEFAULT_START, dt, iso
from pipeline.simulator.judge import Judge
from pipeline.simulator.output import config_toml
from pipeline.simulator.plan import Plan, Planner
from pipeline.simulator.records import Record, Scenario
from pipeline.simulator.tokens import Minter, Token
from pipeline.simulator.world import World

__all__ = ["Record", "Scenario", "simulate", "simulate_with_intent"]


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
    return simulate_with_intent(seed, events, hours, start, unique_tokens)[0]


def simulate_with_intent(
    seed: int, events: int, hours: float, start: datetime | None, unique_tokens: bool
) -> tuple[Scenario, list[Cause | None]]:
    """`simulate`, plus the cause each event was built to have (for the cross-check in tests)."""
    if events < 0:
        raise ValueError("events must be >= 0")
    world = World(random.Random(seed), hours, start or DEFAULT_START)
    writer = EventWriter(world, unique_tokens)
    built = [writer.build(plan) for plan in Planner(world).plan(events)]
    truth = [{"line": n, **b.truth} for n, b in enumerate(built, 1)]
    scenario = Scenario(
        config_toml=config_toml(seed),
        snapshots=list(world.snapshot_records),
        events=[b.record for b in built],
        samples=sorted(writer.samples, key=lambda r: r.ts),
        truth=truth,
    )
    return scenario, [b.intended for b in built]


@dataclass(frozen=True, slots=True)
class Built:
    """One events line, its truth row (without `line`), and the cause it was built to have."""

    record: Record
    truth: dict[str, Any]
    intended: Cause | None


class EventWriter:
    """Writes each planned event as the rejecting service would log it, with its truth row;
    collects the samples the token sampler sends on the way."""

    def __init__(self, world: World, unique_tokens: bool) -> None:
        self.world = world
        self.rng = world.rng
        self.minter = Minter(world, unique_tokens)
        self.judge = Judge(world.timeline)
        self.event_ids: set[str] = set()
        self.samples: list[Record] = []

    def build(self, plan: Plan) -> Built:
        service = SERVICE_BY_NAME.get(plan.service)
        if plan.kind == "bad-line":
            return self._bad_line(plan)
        assert service is not None
        client = CLIENT_BY_NAME[plan.client] if plan.client else None
        if plan.kind == "reported-only":
            return self._reported_only(plan, service)
        builder = BUILDERS[plan.kind]
        token, intended, message_key, client_id = builder(self.minter, plan, service, client)
        return self._token_event(plan, service, token, intended, message_key, client_id)

    def _new_ids(self) -> tuple[str, str]:
        while True:
            event_id = f"evt-{self.rng.getrandbits(48):012x}"
            if event_id not in self.event_ids:
                self.event_ids.add(event_id)
                return event_id, f"req-{self.rng.getrandbits(64):016x}"

    def _event_head(
        self, plan: Plan, service: ServiceSpec, event_id: str, client_id: str | None, request_id: str
    ) -> dict[str, Any]:
        """The fields every event starts with, in the order services write them."""
        event: dict[str, Any] = {"event_id": event_id, "ts": iso(plan.ts, service.utc_offset_min)}
        event["service"] = service.name
        if client_id is not None:
            event["client_id"] = client_id
        event["request_id"] = request_id
        return event

    def _token_event(
        self,
        plan: Plan,
        service: ServiceSpec,
        token: Token,
        intended: Cause,
        message_key: str,
        client_id: str | None,
    ) -> Built:
        """An event carrying a token (inline or by fingerprint), judged unless never sampled."""
        event_id, request_id = self._new_ids()
        event = self._event_head(plan, service, event_id, client_id, request_id)
        if token.mode == "inline":
            event["token"] = token.text
        else:
            event["token_sha256"] = token.sha256
        message = STYLE_MESSAGES[service.style].get(message_key)
        if message is not None and (token.mode == "unsampled" or self.rng.random() < 0.85):
            event["reported_error"] = message
        fetched: int | None = None
        if service.fetch_time == "reported":
            fetched = self.world.fetched_at(service.name, plan.ts)
            event["service_jwks_fetched_at"] = iso(fetched, service.utc_offset_min)
        elif service.fetch_time == "null":
            event["service_jwks_fetched_at"] = None
        self._sample(token, plan, service)
        label = plan.kind if plan.variant == plan.kind else f"{plan.kind}-{plan.variant}"
        if token.mode == "unsampled":
            cause = REPORTED_ERRORS.get(event.get("reported_error", ""), Cause.UNVERIFIABLE)
            truth = _truth(event_id, cause, [], "reported", label)
            intended = cause
        else:
            cause, attacks = self.judge.token(token.text, token.signer, service, plan.ts, fetched)
            # stale_jwks without the service's fetch time rests on its cache TTL: DESIGN.md's `inferred`.
            confidence = "inferred" if cause is Cause.STALE_JWKS and fetched is None else "verified"
            truth = _truth(event_id, cause, attacks, confidence, label)
        value = json.dumps(event, separators=(",", ":")).encode()
        return Built(Record(service.name, value, dt(plan.ts)), truth, intended)

    def _sample(self, token: Token, plan: Plan, service: ServiceSpec) -> None:
        """The sampler sends a sampled token once, shortly after its first event (and now and
        then again, as a real sampler does)."""
        if token.mode == "sampled" and (token.samples_sent == 0 or self.rng.random() < 0.02):
            token.samples_sent += 1
            sampled_at = plan.ts + self.rng.randrange(50, 1500)
            sample = {"token": token.text, "sampled_at": iso(sampled_at), "service": service.name}
            self.samples.append(Record(None, json.dumps(sample, separators=(",", ":")).encode(), dt(sampled_at)))

    def _reported_only(self, plan: Plan, service: ServiceSpec) -> Built:
        """No token at all: the validator's message is the only evidence (or there is none)."""
        event_id, request_id = self._new_ids()
        messages = sorted(set(STYLE_MESSAGES[service.style].values()))
        message = self.rng.choice(messages) if messages and self.rng.random() < 0.9 else None
        event = self._event_head(plan, service, event_id, plan.client, request_id)
        if message is not None:
            event["reported_error"] = message
        if service.fetch_time == "reported":
            event["service_jwks_fetched_at"] = iso(self.world.fetched_at(service.name, plan.ts), service.utc_offset_min)
        cause = REPORTED_ERRORS[message] if message is not None else Cause.UNVERIFIABLE
        truth = _truth(event_id, cause, [], "reported", "reported-only" if message else "no-token-no-message")
        value = json.dumps(event, separators=(",", ":")).encode()
        return Built(Record(service.name, value, dt(plan.ts)), truth, cause)

    def _bad_line(self, plan: Plan) -> Built:
        """A line that is not a valid event; DESIGN.md: it becomes a dead letter with a reason."""
        event_id, request_id = self._new_ids()
        service = SERVICE_BY_NAME[plan.service]
        stamp = iso(plan.ts, service.utc_offset_min)
        client = CLIENT_BY_NAME["web-app"]
        reason: str
        key: str | None = service.name
        listed: str | None = event_id  # None when the line cannot be read, so names no event
        if plan.variant == "not-json":
            token = self.minter.ordinary(client, plan.ts).text
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
            token = self.minter.ordinary(client, plan.ts).text
            value = json.dumps({"event_id": event_id, "service": service.name, "token": token}).encode()
            reason = "missing_ts"
        elif plan.variant == "naive-ts":
            naive = dt(plan.ts).replace(tzinfo=None).isoformat(timespec="milliseconds")
            event = {"event_id": event_id, "ts": naive, "service": service.name, "request_id": request_id,
                     "reported_error": "Jwt is expired"}  # fmt: skip
            value = json.dumps(event).encode()
            reason = "naive_ts"
        else:
            key = "search-api"
            token = self.minter.ordinary(client, plan.ts).text
            event = {"event_id": event_id, "ts": iso(plan.ts), "service": "search-api", "token": token,
                     "request_id": request_id}  # fmt: skip
            value = json.dumps(event, separators=(",", ":")).encode()
            reason = "unknown_service"
        truth = _truth(listed, None, [], None, f"bad-line-{plan.variant}", dead_letter=reason)
        return Built(Record(key, value, dt(plan.ts)), truth, None)


def _truth(
    event_id: str | None,
    cause: Cause | None,
    attacks: list[str],
    confidence: str | None,
    label: str,
    dead_letter: str | None = None,
) -> dict[str, Any]:
    """A truth row, without its `line` (added once every event is built)."""
    return {
        "event_id": event_id,
        "cause": cause.value if cause is not None else None,
        "attacks": attacks,
        "confidence": confidence,
        "dead_letter": dead_letter,
        "scenario": label,
    }
