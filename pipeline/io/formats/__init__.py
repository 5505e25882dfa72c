"""Event formats: how the raw bytes of one auth-failure record become an `AuthFailureEvent`.

Samples and key snapshots are jwtriage's own wire models (the sampler and `jwks-watch`
write them); events come from whatever rejected the token, so their decoder is chosen by
name. A decoder takes the raw bytes and the size cap and returns

- an `AuthFailureEvent` to judge,
- `None` to skip the record: not a JWT rejection at all (an access log's 200 line); no
  verdict, no dead letter, its position still advances, and the loop counts it,
- or raises `RecordError` with the reason: the record is a dead letter.

`jwtriage` (the AuthFailureEvent JSON of DESIGN.md) needs nothing else. A gateway's log
names a host, not a service, so its decoder is built per config (`event_decoder(name,
config)`): the `[[services]]` `hosts` say which service a line is about. Each gateway is one
module here (`envoy`, `kong`, `aws_httpapi`, `nginx`) around the shared parts in `gateway`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline.errors import UsageError
from pipeline.models import AuthFailureEvent
from pipeline.records import DEFAULT_MAX_RECORD_BYTES, decode_record

if TYPE_CHECKING:
    from pipeline.config import Config

#: raw bytes, size cap → the event, or None to skip; raises `RecordError` for a dead letter.
EventDecoder = Callable[[bytes, int], AuthFailureEvent | None]
#: A format whose decoder needs the config (a gateway's: hosts → service).
GatewayFormat = Callable[["Config"], EventDecoder]

DEFAULT_EVENT_FORMAT = "jwtriage"


def decode_jwtriage_event(raw: bytes, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> AuthFailureEvent:
    """jwtriage's own event JSON, validated by its pydantic model (never skipped)."""
    return decode_record(raw, AuthFailureEvent, max_bytes)


#: Formats that need no config, by the name a config or flag would give.
EVENT_FORMATS: dict[str, EventDecoder] = {
    DEFAULT_EVENT_FORMAT: decode_jwtriage_event,
}


def _gateway_formats() -> dict[str, GatewayFormat]:
    from pipeline.io.formats import aws_httpapi, envoy, kong, nginx

    return {"envoy": envoy.decoder, "kong": kong.decoder, "aws-httpapi": aws_httpapi.decoder, "nginx": nginx.decoder}


#: Gateway log formats, by name: each builds its decoder from the config.
GATEWAY_FORMATS: dict[str, GatewayFormat] = _gateway_formats()


def known_formats() -> frozenset[str]:
    return frozenset(EVENT_FORMATS) | frozenset(GATEWAY_FORMATS)


def event_decoder(name: str, config: Config | None = None) -> EventDecoder:
    """The decoder of the format `name` (a gateway's needs `config`); a `UsageError` naming the known ones otherwise."""
    if name in EVENT_FORMATS:
        return EVENT_FORMATS[name]
    if name in GATEWAY_FORMATS:
        if config is None:
            raise UsageError(f"event format {name!r} needs the config (its [[services]] hosts)")
        return GATEWAY_FORMATS[name](config)
    raise UsageError(f"unknown event format {name!r} (known: {', '.join(sorted(known_formats()))})")
