"""The cause and attack codes, and every fact a surface states about them: one record per code.

The string values of `Cause`, `Attack` and `Confidence` are a contract (DESIGN.md): scripts
outside the repo match on them, so never rename one. `pipeline.models` re-exports them.

Every label, meaning, remediation line, colour, display order and rotation flag that the
report, `triage`, `explain`, the dashboard and the demo show comes from `CAUSES` below;
SQL gets its cause lists from here as parameters. Adding a cause = a `Cause` member, its
`CauseInfo` record, and the check that produces it (`tests/test_causes.py` holds the rest
to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

from pipeline.text import human_duration


class Cause(StrEnum):
    """Why a token was rejected; `findings` lists these in check order."""

    MALFORMED = "malformed"
    BAD_ALG = "bad_alg"
    UNKNOWN_KID = "unknown_kid"
    UNPUBLISHED_KEY = "unpublished_key"
    STALE_JWKS = "stale_jwks"
    RETIRED_KEY = "retired_key"
    BAD_SIGNATURE = "bad_signature"
    ISSUER_MISMATCH = "issuer_mismatch"
    AUDIENCE_MISMATCH = "audience_mismatch"
    CLOCK_SKEW = "clock_skew"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    MISSING_CLAIM = "missing_claim"
    VALID = "valid"
    UNVERIFIABLE = "unverifiable"


class Attack(StrEnum):
    """Hostile patterns seen in a token, independent of its cause."""

    ALG_NONE = "alg_none"
    KEY_CONFUSION = "key_confusion"
    JWK_INJECTION = "jwk_injection"
    JKU_INJECTION = "jku_injection"
    KID_INJECTION = "kid_injection"
    PSYCHIC_SIGNATURE = "psychic_signature"


class Confidence(StrEnum):
    """`verified`: we judged the token itself; `inferred`: the token, but the cause rests on a guess
    about the service's key cache (`stale_jwks` without its fetch time); `reported`: only the validator's message."""

    VERIFIED = "verified"
    REPORTED = "reported"
    INFERRED = "inferred"


#: What each confidence means, for the surfaces that show it.
CONFIDENCE_MEANINGS: dict[Confidence, str] = {
    Confidence.VERIFIED: "jwtriage re-validated the token itself",
    Confidence.INFERRED: (
        "the token was re-validated, but the cause rests on the service's cache TTL (it reports no JWKS fetch "
        "time): likely, not proven"
    ),
    Confidence.REPORTED: "no token: the rejecting validator's own message is the only evidence",
}


def confidence_text(counts: list[dict[str, object]]) -> str:
    """`confidence_counts` rows as one phrase: "16,108 verified (80.9%) · 1,773 inferred (8.9%) · …"."""
    by = {str(r["confidence"]): r for r in counts}
    order = [c.value for c in (Confidence.VERIFIED, Confidence.INFERRED, Confidence.REPORTED)]
    shown = [c for c in order + sorted(set(by) - set(order)) if c in by]
    return " · ".join(f"{int(str(by[c]['events'])):,} {c} ({by[c]['percent']}%)" for c in shown)


#: A key rotation's two steps; a rotation-damage cause blames the step of its token's key.
Step = Literal["added", "removed"]


@dataclass(frozen=True, slots=True)
class CauseInfo:
    """Everything said about one cause.

    `key_timing`: the classifier's rule (DESIGN.md, re-validation step 8): the verdict only
    for an otherwise valid token, else a later finding. `step`: the cause is rotation damage
    (DESIGN.md "Rotation damage"), blamed on the rotation step that added (or removed) the
    token's key; None for every other cause. Events with an attack label are never counted
    as rotation damage, whatever their cause.
    """

    cause: Cause
    label: str
    meaning: str  # DESIGN.md's cause table, one sentence
    remediation: str  # for the person who owns the rejecting service (or the issuer, where the fix is theirs)
    colour: str  # one palette for the report and the dashboard; tests keep the colours apart
    key_timing: bool = False
    step: Step | None = None
    #: For rotation damage: whose fault, as a clause after "…, N minutes after <issuer> added kid K: ".
    #: `{issuer}` is the issuer's name, `{keys}` "key" or "keys".
    blame: str = ""

    @property
    def rotation_damage(self) -> bool:
        return self.step is not None


#: Display order: the causes a rotation produces first (stacked at the bottom of charts), then the token's faults.
CAUSES: tuple[CauseInfo, ...] = (
    CauseInfo(
        Cause.STALE_JWKS,
        "Stale JWKS cache",
        "the key was published before the event but the service's key set predates it",
        "The service's cached JWKS predates the signing key: refresh the JWKS once on an unknown kid "
        "(rate-limited), and keep the cache TTL shorter than the issuer's publish-to-sign overlap.",
        "#e8710a",
        key_timing=True,
        step="added",
        blame="the services' JWKS caches predate the new {keys}",
    ),
    CauseInfo(
        Cause.UNPUBLISHED_KEY,
        "Key not yet published",
        "the signing key verifies, but the issuer published it only after the event",
        "The issuer signed with a key before publishing it: publish new keys in the JWKS at least "
        "one cache lifetime (max TTL of every relying service) before signing with them.",
        "#fcc934",
        key_timing=True,
        step="added",
        blame="{issuer} signed with the key before publishing it",
    ),
    CauseInfo(
        Cause.RETIRED_KEY,
        "Retired key",
        "the key had been removed from the issuer's JWKS before the event",
        "The issuer removed a key while tokens signed with it were still valid: keep a retired key "
        "published until the last token it signed has expired (max token lifetime after the signing switch).",
        "#b31412",
        key_timing=True,
        step="removed",
        blame="tokens signed with the removed key are still in use",
    ),
    CauseInfo(
        Cause.UNKNOWN_KID,
        "Unknown signing key",
        "no key of any configured issuer, at any time observed, matches (whatever `iss` says)",
        "No configured issuer ever published this key: the token comes from an issuer you do not "
        "watch (add it to the config and to jwks-watch) or it is forged.",
        "#7b1fa2",
    ),
    CauseInfo(
        Cause.BAD_SIGNATURE,
        "Bad signature",
        "the key is known and allowed, the signature does not verify",
        "The key is known but the signature does not verify: the token was altered in transit or "
        "forged; check proxies that rewrite tokens, then treat repeats from one client as an attack.",
        "#e08ff0",
    ),
    CauseInfo(
        Cause.BAD_ALG,
        "Disallowed algorithm",
        "`alg` is none (any case), outside the `algorithms` of the service's issuers, or does not fit the key's type",
        "Reject it and keep rejecting it: the token's alg is not one the issuer uses. If it is legitimate, "
        "add the alg to the issuer's `algorithms` only after the issuer confirms it signs with it.",
        "#d01884",
    ),
    CauseInfo(
        Cause.ISSUER_MISMATCH,
        "Issuer mismatch",
        "it verifies with a key of an issuer the service does not accept, or its `iss` is not one the service accepts",
        "The token comes from an issuer this service does not accept (often a staging token in "
        "prod): fix the client's token endpoint, or add the issuer to the service's `issuers` if it should be trusted.",
        "#174ea6",
    ),
    CauseInfo(
        Cause.AUDIENCE_MISMATCH,
        "Audience mismatch",
        "the service's audience is not in `aud` (a missing `aud` included), or `azp` is not an authorized party",
        "The token was minted for another API: the client must request a token with this "
        "service's audience (and, where authorized parties are set, from an allowed client).",
        "#4285f4",
    ),
    CauseInfo(
        Cause.CLOCK_SKEW,
        "Clock skew",
        "exp, nbf or iat fails by no more than `skew_window_seconds` beyond the leeway",
        "A clock is off by less than the skew window: sync NTP on the client or issuer, or raise the "
        "service's leeway to cover the observed skew (a few seconds to a minute is normal).",
        "#9ad0a0",
    ),
    CauseInfo(
        Cause.EXPIRED,
        "Expired",
        "exp passed longer ago than the skew window",
        "The token had expired: the client is not refreshing tokens before use; fix its refresh logic "
        "(refresh ahead of exp, and on a 401).",
        "#1e8e3e",
    ),
    CauseInfo(
        Cause.NOT_YET_VALID,
        "Not yet valid",
        "nbf (or iat) lies further in the future than the skew window",
        "The token is not valid yet (nbf or iat far in the future): a clock is badly wrong on the "
        "issuer or the client; fix its time source.",
        "#0d4d26",
    ),
    CauseInfo(
        Cause.MISSING_CLAIM,
        "Missing claim",
        "a claim in `required_claims` is absent",
        "A claim the service requires is missing: request the right scope/claims from the issuer, "
        "or drop the claim from `required_claims` if the service does not need it.",
        "#12b5cb",
    ),
    CauseInfo(
        Cause.MALFORMED,
        "Malformed token",
        "not a compact JWS: segments, base64url, header/payload not a JSON object, `alg` not a string, "
        "a time claim not a number",
        "The caller is not sending a compact JWS: check what it puts in the Authorization header "
        "(truncation, a session cookie, double encoding, a 'Bearer ' prefix inside the token).",
        "#a8c7fa",
    ),
    CauseInfo(
        Cause.VALID,
        "Valid token (validator fault)",
        "the token passes every check at the event's time: the rejection is not the token's fault",
        "The token passes every check at that moment: the rejecting validator is misconfigured or its key "
        "cache is broken; compare its issuer, audience, algorithms and JWKS with jwtriage's config.",
        "#5f6368",
    ),
    CauseInfo(
        Cause.UNVERIFIABLE,
        "Unverifiable",
        "a JWE (five segments); or no token and a reported error that says nothing known",
        "jwtriage could not see the token (none sampled, or a JWE): sample tokens for this service "
        "to get a verified cause.",
        "#dadce0",
    ),
)


@dataclass(frozen=True, slots=True)
class AttackInfo:
    """What to do about one attack pattern."""

    attack: Attack
    advice: str


ATTACKS: tuple[AttackInfo, ...] = (
    AttackInfo(
        Attack.ALG_NONE,
        "Unsigned token (alg none): block the client and confirm every validator rejects alg none.",
    ),
    AttackInfo(
        Attack.KEY_CONFUSION,
        "HS* token against an asymmetric issuer (key confusion): make sure validators pin the "
        "algorithm per key and never use a public key as an HMAC secret.",
    ),
    AttackInfo(
        Attack.JWK_INJECTION,
        "Embedded `jwk` header: validators must never take the verification key from the token.",
    ),
    AttackInfo(
        Attack.JKU_INJECTION,
        "`jku`/`x5u` header: validators must never fetch keys from a URL the token names.",
    ),
    AttackInfo(
        Attack.KID_INJECTION,
        "Path or injection characters in `kid`: check that no validator uses kid in a file path, SQL or shell command.",
    ),
    AttackInfo(
        Attack.PSYCHIC_SIGNATURE,
        "ECDSA signature with r or s zero or out of range (CVE-2022-21449): patch any Java "
        "15-18 validator and block the client.",
    ),
)

#: The palette's hue families: causes with the same kind of owner share a hue, in shades told apart by
#: lightness (tests/test_causes.py keeps every two colours apart and each family within one hue range).
CAUSE_FAMILIES: dict[str, tuple[Cause, ...]] = {
    "rotation damage": (Cause.UNPUBLISHED_KEY, Cause.STALE_JWKS, Cause.RETIRED_KEY),  # amber, orange, red
    "attack-adjacent": (Cause.BAD_SIGNATURE, Cause.BAD_ALG, Cause.UNKNOWN_KID),  # lilac, magenta, purple
    "client or config": (  # blues
        Cause.MALFORMED,
        Cause.MISSING_CLAIM,
        Cause.AUDIENCE_MISMATCH,
        Cause.ISSUER_MISMATCH,
    ),
    "token time": (Cause.CLOCK_SKEW, Cause.EXPIRED, Cause.NOT_YET_VALID),  # greens
    "not the token's fault": (Cause.UNVERIFIABLE, Cause.VALID),  # greys
}

# -- what the surfaces read (all derived from the records above) -----------------------------

CAUSE_INFO: dict[Cause, CauseInfo] = {info.cause: info for info in CAUSES}
CAUSE_LABELS: dict[Cause, str] = {info.cause: info.label for info in CAUSES}
REMEDIATION: dict[Cause, str] = {info.cause: info.remediation for info in CAUSES}
CAUSE_COLOURS: dict[Cause, str] = {info.cause: info.colour for info in CAUSES}
#: Cause codes in display order (chart stacking, legends, cause pickers).
CAUSE_ORDER: tuple[str, ...] = tuple(info.cause.value for info in CAUSES)
#: The key-timing causes: the verdict only for an otherwise valid token.
KEY_TIMING_CAUSES: frozenset[Cause] = frozenset(info.cause for info in CAUSES if info.key_timing)
#: Rotation damage (DESIGN.md): what every surface counts as "caused by a key rotation" (attack-free events only).
ROTATION_DAMAGE: tuple[str, ...] = tuple(info.cause.value for info in CAUSES if info.rotation_damage)
#: The rotation-damage causes each step produces on its own key: stale_jwks/unpublished_key after an addition, ...
STEP_CAUSES: dict[str, tuple[str, ...]] = {
    step: tuple(info.cause.value for info in CAUSES if info.step == step) for step in ("added", "removed")
}
ATTACK_ADVICE: dict[Attack, str] = {info.attack: info.advice for info in ATTACKS}

_RANK = {code: n for n, code in enumerate(CAUSE_ORDER)}


def cause_info(code: str) -> CauseInfo | None:
    """The record of a cause code; None for a string that is not one (a store written by a newer jwtriage)."""
    try:
        return CAUSE_INFO[Cause(code)]
    except ValueError:
        return None


def cause_label(code: str) -> str:
    """The readable label ("Stale JWKS cache"); an unknown code stands for itself."""
    info = cause_info(code)
    return info.label if info else code


def cause_colour(code: str) -> str | None:
    info = cause_info(code)
    return info.colour if info else None


def remediation(code: str) -> str:
    """The remediation line for a cause code; empty for an unknown code."""
    info = cause_info(code)
    return info.remediation if info else ""


def cause_rank(code: str) -> int:
    """A code's place in the display order; unknown codes after every known one."""
    return _RANK.get(code, len(_RANK))


def attack_advice(code: str) -> str:
    """What to do about an attack code; empty for an unknown code."""
    try:
        return ATTACK_ADVICE[Attack(code)]
    except ValueError:
        return ""


def issuer_fault_text(fault: dict[str, Any]) -> str:
    """One sentence for a row of `pipeline.queries.issuer_faults`: what the issuer did and what it caused."""
    issuer = urlsplit(fault["issuer"]).netloc or fault["issuer"]
    services = ", ".join(fault["services"] or [])
    if fault["fault"] == "signed_before_published":
        lead = fault["lead_s"]
        early = f"{human_duration(lead)} " if lead is not None and lead > 0 else ""
        return (
            f"{issuer} signed with {fault['kid']} {early}before publishing it: {fault['failures']:,} "
            f"unpublished_key failures in {services} (no JWKS cache could have had the key)."
        )
    if fault["fault"] == "removed_in_use":
        return (
            f"{issuer} removed {fault['kid']} while tokens signed with it were still valid: "
            f"{fault['failures']:,} retired_key failures in {services}."
        )
    return f"{issuer}'s JWKS dropped {fault['kid']} and published it again (snapshots that flap)."


def finding_remediation(
    cause: str,
    events: int = 0,
    attack_events: int = 0,
    attacks: tuple[str, ...] | list[str] = (),
    with_fetch_time: int | None = None,
) -> str:
    """What to do about a finding (a cause seen on `events` events), as its evidence says, not by cause alone.

    `attack_events` of them carry attack labels (`attacks`, the kinds); `with_fetch_time` of
    them report the service's JWKS fetch time (None: not known). Attack-labelled tokens are
    never to be trusted: no advice adds their kid or issuer to the config.
    """
    kinds = ", ".join(attacks) or "see Attacks"
    if attack_events and attack_events >= events:
        return (
            f"These tokens carry attack patterns ({kinds}): treat them as an attack, not a misconfiguration. "
            "Block the client; never add their kid or issuer to the config or to jwks-watch."
        )
    forged = (
        f" {attack_events:,} of them carry attack patterns ({kinds}): treat those as an attack and never trust "
        "their kid or issuer."
        if attack_events
        else ""
    )
    if cause == Cause.UNKNOWN_KID:
        return (
            "No configured issuer ever published this key. Find the client: only if its issuer is one you trust "
            "(confirm with the issuer's owner, never from the token) add it to the config and to jwks-watch; "
            "otherwise it is a developer's or a foreign key, or forged." + forged
        )
    if cause == Cause.STALE_JWKS and with_fetch_time is not None and 2 * with_fetch_time < events:
        share = "none" if with_fetch_time == 0 else f"only {with_fetch_time:,} of {events:,}"
        return (
            f"Inferred: {share} of these events report when the service fetched its JWKS, so jwtriage "
            "judged by the key's age; confirm the service's cache TTL (set `jwks_cache_ttl_seconds`, or have it "
            "report `service_jwks_fetched_at`). " + remediation(cause)
        )
    return remediation(cause) + forged
