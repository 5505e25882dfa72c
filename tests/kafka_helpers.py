"""Helpers for tests that talk to the local Kafka broker started by ``scripts/kafka-up.sh``.

A plain module (no fixtures); conftest.py wires these into fixtures. It also re-exports
the kafka-python client classes: import them from here, not from ``kafka``, because
kafka-python 3.x calls ``importlib.resources.read_text`` while being imported, which
Python 3.11+ reports as a DeprecationWarning, and pytest runs with
``filterwarnings = ["error"]``.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    # kafka-python 3.0 warns on import (deprecated importlib.resources calls).
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, errors

KafkaError = errors.KafkaError

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "KafkaAdminClient",
    "KafkaConsumer",
    "KafkaError",
    "KafkaProducer",
    "unique_topic",
    "wait_for_broker",
]

#: Where scripts/kafka-up.sh listens (it honours KAFKA_PORT too); KAFKA_BOOTSTRAP overrides.
DEFAULT_BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP") or f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"


def _port_open(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=2):
            return True
    except OSError:
        return False


def _admin(bootstrap: str, timeout_s: float) -> KafkaAdminClient:
    config: dict[str, Any] = {"bootstrap_servers": bootstrap, "client_id": "wait-for-broker"}
    timeout_ms = max(500, int(timeout_s * 1000))
    if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:  # kafka-python >= 3
        config["bootstrap_timeout_ms"] = timeout_ms
    config["request_timeout_ms"] = max(timeout_ms, 1000)
    return KafkaAdminClient(**config)


def wait_for_broker(bootstrap: str = DEFAULT_BOOTSTRAP, timeout: float = 60) -> dict[str, Any]:
    """Block until the cluster at ``bootstrap`` lists at least one live (unfenced) broker.

    Returns the ``describe_cluster()`` answer. Raises ``TimeoutError`` after ``timeout``
    seconds, with a hint to start the broker.
    """
    deadline = time.monotonic() + timeout
    last: object = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"no Kafka broker ready at {bootstrap} after {timeout:g}s (last: {last}); "
                "start it with `make kafka-up` (scripts/kafka-up.sh)"
            )
        if not _port_open(bootstrap):
            # Checked with a plain socket first: kafka-python 3.0 leaks a socket on every
            # refused connection (a ResourceWarning, an error under pytest).
            last = "connection refused"
            time.sleep(min(0.5, remaining))
            continue
        try:
            admin = _admin(bootstrap, min(remaining, 5.0))
            try:
                cluster = admin.describe_cluster()
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            last = exc
        else:
            if any(not b.get("is_fenced", False) for b in cluster.get("brokers", [])):
                return cluster
            last = f"cluster lists no live broker: {cluster}"
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def unique_topic(prefix: str) -> str:
    """A fresh topic name, e.g. ``unique_topic("rejections")`` -> ``rejections-3f9c0a1b2d4e``.

    Characters Kafka does not allow in topic names are replaced by ``-``.
    """
    clean = re.sub(r"[^A-Za-z0-9._-]", "-", prefix).strip("-") or "test"
    return f"{clean[:200]}-{uuid.uuid4().hex[:12]}"


#: The key a test's consumer hashes personal claims under (`consume` refuses to start without one).
TEST_HASH_KEY = "test-hash-key-" + "0" * 32


def isolated_kafka_env(prefix: str) -> dict[str, str]:
    """`JWTRIAGE_*` settings giving one test its own topics, consumer group and hash key (consume needs one)."""
    return {
        "JWTRIAGE_HASH_KEY": TEST_HASH_KEY,
        "JWTRIAGE_KAFKA__FAILURES_TOPIC": f"{prefix}.failures",
        "JWTRIAGE_KAFKA__SAMPLES_TOPIC": f"{prefix}.samples",
        "JWTRIAGE_KAFKA__JWKS_TOPIC": f"{prefix}.jwks",
        "JWTRIAGE_KAFKA__GROUP_ID": prefix,
    }
