"""Map another validator's own error message (`reported_error`) onto a `Cause`.

When an auth-failure event carries no token (and no fingerprint that joins a sampled one),
the only evidence left is what the rejecting validator said. This module turns that text
into a cause with confidence `reported`.

Why a table: every validator words its errors differently, and the wording is the only
stable interface we have to them. Keeping the knowledge as data, one `ReportedPattern` per
known message, means each row carries a real example and where it comes from, one test is
generated per row (`tests/test_reported.py`), and adding a validator is a data change, not a
new branch in an if-chain. The mechanics (normalising, masking, reading times) live in
`reported_match`.

How a message is read (`judge_reported`; `match_reported` and `cause_from_reported` are its
first half):

1. `reported_match.normalise`: the first `MAX_SCAN_CHARS` characters, with the layers that
   gateways and log shippers add taken off (Envoy's `jwt_authn_access_denied{Jwt_is_expired}`,
   JSON escapes, percent-encoding, HTML entities, an RFC 6750 `Bearer ... error_description`
   challenge, surrounding quotes, a truncation mark and the word it cut).
2. Every *slot* (a place where a validator prints a value taken from the token) is masked,
   leftmost anchor first (`reported_match.SlotMasker`). A row's pattern may end in a slot
   marker, `{kid}` or `{kid|closing text}`: the value runs from the pattern's fixed text to
   the last occurrence of the closing text, else to the end. `slots=` adds slots elsewhere in
   the row's message; `TOKEN_VALUE_SLOTS` lists slots of messages that have no row.
3. Rows are searched in table order, case-insensitively, on the masked text; the first row
   that matches decides. No match (or an empty message) is `Cause.UNVERIFIABLE`.
4. When the deciding row has `times=` and the message states the failing time, the overshoot
   beyond the service's leeway splits `clock_skew` from `expired` / `not_yet_valid`.

Rules for the table:

- Most specific first. A message that could match two rows with different causes must
  meet the more specific row first (e.g. golang-jwt's "token signature is invalid: signing
  method none is invalid" is a `bad_alg` before it is a `bad_signature`; Kong's "Bad token;
  invalid signature" is `malformed` before it is a `bad_signature`).
- Every value a validator copies from the token into its message sits in a slot. A row's
  own text never overlaps a slot, so what the token says cannot steer the match
  (`tests/test_reported.py` substitutes other rows' messages into every slot).
- A message that says nothing about the token gets no row: a missing token ("Jwt is
  missing"), a JWKS fetch failure, a service configuration error (Microsoft's IDX10500,
  IDX10204, IDX20803, ...), or a generic "invalid token" / "Unauthorized". They fall
  through to `unverifiable`. So does a message that names no single cause (Keycloak's
  "Token is not active": expired or not yet valid; Nimbus's "Another algorithm expected, or
  no matching key(s) found": an alg it does not expect, or a kid it lacks).
- Without a stated time, `exp` failures are `expired` and `nbf`/`iat`-in-the-future
  failures `not_yet_valid`: no row's cause is `clock_skew`.
- As the contract says, a missing `aud` is an `audience_mismatch` and a missing `iss` an
  `issuer_mismatch`; any other missing required claim is `missing_claim`.
- Patterns must be safe on hostile input: literals, bounded repeats (`{0,n}`) and
  character classes only, never a quantified group that can match the same text two ways.

To add a row: take the message text from the validator's source or documentation (never
invent one), write a pattern that matches that family of messages and nothing generic, mark
where it prints token values, put the row where the specificity rules above want it, set
`example` to a message exactly as the validator emits it (placeholders filled in) and
`source` to where it comes from ("owner/repo path", or the title of a documentation page).
`tests/test_reported.py` then checks that the example maps to the row's cause through the
whole table, and that no string put into its slots changes that.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.engine.reported_match import (
    MAX_SCAN_CHARS,
    LiteralGate,
    Slot,
    SlotMasker,
    StatedTime,
    TimeSpec,
    fold,
    normalise,
    read_stated_time,
    split_slot_pattern,
    time_spec,
)
from pipeline.models import Cause

__all__ = [
    "MAX_SCAN_CHARS",
    "REPORTED_ERRORS",
    "TOKEN_VALUE_SLOTS",
    "ReportedJudgement",
    "ReportedPattern",
    "cause_from_reported",
    "judge_reported",
    "mask_reported",
    "match_reported",
]


@dataclass(frozen=True, slots=True)
class ReportedPattern:
    """One known family of validator messages and the cause it stands for."""

    validator: str
    pattern: re.Pattern[str]  # searched on the normalised, masked message
    cause: Cause
    example: str
    source: str
    slots: tuple[Slot, ...] = ()  # where its message carries values from the token
    times: TimeSpec | None = None  # where its message states the failing time, if it does


# Validator names, as used in the rows below.
ENVOY = "envoy"
IDENTITYMODEL = "microsoft-identitymodel"
ASPNETCORE = "aspnetcore-jwtbearer"
PYJWT = "pyjwt"
JOSE = "jose"
JSONWEBTOKEN = "jsonwebtoken"
GOLANG_JWT = "golang-jwt"
GO_JOSE = "go-jose"
SPRING = "spring-security"
KONG = "kong"
AWS_APIGW = "aws-apigateway"
KEYFUNC = "keyfunc"  # MicahParks/keyfunc v3 over MicahParks/jwkset, inside golang-jwt v5
JWX = "jwx"
GO_OIDC = "go-oidc"  # coreos/go-oidc, also what oauth2-proxy reports
KEYCLOAK = "keycloak"
GOTRUE = "gotrue"
JOSERFC = "joserfc"
NGINX = "nginx-auth-jwt"  # kjdev/nginx-auth-jwt, the open module with NGINX Plus's auth_jwt directives
NIMBUS = "nimbus-jose-jwt"  # Nimbus on its own (DefaultJWTProcessor); wrapped by Spring, its rows are SPRING's
JWKS_RSA = "jwks-rsa"  # auth0/node-jwks-rsa, the key callback behind jsonwebtoken

# Sources, one per file or page the messages were read from.
_ENVOY_SRC = "google/jwt_verify_lib src/status.cc (the status strings Envoy jwt_authn reports)"
_IM_TOKENS_SRC = (
    "AzureAD/azure-activedirectory-identitymodel-extensions-for-dotnet "
    "src/Microsoft.IdentityModel.Tokens/LogMessages.cs"
)
_IM_TOKENS_OLD_SRC = _IM_TOKENS_SRC + " (commented out there; emitted by older releases)"
_IM_JWT_SRC = (
    "AzureAD/azure-activedirectory-identitymodel-extensions-for-dotnet "
    "src/Microsoft.IdentityModel.JsonWebTokens/LogMessages.cs"
)
_IM_SIT_SRC = (
    "AzureAD/azure-activedirectory-identitymodel-extensions-for-dotnet "
    "src/System.IdentityModel.Tokens.Jwt/LogMessages.cs"
)
_ASPNET_SRC = "dotnet/aspnetcore src/Security/Authentication/JwtBearer/src/JwtBearerHandler.cs CreateErrorDescription"
_PYJWT_JWT_SRC = "jpadilla/pyjwt jwt/api_jwt.py"
_PYJWT_JWS_SRC = "jpadilla/pyjwt jwt/api_jws.py"
_PYJWT_EXC_SRC = "jpadilla/pyjwt jwt/exceptions.py (MissingRequiredClaimError.__str__)"
_PYJWT_JWKS_SRC = "jpadilla/pyjwt jwt/jwks_client.py"
_JOSE_CLAIMS_SRC = "panva/jose src/lib/jwt_claims_set.ts"
_JOSE_ERRORS_SRC = "panva/jose src/util/errors.ts"
_JOSE_JWS_SRC = "panva/jose src/lib/jws_verify.ts"
_JOSE_DECODE_SRC = "panva/jose src/util/decode_jwt.ts"
_JSONWEBTOKEN_SRC = "auth0/node-jsonwebtoken verify.js"
_GOLANG_ERRORS_SRC = "golang-jwt/jwt v5 errors.go"
_GOLANG_PARSER_SRC = "golang-jwt/jwt v5 parser.go + errors.go (newError prefixes the sentinel)"
_GOLANG_VALIDATOR_SRC = "golang-jwt/jwt v5 validator.go + errors.go"
_GO_JOSE_JWT_SRC = "go-jose/go-jose jwt/errors.go"
_SPRING_TS_SRC = "spring-projects/spring-security oauth2/oauth2-jose .../jwt/JwtTimestampValidator.java"
_SPRING_CLAIM_SRC = "spring-projects/spring-security oauth2/oauth2-jose .../jwt/JwtClaimValidator.java"
_SPRING_IAT_SRC = "spring-projects/spring-security oauth2/oauth2-jose .../jwt/JwtIssuedAtValidator.java"
_SPRING_DECODER_SRC = "spring-projects/spring-security oauth2/oauth2-jose .../jwt/NimbusJwtDecoder.java"
_NIMBUS_PROC_SRC = (
    "Nimbus JOSE+JWT com/nimbusds/jwt/proc/DefaultJWTProcessor.java (GitHub mirror felx/nimbus-jose-jwt), "
    "wrapped by spring-projects/spring-security NimbusJwtDecoder.java"
)
_NIMBUS_CLAIMS_SRC = (
    "Nimbus JOSE+JWT com/nimbusds/jwt/proc/DefaultJWTClaimsVerifier.java (GitHub mirror Mu-L/nimbus-jose-jwt)"
)
_KONG_HANDLER_SRC = "Kong/kong kong/plugins/jwt/handler.lua"
_NGINX_SRC = "kjdev/nginx-auth-jwt src/ngx_http_auth_jwt_module.c"
_KONG_PARSER_SRC = "Kong/kong kong/plugins/jwt/jwt_parser.lua (errors table, sent as the JSON body)"
_KEYFUNC_SRC = (
    "MicahParks/jwkset storage.go (ErrKeyNotFound, kid %q) + MicahParks/keyfunc keyfunc.go "
    "(errors.Join with ErrKeyfunc) + golang-jwt/jwt v5 parser.go ('error while executing keyfunc')"
)
_JWX_SRC = "lestrrat-go/jwx v2 jws/key_provider.go; jwt/validate.go (claim validators)"
_GO_OIDC_SRC = "coreos/go-oidc oidc/verify.go (used by oauth2-proxy)"
_GO_OIDC_JWKS_SRC = "coreos/go-oidc oidc/jwks.go (used by oauth2-proxy)"
_KEYCLOAK_SRC = "keycloak/keycloak core/src/main/java/org/keycloak/TokenVerifier.java"
_GOTRUE_SRC = "supabase/auth internal/api/auth.go (parseJWTClaims keyfunc, wrapped as a bad_jwt error)"
_JOSERFC_SRC = "authlib/joserfc src/joserfc/errors.py (JoseError: 'error: description')"
# Nimbus JOSE+JWT lives on Bitbucket (connect2id/nimbus-jose-jwt); its GitHub mirrors stop before 10.x, so
# these texts were read from the 10.10 jar on Maven Central (the harness's validators/java/pom.xml).
_NIMBUS_10_SRC = "connect2id/nimbus-jose-jwt (Bitbucket) src/main/java/com/nimbusds/{path}, as in the 10.10 jar"
_JWKS_RSA_SRC = (
    "auth0/node-jwks-rsa src/JwksClient.js (SigningKeyNotFoundError), wrapped by auth0/node-jsonwebtoken "
    "verify.js ('error in secret or public key callback: ')"
)
_JWKSET_HTTP_SRC = (
    "MicahParks/jwkset http.go (HTTP storage KeyRead: ErrKeyNotFound %q) + MicahParks/keyfunc keyfunc.go "
    "(errors.Join with ErrKeyfunc: a newline) + golang-jwt/jwt v5 parser.go ('error while executing keyfunc')"
)
_PYJWT_CRIT_SRC = "jpadilla/pyjwt jwt/api_jws.py (_validate_crit)"
_JOSE_CRIT_SRC = "panva/jose src/lib/validate.ts validateCrit (src/lib/validate_crit.ts before 6.2)"
_AWS_DOC_SRC = (
    "AWS API Gateway Developer Guide, 'Troubleshooting issues with HTTP API JWT authorizers' "
    "(awsdocs/amazon-api-gateway-developer-guide)"
)

# A quote as it may appear in a log line: ", ' or \" (JSON-escaped), or none at all.
_Q = r"""[\\"']{0,2}"""

# Slots shared by several Microsoft.IdentityModel messages (ShowPII prints the token's values).
_IM_KID_SLOT = r"\bkid(?: is)?: '{kid|'}"
_IM_ALG_SLOT = r"\bthe algorithm '{alg|' is not}"
_IM_ISSUER_SLOT = r"\bIssuer: '{iss|'}"

# Times as validators print them (parsed by reported_match.parse_time).
_IM_TIMES = r"{claim} \(UTC\): '(?P<claim>[^']{{1,64}})', Current time \(UTC\): '(?P<clock>[^']{{1,64}})'"
_ISO_TIME = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:[.,]\d{1,9})?)?(?:Z|[+-]\d\d:?\d\d)?"
_JSONWEBTOKEN_EXPIRED_AT = time_spec("exp", rf"\bexpiredAt\W{{0,6}}(?P<claim>{_ISO_TIME})")
_GO_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})? [+-]\d{4}(?: [A-Za-z]{1,6})?"


def _row(
    validator: str,
    regex: str,
    cause: Cause,
    example: str,
    source: str,
    *,
    slots: Sequence[str] = (),
    times: TimeSpec | None = None,
) -> ReportedPattern:
    matched, own_slot = split_slot_pattern(regex)
    all_slots = ((own_slot,) if own_slot else ()) + tuple(Slot.parse(spec) for spec in slots)
    return ReportedPattern(validator, re.compile(matched, re.IGNORECASE), cause, example, source, all_slots, times)


REPORTED_ERRORS: tuple[ReportedPattern, ...] = (
    # ---- 1. Code-keyed rows (Microsoft IDX codes, panva/jose error codes) ----------------
    # Signature and key codes first: their messages quote inner exceptions, which may carry
    # other codes. IDX10517 before IDX10503: its message ends "See https://aka.ms/IDX10503".
    _row(
        IDENTITYMODEL,
        r"\bIDX10517\b",
        Cause.UNKNOWN_KID,
        "IDX10517: Signature validation failed. The token's kid is missing. Keys tried: "
        "'Microsoft.IdentityModel.Tokens.RsaSecurityKey, KeyId: 'k1''. Number of keys in "
        "TokenValidationParameters: '0'. \nNumber of keys in Configuration: '1'. \nExceptions caught:\n ''."
        "\ntoken: '[PII is hidden]'. See https://aka.ms/IDX10503 for details.",
        _IM_TOKENS_SRC,
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10503\b",
        Cause.UNKNOWN_KID,
        "IDX10503: Signature validation failed. The token's kid is: 'k2', but did not match any keys in "
        "TokenValidationParameters or Configuration. Keys tried: 'Microsoft.IdentityModel.Tokens.RsaSecurityKey, "
        "KeyId: 'k1''. Number of keys in TokenValidationParameters: '0'. \nNumber of keys in Configuration: '1'. "
        "\nExceptions caught:\n ''.\ntoken: '[PII of type 'System.IdentityModel.Tokens.Jwt.JwtSecurityToken' is "
        "hidden]'. See https://aka.ms/IDX10503 for details.",
        _IM_TOKENS_SRC,
        slots=(_IM_KID_SLOT,),
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10502\b",
        Cause.UNKNOWN_KID,
        "IDX10502: Signature validation failed. The token's kid is: 'k2', but did not match any keys in "
        "ValidationParameters or Configuration and TryAllIssuerSigningKeys is false. Number of keys in "
        "ValidationParameters: '0'. \nNumber of keys in Configuration: '1'.\ntoken: '[PII is hidden]'.",
        _IM_TOKENS_SRC,
        slots=(_IM_KID_SLOT,),
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10501\b",
        Cause.UNKNOWN_KID,
        "IDX10501: Signature validation failed. Unable to match key: \nkid: 'k2'. \nNumber of keys in "
        "TokenValidationParameters: '0'. \nNumber of keys in Configuration: '1'. \nExceptions caught:\n ''. "
        "\ntoken: '[PII is hidden]'.",
        _IM_TOKENS_OLD_SRC,
        slots=(_IM_KID_SLOT,),
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10516\b",
        Cause.UNKNOWN_KID,
        "IDX10516: Signature validation failed. Unable to match key: \nkid: 'k2'. \nNumber of keys in "
        "TokenValidationParameters: '0'. \nNumber of keys in Configuration: '1'. \nExceptions caught:\n ''. "
        "\ntoken: '[PII is hidden]'. Valid Lifetime: 'True'. Valid Issuer: 'True'",
        _IM_TOKENS_OLD_SRC,
        slots=(_IM_KID_SLOT,),
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10511\b",
        Cause.BAD_SIGNATURE,
        "IDX10511: Signature validation failed. Keys tried: 'Microsoft.IdentityModel.Tokens.RsaSecurityKey, "
        "KeyId: 'k1''. \nNumber of keys in TokenValidationParameters: '0'. \nNumber of keys in Configuration: "
        "'1'. \nMatched key was in 'Configuration'. \nkid: 'k1'. \nExceptions caught:\n ''.\ntoken: "
        "'[PII is hidden]'. See https://aka.ms/IDX10511 for details.",
        _IM_TOKENS_SRC,
        slots=(_IM_KID_SLOT,),
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10504\b",
        Cause.BAD_ALG,
        "IDX10504: Unable to validate signature, token does not have a signature: '[PII is hidden]'.",
        _IM_TOKENS_SRC,
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10518\b",
        Cause.BAD_ALG,
        "IDX10518: Signature validation failed. Algorithm validation failed with error: 'IDX10696: The "
        "algorithm 'HS256' is not in the user-defined accepted list of algorithms.'.",
        _IM_TOKENS_SRC,
        slots=(_IM_ALG_SLOT,),
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10696\b",
        Cause.BAD_ALG,
        "IDX10696: The algorithm 'HS256' is not in the user-defined accepted list of algorithms.",
        _IM_TOKENS_SRC,
        slots=(_IM_ALG_SLOT,),
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10223\b",
        Cause.EXPIRED,
        "IDX10223: Lifetime validation failed. The token is expired. ValidTo (UTC): '5/1/2024 10:00:00 AM', "
        "Current time (UTC): '5/1/2024 11:00:00 AM'.",
        _IM_TOKENS_SRC,
        times=time_spec("exp", _IM_TIMES.format(claim="ValidTo")),
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10222\b",
        Cause.NOT_YET_VALID,
        "IDX10222: Lifetime validation failed. The token is not yet valid. ValidFrom (UTC): "
        "'5/1/2024 12:00:00 PM', Current time (UTC): '5/1/2024 11:00:00 AM'.",
        _IM_TOKENS_SRC,
        times=time_spec("nbf", _IM_TIMES.format(claim="ValidFrom")),
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX1021[45]\b",
        Cause.AUDIENCE_MISMATCH,
        "IDX10214: Audience validation failed. Audiences: 'api://orders'. Did not match: "
        "validationParameters.ValidAudience: 'api://payments' or validationParameters.ValidAudiences: 'null'.",
        _IM_TOKENS_SRC,
        slots=(r"\bAudiences: '{aud|'}",),
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10231\b",
        Cause.AUDIENCE_MISMATCH,
        "IDX10231: Audience validation failed. Delegate returned false, securitytoken: '[PII is hidden]'.",
        _IM_TOKENS_SRC,
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10205\b|\bIDX10212\b",
        Cause.ISSUER_MISMATCH,
        "IDX10205: Issuer validation failed. Issuer: 'https://evil.test'. Did not match: "
        "validationParameters.ValidIssuer: 'https://login.acme.test' or validationParameters.ValidIssuers: "
        "'null' or validationParameters.ConfigurationManager.CurrentConfiguration.Issuer: 'Null'. For more "
        "details, see https://aka.ms/IdentityModel/issuer-validation. ",
        _IM_TOKENS_SRC,
        slots=(_IM_ISSUER_SLOT,),
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10211\b",
        Cause.ISSUER_MISMATCH,
        "IDX10211: Unable to validate issuer. The 'issuer' parameter is null or whitespace.",
        _IM_TOKENS_SRC,
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX40001\b",
        Cause.ISSUER_MISMATCH,
        "IDX40001: Issuer: 'https://login.microsoftonline.com/evil/v2.0', does not match any of the valid "
        "issuers provided for this application. ",
        "AzureAD/azure-activedirectory-identitymodel-extensions-for-dotnet "
        "src/Microsoft.IdentityModel.Validators/LogMessages.cs (AadIssuerValidator)",
        slots=(_IM_ISSUER_SLOT,),
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX1020[67]\b",
        Cause.AUDIENCE_MISMATCH,
        "IDX10206: Unable to validate audience. The 'audiences' parameter is empty.",
        _IM_TOKENS_SRC + " (the token's aud is empty or absent)",
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10225\b",
        Cause.MISSING_CLAIM,
        "IDX10225: Lifetime validation failed. The token is missing an Expiration Time. Tokentype: "
        "'System.IdentityModel.Tokens.Jwt.JwtSecurityToken'.",
        _IM_TOKENS_SRC,
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX141(?:0[0-2]|07|2[0-2])\b",
        Cause.MALFORMED,
        "IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS or JWE "
        "Compact Serialization Format. (JWS): 'EncodedHeader.EncodedPayload.EncodedSignature'. (JWE): "
        "'EncodedProtectedHeader.EncodedEncryptedKey.EncodedInitializationVector.EncodedCiphertext."
        "EncodedAuthenticationTag'.",
        _IM_JWT_SRC,
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX127(?:09|2[039]|39|4[01])\b",
        Cause.MALFORMED,
        "IDX12741: JWT must have three segments (JWS) or five segments (JWE).",
        _IM_SIT_SRC,
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10508\b",
        Cause.MALFORMED,
        "IDX10508: Signature validation failed. Signature is improperly formatted.",
        _IM_TOKENS_SRC,
    ),
    _row(JOSE, r"\bERR_JWT_EXPIRED\b", Cause.EXPIRED, "ERR_JWT_EXPIRED", _JOSE_ERRORS_SRC),
    _row(
        JOSE,
        r"\bERR_JWS_SIGNATURE_VERIFICATION_FAILED\b",
        Cause.BAD_SIGNATURE,
        "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
        _JOSE_ERRORS_SRC,
    ),
    _row(JOSE, r"\bERR_JOSE_ALG_NOT_ALLOWED\b", Cause.BAD_ALG, "ERR_JOSE_ALG_NOT_ALLOWED", _JOSE_ERRORS_SRC),
    _row(JOSE, r"\bERR_JWKS_NO_MATCHING_KEY\b", Cause.UNKNOWN_KID, "ERR_JWKS_NO_MATCHING_KEY", _JOSE_ERRORS_SRC),
    _row(JOSE, r"\bERR_JW[ST]_INVALID\b", Cause.MALFORMED, "ERR_JWS_INVALID", _JOSE_ERRORS_SRC),
    # ---- 2. Messages that embed values taken from the token --------------------------------
    # NGINX auth_jwt (kjdev/nginx-auth-jwt): every message starts "auth_jwt: rejected due to", which no
    # other validator writes; "missing signature key or signature validate failure" names two causes
    # (no key for the kid, or a bad signature) and gets no row.
    _row(
        NGINX,
        # the kid follows as `kid="..."`, a logfmt field that normalisation masks before any row is searched
        r"\bauth_jwt: rejected due to signature validate failure: kid=",
        Cause.BAD_SIGNATURE,
        'auth_jwt: rejected due to signature validate failure: kid="test1"',
        _NGINX_SRC,
    ),
    _row(
        NGINX,
        r"\bauth_jwt: rejected due to token expired\b",
        Cause.EXPIRED,
        "auth_jwt: rejected due to token expired: exp=1763894400: greater than expected=1763894530 actual=1763894400",
        _NGINX_SRC,
    ),
    _row(
        NGINX,
        r"\bauth_jwt: rejected due to none algorithm\b",
        Cause.BAD_ALG,
        "auth_jwt: rejected due to none algorithm",
        _NGINX_SRC,
    ),
    _row(
        NGINX,
        r"\bauth_jwt: rejected due to missing algorithm\b",
        Cause.MALFORMED,
        "auth_jwt: rejected due to missing algorithm",
        _NGINX_SRC,
    ),
    _row(
        NGINX,
        r"\bauth_jwt: failed to parse jwt token\b",
        Cause.MALFORMED,
        "auth_jwt: failed to parse jwt token",
        _NGINX_SRC,
    ),
    _row(
        NGINX,
        r"\bauth_jwt: rejected due to missing claim: aud\b",
        Cause.AUDIENCE_MISMATCH,
        "auth_jwt: rejected due to missing claim: aud",
        _NGINX_SRC,
    ),
    _row(
        NGINX,
        r"\bauth_jwt: rejected due to missing claim: iss\b",
        Cause.ISSUER_MISMATCH,
        "auth_jwt: rejected due to missing claim: iss",
        _NGINX_SRC,
    ),
    _row(
        NGINX,
        r"\bauth_jwt: rejected due to missing claim: ",
        Cause.MISSING_CLAIM,
        "auth_jwt: rejected due to missing claim: sub",
        _NGINX_SRC,
    ),
    _row(
        NGINX,
        r"\bauth_jwt: rejected due to aud claim requirement\b",
        Cause.AUDIENCE_MISMATCH,
        'auth_jwt: rejected due to aud claim requirement: "api://other" is not "eq" "api://payments"',
        _NGINX_SRC,
        slots=(r'\brequirement: "{value|" is not}',),
    ),
    _row(
        NGINX,
        r"\bauth_jwt: rejected due to iss claim requirement\b",
        Cause.ISSUER_MISMATCH,
        'auth_jwt: rejected due to iss claim requirement: "https://evil.test" is not "eq" "https://login.acme.test"',
        _NGINX_SRC,
        slots=(r'\brequirement: "{value|" is not}',),
    ),
    _row(
        NGINX,
        r"\bauth_jwt: rejected due to alg header requirement\b",
        Cause.BAD_ALG,
        'auth_jwt: rejected due to alg header requirement: "HS256" is not "eq" "RS256"',
        _NGINX_SRC,
        slots=(r'\brequirement: "{value|" is not}',),
    ),
    _row(
        PYJWT,
        r"\bunable to find a signing key that matches: {kid}",
        Cause.UNKNOWN_KID,
        'Unable to find a signing key that matches: "k2"',
        _PYJWT_JWKS_SRC,
    ),
    _row(
        JWKS_RSA,
        r"\bunable to find a signing key that matches '{kid|'}",
        Cause.UNKNOWN_KID,
        "JsonWebTokenError: error in secret or public key callback: Unable to find a signing key that matches 'k2'",
        _JWKS_RSA_SRC,
    ),
    _row(
        GO_JOSE,
        r"\bunexpected signature algorithm {alg}",
        Cause.BAD_ALG,
        'unexpected signature algorithm "HS256"; expected ["RS256"]',
        "go-jose/go-jose jws.go (ErrUnexpectedSignatureAlgorithm)",
    ),
    _row(
        GOLANG_JWT,
        r"\bsigning method (?!\(alg\)|with\b){alg| is invalid}",
        Cause.BAD_ALG,
        "token signature is invalid: signing method none is invalid",
        _GOLANG_PARSER_SRC,
    ),
    _row(
        ASPNETCORE,
        r"\bthe audience '{aud|' is invalid}",
        Cause.AUDIENCE_MISMATCH,
        "The audience 'api://orders' is invalid",
        _ASPNET_SRC,
    ),
    _row(
        ASPNETCORE,
        r"\bthe issuer '{iss|' is invalid}",
        Cause.ISSUER_MISMATCH,
        "The issuer 'https://evil.test' is invalid",
        _ASPNET_SRC,
    ),
    _row(
        SPRING,
        r"\bJWT audience rejected: {aud}",
        Cause.AUDIENCE_MISMATCH,
        "JWT audience rejected: [api://orders]",
        _NIMBUS_CLAIMS_SRC,
    ),
    _row(
        SPRING,
        r"\bJWT iss claim has value {iss|, must be }",
        Cause.ISSUER_MISMATCH,
        "JWT iss claim has value https://evil.test, must be https://login.acme.test",
        _NIMBUS_CLAIMS_SRC,
    ),
    # A key the service's cache lacks, with its refresh rate limit spent: to the validator the kid is unknown
    # (from the message alone a stale cache, a retired key and a forged kid look alike). Seen in the lab.
    _row(
        KEYFUNC,
        r"\bfailed to wait for JWK Set refresh rate limiter\b",
        Cause.UNKNOWN_KID,
        "token is unverifiable: error while executing keyfunc: failed to wait for JWK Set refresh rate limiter due "
        "to error: rate: Wait(n=1) would exceed context deadline\nfailed keyfunc: could not read JWK from storage",
        "MicahParks/jwkset http.go (HTTP storage KeyRead, refresh rate limiter)",
    ),
    _row(
        NIMBUS,
        r"\bRateLimitReachedException\b",
        Cause.UNKNOWN_KID,
        "com.nimbusds.jose.jwk.source.RateLimitReachedException",
        _NIMBUS_10_SRC.format(path="jose/jwk/source/RateLimitedJWKSetSource.java (throws RateLimitReachedException, "
        "no message: services log the class name)"),
    ),
    _row(
        KEYFUNC,
        r"\bkey not found: kid {kid}",
        Cause.UNKNOWN_KID,
        'token is unverifiable: error while executing keyfunc: key not found: kid "k2"\n'
        "failed keyfunc: could not read JWK from storage",
        _KEYFUNC_SRC,
    ),
    _row(
        KEYFUNC,
        r'\bkey not found "{kid|"}',
        Cause.UNKNOWN_KID,
        'token is unverifiable: error while executing keyfunc: key not found "k2"\n'
        "failed keyfunc: could not read JWK from storage",
        _JWKSET_HTTP_SRC,
    ),
    _row(
        KEYFUNC,
        rf"\bdoes not match token {_Q}alg{_Q} parameter value {{alg}}",
        Cause.BAD_ALG,
        'token is unverifiable: error while executing keyfunc: failed keyfunc: JWK "alg" parameter value '
        '"RS256" does not match token "alg" parameter value "HS256"',
        _KEYFUNC_SRC,
    ),
    _row(
        JWX,
        r"\bfailed to find key with key ID {kid| in key set}",
        Cause.UNKNOWN_KID,
        "could not verify message using any of the signatures or keys: key provider 0 failed: "
        'failed to find key with key ID "k2" in key set',
        _JWX_SRC,
    ),
    _row(
        GOTRUE,
        r"\bunrecognized JWT kid {kid| for algorithm }",
        Cause.UNKNOWN_KID,
        "invalid JWT: unable to parse or verify signature, token is unverifiable: error while executing "
        "keyfunc: unrecognized JWT kid <nil> for algorithm ES256",
        _GOTRUE_SRC,
        slots=(r"\bfor algorithm {alg}",),
    ),
    _row(
        KEYCLOAK,
        r"\binvalid token issuer\. expected {iss}",
        Cause.ISSUER_MISMATCH,
        "Invalid token issuer. Expected 'https://login.acme.test/realms/main', but was 'https://evil.test/realms/main'",
        _KEYCLOAK_SRC,
    ),
    _row(
        GO_OIDC,
        r"\bid token issued by a different provider, expected {iss}",
        Cause.ISSUER_MISMATCH,
        'oidc: id token issued by a different provider, expected "https://login.acme.test" got "https://evil.test"',
        _GO_OIDC_SRC,
    ),
    _row(
        GO_OIDC,
        r"\boidc: expected audience {aud}",
        Cause.AUDIENCE_MISMATCH,
        'oidc: expected audience "api://payments" got ["api://orders"]',
        _GO_OIDC_SRC,
    ),
    _row(
        ASPNETCORE,
        r"\bthe audience is invalid\b",
        Cause.AUDIENCE_MISMATCH,
        "The audience is invalid",
        _ASPNET_SRC + " (releases before the value was quoted)",
    ),
    _row(
        ASPNETCORE,
        r"\bthe issuer is invalid\b",
        Cause.ISSUER_MISMATCH,
        "The issuer is invalid",
        _ASPNET_SRC + " (releases before the value was quoted)",
    ),
    # ---- 3. Missing claims: a missing aud / iss is a mismatch (contract), others are not ----
    _row(
        JOSERFC,
        rf"\b(?:missing_claim: missing claim|invalid_claim: invalid claim): {_Q}aud{_Q}",
        Cause.AUDIENCE_MISMATCH,
        'missing_claim: Missing claim: "aud"',
        _JOSERFC_SRC,
    ),
    _row(
        JOSERFC,
        rf"\b(?:missing_claim: missing claim|invalid_claim: invalid claim): {_Q}iss{_Q}",
        Cause.ISSUER_MISMATCH,
        'invalid_claim: Invalid claim: "iss"',
        _JOSERFC_SRC,
    ),
    _row(
        JOSERFC,
        r"\bmissing_claim: missing claim\b",
        Cause.MISSING_CLAIM,
        'missing_claim: Missing claim: "sub"',
        _JOSERFC_SRC,
    ),
    _row(
        KEYCLOAK,
        r"\bexpected audience not available in the token\b|\bno audience in the token\b",
        Cause.AUDIENCE_MISMATCH,
        "Expected audience not available in the token",
        _KEYCLOAK_SRC,
    ),
    _row(KEYCLOAK, r"\bsubject missing in token\b", Cause.MISSING_CLAIM, "Subject missing in token", _KEYCLOAK_SRC),
    _row(
        PYJWT,
        rf"\btoken is missing the {_Q}aud{_Q} claim\b",
        Cause.AUDIENCE_MISMATCH,
        'Token is missing the "aud" claim',
        _PYJWT_EXC_SRC,
    ),
    _row(
        PYJWT,
        rf"\btoken is missing the {_Q}iss{_Q} claim\b",
        Cause.ISSUER_MISMATCH,
        'Token is missing the "iss" claim',
        _PYJWT_EXC_SRC,
    ),
    _row(
        PYJWT,
        r"\btoken is missing the .{0,64}? claim\b",
        Cause.MISSING_CLAIM,
        'Token is missing the "exp" claim',
        _PYJWT_EXC_SRC,
    ),
    _row(
        JOSE,
        rf"\bmissing required {_Q}aud{_Q} claim\b",
        Cause.AUDIENCE_MISMATCH,
        'missing required "aud" claim',
        _JOSE_CLAIMS_SRC,
    ),
    _row(
        JOSE,
        rf"\bmissing required {_Q}iss{_Q} claim\b",
        Cause.ISSUER_MISMATCH,
        'missing required "iss" claim',
        _JOSE_CLAIMS_SRC,
    ),
    _row(
        JOSE,
        rf"\bmissing required {_Q}\w{{1,64}}{_Q} claim\b",
        Cause.MISSING_CLAIM,
        'missing required "sub" claim',
        _JOSE_CLAIMS_SRC,
    ),
    _row(
        GOLANG_JWT,
        r"\baud claim is required\b",
        Cause.AUDIENCE_MISMATCH,
        "token has invalid claims: token is missing required claim: aud claim is required",
        _GOLANG_VALIDATOR_SRC,
    ),
    _row(
        GOLANG_JWT,
        r"\biss claim is required\b",
        Cause.ISSUER_MISMATCH,
        "token has invalid claims: token is missing required claim: iss claim is required",
        _GOLANG_VALIDATOR_SRC,
    ),
    _row(
        GOLANG_JWT,
        r"\btoken is missing required claim\b",
        Cause.MISSING_CLAIM,
        "token has invalid claims: token is missing required claim: exp claim is required",
        _GOLANG_VALIDATOR_SRC,
    ),
    _row(
        SPRING,
        r"\bJWT missing required audience\b",
        Cause.AUDIENCE_MISMATCH,
        "JWT missing required audience",
        _NIMBUS_CLAIMS_SRC,
    ),
    _row(
        SPRING,
        r"\bJWT missing required claims\b",
        Cause.MISSING_CLAIM,
        "JWT missing required claims: [sub]",
        _NIMBUS_CLAIMS_SRC,
    ),
    _row(
        SPRING,
        r"\b(?:iat claim|exp|nbf) is required\b",
        Cause.MISSING_CLAIM,
        "An error occurred while attempting to decode the Jwt: iat claim is required.",
        _SPRING_IAT_SRC + "; JwtTimestampValidator.java ('exp is required', 'nbf is required')",
    ),
    _row(
        KONG,
        rf"\bno mandatory {_Q}iss{_Q} in claims\b",
        Cause.ISSUER_MISMATCH,
        "No mandatory 'iss' in claims",
        _KONG_HANDLER_SRC,
    ),
    _row(
        KONG,
        r"\bno mandatory .{0,64}? in claims\b",
        Cause.MISSING_CLAIM,
        "No mandatory 'client_id' in claims",
        _KONG_HANDLER_SRC,
    ),
    _row(
        KONG,
        rf"\bno credentials found for given {_Q}kid\b",
        Cause.UNKNOWN_KID,
        "No credentials found for given 'kid'",
        _KONG_HANDLER_SRC,
    ),
    _row(
        KONG,
        rf"\bno credentials found for given {_Q}iss\b",
        Cause.ISSUER_MISMATCH,
        "No credentials found for given 'iss'",
        _KONG_HANDLER_SRC,
    ),
    _row(
        JSONWEBTOKEN,
        r"\biat required when maxAge is specified\b",
        Cause.MISSING_CLAIM,
        "iat required when maxAge is specified",
        _JSONWEBTOKEN_SRC,
    ),
    _row(
        ASPNETCORE,
        r"\bthe token has no expiration\b",
        Cause.MISSING_CLAIM,
        "The token has no expiration",
        _ASPNET_SRC,
    ),
    # ---- 4. Malformed tokens (before the generic signature/alg phrases they contain) ------
    _row(
        KONG,
        r"\bbad token; invalid alg\b",
        Cause.BAD_ALG,
        "Bad token; invalid alg",
        _KONG_HANDLER_SRC + " + kong/plugins/jwt/jwt_parser.lua",
    ),
    _row(
        KONG,
        r"\bbad token; invalid (?:json|claims|signature)\b",
        Cause.MALFORMED,
        "Bad token; invalid JSON",
        _KONG_HANDLER_SRC + " + kong/plugins/jwt/jwt_parser.lua",
    ),
    _row(
        KONG,
        rf"{_Q}(?:exp|nbf){_Q}\s{{0,4}}:\s{{0,4}}{_Q}must be a number\b",
        Cause.MALFORMED,
        '{"exp":"must be a number"}',
        _KONG_PARSER_SRC,
    ),
    _row(
        ENVOY,
        r"\bjwt is not in the form of header\.payload\.signature\b",
        Cause.MALFORMED,
        "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        _ENVOY_SRC,
    ),
    _row(
        ENVOY,
        r"\bjwt (?:header|payload|signature) is an invalid (?:base64|json)",
        Cause.MALFORMED,
        "Jwt header is an invalid JSON",
        _ENVOY_SRC,
    ),
    _row(
        ENVOY,
        r"\bjwt header \[alg\] (?:is not supported|field value is invalid)",
        Cause.BAD_ALG,
        "Jwt header [alg] is not supported",
        _ENVOY_SRC,
    ),
    # A payload field of the wrong type, judged as jwtriage judges such a token: a non-string
    # iss is an issuer it does not accept, a non-string aud an audience that is not its own.
    _row(
        ENVOY,
        r"\bjwt payload \[iss\] field is not\b",
        Cause.ISSUER_MISMATCH,
        "Jwt payload [iss] field is not a string",
        _ENVOY_SRC,
    ),
    _row(
        ENVOY,
        r"\bjwt payload \[aud\] field is not\b",
        Cause.AUDIENCE_MISMATCH,
        "Jwt payload [aud] field is not a string or string list",
        _ENVOY_SRC,
    ),
    _row(
        ENVOY,
        r"\bjwt ED25519 signature is wrong length\b",
        Cause.BAD_SIGNATURE,
        "Jwt ED25519 signature is wrong length",
        _ENVOY_SRC,
    ),
    _row(
        ENVOY,
        r"\bjwt (?:header|payload) \[\w{1,16}\] field is (?:not|required)\b",
        Cause.MALFORMED,
        "Jwt payload [exp] field is not an integer",
        _ENVOY_SRC,
    ),
    _row(
        GO_OIDC,
        r"\boidc: malformed jwt\b",
        Cause.MALFORMED,
        "oidc: malformed jwt: go-jose/go-jose: compact JWS format must have three parts",
        _GO_OIDC_SRC + " (after the go-jose alg row: an unexpected alg is wrapped the same way)",
    ),
    _row(
        KEYCLOAK,
        r"\bfailed to parse JWT \(JW[SE]\)|\bfailed to read access token from JWT\b",
        Cause.MALFORMED,
        "Failed to parse JWT (JWS)",
        _KEYCLOAK_SRC,
    ),
    _row(
        JOSERFC,
        r"\bdecode_error:|\bmissing_algorithm:",
        Cause.MALFORMED,
        'missing_algorithm: Missing "alg" value in header',
        _JOSERFC_SRC,
    ),
    _row(
        GOLANG_JWT,
        r"\bsigning method \(alg\) is unspecified\b",
        Cause.MALFORMED,
        "token is unverifiable: signing method (alg) is unspecified",
        _GOLANG_PARSER_SRC,
    ),
    _row(
        KEYFUNC,
        r"\bcould not convert kid in JWT header to string\b",
        Cause.MALFORMED,
        "token is unverifiable: error while executing keyfunc: failed keyfunc: could not convert kid in JWT "
        "header to string",
        _KEYFUNC_SRC,
    ),
    _row(PYJWT, r"\bnot enough segments\b", Cause.MALFORMED, "Not enough segments", _PYJWT_JWS_SRC),
    _row(
        PYJWT,
        r"\binvalid (?:header|payload|crypto) (?:padding|string)\b",
        Cause.MALFORMED,
        "Invalid header padding",
        _PYJWT_JWS_SRC,
    ),
    _row(
        PYJWT,
        r"\bclaim \((?:exp|nbf|iat)\) must be an integer\b",
        Cause.MALFORMED,
        "Expiration Time claim (exp) must be an integer.",
        _PYJWT_JWT_SRC,
    ),
    _row(
        PYJWT,
        r"\b(?:algorithm not specified|key id header parameter must be a string)\b",
        Cause.MALFORMED,
        "Algorithm not specified",
        _PYJWT_JWS_SRC,
    ),
    # A `crit` header jwtriage cannot honour is malformed (DESIGN.md step 1, RFC 7515 4.1.11).
    _row(
        PYJWT,
        r"\bunsupported critical extension: {ext}",
        Cause.MALFORMED,
        "InvalidTokenError: Unsupported critical extension: x-acme",
        _PYJWT_CRIT_SRC,
    ),
    _row(
        PYJWT,
        r"\binvalid 'crit' header\b|\bcritical extension '{ext|' is missing from headers}",
        Cause.MALFORMED,
        "InvalidTokenError: Critical extension 'x-acme' is missing from headers",
        _PYJWT_CRIT_SRC,
    ),
    _row(JOSE, r"\binvalid compact jws\b", Cause.MALFORMED, "Invalid Compact JWS", _JOSE_JWS_SRC),
    _row(
        JOSE,
        r"\bJWTs must use Compact JWS serialization\b",
        Cause.MALFORMED,
        "JWTs must use Compact JWS serialization, JWT must be a string",
        _JOSE_DECODE_SRC,
    ),
    _row(
        JOSE,
        r"\bJWT Claims Set must be a top-level JSON object\b|\bJWS Protected Header is invalid\b"
        r"|\bfailed to base64url decode the (?:payload|protected header|signature)\b",
        Cause.MALFORMED,
        "JWT Claims Set must be a top-level JSON object",
        _JOSE_CLAIMS_SRC + "; src/lib/jws_verify.ts; src/lib/helpers.ts",
    ),
    _row(
        JOSE,
        rf"{_Q}(?:exp|nbf|iat){_Q} claim must be a number\b",
        Cause.MALFORMED,
        '"exp" claim must be a number',
        _JOSE_CLAIMS_SRC,
    ),
    _row(
        JOSE,
        r"\bExtension Header Parameter {ext}",
        Cause.MALFORMED,
        'ERR_JOSE_NOT_SUPPORTED: Extension Header Parameter "x-acme" is not recognized',
        _JOSE_CRIT_SRC,
    ),
    _row(
        JOSE,
        rf"{_Q}crit{_Q} \(Critical\) Header Parameter MUST\b",
        Cause.MALFORMED,
        '"crit" (Critical) Header Parameter MUST be integrity protected',
        _JOSE_CRIT_SRC,
    ),
    _row(JSONWEBTOKEN, r"\bjwt malformed\b", Cause.MALFORMED, "jwt malformed", _JSONWEBTOKEN_SRC),
    _row(
        JSONWEBTOKEN,
        r"\bJsonWebTokenError: invalid token\b",
        Cause.MALFORMED,
        "JsonWebTokenError: invalid token",
        _JSONWEBTOKEN_SRC + " (its decode returned nothing: a header that is not base64url JSON; the bare words "
        "'invalid token' name no library and stay unverifiable)",
    ),
    _row(
        JSONWEBTOKEN,
        r"\binvalid (?:exp|nbf) value\b",
        Cause.MALFORMED,
        "invalid exp value",
        _JSONWEBTOKEN_SRC,
    ),
    _row(
        GOLANG_JWT,
        r"\btoken is malformed\b",
        Cause.MALFORMED,
        "token is malformed: could not base64 decode header",
        _GOLANG_PARSER_SRC,
    ),
    _row(
        GOLANG_JWT,
        r"\binvalid type for claim\b",
        Cause.MALFORMED,
        "token has invalid claims: invalid type for claim: exp is invalid",
        "golang-jwt/jwt v5 map_claims.go + errors.go",
    ),
    _row(
        AWS_APIGW,
        r"\btoken contains an invalid number of segments\b",
        Cause.MALFORMED,
        'Bearer scope="" error="invalid_token" error_description="token contains an invalid number of segments"',
        "Observed HTTP API JWT authorizer response, WebbPulse/WebbPulse-Portfolio docs/prod-promotion-runbook.md "
        "(the golang-jwt message, see golang-jwt/jwt v5 parser.go)",
    ),
    _row(
        GO_JOSE,
        r"\bcompact JWS format must have three parts\b",
        Cause.MALFORMED,
        "go-jose/go-jose: compact JWS format must have three parts",
        "go-jose/go-jose jws.go",
    ),
    _row(
        GO_JOSE,
        r"\bexpected number value to unmarshal NumericDate\b",
        Cause.MALFORMED,
        "go-jose/go-jose/jwt: expected number value to unmarshal NumericDate",
        _GO_JOSE_JWT_SRC,
    ),
    _row(
        SPRING,
        r"\bmalformed (?:token|payload)\b",
        Cause.MALFORMED,
        "An error occurred while attempting to decode the Jwt: Malformed token",
        _SPRING_DECODER_SRC,
    ),
    _row(
        NIMBUS,
        r"\binvalid unsecured/JWS/JWE header: {detail}",
        Cause.MALFORMED,
        "Invalid unsecured/JWS/JWE header: Invalid JSON object",
        _NIMBUS_10_SRC.format(path="jwt/JWTParser.java, jose/JOSEObject.java (the cause's message follows)"),
    ),
    _row(
        NIMBUS,
        r"\binvalid serialized (?:unsecured/JWS/JWE|JWE) object\b|\binvalid JWT serialization\b"
        r"|\bunexpected number of Base64URL parts\b",
        Cause.MALFORMED,
        "Invalid serialized unsecured/JWS/JWE object: Missing second delimiter",
        _NIMBUS_10_SRC.format(path="jose/JOSEObject.java, jwt/JWTParser.java, jwt/SignedJWT.java"),
    ),
    _row(
        NIMBUS,
        r"\bpayload of (?:JWS|JWE|unsecured JOSE) object is not a valid JSON object\b",
        Cause.MALFORMED,
        "Payload of JWS object is not a valid JSON object",
        _NIMBUS_10_SRC.format(path="jwt/SignedJWT.java (and PlainJWT, EncryptedJWT)"),
    ),
    _row(
        NIMBUS,
        r"\bunexpected type of JSON object member (?:alg|exp|nbf|iat)\b",
        Cause.MALFORMED,
        "Unexpected type of JSON object member exp",
        _NIMBUS_10_SRC.format(path="jose/util/JSONObjectUtils.java (the member name is the library's own key)"),
    ),
    # ---- 5. Algorithm policy ------------------------------------------------------------
    _row(
        PYJWT,
        r"\bthe specified alg value is not allowed\b",
        Cause.BAD_ALG,
        "The specified alg value is not allowed",
        _PYJWT_JWS_SRC,
    ),
    _row(PYJWT, r"\balgorithm not supported\b", Cause.BAD_ALG, "Algorithm not supported", _PYJWT_JWS_SRC),
    _row(
        PYJWT,
        r"\bexpecting a PEM-formatted key\b",
        Cause.BAD_ALG,
        "TypeError: Expecting a PEM-formatted key.",
        "jpadilla/pyjwt jwt/algorithms.py (RSAAlgorithm / ECAlgorithm.prepare_key: the key the kid names is a key "
        "object of the other family)",
    ),
    _row(
        JOSE,
        rf"{_Q}alg{_Q} \(Algorithm\) Header Parameter value not allowed\b",
        Cause.BAD_ALG,
        '"alg" (Algorithm) Header Parameter value not allowed',
        _JOSE_JWS_SRC,
    ),
    _row(
        JSONWEBTOKEN,
        r"\binvalid algorithm\b",
        Cause.BAD_ALG,
        "invalid algorithm",
        _JSONWEBTOKEN_SRC + "; the same words as Kong/kong kong/plugins/jwt/handler.lua 'Invalid algorithm'",
    ),
    _row(
        JSONWEBTOKEN,
        r"\bjwt signature is required\b",
        Cause.BAD_ALG,
        "jwt signature is required",
        _JSONWEBTOKEN_SRC,
    ),
    _row(
        JSONWEBTOKEN,
        rf"{_Q}alg{_Q} parameter for {_Q}[a-z-]{{1,16}}{_Q} key type must be one of\b",
        Cause.BAD_ALG,
        'Error: "alg" parameter for "rsa" key type must be one of: RS256, PS256, RS384, PS384, RS512, PS512.',
        "auth0/node-jsonwebtoken lib/validateAsymmetricKey.js (the key type is the JWKS key's, not the token's)",
    ),
    _row(
        JSONWEBTOKEN,
        rf"\bplease specify {_Q}none{_Q} in {_Q}algorithms{_Q} to verify unsigned tokens\b",
        Cause.BAD_ALG,
        'please specify "none" in "algorithms" to verify unsigned tokens',
        _JSONWEBTOKEN_SRC,
    ),
    _row(
        GOLANG_JWT,
        r"\bsigning method \(alg\) is unavailable\b",
        Cause.BAD_ALG,
        "token is unverifiable: signing method (alg) is unavailable",
        _GOLANG_PARSER_SRC,
    ),
    _row(
        GOLANG_JWT,
        rf"{_Q}none{_Q} signature type is not allowed\b|{_Q}none{_Q} signing method with non-empty signature\b",
        Cause.BAD_ALG,
        "token is unverifiable: 'none' signature type is not allowed",
        "golang-jwt/jwt v5 none.go + errors.go",
    ),
    _row(
        GOLANG_JWT,
        r"\bkey is of invalid type\b",
        Cause.BAD_ALG,
        "token signature is invalid: key is of invalid type: RSA verify expects *rsa.PublicKey",
        "golang-jwt/jwt v5 rsa.go / ecdsa.go / ed25519.go / hmac.go + errors.go (the key the kid names "
        "does not fit the alg)",
    ),
    _row(
        KEYCLOAK,
        r"\bunknown or unsupported token algorithm\b",
        Cause.BAD_ALG,
        "Unknown or unsupported token algorithm",
        _KEYCLOAK_SRC,
    ),
    _row(
        SPRING,
        r"\bunsupported algorithm of {alg}",
        Cause.BAD_ALG,
        "Unsupported algorithm of none",
        _SPRING_DECODER_SRC,
    ),
    _row(
        SPRING,
        r"\bunsecured \(plain\) JWTs are rejected\b",
        Cause.BAD_ALG,
        "Unsecured (plain) JWTs are rejected, extend class to handle",
        _NIMBUS_PROC_SRC,
    ),
    _row(
        NIMBUS,
        r"\bthe signature must not be empty\b",
        Cause.BAD_ALG,
        "The signature must not be empty",
        _NIMBUS_10_SRC.format(path="jose/JWSObject.java")
        + " (an unsigned token whose alg is not exactly 'none', e.g. 'nOnE'; as jsonwebtoken's 'jwt signature "
        "is required')",
    ),
    # ---- 6. Key lookup ------------------------------------------------------------------
    _row(
        ENVOY,
        r"\bjwks doesn't have key to match kid or alg\b",
        Cause.UNKNOWN_KID,
        "Jwks doesn't have key to match kid or alg from Jwt",
        _ENVOY_SRC,
    ),
    _row(
        JOSE,
        r"\bno applicable key found in the JSON Web Key Set\b",
        Cause.UNKNOWN_KID,
        "no applicable key found in the JSON Web Key Set",
        _JOSE_ERRORS_SRC,
    ),
    _row(
        GO_JOSE,
        r"\bJWK with matching kid not found in JWK Set\b",
        Cause.UNKNOWN_KID,
        "go-jose/go-jose: JWK with matching kid not found in JWK Set",
        "go-jose/go-jose jwk.go (ErrJWKSKidNotFound)",
    ),
    _row(
        ASPNETCORE,
        r"\bthe signature key was not found\b",
        Cause.UNKNOWN_KID,
        "The signature key was not found",
        _ASPNET_SRC,
    ),
    # ---- 7. Signature -------------------------------------------------------------------
    _row(ENVOY, r"\bjwt verification fails\b", Cause.BAD_SIGNATURE, "Jwt verification fails", _ENVOY_SRC),
    _row(
        JOSE,
        r"\bsignature verification failed\b",
        Cause.BAD_SIGNATURE,
        "signature verification failed",
        _JOSE_ERRORS_SRC + "; the same words as jpadilla/pyjwt jwt/api_jws.py 'Signature verification failed'",
    ),
    _row(
        GOLANG_JWT,
        r"\btoken signature is invalid\b",
        Cause.BAD_SIGNATURE,
        "token signature is invalid: crypto/rsa: verification error",
        _GOLANG_PARSER_SRC,
    ),
    _row(
        GO_JOSE,
        r"\berror in cryptographic primitive\b",
        Cause.BAD_SIGNATURE,
        "go-jose/go-jose: error in cryptographic primitive",
        "go-jose/go-jose shared.go (ErrCryptoFailure, returned by signing.go Verify)",
    ),
    _row(
        ASPNETCORE,
        r"\bthe signature is invalid\b",
        Cause.BAD_SIGNATURE,
        "The signature is invalid",
        _ASPNET_SRC,
    ),
    _row(
        SPRING,
        r"\bsigned JWT rejected: invalid signature\b",
        Cause.BAD_SIGNATURE,
        "An error occurred while attempting to decode the Jwt: Signed JWT rejected: Invalid signature",
        _NIMBUS_PROC_SRC,
    ),
    _row(
        JSONWEBTOKEN,
        r"\binvalid signature\b",
        Cause.BAD_SIGNATURE,
        "invalid signature",
        _JSONWEBTOKEN_SRC + "; the same words as Kong/kong kong/plugins/jwt/handler.lua 'Invalid signature'",
    ),
    _row(
        GO_OIDC,
        r"\bfailed to verify id token signature\b",
        Cause.BAD_SIGNATURE,
        "failed to verify signature: failed to verify id token signature",
        _GO_OIDC_JWKS_SRC + " (no key it holds verifies: a bad signature, or a kid it has not fetched)",
    ),
    _row(
        KEYCLOAK,
        r"\binvalid token signature\b",
        Cause.BAD_SIGNATURE,
        "Invalid token signature",
        _KEYCLOAK_SRC,
    ),
    _row(JOSERFC, r"\bbad_signature:", Cause.BAD_SIGNATURE, "bad_signature: ", _JOSERFC_SRC),
    _row(
        JWX,
        r"\bcould not verify message using any of the signatures or keys\b",
        Cause.BAD_SIGNATURE,
        "could not verify message using any of the signatures or keys",
        "lestrrat-go/jwx v2 jws/jws.go (Verify)",
    ),
    _row(
        GOLANG_JWT,
        r"\bsignature is invalid\b",
        Cause.BAD_SIGNATURE,
        "signature is invalid",
        "golang-jwt/jwt v4 errors.go (ErrSignatureInvalid; v5 hmac.go)",
    ),
    # ---- 8. Issuer ----------------------------------------------------------------------
    _row(
        ENVOY,
        r"\bjwt issuer is not configured\b",
        Cause.ISSUER_MISMATCH,
        "Jwt issuer is not configured",
        _ENVOY_SRC,
    ),
    _row(
        GO_JOSE,
        r"\binvalid issuer claim \(iss\)",
        Cause.ISSUER_MISMATCH,
        "go-jose/go-jose/jwt: validation failed, invalid issuer claim (iss)",
        _GO_JOSE_JWT_SRC,
    ),
    _row(
        GOLANG_JWT,
        r"\btoken has invalid issuer\b",
        Cause.ISSUER_MISMATCH,
        "token has invalid claims: token has invalid issuer",
        _GOLANG_ERRORS_SRC,
    ),
    _row(PYJWT, r"\binvalid issuer\b", Cause.ISSUER_MISMATCH, "Invalid issuer", _PYJWT_JWT_SRC),
    _row(
        JOSE,
        rf"\bunexpected {_Q}iss{_Q} claim value\b",
        Cause.ISSUER_MISMATCH,
        'unexpected "iss" claim value',
        _JOSE_CLAIMS_SRC,
    ),
    _row(
        JSONWEBTOKEN,
        r"\bjwt issuer invalid\b",
        Cause.ISSUER_MISMATCH,
        "jwt issuer invalid. expected: https://login.acme.test",
        _JSONWEBTOKEN_SRC,
    ),
    _row(
        SPRING,
        r"\bthe iss claim is not valid\b",
        Cause.ISSUER_MISMATCH,
        "An error occurred while attempting to decode the Jwt: The iss claim is not valid",
        _SPRING_CLAIM_SRC + " (as JwtIssuerValidator builds it)",
    ),
    _row(JWX, rf"{_Q}iss{_Q} not satisfied\b", Cause.ISSUER_MISMATCH, '"iss" not satisfied', _JWX_SRC),
    _row(
        NIMBUS,
        r"\bJWT iss claim value rejected\b",
        Cause.ISSUER_MISMATCH,
        "JWT iss claim value rejected",
        _NIMBUS_10_SRC.format(path="jwt/proc/DefaultJWTClaimsVerifier.java (exact-match claims)"),
    ),
    # ---- 9. Audience --------------------------------------------------------------------
    _row(
        ENVOY,
        r"\baudiences in jwt are not allowed\b",
        Cause.AUDIENCE_MISMATCH,
        "Audiences in Jwt are not allowed",
        _ENVOY_SRC,
    ),
    _row(
        GO_JOSE,
        r"\binvalid audience claim \(aud\)",
        Cause.AUDIENCE_MISMATCH,
        "go-jose/go-jose/jwt: validation failed, invalid audience claim (aud)",
        _GO_JOSE_JWT_SRC,
    ),
    _row(
        GOLANG_JWT,
        r"\btoken has invalid audience\b",
        Cause.AUDIENCE_MISMATCH,
        "token has invalid claims: token has invalid audience",
        _GOLANG_ERRORS_SRC,
    ),
    _row(PYJWT, r"\binvalid audience\b", Cause.AUDIENCE_MISMATCH, "Invalid audience", _PYJWT_JWT_SRC),
    _row(
        PYJWT,
        r"\baudience doesn'?t match\b",
        Cause.AUDIENCE_MISMATCH,
        "Audience doesn't match",
        _PYJWT_JWT_SRC,
    ),
    _row(
        JOSE,
        rf"\bunexpected {_Q}aud{_Q} claim value\b",
        Cause.AUDIENCE_MISMATCH,
        'unexpected "aud" claim value',
        _JOSE_CLAIMS_SRC,
    ),
    _row(
        JSONWEBTOKEN,
        r"\bjwt audience invalid\b",
        Cause.AUDIENCE_MISMATCH,
        "jwt audience invalid. expected: api://payments",
        _JSONWEBTOKEN_SRC,
    ),
    _row(
        SPRING,
        r"\bthe aud claim is not valid\b",
        Cause.AUDIENCE_MISMATCH,
        "An error occurred while attempting to decode the Jwt: The aud claim is not valid",
        _SPRING_CLAIM_SRC + " (as JwtAudienceValidator builds it)",
    ),
    _row(JWX, rf"{_Q}aud{_Q} not satisfied\b", Cause.AUDIENCE_MISMATCH, '"aud" not satisfied', _JWX_SRC),
    _row(
        NIMBUS,
        r"\bJWT aud claim rejected\b",
        Cause.AUDIENCE_MISMATCH,
        "JWT aud claim rejected",
        _NIMBUS_10_SRC.format(path="jwt/proc/DefaultJWTClaimsVerifier.java"),
    ),
    _row(
        AWS_APIGW,
        r"\bthe token does not have a valid audience\b",
        Cause.AUDIENCE_MISMATCH,
        'Bearer scope="" error="invalid_token" error_description="the token does not have a valid audience"',
        _AWS_DOC_SRC,
    ),
    # ---- 10. Time: not yet valid (nbf, or iat in the future) ------------------------------
    _row(
        GO_OIDC,
        r"\boidc: current time .{1,80}? before the nbf \(not before\) time\b",
        Cause.NOT_YET_VALID,
        "oidc: current time 2024-05-01 10:00:00 +0000 UTC before the nbf (not before) time: "
        "2024-05-01 10:06:00 +0000 UTC",
        _GO_OIDC_SRC + " (after its own 5-minute leeway)",
        times=time_spec(
            "nbf",
            rf"\bcurrent time (?P<clock>{_GO_TIME}).{{0,40}}? before the nbf \(not before\) time: "
            rf"(?P<claim>{_GO_TIME})",
        ),
    ),
    _row(JWX, rf"{_Q}(?:nbf|iat){_Q} not satisfied\b", Cause.NOT_YET_VALID, '"nbf" not satisfied', _JWX_SRC),
    _row(ENVOY, r"\bjwt not yet valid\b", Cause.NOT_YET_VALID, "Jwt not yet valid", _ENVOY_SRC),
    _row(
        PYJWT,
        r"\bthe token is not yet valid \(nbf\)",
        Cause.NOT_YET_VALID,
        "The token is not yet valid (nbf)",
        _PYJWT_JWT_SRC,
    ),
    _row(
        PYJWT,
        r"\bthe token is not yet valid \(iat\)",
        Cause.NOT_YET_VALID,
        "The token is not yet valid (iat)",
        _PYJWT_JWT_SRC,
    ),
    _row(
        JOSE,
        rf"{_Q}nbf{_Q} claim timestamp check failed\b",
        Cause.NOT_YET_VALID,
        '"nbf" claim timestamp check failed',
        _JOSE_CLAIMS_SRC,
    ),
    _row(
        JOSE,
        rf"{_Q}iat{_Q} claim timestamp check failed \(it should be in the past\)",
        Cause.NOT_YET_VALID,
        '"iat" claim timestamp check failed (it should be in the past)',
        _JOSE_CLAIMS_SRC,
    ),
    _row(
        JSONWEBTOKEN,
        r"\bjwt not active\b",
        Cause.NOT_YET_VALID,
        "jwt not active",
        _JSONWEBTOKEN_SRC + " (NotBeforeError carries date, the nbf)",
        times=time_spec("nbf", rf"\bdate\W{{0,6}}(?P<claim>{_ISO_TIME})"),
    ),
    _row(
        GOLANG_JWT,
        r"\btoken is not valid yet\b",
        Cause.NOT_YET_VALID,
        "token has invalid claims: token is not valid yet",
        _GOLANG_ERRORS_SRC,
    ),
    _row(
        GOLANG_JWT,
        r"\btoken used before issued\b",
        Cause.NOT_YET_VALID,
        "token has invalid claims: token used before issued",
        _GOLANG_ERRORS_SRC,
    ),
    _row(
        GO_JOSE,
        r"\btoken not valid yet \(nbf\)",
        Cause.NOT_YET_VALID,
        "go-jose/go-jose/jwt: validation failed, token not valid yet (nbf)",
        _GO_JOSE_JWT_SRC,
    ),
    _row(
        GO_JOSE,
        r"\btoken issued in the future \(iat\)",
        Cause.NOT_YET_VALID,
        "go-jose/go-jose/jwt: validation field, token issued in the future (iat)",
        _GO_JOSE_JWT_SRC + " (the 'field' typo is in the source)",
    ),
    _row(
        SPRING,
        r"\bjwt used before\b",
        Cause.NOT_YET_VALID,
        "An error occurred while attempting to decode the Jwt: Jwt used before 2024-05-01T12:00:00Z",
        _SPRING_TS_SRC,
        times=time_spec("nbf", rf"\bjwt used before (?P<claim>{_ISO_TIME})"),
    ),
    _row(
        SPRING,
        r"\bJWT before use time\b",
        Cause.NOT_YET_VALID,
        "JWT before use time",
        _NIMBUS_CLAIMS_SRC,
    ),
    _row(
        KONG,
        r"\btoken not valid yet\b",
        Cause.NOT_YET_VALID,
        '{"nbf":"token not valid yet"}',
        _KONG_PARSER_SRC,
    ),
    _row(
        ASPNETCORE,
        r"\bthe token is not valid (?:yet|before)\b",
        Cause.NOT_YET_VALID,
        "The token is not valid before '05/01/2024 12:00:00'",
        _ASPNET_SRC,
        times=time_spec("nbf", r"\bthe token is not valid before '(?P<claim>[^']{1,64})'"),
    ),
    # ---- 11. Time: expired ----------------------------------------------------------------
    _row(
        GO_OIDC,
        r"\boidc: token is expired \(Token Expiry\b",
        Cause.EXPIRED,
        "oidc: token is expired (Token Expiry: 2024-05-01 10:00:00 +0000 UTC)",
        _GO_OIDC_SRC,
        times=time_spec("exp", rf"\(Token Expiry: (?P<claim>{_GO_TIME})"),
    ),
    _row(
        JWX,
        rf"{_Q}exp{_Q} not satisfied\b",
        Cause.EXPIRED,
        '"exp" not satisfied: token is expired',
        _JWX_SRC + " (v3 adds ': token is expired')",
    ),
    _row(JOSERFC, r"\bexpired_token:", Cause.EXPIRED, "expired_token: The token is expired", _JOSERFC_SRC),
    _row(ENVOY, r"\bjwt is expired\b", Cause.EXPIRED, "Jwt is expired", _ENVOY_SRC),
    _row(PYJWT, r"\bsignature has expired\b", Cause.EXPIRED, "Signature has expired", _PYJWT_JWT_SRC),
    _row(
        JOSE,
        rf"{_Q}exp{_Q} claim timestamp check failed\b",
        Cause.EXPIRED,
        '"exp" claim timestamp check failed',
        _JOSE_CLAIMS_SRC,
    ),
    _row(
        JOSE,
        rf"{_Q}iat{_Q} claim timestamp check failed \(too far in the past\)",
        Cause.EXPIRED,
        '"iat" claim timestamp check failed (too far in the past)',
        _JOSE_CLAIMS_SRC + " (a JWTExpired: the token is older than maxTokenAge)",
    ),
    _row(
        SPRING,
        r"\bjwt expired at\b",
        Cause.EXPIRED,
        "An error occurred while attempting to decode the Jwt: Jwt expired at 2024-05-01T10:00:00Z",
        _SPRING_TS_SRC,
        times=time_spec("exp", rf"\bjwt expired at (?P<claim>{_ISO_TIME})"),
    ),
    _row(
        JSONWEBTOKEN,
        r"\bjwt expired\b",
        Cause.EXPIRED,
        "jwt expired",
        _JSONWEBTOKEN_SRC + " (TokenExpiredError carries expiredAt)",
        times=_JSONWEBTOKEN_EXPIRED_AT,
    ),
    _row(
        JSONWEBTOKEN,
        r"\bmaxAge exceeded\b",
        Cause.EXPIRED,
        "maxAge exceeded",
        _JSONWEBTOKEN_SRC,
        times=_JSONWEBTOKEN_EXPIRED_AT,
    ),
    _row(
        GO_JOSE,
        r"\btoken is expired \(exp\)",
        Cause.EXPIRED,
        "go-jose/go-jose/jwt: validation failed, token is expired (exp)",
        _GO_JOSE_JWT_SRC,
    ),
    _row(
        GOLANG_JWT,
        r"\btoken is expired\b",
        Cause.EXPIRED,
        "token has invalid claims: token is expired by 1h0m0s",
        _GOLANG_VALIDATOR_SRC,
        times=time_spec("exp", r"\btoken is expired by (?P<by>-?[0-9][0-9.hmnsuµμ]{0,40})"),
    ),
    _row(SPRING, r"\bexpired JWT\b", Cause.EXPIRED, "Expired JWT", _NIMBUS_CLAIMS_SRC),
    _row(
        ASPNETCORE,
        r"\bthe token (?:is expired|expired at)\b",
        Cause.EXPIRED,
        "The token expired at '05/01/2024 10:00:00'",
        _ASPNET_SRC,
        times=time_spec("exp", r"\bthe token expired at '(?P<claim>[^']{1,64})'"),
    ),
    _row(KONG, r"\btoken expired\b", Cause.EXPIRED, '{"exp":"token expired"}', _KONG_PARSER_SRC),
    _row(
        AWS_APIGW,
        r"\bthe token has expired\b",
        Cause.EXPIRED,
        'Bearer scope="orders/admin" error="invalid_token" error_description="the token has expired"',
        "Observed HTTP API JWT authorizer response, keitakn/go-cognito-lambda README.md",
    ),
)


#: Slots in messages that have no row of their own (they say nothing known, or only wrap a
#: message that does): their token values are masked all the same.
TOKEN_VALUE_SLOTS: tuple[Slot, ...] = tuple(
    Slot.parse(spec)
    for spec in (
        r"\bfailed to find JWT key with ID {kid| in }",  # MicahParks/jwkset http.go
        r"\bjwt (?:audience|issuer|id|subject) invalid\. expected: {value}",  # auth0/node-jsonwebtoken verify.js
        r"\btoken type is incorrect\. expected {typ}",  # keycloak TokenVerifier.java
    )
)

_MASKER = SlotMasker([slot for row in REPORTED_ERRORS for slot in row.slots] + list(TOKEN_VALUE_SLOTS))


def mask_reported(message: str | None) -> str:
    """The message as the rows see it: normalised, every token-derived value replaced by `MASK`."""
    read = normalise(message)
    return _MASKER.mask(read.text, read.truncated)


#: Each row's literal gate (`reported_match.LiteralGate`): its regex runs only when the gate passes.
_GATED_ROWS: tuple[tuple[LiteralGate, ReportedPattern], ...] = tuple(
    (LiteralGate.of(row.pattern), row) for row in REPORTED_ERRORS
)


#: Below this length a row's regex costs less than its gate: every row is searched.
_GATE_MIN_CHARS = 32


def _match_masked(masked: str) -> ReportedPattern | None:
    if not masked:
        return None
    if len(masked) < _GATE_MIN_CHARS:
        for row in REPORTED_ERRORS:
            if row.pattern.search(masked):
                return row
        return None
    folded = fold(masked)
    for gate, row in _GATED_ROWS:
        if gate.passes(folded) and row.pattern.search(masked):
            return row
    return None


@dataclass(frozen=True, slots=True)
class ReportedJudgement:
    """What a reported message establishes: a cause, the row that said so, and the time facts."""

    cause: Cause
    row: ReportedPattern | None
    skew_seconds: float | None = None
    detail_facts: tuple[str, ...] = field(default=())
    stated_time: StatedTime | None = None


def judge_reported(
    message: str | None, ts: datetime, leeway_seconds: float, skew_window_seconds: float
) -> ReportedJudgement:
    """The verdict a validator's own message supports, for an event at `ts` of a service with that leeway.

    Where the deciding row's message states the failing time, it is split as DESIGN.md step 6
    splits a token's: an overshoot beyond the leeway of at most `skew_window_seconds` is
    `clock_skew`, more is the row's `expired` / `not_yet_valid`; `skew_seconds` is the overshoot
    (0 when the stated times fail within the leeway: the validator's clock or leeway differs).
    """
    masked = mask_reported(message)
    row = _match_masked(masked)
    if row is None:
        return ReportedJudgement(Cause.UNVERIFIABLE, None)
    facts = [f"{row.validator} says {row.cause.value}"]
    stated = None
    if row.times is not None:
        stated = read_stated_time(row.times, masked, ts, leeway_seconds)
    if stated is None:
        return ReportedJudgement(row.cause, row, None, tuple(facts))
    facts.extend(_time_facts(stated, leeway_seconds))
    if stated.overshoot <= skew_window_seconds:
        facts.append(f"within the {skew_window_seconds:g} s skew window: a clock is off")
        return ReportedJudgement(Cause.CLOCK_SKEW, row, max(stated.overshoot, 0.0), tuple(facts), stated)
    return ReportedJudgement(row.cause, row, stated.overshoot, tuple(facts), stated)


def _time_facts(stated: StatedTime, leeway_seconds: float) -> list[str]:
    claim = "exp" if stated.kind == "exp" else "nbf"
    facts = []
    if stated.claim_time is not None:
        facts.append(f"it states {claim} {stated.claim_time.isoformat().replace('+00:00', 'Z')}")
    if stated.clock is not None:
        whose = "the validator's clock" if stated.clock_stated else "the event's time"
        facts.append(f"{whose} {stated.clock.isoformat().replace('+00:00', 'Z')}")
    side = "past exp" if stated.kind == "exp" else "before nbf"
    facts.append(f"{stated.off_by:g} s {side}, {stated.overshoot:g} s beyond the {leeway_seconds:g} s leeway")
    return facts


def match_reported(message: str | None) -> ReportedPattern | None:
    """The first row of `REPORTED_ERRORS` whose pattern occurs in the normalised, masked message."""
    return _match_masked(mask_reported(message))


def cause_from_reported(message: str | None) -> Cause:
    """The cause a validator's own error message stands for; `unverifiable` when unknown."""
    row = match_reported(message)
    return row.cause if row is not None else Cause.UNVERIFIABLE
