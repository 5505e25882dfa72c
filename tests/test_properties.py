"""Property tests: arbitrary strings and JSON never crash the parser, the classifier or the runner."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.engine.tokens import MalformedToken, parse
from pipeline.models import Attack, AuthFailureEvent, Cause, Classification
from pipeline.records import Envelope, Position, RecordError, RecordKind, decode_record
from pipeline.runner import Pipeline
from tests.world import World

WORLD = World()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
header_values = st.dictionaries(
    st.sampled_from(["alg", "kid", "typ", "jku", "x5u", "jwk", "crit", "b64"]) | st.text(max_size=5),
    json_values | st.sampled_from(["none", "RS256", "ES256", "HS256", "EdDSA", "rsa-2", "ec-1", "../x"]),
    max_size=5,
)
claim_values = st.dictionaries(
    st.sampled_from(["iss", "aud", "exp", "nbf", "iat", "sub", "azp", "client_id"]) | st.text(max_size=5),
    json_values,
    max_size=7,
)


def b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def check(classification: Classification) -> None:
    """The contract's invariants hold for every verdict."""
    assert classification.cause in Cause
    assert all(a in Attack for a in classification.attacks)
    if classification.cause is Cause.VALID:
        assert classification.findings == []
    else:
        assert classification.findings[0] is classification.cause
    assert len(set(classification.findings)) == len(classification.findings)
    json.loads(classification.model_dump_json())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_string_is_parsed_or_refused_with_a_reason(text: str) -> None:
    try:
        parse(text)
    except MalformedToken as exc:
        assert exc.reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_string_gets_a_verdict(text: str) -> None:
    check(WORLD.judge(text).classification)


@settings(max_examples=400, deadline=None)
@given(header_values, claim_values, st.binary(max_size=80))
def test_any_structured_token_gets_a_verdict(header: dict[str, Any], claims: dict[str, Any], sig: bytes) -> None:
    check(WORLD.judge(f"{b64(header)}.{b64(claims)}.{b64(sig)}").classification)


@settings(max_examples=200, deadline=None)
@given(json_values, st.binary(max_size=40))
def test_any_json_payload_or_header_gets_a_verdict(value: Any, sig: bytes) -> None:
    check(WORLD.judge(f"{b64(value)}.{b64(value)}.{b64(sig)}").classification)
    check(WORLD.judge(f"{b64({'alg': 'RS256', 'kid': 'rsa-2'})}.{b64(value)}.{b64(sig)}").classification)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_a_record_or_a_reason(raw: bytes) -> None:
    try:
        decode_record(raw, AuthFailureEvent)
    except RecordError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(RecordKind)), st.binary(max_size=120) | json_values.map(
    lambda v: json.dumps(v).encode())), max_size=10))
def test_the_pipeline_accounts_for_every_record(records: list[tuple[RecordKind, bytes]]) -> None:
    pipeline = Pipeline(WORLD.cfg)
    envelopes = [Envelope(kind, value, Position("p", 0, n)) for n, (kind, value) in enumerate(records)]
    batch = pipeline.process(envelopes)
    event_positions = {e.position for e in envelopes if e.kind is RecordKind.EVENT}
    judged = {j.position for j in batch.judged}
    dead = {d.position for d in batch.dead_letters}
    assert judged | {p for p in dead if p in event_positions} == event_positions  # each event: a row or a letter
    assert not judged & dead
    assert batch.positions == ({("p", 0): len(records)} if records else {})


def test_deep_nesting_and_huge_segments_cost_only_their_own_line() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    hostile = [
        f"{b64({'alg': 'RS256'})}.{base64.urlsafe_b64encode(deep.encode()).decode().rstrip('=')}.x",
        ".".join(["eyJ9"] * 10_000),
        f"{b64({'alg': 'RS256', 'kid': 'k' * 1_000_000})}.{b64({})}.sig",
        f"{b64({'alg': ['RS256']})}.{b64({})}.",
        f"{b64({'alg': 'RS256'})}.{b64({'exp': '2026-01-01'})}.",
    ]
    causes = [WORLD.judge(token).classification.cause for token in hostile]
    assert causes == [Cause.MALFORMED] * 5
