"""The Arrow build of verdicts (`io.verdict_table`) gives the table pyarrow gives from the objects, value for value.

The build reads pydantic models' fields from their `__dict__` by rows and converts aware
timestamps itself (epoch microseconds, no tzinfo asked for its offset): both are shortcuts
past pyarrow's own reading of the objects, so each is checked against it here — timestamps
in every tzinfo a model can hold (pydantic's fixed offsets, `datetime.timezone`, a zone with
daylight saving, mixed in one column, nulls), and whole batches against the plain build
(`pa.table` of a list per column, as the store built it before), with and without a token
in the events' free text.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from pipeline.engine.tokens import redact_tokens, to_json
from pipeline.io.verdict_table import CLASSIFICATION_SCHEMA, classification_table, timestamp_array
from pipeline.models import AuthFailureEvent
from pipeline.records import Envelope, Judged, Position, RecordKind
from pipeline.runner import Pipeline
from tests.world import T0, config, default_snapshots, good_claims, mint

_TIMESTAMP = pa.timestamp("us", tz="UTC")


def _parsed(text: str) -> datetime:
    """A datetime as an event's model holds it (pydantic's own tzinfo)."""
    return AuthFailureEvent.model_validate({"event_id": "x", "ts": text, "service": "s"}).ts


@pytest.mark.parametrize(
    "values",
    [
        [_parsed("2026-11-23T09:05:00.605001Z"), _parsed("2026-11-23T09:05:01Z"), None],
        [_parsed("2026-11-23T09:05:00.000007+02:00"), _parsed("2026-11-23T11:05:00-05:30")],
        [None, None],
        [datetime(2026, 3, 29, 0, 30, tzinfo=ZoneInfo("Europe/Paris")),
         datetime(2026, 3, 29, 3, 30, tzinfo=ZoneInfo("Europe/Paris"))],  # across a DST change
        [datetime(2026, 3, 29, 3, 30, tzinfo=ZoneInfo("Europe/Paris")), _parsed("2026-03-29T01:30:00Z"),
         datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-3))), T0, None],
        [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)],
        [datetime(2026, 1, 1, 12, 0), datetime(2026, 1, 1, 12, 0, 1)],  # naive: left to pyarrow
    ],
)
def test_timestamps_are_the_microseconds_pyarrow_gives(values: list[datetime | None]) -> None:
    assert timestamp_array(values).equals(pa.array(values, _TIMESTAMP))


def _plain_table(judged: list[Judged], classified_at: datetime) -> pa.Table:
    """The table as `pa.table` builds it from a list per column of the objects' attributes (the reference)."""
    rows = list({j.event.event_id: j for j in judged}.values())
    events, verdicts = [j.event for j in rows], [j.verdict for j in rows]
    found = [v.classification for v in verdicts]
    texts = [t or "" for e in events for t in (e.client_id, e.request_id, e.reported_error)]
    texts += [t or "" for c in found for t in (c.issuer, c.kid, c.alg, c.detail)]
    dirty = redact_tokens("\x00".join(texts)) != "\x00".join(texts)

    def scrub(column: list[Any]) -> list[Any]:
        return [None if t is None else redact_tokens(t) for t in column] if dirty else column

    return pa.table(
        {
            "event_id": [c.event_id for c in found],
            "ts": [e.ts for e in events],
            "service": [e.service for e in events],
            "cause": [c.cause for c in found],
            "confidence": [c.confidence for c in found],
            "attacks": [c.attacks for c in found],
            "findings": [c.findings for c in found],
            "issuer": scrub([c.issuer for c in found]),
            "kid": scrub([c.kid for c in found]),
            "alg": scrub([c.alg for c in found]),
            "audience": [None if c.audience is None else to_json(c.audience, by_orjson=False) for c in found],
            "skew_seconds": [c.skew_seconds for c in found],
            "detail": scrub([c.detail for c in found]),
            "client_id": scrub([e.client_id for e in events]),
            "request_id": scrub([e.request_id for e in events]),
            "token_sha256": [v.fingerprint or (e.token_sha256.lower() if e.token_sha256 else None)
                             for v, e in zip(verdicts, events, strict=True)],
            "token_header": [v.header_json for v in verdicts],
            "token_claims": [v.claims_json for v in verdicts],
            "key_thumbprint": [v.key_thumbprint for v in verdicts],
            "key_first_seen": [v.key_first_seen for v in verdicts],
            "service_jwks_fetched_at": [e.service_jwks_fetched_at for e in events],
            "reported_error": scrub([e.reported_error for e in events]),
            "source": [j.position.source for j in rows],
            "source_partition": [j.position.partition for j in rows],
            "source_offset": [j.position.offset for j in rows],
            "classified_at": [classified_at] * len(rows),
        },
        schema=CLASSIFICATION_SCHEMA,
    )


def _judged(client_id: str | None) -> list[Judged]:
    """A batch of varied verdicts: retries of a token (some reused), other keys, reported-only events, offsets."""
    pipeline = Pipeline(config())
    for snapshot in default_snapshots():
        pipeline.timeline.add(snapshot)
    good, unknown = mint("rsa-2", claims=good_claims()), mint("rsa-9", signer="rsa-2", claims=good_claims())
    docs: list[dict[str, Any]] = []
    for n in range(40):
        at = T0 + timedelta(seconds=n * 7.000013)
        fetched = (T0 - timedelta(minutes=n % 4)).isoformat() if n % 5 else None
        shown = at if n % 3 else at.astimezone(timezone(timedelta(hours=5)))  # pydantic's offset tzinfo too
        doc: dict[str, Any] = {"event_id": f"e{n % 37}", "service": "payments-api",
                               "ts": shown.isoformat(),
                               "service_jwks_fetched_at": fetched,
                               "client_id": client_id if n == 11 else f"c{n % 4}", "request_id": f"r{n}"}
        if n % 4 == 3:
            doc |= {"token_sha256": "AB" * 32, "reported_error": "IDX10223: Lifetime validation failed"}
        else:
            doc["token"] = unknown if n % 6 == 1 else good
        docs.append(doc)
    batch = pipeline.process(
        Envelope(RecordKind.EVENT, json.dumps(doc).encode(), Position("auth.failures", n % 2, 1000 + n))
        for n, doc in enumerate(docs)
    )
    assert not batch.dead_letters and len(batch.judged) == 40
    return batch.judged


@pytest.mark.parametrize("client_id", [None, "plain-client", mint("rsa-2", claims=good_claims())])
def test_the_table_is_the_plain_build_of_the_same_verdicts(client_id: str | None) -> None:
    judged = _judged(client_id)
    at = datetime(2026, 11, 20, 12, 5, 1, 123456, tzinfo=UTC)
    built = classification_table(judged, at)
    assert built.num_rows == 37  # the last verdict per event_id
    assert built.equals(_plain_table(judged, at))
    if client_id is not None and client_id.count(".") == 2:  # a token in the free text: stored redacted
        assert client_id not in json.dumps(built.to_pylist(), default=str)


def test_an_empty_batch_is_an_empty_table() -> None:
    assert classification_table([], datetime.now(UTC)).equals(CLASSIFICATION_SCHEMA.empty_table())
