"""No token-shaped string, in any escaping, reaches any output (DESIGN.md: tokens are credentials).

Fault (issue 17): a JWT held as a claim value was stored verbatim in `token_claims`; a token
whose dots were written `%2E` in `reported_error` was stored verbatim. Here hypothesis hides
tokens in claims (top level, nested in arrays and objects, as `aud`, as a kid), in the
validator's message, the client and request ids, an unknown service's name, with random
escaping (dots as `.`, `%2E`, `%2e`, `%252E`, `\\u002e`; the text JSON-escaped, slashes as
`\\/`), and judges them through `Pipeline.process`.

What must hold: no hidden token's payload segment appears in the stored rows (the
classifications and dead-letter tables as the store writes them), in `classify`'s JSON
lines and error lines, in the logs, or in what `explain` shows of the token; and ordinary
tokens' stored header and claims JSON are unchanged (the classify md5 invariant checks the
rest).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.engine.keys import KeyTimeline
from pipeline.engine.tokens import parse, redact_tokens
from pipeline.explanation import shown
from pipeline.io.files import JsonlVerdictSink
from pipeline.io.store import classification_table, dead_letter_table
from pipeline.records import Envelope, Position, RecordKind
from pipeline.runner import Pipeline
from tests.world import T0, config, default_snapshots, good_claims, mint

_SETTINGS = settings(
    max_examples=int(os.environ.get("JWTRIAGE_FUZZ_EXAMPLES", 80)),
    derandomize="JWTRIAGE_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def hidden_tokens(draw: st.DrawFn) -> tuple[str, str]:
    """(a compact token, its payload segment: unique, the marker searched for in the outputs)."""
    header = {"alg": draw(st.sampled_from(["RS256", "ES256", "HS256"])), "typ": "JWT"}
    if draw(st.booleans()):
        header["kid"] = draw(st.text("abcdef0123456789-", min_size=1, max_size=12))
    claims = {"sub": draw(st.text(min_size=1, max_size=10)), "n": draw(st.integers(0, 10**9)), "x": "pad" * 3}
    head = json.dumps(header, separators=(",", ":") if draw(st.booleans()) else (", ", ": "))
    payload = _b64(json.dumps(claims).encode())
    signature = _b64(draw(st.binary(min_size=0, max_size=64)))
    return f"{_b64(head.encode())}.{payload}.{signature}", payload


_DOTS = [".", "%2E", "%2e", "%252E", "\\u002e", "\\u002E"]


@st.composite
def escaped(draw: st.DrawFn, token: str) -> str:
    """The token as some text might hold it."""
    text = token.replace(".", draw(st.sampled_from(_DOTS)))
    if draw(st.booleans()):
        text = json.dumps(text)[1:-1].replace("/", "\\/")  # JSON-escaped, slashes too
    return text


@st.composite
def events_with_hidden_tokens(draw: st.DrawFn) -> tuple[list[bytes], list[str]]:
    hidden: list[str] = []
    docs: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, 4))):
        token, marker = draw(hidden_tokens())
        hidden.append(marker)
        where = draw(st.sampled_from(["claim", "nested-claim", "aud", "kid", "reported", "client", "request",
                                      "service", "iss"]))
        doc: dict[str, Any] = {"event_id": f"e{n}", "ts": T0.isoformat(), "service": "payments-api"}
        text = draw(escaped(token))
        prefix = draw(st.sampled_from(["", "token=", "Bearer ", "IDX10223: Lifetime validation failed: '", "?t="]))
        if where == "claim":
            doc["token"] = mint("rsa-2", claims=good_claims(act=text))
        elif where == "nested-claim":
            doc["token"] = mint("rsa-2", claims=good_claims(ctx={"chain": [{"t": text}, 1]}))
        elif where == "aud":
            doc["token"] = mint("rsa-2", claims=good_claims(aud=draw(st.sampled_from([text, [text, "x"]]))))
        elif where == "iss":
            doc["token"] = mint("rsa-2", claims=good_claims(iss=text))
        elif where == "kid":
            doc["token"] = mint(text, signer="rsa-2")
        elif where == "reported":
            doc["reported_error"] = prefix + text + draw(st.sampled_from(["", "'", " at line 3.", "&x=1"]))
        elif where == "client":
            doc["client_id"] = text
        elif where == "request":
            doc["request_id"] = prefix + text
        else:
            doc["service"] = text  # not in the config: a dead letter whose reason quotes it
        docs.append(doc)
    return [json.dumps(doc).encode() for doc in docs], hidden


def _outputs(pipeline: Pipeline, values: list[bytes]) -> str:
    batch = pipeline.process(
        Envelope(RecordKind.EVENT, value, Position("events.jsonl", 0, n)) for n, value in enumerate(values)
    )
    out, err = io.StringIO(), io.StringIO()
    JsonlVerdictSink(out, err).write(batch, pipeline.timeline)
    stored = classification_table(batch.judged, datetime.now(UTC)).to_pylist()
    letters = dead_letter_table(batch.dead_letters).to_pylist()
    shown_claims = [shown(v, 10_000) for j in batch.judged if j.verdict.claims for v in j.verdict.claims.values()]
    return "\n".join([out.getvalue(), err.getvalue(), json.dumps(stored, default=str, ensure_ascii=False),
                      json.dumps(letters, default=str, ensure_ascii=False), *shown_claims])


@_SETTINGS
@given(events_with_hidden_tokens())
def test_no_hidden_token_survives_in_any_output(case: tuple[list[bytes], list[str]]) -> None:
    values, markers = case
    pipeline = Pipeline(config(), KeyTimeline(default_snapshots()))
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    logging.getLogger().addHandler(handler)
    try:
        text = _outputs(pipeline, values)
    finally:
        logging.getLogger().removeHandler(handler)
    for marker in markers:
        assert marker not in text, f"a token survived:\n{text[:3000]}"
        assert marker not in logs.getvalue()


@pytest.mark.parametrize("dot", _DOTS)
def test_the_two_reported_leaks_are_closed(dot: str) -> None:
    hidden = mint("rsa-1")
    pipeline = Pipeline(config(), KeyTimeline(default_snapshots()))
    values = [
        json.dumps({"event_id": "a", "ts": T0.isoformat(), "service": "payments-api",
                    "token": mint("rsa-2", claims=good_claims(act={"actor_token": hidden}))}).encode(),
        json.dumps({"event_id": "b", "ts": T0.isoformat(), "service": "payments-api",
                    "reported_error": f"invalid token {hidden.replace('.', dot)}"}).encode(),
    ]
    batch = pipeline.process(Envelope(RecordKind.EVENT, v, Position("f", 0, n)) for n, v in enumerate(values))
    rows = classification_table(batch.judged, datetime.now(UTC)).to_pylist()
    assert hidden.split(".")[1] not in json.dumps(rows, default=str)
    claims = json.loads(rows[0]["token_claims"])
    assert claims["act"]["actor_token"].startswith("<token sha256:")
    assert rows[1]["reported_error"].startswith("invalid token <token sha256:")


def test_ordinary_header_and_claims_json_are_stored_unchanged() -> None:
    token = mint("rsa-2", claims=good_claims(scope="read write", nested={"a": [1, "eyes.are.open"]}))
    parsed = parse(token)
    assert json.loads(parsed.claims_json)["nested"] == {"a": [1, "eyes.are.open"]}
    assert parsed.header_json == json.dumps(parsed.header, sort_keys=True, separators=(",", ":"))
    for text in ("the key eyAbCdEfGhIj.", "see https://login.acme.test/a.b.c", "Jwt is expired", "kid=rsa-2."):
        assert redact_tokens(text) == text


def test_the_store_redacts_what_the_runner_did_not_clear() -> None:
    """The store scans a batch once: a verdict the runner did not clear, or one event's text, is still redacted."""
    hidden = mint("rsa-1")
    pipeline = Pipeline(config(), KeyTimeline(default_snapshots()))
    values = [json.dumps({"event_id": f"e{n}", "ts": T0.isoformat(), "service": "payments-api",
                          "token": mint("rsa-2")}).encode() for n in range(50)]
    batch = pipeline.process(Envelope(RecordKind.EVENT, v, Position("f", 0, n)) for n, v in enumerate(values))
    assert all(j.verdict.redacted for j in batch.judged)
    clean = classification_table(batch.judged, datetime.now(UTC)).to_pylist()
    assert [r["detail"] for r in clean] == [j.verdict.classification.detail for j in batch.judged]
    # a verdict that never went through the runner: its fields are scanned by the store
    raw = batch.judged[7].verdict
    raw.classification = raw.classification.model_copy(update={"detail": f"quoted {hidden}", "kid": hidden})
    raw.redacted = False
    # and one event's own text quotes a token
    batch.judged[30].event.__dict__["request_id"] = f"req {hidden}"
    rows = classification_table(batch.judged, datetime.now(UTC)).to_pylist()
    assert hidden.split(".")[1] not in json.dumps(rows, default=str)
    assert rows[7]["detail"].startswith("quoted <token sha256:") and rows[7]["kid"].startswith("<token sha256:")
    assert rows[30]["request_id"].startswith("req <token sha256:")
    assert [r["detail"] for r in rows if r["event_id"] != "e7"] == [r["detail"] for r in clean if r["event_id"] != "e7"]
