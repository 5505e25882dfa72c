"""Fuzz: the record decoder and the whole `Pipeline.process`, with structured JSON and JWT generators.

Hypothesis builds records the way a hostile or broken producer would: JSON with nesting up
to 1,100 levels, odd types where strings and numbers belong, integers far beyond 64 bits,
unicode, escapes; tokens whose header and claims are such JSON, whose segments have bad
base64, padding, stray bytes or the wrong count; and events, samples and snapshots around
them, sometimes cut or corrupted as bytes.

What must hold: `decode_record` raises nothing but `RecordError`; `Pipeline.process` raises
nothing at all, and every envelope yields exactly one outcome: a dead letter at its
position, or (an event) a row at its position, or (a sample, a snapshot) its count.

Bounded for `make test` (about 10-20 s, derandomized so CI is repeatable); for a longer,
random run: JWTRIAGE_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz.py.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.engine.keys import KeyTimeline
from pipeline.models import AuthFailureEvent, JwksSnapshot, SampledToken
from pipeline.records import Envelope, Position, RecordError, RecordKind, decode_record
from pipeline.runner import Pipeline
from tests.world import AUDIENCE, CORP, T0, config, default_snapshots, mint

_RANDOM_RUN = "JWTRIAGE_FUZZ_EXAMPLES" in os.environ


def fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=int(os.environ.get("JWTRIAGE_FUZZ_EXAMPLES", examples)),
        derandomize=not _RANDOM_RUN,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


# -- JSON text ------------------------------------------------------------------------------------

_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63 - 2, max_value=2**70)
    | st.integers(min_value=10**300, max_value=10**330) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.sampled_from(["RS256", "none", "HS256", "ES256", "", "\u0000", "é", "a.b.c"])
)
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@st.composite
def json_text(draw: st.DrawFn, base: Any = None) -> bytes:
    """JSON text of a value, sometimes wrapped deep, sometimes with raw edits a strict parser refuses."""
    value = draw(_VALUES) if base is None else base
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    depth = draw(st.sampled_from([0, 0, 0, 1, 63, 64, 65, 200, 254, 600, 1023, 1024, 1100]))
    if depth:
        opener, closer = draw(st.sampled_from([('{"a":', "}"), ("[", "]")]))
        text = (opener * depth + text + closer * depth) if base is None else (
            text[:-1] + ', "deep": ' + opener * depth + "1" + closer * depth + "}" if text.endswith("}") else text)
    edit = draw(st.sampled_from(["", "", "", "nan", "surrogate", "cut", "bigint", "bytes"]))
    if edit == "nan" and text.endswith("}"):
        text = text[:-1] + (", " if len(text) > 2 else "") + '"exp": NaN}'
    elif edit == "surrogate" and text.endswith("}"):
        text = text[:-1] + (", " if len(text) > 2 else "") + '"x": "\\ud800"}'
    elif edit == "cut" and text:
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif edit == "bigint" and text.endswith("}"):
        text = text[:-1] + (", " if len(text) > 2 else "") + '"exp": ' + "9" * draw(st.integers(19, 400)) + "}"
    raw = text.encode("utf-8", "surrogatepass")
    if edit == "bytes":
        raw += draw(st.binary(max_size=3))
    return raw


# -- tokens ---------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_HEADERS = st.fixed_dictionaries(
    {"alg": st.sampled_from(["RS256", "ES256", "EdDSA", "HS256", "none"]) | _VALUES},
    optional={"kid": st.sampled_from(["rsa-1", "rsa-2", "ec-1", "made-up"]) | _VALUES, "typ": _VALUES,
              "crit": _VALUES, "jku": _VALUES, "x5c": _VALUES},
)
_CLAIMS = st.fixed_dictionaries(
    {},
    optional={"iss": st.just(CORP) | _VALUES, "aud": st.just(AUDIENCE) | _VALUES, "sub": _VALUES,
              "exp": st.integers(int(T0.timestamp()) - 10**6, int(T0.timestamp()) + 10**6) | _VALUES,
              "nbf": _VALUES, "iat": _VALUES, "azp": _VALUES, "jti": _VALUES},
)


@st.composite
def tokens(draw: st.DrawFn) -> str:
    choice = draw(st.sampled_from(["forged", "forged", "forged", "real", "segments", "text"]))
    if choice == "real":
        return mint(draw(st.sampled_from(["rsa-1", "rsa-2", "ec-1", "ed-1"])))
    if choice == "text":
        return draw(st.text(max_size=60))
    if choice == "segments":
        return ".".join(draw(st.lists(st.text("ABCabc-_=+/!.%", max_size=8), min_size=0, max_size=7)))
    header = draw(json_text(draw(_HEADERS)))
    payload = draw(json_text(draw(_CLAIMS)))
    segments = [_b64(header), _b64(payload), _b64(draw(st.binary(max_size=80)))]
    corruption = draw(st.sampled_from(["", "", "", "bang", "pad", "drop", "extra", "space"]))
    at = draw(st.integers(0, 2))
    if corruption == "bang":
        segments[at] += "!"
    elif corruption == "pad":
        segments[at] += "=="
    elif corruption == "drop":
        segments[at] = segments[at][:-1]
    elif corruption == "extra":
        segments.append(_b64(b"more"))
    elif corruption == "space":
        segments[at] = " " + segments[at]
    return ".".join(segments)


# -- records --------------------------------------------------------------------------------------

_ODD = _VALUES | st.just(None)


@st.composite
def event_record(draw: st.DrawFn, n: int) -> bytes:
    doc: dict[str, Any] = {
        "event_id": draw(st.just(f"e{n}") | _ODD),
        "ts": draw(st.just(T0.isoformat()) | st.sampled_from(["2026-11-23T01:00:00", "9999-12-31T23:59:59Z"]) | _ODD),
        "service": draw(st.just("payments-api") | st.sampled_from(["ledger", "nobody"]) | _ODD),
    }
    which = draw(st.sampled_from(["token", "token", "fingerprint", "reported", "odd"]))
    if which == "token":
        doc["token"] = draw(tokens())
    elif which == "fingerprint":
        doc["token_sha256"] = draw(st.sampled_from(["a" * 64, "0" * 64]) | st.text(max_size=70))
    elif which == "reported":
        doc["reported_error"] = draw(st.text(max_size=80) | st.sampled_from(["Jwt is expired", "invalid signature"]))
    else:
        field = draw(st.sampled_from(["token", "reported_error", "client_id", "service_jwks_fetched_at", "x"]))
        doc[field] = draw(_ODD)
    return draw(json_text(doc))


@st.composite
def sample_record(draw: st.DrawFn) -> bytes:
    return draw(json_text({"token": draw(tokens() | _ODD), "sampled_at": draw(st.just(T0.isoformat()) | _ODD)}))


@st.composite
def snapshot_record(draw: st.DrawFn) -> bytes:
    keys = draw(st.lists(st.fixed_dictionaries({"kty": st.sampled_from(["RSA", "EC", "OKP", "oct"]) | _ODD},
                                               optional={"kid": _VALUES, "n": _VALUES, "e": _VALUES, "x": _VALUES,
                                                         "y": _VALUES, "crv": _VALUES, "alg": _VALUES}),
                         max_size=3))
    doc = {"issuer": draw(st.just(CORP) | _ODD), "fetched_at": draw(st.just(T0.isoformat()) | _ODD),
           "jwks": draw(st.just({"keys": keys}) | _ODD)}
    return draw(json_text(doc))


_OFFSETS = iter(range(10**12))  # positions unique across examples: a late re-judgement names its own


@st.composite
def envelopes(draw: st.DrawFn) -> list[Envelope]:
    out = []
    for n in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from([RecordKind.EVENT, RecordKind.EVENT, RecordKind.SAMPLE, RecordKind.SNAPSHOT]))
        if kind is RecordKind.EVENT:
            value = draw(event_record(n))
        elif kind is RecordKind.SAMPLE:
            value = draw(sample_record())
        else:
            value = draw(snapshot_record())
        out.append(Envelope(kind, value, Position(kind.value, 0, next(_OFFSETS))))
    return out


# -- the properties -------------------------------------------------------------------------------

_MODELS = {RecordKind.EVENT: AuthFailureEvent, RecordKind.SAMPLE: SampledToken, RecordKind.SNAPSHOT: JwksSnapshot}


@fuzz_settings(150)
@given(st.data())
def test_the_decoder_raises_nothing_but_record_error(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(list(RecordKind)))
    value = data.draw({RecordKind.EVENT: event_record(0), RecordKind.SAMPLE: sample_record(),
                       RecordKind.SNAPSHOT: snapshot_record()}[kind])
    try:
        decode_record(value, _MODELS[kind])
    except RecordError as exc:
        assert str(exc)


_PIPELINE: list[Pipeline] = []


def _pipeline() -> Pipeline:
    """One pipeline for the whole run: its state (samples, queues, caches) is fuzzed too."""
    if not _PIPELINE:
        _PIPELINE.append(Pipeline(config(), KeyTimeline(default_snapshots())))
    return _PIPELINE[0]


@fuzz_settings(120)
@given(envelopes())
def test_every_envelope_yields_exactly_one_outcome_and_nothing_escapes(batch: list[Envelope]) -> None:
    pipeline = _pipeline()
    before = dict(pipeline.counts)
    result = pipeline.process(batch)
    lettered = [letter.position for letter in result.dead_letters]
    assert len(lettered) == len(set(lettered)), "a record has two dead letters"
    judged = {judged.position for judged in result.judged}
    for envelope in batch:
        outcomes = (envelope.position in lettered) + (envelope.position in judged)
        if envelope.kind is RecordKind.EVENT:
            assert outcomes == 1, (envelope, result)
        else:
            assert envelope.position not in judged
    handled = sum(e.kind is not RecordKind.EVENT and e.position not in lettered for e in batch)
    assert (pipeline.counts["samples"] - before["samples"]) + (pipeline.counts["snapshots"] - before["snapshots"]) \
        == handled
    assert all("internal error" not in letter.reason for letter in result.dead_letters), result.dead_letters
    assert len(result.positions) <= len(batch)
