"""The issuer's JWKS endpoint: http.server on 127.0.0.1, one path per runner, every fetch logged.

Every runner fetches the same document, but from its own path (`/<runner>/jwks.json`), so the
harness knows when each library last fetched its key set: that time goes on the library's
inline-token events as `service_jwks_fetched_at`, exactly what a service would report.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JwksServer:
    """Serves the current JWK Set; `publish` swaps it atomically; `fetches` tells who fetched when."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._body = b'{"keys":[]}'
        self._fetches: dict[str, list[datetime]] = defaultdict(list)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="jwks-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, runner: str) -> str:
        return f"http://127.0.0.1:{self.port}/{runner}/jwks.json"

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def publish(self, jwks: dict[str, Any]) -> None:
        with self._lock:
            self._body = json.dumps(jwks).encode()

    def last_fetch(self, runner: str, before: datetime) -> datetime | None:
        """When `runner` last fetched the key set at or before `before` (None: never)."""
        with self._lock:
            times = [t for t in self._fetches.get(runner, ()) if t <= before]
        return max(times) if times else None

    def fetch_count(self, runner: str) -> int:
        with self._lock:
            return len(self._fetches.get(runner, ()))

    def _serve(self, path: str) -> bytes | None:
        parts = path.split("?")[0].strip("/").split("/")
        if len(parts) != 2 or parts[1] != "jwks.json":
            return None
        with self._lock:
            self._fetches[parts[0]].append(datetime.now(UTC))
            return self._body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = server._serve(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # the runs are quiet
                pass

        return Handler
