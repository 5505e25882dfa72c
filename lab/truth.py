"""What happened, as the lab knows it: the cause of each rejection from the lab's own records.

The lab knows each request's intent, the token's kid and exp and when it was sent; when each
key was published, switched to and removed (the moments Keycloak's admin API confirmed it);
and when each service fetched its JWKS (read from the services). The cause follows
DESIGN.md's order: a forged token is `bad_alg`, then the audience, then time (overshoot past
the service's leeway up to the skew window is `clock_skew`, beyond it `expired`), and only an
otherwise valid token is rotation damage: `retired_key` after its key was removed,
`unpublished_key` before it was published, `stale_jwks` when the service's last fetch predates
the key. Anything else is `unexplained` (a rejection the lab cannot account for).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lab.traffic import Sent

#: What a library's message alone can say, per DESIGN.md: it cannot tell rotation damage from an
#: unknown kid, nor `clock_skew` from `expired` when it states no times. A verdict from a message
#: alone (`confidence: reported`) agrees when it is the cause or this coarser reading of it.
MESSAGE_LEVEL = {
    "stale_jwks": "unknown_kid",
    "retired_key": "unknown_kid",
    "unpublished_key": "unknown_kid",
    "clock_skew": "expired",
}

INTENT_ATTACKS = {"alg_none": ["alg_none"], "key_confusion": ["key_confusion"]}


@dataclass
class KeyLife:
    kid: str
    published: datetime
    switched: datetime | None = None
    removed: datetime | None = None


@dataclass(frozen=True)
class Truth:
    cause: str
    attacks: tuple[str, ...]
    why: str


def expected(sent: Sent, leeway: int, skew_window: int, keys: dict[str, KeyLife], fetches: list[datetime]) -> Truth:
    if sent.intent in INTENT_ATTACKS:
        return Truth("bad_alg", tuple(INTENT_ATTACKS[sent.intent]), f"forged: {sent.intent}")
    if sent.intent == "wrong_audience":
        return Truth("audience_mismatch", (), "the client's tokens name another audience")
    if sent.exp is not None:
        overshoot = sent.sent_at.timestamp() - (sent.exp + leeway)
        if overshoot >= 0:
            cause = "clock_skew" if overshoot <= skew_window else "expired"
            return Truth(cause, (), f"{sent.intent}: exp passed {overshoot:.0f} s beyond the leeway")
    return _key_truth(sent, keys, fetches)


def _key_truth(sent: Sent, keys: dict[str, KeyLife], fetches: list[datetime]) -> Truth:
    life = keys.get(sent.kid or "")
    if life is None:
        return Truth("unexplained", (), f"kid {sent.kid} is none of the lab's keys")
    if life.removed is not None and life.removed <= sent.sent_at:
        return Truth("retired_key", (), "its key was removed before the request")
    if life.published > sent.sent_at:
        return Truth("unpublished_key", (), "its key was not yet published")
    before = [f for f in fetches if f <= sent.sent_at]
    if before and before[-1] < life.published:
        return Truth("stale_jwks", (), "the service's last JWKS fetch predates the key")
    return Truth("unexplained", (), "a valid token, its key published and fetched")


def agrees(truth: Truth, cause: str, attacks: list[str], confidence: str) -> tuple[bool, bool]:
    """(agrees, only at the message level): a verified verdict must match cause and attacks exactly."""
    if confidence == "reported":
        if cause == truth.cause:
            return True, False
        return MESSAGE_LEVEL.get(truth.cause) == cause, True
    return cause == truth.cause and set(truth.attacks) <= set(attacks), False
