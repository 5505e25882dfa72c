"""A local HTTP server that counts every connection and request made to it: the network trap."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Counter:
    base: str
    connections: int = 0
    requests: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.connections, self.requests[:] = 0, []


@contextmanager
def counting_server(body: dict[str, Any] | None = None) -> Iterator[Counter]:
    """Serves `body` as JSON to any GET/POST/HEAD on 127.0.0.1:<free port>; counts TCP connections too."""
    payload = json.dumps(body or {"keys": []}).encode()
    counter = Counter(base="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            counter.requests.append(f"{self.command} {self.path}")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_HEAD = _answer

        def log_message(self, *args: Any) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def verify_request(self, request: Any, client_address: Any) -> bool:
            counter.connections += 1  # any TCP connection, even one that never sends HTTP (TLS, say)
            return True

    server = Server(("127.0.0.1", 0), Handler)
    counter.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield counter
    finally:
        server.shutdown()
        server.server_close()
