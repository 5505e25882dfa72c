"""The reported-error table: one generated test per row, plus the guards around it."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.engine.reported import (
    AWS_APIGW,
    ENVOY,
    GO_JOSE,
    GO_OIDC,
    GOLANG_JWT,
    IDENTITYMODEL,
    JOSE,
    JOSERFC,
    JSONWEBTOKEN,
    JWX,
    KEYCLOAK,
    KEYFUNC,
    KONG,
    MAX_SCAN_CHARS,
    NIMBUS,
    PYJWT,
    REPORTED_ERRORS,
    SPRING,
    ReportedPattern,
    cause_from_reported,
    match_reported,
)
from pipeline.models import Cause

#: Validators the table must cover, each with at least three rows.
REQUIRED_VALIDATORS = (
    ENVOY,
    IDENTITYMODEL,
    PYJWT,
    JOSE,
    JSONWEBTOKEN,
    GOLANG_JWT,
    GO_JOSE,
    SPRING,
    KONG,
    AWS_APIGW,
    KEYFUNC,
    JWX,
    GO_OIDC,
    KEYCLOAK,
    JOSERFC,
    NIMBUS,
)

#: Real messages that say nothing known about the token: no row may claim them.
UNINFORMATIVE = (
    "invalid token",
    "Invalid token",
    "Unauthorized",
    '{"message":"Unauthorized"}',
    'Bearer error="invalid_token"',
    'Bearer scope="" error="invalid_token"',
    # Envoy jwt_authn: no token, or its JWKS could not be had.
    "Jwt is missing",
    "Jwks remote fetch is failed",
    "Jwks doesn't have any valid public key",
    "Found multiple Jwt tokens",
    # Microsoft.IdentityModel: the service's own configuration.
    "IDX10500: Signature validation failed. No security keys were provided to validate the signature.",
    "IDX10204: Unable to validate issuer. validationParameters.ValidIssuer is null or whitespace AND "
    "validationParameters.ValidIssuers is null or empty.",
    # jsonwebtoken: no token, or the app's key callback returned nothing.
    "jwt must be provided",
    "secret or public key must be provided",
    # golang-jwt: the keyfunc failed, for a reason of the app's own.
    "token is unverifiable: error while executing keyfunc: connection refused",
    # panva/jose: a JWKS fetch timeout, or a claim check on a claim we do not judge.
    "request timed out",
    "ERR_JWT_CLAIM_VALIDATION_FAILED",
    'unexpected "sub" claim value',
    # Spring Security / Nimbus: the JWK Set could not be fetched or parsed.
    "An error occurred while attempting to decode the Jwt: Couldn't retrieve remote JWK set: Read timed out",
    "An error occurred while attempting to decode the Jwt: Malformed Jwk set",
    "Unable to validate Jwt",
    # PyJWT's JWKS client.
    "The JWKS endpoint did not contain any signing keys",
    # Kong.
    "Multiple tokens provided",
    "Unrecognizable token",
    "Invalid key/secret",
    # Microsoft.IdentityModel configuration and metadata errors: the service's, not the token's.
    "IDX10208: Unable to validate audience. validationParameters.ValidAudience is null or whitespace and "
    "validationParameters.ValidAudiences is null.",
    "IDX20803: Unable to obtain configuration from: 'https://login.acme.test/.well-known/openid-configuration'.",
    "IDX10000: The parameter 'validationParameters' cannot be a 'null' or an empty object.",
    # golang-jwt, keyfunc/jwkset: no keyfunc, an empty key set, a JWKS refresh that failed.
    "token is unverifiable: no keyfunc was provided",
    "token is unverifiable: keyfunc returned empty verification key set",
    'token is unverifiable: error while executing keyfunc: failed to find JWT key with ID "Jwt is expired" in '
    "HTTP storage due to error: failed to perform HTTP request for JWK Set refresh: context deadline exceeded",
    # go-oidc: the provider's keys could not be had.
    "failed to verify signature: fetching keys oidc: get keys failed: 503 Service Unavailable",
    # Keycloak: expired or not yet valid, it does not say which; a realm URL not configured.
    "Token is not active",
    "Realm URL not set",
    "Token type is incorrect. Expected 'Bearer' but was 'Jwt is expired'",
    # Nimbus: its key selector found no key, for an alg it does not expect or a kid it lacks (two causes).
    "Signed JWT rejected: Another algorithm expected, or no matching key(s) found",
    "An error occurred while attempting to decode the Jwt: Signed JWT rejected: Another algorithm expected, "
    "or no matching key(s) found",
    # jwks-rsa: a kid-less token and several keys; the signature was never checked.
    "JsonWebTokenError: error in secret or public key callback: No KID specified and JWKS endpoint returned "
    "more than 1 key",
    # jsonwebtoken with an expected value that happens to read like another message.
    "jwt subject invalid. expected: jwt expired",
)


def _row_ids(rows: tuple[ReportedPattern, ...]) -> list[str]:
    """`validator-cause`, with a counter when a validator has several rows for one cause."""
    seen: Counter[str] = Counter()
    ids = []
    for row in rows:
        base = f"{row.validator}-{row.cause.value}"
        seen[base] += 1
        ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return ids


@pytest.mark.parametrize("row", REPORTED_ERRORS, ids=_row_ids(REPORTED_ERRORS))
def test_row_example_maps_to_its_cause(row: ReportedPattern) -> None:
    assert isinstance(row.cause, Cause)
    assert row.cause in set(Cause)
    assert cause_from_reported(row.example) is row.cause
    # The row decides its own example: no earlier row shadows it, so no row is dead.
    assert match_reported(row.example) is row


@pytest.mark.parametrize("row", REPORTED_ERRORS, ids=_row_ids(REPORTED_ERRORS))
def test_row_is_well_formed(row: ReportedPattern) -> None:
    assert row.pattern.flags & re.IGNORECASE
    assert row.example.strip() and row.source.strip() and row.validator.strip()
    assert len(row.example) <= MAX_SCAN_CHARS
    # Sources name a repository and file or a documentation page; the only URLs allowed are github.com.
    for url in re.findall(r"https?://[^\s'\")]+", row.source):
        assert url.startswith("https://github.com/"), url
    # Never a row for a cause a message cannot establish on its own.
    assert row.cause not in {Cause.VALID, Cause.UNVERIFIABLE, Cause.CLOCK_SKEW}


def test_rows_are_distinct() -> None:
    keys = [(row.validator, row.pattern.pattern) for row in REPORTED_ERRORS]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("validator", REQUIRED_VALIDATORS)
def test_each_validator_has_at_least_three_rows(validator: str) -> None:
    assert sum(row.validator == validator for row in REPORTED_ERRORS) >= 3


@pytest.mark.parametrize("message", [None, "", "   ", "\n", "something went wrong", "HTTP 401"])
def test_empty_or_unknown_messages_are_unverifiable(message: str | None) -> None:
    assert cause_from_reported(message) is Cause.UNVERIFIABLE
    assert match_reported(message) is None


@pytest.mark.parametrize("message", UNINFORMATIVE)
def test_messages_that_say_nothing_known_are_unverifiable(message: str) -> None:
    assert cause_from_reported(message) is Cause.UNVERIFIABLE, match_reported(message)


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        ("JWT IS EXPIRED", Cause.EXPIRED),
        ("jwt is expired", Cause.EXPIRED),
        ("jWt NoT aCtIvE", Cause.NOT_YET_VALID),
        ("idx10503: signature validation failed.", Cause.UNKNOWN_KID),
        ("INVALID SIGNATURE", Cause.BAD_SIGNATURE),
        ("TOKEN HAS INVALID AUDIENCE", Cause.AUDIENCE_MISMATCH),
    ],
)
def test_matching_is_case_insensitive(message: str, cause: Cause) -> None:
    assert cause_from_reported(message) is cause


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        # golang-jwt wraps a disallowed alg in its signature sentinel: the alg is what failed.
        ("token signature is invalid: signing method HS256 is invalid", Cause.BAD_ALG),
        ("token signature is invalid: crypto/ecdsa: verification error", Cause.BAD_SIGNATURE),
        # Kong's decode failures name the part that failed to decode.
        ("Bad token; invalid signature", Cause.MALFORMED),
        ('{"message":"Invalid signature"}', Cause.BAD_SIGNATURE),
        # A missing aud or iss is a mismatch (contract); other missing claims are not.
        ('Token is missing the "aud" claim', Cause.AUDIENCE_MISMATCH),
        ('missing required "iss" claim', Cause.ISSUER_MISMATCH),
        ('missing required "exp" claim', Cause.MISSING_CLAIM),
        # panva/jose iat: in the future, or older than maxTokenAge.
        ('"iat" claim timestamp check failed (it should be in the past)', Cause.NOT_YET_VALID),
        ('"iat" claim timestamp check failed (too far in the past)', Cause.EXPIRED),
        # golang-jwt v5 joins several claim errors with a comma: the first row in the table wins.
        ("token has invalid claims: token is expired by 5m0s, token has invalid audience", Cause.AUDIENCE_MISMATCH),
        # Log lines with the validator's message inside them, JSON-escaped quotes included.
        ('{"level":"warn","err":"missing required \\"aud\\" claim"}', Cause.AUDIENCE_MISMATCH),
        ("2024-05-01T10:00:00Z WARN jwt_authn: Jwks doesn't have key to match kid or alg from Jwt", Cause.UNKNOWN_KID),
        (
            'JWTExpired: ERR_JWT_EXPIRED: "exp" claim timestamp check failed',
            Cause.EXPIRED,
        ),
        # A hostile kid quoted in a key-lookup message does not steer the match.
        ('Unable to find a signing key that matches: "jwt expired"', Cause.UNKNOWN_KID),
        (
            "IDX10503: Signature validation failed. The token's kid is: 'Signature has expired', but did not "
            "match any keys in TokenValidationParameters or Configuration.",
            Cause.UNKNOWN_KID,
        ),
    ],
)
def test_specific_rows_win_over_general_ones(message: str, cause: Cause) -> None:
    assert cause_from_reported(message) is cause


def test_only_the_head_of_a_long_message_is_scanned() -> None:
    assert cause_from_reported("jwt expired; " + "x" * 5_000) is Cause.EXPIRED
    assert cause_from_reported(" " * MAX_SCAN_CHARS + "jwt expired") is Cause.UNVERIFIABLE


def test_a_one_megabyte_message_returns() -> None:
    huge = "jwt " * 262_144  # 1 MiB of a repeated prefix of many patterns
    assert cause_from_reported(huge) is Cause.UNVERIFIABLE
    assert cause_from_reported("IDX10223: " + "a" * 1_048_576) is Cause.EXPIRED


@pytest.mark.parametrize("row", REPORTED_ERRORS, ids=_row_ids(REPORTED_ERRORS))
def test_patterns_survive_adversarial_repetition(row: ReportedPattern) -> None:
    # The example cut short and repeated up to the scan limit: near-matches at every offset.
    stem = row.example[: max(1, len(row.example) - 1)]
    hostile = (stem * (MAX_SCAN_CHARS // len(stem) + 1))[:MAX_SCAN_CHARS]
    assert isinstance(cause_from_reported(hostile), Cause)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=3_000)))
def test_arbitrary_text_never_raises(message: str | None) -> None:
    assert isinstance(cause_from_reported(message), Cause)


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.text(max_size=200),
    row=st.sampled_from(REPORTED_ERRORS),
    suffix=st.text(max_size=200),
)
def test_a_known_message_inside_other_text_still_gives_a_cause(prefix: str, row: ReportedPattern, suffix: str) -> None:
    # Whatever surrounds it, the result is a Cause; with a plain separator the row's family is found.
    assert isinstance(cause_from_reported(prefix + row.example + suffix), Cause)
    assert cause_from_reported(f"error: {row.example}") is not Cause.UNVERIFIABLE
