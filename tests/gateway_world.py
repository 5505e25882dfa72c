"""Shared by the gateway-format tests: a config whose services name the fixtures' hosts, Istio lines.

A plain module (no fixtures): tests/test_gateway_formats.py and the Kafka test build on it.
"""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
GATEWAYS = FIXTURES / "gateways"
ENVOY_STATUS = json.loads((FIXTURES / "reported" / "envoy_status.json").read_text())["statuses"]
#: Every jwt_authn status Envoy can reject with ("OK" is never a rejection).
REJECTIONS = [entry for entry in ENVOY_STATUS if entry["status"] != "OK"]

CONFIG = """
[[issuers]]
name = "corp"
issuer = "https://login.acme.test"
jwks_uri = "https://login.acme.test/.well-known/jwks.json"
algorithms = ["RS256", "ES256"]

[[services]]
name = "httpbin"
issuers = ["corp"]
audience = "api://httpbin"
hosts = ["httpbin", "payments.acme.test"]

[[services]]
name = "local"
issuers = ["corp"]
audience = "api://local"
hosts = ["localhost"]

[[services]]
name = "pets"
issuers = ["corp"]
audience = "api://pets"
hosts = ["api-id.execute-api.us-west-2.amazonaws.com"]
"""


def write_config(path: Path, extra: str = "") -> Path:
    path.write_text(CONFIG + extra, encoding="utf-8")
    return path


def istio_line(details: str, *, code: int = 401, request_id: str, authority: str = "payments.acme.test:443") -> str:
    """One line of Istio's default JSON access log (EnvoyJSONLogFormatIstio's keys, every value a string)."""
    return json.dumps(
        {
            "start_time": "2026-11-23T10:42:00.123Z",
            "route_name": "default",
            "method": "GET",
            "path": "/v1/pay",
            "protocol": "HTTP/1.1",
            "response_code": str(code),
            "response_flags": "-",
            "response_code_details": details,
            "connection_termination_details": "-",
            "bytes_received": "0",
            "bytes_sent": "14",
            "duration": "0",
            "upstream_service_time": "-",
            "x_forwarded_for": "10.0.0.7",
            "user_agent": "curl/8.5.0",
            "request_id": request_id,
            "authority": authority,
            "upstream_host": "-",
            "upstream_cluster": "inbound|8080||",
            "upstream_local_address": "-",
            "downstream_local_address": "10.44.1.27:8080",
            "downstream_remote_address": "10.44.1.23:37652",
            "requested_server_name": "outbound_.8080_._.payments.acme.svc.cluster.local",
            "upstream_transport_failure_reason": "-",
        }
    )


def access_log_details(status: str) -> str:
    """What Envoy's access log writes for a jwt_authn rejection: spaces turned into `_`."""
    return "jwt_authn_access_denied{" + "_".join(status.split()) + "}"


def istio_day() -> tuple[list[str], dict[str, str]]:
    """An Istio access log: one rejection per jwt_authn status, 200s, an unknown host; and the expected causes."""
    lines, expected = [], {}
    for number, entry in enumerate(REJECTIONS):
        request_id = f"istio-{number:03d}"
        lines.append(istio_line(access_log_details(entry["status"]), request_id=request_id))
        expected[request_id] = entry["cause"]
        if number % 10 == 0:
            lines.append(istio_line("via_upstream", code=200, request_id=f"ok-{number:03d}"))
    lines.append(istio_line(access_log_details("Jwt is expired"), request_id="stranger", authority="evil.test"))
    return lines, expected
