"""The parser's and classifier's fast paths accept and refuse exactly what the plain versions did."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pipeline.models import Cause, JwksSnapshot
from pipeline.tokens import MalformedToken, _json_object, b64url_decode
from tests.world import CORP, T0, World, default_snapshots, mint, private_key, public_jwk

_B64URL = re.compile(rb"^[A-Za-z0-9_-]*$")


def reference_b64url_decode(segment: bytes) -> bytes | None:
    """The regex-and-`base64` version `b64url_decode` replaced; None where it refused."""
    if not _B64URL.match(segment) or len(segment) % 4 == 1:
        return None
    try:
        return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None


def decoded_or_none(segment: bytes) -> bytes | None:
    try:
        return b64url_decode(segment)
    except MalformedToken:
        return None


segments = st.lists(
    st.sampled_from(list(b"AZaz09-_") + list(b"=+/ \t\r\n.\x00\xff")), max_size=16
).map(bytes)


@given(segments)
def test_b64url_decode_agrees_with_the_regex_version(segment: bytes) -> None:
    assert decoded_or_none(segment) == reference_b64url_decode(segment)


@given(st.binary(max_size=40))
def test_b64url_decode_round_trips_every_unpadded_encoding(raw: bytes) -> None:
    assert b64url_decode(base64.urlsafe_b64encode(raw).rstrip(b"=")) == raw


def _reject(name: str) -> Any:
    raise ValueError(name)


_PLAIN = json.JSONDecoder(parse_constant=_reject)


def plain_json_object(raw: bytes) -> Any:
    try:
        value = _PLAIN.decode(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "refused"
    return value if isinstance(value, dict) else "refused"


def fast_json_object(raw: bytes) -> Any:
    try:
        return _json_object(raw, "payload")
    except MalformedToken:
        return "refused"


json_texts = st.lists(
    st.sampled_from(['{"a":1}', "{", "}", '"k"', ":", "1", ",", " ", "\n", "\t", "\r", "\x0c", "NaN", "[]", "x"]),
    max_size=6,
).map(lambda parts: "".join(parts).encode())


@given(json_texts)
def test_json_fast_path_agrees_with_a_full_decode(raw: bytes) -> None:
    assert fast_json_object(raw) == plain_json_object(raw)


def test_json_whitespace_around_the_object_is_still_accepted() -> None:
    for raw in (b' {"a": 1}', b'{"a": 1}\n', b'\t{"a": 1} \r\n'):
        assert fast_json_object(raw) == {"a": 1}
    assert fast_json_object(b'{"a": 1} x') == "refused"


def test_a_key_published_later_under_a_known_kid_is_found() -> None:
    """Key choices are cached per timeline version: a snapshot that changes a kid's keys must be seen."""
    world = World(snapshots=[s for s in default_snapshots() if s.fetched_at < T0])  # rsa-3 not yet published
    token = mint("rsa-2", signer="rsa-3")  # kid rsa-2, signed with another key
    assert world.judge(token).classification.cause is Cause.BAD_SIGNATURE
    reused = JwksSnapshot(
        issuer=CORP,
        fetched_at=T0 - timedelta(days=1),
        jwks={"keys": [public_jwk(private_key("rsa-3"), "rsa-2"), public_jwk(private_key("rsa-2"), "rsa-2")]},
    )
    world.timeline.add(reused)
    verdict = world.judge(token)
    assert Cause.BAD_SIGNATURE not in verdict.classification.findings
    assert verdict.key_thumbprint is not None
