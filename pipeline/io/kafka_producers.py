"""The producers jwtriage runs beside the consumer: dead letters to their topic, key snapshots to `auth.jwks`.

Both are built by `kafka.make_producer`, so they take the same connection settings as every client.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC

from pipeline.config import KafkaConfig
from pipeline.io.kafka import make_producer
from pipeline.models import JwksSnapshot
from pipeline.records import DeadLetter


class DeadLetterPublisher:
    """Sends dead letters to a DLQ topic: the reason and a redacted excerpt, never the raw value."""

    def __init__(self, kafka: KafkaConfig) -> None:
        if kafka.dead_letter_topic is None:
            raise ValueError("no dead_letter_topic configured")
        self.topic = kafka.dead_letter_topic
        self.producer = make_producer(kafka)

    def send(self, letters: Iterable[DeadLetter]) -> None:
        for letter in letters:
            body = {
                "kind": letter.kind.value,
                "source": letter.position.source,
                "partition": letter.position.partition,
                "offset": letter.position.offset,
                "reason": letter.reason,
                "excerpt": letter.excerpt,
                "received_at": letter.received_at.astimezone(UTC).isoformat(),
            }
            self.producer.send(self.topic, key=letter.position.source.encode(), value=json.dumps(body).encode())

    def close(self) -> None:
        self.producer.flush(timeout=30)
        self.producer.close(timeout=30)


class KafkaSnapshotSink:
    """A `SnapshotSink`: each snapshot to `kafka.jwks_topic`, keyed by issuer (one partition per issuer keeps order).

    `publish` waits for the broker's acknowledgement, so a snapshot is durable when it returns.
    """

    def __init__(self, kafka: KafkaConfig, send_timeout: float = 30.0) -> None:
        self.topic = kafka.jwks_topic
        self.send_timeout = send_timeout
        self._producer = make_producer(
            kafka,
            client_id="jwtriage-jwks-watch",
            retries=5,
            linger_ms=0,
            batch_size=16_384,
            max_request_size=kafka.max_message_bytes,
        )

    def publish(self, snapshot: JwksSnapshot) -> None:
        future = self._producer.send(
            self.topic, key=snapshot.issuer.encode("utf-8"), value=snapshot.model_dump_json().encode("utf-8")
        )
        future.get(timeout=self.send_timeout)

    def close(self) -> None:
        self._producer.flush(timeout=self.send_timeout)
        self._producer.close(timeout=5)
