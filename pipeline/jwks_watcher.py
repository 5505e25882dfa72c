"""The JWKS watcher: poll each issuer's `jwks_uri`, publish a JwksSnapshot when the key set changes.

The watcher is the only way keys enter jwtriage (the classifier never touches the network).
For each configured issuer it polls `jwks_uri` over HTTP(S) (an issuer without one is looked up
by OIDC discovery: `issuer` + `/.well-known/openid-configuration`, whose `issuer` must equal
the configured one, OIDC Discovery 4.3) and:

- honours `ETag` / `Last-Modified` (conditional requests, a 304 confirms the set) and
  `Cache-Control: max-age` (minus `Age`), else `Expires`, else the default interval; the
  next poll is that freshness clamped to [min_interval, max_interval];
- publishes a snapshot when the set of keys changes, and the unchanged set on a heartbeat
  so consumers know it is alive (a heartbeat only follows a fetch that succeeded: a
  snapshot's `fetched_at` is always a moment the set was confirmed);
- on any failure (network, timeout, HTTP status, redirect to another host, body over the
  size cap, not JSON, no `keys` list, no usable signing key) keeps the last good set, logs
  one line, and retries with exponential backoff and jitter, up to a cap;
- never forwards private key material: a key with private members is dropped, with a log line;
- refreshes on an unknown kid (`refresh(issuer, kid)`) at most once per
  `min_refresh_interval` per issuer, never while backing off.

Every fetch runs under a whole-request deadline (`settings.timeout`: connect, headers and
body together; `pipeline.jwks_http`), issuers are polled concurrently (`run`: one thread
each; `poll_all`: all at once), so a server that stalls or drips delays only its own issuer,
and `stop()` abandons fetches in flight, so SIGTERM ends the command within a second or two.

Snapshots go to a `SnapshotSink` (`pipeline.io.base`): Kafka (`io.kafka_producers.KafkaSnapshotSink`,
keyed by issuer, to `kafka.jwks_topic`), a JSONL file that `jwtriage classify --jwks` reads
(`io.files.JsonlSnapshotSink`), or a list in tests (`io.memory.ListSnapshotSink`). The
consumer stays the store's only writer; `pipeline/commands/jwks_watch.py` is the command.

Errors: `FetchError` (one fetch failed, from `pipeline.jwks_http`; caught, logged and backed
off here) is the only exception of this module; sink errors are handled the same way.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from pipeline.config import IssuerConfig
from pipeline.engine.keys import BadJwk, load_public_key
from pipeline.io.base import SnapshotSink
from pipeline.jwks_http import Deadline, FetchError, bounded_client, get
from pipeline.models import JwksSnapshot

log = logging.getLogger(__name__)

#: JWK members that only a private (or symmetric) key has; a key carrying one is never forwarded.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

#: A heartbeat counts as due once this share of its period has passed, so a cron job that
#: runs `--once` exactly every heartbeat period is not skipped for being a few ms early.
HEARTBEAT_SLACK = 0.1

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(no-cache|no-store)\s*(?:,|$)", re.IGNORECASE)


def utc_now() -> datetime:
    return datetime.now(UTC)


__all__ = ["DEFAULTS", "FetchError", "JwksWatcher", "PollResult", "WatchSettings"]

#: OIDC Discovery 1.0, section 4: appended to the issuer (its trailing slash removed).
DISCOVERY_PATH = "/.well-known/openid-configuration"
#: How long `stop()` waits for the issuers' threads once their fetches are abandoned.
STOP_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """How often to poll, how long to wait, how much to accept (seconds and bytes)."""

    interval: float = 300.0  # poll interval when the server gives no freshness
    min_interval: float = 30.0  # never poll more often than this (max-age=0 included)
    max_interval: float = 3600.0  # never trust a max-age longer than this
    heartbeat: float = 300.0  # republish an unchanged set this often
    min_refresh_interval: float = 30.0  # unknown-kid refreshes: at most one per issuer per this
    timeout: float = 10.0  # per request, connect to last byte (a whole-request deadline)
    max_bytes: int = 1_048_576  # response body cap (decoded)
    max_redirects: int = 3  # same host only
    backoff_base: float = 5.0  # first retry after a failure, before jitter
    backoff_cap: float = 600.0  # longest wait between retries

    def __post_init__(self) -> None:
        for name in ("interval", "min_interval", "max_interval", "heartbeat", "timeout", "backoff_base"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.min_interval > self.max_interval:
            raise ValueError("min_interval must not exceed max_interval")


DEFAULTS = WatchSettings()


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll of one issuer did."""

    issuer: str  # the config's name
    outcome: str  # "changed", "unchanged", "not_modified" or "failed"
    published: bool
    keys: int  # keys in the set now held (the last good one after a failure)
    next_in: float  # seconds until the next poll
    error: str | None = None


@dataclass(slots=True)
class _IssuerState:
    config: IssuerConfig
    next_due: datetime
    lock: threading.Lock = field(default_factory=threading.Lock)  # one poll of this issuer at a time
    url: str = ""  # what the last fetch asked for (the JWKS, or the discovery document)
    discovered: str | None = None  # the jwks_uri that discovery gave
    discovered_at: datetime | None = None
    etag: str | None = None
    last_modified: str | None = None
    doc: dict[str, Any] | None = None  # the last good set (private keys dropped)
    signature: frozenset[str] | None = None  # what "the same set" means: canonical keys
    kids: frozenset[str] = frozenset()
    confirmed_at: datetime | None = None  # last fetch that gave (200) or confirmed (304) the set
    published_signature: frozenset[str] | None = None
    published_at: datetime | None = None  # fetched_at of the last snapshot published
    last_attempt: datetime | None = None
    failures: int = 0
    fetches: int = 0


def _canonical_keys(doc: dict[str, Any]) -> frozenset[str]:
    return frozenset(json.dumps(k, sort_keys=True, separators=(",", ":")) for k in doc["keys"])


def _freshness(headers: httpx.Headers, now: datetime) -> float | None:
    """Seconds the response stays fresh: max-age minus Age, else Expires minus Date; None when unstated."""
    cache_control = headers.get("cache-control", "")
    if _NO_CACHE.search(cache_control):
        return 0.0
    match = _MAX_AGE.search(cache_control)
    if match:
        age = headers.get("age", "0").strip()
        return max(0.0, float(match.group(1)) - (float(age) if age.isdigit() else 0.0))
    expires = headers.get("expires")
    if expires:
        try:
            expires_at = email.utils.parsedate_to_datetime(expires)
        except (TypeError, ValueError):
            return 0.0  # an invalid Expires means "already expired" (RFC 9111 5.3)
        if expires_at.tzinfo is None:
            return 0.0
        try:
            reference = email.utils.parsedate_to_datetime(headers["date"]) if "date" in headers else now
        except (TypeError, ValueError):
            reference = now
        if reference.tzinfo is None:
            reference = now
        return max(0.0, (expires_at - reference).total_seconds())
    return None


class JwksWatcher:
    """Polls the issuers' JWKS and publishes snapshots to a sink.

    `clock` (aware UTC datetimes) drives scheduling and `fetched_at`; `sleep` waits between
    rounds (the default wakes early on `stop()`); `transport` replaces the network
    (`httpx.MockTransport` in tests); `rng` draws the backoff jitter; `one_round` is for a
    caller that polls once and exits, so a failure's log does not promise a retry.
    """

    def __init__(
        self,
        issuers: Sequence[IssuerConfig],
        sink: SnapshotSink,
        settings: WatchSettings | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], object] | None = None,
        rng: random.Random | None = None,
        seed: Iterable[JwksSnapshot] = (),
        one_round: bool = False,
    ) -> None:
        if not issuers:
            raise ValueError("no issuers to watch")
        self.settings = settings or WatchSettings()
        self.sink = sink
        self._clock = clock
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._publish_lock = threading.Lock()  # sinks are written by one thread at a time
        self._active: set[Deadline] = set()  # fetches in flight, abandoned by `stop()`
        self._active_lock = threading.Lock()
        self._client = bounded_client(self.settings.timeout, transport)
        now = clock()
        self._states = {i.name: _IssuerState(i, next_due=now) for i in issuers}
        self._by_iss = {i.issuer: i.name for i in issuers}
        self.refreshes_suppressed = 0
        self._one_round = one_round
        for snapshot in seed:
            self._seed(snapshot)

    # -- state -----------------------------------------------------------------------------

    def _seed(self, snapshot: JwksSnapshot) -> None:
        """Start from a snapshot published earlier (e.g. the last line of the JSONL file)."""
        name = self._by_iss.get(snapshot.issuer)
        keys = snapshot.jwks.get("keys")
        if name is None or not isinstance(keys, list):
            return
        state = self._states[name]
        state.published_signature = _canonical_keys(snapshot.jwks)
        state.published_at = snapshot.fetched_at

    def _state(self, issuer: str) -> _IssuerState:
        name = self._by_iss.get(issuer, issuer)
        if name not in self._states:
            raise KeyError(f"{issuer!r} is not a configured issuer (known: {', '.join(sorted(self._states))})")
        return self._states[name]

    def current(self, issuer: str) -> dict[str, Any] | None:
        """The last good key set of an issuer (by config name or `iss`), or None before the first success."""
        return self._state(issuer).doc

    def fetch_count(self, issuer: str) -> int:
        return self._state(issuer).fetches

    def close(self) -> None:
        self._client.close()

    def stop(self) -> None:
        """Make `run` return, abandoning fetches in flight (safe from another thread or a signal handler)."""
        self._stop.set()
        with self._active_lock:
            active = list(self._active)
        for deadline in active:
            deadline.cancel()

    # -- polling ---------------------------------------------------------------------------

    def poll_all(self) -> list[PollResult]:
        """Poll every issuer now, whatever its schedule (`--once`), all at once."""
        return self._poll_each(list(self._states.values()))

    def poll_due(self) -> list[PollResult]:
        """Poll the issuers whose next poll is due, all at once."""
        now = self._clock()
        return self._poll_each([s for s in self._states.values() if s.next_due <= now])

    def _poll_each(self, states: list[_IssuerState]) -> list[PollResult]:
        if len(states) <= 1:
            return [self._poll_locked(state) for state in states]
        with ThreadPoolExecutor(len(states), thread_name_prefix="jwks-watch") as pool:
            return list(pool.map(self._poll_locked, states))

    def seconds_until_next(self) -> float:
        now = self._clock()
        return max(0.0, min((s.next_due - now).total_seconds() for s in self._states.values()))

    def run(self, max_rounds: int | None = None) -> None:
        """Poll each issuer on its own schedule, in its own thread, until `stop()` (or `max_rounds` polls each)."""
        threads = [
            threading.Thread(target=self._run_one, args=(state, max_rounds), name=f"jwks-watch {name}", daemon=True)
            for name, state in self._states.items()
        ]
        for thread in threads:
            thread.start()
        while not self._stop.is_set() and any(t.is_alive() for t in threads):
            self._stop.wait(0.25)  # the main thread stays free for SIGTERM
        if self._stop.is_set():
            self.stop()  # abandon what is in flight, then give the threads a moment to finish
        grace = time.monotonic() + STOP_GRACE
        for thread in threads:
            thread.join(max(0.0, grace - time.monotonic()) if self._stop.is_set() else None)

    def _run_one(self, state: _IssuerState, max_rounds: int | None) -> None:
        polls = 0
        while not self._stop.is_set():
            if state.next_due <= self._clock():
                self._poll_locked(state)
                polls += 1
                if max_rounds is not None and polls >= max_rounds:
                    return
            self._sleep(max(0.05, (state.next_due - self._clock()).total_seconds()))

    def refresh(self, issuer: str, kid: str | None = None) -> bool:
        """Fetch now because a token named `kid` that the set lacks; True when a fetch happened.

        Rate-limited: at most one fetch per `min_refresh_interval` per issuer (counting every
        fetch, scheduled ones included), none while backing off after failures, and none
        when `kid` is already in the set. A flood of made-up kids costs one fetch per interval.
        """
        state = self._state(issuer)
        if kid is not None and kid in state.kids:
            return False
        if not state.lock.acquire(blocking=False):  # a poll of this issuer is under way: as good as a refresh
            with self._rng_lock:
                self.refreshes_suppressed += 1
            return False
        try:
            now = self._clock()
            limit = timedelta(seconds=self.settings.min_refresh_interval)
            if (state.last_attempt is not None and now - state.last_attempt < limit) or (
                state.failures and now < state.next_due
            ):
                with self._rng_lock:
                    self.refreshes_suppressed += 1
                return False
            log.info("%s: refreshing the JWKS for unknown kid %r", state.config.name, kid)
            self._poll(state)
            return True
        finally:
            state.lock.release()

    def _poll_locked(self, state: _IssuerState) -> PollResult:
        with state.lock:
            return self._poll(state)

    def _poll(self, state: _IssuerState) -> PollResult:
        state.last_attempt = self._clock()
        state.fetches += 1
        name = state.config.name
        try:
            status, doc, headers = self._fetch(state)
        except FetchError as exc:
            if self._stop.is_set():
                log.info("%s: fetch abandoned: stopping", name)
                return PollResult(name, "failed", False, self._held(state), 0.0, "stopped")
            return self._failed(state, str(exc))
        now = self._clock()
        fresh = _freshness(headers, now)
        if status == 304:
            if state.doc is None:  # a 304 to a request we could not have made conditional
                state.etag = state.last_modified = None
                return self._failed(state, "HTTP 304 without a set to confirm")
            outcome = "not_modified"
        else:
            assert doc is not None
            signature = _canonical_keys(doc)
            previous = state.signature if state.signature is not None else state.published_signature
            outcome = "unchanged" if signature == previous else "changed"
            state.doc, state.signature = doc, signature
            state.kids = frozenset(
                k["kid"] for k in doc["keys"] if isinstance(k, dict) and isinstance(k.get("kid"), str)
            )
            state.etag = headers.get("etag")
            state.last_modified = headers.get("last-modified")
        if status == 304 and headers.get("etag"):
            state.etag = headers["etag"]
        if state.failures:
            log.warning("%s: %s answers again after %d failed fetch(es)", name, state.url, state.failures)
        state.failures = 0
        state.confirmed_at = now
        try:
            published = self._publish_if_due(state, now)
        except Exception as exc:  # the sink's own errors (Kafka, disk): keep the set, retry soon
            return self._failed(state, f"cannot publish the snapshot: {exc}", fetched=True)
        interval = self.settings.interval if fresh is None else fresh
        interval = min(max(interval, self.settings.min_interval), self.settings.max_interval)
        if state.published_at is not None:
            until_heartbeat = (state.published_at - now).total_seconds() + self.settings.heartbeat
            interval = min(interval, max(self.settings.min_interval, until_heartbeat))
        state.next_due = now + timedelta(seconds=interval)
        return PollResult(name, outcome, published, len(doc["keys"]) if doc else self._held(state), interval)

    def _publish_if_due(self, state: _IssuerState, now: datetime) -> bool:
        assert state.doc is not None
        heartbeat_due = state.published_at is None or (now - state.published_at).total_seconds() >= (
            self.settings.heartbeat * (1 - HEARTBEAT_SLACK)
        )
        if state.signature == state.published_signature and not heartbeat_due:
            return False
        snapshot = JwksSnapshot(issuer=state.config.issuer, fetched_at=now, jwks=state.doc)
        with self._publish_lock:
            self.sink.publish(snapshot)
        changed = state.signature != state.published_signature
        state.published_signature, state.published_at = state.signature, now
        log.info(
            "%s: published %d key(s) (%s)",
            state.config.name,
            len(state.doc["keys"]),
            "changed" if changed else "heartbeat",
        )
        return True

    @staticmethod
    def _held(state: _IssuerState) -> int:
        return len(state.doc["keys"]) if state.doc else 0

    def _failed(self, state: _IssuerState, reason: str, fetched: bool = False) -> PollResult:
        state.failures += 1
        if not fetched:
            state.discovered = None  # an issuer found by discovery is looked up again on the retry
        ceiling = min(self.settings.backoff_cap, self.settings.backoff_base * 2 ** (state.failures - 1))
        with self._rng_lock:
            delay = ceiling * self._rng.uniform(0.5, 1.0)
        state.next_due = self._clock() + timedelta(seconds=delay)
        if state.doc is None:
            kept = "no good set yet"
        else:
            assert state.confirmed_at is not None
            kept = f"keeping the last good set ({self._held(state)} keys, confirmed {_stamp(state.confirmed_at)})"
        what = "publishing" if fetched else f"fetching {state.url}"
        then = "not retried (one round)" if self._one_round else f"retry in {delay:.0f} s"
        log.warning("%s: %s failed (#%d): %s; %s; %s", state.config.name, what, state.failures, reason, kept, then)
        return PollResult(state.config.name, "failed", False, self._held(state), delay, reason)

    # -- one HTTP fetch --------------------------------------------------------------------

    def _fetch(self, state: _IssuerState) -> tuple[int, dict[str, Any] | None, httpx.Headers]:
        """(status, document or None for a 304, headers); raises `FetchError`."""
        headers = {}
        if state.doc is not None and state.etag:
            headers["If-None-Match"] = state.etag
        if state.doc is not None and state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        state.url = self._jwks_uri(state)
        with self._deadline() as deadline:
            fetched = get(
                self._client,
                state.url,
                deadline,
                headers=headers,
                max_bytes=self.settings.max_bytes,
                max_redirects=self.settings.max_redirects,
            )
        if fetched.status == 304:
            return 304, None, fetched.headers
        assert fetched.body is not None
        return 200, self._parse(fetched.body, state.config.name), fetched.headers

    @contextlib.contextmanager
    def _deadline(self) -> Iterator[Deadline]:
        """A deadline for one fetch, registered so that `stop()` can abandon it."""
        deadline = Deadline(self.settings.timeout)
        with self._active_lock:
            self._active.add(deadline)
        try:
            with deadline:
                if self._stop.is_set():
                    deadline.cancel()
                yield deadline
        finally:
            with self._active_lock:
                self._active.discard(deadline)

    def _jwks_uri(self, state: _IssuerState) -> str:
        """The configured `jwks_uri`, else the one OIDC discovery gives (looked up again hourly)."""
        if state.config.jwks_uri:
            return state.config.jwks_uri
        now = self._clock()
        fresh = timedelta(seconds=self.settings.max_interval)
        if state.discovered and state.discovered_at is not None and now - state.discovered_at < fresh:
            return state.discovered
        issuer = state.config.issuer
        state.url = issuer.rstrip("/") + DISCOVERY_PATH
        if httpx.URL(issuer).scheme not in ("https", "http"):
            raise FetchError(f"issuer {issuer!r} is not an http(s) URL: OIDC discovery needs one (hint: set jwks_uri)")
        with self._deadline() as deadline:
            fetched = get(
                self._client,
                state.url,
                deadline,
                max_bytes=self.settings.max_bytes,
                max_redirects=self.settings.max_redirects,
            )
        assert fetched.body is not None  # nothing conditional was asked: no 304
        state.discovered, state.discovered_at = _discovered_jwks_uri(fetched.body, issuer), now
        log.info("%s: discovery gives jwks_uri %s", state.config.name, state.discovered)
        return state.discovered

    def _parse(self, body: bytes, name: str) -> dict[str, Any]:
        """The JWK Set with private keys dropped; raises `FetchError` for anything that is not a usable set."""
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise FetchError(f"body is not JSON ({_short(str(exc))})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise FetchError("body is JSON but not a JWK Set (no 'keys' list)")
        keys, usable, problems = [], 0, []
        for position, jwk in enumerate(doc["keys"]):
            if isinstance(jwk, dict) and PRIVATE_MEMBERS & jwk.keys():
                log.error(
                    "%s: key #%d (kid %r) carries private key material; dropped, never forwarded",
                    name,
                    position,
                    jwk.get("kid"),
                )
                continue
            keys.append(jwk)
            try:
                load_public_key(jwk)
                usable += 1
            except BadJwk as exc:
                problems.append(f"key #{position}: {exc}")
        if not usable:
            detail = f" ({problems[0]})" if problems else ""
            raise FetchError(f"the set holds no usable signing key{detail}")
        return {**doc, "keys": keys}


def _discovered_jwks_uri(body: bytes, issuer: str) -> str:
    """The `jwks_uri` of an OpenID Provider Configuration document; raises `FetchError`."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FetchError(f"discovery document is not JSON ({_short(str(exc))})") from None
    if not isinstance(doc, dict):
        raise FetchError("discovery document is not a JSON object")
    if doc.get("issuer") != issuer:
        named = _short(repr(doc.get("issuer")))
        raise FetchError(f"discovery document names issuer {named}, not {issuer!r} (OIDC Discovery 4.3: not used)")
    uri = doc.get("jwks_uri")
    if not isinstance(uri, str) or not uri:
        raise FetchError("discovery document has no jwks_uri")
    try:
        url = httpx.URL(uri)
    except httpx.InvalidURL:
        raise FetchError(f"discovery document's jwks_uri {_short(repr(uri))} is not a URL") from None
    allowed = ("https",) if httpx.URL(issuer).scheme == "https" else ("https", "http")
    if url.scheme not in allowed or not url.host:
        raise FetchError(f"discovery document's jwks_uri {_short(repr(uri))} is not an {'/'.join(allowed)} URL")
    return uri


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
