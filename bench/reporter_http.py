"""`bench_reporter.py --http`: the same app and variants served by uvicorn, timed at an HTTP client.

The in-process mode times the ASGI call alone (~120 µs here): the strictest denominator, but
not the request latency a client sees. Here each variant's app runs in a server process of its
own (uvicorn, its pure-Python h11 protocol, one worker), and a keep-alive HTTP/1.1 client in the
bench process sends the requests at the fixed rate, one at a time, timing each from its first byte
sent to the response's last byte read. The reporter (and its child) live in the server process,
as in production; the server's CPU per request is read from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


def serve(variant: str, port: int, args: argparse.Namespace) -> None:
    """The server process: build the variant's app and reporter, serve until SIGTERM, then say its counters."""
    import uvicorn
    from bench_reporter import make_app, new_reporter, signed_corpus
    from jwt import PyJWK

    corpus = signed_corpus(max(600, int(args.rate * args.seconds)))
    key = PyJWK(corpus.public_jwks()[0]).key
    reporter = new_reporter(variant, args)
    app = make_app(variant, key, reporter)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http="h11", loop="asyncio",
                                           log_level="warning", access_log=False, lifespan="off"))
    # Served from a thread, so uvicorn installs no signal handlers (it re-raises a captured SIGTERM
    # after shutting down, which would end this process before it says its counters).
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.should_exit = True
    thread.join(30)
    counters: dict[str, int] = {}
    child_cpu = 0.0
    if reporter is not None:
        from bench_reporter import child_seconds

        child_cpu = child_seconds(reporter)
        reporter.close(timeout=10)
        counters = reporter.counters()
    print(json.dumps({"counters": counters, "child_cpu": child_cpu}), flush=True)


def request_bytes(tokens: list[str]) -> list[bytes]:
    return [(f"GET /orders HTTP/1.1\r\nHost: orders.bench.test\r\nAuthorization: Bearer {t}\r\n"
             f"X-Request-Id: r{n}\r\n\r\n").encode() for n, t in enumerate(tokens)]


def _read_response(sock: socket.socket, buffer: bytearray) -> int:
    """Read one whole response (headers and a Content-Length body) from `sock`; its status."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buffer[:end]).decode("latin-1")
            length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")[1:]
                           if line.lower().startswith("content-length:")), 0)
            if len(buffer) >= end + 4 + length:
                del buffer[:end + 4 + length]
                return int(head.split(" ", 2)[1])
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk


def drive(port: int, requests: list[bytes], rate: float, count: int) -> tuple[list[float], list[float], list[int]]:
    """Open loop over one keep-alive connection: request i is due at start + i/rate."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buffer = bytearray()
    service, late, statuses = [], [], []
    start = time.perf_counter()
    try:
        for i in range(count):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            began = time.perf_counter()
            sock.sendall(requests[i % len(requests)])
            statuses.append(_read_response(sock, buffer))
            ended = time.perf_counter()
            service.append(ended - began)
            late.append(ended - max(due, start))
    finally:
        sock.close()
    return service, late, statuses


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(variant: str, args: argparse.Namespace) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    command = [sys.executable, str(BENCH / "bench_reporter.py"), "--serve", variant, "--port", str(port),
               "--rate", str(args.rate), "--seconds", str(args.seconds), "--sample-rate", str(args.sample_rate),
               "--bootstrap", args.bootstrap]
    if args.linger_ms is not None:
        command += ["--linger-ms", str(args.linger_ms)]
    path = [str(BENCH.parent), str(BENCH), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server, port
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"the {variant} server exited with status {server.returncode}") from None
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"the {variant} server did not listen within 60 s")


def stop_server(server: subprocess.Popen[str]) -> dict[str, Any]:
    server.send_signal(signal.SIGTERM)
    out, _ = server.communicate(timeout=30)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}
