"""Every Kafka client jwtriage builds gets its connection settings from `io.kafka.client_options`.

No broker needed: the kafka-python classes are replaced by recorders that keep their keyword
arguments and stop the construction there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import KafkaConfig
from pipeline.io import kafka as kafka_io
from pipeline.io import kafka_producers
from pipeline.io.base import CommittingSource
from pipeline.io.files import FileSource
from pipeline.io.memory import ListSource

ROOT = Path(__file__).resolve().parent.parent
SERVERS = "broker-1.internal:9092, broker-2.internal:9093,broker-3.internal:9094"
EXPECTED = ["broker-1.internal:9092", "broker-2.internal:9093", "broker-3.internal:9094"]


class Built(Exception):
    """Raised by a recorder once it has kept its arguments."""


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []

    def recorder(name: str) -> Any:
        def build(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, kwargs))
            raise Built(name)

        return build

    for name in ("KafkaConsumer", "KafkaProducer", "KafkaAdminClient"):
        monkeypatch.setattr(kafka_io, name, recorder(name))
    return calls


def test_a_comma_separated_bootstrap_list_reaches_every_client_the_same_way(
    built: list[tuple[str, dict[str, Any]]],
) -> None:
    config = KafkaConfig(
        bootstrap_servers=SERVERS,
        dead_letter_topic="auth.dead",
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_plain_username="jwtriage",
        sasl_plain_password="secret",
    )
    builders = {
        "the consumer's source": lambda: kafka_io.KafkaSource(config, {}),
        "the scenario producer": lambda: kafka_io.produce(config, []),
        "the dead-letter publisher": lambda: kafka_producers.DeadLetterPublisher(config),
        "jwks-watch's snapshot sink": lambda: kafka_producers.KafkaSnapshotSink(config),
        "the topic admin": lambda: kafka_io.ensure_topics(config),
    }
    for what, build in builders.items():
        before = len(built)
        with pytest.raises(Built):
            build()
        assert len(built) == before + 1, what
    assert {name for name, _ in built} == {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient"}
    shared = kafka_io.client_options(config)
    assert shared["bootstrap_servers"] == EXPECTED
    for name, options in built:
        for key, value in shared.items():
            assert options[key] == value, (name, key)


def test_no_other_module_builds_a_kafka_client() -> None:
    """Clients are built in `pipeline/io/kafka.py` only, and only `client_options` sets `bootstrap_servers`."""
    constructor = re.compile(r"\b(KafkaConsumer|KafkaProducer|KafkaAdminClient)\(")
    setting = re.compile(r"[\"']bootstrap_servers[\"']|\bbootstrap_servers\s*=")
    kafka_module = ROOT / "pipeline" / "io" / "kafka.py"
    # The reporter runs inside users' own services, without a jwtriage config: it takes
    # kafka-python options as given and must not import the config stack (pydantic).
    reporter = (ROOT / "pipeline" / "reporter.py", ROOT / "pipeline" / "reporter_worker.py")  # its child process
    elsewhere = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "pipeline").rglob("*.py"))
        if path not in (kafka_module, *reporter)
        and (constructor.search(path.read_text()) or setting.search(path.read_text()))
    ]
    assert elsewhere == []
    assert len(setting.findall(kafka_module.read_text())) == 1  # the one in client_options


def test_the_kafka_source_keeps_the_committing_source_contract_and_files_do_not() -> None:
    assert issubclass(kafka_io.KafkaSource, CommittingSource)
    assert not issubclass(ListSource, CommittingSource)
    assert not issubclass(FileSource, CommittingSource)
