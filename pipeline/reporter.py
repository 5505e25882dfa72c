"""Report JWT rejections from a Python service (PyJWT) to jwtriage, without slowing a request.

Import this module in your own service; it needs nothing beyond the standard library,
PyJWT's exception classes and, in its background thread only, kafka-python::

    from pipeline.reporter import Reporter, ReporterMiddleware

    reporter = Reporter("payments-api", bootstrap_servers="kafka:9092", sample_rate=0.01,
                        jwks_client=jwks_client)                   # your jwt.PyJWKClient, if any
    app.add_middleware(ReporterMiddleware, reporter=reporter)      # Starlette / FastAPI (ASGI)
    wsgi_app = ReporterWSGIMiddleware(wsgi_app, reporter)          # Flask, Django, any WSGI app

How a failure is known (the contract), either way:

1. **Let it escape.** A `jwt.PyJWTError` (`ExpiredSignatureError`, `InvalidAudienceError`,
   `PyJWKClientError` for an unknown kid, ...) raised by the app and not handled by it reaches
   the middleware, which reports it and answers `401` with `WWW-Authenticate: Bearer
   error="invalid_token"` (the exception's text is never sent to the client). With Starlette
   and FastAPI use `add_middleware`, so the middleware sits inside the 500 handler.
2. **Say it.** An app that answers the 401 itself calls `reporter.report_failure(request, exc)`
   (a Starlette/FastAPI `Request`, an ASGI scope, a WSGI environ, a Werkzeug request, or the
   token string) in its `except jwt.PyJWTError as exc:` branch; `report_failure(...)` at module
   level does the same through the reporter made by `configure(...)`.

Each failure becomes an `AuthFailureEvent` on the failures topic: `reported_error` is
`f"{type(exc).__name__}: {exc}"`, `service_jwks_fetched_at` is read from the `PyJWKClient`'s
own cache (PyJWT keeps a `time.monotonic()` stamp; nothing in PyJWT is changed),
`client_id` comes from the unverified token's `azp`/`client_id` or a header, `request_id`
from a header, and the token only as its `token_sha256`. A token whose hash falls under
`sample_rate` (`int(sha256[:8], 16) / 2**32 < rate`, so every service samples the same tokens)
also goes, raw, to the samples topic, at most once a minute per token; nothing else ever
holds the raw token (no log, no event).

The request path only reads a few headers and puts a tuple on a bounded queue (a few µs).
A daemon thread builds the records and produces them; it creates the Kafka producer itself,
lazily, with short timeouts. That thread and kafka-python's own take ~100 µs of CPU per
report, under the GIL: at a high rejection rate that shows in the app's p99 (bench/results.md).
A full queue or an unreachable broker drops the event and counts it (`counters()`); nothing
waits for Kafka. `close()` (also run at exit) flushes for a bounded time.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import json
import logging
import os
import queue
import re
import sys
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import jwt

log = logging.getLogger(__name__)

#: (topic, key, value) -> None; raises to count an error. Tests inject one instead of Kafka.
Transport = Callable[[str, bytes | None, bytes], None]

#: A token longer than this is hashed but never sampled, nor decoded for its client id.
MAX_TOKEN_CHARS = 16 * 1024
#: `reported_error` is cut to this many characters.
MAX_ERROR_CHARS = 1_000
#: Records handed to kafka-python and not yet acknowledged, at most (its buffer has no bound of
#: its own); with events under ~2 KB and samples under 16 KB, a few tens of MB at worst.
MAX_PENDING = 5_000
_JWT_SHAPED = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?")
_STOP = object()
#: The counters a record's outcome goes to: (acknowledged, never handed over, failed).
_EVENT = ("sent", "dropped", "errors")
_SAMPLE = ("sampled", "samples_lost", "samples_lost")
_Record = tuple[str, bytes | None, bytes, tuple[str, str, str]]


def token_sha256(token: str) -> str:
    """Hex SHA-256 of the compact token, as jwtriage joins a sample to its events."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def sampled(sha256_hex: str, rate: float) -> bool:
    """The same answer for the same token in every service: the hash, not a dice roll, decides."""
    return rate > 0 and int(sha256_hex[:8], 16) / 2**32 < rate


def pyjwk_client_fetched_at(client: Any) -> datetime | None:
    """When a `jwt.PyJWKClient` last fetched its JWK Set (its cache stamp, else its last fetch)."""
    stamp = None
    cache = getattr(client, "jwk_set_cache", None)
    held = getattr(cache, "jwk_set_with_timestamp", None)
    if held is not None:
        stamp = held.get_timestamp()
    if stamp is None:
        stamp = getattr(client, "_last_successful_fetch", None)  # PyJWT >= 2.10, set on every fetch
    if not isinstance(stamp, int | float):
        return None
    return datetime.fromtimestamp(time.time() - (time.monotonic() - stamp), UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _unverified_client_id(token: str) -> str | None:
    """`azp`, else `client_id`, from the payload as given (nothing verified; it is only a label)."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    value = claims.get("azp", claims.get("client_id"))
    return value[:200] if isinstance(value, str) else None


class Reporter:
    """Queues rejections on the request path; one background thread sends them to Kafka."""

    def __init__(
        self,
        service: str,
        *,
        bootstrap_servers: str | list[str] = "127.0.0.1:9092",
        failures_topic: str = "auth.failures",
        samples_topic: str = "auth.tokens.sampled",
        sample_rate: float = 0.0,
        jwks_client: Any = None,
        client_id_header: str = "x-client-id",
        request_id_header: str = "x-request-id",
        queue_size: int = 10_000,
        kafka_options: Mapping[str, Any] | None = None,
        transport: Transport | None = None,
        close_timeout: float = 2.0,
        resample_after_seconds: float = 60.0,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0 and 1, got {sample_rate}")
        self.service = service
        self.failures_topic, self.samples_topic = failures_topic, samples_topic
        self.sample_rate = sample_rate
        self.jwks_client = jwks_client
        self.client_id_header = client_id_header.lower()
        self.request_id_header = request_id_header.lower()
        self._wanted = {b"authorization": 0, self.client_id_header.encode(): 1, self.request_id_header.encode(): 2}
        self._wsgi_client = "HTTP_" + self.client_id_header.upper().replace("-", "_")
        self._wsgi_request = "HTTP_" + self.request_id_header.upper().replace("-", "_")
        self._queue_size = queue_size
        self._transport = transport
        self._kafka_options = dict(kafka_options or {})
        if isinstance(bootstrap_servers, str):
            bootstrap_servers = [s.strip() for s in bootstrap_servers.split(",") if s.strip()]
        self._kafka_options.setdefault("bootstrap_servers", bootstrap_servers)
        self.close_timeout = close_timeout
        self._resample_after = resample_after_seconds
        self._recent: OrderedDict[str, float] = OrderedDict()  # sha256 → when last sampled (worker only)
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(("sent", "dropped", "errors", "sampled", "samples_lost"), 0)
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._sender: _KafkaSender | None = None
        atexit.register(self.close)
        os.register_at_fork(after_in_child=self._after_fork)

    # -- the request path -------------------------------------------------------------------

    def report_failure(
        self,
        source: Any,
        exc: BaseException,
        *,
        client_id: str | None = None,
        request_id: str | None = None,
        jwks_fetched_at: datetime | None = None,
    ) -> bool:
        """Queue one rejection; True when queued, False when dropped (counted). Never raises."""
        try:
            token, header_client, header_request = self._read_source(source)
            fetched = jwks_fetched_at or (pyjwk_client_fetched_at(self.jwks_client) if self.jwks_client else None)
            item = (time.time(), token, f"{type(exc).__name__}: {exc}", fetched,
                    client_id or header_client, request_id or header_request)
        except Exception:  # a hostile request must not turn into a 500 here
            log.exception("jwtriage reporter: could not read the failed request")
            self._count("errors")
            return False
        if self._closed:
            self._count("dropped")
            return False
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._count("dropped")
            return False
        return True

    def _read_source(self, source: Any) -> tuple[str | None, str | None, str | None]:
        """(token, client-id header, request-id header) from whatever the app had at hand."""
        if type(source) is not dict:
            if isinstance(source, bytes):
                return source.decode("latin-1"), None, None
            if source is None or isinstance(source, str):
                return source, None, None
            source = getattr(source, "scope", None) or getattr(source, "environ", None)  # Starlette/Werkzeug
            if not isinstance(source, dict):
                return None, None, None
        if "headers" in source and "type" in source:  # an ASGI scope
            found: list[str | None] = [None, None, None]
            for name, value in source["headers"]:
                slot = self._wanted.get(name) if name.islower() else self._wanted.get(name.lower())
                if slot is not None:
                    found[slot] = value.decode("latin-1")
            return _bearer(found[0]), found[1], found[2]
        return (_bearer(source.get("HTTP_AUTHORIZATION")), source.get(self._wsgi_client),  # a WSGI environ
                source.get(self._wsgi_request))

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def counters(self) -> dict[str, int]:
        """Reports `sent` (acknowledged), `dropped` (never handed to Kafka: queue full, broker
        unreachable, closing) and `errors` (handed over, then failed); tokens `sampled`
        (acknowledged on the samples topic) and `samples_lost` (dropped or failed)."""
        with self._lock:
            return dict(self._counts)

    # -- the background thread --------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=f"jwtriage-reporter-{self.service}", daemon=True)
                thread.start()
                self._thread = thread

    def _after_fork(self) -> None:
        """A forked worker (gunicorn --preload) gets a fresh queue and thread, started on first use."""
        self._lock = threading.Lock()
        self._queue = queue.Queue(self._queue_size)
        self._thread, self._sender = None, None

    def _run(self) -> None:
        if self._transport is None:
            self._sender = _KafkaSender(self._kafka_options, self._count, self.service)
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            try:
                if self._sender is not None and not self._sender.ready():
                    self._count("dropped")  # the broker is away: not even the record is built (CPU, GIL)
                    continue
                self._send(*self._records(*item))
            except Exception:
                log.exception("jwtriage reporter: could not send a rejection")
                self._count("errors")

    def _records(self, wall: float, token: str | None, error: str, fetched: datetime | None,
                 client_id: str | None, request_id: str | None) -> tuple[bytes, bytes | None]:
        """The event (and the sample, when this token is sampled) as JSON bytes."""
        digest = token_sha256(token) if token else None
        if token:
            error = error.replace(token, "<token>")
            client_id = client_id or _unverified_client_id(token)
        event: dict[str, Any] = {
            "event_id": uuid.uuid4().hex,
            "ts": _rfc3339(datetime.fromtimestamp(wall, UTC)),
            "service": self.service,
            "token_sha256": digest,
            "reported_error": _JWT_SHAPED.sub("<token>", error)[:MAX_ERROR_CHARS],
            "service_jwks_fetched_at": _rfc3339(fetched) if fetched else None,
            "client_id": client_id,
            "request_id": request_id[:200] if request_id else None,
        }
        value = json.dumps({k: v for k, v in event.items() if v is not None}, separators=(",", ":")).encode()
        sample = None
        if token and digest and len(token) <= MAX_TOKEN_CHARS and sampled(digest, self.sample_rate):
            now = time.monotonic()
            last = self._recent.get(digest)
            if last is None or now - last >= self._resample_after:
                self._recent[digest] = now
                self._recent.move_to_end(digest)
                if len(self._recent) > 4096:
                    self._recent.popitem(last=False)
                sample = json.dumps({"token": token, "sampled_at": event["ts"], "service": self.service},
                                    separators=(",", ":")).encode()
        return value, sample

    def _send(self, event: bytes, sample: bytes | None) -> None:
        records: list[_Record] = [(self.failures_topic, self.service.encode(), event, _EVENT)]
        if sample is not None:
            records.append((self.samples_topic, None, sample, _SAMPLE))
        if self._transport is None:
            assert self._sender is not None
            self._sender.send(records)
            return
        for topic, key, value, (sent, _, errors) in records:
            try:
                self._transport(topic, key, value)
            except Exception:
                self._count(errors)
            else:
                self._count(sent)

    def close(self, timeout: float | None = None) -> None:
        """Stop taking reports, send what is queued, flush Kafka; waits at most `timeout` seconds."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        deadline = time.monotonic() + (self.close_timeout if timeout is None else timeout)
        thread = self._thread
        if thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
            thread.join(max(0.0, deadline - time.monotonic()))
        leftover = 0
        while True:
            try:
                leftover += self._queue.get_nowait() is not _STOP
            except queue.Empty:
                break
        self._count("dropped", leftover)
        if thread is not None and thread.is_alive():
            self._queue.put_nowait(_STOP)  # still busy (a broker timeout): it stops once free
        elif self._sender is not None:
            self._sender.close(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _bearer(header: str | None) -> str | None:
    if not header or header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None


class _KafkaSender:
    """The producer, made lazily in the worker; while the broker is unreachable, records are dropped."""

    def __init__(self, options: dict[str, Any], count: Callable[..., None], service: str) -> None:
        # linger 50 ms: kafka-python's sender thread costs ~170 µs per report at 5 ms, ~65 µs at 50 ms
        # (1,000 reports/s, bench/results.md); every µs of it is GIL time taken from the app.
        defaults = {"acks": 1, "linger_ms": 50, "bootstrap_timeout_ms": 2_000, "max_block_ms": 1_000,
                    "request_timeout_ms": 5_000, "delivery_timeout_ms": 30_000,
                    "reconnect_backoff_max_ms": 5_000, "client_id": f"jwtriage-reporter-{service}"}
        self.options = defaults | options
        self.count = count
        self.pending = 0  # handed to the producer, not yet acknowledged or failed (its buffer is unbounded)
        self.pending_lock = threading.Lock()
        self.producer: Any = None
        self.retry_at = 0.0
        self.backoff = 1.0

    def ready(self) -> bool:
        """A producer exists, or it is time to try making one again."""
        return self.producer is not None or time.monotonic() >= self.retry_at

    def _producer(self) -> Any:
        if self.producer is None and time.monotonic() >= self.retry_at:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # kafka-python 3.0 on Python 3.11
                    from kafka import KafkaProducer
                self.producer = KafkaProducer(**self.options)
                self.backoff = 1.0
                log.info("jwtriage reporter: connected to Kafka")
            except Exception as exc:  # NoBrokersAvailable, KafkaTimeoutError, a bad option (ValueError)
                self.retry_at = time.monotonic() + self.backoff
                self.backoff = min(self.backoff * 2, 30.0)
                why = "unknown option in kafka_options" if isinstance(exc, ValueError) else "unreachable"
                log.warning("jwtriage reporter: Kafka %s (%s); dropping reports for %.0f s",
                            why, type(exc).__name__, self.retry_at - time.monotonic())
        return self.producer

    def send(self, records: list[_Record]) -> None:
        producer = self._producer()
        for topic, key, value, (sent, dropped, errors) in records:
            if producer is None or self.pending >= MAX_PENDING:
                self.count(dropped)
                continue
            try:
                future = producer.send(topic, key=key, value=value)
            except Exception as exc:  # no metadata within max_block_ms, a record too large
                log.debug("jwtriage reporter: send failed: %s", type(exc).__name__)
                self.count(errors)
                continue
            with self.pending_lock:
                self.pending += 1
            future.add_callback(self._done, sent)
            future.add_errback(self._done, errors)

    def _done(self, name: str, _result: object) -> None:
        with self.pending_lock:
            self.pending -= 1
        self.count(name)

    def close(self, timeout: float) -> None:
        if self.producer is not None:
            try:
                self.producer.flush(timeout=timeout)
            except Exception as exc:
                log.warning("jwtriage reporter: flush incomplete (%s)", type(exc).__name__)
            self.producer.close(timeout=max(0.1, timeout))
            self.producer = None


# -- the middleware ---------------------------------------------------------------------------

_BODY = b'{"detail":"invalid token"}'
_CHALLENGE = b'Bearer error="invalid_token"'


class ReporterMiddleware:
    """ASGI: a `jwt.PyJWTError` escaping the app is reported and answered with a 401."""

    def __init__(self, app: Any, reporter: Reporter, catch: tuple[type[BaseException], ...] = (jwt.PyJWTError,)):
        self.app, self.reporter, self.catch = app, reporter, catch

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except self.catch as exc:
            self.reporter.report_failure(scope, exc)
            if started:  # too late for a 401: the server's error handling takes over
                raise
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode()),
                (b"www-authenticate", _CHALLENGE)]})
            await send({"type": "http.response.body", "body": _BODY})


class ReporterWSGIMiddleware:
    """WSGI: a `jwt.PyJWTError` raised by the app (before it returns its body) is reported and answered 401."""

    def __init__(self, app: Any, reporter: Reporter, catch: tuple[type[BaseException], ...] = (jwt.PyJWTError,)):
        self.app, self.reporter, self.catch = app, reporter, catch

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        try:
            result: Iterable[bytes] = self.app(environ, start_response)
            return result
        except self.catch as exc:
            self.reporter.report_failure(environ, exc)
            # exc_info: replaces headers not yet sent; re-raises if they were (PEP 3333)
            start_response("401 Unauthorized", [("Content-Type", "application/json"),
                                                ("Content-Length", str(len(_BODY))),
                                                ("WWW-Authenticate", _CHALLENGE.decode())], sys.exc_info())
            return [_BODY]


# -- one reporter per process, for a plain call -----------------------------------------------

_default: Reporter | None = None


def configure(service: str, **options: Any) -> Reporter:
    """Make the process's reporter (closing a previous one) for the module-level `report_failure`."""
    global _default
    if _default is not None:
        _default.close()
    _default = Reporter(service, **options)
    return _default


def report_failure(source: Any, exc: BaseException, **fields: Any) -> bool:
    """`Reporter.report_failure` on the reporter `configure` made; False (and a warning once) without one."""
    if _default is None:
        if not getattr(report_failure, "_warned", False):
            log.warning("jwtriage reporter: report_failure called before configure(); nothing sent")
            report_failure._warned = True  # type: ignore[attr-defined]
        return False
    return _default.report_failure(source, exc, **fields)
