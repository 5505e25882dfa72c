"""What to do about each cause: one line per cause, shared by explain, triage, the report and the dashboard.

Written for the person who owns the rejecting service (or the issuer, where the fix is
theirs). Keep each line short and concrete: the first thing to check, then the fix.
"""

from __future__ import annotations

from pipeline.models import Attack, Cause

REMEDIATION: dict[Cause, str] = {
    Cause.MALFORMED: "The caller is not sending a compact JWS: check what it puts in the Authorization header "
    "(truncation, a session cookie, double encoding, a 'Bearer ' prefix inside the token).",
    Cause.BAD_ALG: "Reject it and keep rejecting it: the token's alg is not one the issuer uses. If it is legitimate, "
    "add the alg to the issuer's `algorithms` only after the issuer confirms it signs with it.",
    Cause.UNKNOWN_KID: "No configured issuer ever published this key: the token comes from an issuer you do not "
    "watch (add it to the config and to jwks-watch) or it is forged.",
    Cause.UNPUBLISHED_KEY: "The issuer signed with a key before publishing it: publish new keys in the JWKS at least "
    "one cache lifetime (max TTL of every relying service) before signing with them.",
    Cause.STALE_JWKS: "The service's cached JWKS predates the signing key: refresh the JWKS once on an unknown kid "
    "(rate-limited), and keep the cache TTL shorter than the issuer's publish-to-sign overlap.",
    Cause.RETIRED_KEY: "The issuer removed a key while tokens signed with it were still valid: keep a retired key "
    "published until the last token it signed has expired (max token lifetime after the signing switch).",
    Cause.BAD_SIGNATURE: "The key is known but the signature does not verify: the token was altered in transit or "
    "forged; check proxies that rewrite tokens, then treat repeats from one client as an attack.",
    Cause.ISSUER_MISMATCH: "The token comes from an issuer this service does not accept (often a staging token in "
    "prod): fix the client's token endpoint, or add the issuer to the service's `issuers` if it should be trusted.",
    Cause.AUDIENCE_MISMATCH: "The token was minted for another API: the client must request a token with this "
    "service's audience (and, where authorized parties are set, from an allowed client).",
    Cause.CLOCK_SKEW: "A clock is off by less than the skew window: sync NTP on the client or issuer, or raise the "
    "service's leeway to cover the observed skew (a few seconds to a minute is normal).",
    Cause.EXPIRED: "The token had expired: the client is not refreshing tokens before use; fix its refresh logic "
    "(refresh ahead of exp, and on a 401).",
    Cause.NOT_YET_VALID: "The token is not valid yet (nbf or iat far in the future): a clock is badly wrong on the "
    "issuer or the client; fix its time source.",
    Cause.MISSING_CLAIM: "A claim the service requires is missing: request the right scope/claims from the issuer, "
    "or drop the claim from `required_claims` if the service does not need it.",
    Cause.VALID: "The token passes every check at that moment: the rejecting validator is misconfigured or its key "
    "cache is broken; compare its issuer, audience, algorithms and JWKS with jwtriage's config.",
    Cause.UNVERIFIABLE: "jwtriage could not see the token (none sampled, or a JWE): sample tokens for this service "
    "to get a verified cause.",
}

ATTACK_ADVICE: dict[Attack, str] = {
    Attack.ALG_NONE: "Unsigned token (alg none): block the client and confirm every validator rejects alg none.",
    Attack.KEY_CONFUSION: "HS* token against an asymmetric issuer (key confusion): make sure validators pin the "
    "algorithm per key and never use a public key as an HMAC secret.",
    Attack.JWK_INJECTION: "Embedded `jwk` header: validators must never take the verification key from the token.",
    Attack.JKU_INJECTION: "`jku`/`x5u` header: validators must never fetch keys from a URL the token names.",
    Attack.KID_INJECTION: "Path or injection characters in `kid`: check that no validator uses kid in a file path, "
    "SQL or shell command.",
    Attack.PSYCHIC_SIGNATURE: "ECDSA signature with r or s zero or out of range (CVE-2022-21449): patch any Java "
    "15-18 validator and block the client.",
}


def remediation(cause: Cause | str) -> str:
    """The remediation line for a cause code."""
    return REMEDIATION[Cause(cause)]
