"""pipeline.reporter inside real apps: a Starlette (ASGI) app and a wsgiref (WSGI) server.

The apps validate with PyJWT and a `PyJWKClient` as a real service would. Against the real
broker (`kafka` tests, isolated topics), the events and sampled tokens must arrive and
`jwtriage classify` must judge them to the cause each request was built to fail with.
Against a closed port, every request must still be answered at once and the losses counted.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline import cli
from pipeline.models import AuthFailureEvent, SampledToken
from pipeline.reporter import Reporter, ReporterMiddleware, ReporterWSGIMiddleware, sampled, token_sha256
from tests.kafka_helpers import DEFAULT_BOOTSTRAP, KafkaConsumer, unique_topic, wait_for_broker
from tests.test_reporter import jwks_url  # noqa: F401  (the JWKS endpoint fixture)
from tests.world import AUDIENCE, CONFIG_TOML, CORP, DROP, good_claims, mint, snapshot

#: request id → (what the token is, the cause jwtriage must give); "valid" passes (200, no event).
CASES: dict[str, tuple[Callable[[datetime], str], str | None]] = {
    "expired": (lambda now: mint("rsa-2", good_claims(now - timedelta(hours=2))), "expired"),
    "audience": (lambda now: mint("rsa-2", good_claims(now, aud="api://other")), "audience_mismatch"),
    "unknown-kid": (lambda now: mint("rogue", good_claims(now)), "unknown_kid"),
    "bad-signature": (lambda now: mint("rsa-2", good_claims(now), signer="rogue"), "bad_signature"),
    "not-yet-valid": (lambda now: mint("rsa-2", good_claims(now + timedelta(hours=1))), "not_yet_valid"),
    "issuer": (lambda now: mint("rsa-2", good_claims(now, iss="https://evil.test")), "issuer_mismatch"),
    "no-sub": (lambda now: mint("rsa-2", good_claims(now, sub=DROP)), "missing_claim"),
    "malformed": (lambda now: "not-a-token", "malformed"),
    "valid": (lambda now: mint("rsa-2", good_claims(now)), None),
}


def verify(token: str, client: jwt.PyJWKClient) -> dict[str, Any]:
    """What the service does: the key from its JWKS client, then PyJWT's checks."""
    key = client.get_signing_key_from_jwt(token)
    return jwt.decode(token, key, algorithms=["RS256", "ES256"], audience=AUDIENCE, issuer=CORP,
                      options={"require": ["exp", "iat", "sub"]})


def bearer(header: str | None) -> str:
    return (header or "").removeprefix("Bearer ")


def starlette_app(reporter: Reporter, client: jwt.PyJWKClient) -> Starlette:
    async def hello(request: Request) -> JSONResponse:  # failures escape to the middleware
        claims = verify(bearer(request.headers.get("authorization")), client)
        return JSONResponse({"sub": claims["sub"]})

    async def explicit(request: Request) -> JSONResponse:  # the app answers and reports itself
        try:
            verify(bearer(request.headers.get("authorization")), client)
        except jwt.PyJWTError as exc:
            reporter.report_failure(request, exc)
            return JSONResponse({"detail": "go away"}, status_code=401)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/hello", hello), Route("/explicit", explicit)])
    app.add_middleware(ReporterMiddleware, reporter=reporter)
    return app


def wsgi_app(client: jwt.PyJWKClient) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        claims = verify(bearer(environ.get("HTTP_AUTHORIZATION")), client)
        body = json.dumps({"sub": claims["sub"]}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def wsgi_server(app: Callable[..., Any]) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def asgi_requests(app: Starlette, path: str, tokens: dict[str, str]) -> dict[str, httpx.Response]:
    async def run() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://payments.acme.test") as http:
            return {rid: await http.get(path, headers={"Authorization": f"Bearer {tok}", "X-Request-ID": rid})
                    for rid, tok in tokens.items()}

    return asyncio.run(run())


def wsgi_requests(base: str, tokens: dict[str, str]) -> dict[str, httpx.Response]:
    with httpx.Client(base_url=base, timeout=10) as http:
        return {rid: http.get("/", headers={"Authorization": f"Bearer {tok}", "X-Request-ID": rid})
                for rid, tok in tokens.items()}


def assert_answers(responses: dict[str, httpx.Response], path: str = "/hello") -> None:
    for rid, response in responses.items():
        if rid == "valid":
            assert response.status_code == 200, rid
        else:
            assert response.status_code == 401, (rid, response.text)
            if path != "/explicit":
                assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
                assert response.json() == {"detail": "invalid token"}  # the exception's text stays inside


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- against the real broker ------------------------------------------------------------------


def consume(topics: list[str], expected: int, timeout: float = 60) -> dict[str, list[bytes]]:
    consumer = KafkaConsumer(*topics, bootstrap_servers=DEFAULT_BOOTSTRAP, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=1000)
    got: dict[str, list[bytes]] = {t: [] for t in topics}
    deadline = time.monotonic() + timeout
    try:
        while sum(map(len, got.values())) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    got[record.topic].append(record.value)
    finally:
        consumer.close()
    return got


def classify(tmp: Path, events: list[bytes], samples: list[bytes], now: datetime) -> dict[str, dict[str, Any]]:
    """`jwtriage classify` over what arrived, with the JWKS the issuer published a day ago."""
    (tmp / "jwtriage.toml").write_text(CONFIG_TOML)
    (tmp / "jwks.jsonl").write_text(snapshot(CORP, now - timedelta(days=1), ["rsa-2", "ec-1"]).model_dump_json() + "\n")
    (tmp / "events.jsonl").write_bytes(b"".join(v + b"\n" for v in events))
    (tmp / "samples.jsonl").write_bytes(b"".join(v + b"\n" for v in samples))
    out = io.StringIO()
    with redirect_stdout(out):
        status = cli.main(["classify", "--config", str(tmp / "jwtriage.toml"), "--jwks", str(tmp / "jwks.jsonl"),
                           "--samples", str(tmp / "samples.jsonl"), str(tmp / "events.jsonl")])
    assert status == 0
    return {row["event_id"]: row for row in map(json.loads, out.getvalue().splitlines())}


def judge_arrivals(tmp: Path, topics: tuple[str, str], tokens: dict[str, str], rate: float, now: datetime) -> None:
    failing = {rid: tok for rid, tok in tokens.items() if rid != "valid"}
    picked = {rid for rid, tok in failing.items() if sampled(token_sha256(tok), rate)}
    got = consume(list(topics), len(failing) + len(picked))
    events = [AuthFailureEvent.model_validate_json(v) for v in got[topics[0]]]
    samples = [SampledToken.model_validate_json(v) for v in got[topics[1]]]
    assert sorted(e.request_id or "" for e in events) == sorted(failing)
    assert {s.token for s in samples} == {failing[rid] for rid in picked}
    for event in events:
        assert event.token is None and event.token_sha256 == token_sha256(failing[event.request_id or ""])
        assert event.service_jwks_fetched_at is not None and event.service_jwks_fetched_at <= event.ts
    for value in got[topics[0]]:
        assert not any(tok.encode() in value for tok in failing.values() if tok != "not-a-token")
    verdicts = classify(tmp, got[topics[0]], got[topics[1]], now)
    for event in events:
        rid = event.request_id or ""
        verdict = verdicts[event.event_id]
        assert verdict["cause"] == CASES[rid][1], (rid, verdict)
        assert verdict["confidence"] == ("verified" if rid in picked else "reported"), (rid, verdict)


@pytest.fixture
def topics() -> tuple[str, str]:
    wait_for_broker(timeout=60)
    prefix = unique_topic("reporter")
    return f"{prefix}.failures", f"{prefix}.samples"


@pytest.mark.kafka
@pytest.mark.parametrize("path", ["/hello", "/explicit"])
def test_a_starlette_app_reports_to_the_broker_and_jwtriage_judges_it(
    jwks_url: str, topics: tuple[str, str], tmp_path: Path, path: str  # noqa: F811
) -> None:
    now = datetime.now(UTC)
    tokens = {rid: make(now) for rid, (make, _) in CASES.items()}
    client = jwt.PyJWKClient(jwks_url)
    rep = Reporter("payments-api", bootstrap_servers=DEFAULT_BOOTSTRAP, failures_topic=topics[0],
                   samples_topic=topics[1], sample_rate=0.5, jwks_client=client)
    responses = asgi_requests(starlette_app(rep, client), path, tokens)
    rep.close(timeout=15)
    assert_answers(responses, path)
    picked = sum(sampled(token_sha256(t), 0.5) for rid, t in tokens.items() if rid != "valid")
    assert rep.counters() == {"sent": len(tokens) - 1, "dropped": 0, "errors": 0, "sampled": picked, "samples_lost": 0}
    judge_arrivals(tmp_path, topics, tokens, 0.5, now)


@pytest.mark.kafka
def test_a_wsgi_server_reports_to_the_broker_and_jwtriage_judges_it(
    jwks_url: str, topics: tuple[str, str], tmp_path: Path  # noqa: F811
) -> None:
    now = datetime.now(UTC)
    tokens = {rid: make(now) for rid, (make, _) in CASES.items()}
    client = jwt.PyJWKClient(jwks_url)
    rep = Reporter("payments-api", bootstrap_servers=DEFAULT_BOOTSTRAP, failures_topic=topics[0],
                   samples_topic=topics[1], sample_rate=1.0, jwks_client=client)
    with wsgi_server(ReporterWSGIMiddleware(wsgi_app(client), rep)) as base:
        responses = wsgi_requests(base, tokens)
    rep.close(timeout=15)
    assert_answers(responses)
    assert rep.counters() == {"sent": 8, "dropped": 0, "errors": 0, "sampled": 8, "samples_lost": 0}
    judge_arrivals(tmp_path, topics, tokens, 1.0, now)


@pytest.mark.kafka
def test_each_forked_worker_gets_its_own_child_process(topics: tuple[str, str], tmp_path: Path) -> None:
    import os

    rep = Reporter("payments-api", bootstrap_servers=DEFAULT_BOOTSTRAP, failures_topic=topics[0],
                   samples_topic=topics[1])
    rep.report_failure("a.b.c", jwt.ExpiredSignatureError("parent"))
    parent_child = rep._link.proc.pid if rep._link else None
    pid = os.fork()
    if pid == 0:  # a gunicorn --preload worker: the parent's child process is not its own
        code = 1
        try:
            rep.report_failure("a.b.c", jwt.ExpiredSignatureError("worker"))
            mine = rep._link.proc.pid if rep._link else None
            rep.close(timeout=15)
            code = 0 if mine not in (None, parent_child) and rep.counters()["sent"] == 1 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    rep.close(timeout=15)
    assert os.waitstatus_to_exitcode(status) == 0
    assert rep.counters() == {"sent": 1, "dropped": 0, "errors": 0, "sampled": 0, "samples_lost": 0}
    # Read until both arrive (a loaded machine's consumer can take more than a few seconds to fetch them).
    errors = sorted(json.loads(value)["reported_error"] for value in consume([topics[0]], expected=2)[topics[0]])
    assert errors == ["ExpiredSignatureError: parent", "ExpiredSignatureError: worker"]


# -- with the broker unreachable --------------------------------------------------------------

#: The child's producer waits this long for an unreachable broker. The tests bound the app's waits by a
#: quarter of it: what they catch is a wait for the bootstrap, not a slow request on a loaded machine (a
#: 0.5 s bound against the default 2 s bootstrap flaked at load 10).
BLOCKED = 30.0
STUCK_BOOTSTRAP = {"bootstrap_timeout_ms": int(BLOCKED * 1000), "max_block_ms": int(BLOCKED * 1000)}


def test_with_kafka_down_a_starlette_app_answers_at_once_and_counts_the_drops(jwks_url: str) -> None:  # noqa: F811
    now = datetime.now(UTC)
    token = CASES["expired"][0](now)
    client = jwt.PyJWKClient(jwks_url)
    rep = Reporter("payments-api", bootstrap_servers=f"127.0.0.1:{closed_port()}", jwks_client=client,
                   kafka_options=STUCK_BOOTSTRAP)
    app = starlette_app(rep, client)

    async def run() -> list[float]:
        latencies = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as http:
            for n in range(200):
                started = time.perf_counter()
                response = await http.get("/hello", headers={"Authorization": f"Bearer {token}"})
                latencies.append(time.perf_counter() - started)
                assert response.status_code == 401
                if n % 50 == 0:
                    await asyncio.sleep(0.5)  # spread over the start of the child's bootstrap
        return latencies

    latencies = asyncio.run(run())
    assert max(latencies) < BLOCKED / 4, max(latencies)  # never a wait for the bootstrap
    started = time.monotonic()
    rep.close(timeout=1)
    assert time.monotonic() - started < BLOCKED / 4  # SIGTERM, not the end of the bootstrap
    wait_until(lambda: rep.counters()["dropped"] == 200)
    assert rep.counters() == {"sent": 0, "dropped": 200, "errors": 0, "sampled": 0, "samples_lost": 0}


def test_with_kafka_down_a_wsgi_server_answers_at_once_and_counts_the_drops(jwks_url: str) -> None:  # noqa: F811
    now = datetime.now(UTC)
    client = jwt.PyJWKClient(jwks_url)
    rep = Reporter("payments-api", bootstrap_servers=f"127.0.0.1:{closed_port()}", jwks_client=client,
                   sample_rate=1.0, kafka_options=STUCK_BOOTSTRAP)
    tokens = {f"r{n}": CASES["audience"][0](now) for n in range(50)}
    with wsgi_server(ReporterWSGIMiddleware(wsgi_app(client), rep)) as base, httpx.Client(base_url=base) as http:
        latencies = []
        for rid, tok in tokens.items():
            started = time.perf_counter()
            assert http.get("/", headers={"Authorization": f"Bearer {tok}", "X-Request-ID": rid}).status_code == 401
            latencies.append(time.perf_counter() - started)
    assert max(latencies) < BLOCKED / 4, max(latencies)
    rep.close(timeout=1)
    wait_until(lambda: rep.counters()["dropped"] == 50)
    counts = rep.counters()
    # a report still queued at close is dropped before its sampling was decided
    assert counts["sent"] == counts["errors"] == counts["sampled"] == 0 and 1 <= counts["samples_lost"] <= 50


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
