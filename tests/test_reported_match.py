"""Reported messages as they arrive in logs: normalised, masked, timed (`judge_reported`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.engine.reported import (
    REPORTED_ERRORS,
    TOKEN_VALUE_SLOTS,
    ReportedPattern,
    cause_from_reported,
    judge_reported,
    mask_reported,
    match_reported,
)
from pipeline.engine.reported_match import (
    MASK,
    MAX_SCAN_CHARS,
    SlotMasker,
    go_duration_seconds,
    normalise,
    parse_time,
)
from pipeline.models import Cause

FIXTURES = Path(__file__).parent / "fixtures"
ENVOY_STATUS = json.loads((FIXTURES / "reported" / "envoy_status.json").read_text())["statuses"]
TS = datetime(2024, 5, 1, 11, 0, 0, tzinfo=UTC)


def _envoy_access_log_form(status: str) -> str:
    """What Envoy's jwt_authn `generateRcDetails` writes into %RESPONSE_CODE_DETAILS%."""
    return "jwt_authn_access_denied{" + "_".join(status.split()) + "}"


# -- Envoy: every status string, both forms ---------------------------------------------------


def test_the_envoy_fixture_lists_every_status() -> None:
    statuses = {entry["status"] for entry in ENVOY_STATUS}
    assert len(statuses) == len(ENVOY_STATUS) >= 90
    assert {"Jwt is expired", "Jwt not yet valid", "Jwks doesn't have key to match kid or alg from Jwt"} <= statuses


@pytest.mark.parametrize("entry", ENVOY_STATUS, ids=[e["status"] for e in ENVOY_STATUS])
def test_every_envoy_status_maps_in_body_and_access_log_form(entry: dict[str, str]) -> None:
    cause = Cause(entry["cause"])
    body = entry["status"]
    access_log = _envoy_access_log_form(body)
    assert cause_from_reported(body) is cause
    assert cause_from_reported(access_log) is cause, mask_reported(access_log)
    # ...and as Envoy/Istio JSON access logs carry it.
    line = json.dumps({"response_code": 401, "response_code_details": access_log, "authority": "a.test"})
    assert cause_from_reported(line) is cause


@pytest.mark.parametrize(
    "details",
    [
        "jwt_authn_access_denied{Jwt_is_expired}",
        "jwt_authn_access_denied{Jwt_is_expired",  # the closing brace cut off
        "401 jwt_authn_access_denied{Jwt_is_expired} - via_upstream",
        '"jwt_authn_access_denied{Jwt_is_expired}"',
    ],
)
def test_envoy_access_log_variants(details: str) -> None:
    assert cause_from_reported(details) is Cause.EXPIRED


# -- normalisation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        # JSON escaping, once and twice.
        ('{"err":"missing required \\"aud\\" claim"}', Cause.AUDIENCE_MISMATCH),
        ("missing required \\u0022iss\\u0022 claim", Cause.ISSUER_MISMATCH),
        ("No mandatory \\u0027exp\\u0027 in claims", Cause.MISSING_CLAIM),
        ("Jwt is expired\\n", Cause.EXPIRED),
        # Percent and form encoding.
        (quote("Jwt is expired"), Cause.EXPIRED),
        (quote_plus("Jwt is expired"), Cause.EXPIRED),
        ("Jwt+is+expired", Cause.EXPIRED),
        (quote('Token is missing the "aud" claim'), Cause.AUDIENCE_MISMATCH),
        # HTML entities from an error page.
        ("Token is missing the &quot;iss&quot; claim", Cause.ISSUER_MISMATCH),
        ("No mandatory &#39;iss&#39; in claims", Cause.ISSUER_MISMATCH),
        # Surrounding quotes and whitespace.
        ("  'jwt malformed'  ", Cause.MALFORMED),
        ("`Signature has expired`", Cause.EXPIRED),
        # RFC 6750 challenges: the error_description is the message.
        (
            'Bearer error="invalid_token", error_description="The token expired at \'05/01/2024 10:00:00\'"',
            Cause.EXPIRED,
        ),
        (
            'WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="Invalid token issuer. '
            "Expected 'http://127.0.0.1:9080/realms/dev', but was 'http://localhost:9080/realms/dev'\"",
            Cause.ISSUER_MISMATCH,
        ),
        ('Bearer error="invalid_token", error_description="The signature key was not found"', Cause.UNKNOWN_KID),
        # Truncation marks: the cut word is dropped, what is whole still matches.
        ("token has invalid claims: token is expired, token has invalid audi…", Cause.EXPIRED),
        ("IDX10503: Signature validation failed. The token's kid is: 'k2', but did n...", Cause.UNKNOWN_KID),
    ],
)
def test_layers_added_on_the_way_into_a_log_are_taken_off(message: str, cause: Cause) -> None:
    assert cause_from_reported(message) is cause, mask_reported(message)


@pytest.mark.parametrize(
    "message",
    [
        "Signature has exp…",  # the distinctive word was cut: no guess
        "jwt expi[truncated]",
        'Bearer error="invalid_token"',  # a challenge without a description
        "Jwt%20is%20missing",
        "jwt_authn_access_denied{Jwks_remote_fetch_is_failed}",
    ],
)
def test_what_normalises_to_nothing_known_is_unverifiable(message: str) -> None:
    assert cause_from_reported(message) is Cause.UNVERIFIABLE, mask_reported(message)


def test_normalise_reports_truncation_and_drops_the_cut_word() -> None:
    read = normalise("token is expired by 1m3...")
    assert read.truncated and read.text == "token is expired by"
    assert normalise("x" * (MAX_SCAN_CHARS + 5)).truncated
    assert not normalise("Jwt is expired").truncated


def test_decoding_never_forges_a_mask() -> None:
    for message in ("kid \\u001a", "kid %1A", "kid \x1a", "kid &#26;"):
        assert MASK not in normalise(message).text


def test_token_shaped_strings_and_token_fields_are_masked() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJKd3QgaXMgZXhwaXJlZCJ9.c2ln"
    masked = mask_reported(f"rejected {token}: Jwt verification fails")
    assert token not in masked and "eyJ" not in masked
    assert cause_from_reported(f"rejected {token}: Jwt verification fails") is Cause.BAD_SIGNATURE
    line = '{"kid":"Jwt is expired","iss":"IDX10223","err":"signature verification failed"}'
    assert cause_from_reported(line) is Cause.BAD_SIGNATURE
    assert cause_from_reported('kid="Jwt is expired" alg=none msg="jwt malformed"') is Cause.MALFORMED


# -- nothing from the token steers the match --------------------------------------------------


ROWS_WITH_SLOTS = [row for row in REPORTED_ERRORS if row.slots]
_MASKER = SlotMasker([slot for row in REPORTED_ERRORS for slot in row.slots] + list(TOKEN_VALUE_SLOTS))


def _slot_spans(row: ReportedPattern) -> list[tuple[int, int]]:
    """Where the token values sit in the row's (already normal) example."""
    text = normalise(row.example).text
    return _MASKER.spans(text)


def test_rows_that_print_token_values_declare_slots() -> None:
    assert len(ROWS_WITH_SLOTS) >= 25
    for row in ROWS_WITH_SLOTS:
        assert _slot_spans(row), f"{row.validator}: no slot found in its example {row.example!r}"


def test_a_kid_that_reads_like_another_message_does_not_steer() -> None:
    # The issue's case: golang-jwt + keyfunc v3, and a kid whose text is Envoy's expiry status.
    message = 'token is unverifiable: error while executing keyfunc: key not found: kid "Jwt is expired"'
    assert cause_from_reported(message) is Cause.UNKNOWN_KID
    gotrue = "unrecognized JWT kid <nil> for algorithm ES256"
    assert cause_from_reported(gotrue) is Cause.UNKNOWN_KID
    assert cause_from_reported('unrecognized JWT kid "IDX10223" for algorithm jwt expired') is Cause.UNKNOWN_KID


_CAUSE_WORDS = [
    "Jwt is expired",
    "jwt expired",
    "token is expired by 9h0m0s",
    "IDX10223: Lifetime validation failed.",
    "ERR_JWT_EXPIRED",
    "jwt_authn_access_denied{Jwt_is_expired}",
    "jwt malformed",
    "invalid signature",
    "jwt audience invalid",
    "not yet valid",
    "Jwt expired at 2000-01-01T00:00:00Z",
    "ValidTo (UTC): '1/1/2000 12:00:00 AM', Current time (UTC): '1/1/2000 12:00:01 AM'",
]
_CLOSINGS = sorted({slot.closing for row in ROWS_WITH_SLOTS for slot in row.slots if slot.closing})
_HOSTILE_PIECES = st.sampled_from(
    [row.example for row in REPORTED_ERRORS] + _CAUSE_WORDS + _CLOSINGS + ['"', "'", '\\"', "`", "…", "%20", "{", "}"]
)
HOSTILE = st.one_of(
    _HOSTILE_PIECES,
    st.lists(st.one_of(_HOSTILE_PIECES, st.text(max_size=12)), min_size=1, max_size=4).map("".join),
    st.text(max_size=60),
)


@settings(max_examples=400, deadline=None)
@given(row=st.sampled_from(ROWS_WITH_SLOTS), hostile=HOSTILE, which=st.integers(min_value=0, max_value=3))
def test_no_string_in_a_token_slot_changes_the_cause(row: ReportedPattern, hostile: str, which: int) -> None:
    text = normalise(row.example).text
    spans = _MASKER.spans(text)
    start, end = spans[which % len(spans)]
    forged = text[:start] + hostile + text[end:]
    found = match_reported(forged)
    assert found is not None and found.cause is row.cause, (forged, found)
    assert judge_reported(forged, TS, 30, 300).cause in {row.cause, Cause.CLOCK_SKEW}


# -- times stated in messages -----------------------------------------------------------------


def _idx10223(valid_to: str, now: str) -> str:
    return (
        "IDX10223: Lifetime validation failed. The token is expired. "
        f"ValidTo (UTC): '{valid_to}', Current time (UTC): '{now}'."
    )


@pytest.mark.parametrize(
    ("message", "leeway", "cause", "skew"),
    [
        # The issue's case: 90 s past exp, 30 s leeway, 300 s window.
        (_idx10223("5/1/2024 10:00:00 AM", "5/1/2024 10:01:30 AM"), 30, Cause.CLOCK_SKEW, 60),
        (_idx10223("5/1/2024 10:00:00 AM", "5/1/2024 10:05:30 AM"), 30, Cause.CLOCK_SKEW, 300),
        (_idx10223("5/1/2024 10:00:00 AM", "5/1/2024 10:05:31 AM"), 30, Cause.EXPIRED, 301),
        (_idx10223("2024-05-01T10:00:00.0000000Z", "2024-05-01T12:00:00.0000000Z"), 0, Cause.EXPIRED, 7200),
        (_idx10223("13/1/2024 10:00:00", "13/1/2024 10:00:20"), 0, Cause.CLOCK_SKEW, 20),  # d/M, 24 h
        # IDX10222: nbf 90 s after the validator's clock.
        (
            "IDX10222: Lifetime validation failed. The token is not yet valid. ValidFrom (UTC): "
            "'5/1/2024 11:01:30 AM', Current time (UTC): '5/1/2024 11:00:00 AM'.",
            30,
            Cause.CLOCK_SKEW,
            60,
        ),
        (
            "IDX10222: Lifetime validation failed. The token is not yet valid. ValidFrom (UTC): "
            "'5/1/2024 1:00:00 PM', Current time (UTC): '5/1/2024 11:00:00 AM'.",
            30,
            Cause.NOT_YET_VALID,
            7170,
        ),
        # Stated exp, no stated clock: relative to the event's ts (11:00:00).
        (
            "An error occurred while attempting to decode the Jwt: Jwt expired at 2024-05-01T10:58:30Z",
            30,
            Cause.CLOCK_SKEW,
            60,
        ),
        ("Jwt expired at 2024-05-01T09:00:00Z", 30, Cause.EXPIRED, 7170),
        ("Jwt used before 2024-05-01T11:01:00Z", 0, Cause.CLOCK_SKEW, 60),
        ("The token expired at '05/01/2024 10:59:00'", 0, Cause.CLOCK_SKEW, 60),
        ("The token is not valid before '05/01/2024 13:00:00'", 0, Cause.NOT_YET_VALID, 7200),
        # golang-jwt v4 says by how much.
        ("token is expired by 1m30s", 30, Cause.CLOCK_SKEW, 60),
        ("token has invalid claims: token is expired by 2h0m0.5s", 0, Cause.EXPIRED, 7200.5),
        # jsonwebtoken's TokenExpiredError / NotBeforeError, serialised into a log line.
        (
            '{"name":"TokenExpiredError","message":"jwt expired","expiredAt":"2024-05-01T10:59:00.000Z"}',
            30,
            Cause.CLOCK_SKEW,
            30,
        ),
        ("TokenExpiredError: jwt expired { expiredAt: 2024-05-01T08:00:00.000Z }", 0, Cause.EXPIRED, 10800),
        (
            '{"name":"NotBeforeError","message":"jwt not active","date":"2024-05-01T11:02:00.000Z"}',
            0,
            Cause.CLOCK_SKEW,
            120,
        ),
        # go-oidc (oauth2-proxy).
        ("oidc: token is expired (Token Expiry: 2024-05-01 10:59:00 +0000 UTC)", 0, Cause.CLOCK_SKEW, 60),
        ("oidc: token is expired (Token Expiry: 2024-05-01 12:59:00 +0200 CEST)", 0, Cause.CLOCK_SKEW, 60),
        (
            "oidc: current time 2024-05-01 10:00:00 +0000 UTC before the nbf (not before) time: "
            "2024-05-01 10:06:00 +0000 UTC",
            30,
            Cause.NOT_YET_VALID,
            330,
        ),
    ],
)
def test_a_stated_time_splits_clock_skew_from_expiry(message: str, leeway: float, cause: Cause, skew: float) -> None:
    judged = judge_reported(message, TS, leeway, 300)
    assert judged.cause is cause, judged
    assert judged.skew_seconds == pytest.approx(skew)
    assert judged.row is not None and judged.stated_time is not None
    assert any("leeway" in fact for fact in judged.detail_facts)


def test_stated_times_within_the_leeway_are_clock_skew_with_zero_skew() -> None:
    judged = judge_reported(_idx10223("5/1/2024 10:00:00 AM", "5/1/2024 10:00:10 AM"), TS, 30, 300)
    assert (judged.cause, judged.skew_seconds) == (Cause.CLOCK_SKEW, 0.0)


@pytest.mark.parametrize(
    ("message", "cause"),
    [
        ("IDX10223: Lifetime validation failed. The token is expired.", Cause.EXPIRED),  # no times stated
        (_idx10223("2/31/2024 10:00:00 AM", "5/1/2024 10:01:30 AM"), Cause.EXPIRED),  # not a date
        ("Jwt is expired", Cause.EXPIRED),
        ("token is expired by soon", Cause.EXPIRED),
        ("jwt not active", Cause.NOT_YET_VALID),
        ('Unable to find a signing key that matches: "Jwt expired at 2024-05-01T10:59:59Z"', Cause.UNKNOWN_KID),
    ],
)
def test_without_a_readable_time_the_row_cause_stands(message: str, cause: Cause) -> None:
    judged = judge_reported(message, TS, 30, 300)
    assert (judged.cause, judged.skew_seconds, judged.stated_time) == (cause, None, None)


def test_judge_reported_agrees_with_match_reported_on_every_example() -> None:
    for row in REPORTED_ERRORS:
        judged = judge_reported(row.example, TS, 0, 300)
        assert judged.row is row
        assert judged.cause in {row.cause, Cause.CLOCK_SKEW}


def test_judge_reported_without_a_message() -> None:
    for message in (None, "", "something else"):
        judged = judge_reported(message, TS, 30, 300)
        assert (judged.cause, judged.row, judged.skew_seconds) == (Cause.UNVERIFIABLE, None, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T12:00:00.123+02:00", datetime(2024, 5, 1, 10, 0, 0, 123_000, tzinfo=UTC)),
        ("5/1/2024 10:00:00 PM", datetime(2024, 5, 1, 22, tzinfo=UTC)),
        ("5/1/2024 12:00:00 AM", datetime(2024, 5, 1, 0, tzinfo=UTC)),
        ("2024-05-01 10:00:00.5 +0000 UTC m=+12.5", datetime(2024, 5, 1, 10, 0, 0, 500_000, tzinfo=UTC)),
        ("yesterday", None),
        ("2024-13-01T00:00:00Z", None),
    ],
)
def test_parse_time(text: str, expected: datetime | None) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m30s", 90.0), ("1h0m0s", 3600.0), ("250ms", 0.25), ("-3s", -3.0), ("1.5s", 1.5), ("s", None), ("1x", None)],
)
def test_go_durations(text: str, seconds: float | None) -> None:
    assert go_duration_seconds(text) == seconds


# -- hostile input ----------------------------------------------------------------------------

MEGABYTE = 1_048_576


@pytest.mark.parametrize(
    "unit",
    [
        '"',
        "\\",
        "\\u00",
        "%2",
        "%41",
        "&#",
        "kid: '",
        "Audiences: '",
        "key not found: kid ",
        "unrecognized JWT kid ",
        "jwt_authn_access_denied{",
        'error_description="',
        "eyJ.",
        '"kid":"',
        "kid=",
        "ValidTo (UTC): '",
        "token is expired by 1",
    ],
)
def test_a_megabyte_of_hostile_text_is_judged(unit: str) -> None:
    hostile = (unit * (MEGABYTE // len(unit) + 1))[:MEGABYTE]
    assert isinstance(cause_from_reported(hostile), Cause)
    assert isinstance(judge_reported(hostile, TS, 30, 300).cause, Cause)
    # A known message ahead of it is still read (unless the filler is itself a row's message).
    assert cause_from_reported("Jwt is expired " + hostile) is Cause.EXPIRED or match_reported(hostile) is not None


# -- real validators' texts (tests/fixtures/validators/messages.json, from the harness) ------
#
# Each entry is one library's rejection of one corpus token: `logged` is the text as that
# library's service logs it (validators/README.md: Python `Class: message`, jose `code: message`,
# jsonwebtoken `err.toString()`, Go `err.Error()`, Java `getMessage()`), `cause` jwtriage's
# verified verdict on the token and `intent` the cause DESIGN.md gives it. A message that does
# not read as the token's cause is listed, with why, in tests/fixtures/reported/validator_exceptions.json.

VALIDATORS_FIXTURE = json.loads((FIXTURES / "validators" / "messages.json").read_text())
VALIDATOR_MESSAGES: list[dict[str, Any]] = VALIDATORS_FIXTURE["messages"]
EXCEPTIONS: list[dict[str, Any]] = json.loads((FIXTURES / "reported" / "validator_exceptions.json").read_text())[
    "exceptions"
]
#: Cases where the engine's verdict still differs from DESIGN.md (being fixed elsewhere): the
#: contract's cause (`intent`) stands in for the verified one there, and nowhere else.
ENGINE_GAPS = {"crit_unknown_extension", "malformed_five_segments", "no_kid_foreign_key"}
#: The services the harness configures (validators/README.md): no leeway.
HARNESS_LEEWAY, HARNESS_SKEW_WINDOW = 0, 300


def _exception_for(entry: dict[str, Any]) -> dict[str, Any] | None:
    found = [exc for exc in EXCEPTIONS if entry["library"] in exc["libraries"] and entry["case"] in exc["cases"]]
    assert len(found) <= 1, f"{entry['library']}/{entry['case']} is listed as an exception twice"
    return found[0] if found else None


def _message_id(entry: dict[str, Any]) -> str:
    return f"{entry['library']}-{entry['case']}"


def test_the_validators_fixture_has_the_harness_shape() -> None:
    libraries = {entry["library"] for entry in VALIDATOR_MESSAGES}
    assert {"pyjwt", "jose", "jsonwebtoken", "golang-jwt", "nimbus-jose-jwt"} <= libraries
    assert len(VALIDATOR_MESSAGES) >= 150
    for entry in VALIDATOR_MESSAGES:
        assert entry["logged"] and entry["message"] and entry["message"] in entry["logged"].replace("\n", "\n")
        Cause(entry["cause"]), Cause(entry["intent"])


def test_the_engine_deviates_from_the_contract_only_where_known() -> None:
    deviating = {entry["case"] for entry in VALIDATOR_MESSAGES if entry["cause"] != entry["intent"]}
    assert deviating <= ENGINE_GAPS, deviating - ENGINE_GAPS


@pytest.mark.parametrize("entry", VALIDATOR_MESSAGES, ids=[_message_id(e) for e in VALIDATOR_MESSAGES])
def test_real_validator_messages_map_to_the_tokens_verdict(entry: dict[str, Any]) -> None:
    """The cause read from the logged text is the token's, or the message is a listed exception."""
    got = judge_reported(entry["logged"], TS, HARNESS_LEEWAY, HARNESS_SKEW_WINDOW).cause
    want = Cause(entry["intent"])
    exception = _exception_for(entry)
    if exception is None:
        assert got is want, (entry["logged"], mask_reported(entry["logged"]))
    else:
        # Pinned: the table reads what the exception says, and the exception is still needed.
        assert got is Cause(exception["reported"]), (entry["logged"], exception["why"])
        assert got is not want, f"{_message_id(entry)} now maps to its cause: drop it from the exceptions"


@pytest.mark.parametrize("entry", VALIDATOR_MESSAGES, ids=[_message_id(e) for e in VALIDATOR_MESSAGES])
def test_a_bare_message_says_the_same_or_nothing(entry: dict[str, Any]) -> None:
    # A service that logs only the message, without the class or code, loses at most the cause.
    bare = cause_from_reported(entry["message"])
    assert bare in {cause_from_reported(entry["logged"]), Cause.UNVERIFIABLE}


def test_every_exception_is_used_and_explained() -> None:
    for exc in EXCEPTIONS:
        Cause(exc["reported"])
        assert exc["kind"].strip() and len(exc["why"]) >= 60, exc
        for library in exc["libraries"]:
            for case in exc["cases"]:
                matches = [e for e in VALIDATOR_MESSAGES if e["library"] == library and e["case"] == case]
                assert matches, f"exception for {library}/{case}: the fixture has no such message"


def test_exceptions_that_name_a_cause_are_only_for_messages_that_cannot_say_more() -> None:
    # Any exception mapping to a cause (not unverifiable) must be one the message truly states.
    informative = [exc for exc in EXCEPTIONS if exc["reported"] != Cause.UNVERIFIABLE.value]
    for exc in informative:
        for library in exc["libraries"]:
            for case in exc["cases"]:
                for entry in (e for e in VALIDATOR_MESSAGES if e["library"] == library and e["case"] == case):
                    assert match_reported(entry["logged"]) is not None


_REAL_SLOT_MESSAGES = [
    # (the logged text with {v} where the token's value sits, the cause)
    ('token is unverifiable: error while executing keyfunc: key not found {v}\nfailed keyfunc: could not read JWK '
     "from storage", Cause.UNKNOWN_KID),
    ("JsonWebTokenError: error in secret or public key callback: Unable to find a signing key that matches {v}",
     Cause.UNKNOWN_KID),
    ('PyJWKClientError: Unable to find a signing key that matches: {v}', Cause.UNKNOWN_KID),
    ("InvalidTokenError: Unsupported critical extension: {v}", Cause.MALFORMED),
    ("ERR_JOSE_NOT_SUPPORTED: Extension Header Parameter {v} is not recognized", Cause.MALFORMED),
]  # fmt: skip
_QUOTING = {
    "key not found": lambda v: json.dumps(v),  # Go's %q, near enough
    "that matches {v}": lambda v: f"'{v}'",
    "that matches: {v}": lambda v: json.dumps(v),
    "Extension Header Parameter": lambda v: f'"{v}"',
}


def _fill(template: str, value: str) -> str:
    for key, quote_it in _QUOTING.items():
        if key in template:
            return template.replace("{v}", quote_it(value))
    return template.replace("{v}", value)


@settings(max_examples=300, deadline=None)
@given(
    which=st.sampled_from(_REAL_SLOT_MESSAGES),
    hostile=st.one_of(_HOSTILE_PIECES, st.sampled_from([e["message"] for e in VALIDATOR_MESSAGES]), HOSTILE),
)
@example(  # found by CI: the bare `kid=` field ate the closing quote of keyfunc's %q value
    which=_REAL_SLOT_MESSAGES[0],
    hostile='Bearer scope="" error="invalid_token" error_description="token contains an invalid number of segments"'
    'auth_jwt: rejected due to signature validate failure: kid="test1"',
)
def test_a_token_value_in_a_real_message_never_changes_its_cause(which: tuple[str, Cause], hostile: str) -> None:
    template, cause = which
    message = _fill(template, hostile)
    assert judge_reported(message, TS, 0, 300).cause is cause, (message, mask_reported(message))


#: How a token value reaches a validator's message inside another field: bare, as a logfmt or JSON field
#: (the fields `normalise` masks first), escaped inside a quoted string, or with a stray closing quote.
_WRAPPINGS = ("{m}", "kid={m}", 'kid="{m}', '"kid": "{m}"', '\\"kid\\":\\"{m}\\"', "aud=[{m}]", "{m}'")


@pytest.mark.parametrize("which", _REAL_SLOT_MESSAGES, ids=lambda w: w[0][:24] if isinstance(w, tuple) else "")
def test_every_known_message_wrapped_in_a_field_in_a_slot_keeps_the_cause(which: tuple[str, Cause]) -> None:
    """Every row's example and every real validator message, in each wrapping, as the token's value: no row's
    own text may decide (the fields are masked before the slots, and must leave a slot's closing quote alone)."""
    template, cause = which
    hostile = [row.example for row in REPORTED_ERRORS] + [e["message"] for e in VALIDATOR_MESSAGES]
    wrong = [
        (wrap, text[:60], got)
        for text in hostile
        for wrap in _WRAPPINGS
        if (got := judge_reported(_fill(template, wrap.replace("{m}", text)), TS, 0, 300).cause) is not cause
    ]
    assert not wrong, wrong[:5]
