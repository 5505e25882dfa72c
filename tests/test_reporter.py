"""pipeline.reporter with an in-memory transport: the records, the sampling, the bounds, PyJWKClient's fetch time.

A function stands in for Kafka (httpx's MockTransport idea): it receives (topic, key, value).
The real ASGI/WSGI apps and the real broker are in tests/test_reporter_apps.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest

from pipeline import reporter as reporter_module
from pipeline.models import AuthFailureEvent, SampledToken
from pipeline.reporter import Reporter, pyjwk_client_fetched_at, sampled, token_sha256
from tests.world import AUDIENCE, CORP, DROP, good_claims, mint, public_jwk, rsa_key


class Recorder:
    """The in-memory transport: every (topic, key, value) the worker produced."""

    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.records: list[tuple[str, bytes | None, bytes]] = []
        self.gate = gate
        self.fail = fail

    def __call__(self, topic: str, key: bytes | None, value: bytes) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise RuntimeError("broker said no")
        self.records.append((topic, key, value))

    def events(self) -> list[AuthFailureEvent]:
        return [AuthFailureEvent.model_validate_json(v) for t, _, v in self.records if t == "auth.failures"]

    def samples(self) -> list[SampledToken]:
        return [SampledToken.model_validate_json(v) for t, _, v in self.records if t == "auth.tokens.sampled"]


def expired_token(**changes: Any) -> str:
    return mint("rsa-2", good_claims(datetime.now(UTC) - timedelta(hours=2), **changes))


def failure(token: str) -> jwt.PyJWTError:
    try:
        jwt.decode(token, rsa_key("rsa-2").public_key(), algorithms=["RS256"], audience=AUDIENCE, issuer=CORP)
    except jwt.PyJWTError as exc:
        return exc
    raise AssertionError("the token was valid")


def scope(token: str | None, *extra: tuple[bytes, bytes]) -> dict[str, Any]:
    headers = [(b"host", b"payments.acme.test"), *extra]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {"type": "http", "method": "GET", "path": "/", "headers": headers}


def test_an_asgi_failure_becomes_a_wire_event_without_the_token() -> None:
    token = expired_token()
    sink = Recorder()
    with Reporter("payments-api", transport=sink) as rep:
        before = datetime.now(UTC)
        assert rep.report_failure(scope(token, (b"X-Request-ID", b"req-7")), failure(token))
    (event,) = sink.events()
    assert event.service == "payments-api"
    assert event.reported_error == "ExpiredSignatureError: Signature has expired"
    assert event.token_sha256 == hashlib.sha256(token.encode()).hexdigest() == token_sha256(token)
    assert event.token is None
    assert event.client_id == "web-app"  # the unverified token's azp
    assert event.request_id == "req-7"
    assert before - timedelta(seconds=1) <= event.ts <= datetime.now(UTC)
    assert event.service_jwks_fetched_at is None  # no PyJWKClient given
    assert sink.records[0][1] == b"payments-api"  # keyed by service, as the simulator does
    assert not sink.samples()
    assert rep.counters() == {"sent": 1, "dropped": 0, "errors": 0, "sampled": 0, "samples_lost": 0}


def test_the_raw_token_never_reaches_the_failures_topic_even_inside_the_message() -> None:
    token = expired_token()
    other = expired_token(sub="someone-else")
    sink = Recorder()
    with Reporter("payments-api", transport=sink) as rep:
        rep.report_failure(token, jwt.DecodeError(f"could not read {token} (near {other[:60]}...)"))
    (_, _, value) = sink.records[0]
    text = value.decode()
    assert token not in text and other[:60] not in text and token.split(".")[1] not in text
    assert json.loads(text)["reported_error"].startswith("DecodeError: could not read <token> (near <token>")


def test_wsgi_environ_request_objects_and_plain_tokens_are_read_alike() -> None:
    token = expired_token(azp=DROP)
    environ = {"REQUEST_METHOD": "GET", "HTTP_AUTHORIZATION": f"bearer {token}", "HTTP_X_CLIENT_ID": "mobile",
               "HTTP_X_REQUEST_ID": "r-1"}

    class StarletteLikeRequest:
        def __init__(self, s: dict[str, Any]) -> None:
            self.scope = s

    sink = Recorder()
    with Reporter("payments-api", transport=sink) as rep:
        rep.report_failure(environ, failure(token))
        rep.report_failure(StarletteLikeRequest(scope(token, (b"x-client-id", b"cli"))), failure(token))
        rep.report_failure(token.encode(), failure(token), client_id="given", request_id="r-3")
        rep.report_failure(scope(None), jwt.DecodeError("Not enough segments"))
    first, second, third, fourth = sink.events()
    assert (first.client_id, first.request_id) == ("mobile", "r-1")  # no azp in the token: the header
    assert (second.client_id, second.request_id) == ("cli", None)
    assert (third.client_id, third.request_id) == ("given", "r-3")
    assert first.token_sha256 == second.token_sha256 == third.token_sha256 == token_sha256(token)
    assert fourth.token_sha256 is None and fourth.reported_error == "DecodeError: Not enough segments"


def test_sampling_is_decided_by_the_token_hash_the_same_in_every_service() -> None:
    tokens = [f"header.payload-{n}.signature" for n in range(400)]
    sinks = [Recorder(), Recorder()]
    reporters = [Reporter(name, transport=sink, sample_rate=0.25) for name, sink in
                 zip(("payments-api", "orders-api"), sinks, strict=True)]
    for rep in reporters:
        for token in tokens:
            rep.report_failure(token, jwt.InvalidSignatureError("Signature verification failed"))
        rep.close()
    picked = [{s.token for s in sink.samples()} for sink in sinks]
    assert picked[0] == picked[1]
    assert picked[0] == {t for t in tokens if int(token_sha256(t)[:8], 16) / 2**32 < 0.25}
    assert 60 < len(picked[0]) < 140  # about a quarter of 400
    (sample,) = [s for s in sinks[1].samples() if s.token == next(iter(picked[0]))]
    assert sample.service == "orders-api" and sample.sampled_at is not None
    assert reporters[0].counters()["sampled"] == len(picked[0])
    assert not sampled("0" * 64, 0.0) and sampled("f" * 64, 1.0)


def test_a_token_is_sampled_once_while_it_keeps_failing() -> None:
    sink = Recorder()
    with Reporter("payments-api", transport=sink, sample_rate=1.0) as rep:
        for _ in range(5):
            rep.report_failure("a.b.c", jwt.ExpiredSignatureError("Signature has expired"))
    assert len(sink.events()) == 5 and len(sink.samples()) == 1


def test_a_full_queue_drops_and_counts_without_waiting() -> None:
    gate = threading.Event()
    sink = Recorder(gate)
    rep = Reporter("payments-api", transport=sink, queue_size=5)
    exc = jwt.ExpiredSignatureError("Signature has expired")
    assert rep.report_failure("a.b.c", exc)
    deadline = time.monotonic() + 5
    while rep._queue.qsize() and time.monotonic() < deadline:  # the worker took the first and is stuck
        time.sleep(0.01)
    started = time.perf_counter()
    results = [rep.report_failure("a.b.c", exc) for _ in range(100)]
    elapsed = time.perf_counter() - started
    assert results.count(True) == 5 and results.count(False) == 95
    assert rep.counters()["dropped"] == 95
    assert elapsed < 5  # 100 calls, never waiting for the transport (stuck until the gate opens below)
    gate.set()
    rep.close()
    assert rep.counters() == {"sent": 6, "dropped": 95, "errors": 0, "sampled": 0, "samples_lost": 0}
    assert not rep.report_failure("a.b.c", exc)  # closed: dropped, counted
    assert rep.counters()["dropped"] == 96


def test_a_failing_transport_is_counted_never_raised() -> None:
    with Reporter("payments-api", transport=Recorder(fail=True), sample_rate=1.0) as rep:
        assert rep.report_failure("a.b.c", jwt.ExpiredSignatureError("Signature has expired"))
    assert rep.counters() == {"sent": 0, "dropped": 0, "errors": 1, "sampled": 0, "samples_lost": 1}


def test_close_waits_a_bounded_time_and_counts_what_it_could_not_send() -> None:
    gate = threading.Event()
    rep = Reporter("payments-api", transport=Recorder(gate), queue_size=50)
    for _ in range(20):
        rep.report_failure("a.b.c", jwt.ExpiredSignatureError("x"))
    started = time.monotonic()
    rep.close(timeout=0.3)
    assert time.monotonic() - started < 5  # the transport stays stuck until the gate opens below
    assert rep.counters()["dropped"] >= 18  # the stuck one may still go out when the gate opens
    gate.set()


def test_module_level_report_failure_uses_the_configured_reporter() -> None:
    assert not reporter_module.report_failure("a.b.c", jwt.ExpiredSignatureError("x"))  # nothing configured
    sink = Recorder()
    rep = reporter_module.configure("payments-api", transport=sink)
    try:
        assert reporter_module.report_failure("a.b.c", jwt.ExpiredSignatureError("Signature has expired"))
    finally:
        rep.close()
        reporter_module._default = None
    assert [e.reported_error for e in sink.events()] == ["ExpiredSignatureError: Signature has expired"]


# -- PyJWKClient's own fetch time -------------------------------------------------------------


@pytest.fixture
def jwks_url() -> Iterator[str]:
    """A JWKS endpoint on 127.0.0.1 holding rsa-2; counts its fetches."""
    body = json.dumps({"keys": [public_jwk(rsa_key("rsa-2"), "rsa-2")]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("cache_jwk_set", [True, False])
def test_the_pyjwkclient_fetch_time_is_read_from_its_cache(jwks_url: str, cache_jwk_set: bool) -> None:
    client = jwt.PyJWKClient(jwks_url, cache_jwk_set=cache_jwk_set)
    assert pyjwk_client_fetched_at(client) is None  # never fetched yet
    before = datetime.now(UTC)
    client.get_signing_key("rsa-2")
    after = datetime.now(UTC)
    time.sleep(0.3)  # the failure comes later than the fetch: the event must carry the fetch's time
    token = mint("rogue", good_claims(datetime.now(UTC)))
    try:
        client.get_signing_key_from_jwt(token)
    except jwt.PyJWKClientError as exc:
        error: jwt.PyJWTError = exc
    else:
        raise AssertionError("rogue is not in the JWKS")
    sink = Recorder()
    with Reporter("payments-api", transport=sink, jwks_client=client) as rep:
        rep.report_failure(token, error)
    (event,) = sink.events()
    assert event.reported_error == 'PyJWKClientError: Unable to find a signing key that matches: "rogue"'
    fetched = event.service_jwks_fetched_at
    assert fetched is not None
    if cache_jwk_set:  # the unknown kid was inside the refresh cooldown: no second fetch
        assert before - timedelta(milliseconds=50) <= fetched <= after + timedelta(milliseconds=50)
    else:  # no cache: PyJWT fetched again for the failing token
        assert fetched >= after + timedelta(milliseconds=250)
    assert fetched <= event.ts


def test_an_explicit_fetch_time_wins() -> None:
    sink = Recorder()
    when = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
    with Reporter("payments-api", transport=sink) as rep:
        rep.report_failure("a.b.c", jwt.ExpiredSignatureError("x"), jwks_fetched_at=when)
    assert sink.events()[0].service_jwks_fetched_at == when


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_worker_process_gets_its_own_thread() -> None:
    read, write = os.pipe()

    def to_pipe(topic: str, key: bytes | None, value: bytes) -> None:
        os.write(write, value + b"\n")

    rep = Reporter("payments-api", transport=to_pipe)
    rep.report_failure("a.b.c", jwt.ExpiredSignatureError("parent"))
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread does not exist here
        try:
            rep.report_failure("a.b.c", jwt.ExpiredSignatureError("child"))
            rep.close(timeout=5)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    rep.close()
    os.close(write)
    with os.fdopen(read, "rb") as lines:
        errors = sorted(json.loads(line)["reported_error"] for line in lines)
    assert errors == ["ExpiredSignatureError: child", "ExpiredSignatureError: parent"]


# -- Kafka in a child process (a closed port: no broker needed) ------------------------------


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_with_kafka_the_app_process_gets_a_child_and_only_a_flusher_thread_and_a_stuck_child_never_blocks_it() -> None:
    threads = threading.active_count()
    # The child's producer waits 30 s for the unreachable broker: the bounds below (5 s) catch a wait for
    # it, not a slow call on a loaded machine (0.5 s against the default 2 s bootstrap flaked at load 10).
    rep = Reporter("payments-api", bootstrap_servers=f"127.0.0.1:{closed_port()}", queue_size=5,
                   kafka_options={"bootstrap_timeout_ms": 30_000, "max_block_ms": 30_000})
    exc = jwt.ExpiredSignatureError("Signature has expired")
    started = time.perf_counter()
    results = [rep.report_failure("a.b.c", exc) for _ in range(100)]  # the child sits in its bootstrap
    elapsed = time.perf_counter() - started
    assert rep._link is not None and rep._link.proc.poll() is None  # a process of its own, alive
    added = [t.name for t in threading.enumerate()][threads:]
    assert added == ["jwtriage-reporter-link"]  # the app holds one thread: it sends batches, never Kafka
    assert results.count(True) == 5 and results.count(False) == 95
    assert elapsed < 5
    started = time.monotonic()
    rep.close(timeout=0.3)  # then SIGTERM: the child counts what it holds as dropped
    assert time.monotonic() - started < 5
    assert rep._link.proc.returncode is not None
    assert rep.counters() == {"sent": 0, "dropped": 100, "errors": 0, "sampled": 0, "samples_lost": 0}


@pytest.mark.parametrize("idle", [False, True, None])
def test_the_child_runs_at_a_lower_priority_than_the_app(idle: bool | None) -> None:
    options = {} if idle is None else {"child_idle": idle}
    rep = Reporter("payments-api", bootstrap_servers=f"127.0.0.1:{closed_port()}", **options)
    idle = idle is not False  # SCHED_IDLE unless asked otherwise
    try:
        rep.report_failure("a.b.c", jwt.ExpiredSignatureError("Signature has expired"))
        assert rep._link is not None
        pid = rep._link.proc.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the child lowers its own priority once started
            policy, nice = os.sched_getscheduler(pid), os.getpriority(os.PRIO_PROCESS, pid)
            if (policy == os.SCHED_IDLE) if idle else nice >= min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10):
                break
            time.sleep(0.05)
        assert os.sched_getscheduler(pid) == (os.SCHED_IDLE if idle else os.SCHED_OTHER)
        assert os.getpriority(os.PRIO_PROCESS, pid) >= min(19, os.getpriority(os.PRIO_PROCESS, 0) + (0 if idle else 10))
    finally:
        rep.close(timeout=0.3)


def test_kafka_options_a_child_cannot_receive_keep_the_producer_in_a_thread(caplog: pytest.LogCaptureFixture) -> None:
    with Reporter("payments-api", kafka_options={"sasl_oauth_token_provider": lambda: "x"}) as rep:
        assert not rep._process
    assert "cannot go to a child process" in caplog.text
    with Reporter("payments-api", in_process=True) as rep:
        assert not rep._process


class Cluster:
    """The two calls a partitioner makes of kafka-python's ClusterMetadata."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"auth.failures"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


def test_the_remembered_partition_is_the_default_partitioners_and_follows_a_new_partition_count() -> None:
    from kafka.partitioner import DefaultPartitioner

    from pipeline.reporter_worker import KeyedPartitioner

    default, keyed = DefaultPartitioner(), KeyedPartitioner(DefaultPartitioner())
    cluster = Cluster(6)
    keys = [f"service-{n}".encode() for n in range(200)]
    for _ in range(2):  # the second time from memory
        for key in keys:
            args = ("auth.failures", key, key, b"v", b"v", cluster)
            assert keyed.partition(*args) == default.partition(*args)
    assert len({keyed.partition("auth.failures", k, k, b"", b"", cluster) for k in keys}) == 6
    cluster.partitions = set(range(12))  # partitions added: the answer follows the new count
    for key in keys:
        args = ("auth.failures", key, key, b"v", b"v", cluster)
        assert keyed.partition(*args) == default.partition(*args)
    assert keyed.partition("auth.failures", None, None, b"v", b"v", cluster) in cluster.partitions  # no key


def test_a_message_orjson_refuses_is_still_reported_and_a_repeated_tokens_client_id_is_read_once() -> None:
    from pipeline.reporter_worker import RecordBuilder

    builder = RecordBuilder("payments-api", "auth.failures", "auth.tokens.sampled", 0.0, 300.0)
    token = mint("rsa-2", good_claims(datetime.now(UTC), azp="billing-ui"))
    for error in ("bad \udc80 byte", "Signature verification failed"):
        ((topic, key, value, _),) = builder.records(time.time(), token, error, None, None, None)
        event = AuthFailureEvent.model_validate_json(value)
        assert (topic, key, event.client_id) == ("auth.failures", b"payments-api", "billing-ui")
        assert event.reported_error == error.replace("\udc80", "?")
    assert list(builder.client_ids.values()) == ["billing-ui"]


def test_the_request_path_hands_reports_to_a_flusher_that_sends_them_in_batches() -> None:
    rep = Reporter("payments-api", bootstrap_servers=f"127.0.0.1:{closed_port()}")
    exc = jwt.ExpiredSignatureError("Signature has expired")
    assert rep.report_failure("a.b.c", exc)
    link = rep._link
    assert link is not None
    sends: list[int] = []
    real_send = link._send
    link._send = lambda chunk: (sends.append(len(chunk)), real_send(chunk))[1]  # type: ignore[method-assign]
    huge = "x" * (300 * 1024)  # more than the child reads in one message: dropped here, counted
    results = [rep.report_failure("a.b.c", exc) for _ in range(199)] + [rep.report_failure(huge, exc)]
    assert all(results)
    rep.close(timeout=3)
    assert sum(sends) in (199, 200)  # the first report may have gone before the wrapper: one batch each way
    assert len(sends) < 20  # batches, not a send per report
    assert link.dropped_here == 1 and link.slots[0] == 200  # the child received every other report
    counts = rep.counters()
    assert counts["sent"] == 0 and counts["dropped"] == 201 and counts["errors"] == 0


def test_headers_are_read_off_the_request_path_and_a_hostile_one_is_an_error_not_a_500() -> None:
    token = expired_token()
    request = scope(token, (b"x-request-id", b"req-9"))
    sink = Recorder()
    with Reporter("payments-api", transport=sink) as rep:
        assert rep.report_failure(request, failure(token))
        request["headers"].clear()  # a later middleware reusing the scope's list changes nothing reported
        assert rep.report_failure(scope(None, (b"x-request-id", 42)), jwt.DecodeError("Not enough segments"))  # type: ignore[arg-type]
    (event,) = sink.events()
    assert (event.request_id, event.token_sha256) == ("req-9", token_sha256(token))
    assert rep.counters()["errors"] == 1 and rep.counters()["sent"] == 1
    child = Reporter("payments-api", bootstrap_servers=f"127.0.0.1:{closed_port()}")
    assert child.report_failure(scope(None, (b"x-request-id", 42)), jwt.DecodeError("x"))  # type: ignore[arg-type]
    assert child.report_failure(scope(token), failure(token))
    child.close(timeout=3)
    assert child.counters() == {"sent": 0, "dropped": 1, "errors": 1, "sampled": 0, "samples_lost": 0}
