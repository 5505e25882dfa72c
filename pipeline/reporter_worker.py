"""The reporter's sending side: records built and produced to Kafka in a child process.

kafka-python costs ~110 µs of CPU per report (its `send` and its sender thread); in the
app's own interpreter that CPU holds the GIL while requests wait, which showed as a 14x p99
at 1,000 rejections/s (bench/results.md). So `pipeline.reporter` hands each rejection, as a
tuple appended to a list, to `ProcessLink`, whose flusher thread sends the gathered reports
(each `marshal`led) to a child process (`python -m pipeline.reporter_worker`) over a
non-blocking `AF_UNIX` `SOCK_SEQPACKET` socket pair: one `send` per batch, message
boundaries kept, a full socket is a drop counted in the app. The child owns the producer
(made at its start, short timeouts) and writes its counters into a small shared file
mapping (a single writer per slot, read by the app without a system call).

The child stops at a "stop" message (with the app's deadline), at end of file, or at
SIGTERM: whatever it still holds is counted as dropped before it exits.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import marshal
import mmap
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("pipeline.reporter")

#: A token longer than this is hashed but never sampled, nor decoded for its client id.
MAX_TOKEN_CHARS = 16 * 1024
#: `reported_error` is cut to this many characters.
MAX_ERROR_CHARS = 1_000
#: Records handed to kafka-python and not yet acknowledged, at most (its buffer has no bound of
#: its own); with events under ~2 KB and samples under 16 KB, a few tens of MB at worst.
MAX_PENDING = 5_000
#: Bytes the app may leave in the socket for the child (the kernel caps it at 2 x wmem_max).
SOCKET_BUFFER = 1 << 20
_MAX_MESSAGE = 256 * 1024
#: While reports keep coming, the child reads them in batches this far apart (seconds): a
#: `send` to a child already awake costs the app less than one that wakes it, and each wake-up
#: costs the child a cold start (caches, the producer's thread): 50 ms batches took its CPU
#: from ~115 to ~90 µs per report at 1,000 reports/s (bench/results.md). The socket holds
#: ~50 ms of reports (~1 KB each) many times over.
BATCH_PAUSE = 0.05
#: The app's flusher sends the reports that gathered this often (seconds): one message a batch.
FLUSH_PAUSE = 0.02
#: Empty pauses in a row before the flusher parks (1 s): under steady rejections it never does.
_PARK_AFTER = 50
_JWT_SHAPED = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?")
#: The counters a record's outcome goes to: (acknowledged, never handed over, failed).
EVENT = ("sent", "dropped", "errors")
SAMPLE = ("sampled", "samples_lost", "samples_lost")
Record = tuple[str, bytes | None, bytes, tuple[str, str, str]]
#: The shared counter slots (int64 each); "received" is how many reports the child took.
SLOTS = ("received", "sent", "dropped", "errors", "sampled", "samples_lost")
#: Tokens whose last sampling time and client id the child remembers.
RECENT_TOKENS = 4096


class KeyedPartitioner:
    """kafka-python's default partitioner (given) with its answer per key remembered: its murmur2 is pure
    Python (~8 µs a record) and the reporter's key is always its service. The same partition as the
    default's for the same topic, key and partition count."""

    def __init__(self, default: Any) -> None:
        self.default = default
        self.known: dict[tuple[str, bytes, int], int] = {}

    def partition(self, topic: str, key: Any, serialized_key: bytes | None, value: Any,
                  serialized_value: Any, cluster: Any) -> int:
        partitions = cluster.partitions_for_topic(topic) if serialized_key is not None else None
        if serialized_key is None or not partitions:
            return int(self.default.partition(topic, key, serialized_key, value, serialized_value, cluster))
        memo = (topic, serialized_key, len(partitions))
        if (found := self.known.get(memo)) is None:
            if len(self.known) >= RECENT_TOKENS:
                self.known.clear()
            found = self.known[memo] = int(self.default.partition(topic, key, serialized_key, value,
                                                                  serialized_value, cluster))
        return found


def token_sha256(token: str) -> str:
    """Hex SHA-256 of the compact token, as jwtriage joins a sample to its events."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def sampled(sha256_hex: str, rate: float) -> bool:
    """The same answer for the same token in every service: the hash, not a dice roll, decides."""
    return rate > 0 and int(sha256_hex[:8], 16) / 2**32 < rate


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _dumps(record: dict[str, Any]) -> bytes:
    """Compact JSON: orjson (~3 µs less a record than json). Text orjson refuses (a lone surrogate, which
    no JSON reader would take back either) is written with a "?" in its place."""
    try:
        return orjson.dumps(record)
    except orjson.JSONEncodeError:
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace")


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


class RecordBuilder:
    """One report (the tuple the request path made) → the event, and the sample when this token is due."""

    def __init__(self, service: str, failures_topic: str, samples_topic: str, sample_rate: float,
                 resample_after: float) -> None:
        self.service, self.failures_topic, self.samples_topic = service, failures_topic, samples_topic
        self.sample_rate, self.resample_after = sample_rate, resample_after
        self.recent: OrderedDict[str, float] = OrderedDict()  # sha256 → when last sampled
        # sha256 → the token's client id: in an outage each client retries the same token many times,
        # and decoding its payload was a third of the record's cost.
        self.client_ids: dict[str, str | None] = {}

    def records(self, wall: float, token: str | None, error: str, fetched: str | None,
                client_id: str | None, request_id: str | None) -> list[Record]:
        digest = token_sha256(token) if token else None
        if token and digest:
            error = error.replace(token, "<token>")
            if not client_id and (client_id := self.client_ids.get(digest, "")) == "":
                if len(self.client_ids) >= RECENT_TOKENS:
                    self.client_ids.clear()
                client_id = self.client_ids[digest] = _unverified_client_id(token)
        event: dict[str, Any] = {
            "event_id": os.urandom(16).hex(),  # as unique as uuid4().hex, a quarter of its cost
            "ts": rfc3339(datetime.fromtimestamp(wall, UTC)),
            "service": self.service,
            "token_sha256": digest,
            "reported_error": _JWT_SHAPED.sub("<token>", error)[:MAX_ERROR_CHARS],
            "service_jwks_fetched_at": fetched,
            "client_id": client_id,
            "request_id": request_id[:200] if request_id else None,
        }
        value = _dumps({k: v for k, v in event.items() if v is not None})
        out: list[Record] = [(self.failures_topic, self.service.encode(), value, EVENT)]
        if token and digest and len(token) <= MAX_TOKEN_CHARS and sampled(digest, self.sample_rate):
            now = time.monotonic()
            last = self.recent.get(digest)
            if last is None or now - last >= self.resample_after:
                self.recent[digest] = now
                self.recent.move_to_end(digest)
                if len(self.recent) > RECENT_TOKENS:
                    self.recent.popitem(last=False)
                sample = _dumps({"token": token, "sampled_at": event["ts"], "service": self.service})
                out.append((self.samples_topic, None, sample, SAMPLE))
        return out


class KafkaSender:
    """The producer, made lazily; while the broker is unreachable, records are dropped."""

    def __init__(self, options: dict[str, Any], count: Callable[..., None], service: str) -> None:
        # linger 50 ms: kafka-python's sender thread costs ~170 µs per report at 5 ms, ~65 µs at 50 ms
        # (1,000 reports/s, bench/results.md); in the child it no longer slows the app, but it is CPU.
        defaults = {"acks": 1, "enable_idempotence": False, "linger_ms": 50, "bootstrap_timeout_ms": 2_000,
                    "max_block_ms": 1_000, "request_timeout_ms": 5_000, "delivery_timeout_ms": 30_000,
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

    def connect(self) -> Any:
        if self.producer is None and time.monotonic() >= self.retry_at:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # kafka-python 3.0 on Python 3.11
                    from kafka import KafkaProducer
                    from kafka.partitioner import DefaultPartitioner, Partitioner
                Partitioner.register(KeyedPartitioner)  # kafka-python checks isinstance; kafka is imported lazily
                self.producer = KafkaProducer(**{"partitioner": KeyedPartitioner(DefaultPartitioner())} | self.options)
                self.backoff = 1.0
                log.info("jwtriage reporter: connected to Kafka")
            except Exception as exc:  # NoBrokersAvailable, KafkaTimeoutError, a bad option (ValueError)
                self.retry_at = time.monotonic() + self.backoff
                self.backoff = min(self.backoff * 2, 30.0)
                why = "unknown option in kafka_options" if isinstance(exc, ValueError) else "unreachable"
                log.warning("jwtriage reporter: Kafka %s (%s); dropping reports for %.0f s",
                            why, type(exc).__name__, self.retry_at - time.monotonic())
        return self.producer

    def send(self, records: list[Record]) -> None:
        producer = self.connect()
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
            future.add_both(self._done, sent, errors)

    def _done(self, sent: str, errors: str, result: object) -> None:
        with self.pending_lock:
            self.pending -= 1
        self.count(errors if isinstance(result, BaseException) else sent)

    def close(self, timeout: float) -> None:
        if self.producer is not None:
            try:
                self.producer.flush(timeout=timeout)
            except Exception as exc:
                log.warning("jwtriage reporter: flush incomplete (%s)", type(exc).__name__)
            self.producer.close(timeout=max(0.1, timeout))
            self.producer = None


# -- the app's side ---------------------------------------------------------------------------


class ProcessLink:
    """The app's handle on its child: a report is appended to a list; a flusher thread sends the list.

    A `send` per report cost the request ~4 µs of system call, a third of the reporter's share of
    a request (bench/results.md, "Reporter child: per-report CPU"). Now the request path appends
    its tuple under a lock, and a daemon thread (parked while nothing is pending) sends what
    gathered every `FLUSH_PAUSE` as one message: one `send` and one GIL hand-off per batch, not per
    report. Counters are read from shared memory, without a system call.
    """

    def __init__(self, config: dict[str, Any], queue_size: int,
                 finish: Callable[[tuple[Any, ...]], tuple[Any, ...]] = lambda item: item) -> None:
        self.queue_size = queue_size
        self.finish = finish  # what the request path left undone (reading the headers), done by the flusher
        self.written = 0  # reports taken from the app (pending, sent to the child, or dropped here)
        self.dropped_here = 0  # taken, then not delivered to the child: socket full, child gone, too big
        self.errors_here = 0  # taken, then unreadable (a hostile header)
        self.pending: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._parked = False
        self._closing = False
        self._flusher: threading.Thread | None = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        ours.setblocking(False)
        self.sock = ours
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
        blob = base64.b64encode(pickle.dumps(config)).decode()
        with tempfile.TemporaryFile() as shared:  # the mapping outlives the file object
            shared.truncate(8 * len(SLOTS))
            self.map = mmap.mmap(shared.fileno(), 8 * len(SLOTS))
            self.slots = memoryview(self.map).cast("q")
            fds = (theirs.fileno(), shared.fileno())
            self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.reporter_worker", *map(str, fds), blob],
                                         pass_fds=fds, stdin=subprocess.DEVNULL, env=env)
        theirs.close()

    def put(self, item: tuple[Any, ...]) -> bool:
        """False when the child and this link hold `queue_size` reports already, or the link is closing."""
        if self.written - self.slots[0] >= self.queue_size or self._closing:
            return False
        with self._lock:
            self.pending.append(item)
            self.written += 1
        if self._flusher is None:
            self._start_flusher()
        elif self._parked:
            self._wake.set()
        return True

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_loop, name="jwtriage-reporter-link", daemon=True)
                self._flusher.start()

    def _flush_loop(self) -> None:
        idle = 0  # pauses in a row with nothing to send
        while not self._closing:
            time.sleep(FLUSH_PAUSE)  # let reports gather: one send for all of them
            if self.pending:
                self.flush()
                idle = 0
                continue
            idle += 1
            if idle >= _PARK_AFTER:  # quiet for a while: park until a report wakes us (a system call on
                self._parked = True  # the request path, once per quiet spell, not once per batch)
                if not self.pending:  # a put between the check and the flag sets the event
                    self._wake.wait(1.0)
                self._wake.clear()
                self._parked = False
                idle = 0

    def flush(self) -> None:
        """Send what is pending, in messages the child can read; what cannot go is dropped here (counted)."""
        with self._lock:
            batch, self.pending = self.pending, []
        chunk: list[bytes] = []
        size = 0
        for item in batch:
            try:
                message = marshal.dumps(self.finish(item))
            except Exception:
                log.exception("jwtriage reporter: could not read the failed request")
                self.errors_here += 1
                continue
            if len(message) + 64 > _MAX_MESSAGE:  # a header no server would pass on: more than the child reads
                self.dropped_here += 1
                continue
            if size + len(message) + 64 > _MAX_MESSAGE:
                self._send(chunk)
                chunk, size = [], 0
            chunk.append(message)
            size += len(message) + 8
        if chunk:
            self._send(chunk)

    def _send(self, chunk: list[bytes]) -> None:
        try:
            self.sock.send(marshal.dumps(chunk))
        except OSError:  # BlockingIOError (full), the child gone
            self.dropped_here += len(chunk)

    def counters(self) -> dict[str, int]:
        counts = {name: self.slots[n] for n, name in enumerate(SLOTS) if n}
        counts["dropped"] += self.dropped_here
        counts["errors"] += self.errors_here
        return counts

    def close(self, deadline: float) -> int:
        """Send what is pending, ask the child to finish by `deadline` (monotonic); then SIGTERM, then
        SIGKILL. Returns the reports never accounted for by the child (to be counted as dropped)."""
        self._closing = True
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(OSError):
            self.sock.setblocking(True)
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            self.flush()
            self.sock.send(marshal.dumps(("stop", time.time() + max(0.0, deadline - time.monotonic()))))
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        for stop in (None, self.proc.terminate, self.proc.kill):
            if stop is not None:
                stop()
            try:
                self.proc.wait(max(0.05, deadline - time.monotonic()) if stop is None else 1.0)
                break
            except subprocess.TimeoutExpired:
                continue
        self.sock.close()
        counts = self.counters()
        lost = self.written - (counts["sent"] + counts["dropped"] + counts["errors"])
        return max(0, lost)

    def forget(self) -> None:
        """In a forked copy of the app: the parent's child and socket are not ours."""
        self._closing = True
        with contextlib.suppress(OSError):
            self.sock.close()
        self.proc = None  # type: ignore[assignment]


# -- the child --------------------------------------------------------------------------------


class Terminated(BaseException):
    """SIGTERM from the app's close(): count what is left, then exit."""


def _on_term(*_: object) -> None:
    raise Terminated


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _on_term)
    config = pickle.loads(base64.b64decode(argv[2]))  # written by our own parent, never by a request
    with contextlib.suppress(OSError):
        os.nice(config.pop("nice", 10))  # background work: on a busy machine the app's requests come first
    if config.pop("idle", False) and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    sock = socket.socket(fileno=int(argv[0]))
    with open(int(argv[1]), "r+b") as handle:
        slots = memoryview(mmap.mmap(handle.fileno(), 8 * len(SLOTS))).cast("q")
    logging.basicConfig(level=config.pop("log_level", logging.WARNING), format="%(name)s: %(message)s")
    lock = threading.Lock()
    index = {name: n for n, name in enumerate(SLOTS)}

    def count(name: str, n: int = 1) -> None:
        with lock:
            slots[index[name]] += n

    builder = RecordBuilder(config["service"], config["failures_topic"], config["samples_topic"],
                            config["sample_rate"], config["resample_after"])
    sender = KafkaSender(config["kafka_options"], count, config["service"])
    buffer = bytearray(_MAX_MESSAGE)
    deadline: float | None = None
    try:
        sender.connect()  # now, while the first reports wait in the socket
        quiet = True  # nothing arrived since the last pause
        while True:
            try:
                size = sock.recv_into(buffer, 0, socket.MSG_DONTWAIT)
                quiet = False
            except BlockingIOError:
                if not quiet:  # busy: let reports gather, so the app's `send` seldom has to wake us
                    quiet = True
                    time.sleep(BATCH_PAUSE)
                    continue
                size = sock.recv_into(buffer)  # idle: wait in the kernel for the next report
            if size == 0:
                break
            try:
                message = marshal.loads(buffer[:size])
            except (ValueError, EOFError, TypeError):
                count("errors")
                continue
            if type(message) is tuple:  # ("stop", wall-clock deadline)
                deadline = message[1]
                break
            for blob in message:  # a batch from the app's flusher: one marshalled report each
                count("received")
                try:
                    records = builder.records(*marshal.loads(blob))
                    if not sender.ready():  # the broker is away: drop without waiting for it
                        for *_, (_, dropped, _) in records:
                            count(dropped)
                        continue
                    sender.send(records)
                except Exception:
                    log.exception("jwtriage reporter: could not send a rejection")
                    count("errors")
        sender.close(max(0.0, (deadline or time.time() + 2.0) - time.time()))
    except Terminated:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            while size := sock.recv_into(buffer):
                message = marshal.loads(buffer[:size])
                if type(message) is not tuple:
                    for blob in message:
                        count("received")
                        for *_, (_, dropped, _) in builder.records(*marshal.loads(blob)):
                            count(dropped)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
