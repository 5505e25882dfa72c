"""Event formats: how the raw bytes of one auth-failure record become an `AuthFailureEvent`.

Samples and key snapshots are jwtriage's own wire models (the sampler and `jwks-watch`
write them); events come from whatever rejected the token, so their decoder is chosen by
name. A decoder takes the raw bytes and the size cap and returns

- an `AuthFailureEvent` to judge,
- `None` to skip the record: not an auth failure at all (an access log's 200 line); no
  verdict, no dead letter, its position still advances,
- or raises `RecordError` with the reason: the record is a dead letter.

Today there is one format, `jwtriage` (the AuthFailureEvent JSON of DESIGN.md). A gateway's
own log (Envoy, Kong) is one more module in `pipeline/io/` with a decoder, and one entry in
`EVENT_FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.errors import UsageError
from pipeline.models import AuthFailureEvent
from pipeline.records import DEFAULT_MAX_RECORD_BYTES, decode_record

#: raw bytes, size cap → the event, or None to skip; raises `RecordError` for a dead letter.
EventDecoder = Callable[[bytes, int], AuthFailureEvent | None]

DEFAULT_EVENT_FORMAT = "jwtriage"


def decode_jwtriage_event(raw: bytes, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> AuthFailureEvent:
    """jwtriage's own event JSON, validated by its pydantic model (never skipped)."""
    return decode_record(raw, AuthFailureEvent, max_bytes)


#: Every event format by the name a config or flag would give.
EVENT_FORMATS: dict[str, EventDecoder] = {
    DEFAULT_EVENT_FORMAT: decode_jwtriage_event,
}


def event_decoder(name: str) -> EventDecoder:
    """The decoder of the format `name`; a `UsageError` naming the known ones otherwise."""
    try:
        return EVENT_FORMATS[name]
    except KeyError:
        raise UsageError(f"unknown event format {name!r} (known: {', '.join(sorted(EVENT_FORMATS))})") from None
