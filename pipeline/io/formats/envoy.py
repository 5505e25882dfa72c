"""`envoy`: Envoy and Istio JSON access logs (one JSON object a line).

Istio's default JSON access log (`accessLogEncoding: JSON`, `EnvoyJSONLogFormatIstio` in
istio/istio pilot) and Envoy Gateway's default both carry what is needed:

- `response_code_details`: the `jwt_authn` filter's verdict, `jwt_authn_access_denied{Jwt_is_expired}`
  (the status string with its spaces turned into `_`): a line without it is no JWT rejection
  (`via_upstream`, a 404, a 401 the upstream sent) and is skipped;
- `authority` (Envoy Gateway: `:authority`): the host → the service;
- `start_time`, `request_id` / `x_request_id` (Envoy Gateway: `x-request-id`).

With `failed_status_in_metadata: jwt_failure` in the jwt_authn config and
`"jwt_failure": "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:jwt_failure)%"` in the log
format, the status is also logged when `allow_missing_or_failed` let the request through
(`{"code": 3, "message": "Jwt is expired"}`): that line is a rejection too. A shipper that
hashes the Authorization header adds `token_sha256` (deploy/: Vector, Fluent Bit, OTel).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.io.formats.gateway import (
    Gateway,
    first,
    json_object,
    make_event,
    require_time,
    rfc3339,
    string,
    token_sha256,
)
from pipeline.models import AuthFailureEvent

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.io.formats import EventDecoder

#: The prefix of `%RESPONSE_CODE_DETAILS%` when the jwt_authn filter rejected the request.
DENIED = "jwt_authn_access_denied"

#: Keys the log format may give the jwt_authn `failed_status_in_metadata` struct (the docs' name first).
FAILED_STATUS_KEYS = ("jwt_failure", "failed_status_in_metadata", "jwt_authn_failure", "jwt_status")
AUTHORITY_KEYS = ("authority", ":authority", "host", "x-forwarded-host")
REQUEST_ID_KEYS = ("request_id", "x_request_id", "x-request-id", "requestId")
TIME_KEYS = ("start_time", "timestamp", "@timestamp", "time")


def failed_status(obj: dict[str, Any]) -> str | None:
    """The message of a logged jwt_authn failed status (`{"code": 3, "message": "Jwt is expired"}`), if any."""
    for key in FAILED_STATUS_KEYS:
        value = obj.get(key)
        if isinstance(value, str) and value.startswith("{"):  # logged as a string by a text-minded format
            try:
                value = json_object(value.encode("utf-8"), "a jwt_authn status")
            except ValueError:
                continue
        if isinstance(value, dict):
            code, message = value.get("code"), string(value.get("message"))
            if message is not None and code not in (0, "0", None):
                return message
    return None


def read(raw: bytes, gateway: Gateway) -> AuthFailureEvent | None:
    obj = json_object(raw, "an Envoy access-log")
    details = string(obj.get("response_code_details"))
    if details is not None and details.startswith(DENIED):
        reported: str | None = details
    else:
        reported = failed_status(obj)
    if reported is None:
        return None  # not the jwt_authn filter's rejection: skipped
    return make_event(
        raw=raw,
        request_id=first(obj, *REQUEST_ID_KEYS),
        ts=require_time(rfc3339(first(obj, *TIME_KEYS)), "start_time"),
        service=gateway.service(first(obj, *AUTHORITY_KEYS)),
        reported=reported,
        sha256=token_sha256(obj.get("token_sha256")),
    )


def decoder(config: Config) -> EventDecoder:
    return Gateway(config, "envoy").decoder(read)
