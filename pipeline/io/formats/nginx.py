"""`nginx`: error-log lines of NGINX's `auth_jwt` module (NGINX Plus ngx_http_auth_jwt_module and its
open re-implementations, which log in the same place and shape).

    2026/11/23 10:42:00 [info] 1234#0: *5 auth_jwt: rejected due to signature validate failure: kid="k1",
    client: 10.0.0.7, server: api.acme.test, request: "GET /v1/pay HTTP/1.1", host: "api.acme.test"

NGINX appends the request's context (`client`, `server`, `request`, `upstream`, `host`,
`referrer`) to every message logged while a request is handled. A JWT rejection is a line
whose message is about the JWT (`auth_jwt`/`JWT`) logged for a request (it has that
context) at a level above debug; every other line (start-up, an upstream timeout, a missing
file) is skipped. The service is the `host:` (else `server:`). The error log has no request
id: the event id is a hash of the line. Its times are the server's local time with no zone:
they are read as UTC (run NGINX with TZ=UTC).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pipeline.io.formats.gateway import MAX_TEXT, Gateway, make_event
from pipeline.models import AuthFailureEvent
from pipeline.records import RecordError

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.io.formats import EventDecoder

#: date, level, pid#tid: then an optional *connection and the message (with the context appended).
_LINE = re.compile(
    r"(?P<date>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) \[(?P<level>[a-z]{1,8})\] \d{1,10}#\d{1,10}: "
    r"(?:\*\d{1,20} )?(?P<rest>.*)",
    re.DOTALL,
)
_CONTEXT = re.compile(r', (client|server|request|subrequest|upstream|host|referrer): ("[^"]*"|[^,]*)')
_JWT = re.compile(r"\bauth_jwt\b|\bjwt\b|\bjws\b|\bjwk", re.IGNORECASE)


def split_context(rest: str) -> tuple[str, dict[str, str]]:
    """The message and the request context NGINX appended (`, client: ..., host: "..."`)."""
    start = rest.find(", client: ")
    if start < 0:
        return rest, {}
    context = {key: value.strip('"') for key, value in _CONTEXT.findall(rest[start:])}
    return rest[:start], context


def read(raw: bytes, gateway: Gateway) -> AuthFailureEvent | None:
    try:
        line = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise RecordError(f"not UTF-8 (byte {exc.start})") from None
    match = _LINE.match(line)
    if match is None:
        raise RecordError("not an NGINX error-log line (expected `YYYY/MM/DD HH:MM:SS [level] pid#tid: ...`)")
    message, context = split_context(match["rest"])
    if match["level"] == "debug" or not context or not _JWT.search(message):
        return None  # not a request's JWT rejection: skipped
    try:
        ts = datetime.strptime(match["date"], "%Y/%m/%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise RecordError(f"not a date: {match['date']!r}") from None
    return make_event(
        raw=raw,
        request_id=None,
        ts=ts,
        service=gateway.service(context.get("host") or context.get("server")),
        reported=message.strip()[:MAX_TEXT],
    )


def decoder(config: Config) -> EventDecoder:
    return Gateway(config, "nginx").decoder(read)
