"""The lab's Python resource server: PyJWT with `PyJWKClient` and its default caching.

A plain `http.server` app: `GET /api` wants `Authorization: Bearer <token>`; a rejection is
logged as one AuthFailureEvent JSON line (`reported_error` as Python logs an exception:
`f"{type(e).__name__}: {e}"`) and, when the token's hash falls under the sampling rate, its
token as a SampledToken line. `GET /fetches` lists when the client fetched the JWKS (the
lab's ground truth for this service's cache). Configured by environment (lab/services.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt

ENV = os.environ
SERVICE = ENV["LAB_SERVICE"]
LOCK = threading.Lock()
FETCHES: list[str] = []


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RecordingJWKClient(jwt.PyJWKClient):
    """PyJWKClient with its defaults (lifespan 300 s, 30 s cooldown); only notes each fetch."""

    def fetch_data(self) -> Any:
        data = super().fetch_data()
        with LOCK:
            FETCHES.append(now())
        return data


JWKS = RecordingJWKClient(ENV["LAB_JWKS_URL"])


def verify(token: str) -> None:
    key = JWKS.get_signing_key_from_jwt(token)
    jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=ENV["LAB_AUDIENCE"],
        issuer=ENV["LAB_ISSUER"],
        options={"require": ["exp"]},
    )


def write(path: str, record: dict[str, Any]) -> None:
    with LOCK, open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


def log_rejection(token: str, message: str, headers: Any) -> None:
    digest = hashlib.sha256(token.encode("ascii", "replace")).hexdigest()
    ts = now()
    with LOCK:
        fetched = FETCHES[-1] if FETCHES else None
    write(
        ENV["LAB_EVENTS"],
        {
            "event_id": str(uuid.uuid4()),
            "ts": ts,
            "service": SERVICE,
            "reported_error": message,
            "service_jwks_fetched_at": fetched,
            "client_id": headers.get("X-Client-Id"),
            "request_id": headers.get("X-Request-Id"),
            "token_sha256": digest,
        },
    )
    if int(digest[:2], 16) < int(ENV["LAB_SAMPLE_BELOW"]):
        write(ENV["LAB_SAMPLES"], {"token": token, "sampled_at": ts, "service": SERVICE})


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet: the lab keeps its own log
        pass

    def reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            return self.reply(200, {"library": "pyjwt", "version": jwt.__version__})
        if self.path == "/fetches":
            with LOCK:
                return self.reply(200, list(FETCHES))
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            verify(token)
        except Exception as exc:  # every rejection, whatever PyJWT raised
            log_rejection(token, f"{type(exc).__name__}: {exc}", self.headers)
            return self.reply(401, {"error": "invalid_token"})
        return self.reply(200, {"ok": True})


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(ENV["LAB_PORT"])), Handler).serve_forever()
