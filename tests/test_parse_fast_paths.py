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

from pipeline.engine.tokens import MalformedToken, _json_object, b64url_decode, to_json
from pipeline.models import Cause, JwksSnapshot
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
        value, _ = _json_object(raw, "payload")
    except MalformedToken:
        return "refused"
    return value


def typed(value: Any) -> Any:
    """`value` with each number tagged by its type: 1 == 1.0, but orjson must not turn one into the other."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


json_texts = st.lists(
    st.sampled_from(
        ['{"a":1}', "{", "}", '"k"', ":", "1", ",", " ", "\n", "\t", "\r", "\x0c", "NaN", "[]", "x", "-",
         "18446744073709551616", "9223372036854775807", "0000000000", "1e400", ".5", "e5", "1.0",
         '"\\ud800"', '"\\udc00"', '"\\ud83d\\ude00"', '"é"', '"\\u0000"', '{"a":1,"a":2.5}']
    ),
    max_size=6,
).map(lambda parts: "".join(parts).encode())


@given(json_texts)
def test_json_fast_path_agrees_with_a_full_decode(raw: bytes) -> None:
    """orjson reads most objects, `json` the rest; together they accept and decode exactly what `json` alone did."""
    fast, plain = fast_json_object(raw), plain_json_object(raw)
    if isinstance(plain, dict) and _has_unpaired_surrogate(plain):
        assert fast == "refused"  # refused on purpose: the store cannot hold it
    else:
        assert typed(fast) == typed(plain)


def _has_unpaired_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def test_integers_beyond_64_bits_keep_every_digit() -> None:
    """orjson reads 2**64 as a float; such objects take the `json` path and are stored as written."""
    for number in (2**64, -(2**63) - 1, 10**30, 10**400):
        raw = json.dumps({"exp": number, "jti": number}).encode()
        value, by_orjson = _json_object(raw, "payload")
        assert value == {"exp": number, "jti": number} and type(value["exp"]) is int
        assert not by_orjson
        assert json.loads(to_json(value, by_orjson)) == value
    value, by_orjson = _json_object(b'{"exp": 1795438680, "iat": 1.5, "jti": "123456789012345678901"}', "payload")
    assert value == {"exp": 1795438680, "iat": 1.5, "jti": "123456789012345678901"}
    assert not by_orjson  # 19 digits in a row anywhere, even in a string, take the `json` path
    assert _json_object(b'{"exp": 1795438680, "iat": 1.5}', "payload") == ({"exp": 1795438680, "iat": 1.5}, True)


@given(json_texts)
def test_stored_json_text_decodes_to_the_same_claims(raw: bytes) -> None:
    try:
        value, by_orjson = _json_object(raw, "payload")
    except MalformedToken:
        return
    text = to_json(value, by_orjson)
    assert typed(json.loads(text)) == typed(value)
    assert text == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False) or not by_orjson


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


def test_header_decoding_is_kept_per_segment_and_bounded(monkeypatch: Any) -> None:
    from pipeline.engine import tokens

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    monkeypatch.setattr(tokens, "_HEADERS", {})
    monkeypatch.setattr(tokens, "HEADER_CACHE_SIZE", 3)
    header = b64('{"alg":"RS256","kid":"k1"}')
    first = tokens.parse(f"{header}.{b64(json.dumps({'sub': 'a'}))}.c2ln")
    second = tokens.parse(f"{header}.{b64(json.dumps({'sub': 'b', 'exp': 5}))}.c2ln")
    assert first.header == second.header == {"alg": "RS256", "kid": "k1"} and first.alg == "RS256"
    assert json.loads(second.header_json) == second.header and json.loads(second.claims_json)["exp"] == 5
    assert first.claims == {"sub": "a"} and second.claims["sub"] == "b"  # only the header is shared
    assert len(tokens._HEADERS) == 1
    for n in range(5):  # full: emptied, never above its size
        tokens.parse(f"{b64(json.dumps({'alg': 'RS256', 'kid': f'k{n + 2}'}))}.{b64('{}')}.c2ln")
        assert len(tokens._HEADERS) <= 3
    long_header = b64(json.dumps({"alg": "RS256", "x5c": ["A" * 3000]}))
    tokens.parse(f"{long_header}.{b64('{}')}.c2ln")
    assert long_header.encode() not in tokens._HEADERS
    bad_alg = b64('{"alg":5}')
    for _ in range(2):  # refused each time, with its header, and never kept
        try:
            tokens.parse(f"{bad_alg}.{b64('{}')}.c2ln")
        except MalformedToken as exc:
            assert exc.header == {"alg": 5}
        else:
            raise AssertionError("a numeric alg must be refused")
    assert bad_alg.encode() not in tokens._HEADERS
