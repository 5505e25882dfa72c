"""How the Kafka source asks the broker things while it reads: lag, and how long a fetch may be held.

No broker: `KafkaSource` is built around stand-in clients. The point of both rules is time
(a request queued behind a fetch the broker holds), which a test must not measure; what is
checked is the shape that avoids the queueing: lag is asked of the client that never fetches,
and the consumers' fetch wait is short unless the config says otherwise.
"""

from __future__ import annotations

from typing import Any

from kafka import TopicPartition

from pipeline.config import KafkaConfig
from pipeline.io import kafka as kafka_io


class Fetching:
    """A client that fetches (the group, a follower): its connection may hold a long-polling fetch."""

    def __init__(self, positions: dict[TopicPartition, int], committed: dict[TopicPartition, int] | None = None):
        self.positions = positions
        self._committed = committed or {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def committed(self, tp: TopicPartition) -> int | None:
        return self._committed.get(tp)

    def end_offsets(self, partitions: Any) -> Any:
        raise AssertionError("offsets asked on a fetching client's connection wait behind its held fetch")

    beginning_offsets = end_offsets
    partitions_for_topic = end_offsets


class Offsets:
    """The client that only answers offset and metadata questions; records what it was asked."""

    def __init__(self, ends: dict[TopicPartition, int], beginnings: dict[TopicPartition, int]) -> None:
        self.ends, self.beginnings = ends, beginnings
        self.asked: list[tuple[str, list[TopicPartition]]] = []

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.asked.append(("end", list(partitions)))
        return {tp: self.ends[tp] for tp in partitions}

    def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.asked.append(("beginning", list(partitions)))
        return {tp: self.beginnings[tp] for tp in partitions}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1}


def test_lag_is_asked_of_the_client_that_never_fetches_in_one_request() -> None:
    keys, samples = TopicPartition("auth.jwks", 0), TopicPartition("auth.tokens.sampled", 0)
    mine, other = TopicPartition("auth.failures", 0), TopicPartition("auth.failures", 1)
    source = object.__new__(kafka_io.KafkaSource)
    source.keys_follower = Fetching({keys: 7})  # type: ignore[assignment]
    source.follower = Fetching({samples: 40})  # type: ignore[assignment]
    # failures partition 0 is this member's, 1 another member's (committed at 3)
    source.group = Fetching({mine: 5}, committed={other: 3})  # type: ignore[assignment]
    offsets = Offsets({keys: 10, samples: 40, mine: 9, other: 6}, {other: 0})
    source.offsets = offsets  # type: ignore[assignment]
    source.event_topics = ["auth.failures"]
    source._unreachable_since = None

    lag = source.lag()

    assert lag == {("auth.jwks", 0): 3, ("auth.tokens.sampled", 0): 0, ("auth.failures", 0): 4,
                   ("auth.failures", 1): 3}
    assert offsets.asked == [("end", [keys, samples, mine, other])]  # one request; no beginning: all committed


def test_a_partition_nobody_committed_counts_from_its_beginning() -> None:
    first, second = TopicPartition("auth.failures", 0), TopicPartition("auth.failures", 1)
    source = object.__new__(kafka_io.KafkaSource)
    source.keys_follower = Fetching({})  # type: ignore[assignment]
    source.follower = Fetching({})  # type: ignore[assignment]
    source.group = Fetching({}, committed={first: 4})  # type: ignore[assignment]
    source.offsets = Offsets({first: 10, second: 10}, {second: 6})  # type: ignore[assignment]
    source.event_topics = ["auth.failures"]
    source._unreachable_since = None

    assert source.lag() == {("auth.failures", 0): 6, ("auth.failures", 1): 4}


def test_the_consumers_fetch_wait_is_short_unless_the_config_sets_it() -> None:
    defaults = kafka_io.fetch_options(KafkaConfig())
    assert defaults["fetch_max_wait_ms"] < 500  # kafka-python's own default held the busy partition back
    chosen = KafkaConfig.model_validate({"consumer": {"fetch_max_wait_ms": 400}})
    assert kafka_io._settings(chosen, "consumer", kafka_io.fetch_options(chosen), {})["fetch_max_wait_ms"] == 400


def test_a_fetch_gathers_a_batch_worth_its_fixed_costs_unless_the_config_says_otherwise() -> None:
    defaults = kafka_io.fetch_options(KafkaConfig())
    # kafka-python's 1 byte answered steady traffic in batches of ~70 events (bench/results.md)
    assert defaults["fetch_min_bytes"] >= 64 * 1024
    assert defaults["fetch_min_bytes"] <= defaults["max_partition_fetch_bytes"]  # one partition's fetch can fill it
    chosen = KafkaConfig.model_validate({"consumer": {"fetch_min_bytes": 1}})
    assert kafka_io._settings(chosen, "consumer", kafka_io.fetch_options(chosen), {})["fetch_min_bytes"] == 1
