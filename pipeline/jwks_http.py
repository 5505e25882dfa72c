"""One bounded HTTP GET for the JWKS watcher: a whole-request deadline, same-host redirects, a size cap.

httpx's timeouts are per operation: a server that sends its response headers one byte every
2 s never trips a 10 s read timeout. Here every fetch runs under a `Deadline` (connect,
TLS, headers and body together):

- the network backend installed under httpx (`bounded_transport`) clamps every connect,
  read and write timeout to the time the fetch has left, and refuses to start one after it;
- a watchdog shuts the fetch's sockets down when the deadline passes or the fetch is
  cancelled (`Deadline.cancel`, from the watcher's `stop()`), which ends a read that is
  blocked inside OpenSSL too (a TLS handshake dripped byte by byte is bounded as well).

What stays unbounded is name resolution (`getaddrinfo` takes no timeout); the watcher polls
each issuer in its own thread, so a slow resolver stalls only that issuer.

Errors: `FetchError` (the reason, written for a person) is the only exception raised here.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from pipeline.errors import JwtriageError

_current = threading.local()  # .deadline: the Deadline of the fetch this thread is making


class FetchError(JwtriageError):
    """One fetch failed; the message is the reason, written for a person."""


class Deadline:
    """One fetch's time budget and the sockets it opened (a context manager, per thread)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = self.cancelled = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(seconds, self._trip, kwargs={"expired": True})
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            self._sockets.clear()
        _current.deadline = None

    @property
    def tripped(self) -> bool:
        return self.expired or self.cancelled or time.monotonic() >= self.at

    def cancel(self) -> None:
        """Abandon the fetch now (safe from any thread): its sockets are shut down."""
        self._trip(expired=False)

    def _trip(self, expired: bool) -> None:
        with self._lock:
            if self._done:
                return
            if expired:
                self.expired = True
            else:
                self.cancelled = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shutdown(sock)

    def watch(self, sock: Any) -> None:
        """Shut `sock` down if the deadline passes while the fetch uses it."""
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            if not (self.expired or self.cancelled or self._done):
                if sock not in self._sockets:
                    self._sockets.append(sock)
                return
        _shutdown(sock)

    def clamp(self, timeout: float | None, error: type[Exception], stream: Any = None) -> float | None:
        """`timeout`, cut to what the fetch has left; raises `error` when nothing is left."""
        if stream is not None:
            self.watch(stream.get_extra_info("socket"))
        left = self.at - time.monotonic()
        if left <= 0 or self.expired or self.cancelled:
            raise error(f"the whole-request deadline of {self.seconds:g} s has passed")
        return left if timeout is None else min(timeout, left)


def _shutdown(sock: socket.socket) -> None:
    # the plain socket's shutdown, also for an SSLSocket (its own would drop the SSL object mid-read)
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _clamp(timeout: float | None, error: type[Exception], stream: Any = None) -> float | None:
    deadline: Deadline | None = getattr(_current, "deadline", None)
    return timeout if deadline is None else deadline.clamp(timeout, error, stream)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout, self._stream))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _clamp(timeout, httpcore.WriteTimeout, self._stream))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        bounded = _clamp(timeout, httpcore.ConnectTimeout, self._stream)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sync backend, with every operation bounded by the calling thread's `Deadline`."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _clamp(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
        _clamp(None, httpcore.ConnectTimeout, stream)  # watched from now on (or shut, if already too late)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, _clamp(timeout, httpcore.ConnectTimeout), socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bounded_client(timeout: float, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An httpx client whose real transports (direct and proxies from the environment) honour `Deadline`.

    httpx does not take a network backend, so the one of each transport's httpcore pool is
    replaced before its first connection (`_pool._network_backend`; `test_jwks_watch.py`
    fails if a new httpcore moves it). Connections are not kept alive: polls are minutes apart.
    `transport` (a MockTransport in tests) is used as given.
    """
    client = httpx.Client(
        transport=transport or httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0)),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        headers={"User-Agent": "jwtriage-jwks-watch", "Accept": "application/jwk-set+json, application/json"},
    )
    mounted = [client._transport, *client._mounts.values()]  # private: see the docstring
    for each in mounted:
        pool = getattr(each, "_pool", None)
        if isinstance(each, httpx.HTTPTransport) and isinstance(pool, httpcore.ConnectionPool):
            pool._network_backend = _DeadlineBackend()
    return client


@dataclass(frozen=True, slots=True)
class Fetched:
    status: int  # 200 or 304
    body: bytes | None  # None for a 304
    headers: httpx.Headers
    url: httpx.URL  # where the answer came from (after redirects)


def get(
    client: httpx.Client,
    url: str,
    deadline: Deadline,
    *,
    headers: dict[str, str] | None = None,
    max_bytes: int,
    max_redirects: int,
) -> Fetched:
    """GET `url` within `deadline`: redirects on the same origin only, the body capped; raises `FetchError`."""
    target = httpx.URL(url)
    origin = (target.scheme, target.host, target.port)
    try:
        for _ in range(max_redirects + 1):
            with client.stream("GET", target, headers=headers or {}) as response:
                if response.has_redirect_location:
                    following = target.join(response.headers["location"])
                    if (following.scheme, following.host, following.port) != origin:
                        raise FetchError(f"HTTP {response.status_code} redirect to another host ({following}) refused")
                    target = following
                    continue
                if response.status_code == 304:
                    return Fetched(304, None, response.headers, target)
                if response.status_code != 200:
                    retry = response.headers.get("retry-after", "")
                    hint = f", Retry-After {retry}" if retry else ""
                    raise FetchError(f"HTTP {response.status_code} {response.reason_phrase}{hint}")
                return Fetched(200, _read_capped(response, deadline, max_bytes), response.headers, target)
        raise FetchError(f"more than {max_redirects} redirects")
    except httpx.HTTPError as exc:
        if deadline.cancelled:
            raise FetchError("stopped") from None
        if isinstance(exc, httpx.TimeoutException) or deadline.expired:
            raise FetchError(f"timed out after {deadline.seconds:g} s") from None
        raise FetchError(f"{type(exc).__name__}: {exc}") from None


def _read_capped(response: httpx.Response, deadline: Deadline, cap: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise FetchError(f"body of {int(declared):,} bytes is over the {cap:,}-byte cap")
    body = bytearray()
    for chunk in response.iter_bytes():
        body.extend(chunk)
        if len(body) > cap:
            raise FetchError(f"body is over the {cap:,}-byte cap")
        if deadline.tripped:
            raise FetchError(f"body took longer than {deadline.seconds:g} s")
    return bytes(body)
