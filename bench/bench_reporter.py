"""Benchmark: request latency of a Starlette app with and without `pipeline.reporter`, at 1,000 requests/s.

    python bench/bench_reporter.py [--rate 1000] [--seconds 5] [--runs 2] [--sample-rate 0.01] [--quick]

The app validates the request's bearer token with PyJWT (RS256, a prepared key) and answers
401 when it fails. Every request carries a different token that fails, so every request is a
rejection: the reporter's worst case (at a normal rejection rate it has almost nothing to do).
Variants, driven in-process by direct ASGI calls (no HTTP client in the way) at a fixed
arrival rate, one request at a time, interleaved run by run (each round in a rotated order):

  without       the app answers its own 401 (no reporter anywhere)
  middleware    the PyJWT error escapes to `ReporterMiddleware`, which reports it and answers 401
  explicit      the app calls `reporter.report_failure(request, exc)` and answers its own 401
  broker down   the middleware, its reporter pointed at a closed port (every report dropped, counted)
  thread        the middleware with `in_process=True`: Kafka produced by a thread of the app (the old way)
  thread down   the same, pointed at a closed port

Without `in_process`, the reporter produces in a child process (`pipeline.reporter_worker`);
its CPU is reported apart ("child CPU"), since it no longer runs under the app's GIL.

The corpus' tokens are for another audience (and long expired), so each is verified (RS256)
and then rejected. Latency is the time of the ASGI call (service time); "late" is from the scheduled arrival,
so a request held up by the reporter's threads (the GIL) shows there too. CPU is the app
process's per request, a reporter thread included; the child's is its own column. Needs the local broker
(`make kafka-up`) for the middleware/explicit variants; the topics are fresh each run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jwt
from common import ISSUER, Summary, header, load, load_note, signed_corpus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.reporter import Reporter, ReporterMiddleware

VARIANTS = ("without", "middleware", "explicit", "broker down", "thread", "thread down")
#: Variants whose reporter produces in a thread of the app's process (`in_process=True`, the old way).
THREADED = ("thread", "thread down")
#: Variants whose app lets the PyJWT error escape to `ReporterMiddleware`.
ESCAPING = ("middleware", "broker down", *THREADED)


@dataclass
class Result:
    variant: str
    service: list[float]  # seconds per request
    late: list[float]  # seconds from the scheduled arrival to the answer
    cpu_us: float
    child_cpu_us: float
    achieved_rate: float
    counters: dict[str, int]
    load: float

    def pct(self, q: float, values: list[float] | None = None) -> float:
        ordered = sorted(self.service if values is None else values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def make_app(variant: str, key: Any, reporter: Reporter | None) -> Any:
    def verify(request: Request) -> dict[str, Any]:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        # The corpus' tokens are for AUDIENCE and expired since 2026-11-23: rejected whatever the clock.
        return jwt.decode(token, key, algorithms=["RS256"], audience="api://orders", issuer=ISSUER)

    async def escaping(request: Request) -> Response:
        return JSONResponse({"sub": verify(request)["sub"]})

    async def answering(request: Request) -> Response:
        try:
            claims = verify(request)
        except jwt.PyJWTError as exc:
            if reporter is not None:
                reporter.report_failure(request, exc)
            return JSONResponse({"detail": "invalid token"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return JSONResponse({"sub": claims["sub"]})

    endpoint = escaping if variant in ESCAPING else answering
    app = Starlette(routes=[Route("/orders", endpoint)])
    if variant in ESCAPING:
        app.add_middleware(ReporterMiddleware, reporter=reporter)
    return app


def valid_token() -> str:
    """One token the app accepts (the corpus' key, the app's audience, an hour to live)."""
    from common import _private_keys

    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "api://orders", "sub": "user-1", "iat": now, "exp": now + 3600}
    return jwt.encode(claims, _private_keys()["RS256"], algorithm="RS256", headers={"kid": "bench-RS256"})


def mixed(rejected: list[str], ratio: float) -> list[str]:
    """Every 1/ratio-th request carries a failing token, the rest the valid one."""
    if ratio >= 1:
        return rejected
    good, every = valid_token(), max(1, round(1 / ratio))
    return [rejected[n] if n % every == 0 else good for n in range(len(rejected))]


def scopes(tokens: list[str]) -> list[dict[str, Any]]:
    return [{"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/orders", "raw_path": b"/orders", "query_string": b"", "root_path": "",
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
             "headers": [(b"host", b"orders.bench.test"), (b"authorization", f"Bearer {t}".encode()),
                         (b"x-request-id", f"r{n}".encode())]} for n, t in enumerate(tokens)]


async def drive(app: Any, requests: list[dict[str, Any]], rate: float, count: int) -> tuple[list[float], list[float]]:
    """Open loop: request i is due at start + i/rate; each is awaited to its last byte."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    service, late = [], []
    start = time.perf_counter()
    for i in range(count):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)  # releases the GIL: the reporter's threads run here, as in a real server's idle time
        began = time.perf_counter()
        await app(requests[i % len(requests)], receive, send)
        ended = time.perf_counter()
        service.append(ended - began)
        late.append(ended - max(due, start))
    assert statuses.count(401) >= 1 and set(statuses) <= {200, 401}, f"unexpected statuses {set(statuses)}"
    return service, late


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_variant(variant: str, key: Any, requests: list[dict[str, Any]], args: argparse.Namespace) -> Result:
    reporter = None
    if variant != "without":
        topic = f"bench-reporter-{uuid.uuid4().hex[:10]}"
        bootstrap = f"127.0.0.1:{closed_port()}" if variant.endswith("down") else args.bootstrap
        reporter = Reporter("orders-api", bootstrap_servers=bootstrap, failures_topic=f"{topic}.failures",
                            samples_topic=f"{topic}.samples", sample_rate=args.sample_rate,
                            kafka_options={"linger_ms": args.linger_ms} if args.linger_ms is not None else None,
                            in_process=variant in THREADED)
    app = make_app(variant, key, reporter)
    count = int(args.rate * args.seconds)
    warm = max(50, int(args.rate * 0.5))
    asyncio.run(drive(app, requests[-warm:], args.rate, warm))  # connect, topic metadata, code warm
    time.sleep(0.2)
    cpu, child_cpu = time.process_time(), child_seconds(reporter)
    started = time.perf_counter()
    service, late = asyncio.run(drive(app, requests, args.rate, count))
    elapsed = time.perf_counter() - started
    cpu_us = (time.process_time() - cpu) / count * 1e6
    child_cpu_us = (child_seconds(reporter) - child_cpu) / count * 1e6
    at_load = load()
    counters: dict[str, int] = {}
    if reporter is not None:
        reporter.close(timeout=10)
        counters = reporter.counters()
    return Result(variant, service, late, cpu_us, child_cpu_us, count / elapsed, counters, at_load)


def child_seconds(reporter: Reporter | None) -> float:
    """CPU seconds (user + system) of the reporter's child process so far; 0 without one (Linux /proc)."""
    link = reporter._link if reporter is not None else None
    if link is None:
        return 0.0
    try:
        fields = Path(f"/proc/{link.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1_000.0, help="requests per second (default 1,000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--runs", type=int, default=2, help="runs per variant, interleaved; the best p99 kept")
    parser.add_argument("--reject-ratio", type=float, default=1.0,
                        help="share of requests rejected (default 1: every one, the worst case)")
    parser.add_argument("--sample-rate", type=float, default=0.01, help="the reporter's token sample rate")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--linger-ms", type=int, help="the producer's linger_ms (default: the reporter's)")
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test; figures mean nothing)")
    parser.add_argument("--summary", type=Path, help="write the headline figures here as JSON (for run_all.py)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.runs = 0.5, 1
    header("reporter: Starlette request latency with and without pipeline.reporter")
    corpus = signed_corpus(max(600, int(args.rate * args.seconds)))
    tokens = corpus.tokens()
    key = jwt.PyJWK(corpus.public_jwks()[0]).key
    requests = scopes(mixed(tokens, args.reject_ratio))
    best: dict[str, Result] = {}
    runs: dict[str, list[Result]] = {variant: [] for variant in VARIANTS}
    for round_ in range(max(1, args.runs)):
        for n in range(len(VARIANTS)):  # each round starts one variant later: no variant always follows another
            variant = VARIANTS[(n + round_) % len(VARIANTS)]
            result = run_variant(variant, key, requests, args)
            runs[variant].append(result)
            if variant not in best or result.pct(0.99) < best[variant].pct(0.99):
                best[variant] = result
    report(best, args)
    report_medians(runs)
    return 0


def report_medians(runs: dict[str, list[Result]]) -> None:
    """The median over the interleaved runs, per variant: steadier than the best on a shared machine."""
    def median(variant: str, q: float) -> float:
        return statistics.median(r.pct(q) for r in runs[variant])

    print(f"  median of {len(runs['without'])} runs: " + "; ".join(
        f"{v} p50 {median(v, 0.5):.0f} ({median(v, 0.5) / median('without', 0.5):.2f}x), "
        f"p99 {median(v, 0.99):.0f} ({median(v, 0.99) / median('without', 0.99):.2f}x)" for v in VARIANTS))


def report(best: dict[str, Result], args: argparse.Namespace) -> None:
    base = best["without"]
    share = "every one" if args.reject_ratio >= 1 else f"{args.reject_ratio:.0%}"
    print(f"{len(base.service):,} requests per run at {args.rate:,.0f}/s, {share} rejected; sample rate "
          f"{args.sample_rate}; best p99 of {args.runs} interleaved runs; {load_note()}")
    print(f"  {'variant':<12} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} {'max µs':>8} {'late p99':>9} "
          f"{'mean':>7} {'CPU µs/req':>10} {'child CPU':>9} {'req/s':>7} {'p50 ×':>6} {'p99 ×':>6}  counters, load")
    for variant in VARIANTS:
        r = best[variant]
        mean = statistics.fmean(r.service) * 1e6
        print(f"  {variant:<12} {r.pct(0.5):>8.0f} {r.pct(0.9):>8.0f} {r.pct(0.99):>8.0f} {max(r.service) * 1e6:>8.0f} "
              f"{r.pct(0.99, r.late):>9.0f} {mean:>7.0f} {r.cpu_us:>10.0f} {r.child_cpu_us:>9.0f} "
              f"{r.achieved_rate:>7.0f} "
              f"{r.pct(0.5) / base.pct(0.5):>6.2f} {r.pct(0.99) / base.pct(0.99):>6.2f}  "
              f"{r.counters or '-'}, {r.load:.2f}")
    summary = Summary("reporter", [])
    for variant in VARIANTS[1:]:
        r = best[variant]
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            ratio = r.pct(q) / base.pct(q)
            mix = "" if args.reject_ratio >= 1 else f" ({args.reject_ratio:.0%} rejected)"
            summary.add(f"reporter: {label} latency, {variant}{mix}", r.pct(q), "µs", baseline=base.pct(q),
                        target="≤ 1.05x", met=ratio <= 1.05, load=r.load)
    summary.write(args.summary)


if __name__ == "__main__":
    sys.exit(main())
