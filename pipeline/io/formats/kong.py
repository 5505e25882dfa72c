"""`kong`: Kong Gateway's log-plugin JSON (http-log, file-log, tcp-log, udp-log: one shared serializer).

What a line gives (Kong/docs.konghq.com app/_includes/md/plugins-hub/log-format.md):
`request.headers.host` (the service), `started_at` (ms since 1970), `request.id` (3.5+; also
the `x-kong-request-id` response header), `response.status`, and from 3.6 `source`: `kong`
when Kong answered itself, `upstream` when the service did.

A JWT rejection is a 401/403 that Kong answered itself (`source` is `kong`, or before 3.6,
no upstream `tries`): an upstream's 401 and every 2xx are skipped. Kong's jwt plugin puts its
reason ("Invalid signature", `{"exp":"token expired"}`) only in the response body, which no
log plugin serializes; a `reported_error` (or `jwt_error`) field added with the plugin's
`custom_fields_by_lua` is read when present, and `token_sha256` likewise (deploy/README).
Without either the event still counts the rejection, and a sampled token says the cause.
With `queue.max_batch_size` > 1 http-log posts an array: a one-entry array is read, a longer
one is a dead letter (set the batch size to 1, or split it in the shipper).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipeline.io.formats.gateway import (
    Gateway,
    epoch,
    first,
    json_object,
    make_event,
    nested,
    require_time,
    rfc3339,
    status,
    string,
    token_sha256,
)
from pipeline.models import AuthFailureEvent
from pipeline.records import RecordError

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.io.formats import EventDecoder

REJECTIONS = frozenset({401, 403})


def _entry(raw: bytes) -> dict[str, Any]:
    stripped = raw.lstrip()
    if not stripped.startswith(b"["):
        return json_object(raw, "a Kong log")
    try:
        entries = json.loads(raw)
    except (ValueError, RecursionError):
        raise RecordError("not JSON: a Kong log array that does not parse") from None
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        count = len(entries) if isinstance(entries, list) else 0
        raise RecordError(
            f"a batch of {count} Kong log entries: set the log plugin's queue.max_batch_size = 1 "
            "or split arrays in the shipper"
        )
    return entries[0]


def answered_by_kong(obj: dict[str, Any]) -> bool:
    source = string(obj.get("source"))
    if source is not None:
        return source.lower() == "kong"
    return not obj.get("tries") and string(obj.get("upstream_status")) is None


def _header(headers: object, name: str) -> object:
    value = headers.get(name) if isinstance(headers, dict) else None
    return value[0] if isinstance(value, list) and value else value  # a repeated header is a list


def read(raw: bytes, gateway: Gateway) -> AuthFailureEvent | None:
    obj = _entry(raw)
    code = status(nested(obj, "response", "status"))
    if code not in REJECTIONS or not answered_by_kong(obj):
        return None
    request_headers = nested(obj, "request", "headers")
    request_id = (
        string(nested(obj, "request", "id"))
        or string(_header(nested(obj, "response", "headers"), "x-kong-request-id"))
        or string(_header(request_headers, "x-request-id"))
    )
    return make_event(
        raw=raw,
        request_id=request_id,
        ts=require_time(epoch(obj.get("started_at")) or rfc3339(obj.get("started_at")), "started_at"),
        service=gateway.service(_header(request_headers, "host")),
        reported=string(first(obj, "reported_error", "jwt_error")),
        sha256=token_sha256(obj.get("token_sha256")),
        client_id=nested(obj, "consumer", "username"),
    )


def decoder(config: Config) -> EventDecoder:
    return Gateway(config, "kong").decoder(read)
