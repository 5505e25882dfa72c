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

#: Library messages that name no single cause (DESIGN: they fall through to `unverifiable`), with the
#: causes each may mean. Nimbus's DefaultJWTProcessor says this when the key selector returns no key:
#: an alg outside the allowed set, or a kid the key set lacks. `unverifiable` is then the right reading.
AMBIGUOUS = {
    "Signed JWT rejected: Another algorithm expected, or no matching key(s) found": {
        "bad_alg",
        "unknown_kid",
        "stale_jwks",
        "retired_key",
        "unpublished_key",
    },
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
    cause: str  # the first failing check, in DESIGN.md's order
    findings: tuple[str, ...]  # every failing check the lab knows of, in that order
    attacks: tuple[str, ...]
    why: str


def expected(sent: Sent, leeway: int, skew_window: int, keys: dict[str, KeyLife], fetches: list[datetime]) -> Truth:
    findings: list[str] = []
    why: list[str] = []
    if sent.intent in INTENT_ATTACKS:
        findings.append("bad_alg")
        why.append(f"forged: {sent.intent}")
    if sent.intent == "wrong_audience":
        findings.append("audience_mismatch")
        why.append("the client's tokens name another audience")
    if sent.exp is not None:
        overshoot = sent.sent_at.timestamp() - (sent.exp + leeway)
        if overshoot >= 0:
            findings.append("clock_skew" if overshoot <= skew_window else "expired")
            why.append(f"{sent.intent}: exp passed {overshoot:.0f} s beyond the leeway")
    key_cause, key_why = _key_truth(sent, keys, fetches)
    if key_cause is not None:
        findings.append(key_cause)
        why.append(key_why)
    if not findings:
        return Truth("unexplained", (), (), key_why)
    return Truth(findings[0], tuple(findings), tuple(INTENT_ATTACKS.get(sent.intent, [])), "; ".join(why))


def _key_truth(sent: Sent, keys: dict[str, KeyLife], fetches: list[datetime]) -> tuple[str | None, str]:
    life = keys.get(sent.kid or "")
    if life is None:
        return None, f"kid {sent.kid} is none of the lab's keys"
    if life.removed is not None and life.removed <= sent.sent_at:
        return "retired_key", "its key was removed before the request"
    if life.published > sent.sent_at:
        return "unpublished_key", "its key was not yet published"
    before = [f for f in fetches if f <= sent.sent_at]
    if before and before[-1] < life.published:
        return "stale_jwks", "the service's last JWKS fetch predates the key"
    return None, "a valid token, its key published and fetched"


def agrees(
    truth: Truth, cause: str, attacks: list[str], confidence: str, message: str | None = None
) -> tuple[bool, bool]:
    """(agrees, only at the message level).

    A verdict from the token (`verified`, `inferred`) must be the first failing check, with the
    attacks. A verdict from the library's message alone (`reported`) agrees when it is the first
    check, or names another check that really failed (the library may test them in another order:
    it looks the kid up before it reads `exp`), or is what a message can say of one (MESSAGE_LEVEL),
    or is `unverifiable` for a message that names no single cause, one of which really failed (AMBIGUOUS).
    """
    if confidence != "reported":
        return cause == truth.cause and set(truth.attacks) <= set(attacks), False
    if cause == truth.cause:
        return True, False
    readable = set(truth.findings) | {MESSAGE_LEVEL[f] for f in truth.findings if f in MESSAGE_LEVEL}
    if cause == "unverifiable" and message in AMBIGUOUS:
        return bool(AMBIGUOUS[message] & set(truth.findings)), True
    return cause in readable, True
