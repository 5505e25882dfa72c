"""The Arrow table of a batch of verdicts: what the store and the lake upsert into `classifications`.

Built for a batch at once, with as little Python per event as the table allows:

- **Fields by rows, columns by `zip`**: each object's fields are read in one C call per row
  (`operator.itemgetter` of a pydantic model's `__dict__`, `attrgetter` of a slotted
  dataclass) and `zip(*rows)` turns the rows into columns. A batch's verdicts
  and events are scattered over the heap; reading a column at a time visited every object
  once per field.
- **Timestamps** go in as microseconds from the epoch. pyarrow converts an aware `datetime`
  by asking its tzinfo for the offset, and pydantic's `TzInfo` answers through Python; the
  subtraction `engine.checks.since_epoch` uses (`epoch_in`: the epoch in the value's own fixed-offset
  tzinfo) needs no offset, and one cast makes the column.

No raw token is stored: the verdict's fields were redacted (`engine.redaction`) before they
came here, and the events' free text is scanned once per batch and redacted when a token is
in it (`_has_tokens`, `_scrubbed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline.engine.checks import epoch_in
from pipeline.engine.tokens import has_token, redact_tokens, to_json

if TYPE_CHECKING:
    from pipeline.engine.classify import Verdict
    from pipeline.records import Judged

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_MICROS = pa.duration("us")

CLASSIFICATION_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("ts", _TIMESTAMP),
        ("service", pa.string()),
        ("cause", pa.string()),
        ("confidence", pa.string()),
        ("attacks", pa.list_(pa.string())),
        ("findings", pa.list_(pa.string())),
        ("issuer", pa.string()),
        ("kid", pa.string()),
        ("alg", pa.string()),
        ("audience", pa.string()),
        ("skew_seconds", pa.float64()),
        ("detail", pa.string()),
        ("client_id", pa.string()),
        ("request_id", pa.string()),
        ("token_sha256", pa.string()),
        ("token_header", pa.string()),
        ("token_claims", pa.string()),
        ("key_thumbprint", pa.string()),
        ("key_first_seen", _TIMESTAMP),
        ("service_jwks_fetched_at", _TIMESTAMP),
        ("reported_error", pa.string()),
        ("source", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
        ("classified_at", _TIMESTAMP),
    ]
)

#: The fields the table takes from each row's objects, in the order `classification_table` unpacks them.
#: A pydantic model's fields are its `__dict__`'s items: read there, they skip `BaseModel.__getattr__`'s
#: slow attribute path (a type look-up and a hook call per field).
_CLASSIFICATION_FIELDS = itemgetter(
    "event_id", "cause", "confidence", "attacks", "findings", "issuer", "kid", "alg", "audience", "skew_seconds",
    "detail",
)
_EVENT_FIELDS = itemgetter(
    "ts", "service", "client_id", "request_id", "reported_error", "token_sha256", "service_jwks_fetched_at"
)
_VERDICT_FIELDS = attrgetter("fingerprint", "header_json", "claims_json", "key_thumbprint", "key_first_seen")


def without_tokens(text: str | None) -> str | None:
    """`text` with any JWT in it, in any escaping, replaced by its fingerprint's start (`redact_tokens`).

    The event's free-text fields come from the rejecting service: some validators print the
    token in their message (Microsoft.IdentityModel with ShowPII, debug logs pasted into
    `reported_error`, percent-encoded in a URL), and a client or request id can be a token by
    mistake. None of them may carry a credential into the store; the fingerprint still lets
    a reader match it. The verdict's own fields are redacted too (a detail sentence may quote
    a claim value, a kid may be a token), and the header and claims JSON are written by
    `to_json`, which redacts a claim that is itself a token.
    """
    return None if text is None else redact_tokens(text)


def _json(value: Any) -> str | None:
    return None if value is None else to_json(value, by_orjson=False)


def _has_tokens(event_texts: tuple[tuple[str | None, ...], ...], verdicts: list[Verdict]) -> bool:
    """False when one C regex search over the batch's free text finds no token (so nothing needs redacting).

    `event_texts` are the events' client/request id and reported error columns. Verdict fields
    `engine.redaction.without_tokens` cleared (`Verdict.redacted`) are not scanned twice. A token
    anywhere: every field is redacted.
    """
    texts = [text for column in event_texts for text in column if text]
    for verdict in verdicts:
        if not verdict.redacted:
            c = verdict.classification
            texts += (c.issuer or "", c.kid or "", c.alg or "", c.detail or "")
    return has_token("\x00".join(texts))


def _scrubbed(column: Sequence[str | None], dirty: bool) -> Sequence[str | None]:
    return [without_tokens(text) for text in column] if dirty else column


def _audience_json(audiences: Sequence[Any]) -> list[str | None]:
    """The audience column: each distinct string audience encoded once (a batch repeats a handful)."""
    known: dict[str, str | None] = {}
    column: list[str | None] = []
    for audience in audiences:
        if type(audience) is str:
            column.append(known[audience] if audience in known else known.setdefault(audience, _json(audience)))
        else:
            column.append(_json(audience))
    return column


def timestamp_array(values: Sequence[datetime | None]) -> pa.Array:
    """A `timestamp[us, tz=UTC]` array of aware datetimes (None for null), the same as `pa.array` gives.

    Each value minus the epoch expressed in the first value's tzinfo: for values sharing that
    (fixed-offset) tzinfo object Python subtracts the naive fields, asking no tzinfo for its
    offset; any other aware value is subtracted with offsets, exactly. Anything else (a naive
    value) is left to pyarrow.
    """
    first = next((value for value in values if value is not None), None)
    if first is None:
        return pa.array(values, _TIMESTAMP)
    epoch = epoch_in(first.tzinfo)
    try:
        since = [None if value is None else value - epoch for value in values]
    except TypeError:  # a naive datetime: pyarrow's own reading of it
        return pa.array(values, _TIMESTAMP)
    return pa.array(since, _MICROS).cast(pa.int64()).cast(_TIMESTAMP)


def classification_table(judged: list[Judged], classified_at: datetime) -> pa.Table:
    """The Arrow table of one batch of verdicts, last verdict per event winning."""
    rows = list({j.event.event_id: j for j in judged}.values())
    if not rows:
        return CLASSIFICATION_SCHEMA.empty_table()
    verdicts = [j.verdict for j in rows]
    event_id, cause, confidence, attacks, findings, issuer, kid, alg, audience, skew, detail = zip(
        *[_CLASSIFICATION_FIELDS(v.classification.__dict__) for v in verdicts], strict=True
    )
    fingerprint, header, claims, thumbprint, first_seen = zip(*map(_VERDICT_FIELDS, verdicts), strict=True)
    ts, service, client_id, request_id, reported_error, token_sha256, fetched_at = zip(
        *[_EVENT_FIELDS(j.event.__dict__) for j in rows], strict=True
    )
    source, partition, offset = zip(*[j.position for j in rows], strict=True)  # a `Position` is a NamedTuple
    dirty = _has_tokens((client_id, request_id, reported_error), verdicts)
    columns: dict[str, Any] = {
        "event_id": event_id,
        "ts": timestamp_array(ts),
        "service": service,
        # Cause, Confidence and Attack are StrEnums: Arrow stores a member as its value, no `.value` needed.
        "cause": cause,
        "confidence": confidence,
        "attacks": attacks,
        "findings": findings,
        "issuer": _scrubbed(issuer, dirty),
        "kid": _scrubbed(kid, dirty),
        "alg": _scrubbed(alg, dirty),
        "audience": _audience_json(audience),
        "skew_seconds": skew,
        "detail": _scrubbed(detail, dirty),
        "client_id": _scrubbed(client_id, dirty),
        "request_id": _scrubbed(request_id, dirty),
        "token_sha256": [
            own or (reported.lower() if reported else None)
            for own, reported in zip(fingerprint, token_sha256, strict=True)
        ],
        "token_header": header,
        "token_claims": claims,
        "key_thumbprint": thumbprint,
        "key_first_seen": timestamp_array(first_seen),
        "service_jwks_fetched_at": timestamp_array(fetched_at),
        "reported_error": _scrubbed(reported_error, dirty),
        "source": source,
        "source_partition": partition,
        "source_offset": offset,
        "classified_at": pa.repeat(pa.scalar(classified_at, _TIMESTAMP), len(rows)),
    }
    return pa.Table.from_arrays(
        [
            column if isinstance(column, pa.Array) else pa.array(column, field.type)
            for field in CLASSIFICATION_SCHEMA
            for column in (columns[field.name],)
        ],
        schema=CLASSIFICATION_SCHEMA,
    )
