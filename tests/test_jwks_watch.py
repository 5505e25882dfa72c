"""jwks-watch: change detection, caching headers, heartbeat, backoff, garbage, the unknown-kid rate
limit (on httpx.MockTransport with a fake clock), then the same against a real local HTTP server
that rotates keys, fails, stalls and serves garbage, the JSONL → `classify --jwks` path, and the
Kafka producer against the local broker; then a server that drips its headers (the whole-request
deadline, issuers polled concurrently, SIGTERM to the command) and OIDC discovery."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from pipeline.cli import main
from pipeline.config import IssuerConfig
from pipeline.io.files import JsonlSnapshotSink
from pipeline.io.memory import ListSnapshotSink
from pipeline.jwks_watcher import JwksWatcher, WatchSettings
from pipeline.models import JwksSnapshot

ISS = "https://login.acme.test"
URI = "https://login.acme.test/.well-known/jwks.json"
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def make_key(kid: str) -> tuple[ec.EllipticCurvePrivateKey, dict[str, Any]]:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return private, {**jwk, "kid": kid, "use": "sig", "alg": "ES256"}


KEY_A = make_key("key-a")
KEY_B = make_key("key-b")
KEY_C = make_key("key-c")


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


class FakeIdp:
    """The JWKS endpoint as a MockTransport handler: programmable answers, every request recorded."""

    def __init__(self, keys: list[dict[str, Any]], max_age: int | None = None, etag: bool = True) -> None:
        self.keys = keys
        self.max_age = max_age
        self.etag = etag
        self.requests: list[httpx.Request] = []
        self.next: list[Callable[[httpx.Request], httpx.Response]] = []  # one-off answers, in order

    def body(self) -> bytes:
        return json.dumps({"keys": self.keys}).encode()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.next:
            return self.next.pop(0)(request)
        body = self.body()
        headers = {"content-type": "application/json"}
        tag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if self.etag:
            headers["etag"] = tag
        if self.max_age is not None:
            headers["cache-control"] = f"public, max-age={self.max_age}"
        if self.etag and request.headers.get("if-none-match") == tag:
            return httpx.Response(304, headers=headers)
        return httpx.Response(200, headers=headers, content=body)


def issuer(name: str = "corp", uri: str = URI, iss: str = ISS) -> IssuerConfig:
    return IssuerConfig(name=name, issuer=iss, jwks_uri=uri, algorithms=("ES256",))


def watcher(
    idp: FakeIdp, clock: FakeClock, sink: ListSnapshotSink | None = None, **settings: Any
) -> tuple[JwksWatcher, ListSnapshotSink]:
    sink = sink if sink is not None else ListSnapshotSink()
    merged = {"heartbeat": 86_400.0, **settings}
    w = JwksWatcher(
        [issuer()],
        sink,
        WatchSettings(**merged),
        transport=httpx.MockTransport(idp),
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(1),
    )
    return w, sink


def answer(status: int = 200, body: bytes = b"", **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, content=body, headers=headers)


# -- change detection, caching, heartbeat --------------------------------------------------


def test_publishes_the_first_set_then_only_changes() -> None:
    idp, clock = FakeIdp([KEY_A[1]]), FakeClock()
    idp.etag = False  # plain 200s: the change is found by comparing the sets
    w, sink = watcher(idp, clock)
    first = w.poll_all()[0]
    assert (first.outcome, first.published, first.keys) == ("changed", True, 1)
    clock.advance(300)
    again = w.poll_all()[0]
    assert (again.outcome, again.published) == ("unchanged", False)
    idp.keys = [KEY_A[1], KEY_B[1]]  # rotation: the new key is published beside the old one
    clock.advance(300)
    assert w.poll_all()[0].published
    idp.keys = [KEY_B[1], KEY_A[1]]  # the same set in another order is no change
    clock.advance(300)
    assert not w.poll_all()[0].published
    assert [len(s.jwks["keys"]) for s in sink.snapshots] == [1, 2]
    snapshot = sink.snapshots[1]
    assert snapshot.issuer == ISS  # the iss URL, not the config's name
    assert snapshot.fetched_at == T0 + timedelta(seconds=600)
    assert snapshot.fetched_at.utcoffset() == timedelta(0)
    assert json.loads(snapshot.model_dump_json())["fetched_at"].endswith("Z")
    w.close()


def test_etag_gives_304_and_heartbeat_republishes_the_confirmed_set() -> None:
    idp, clock = FakeIdp([KEY_A[1]]), FakeClock()
    w, sink = watcher(idp, clock, heartbeat=900.0, min_interval=10.0, interval=300.0)
    assert w.poll_all()[0].published
    clock.advance(300)
    result = w.poll_all()[0]
    assert result.outcome == "not_modified" and not result.published
    assert "if-none-match" not in idp.requests[0].headers
    assert idp.requests[1].headers["if-none-match"].startswith('"')
    clock.advance(300)
    assert not w.poll_all()[0].published  # 600 s since the last publish: no heartbeat yet
    clock.advance(300)
    beat = w.poll_all()[0]
    assert beat.outcome == "not_modified" and beat.published  # 900 s: heartbeat, with the 304's time
    assert [s.fetched_at for s in sink.snapshots] == [T0, T0 + timedelta(seconds=900)]
    assert sink.snapshots[0].jwks == sink.snapshots[1].jwks
    w.close()


def test_heartbeat_only_follows_a_successful_fetch() -> None:
    idp, clock = FakeIdp([KEY_A[1]]), FakeClock()
    w, sink = watcher(idp, clock, heartbeat=300.0)
    w.poll_all()
    for _ in range(5):
        clock.advance(400)
        idp.next.append(answer(503))
        assert not w.poll_all()[0].published  # a failed fetch confirms nothing: no heartbeat
    assert len(sink.snapshots) == 1
    clock.advance(10)
    assert w.poll_all()[0].published
    assert sink.snapshots[-1].fetched_at == clock.now
    w.close()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 300.0),  # no freshness stated: the default interval
        ({"cache-control": "max-age=120"}, 120.0),
        ({"cache-control": "public, max-age=120", "age": "100"}, 30.0),  # 20 s left, clamped to min_interval
        ({"cache-control": "max-age=5"}, 30.0),
        ({"cache-control": "max-age=999999"}, 3600.0),  # bounded by max_interval
        ({"cache-control": "no-store"}, 30.0),
        ({"cache-control": "no-cache, max-age=600"}, 30.0),
        ({"expires": "Mon, 23 Nov 2026 09:10:00 GMT", "date": "Mon, 23 Nov 2026 09:00:00 GMT"}, 600.0),
        ({"expires": "garbage"}, 30.0),
    ],
)
def test_poll_interval_follows_cache_headers(headers: dict[str, str], expected: float) -> None:
    idp, clock = FakeIdp([KEY_A[1]]), FakeClock()
    idp.next.append(answer(200, idp.body(), **headers))
    w, _ = watcher(idp, clock)
    assert w.poll_all()[0].next_in == expected
    assert w.seconds_until_next() == expected
    w.close()


def test_heartbeat_shortens_a_long_max_age() -> None:
    idp, clock = FakeIdp([KEY_A[1]], max_age=3600), FakeClock()
    w, _ = watcher(idp, clock, heartbeat=600.0)
    assert w.poll_all()[0].next_in == 600.0
    w.close()


# -- failures: keep the last good set, one log line, backoff --------------------------------

HUGE = json.dumps({"keys": [KEY_A[1]], "pad": "x" * 2_000_000}).encode()

FAILURES: list[tuple[str, Callable[[httpx.Request], httpx.Response], str]] = [
    ("http_500", answer(500, b"oops"), "HTTP 500"),
    ("http_404", answer(404), "HTTP 404"),
    ("html", answer(200, b"<html>maintenance</html>", **{"content-type": "text/html"}), "not JSON"),
    ("truncated", answer(200, b'{"keys": [{"kty": "EC"'), "not JSON"),
    ("not_a_set", answer(200, b'{"jwks": []}'), "no 'keys' list"),
    ("keys_not_list", answer(200, b'{"keys": {"kty": "EC"}}'), "no 'keys' list"),
    ("json_array", answer(200, b"[1, 2]"), "no 'keys' list"),
    ("empty_set", answer(200, b'{"keys": []}'), "no usable signing key"),
    ("junk_keys", answer(200, b'{"keys": [{"kty": "RSA", "n": 1}, "x"]}'), "no usable signing key"),
    ("oversized_declared", answer(200, HUGE), "over the 1,048,576-byte cap"),
    (
        "oversized_streamed",
        lambda request: httpx.Response(200, content=iter([HUGE[i : i + 65536] for i in range(0, len(HUGE), 65536)])),
        "over the 1,048,576-byte cap",
    ),
    ("deep_json", answer(200, b"[" * 100_000 + b"]" * 100_000), "not JSON"),
    ("not_utf8", answer(200, b"\xff\xfe\x00garbage"), "not JSON"),
]


def _raise(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


FAILURES += [
    ("timeout", _raise(httpx.ReadTimeout("read timed out")), "timed out after 10 s"),
    ("refused", _raise(httpx.ConnectError("connection refused")), "ConnectError"),
]


@pytest.mark.parametrize(("case", "response", "reason"), FAILURES, ids=[c[0] for c in FAILURES])
def test_a_bad_answer_keeps_the_last_good_set(
    case: str, response: Callable[[httpx.Request], httpx.Response], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    idp, clock = FakeIdp([KEY_A[1]]), FakeClock()
    w, sink = watcher(idp, clock)
    w.poll_all()
    good = w.current("corp")
    clock.advance(300)
    idp.next.append(response)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.jwks_watcher"):
        result = w.poll_all()[0]
    assert result.outcome == "failed" and not result.published
    assert result.error is not None and reason in result.error
    assert w.current("corp") == good and w.current(ISS) == good
    assert len(sink.snapshots) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines  # one clear line per failure
    assert lines[0].startswith("corp: fetching https://login.acme.test/.well-known/jwks.json failed (#1): ")
    assert "keeping the last good set (1 keys, confirmed 2026-11-23T09:00:00Z)" in lines[0]
    assert "retry in" in lines[0]
    # The next good answer publishes nothing new: the set never changed.
    clock.advance(result.next_in)
    assert w.poll_all()[0].outcome in {"unchanged", "not_modified"}
    assert len(sink.snapshots) == 1
    w.close()


def test_backoff_is_exponential_with_jitter_up_to_a_cap_and_resets() -> None:
    idp, clock = FakeIdp([KEY_A[1]]), FakeClock()
    w, _ = watcher(idp, clock, backoff_base=5.0, backoff_cap=120.0)
    delays = []
    for _ in range(8):
        idp.next.append(answer(502))
        result = w.poll_all()[0]
        delays.append(result.next_in)
        clock.advance(result.next_in)
    ceilings = [5, 10, 20, 40, 80, 120, 120, 120]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling * 0.5 <= delay <= ceiling
    assert len({round(d, 6) for d in delays[5:]}) == 3  # jittered, not lockstep
    assert w.poll_all()[0].outcome == "changed"
    idp.next.append(answer(502))
    assert w.poll_all()[0].next_in <= 5  # reset after a success


def test_run_loop_sleeps_until_the_next_due_poll() -> None:
    idp, clock = FakeIdp([KEY_A[1]], max_age=60), FakeClock()
    w, sink = watcher(idp, clock, min_interval=30.0)
    idp.next += [answer(500), answer(500)]
    w.run(max_rounds=6)
    assert len(idp.requests) == 6
    assert clock.slept[0] <= 5 and clock.slept[1] <= 10  # backing off after two 500s
    assert clock.slept[2:] == [60.0, 60.0, 60.0]  # then on max-age
    assert len(sink.snapshots) == 1
    w.close()


def test_redirects_stay_on_the_same_host_and_are_limited() -> None:
    idp, clock = FakeIdp([KEY_A[1]]), FakeClock()
    w, _ = watcher(idp, clock)
    idp.next.append(answer(302, location="/jwks-v2.json"))
    assert w.poll_all()[0].outcome == "changed"
    assert str(idp.requests[-1].url) == "https://login.acme.test/jwks-v2.json"
    idp.next.append(answer(301, location="https://evil.test/jwks.json"))
    clock.advance(300)
    refused = w.poll_all()[0]
    assert refused.outcome == "failed" and "redirect to another host" in (refused.error or "")
    idp.next.append(answer(302, location="http://login.acme.test/jwks.json"))  # a downgrade is another origin
    clock.advance(300)
    assert w.poll_all()[0].outcome == "failed"
    idp.next += [answer(302, location=f"/hop{i}") for i in range(4)]
    clock.advance(300)
    looped = w.poll_all()[0]
    assert "more than 3 redirects" in (looped.error or "")
    assert not any(r.url.host == "evil.test" for r in idp.requests)
    w.close()


def test_private_key_material_is_never_forwarded(caplog: pytest.LogCaptureFixture) -> None:
    private_jwk = ECAlgorithm.to_jwk(KEY_B[0], as_dict=True) | {"kid": "oops"}
    idp, clock = FakeIdp([KEY_A[1], private_jwk, {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]), FakeClock()
    w, sink = watcher(idp, clock)
    with caplog.at_level(logging.ERROR, logger="pipeline.jwks_watcher"):
        assert w.poll_all()[0].published
    assert [k["kid"] for k in sink.snapshots[0].jwks["keys"]] == ["key-a"]
    assert "private" not in sink.snapshots[0].model_dump_json() and '"d"' not in sink.snapshots[0].model_dump_json()
    assert sum("private key material" in r.getMessage() for r in caplog.records) == 2
    idp.keys = [private_jwk]
    clock.advance(300)
    assert w.poll_all()[0].outcome == "failed"  # nothing usable left: keep the last good set
    w.close()


def test_junk_beside_good_keys_is_passed_on_as_published() -> None:
    idp, clock = FakeIdp([KEY_A[1], "junk", 5, {"kty": "EC", "use": "enc", "kid": 7}]), FakeClock()
    w, sink = watcher(idp, clock)
    result = w.poll_all()[0]
    assert result.published and result.keys == 4  # the consumer's timeline skips what it cannot use
    assert sink.snapshots[0].jwks["keys"][1:3] == ["junk", 5]
    assert not w.refresh("corp", "key-a")  # its kid is known
    w.close()


def test_a_sink_failure_is_retried_on_the_next_poll() -> None:
    idp, clock = FakeIdp([KEY_A[1]]), FakeClock()
    sink = ListSnapshotSink(fail=True)
    w, _ = watcher(idp, clock, sink=sink)
    result = w.poll_all()[0]
    assert result.outcome == "failed" and "cannot publish" in (result.error or "")
    assert w.current("corp") is not None
    sink.fail = False
    clock.advance(result.next_in)
    assert w.poll_all()[0].published
    assert len(sink.snapshots) == 1
    w.close()


# -- unknown-kid refresh: rate-limited --------------------------------------------------------


def test_a_flood_of_unknown_kids_costs_one_fetch_per_interval() -> None:
    idp, clock = FakeIdp([KEY_A[1]]), FakeClock()
    w, _sink = watcher(idp, clock, min_refresh_interval=30.0)
    w.poll_all()
    assert len(idp.requests) == 1
    fetched = sum(w.refresh("corp", f"made-up-{n}") for n in range(1_000))
    assert fetched == 0 and len(idp.requests) == 1  # the scheduled poll just happened
    clock.advance(30)
    fetched = sum(w.refresh(ISS, f"made-up-{n}") for n in range(1_000))
    assert fetched == 1 and len(idp.requests) == 2
    # 1,000 more spread over 100 s: at most one fetch per 30 s.
    for n in range(1_000):
        clock.advance(0.1)
        w.refresh("corp", f"flood-{n}")
    assert len(idp.requests) - 2 <= 4
    assert w.refreshes_suppressed >= 2_995
    w.close()


def test_refresh_finds_a_new_key_and_skips_known_kids_and_backoff() -> None:
    idp, clock = FakeIdp([KEY_A[1]]), FakeClock()
    w, sink = watcher(idp, clock, min_refresh_interval=10.0)
    w.poll_all()
    clock.advance(60)
    assert not w.refresh("corp", "key-a")  # known: no fetch
    idp.keys = [KEY_A[1], KEY_B[1]]
    assert w.refresh("corp", "key-b")
    assert [k["kid"] for k in sink.snapshots[-1].jwks["keys"]] == ["key-a", "key-b"]
    clock.advance(60)
    idp.next.append(answer(500))
    assert w.refresh("corp", "key-c")  # fetches, fails
    assert not w.refresh("corp", "key-c")  # within min_refresh_interval of the failed fetch
    with pytest.raises(KeyError):
        w.refresh("nobody", "x")
    w.close()


def test_refresh_during_backoff_does_not_fetch() -> None:
    idp, clock = FakeIdp([KEY_A[1]]), FakeClock()
    w, _ = watcher(idp, clock, min_refresh_interval=1.0, backoff_base=100.0, backoff_cap=100.0)
    idp.next.append(answer(500))
    delay = w.poll_all()[0].next_in
    assert delay >= 50
    clock.advance(20)
    assert not w.refresh("corp", "new")
    clock.advance(delay)
    assert w.refresh("corp", "new")
    w.close()


def test_refresh_is_safe_from_other_threads() -> None:
    idp, clock = FakeIdp([KEY_A[1]]), FakeClock()
    w, _ = watcher(idp, clock, min_refresh_interval=30.0)
    w.poll_all()
    clock.advance(31)
    threads = [threading.Thread(target=lambda: [w.refresh("corp", f"k{n}") for n in range(200)]) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(idp.requests) == 2
    w.close()


# -- the JSONL sink ------------------------------------------------------------------------


def test_jsonl_sink_appends_and_a_new_watcher_resumes_from_the_file(tmp_path: Path) -> None:
    out = tmp_path / "jwks.jsonl"
    idp, clock = FakeIdp([KEY_A[1]]), FakeClock()
    w = JwksWatcher(
        [issuer(), issuer("partner", "https://id.partner.test/jwks", "https://id.partner.test")],
        JsonlSnapshotSink(out),
        WatchSettings(heartbeat=600.0),
        transport=httpx.MockTransport(idp),
        clock=clock,
    )
    assert all(r.published for r in w.poll_all())
    w.close()
    lines = out.read_text().splitlines()
    assert len(lines) == 2
    assert {JwksSnapshot.model_validate_json(line).issuer for line in lines} == {ISS, "https://id.partner.test"}
    # A second process (cron with --once) starts from the file: an unchanged set is not republished...
    clock.advance(120)
    resumed = JwksWatcher(
        [issuer()],
        JsonlSnapshotSink(out),
        WatchSettings(heartbeat=600.0),
        transport=httpx.MockTransport(idp),
        clock=clock,
    )
    seeded = JsonlSnapshotSink(out).last_snapshots()
    resumed.close()
    resumed = JwksWatcher(
        [issuer()],
        JsonlSnapshotSink(out),
        WatchSettings(heartbeat=600.0),
        transport=httpx.MockTransport(idp),
        clock=clock,
        seed=seeded.values(),
    )
    assert not resumed.poll_all()[0].published
    clock.advance(600)
    assert resumed.poll_all()[0].published  # ...until the heartbeat is due
    resumed.close()
    assert len(out.read_text().splitlines()) == 3


def test_jsonl_last_snapshots_reads_from_the_end(tmp_path: Path) -> None:
    out = tmp_path / "jwks.jsonl"
    sink = JsonlSnapshotSink(out)
    for n in range(300):
        sink.publish(JwksSnapshot(issuer=ISS, fetched_at=T0 + timedelta(minutes=n), jwks={"keys": [KEY_A[1]]}))
    with out.open("a") as stream:
        stream.write("not json\n")
    latest = sink.last_snapshots(chunk=1024)
    assert latest[ISS].fetched_at == T0 + timedelta(minutes=299)
    assert JsonlSnapshotSink(tmp_path / "none.jsonl").last_snapshots() == {}


# -- a real HTTP server ---------------------------------------------------------------------


class Idp(BaseHTTPRequestHandler):
    """A JWKS endpoint on 127.0.0.1 whose behaviour the test switches: rotate, fail, stall, garbage."""

    server: IdpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server
        if self.path == "/.well-known/openid-configuration":  # OIDC discovery: this server is the issuer
            state.discovery_hits += 1
            base = f"http://127.0.0.1:{state.server_address[1]}"
            self._send(200, json.dumps({"issuer": base, "jwks_uri": state.url}).encode())
            return
        state.hits.append({k.lower(): v for k, v in self.headers.items()})
        mode = state.mode
        if mode == "stall":
            state.release.wait(5)
            mode = "ok"
        if mode == "500":
            self._send(500, b"internal error")
        elif mode == "garbage":
            self._send(200, b"\x00\x01<!doctype html> not a key set", content_type="text/html")
        elif mode == "huge":
            self._send(200, json.dumps({"keys": state.keys, "pad": "x" * 1_500_000}).encode())
        elif mode == "huge_unsized":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"keys": [], "pad": "')
            for _ in range(40):
                self.wfile.write(b"x" * 65536)
            self.wfile.write(b'"}')
            self.close_connection = True
        else:
            body = json.dumps({"keys": state.keys}).encode()
            tag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if self.headers.get("If-None-Match") == tag:
                self.send_response(304)
                self.send_header("ETag", tag)
                self.send_header("Cache-Control", f"max-age={state.max_age}")
                self.end_headers()
                return
            self._send(200, body, etag=tag)

    def _send(self, status: int, body: bytes, content_type: str = "application/json", etag: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", f"max-age={self.server.max_age}")
        if etag:
            self.send_header("ETag", etag)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


class IdpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Idp)
        self.keys: list[dict[str, Any]] = [KEY_A[1]]
        self.mode = "ok"
        self.max_age = 120
        self.hits: list[dict[str, str]] = []
        self.discovery_hits = 0
        self.release = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (the timeout test) is expected

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/.well-known/jwks.json"


@pytest.fixture
def idp_server() -> Iterator[IdpServer]:
    server = IdpServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_against_a_real_server_that_rotates_fails_stalls_and_serves_garbage(
    idp_server: IdpServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    sink = ListSnapshotSink()
    w = JwksWatcher(
        [issuer(uri=idp_server.url)],
        sink,
        WatchSettings(timeout=0.5, heartbeat=86_400.0),
        clock=clock,
        rng=random.Random(3),
    )
    try:
        first = w.poll_all()[0]
        assert (first.outcome, first.published, first.next_in) == ("changed", True, 120.0)  # max-age honoured

        clock.advance(120)
        assert w.poll_all()[0].outcome == "not_modified"
        assert idp_server.hits[-1]["if-none-match"].startswith('"')

        idp_server.keys = [KEY_A[1], KEY_B[1]]  # rotation step 1: publish the next key
        clock.advance(120)
        assert w.poll_all()[0].published

        with caplog.at_level(logging.WARNING, logger="pipeline.jwks_watcher"):
            for mode, reason in (
                ("500", "HTTP 500"),
                ("garbage", "not JSON"),
                ("huge", "over the 1,048,576-byte cap"),
                ("huge_unsized", "over the 1,048,576-byte cap"),
                ("stall", "timed out after 0.5 s"),
            ):
                idp_server.mode = mode
                clock.advance(600)
                started = time.monotonic()
                result = w.poll_all()[0]
                assert result.outcome == "failed" and reason in (result.error or ""), (mode, result)
                assert time.monotonic() - started < 3
                assert [k["kid"] for k in w.current("corp")["keys"]] == ["key-a", "key-b"]  # type: ignore[index]
        assert len(caplog.records) == 5
        assert all("keeping the last good set (2 keys" in r.getMessage() for r in caplog.records)
        assert len(sink.snapshots) == 2

        idp_server.release.set()
        idp_server.mode = "ok"
        idp_server.keys = [KEY_B[1], KEY_C[1]]  # rotation step 2: retire key-a, publish key-c
        clock.advance(600)
        recovered = w.poll_all()[0]
        assert recovered.outcome == "changed" and recovered.published
        assert [[k["kid"] for k in s.jwks["keys"]] for s in sink.snapshots] == [
            ["key-a"],
            ["key-a", "key-b"],
            ["key-b", "key-c"],
        ]
    finally:
        w.close()


def test_connection_refused_is_a_failure_not_a_crash() -> None:
    server = IdpServer()
    url = server.url
    server.server_close()  # nothing listens there any more
    clock = FakeClock()
    w = JwksWatcher([issuer(uri=url)], ListSnapshotSink(), WatchSettings(timeout=1.0), clock=clock)
    try:
        result = w.poll_all()[0]
        assert result.outcome == "failed" and "ConnectError" in (result.error or "")
    finally:
        w.close()


# -- the command: JSONL that `classify --jwks` reads -----------------------------------------


def _config(tmp_path: Path, jwks_uri: str, extra: str = "") -> Path:
    path = tmp_path / "jwtriage.toml"
    path.write_text(
        f"""
[[issuers]]
name = "corp"
issuer = "{ISS}"
jwks_uri = "{jwks_uri}"
algorithms = ["ES256"]

[[services]]
name = "payments-api"
issuers = ["corp"]
audience = "api://payments"
{extra}
""",
        encoding="utf-8",
    )
    return path


def test_cli_once_writes_jsonl_that_classify_reads(
    idp_server: IdpServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, out = _config(tmp_path, idp_server.url), tmp_path / "jwks.jsonl"
    assert main(["jwks-watch", "--config", str(config), "--once", "--out", str(out)]) == 0
    assert capsys.readouterr().out == "corp: 1 key(s), changed, published\n"
    idp_server.keys = [KEY_A[1], KEY_B[1]]
    assert main(["jwks-watch", "--config", str(config), "--once", "--out", str(out)]) == 0
    assert "2 key(s), changed, published" in capsys.readouterr().out
    assert main(["jwks-watch", "--config", str(config), "--once", "--out", str(out)]) == 0
    assert capsys.readouterr().out == "corp: 2 key(s), unchanged, not published\n"
    snapshots = [JwksSnapshot.model_validate_json(line) for line in out.read_text().splitlines()]
    assert len(snapshots) == 2

    # A token signed with key-b, rejected a minute after the watcher saw key-b, judged from the file.
    when = snapshots[1].fetched_at + timedelta(minutes=1)
    token = jwt.encode(
        {"iss": ISS, "aud": "api://payments", "sub": "u1", "iat": int(when.timestamp()) - 60,
         "exp": int(when.timestamp()) + 600},
        KEY_B[0],
        algorithm="ES256",
        headers={"kid": "key-b"},
    )  # fmt: skip
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps({"event_id": "e1", "ts": when.isoformat(), "service": "payments-api", "token": token}) + "\n"
        + json.dumps({"event_id": "e2", "ts": when.isoformat(), "service": "payments-api", "token": token,
                      "service_jwks_fetched_at": when.isoformat()}) + "\n"
    )  # fmt: skip
    assert main(["classify", "--config", str(config), "--jwks", str(out), str(events)]) == 0
    young, fresh = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    # key-b appeared in the second snapshot: a service that does not say when it fetched its JWKS
    # may still hold the first one (stale_jwks); one that fetched after key-b appeared has no excuse.
    assert young["cause"] == "stale_jwks" and young["kid"] == "key-b"
    assert fresh["cause"] == "valid" and fresh["issuer"] == ISS


def test_cli_once_exits_1_when_an_issuer_fails(
    idp_server: IdpServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    idp_server.mode = "garbage"
    config, out = _config(tmp_path, idp_server.url), tmp_path / "jwks.jsonl"
    assert main(["jwks-watch", "--config", str(config), "--once", "--out", str(out)]) == 1
    assert capsys.readouterr().out.startswith("corp: failed: body is not JSON")
    warned = [r.getMessage() for r in caplog.records if "failed (#1)" in r.getMessage()]
    assert warned and all("not retried (one round)" in m and "retry in" not in m for m in warned)  # it exits
    assert not out.exists() or out.read_text() == ""


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/jwks")
    assert main(["jwks-watch", "--config", str(config), "--once", "--interval", "0", "--out", "x"]) == 2
    assert main(["jwks-watch", "--config", str(config), "--once", "--issuer", "nope", "--out", "x"]) == 2
    assert "--issuer nope" in capsys.readouterr().err


def test_continuous_mode_stops_on_request(idp_server: IdpServer) -> None:
    sink = ListSnapshotSink()
    w = JwksWatcher([issuer(uri=idp_server.url)], sink, WatchSettings(min_interval=0.05, heartbeat=3600.0))
    idp_server.max_age = 0
    thread = threading.Thread(target=w.run)
    thread.start()
    deadline = time.monotonic() + 5
    while len(idp_server.hits) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    w.stop()
    thread.join(5)
    w.close()
    assert not thread.is_alive()
    assert len(idp_server.hits) >= 3 and len(sink.snapshots) == 1


# -- Kafka --------------------------------------------------------------------------------


@pytest.mark.kafka
def test_cli_publishes_to_kafka_keyed_by_issuer(
    idp_server: IdpServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.kafka_helpers import DEFAULT_BOOTSTRAP, KafkaAdminClient, KafkaConsumer, unique_topic, wait_for_broker

    wait_for_broker(DEFAULT_BOOTSTRAP, timeout=60)
    topic = unique_topic("auth.jwks")
    config = _config(tmp_path, idp_server.url, f'\n[kafka]\nbootstrap_servers = "{DEFAULT_BOOTSTRAP}"\n'
                     f'jwks_topic = "{topic}"\n')  # fmt: skip
    assert main(["jwks-watch", "--config", str(config), "--once"]) == 0
    idp_server.keys = [KEY_A[1], KEY_B[1]]
    assert main(["jwks-watch", "--config", str(config), "--once"]) == 0
    assert capsys.readouterr().out.count("published") == 2

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=DEFAULT_BOOTSTRAP,
        group_id=f"{topic}-test",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    received = []
    try:
        deadline = time.monotonic() + 20
        while len(received) < 2 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend(records)
    finally:
        consumer.close()
    admin = KafkaAdminClient(bootstrap_servers=DEFAULT_BOOTSTRAP, client_id="test-jwks-watch")
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()
    assert len(received) == 2
    assert {r.key for r in received} == {ISS.encode()}
    assert len({r.partition for r in received}) == 1  # keyed by issuer: one partition, in order
    snapshots = sorted((JwksSnapshot.model_validate_json(r.value) for r in received), key=lambda s: s.fetched_at)
    assert [len(s.jwks["keys"]) for s in snapshots] == [1, 2]


def test_log_line_format_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    idp, clock = FakeIdp([KEY_A[1]]), FakeClock()
    w, _ = watcher(idp, clock)
    idp.next.append(answer(200, b"\n\n<html>\nmulti\nline\n</html>"))
    with caplog.at_level(logging.WARNING, logger="pipeline.jwks_watcher"):
        w.poll_all()
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    assert "no good set yet" in caplog.records[0].getMessage()
    w.close()


# -- a server that drips its headers: the whole-request deadline, concurrency, SIGTERM -----------


class DripServer:
    """Answers every request on 127.0.0.1 by sending its response headers one byte every `every` s, forever."""

    HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"z" * 4096 + b"\r\n\r\n"

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.closing = threading.Event()
        self.connections = 0
        self.sent = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/.well-known/jwks.json"

    def _accept(self) -> None:
        self.listener.settimeout(0.05)  # a closed listener does not wake a blocked accept()
        while not self.closing.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            for byte in self.HEAD:
                conn.sendall(bytes([byte]))
                self.sent += 1
                if self.closing.wait(self.every):
                    return

    def close(self) -> None:
        self.closing.set()
        self._thread.join(5)
        self.listener.close()


@pytest.fixture
def drip() -> Iterator[DripServer]:
    server = DripServer()
    try:
        yield server
    finally:
        server.close()


def test_headers_dripped_byte_by_byte_hit_the_whole_request_deadline(drip: DripServer) -> None:
    w = JwksWatcher([issuer(uri=drip.url)], ListSnapshotSink(), WatchSettings(timeout=3.0), rng=random.Random(1))
    try:
        started = time.monotonic()
        result = w.poll_all()[0]
        took = time.monotonic() - started
    finally:
        w.close()
    # Each byte comes within the 3 s per-read timeout, so only a deadline over the whole request ends it.
    assert result.outcome == "failed" and result.error == "timed out after 3 s", result
    assert 2.5 < took < 4.5 and drip.sent >= 2


def test_a_dripping_issuer_does_not_delay_a_healthy_one(drip: DripServer, idp_server: IdpServer) -> None:
    sink = ListSnapshotSink()
    w = JwksWatcher(
        [issuer("slow", drip.url, "https://slow.test"), issuer(uri=idp_server.url)],
        sink,
        WatchSettings(timeout=60.0, heartbeat=3600.0),
    )
    thread = threading.Thread(target=w.run)
    started = time.monotonic()
    thread.start()
    try:
        while not sink.snapshots and time.monotonic() - started < 5:
            time.sleep(0.02)
        on_time = time.monotonic() - started
        assert [s.issuer for s in sink.snapshots] == [ISS]  # the healthy issuer, snapshotted on time...
        assert on_time < 1.5
        assert drip.connections == 1 and w.current("slow") is None  # ...while the slow one still drips
        time.sleep(0.3)
    finally:
        stopping = time.monotonic()
        w.stop()  # abandons the dripping fetch (60 s of deadline left)
        thread.join(5)
        w.close()
    assert not thread.is_alive() and time.monotonic() - stopping < 1.5

    # --once polls every issuer at once too: the healthy answer does not wait behind the stalled one.
    clock = FakeClock()
    once = JwksWatcher(
        [issuer("slow", drip.url, "https://slow.test"), issuer(uri=idp_server.url)],
        ListSnapshotSink(),
        WatchSettings(timeout=2.0),
        clock=clock,
    )
    try:
        started = time.monotonic()
        slow, healthy = once.poll_all()
        assert time.monotonic() - started < 3.5
        assert slow.error == "timed out after 2 s" and healthy.outcome == "changed"
    finally:
        once.close()


def test_sigterm_ends_the_command_while_a_fetch_drips(drip: DripServer, idp_server: IdpServer, tmp_path: Path) -> None:
    config = _config(tmp_path, idp_server.url, extra="")
    config.write_text(
        config.read_text() + f'\n[[issuers]]\nname = "slow"\nissuer = "https://slow.test"\njwks_uri = "{drip.url}"\n'
        'algorithms = ["ES256"]\n'
    )
    out = tmp_path / "jwks.jsonl"
    root, log_file = Path(__file__).resolve().parent.parent, tmp_path / "stderr.log"
    with log_file.open("wb") as stderr_sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "jwks-watch", "--config", str(config), "--out", str(out)],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            stdout=subprocess.DEVNULL,
            stderr=stderr_sink,
        )
    try:
        deadline = time.monotonic() + 20
        while not (out.exists() and out.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = out.read_text().splitlines() if out.exists() else []
        assert [JwksSnapshot.model_validate_json(line).issuer for line in lines] == [ISS]  # the healthy one
        while drip.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the slow issuer's fetch is now dripping (10 s deadline, far from over)
        assert process.poll() is None
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(5)
        assert time.monotonic() - sent < 5
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    stderr = log_file.read_text()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


# -- OIDC discovery ------------------------------------------------------------------------------


class Discovery:
    """An OpenID Provider on MockTransport: the configuration document, then the JWKS it names."""

    def __init__(self, base: str = "https://id.disco.test") -> None:
        self.base = base
        self.issuer = base
        self.jwks_uri = f"{base}/keys"
        self.config_answer: Callable[[httpx.Request], httpx.Response] | None = None
        self.idp = FakeIdp([KEY_A[1]])
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(str(request.url))
        if request.url.path == "/.well-known/openid-configuration":
            if self.config_answer is not None:
                return self.config_answer(request)
            return httpx.Response(200, json={"issuer": self.issuer, "jwks_uri": self.jwks_uri})
        return self.idp(request)


def discovering(disco: Discovery, clock: FakeClock, iss: str | None = None) -> tuple[JwksWatcher, ListSnapshotSink]:
    sink = ListSnapshotSink()
    config = IssuerConfig(name="disco", issuer=iss or disco.base, algorithms=("ES256",))
    w = JwksWatcher(
        [config],
        sink,
        WatchSettings(heartbeat=86_400.0),
        transport=httpx.MockTransport(disco),
        clock=clock,
        rng=random.Random(1),
    )
    return w, sink


def test_an_issuer_without_jwks_uri_is_found_by_discovery() -> None:
    disco, clock = Discovery(), FakeClock()
    w, sink = discovering(disco, clock, iss="https://id.disco.test/")
    disco.issuer = "https://id.disco.test/"  # the issuer's trailing slash is not doubled (Discovery 4)
    first = w.poll_all()[0]
    assert first.outcome == "changed" and first.published
    assert disco.paths == ["https://id.disco.test/.well-known/openid-configuration", "https://id.disco.test/keys"]
    assert sink.snapshots[0].issuer == "https://id.disco.test/"
    clock.advance(300)
    w.poll_all()
    assert disco.paths[-1] == "https://id.disco.test/keys" and len(disco.paths) == 3  # remembered...
    clock.advance(3600)
    w.poll_all()
    assert disco.paths[-2].endswith("/.well-known/openid-configuration")  # ...and looked up again hourly
    w.close()


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"issuer": "https://evil.test", "jwks_uri": "https://evil.test/keys"}, "names issuer 'https://evil.test'"),
        ({"jwks_uri": "https://id.disco.test/keys"}, "names issuer None"),
        ({"issuer": "https://id.disco.test"}, "has no jwks_uri"),
        ({"issuer": "https://id.disco.test", "jwks_uri": "http://id.disco.test/keys"}, "is not an https URL"),
        ({"issuer": "https://id.disco.test", "jwks_uri": "file:///etc/passwd"}, "is not an https URL"),
        (["not", "an", "object"], "not a JSON object"),
    ],
)
def test_a_discovery_document_that_does_not_fit_is_not_used(
    document: Any, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    disco, clock = Discovery(), FakeClock()
    w, sink = discovering(disco, clock)
    disco.config_answer = lambda request: httpx.Response(200, json=document)
    with caplog.at_level(logging.WARNING, logger="pipeline.jwks_watcher"):
        result = w.poll_all()[0]
    assert result.outcome == "failed" and reason in (result.error or ""), result
    assert (
        caplog.records[0]
        .getMessage()
        .startswith("disco: fetching https://id.disco.test/.well-known/openid-configuration failed (#1): ")
    )
    assert not sink.snapshots and not any(p.endswith("/keys") for p in disco.paths)
    disco.config_answer = None  # retried after the backoff, and fixed
    clock.advance(result.next_in)
    assert w.poll_all()[0].published
    w.close()


def test_discovery_follows_the_fetch_rules() -> None:
    disco, clock = Discovery(), FakeClock()
    w, _ = discovering(disco, clock)
    disco.config_answer = answer(302, location="https://evil.test/.well-known/openid-configuration")
    assert "redirect to another host" in (w.poll_all()[0].error or "")
    disco.config_answer = lambda request: httpx.Response(200, content=b'{"issuer": "' + b"x" * 2_000_000 + b'"}')
    clock.advance(600)
    assert "over the 1,048,576-byte cap" in (w.poll_all()[0].error or "")
    disco.config_answer = answer(404)
    clock.advance(600)
    assert "HTTP 404" in (w.poll_all()[0].error or "")
    assert not any("evil.test" in p for p in disco.paths)
    w.close()


def test_a_jwks_failure_looks_the_discovery_up_again() -> None:
    disco, clock = Discovery(), FakeClock()
    w, _ = discovering(disco, clock)
    w.poll_all()
    disco.idp.next.append(answer(500))
    clock.advance(300)
    assert w.poll_all()[0].outcome == "failed"
    disco.jwks_uri = f"{disco.base}/keys-v2"  # the provider moved its keys
    clock.advance(600)
    assert w.poll_all()[0].outcome in {"unchanged", "not_modified"}
    assert disco.paths[-2:] == [f"{disco.base}/.well-known/openid-configuration", f"{disco.base}/keys-v2"]
    w.close()


def test_cli_discovers_from_a_local_server(
    idp_server: IdpServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = idp_server.url.removesuffix("/.well-known/jwks.json")
    config = tmp_path / "jwtriage.toml"
    config.write_text(
        f'[[issuers]]\nname = "local"\nissuer = "{base}"\nalgorithms = ["ES256"]\n\n'
        '[[services]]\nname = "api"\nissuers = ["local"]\naudience = "api://x"\n'
    )
    out = tmp_path / "jwks.jsonl"
    assert main(["jwks-watch", "--config", str(config), "--once", "--out", str(out)]) == 0
    assert capsys.readouterr().out == "local: 1 key(s), changed, published\n"
    assert JwksSnapshot.model_validate_json(out.read_text()).issuer == base
    assert idp_server.discovery_hits == 1
