"""`aws-httpapi`: API Gateway HTTP API JSON access logs with the JWT authorizer's error.

The access-log format is the operator's (`$context` variables, AWS "Customize HTTP API
access logs"); this adapter reads the keys of the format in deploy/README, and the obvious
variants:

    {"requestId":"$context.requestId", "domainName":"$context.domainName",
     "requestTimeEpoch":"$context.requestTimeEpoch", "requestTime":"$context.requestTime",
     "status":"$context.status", "authorizerError":"$context.authorizer.error"}

A rejection is a 401/403 whose `$context.authorizer.error` is set: the JWT authorizer's
message, e.g. `the token has expired` (AWS also returns it in `www-authenticate` as
`Bearer scope="" error="invalid_token" error_description="..."`). Lines without an
authorizer error (a 200, an integration's 401) are skipped. `requestTimeEpoch` is in
milliseconds; `requestTime` is CLF (`13/May/2020:04:07:30 +0000`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pipeline.io.formats.gateway import (
    Gateway,
    epoch,
    first,
    json_object,
    make_event,
    require_time,
    rfc3339,
    status,
    string,
    token_sha256,
)
from pipeline.models import AuthFailureEvent

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.io.formats import EventDecoder

ERROR_KEYS = ("authorizerError", "authorizer.error", "authorizer_error", "$context.authorizer.error")
REQUEST_ID_KEYS = ("requestId", "request_id", "$context.requestId")
DOMAIN_KEYS = ("domainName", "domain_name", "$context.domainName", "host")
EPOCH_KEYS = ("requestTimeEpoch", "request_time_epoch", "$context.requestTimeEpoch")
TIME_KEYS = ("requestTime", "request_time", "$context.requestTime")
STATUS_KEYS = ("status", "$context.status", "statusCode")


def clf_time(value: object) -> datetime | None:
    """`13/May/2020:04:07:30 +0000` ($context.requestTime), or an RFC 3339 time."""
    text = string(value, 64)
    if text is None:
        return None
    try:
        return datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z")
    except ValueError:
        return rfc3339(text)


def read(raw: bytes, gateway: Gateway) -> AuthFailureEvent | None:
    obj = json_object(raw, "an API Gateway access-log")
    error = string(first(obj, *ERROR_KEYS))
    code = status(first(obj, *STATUS_KEYS))
    if error is None or code not in (401, 403, None):
        return None
    ts = epoch(first(obj, *EPOCH_KEYS)) or clf_time(first(obj, *TIME_KEYS))
    return make_event(
        raw=raw,
        request_id=first(obj, *REQUEST_ID_KEYS),
        ts=require_time(ts, "requestTimeEpoch / requestTime"),
        service=gateway.service(first(obj, *DOMAIN_KEYS)),
        reported=error,
        sha256=token_sha256(obj.get("token_sha256")),
    )


def decoder(config: Config) -> EventDecoder:
    return Gateway(config, "aws-httpapi").decoder(read)
