"""One Kafka test run: fresh topics and group, a config, a store, and consumers as subprocesses.

Every test gets its own topic set and consumer group (through `JWTRIAGE_KAFKA__*`), so tests
never see each other's records. Consumers write stdout and stderr to files (never pipes: a
chatty consumer would block on a full pipe), and every process started here is killed in
`close()`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import TopicPartition

from pipeline.config import KafkaConfig, load_config
from pipeline.errors import StoreError
from pipeline.io.store_readers import connect_readonly, published_parts
from tests.kafka_helpers import KafkaConsumer, KafkaProducer, isolated_kafka_env, wait_for_broker

ROOT = Path(__file__).resolve().parent.parent.parent

#: Big enough for the 10 MB poison values (the broker allows 16 MB: kafka-local/server.properties).
MAX_REQUEST_BYTES = 20 * 1024 * 1024

Record = tuple[str, str | None, bytes]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Proc:
    """A consumer (or any command) running as a subprocess, with its output in files."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    killed_by_test: bool = False

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.killed_by_test = True
        self.process.wait(timeout=30)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"still running after {timeout:.0f} s; killed. Output:\n{self.output()[-3000:]}"
            ) from None


@dataclass
class KafkaRun:
    """Fresh topics and group, a config file and a store path for one test."""

    tmp: Path
    env: dict[str, str]
    config_path: Path
    db: Path
    kafka: KafkaConfig
    procs: list[Proc] = field(default_factory=list)

    @classmethod
    def create(cls, tmp: Path, config_toml: str, **extra_env: str) -> KafkaRun:
        wait_for_broker()
        prefix = f"rel{uuid.uuid4().hex[:10]}"
        env = {**isolated_kafka_env(prefix), **extra_env}
        tmp.mkdir(parents=True, exist_ok=True)
        config_path = tmp / "jwtriage.toml"
        config_path.write_text(config_toml, encoding="utf-8")
        kafka = load_config(config_path, env).kafka
        return cls(tmp, env, config_path, tmp / "store.duckdb", kafka)

    # -- processes -----------------------------------------------------------------------

    def start(
        self,
        args: Sequence[str],
        *,
        crash_at: str | None = None,
        script: Sequence[str] = ("-m", "pipeline.cli"),
        name: str = "proc",
        env: dict[str, str] | None = None,
    ) -> Proc:
        n = len(self.procs)
        out, err = self.tmp / f"{n:02d}-{name}.out", self.tmp / f"{n:02d}-{name}.err"
        full_env = {**os.environ, **self.env, **(env or {})}
        full_env.pop("JWTRIAGE_CRASH_AT", None)
        if crash_at:
            full_env["JWTRIAGE_CRASH_AT"] = crash_at
        with out.open("wb") as stdout, err.open("wb") as stderr:  # the child keeps its own handles
            process = subprocess.Popen(
                [sys.executable, *script, *args], env=full_env, stdout=stdout, stderr=stderr, cwd=ROOT
            )
        proc = Proc(process, out, err)
        self.procs.append(proc)
        return proc

    def consumer(
        self,
        *extra: str,
        instance: str = "c0",
        crash_at: str | None = None,
        verbose: bool = False,
        script: Sequence[str] = ("-m", "pipeline.cli"),
    ) -> Proc:
        args = ["-v"] if verbose else []
        args += ["consume", "--config", str(self.config_path), "--db", str(self.db), "--instance", instance, *extra]
        return self.start(args, crash_at=crash_at, script=script, name="consume")

    def close(self) -> None:
        for proc in self.procs:
            if proc.process.poll() is None:
                proc.kill()

    # -- the store ------------------------------------------------------------------------

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        con = connect_readonly(self.db)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def stored_rows(self) -> int:
        """Rows plus dead letters in the consumers' published snapshots (0 before the first publish)."""
        if not published_parts(self.db):
            return 0
        try:
            (rows,), (letters,) = (
                self.query("SELECT count(*) FROM classifications")[0],
                self.query("SELECT count(*) FROM dead_letters")[0],
            )
        except (StoreError, duckdb.Error):  # a snapshot replaced under us: ask again
            return 0
        return int(rows) + int(letters)


def produce_tracked(kafka: KafkaConfig, records: Iterable[Record]) -> list[tuple[str, int, int]]:
    """Send (topic, key, value) records in order; returns each one's (topic, partition, offset).

    Batches travel gzip-compressed (kafka-python checksums batches in pure Python: compressed,
    100k events go over in a third of the time). A value over 1 MiB travels uncompressed, in a
    batch of its own, so the consumer really has to fetch a record larger than its fetch size.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 512 * 1024,
        "max_request_size": MAX_REQUEST_BYTES,
        "request_timeout_ms": 60_000,
    }
    compressed = KafkaProducer(**options, compression_type="gzip")
    plain = KafkaProducer(**options)
    try:
        futures = []
        for topic, key, value in records:
            raw_key = key.encode() if key else None
            if len(value) > 1024 * 1024:
                compressed.flush(timeout=300)  # keep the order within each partition
                futures.append(plain.send(topic, key=raw_key, value=value))
                plain.flush(timeout=300)
            else:
                futures.append(compressed.send(topic, key=raw_key, value=value))
        compressed.flush(timeout=300)
        placed = []
        for future in futures:
            meta = future.get(timeout=60)
            placed.append((meta.topic, meta.partition, meta.offset))
        return placed
    finally:
        compressed.close(timeout=30)
        plain.close(timeout=30)


def read_topic(kafka: KafkaConfig, topic: str, timeout: float = 60) -> list[bytes]:
    """Every value in `topic` up to its current end (no waiting for more)."""
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers.split(","), group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        partitions = [TopicPartition(topic, p) for p in wait_for(lambda: consumer.partitions_for_topic(topic),
                                                                    timeout, f"topic {topic}")]
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, f"could not read {topic} to its end in {timeout:.0f} s"
            for messages in consumer.poll(timeout_ms=500).values():
                values.extend(m.value for m in messages)
        return values
    finally:
        consumer.close()
