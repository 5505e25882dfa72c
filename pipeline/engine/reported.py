"""Map another validator's own error message (`reported_error`) onto a `Cause`.

When an auth-failure event carries no token (and no fingerprint that joins a sampled one),
the only evidence left is what the rejecting validator said. This module turns that text
into a cause with confidence `reported`.

Why a table: every validator words its errors differently, and the wording is the only
stable interface we have to them. Keeping the knowledge as data, one `ReportedPattern` per
known message, means each row carries a real example and where it comes from, one test is
generated per row (`tests/test_reported.py`), and adding a validator is a data change, not a
new branch in an if-chain.

How a message is matched: the first `MAX_SCAN_CHARS` characters are searched with every
row's pattern, case-insensitively, in table order; the first row that matches decides. A
message that matches no row, and an empty or missing one, is `Cause.UNVERIFIABLE`.

Rules for the table:

- Most specific first. A message that could match two rows with different causes must
  meet the more specific row first (e.g. golang-jwt's "token signature is invalid: signing
  method none is invalid" is a `bad_alg` before it is a `bad_signature`; Kong's "Bad token;
  invalid signature" is `malformed` before it is a `bad_signature`).
- Rows keyed on a code (Microsoft `IDXnnnnn`, panva/jose `ERR_*`) and rows whose message
  embeds values taken from the token (a kid, an audience, an alg) come first, so that a
  hostile `kid` such as "jwt expired" cannot steer the match.
- A message that says nothing about the token gets no row: a missing token ("Jwt is
  missing"), a JWKS fetch failure, a service configuration error, or a generic "invalid
  token" / "Unauthorized". They fall through to `unverifiable`.
- A reported message cannot tell clock skew from expiry: `exp` failures are `expired`,
  `nbf`/`iat`-in-the-future failures are `not_yet_valid`.
- As the contract says, a missing `aud` is an `audience_mismatch` and a missing `iss` an
  `issuer_mismatch`; any other missing required claim is `missing_claim`.
- Patterns must be safe on hostile input: literals, bounded repeats (`{0,n}`) and
  character classes only, never a quantified group that can match the same text two ways.

To add a row: take the message text from the validator's source or documentation (never
invent one), write a pattern that matches that family of messages and nothing generic, put
the row where the specificity rules above want it, set `example` to a message exactly as the
validator emits it (placeholders filled in) and `source` to where it comes from
("owner/repo path", or the title of a documentation page). `tests/test_reported.py` then
checks that the example maps to the row's cause through the whole table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.models import Cause

#: Only this many leading characters of a reported message are searched.
MAX_SCAN_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class ReportedPattern:
    """One known family of validator messages and the cause it stands for."""

    validator: str
    pattern: re.Pattern[str]
    cause: Cause
    example: str
    source: str


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
_KONG_PARSER_SRC = "Kong/kong kong/plugins/jwt/jwt_parser.lua (errors table, sent as the JSON body)"
_AWS_DOC_SRC = (
    "AWS API Gateway Developer Guide, 'Troubleshooting issues with HTTP API JWT authorizers' "
    "(awsdocs/amazon-api-gateway-developer-guide)"
)

# A quote as it may appear in a log line: ", ' or \" (JSON-escaped), or none at all.
_Q = r"""[\\"']{0,2}"""


def _row(validator: str, regex: str, cause: Cause, example: str, source: str) -> ReportedPattern:
    return ReportedPattern(validator, re.compile(regex, re.IGNORECASE), cause, example, source)


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
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10502\b",
        Cause.UNKNOWN_KID,
        "IDX10502: Signature validation failed. The token's kid is: 'k2', but did not match any keys in "
        "ValidationParameters or Configuration and TryAllIssuerSigningKeys is false. Number of keys in "
        "ValidationParameters: '0'. \nNumber of keys in Configuration: '1'.\ntoken: '[PII is hidden]'.",
        _IM_TOKENS_SRC,
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10501\b",
        Cause.UNKNOWN_KID,
        "IDX10501: Signature validation failed. Unable to match key: \nkid: 'k2'. \nNumber of keys in "
        "TokenValidationParameters: '0'. \nNumber of keys in Configuration: '1'. \nExceptions caught:\n ''. "
        "\ntoken: '[PII is hidden]'.",
        _IM_TOKENS_OLD_SRC,
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10516\b",
        Cause.UNKNOWN_KID,
        "IDX10516: Signature validation failed. Unable to match key: \nkid: 'k2'. \nNumber of keys in "
        "TokenValidationParameters: '0'. \nNumber of keys in Configuration: '1'. \nExceptions caught:\n ''. "
        "\ntoken: '[PII is hidden]'. Valid Lifetime: 'True'. Valid Issuer: 'True'",
        _IM_TOKENS_OLD_SRC,
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
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10696\b",
        Cause.BAD_ALG,
        "IDX10696: The algorithm 'HS256' is not in the user-defined accepted list of algorithms.",
        _IM_TOKENS_SRC,
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10223\b",
        Cause.EXPIRED,
        "IDX10223: Lifetime validation failed. The token is expired. ValidTo (UTC): '5/1/2024 10:00:00 AM', "
        "Current time (UTC): '5/1/2024 11:00:00 AM'.",
        _IM_TOKENS_SRC,
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX10222\b",
        Cause.NOT_YET_VALID,
        "IDX10222: Lifetime validation failed. The token is not yet valid. ValidFrom (UTC): "
        "'5/1/2024 12:00:00 PM', Current time (UTC): '5/1/2024 11:00:00 AM'.",
        _IM_TOKENS_SRC,
    ),
    _row(
        IDENTITYMODEL,
        r"\bIDX1021[45]\b",
        Cause.AUDIENCE_MISMATCH,
        "IDX10214: Audience validation failed. Audiences: 'api://orders'. Did not match: "
        "validationParameters.ValidAudience: 'api://payments' or validationParameters.ValidAudiences: 'null'.",
        _IM_TOKENS_SRC,
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
    _row(
        PYJWT,
        r"\bunable to find a signing key that matches\b",
        Cause.UNKNOWN_KID,
        'Unable to find a signing key that matches: "k2"',
        _PYJWT_JWKS_SRC,
    ),
    _row(
        GO_JOSE,
        r"\bunexpected signature algorithm\b",
        Cause.BAD_ALG,
        'unexpected signature algorithm "HS256"; expected ["RS256"]',
        "go-jose/go-jose jws.go (ErrUnexpectedSignatureAlgorithm)",
    ),
    _row(
        GOLANG_JWT,
        r"\bsignature is invalid: signing method .{0,128}? is invalid\b",
        Cause.BAD_ALG,
        "token signature is invalid: signing method none is invalid",
        _GOLANG_PARSER_SRC,
    ),
    _row(
        ASPNETCORE,
        r"\bthe audience (?:'[^']{0,512}' )?is invalid\b",
        Cause.AUDIENCE_MISMATCH,
        "The audience 'api://orders' is invalid",
        _ASPNET_SRC,
    ),
    _row(
        ASPNETCORE,
        r"\bthe issuer (?:'[^']{0,512}' )?is invalid\b",
        Cause.ISSUER_MISMATCH,
        "The issuer 'https://evil.test' is invalid",
        _ASPNET_SRC,
    ),
    _row(
        SPRING,
        r"\bJWT audience rejected\b",
        Cause.AUDIENCE_MISMATCH,
        "JWT audience rejected: [api://orders]",
        _NIMBUS_CLAIMS_SRC,
    ),
    _row(
        SPRING,
        r"\bJWT iss claim has value\b",
        Cause.ISSUER_MISMATCH,
        "JWT iss claim has value https://evil.test, must be https://login.acme.test",
        _NIMBUS_CLAIMS_SRC,
    ),
    # ---- 3. Missing claims: a missing aud / iss is a mismatch (contract), others are not ----
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
    _row(
        ENVOY,
        r"\bjwt (?:header|payload) \[\w{1,16}\] field is (?:not|required)\b",
        Cause.MALFORMED,
        "Jwt payload [exp] field is not an integer",
        _ENVOY_SRC,
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
    _row(JSONWEBTOKEN, r"\bjwt malformed\b", Cause.MALFORMED, "jwt malformed", _JSONWEBTOKEN_SRC),
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
        SPRING,
        r"\bunsupported algorithm of\b",
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
        SPRING,
        r"\banother algorithm expected, or no matching key\(s\) found",
        Cause.UNKNOWN_KID,
        "An error occurred while attempting to decode the Jwt: Signed JWT rejected: Another algorithm "
        "expected, or no matching key(s) found",
        _NIMBUS_PROC_SRC,
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
    _row(
        AWS_APIGW,
        r"\bthe token does not have a valid audience\b",
        Cause.AUDIENCE_MISMATCH,
        'Bearer scope="" error="invalid_token" error_description="the token does not have a valid audience"',
        _AWS_DOC_SRC,
    ),
    # ---- 10. Time: not yet valid (nbf, or iat in the future) ------------------------------
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
    _row(JSONWEBTOKEN, r"\bjwt not active\b", Cause.NOT_YET_VALID, "jwt not active", _JSONWEBTOKEN_SRC),
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
    ),
    # ---- 11. Time: expired ----------------------------------------------------------------
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
    ),
    _row(JSONWEBTOKEN, r"\bjwt expired\b", Cause.EXPIRED, "jwt expired", _JSONWEBTOKEN_SRC),
    _row(JSONWEBTOKEN, r"\bmaxAge exceeded\b", Cause.EXPIRED, "maxAge exceeded", _JSONWEBTOKEN_SRC),
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
    ),
    _row(SPRING, r"\bexpired JWT\b", Cause.EXPIRED, "Expired JWT", _NIMBUS_CLAIMS_SRC),
    _row(
        ASPNETCORE,
        r"\bthe token (?:is expired|expired at)\b",
        Cause.EXPIRED,
        "The token expired at '05/01/2024 10:00:00'",
        _ASPNET_SRC,
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


def match_reported(message: str | None) -> ReportedPattern | None:
    """The first row of `REPORTED_ERRORS` whose pattern occurs in `message`, else None."""
    if not message:
        return None
    head = message[:MAX_SCAN_CHARS]
    for row in REPORTED_ERRORS:
        if row.pattern.search(head):
            return row
    return None


def cause_from_reported(message: str | None) -> Cause:
    """The cause a validator's own error message stands for; `unverifiable` when unknown."""
    row = match_reported(message)
    return row.cause if row is not None else Cause.UNVERIFIABLE
