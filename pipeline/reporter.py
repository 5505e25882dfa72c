"""Report JWT rejections from a Python service (PyJWT) to jwtriage, without slowing a request.

Import this module in your own service; it needs nothing beyond the standard library,
PyJWT's exception classes and, in its child process only, kafka-python::

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

The request path only reads a few headers and hands a small tuple on: with Kafka, to a child
process (`pipeline.reporter_worker`, started on the first report, again in each forked worker)
by appending it to a list that a flusher thread sends every 20 ms as one message (no system
call on the request path); the child builds the records and owns the
Kafka producer, so kafka-python's ~110 µs of CPU per report never holds this interpreter's GIL
(bench/results.md). A test's `transport`, `in_process=True`, or `kafka_options` that cannot be
pickled keep the work in a daemon thread of this process instead. A full queue (`queue_size`
reports in hand) or an unreachable broker drops the event and counts it (`counters()`); nothing
waits for Kafka. `close()` (also run at exit) flushes for a bounded time, then stops the child.
The child runs under SCHED_IDLE (Linux), so it takes only CPU time the app leaves idle: in every
in-process run its p99 beat nice 10 (bench/results.md, "Reporter"). On a saturated machine it falls
behind and drops (counted) rather than take a core from requests; `child_idle=False` runs it at
nice `child_nice` instead, and where SCHED_IDLE is refused it stays at that nice level.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pickle
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import jwt

from pipeline.reporter_worker import (
    MAX_ERROR_CHARS,
    MAX_PENDING,
    MAX_TOKEN_CHARS,
    KafkaSender,
    ProcessLink,
    Record,
    RecordBuilder,
    rfc3339,
    sampled,
    token_sha256,
)

__all__ = ["MAX_ERROR_CHARS", "MAX_PENDING", "MAX_TOKEN_CHARS", "Reporter", "ReporterMiddleware",
           "ReporterWSGIMiddleware", "configure", "pyjwk_client_fetched_at", "report_failure", "sampled",
           "token_sha256"]

log = logging.getLogger(__name__)

#: (topic, key, value) -> None; raises to count an error. Tests inject one instead of Kafka.
Transport = Callable[[str, bytes | None, bytes], None]
_STOP = object()


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


class Reporter:
    """Hands rejections from the request path to a child process (or, for a test's transport, a thread)."""

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
        in_process: bool = False,
        child_nice: int = 10,
        child_idle: bool = True,
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
        self._child_nice = child_nice  # with child_idle=False: yields to the app, yet not starved in a storm
        self._child_idle = child_idle
        self._builder = RecordBuilder(service, failures_topic, samples_topic, sample_rate, resample_after_seconds)
        self._process = transport is None and not in_process and self._picklable(self._kafka_options)
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(("sent", "dropped", "errors", "sampled", "samples_lost"), 0)
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self._link: ProcessLink | None = None
        self._closed = False
        self._sender: KafkaSender | None = None
        atexit.register(self.close)
        os.register_at_fork(after_in_child=self._after_fork)

    @staticmethod
    def _picklable(options: dict[str, Any]) -> bool:
        """The child gets its options pickled; an SSLContext or a token provider object keeps Kafka here."""
        try:
            pickle.dumps(options)
        except Exception as exc:
            log.warning("jwtriage reporter: kafka_options cannot go to a child process (%s); producing in "
                        "a thread of this process instead (slower requests at high rejection rates)",
                        type(exc).__name__)
            return False
        return True

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
            read = self._read_source(source)
            fetched = jwks_fetched_at or (pyjwk_client_fetched_at(self.jwks_client) if self.jwks_client else None)
            item = (time.time(), read, f"{type(exc).__name__}: {exc}", rfc3339(fetched) if fetched else None,
                    client_id, request_id)
        except Exception:  # a hostile request must not turn into a 500 here
            log.exception("jwtriage reporter: could not read the failed request")
            self._count("errors")
            return False
        if self._closed:
            self._count("dropped")
            return False
        if self._process:
            link = self._link or self._start_child()
            if link is not None:
                if link.put(item):
                    return True
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

    def _read_source(self, source: Any) -> tuple[str | None, str | None, str | None] | list[Any]:
        """(token, client-id header, request-id header) from whatever the app had at hand; for an ASGI
        scope, its header list as it is, read off the request path by `finish` (the flusher's work)."""
        if type(source) is not dict:
            if isinstance(source, bytes):
                return source.decode("latin-1"), None, None
            if source is None or isinstance(source, str):
                return source, None, None
            source = getattr(source, "scope", None) or getattr(source, "environ", None)  # Starlette/Werkzeug
            if not isinstance(source, dict):
                return None, None, None
        if "headers" in source and "type" in source:  # an ASGI scope
            return list(source["headers"])  # a shallow copy: a later middleware may change the scope's list
        return (_bearer(source.get("HTTP_AUTHORIZATION")), source.get(self._wsgi_client),  # a WSGI environ
                source.get(self._wsgi_request))

    def _read_headers(self, headers: list[Any]) -> tuple[str | None, str | None, str | None]:
        """ASGI servers send lowercase names (the spec's "should"); a header list with other names is
        read one by one (the last of repeated headers wins either way)."""
        found: list[bytes | None] = [None, None, None]
        by_name = dict(headers)
        try:
            lowercase = b"".join(by_name).islower()
        except TypeError:  # a name that is not bytes: one by one, as below
            lowercase = False
        if lowercase:
            found = [by_name.get(name) for name in self._wanted]
        else:
            for name, value in headers:
                slot = self._wanted.get(name.lower() if isinstance(name, bytes) else name)
                if slot is not None:
                    found[slot] = value
        token, client, request = (None if v is None else v.decode("latin-1") for v in found)
        return _bearer(token), client, request

    def finish(self, item: tuple[Any, ...]) -> tuple[Any, ...]:
        """The report `RecordBuilder.records` takes: headers read, explicit ids before the headers' ones."""
        at, read, message, fetched, client_id, request_id = item
        if type(read) is list:
            read = self._read_headers(read)
        token, header_client, header_request = read
        return at, token, message, fetched, client_id or header_client, request_id or header_request

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def counters(self) -> dict[str, int]:
        """Reports `sent` (acknowledged), `dropped` (never handed to Kafka: queue full, broker
        unreachable, closing) and `errors` (handed over, then failed); tokens `sampled`
        (acknowledged on the samples topic) and `samples_lost` (dropped or failed)."""
        with self._lock:
            counts = dict(self._counts)
        if self._link is not None:
            for name, value in self._link.counters().items():
                counts[name] += value
        return counts

    # -- the child process, or the background thread ------------------------------------------

    def _start_child(self) -> ProcessLink | None:
        with self._lock:
            if self._link is None and self._process:
                config = {"service": self.service, "failures_topic": self.failures_topic,
                          "samples_topic": self.samples_topic, "sample_rate": self.sample_rate,
                          "resample_after": self._builder.resample_after, "kafka_options": self._kafka_options,
                          "log_level": log.getEffectiveLevel(), "nice": self._child_nice,
                          "idle": self._child_idle}
                try:
                    self._link = ProcessLink(config, self._queue_size, self.finish)
                except (OSError, ValueError) as exc:  # no fork/exec allowed, no /tmp, ...
                    log.warning("jwtriage reporter: no child process (%s); producing in a thread instead",
                                type(exc).__name__)
                    self._process = False
        return self._link

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=f"jwtriage-reporter-{self.service}", daemon=True)
                thread.start()
                self._thread = thread

    def _after_fork(self) -> None:
        """A forked worker (gunicorn --preload) gets its own child (or queue and thread), started on first use."""
        self._lock = threading.Lock()
        self._queue = queue.Queue(self._queue_size)
        self._thread, self._sender = None, None
        if self._link is not None:
            self._link.forget()
            self._link = None

    def _run(self) -> None:
        if self._transport is None:
            self._sender = KafkaSender(self._kafka_options, self._count, self.service)
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            try:
                records = self._builder.records(*self.finish(item))
                if self._sender is not None and not self._sender.ready():
                    for *_, (_, dropped, _) in records:  # the broker is away: drop without waiting for it
                        self._count(dropped)
                    continue
                self._send(records)
            except Exception:
                log.exception("jwtriage reporter: could not send a rejection")
                self._count("errors")

    def _send(self, records: list[Record]) -> None:
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
        """Stop taking reports, send what is queued, flush Kafka; waits at most `timeout` seconds
        (then, for the child, one more for SIGTERM; what it never handled is counted as dropped)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        deadline = time.monotonic() + (self.close_timeout if timeout is None else timeout)
        if self._link is not None:
            self._count("dropped", self._link.close(deadline))
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
