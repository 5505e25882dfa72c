"""Smoke test of the real local Kafka broker (scripts/kafka-up.sh): keyed round trip
through a consumer group, and auto-created topics get num.partitions=4."""

from __future__ import annotations

import json
import time

import pytest

from tests.kafka_helpers import (
    DEFAULT_BOOTSTRAP,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    unique_topic,
    wait_for_broker,
)

pytestmark = pytest.mark.kafka

N_MESSAGES = 100
PARTITIONS = 4  # num.partitions in kafka-local/server.properties


def test_keyed_round_trip_through_a_consumer_group() -> None:
    wait_for_broker(DEFAULT_BOOTSTRAP, timeout=30)
    topic = unique_topic("broker-smoke")
    expected = {f"key-{i:03d}": {"seq": i, "body": f"message {i}"} for i in range(N_MESSAGES)}

    # Produce to a topic that does not exist yet: the broker auto-creates it. Keys and
    # values go as bytes: kafka-python 3 warns (an error here) about plain-callable
    # key_serializer/value_serializer, and its Serializer API differs from 2.x.
    producer = KafkaProducer(bootstrap_servers=DEFAULT_BOOTSTRAP, acks="all", linger_ms=5)
    try:
        futures = {
            key: producer.send(topic, key=key.encode(), value=json.dumps(value).encode())
            for key, value in expected.items()
        }
        producer.flush(timeout=15)
        partition_of = {key: future.get(timeout=15).partition for key, future in futures.items()}
    finally:
        producer.close(timeout=5)

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=DEFAULT_BOOTSTRAP,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    received = []
    try:
        # The auto-created topic has num.partitions partitions; 100 keys hash onto all of them.
        assert consumer.partitions_for_topic(topic) == set(range(PARTITIONS))
        assert set(partition_of.values()) == set(range(PARTITIONS))

        deadline = time.monotonic() + 15
        while len(received) < N_MESSAGES and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend(records)
        # A grace poll: nothing beyond the 100 messages (no duplicates) shows up.
        for records in consumer.poll(timeout_ms=200).values():
            received.extend(records)
        assignment = consumer.assignment()
        consumer.commit()
    finally:
        consumer.close()

    assert len(received) == N_MESSAGES
    assert {r.key.decode(): json.loads(r.value) for r in received} == expected
    assert all(r.partition == partition_of[r.key.decode()] for r in received)
    # The group's only member was assigned every partition.
    assert {tp.partition for tp in assignment} == set(range(PARTITIONS))

    admin = KafkaAdminClient(bootstrap_servers=DEFAULT_BOOTSTRAP, client_id="test-kafka-broker")
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()
