"""Benchmark: request latency of a Starlette app with and without `pipeline.reporter`, at 1,000 requests/s.

    python bench/bench_reporter.py [--rate 1000] [--seconds 5] [--runs 2] [--sample-rate 0.01] [--hogs N]
                                   [--variants middleware,...] [--quick]

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
  nice child    the middleware, its child process at nice 10 (`child_idle=False`) instead of SCHED_IDLE
  noop          the middleware with a reporter that reports nothing: the floor of the middleware's own path

Without `in_process`, the reporter produces in a child process (`pipeline.reporter_worker`);
its CPU is reported apart ("child CPU"), since it no longer runs under the app's GIL.

The corpus' tokens are for another audience (and long expired), so each is verified (RS256)
and then rejected. Latency is the time of the ASGI call (service time); "late" is from the scheduled arrival,
so a request held up by the reporter's threads (the GIL) shows there too. CPU is the app
process's per request, a reporter thread included; the child's is its own column, and so is the local
broker's ("broker": every `kafka.Kafka` JVM here, which on a 2-core machine competes with the app as
the child does; in production it runs elsewhere). Needs the local broker (`make kafka-up`) for the
middleware/explicit variants; the topics are fresh each run.

The load of a shared machine drifts from run to run, more than the effect measured: besides the
best run, each variant's median run and the percentiles of all its runs' requests pooled are
printed; `--runs 10 --seconds 1` interleaves finely. `--hogs N` adds N busy-looping processes,
to measure on a loaded machine on purpose; `--variants` picks variants ("without" always runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
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

VARIANTS = ("without", "middleware", "explicit", "broker down", "thread", "thread down", "nice child", "noop")
#: Variants whose reporter produces in a thread of the app's process (`in_process=True`, the old way).
THREADED = ("thread", "thread down")
#: Variants whose app lets the PyJWT error escape to `ReporterMiddleware`.
ESCAPING = ("middleware", "broker down", *THREADED, "nice child", "noop")


class NoopReporter(Reporter):
    """Reports nothing (no child, no thread): what is left is the middleware's own path."""

    def report_failure(self, source: Any, exc: BaseException, **fields: Any) -> bool:
        return True


@dataclass
class Result:
    variant: str
    service: list[float]  # seconds per request
    late: list[float]  # seconds from the scheduled arrival to the answer
    cpu_us: float
    child_cpu_us: float
    broker_cpu_us: float
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


def new_reporter(variant: str, args: argparse.Namespace) -> Reporter | None:
    """The variant's reporter on fresh topics (None for "without")."""
    if variant == "without":
        return None
    topic = f"bench-reporter-{uuid.uuid4().hex[:10]}"
    bootstrap = f"127.0.0.1:{closed_port()}" if variant.endswith("down") else args.bootstrap
    kind = NoopReporter if variant == "noop" else Reporter
    return kind("orders-api", bootstrap_servers=bootstrap, failures_topic=f"{topic}.failures",
                samples_topic=f"{topic}.samples", sample_rate=args.sample_rate,
                kafka_options={"linger_ms": args.linger_ms} if args.linger_ms is not None else None,
                in_process=variant in THREADED, child_idle=variant != "nice child")


def run_variant(variant: str, key: Any, requests: list[dict[str, Any]], args: argparse.Namespace) -> Result:
    reporter = new_reporter(variant, args)
    app = make_app(variant, key, reporter)
    count = int(args.rate * args.seconds)
    warm = max(50, int(args.rate * 0.5))
    asyncio.run(drive(app, requests[-warm:], args.rate, warm))  # connect, topic metadata, code warm
    time.sleep(0.2)
    settle(reporter)
    cpu, child_cpu, broker_cpu = time.process_time(), child_seconds(reporter), broker_seconds()
    started = time.perf_counter()
    service, late = asyncio.run(drive(app, requests, args.rate, count))
    elapsed = time.perf_counter() - started
    cpu_us = (time.process_time() - cpu) / count * 1e6
    child_cpu_us = (child_seconds(reporter) - child_cpu) / count * 1e6
    broker_cpu_us = (broker_seconds() - broker_cpu) / count * 1e6
    at_load = load()
    counters: dict[str, int] = {}
    if reporter is not None:
        reporter.close(timeout=10)
        counters = reporter.counters()
    return Result(variant, service, late, cpu_us, child_cpu_us, broker_cpu_us, count / elapsed, counters, at_load)


def run_variant_http(variant: str, requests: list[bytes], args: argparse.Namespace) -> Result:
    """The variant served by uvicorn in a process of its own, timed at a keep-alive HTTP client here."""
    import reporter_http

    server, port = reporter_http.start_server(variant, args)
    try:
        count = int(args.rate * args.seconds)
        warm = max(50, int(args.rate * 0.5))
        reporter_http.drive(port, requests[-warm:], args.rate, warm)  # connect, topic metadata, code warm
        time.sleep(0.5)
        children = _children(server.pid)
        cpu, child_cpu, broker_cpu = cpu_seconds(server.pid), sum(map(cpu_seconds, children)), broker_seconds()
        started = time.perf_counter()
        service, late, statuses = reporter_http.drive(port, requests, args.rate, count)
        elapsed = time.perf_counter() - started
        cpu_us = (cpu_seconds(server.pid) - cpu) / count * 1e6
        child_cpu_us = (sum(map(cpu_seconds, children)) - child_cpu) / count * 1e6
        broker_cpu_us = (broker_seconds() - broker_cpu) / count * 1e6
        at_load = load()
    finally:
        said = reporter_http.stop_server(server)
    assert statuses.count(401) >= 1 and set(statuses) <= {200, 401}, f"unexpected statuses {set(statuses)}"
    return Result(variant, service, late, cpu_us, child_cpu_us, broker_cpu_us, count / elapsed,
                  said.get("counters", {}), at_load)


def _children(pid: int) -> list[int]:
    """The direct children of a process, whichever of its threads started them (the reporter's child)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except OSError:
            continue
    return found


def settle(reporter: Reporter | None, timeout: float = 15.0) -> None:
    """Wait until the child has taken every warm-up report: it starts (Python, kafka-python, the first
    connection) while they wait in the socket, and a slow start on a loaded machine must not spill
    over into the measured run (nor overflow the socket: those reports would be dropped, counted)."""
    link = reporter._link if reporter is not None else None
    deadline = time.monotonic() + timeout
    while link is not None and link.slots[0] < link.written and time.monotonic() < deadline:
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process so far; 0 when it is gone (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_seconds(reporter: Reporter | None) -> float:
    """CPU seconds of the reporter's child process so far; 0 without one."""
    link = reporter._link if reporter is not None else None
    return cpu_seconds(link.proc.pid) if link is not None else 0.0


def broker_pids() -> list[int]:
    """Every local Kafka broker (a `kafka.Kafka` JVM on this machine)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"kafka.Kafka" in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


@contextlib.contextmanager
def broker_pinned(cpus: set[int] | None) -> Iterator[None]:
    """Keep the local broker's JVM threads on `cpus` while the runs last, then give them back their CPUs.

    In production the broker is another machine; on this 2-core one its CPU for the reports (as much
    as the child's, bench/results.md) lands on the app's cores. Pinned, it competes only for its own
    core, as a remote broker competes for none; the app and the child keep every core.
    """
    saved: dict[tuple[int, int], set[int]] = {}
    if cpus:
        for pid in broker_pids():
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    tid = int(task.name)
                    saved[pid, tid] = os.sched_getaffinity(tid)
                    os.sched_setaffinity(tid, cpus)
        if not saved:
            print("warning: --broker-cpus: no local kafka.Kafka process found; nothing pinned", file=sys.stderr)
    try:
        yield
    finally:
        for (_, tid), mask in saved.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, mask)


def broker_seconds() -> float:
    """CPU seconds of the local Kafka brokers (every `kafka.Kafka` JVM on this machine) so far: on a
    2-core machine the broker taking the reports competes with the app as much as the child does."""
    return sum(map(cpu_seconds, broker_pids()))


def request_path(args: argparse.Namespace, count: int = 2_000) -> None:
    """The request path alone: CPU of the app's thread in `report_failure`, reports 1 ms apart (caches
    as cold as between real requests), the flusher and the child left to run as they would."""
    reporter = Reporter("orders-api", bootstrap_servers=args.bootstrap, failures_topic="bench-reporter-path.failures",
                        samples_topic="bench-reporter-path.samples", sample_rate=args.sample_rate)
    request = {"type": "http", "headers": [
        (b"host", b"orders.example"), (b"user-agent", b"bench/1"), (b"accept", b"*/*"),
        (b"authorization", f"Bearer {valid_token()}".encode()), (b"x-request-id", b"r-1"), (b"cookie", b"a=b")]}
    exc = jwt.InvalidAudienceError("Audience doesn't match")
    spent = []
    for n in range(count + 200):  # the first 200 start the child and warm the path
        started = time.thread_time_ns()
        reporter.report_failure(request, exc)
        if n >= 200:
            spent.append((time.thread_time_ns() - started) / 1000)
        time.sleep(0.001)
    reporter.close(timeout=10)
    spent.sort()
    print(f"request path ({count:,} reports 1 ms apart, thread CPU in report_failure): median "
          f"{statistics.median(spent):.1f} µs, p90 {spent[int(count * 0.9)]:.1f}, p99 {spent[int(count * 0.99)]:.1f}; "
          f"counters {reporter.counters()}; {load_note()}")


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
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated variants to run ('without' is always run: the baseline)")
    parser.add_argument("--hogs", type=int, default=0,
                        help="busy-looping processes (nice 0) competing for the CPUs while it runs: "
                        "a loaded machine on purpose rather than by chance")
    parser.add_argument("--broker-cpus", type=lambda text: {int(c) for c in text.split(",")}, metavar="LIST",
                        help="pin the local broker's JVM to these CPUs (e.g. 1) while it runs, as if it were "
                        "another machine; the app and the reporter's child keep every CPU")
    parser.add_argument("--http", action="store_true",
                        help="serve each variant with uvicorn in a process of its own and time the requests at "
                        "an HTTP client (bench/reporter_http.py): the latency a client sees")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # a --http server process: the variant to serve
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--request-path", action="store_true",
                        help="time only `report_failure` on the app's thread (CPU per report), then stop")
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test; figures mean nothing)")
    parser.add_argument("--summary", type=Path, help="write the headline figures here as JSON (for run_all.py)")
    args = parser.parse_args(argv)
    if args.serve:
        import reporter_http

        reporter_http.serve(args.serve, args.port, args)
        return 0
    if args.request_path:
        request_path(args)
        return 0
    chosen = ["without", *(v for v in VARIANTS if v != "without" and v in args.variants.split(","))]
    if args.quick:
        args.seconds, args.runs = 0.5, 1
    header("reporter: Starlette request latency with and without pipeline.reporter")
    corpus = signed_corpus(max(600, int(args.rate * args.seconds)))
    tokens = corpus.tokens()
    key = jwt.PyJWK(corpus.public_jwks()[0]).key
    requests = scopes(mixed(tokens, args.reject_ratio))
    if args.http:
        import reporter_http

        http_requests = reporter_http.request_bytes(mixed(tokens, args.reject_ratio))
    best: dict[str, Result] = {}
    runs: dict[str, list[Result]] = {variant: [] for variant in chosen}
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    try:
        with broker_pinned(args.broker_cpus):
            for round_ in range(max(1, args.runs)):
                for n in range(len(chosen)):  # each round starts one variant later: no variant always follows another
                    variant = chosen[(n + round_) % len(chosen)]
                    result = (run_variant_http(variant, http_requests, args) if args.http
                              else run_variant(variant, key, requests, args))
                    runs[variant].append(result)
                    if variant not in best or result.pct(0.99) < best[variant].pct(0.99):
                        best[variant] = result
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    report(best, args)
    report_medians(runs)
    return 0


def report_medians(runs: dict[str, list[Result]]) -> None:
    """The median over the interleaved runs, per variant, and the percentiles of all their requests
    pooled: both steadier than the best run on a shared machine, whose load drifts run to run."""
    variants = list(runs)
    def median(variant: str, q: float) -> float:
        return statistics.median(r.pct(q) for r in runs[variant])

    def pooled(variant: str, q: float) -> float:
        ordered = sorted(x for r in runs[variant] for x in r.service)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6

    print(f"  pooled over {len(runs['without'])} runs: " + "; ".join(
        f"{v} p50 {pooled(v, 0.5):.0f} ({pooled(v, 0.5) / pooled('without', 0.5):.2f}x), "
        f"p99 {pooled(v, 0.99):.0f} ({pooled(v, 0.99) / pooled('without', 0.99):.2f}x)" for v in variants))
    print(f"  median of {len(runs['without'])} runs: " + "; ".join(
        f"{v} p50 {median(v, 0.5):.0f} ({median(v, 0.5) / median('without', 0.5):.2f}x), "
        f"p99 {median(v, 0.99):.0f} ({median(v, 0.99) / median('without', 0.99):.2f}x)" for v in variants))


def report(best: dict[str, Result], args: argparse.Namespace) -> None:
    base = best["without"]
    share = "every one" if args.reject_ratio >= 1 else f"{args.reject_ratio:.0%}"
    hogs = f"; {args.hogs} busy-looping process(es) competing" if args.hogs else ""
    if args.broker_cpus:
        hogs += f"; the local broker pinned to CPU {','.join(map(str, sorted(args.broker_cpus)))}"
    how = ("timed at an HTTP client, served by uvicorn (h11) in a process of its own" if args.http
           else "timed as the ASGI call in process")
    print(f"{len(base.service):,} requests per run at {args.rate:,.0f}/s, {share} rejected, {how}; sample rate "
          f"{args.sample_rate}; best p99 of {args.runs} interleaved runs{hogs}; {load_note()}")
    print(f"  {'variant':<12} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8} {'max µs':>8} {'late p99':>9} "
          f"{'mean':>7} {'CPU µs/req':>10} {'child CPU':>9} {'broker':>7} {'req/s':>7} {'p50 ×':>6} {'p99 ×':>6}"
          "  counters, load")
    for variant in [v for v in VARIANTS if v in best]:
        r = best[variant]
        mean = statistics.fmean(r.service) * 1e6
        print(f"  {variant:<12} {r.pct(0.5):>8.0f} {r.pct(0.9):>8.0f} {r.pct(0.99):>8.0f} {max(r.service) * 1e6:>8.0f} "
              f"{r.pct(0.99, r.late):>9.0f} {mean:>7.0f} {r.cpu_us:>10.0f} {r.child_cpu_us:>9.0f} "
              f"{r.broker_cpu_us:>7.0f} "
              f"{r.achieved_rate:>7.0f} "
              f"{r.pct(0.5) / base.pct(0.5):>6.2f} {r.pct(0.99) / base.pct(0.99):>6.2f}  "
              f"{r.counters or '-'}, {r.load:.2f}")
    summary = Summary("reporter", [])
    for variant in [v for v in VARIANTS[1:] if v in best]:
        r = best[variant]
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            ratio = r.pct(q) / base.pct(q)
            mix = ("" if args.reject_ratio >= 1 else f" ({args.reject_ratio:.0%} rejected)") + (
                " over HTTP" if args.http else "")
            summary.add(f"reporter: {label} latency, {variant}{mix}", r.pct(q), "µs", baseline=base.pct(q),
                        target="≤ 1.05x", met=ratio <= 1.05, load=r.load)
    summary.write(args.summary)


if __name__ == "__main__":
    sys.exit(main())
