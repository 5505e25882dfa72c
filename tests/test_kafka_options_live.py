"""The `[kafka]` pass-through options against real brokers: the shared one (PLAINTEXT) and a SASL
broker this module starts itself (SCRAM-SHA-256/512, OAUTHBEARER) on its own ports.

Each test writes records with jwtriage's producer and reads them back with its `KafkaSource`
(topic admin, group consumer, followers): every kind of client, built from the config.
Mutual TLS too (the broker requires a client certificate; the client's key is encrypted and
its passphrase comes from the environment). AWS MSK IAM is not exercised live
(tests/test_kafka_options.py checks its kwargs and start-up checks).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import KafkaConfig, load_config
from pipeline.io import kafka as kafka_io
from pipeline.records import RecordKind
from tests import kafka_sasl_broker
from tests.kafka_helpers import DEFAULT_BOOTSTRAP, wait_for_broker

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "examples" / "jwtriage.toml").read_text(encoding="utf-8")


def config_from(tmp_path: Path, bootstrap: str, lines: str, environ: dict[str, str] | None = None) -> KafkaConfig:
    """The example config with `lines` in [kafka] (and [kafka.<client>] tables after it), fresh topics."""
    prefix = f"opt{uuid.uuid4().hex[:10]}"
    top, sub, tables = lines.partition("[kafka.")
    topics = (f'failures_topic = "{prefix}.f"\nsamples_topic = "{prefix}.s"\njwks_topic = "{prefix}.j"\n'
              f'group_id = "{prefix}"\n')
    text = EXAMPLE.replace('bootstrap_servers = "127.0.0.1:9092"\ngroup_id = "jwtriage"\n',
                          f'bootstrap_servers = "{bootstrap}"\n{topics}{top}\n', 1)
    path = tmp_path / f"{prefix}.toml"
    path.write_text(text + (f"\n{sub}{tables}\n" if sub else ""), encoding="utf-8")
    return load_config(path, environ or {}).kafka


def round_trip(config: KafkaConfig, values: list[bytes]) -> list[bytes]:
    """Produce `values` to the failures topic, then read every event back through a KafkaSource."""
    assert kafka_io.produce(config, [(config.failures_topic, "svc", v) for v in values]) == len(values)
    source = kafka_io.KafkaSource(config, {}, exit_when_idle=1.0)
    try:
        source.read_jwks_to_end()
        got = [e.value for batch in source.batches() for e in batch if e.kind is RecordKind.EVENT]
    finally:
        source.close()
    return got


def test_plaintext_with_pass_through_options_on_every_client(tmp_path: Path) -> None:
    wait_for_broker(DEFAULT_BOOTSTRAP)
    config = config_from(
        tmp_path, DEFAULT_BOOTSTRAP,
        'client_id = "jwtriage-options-test"\nmetadata_max_age_ms = 30000\nconnections_max_idle_ms = 60000\n'
        'retry_backoff_ms = 50\nallow_auto_create_topics = true\n'
        '[kafka.producer]\ncompression_type = "gzip"\nlinger_ms = 0\nacks = 1\n'
        'max_in_flight_requests_per_connection = 1\n'
        '[kafka.consumer]\nisolation_level = "read_committed"\nfetch_max_wait_ms = 100\nfetch_min_bytes = 1\n'
        'partition_assignment_strategy = ["roundrobin", "range"]\n[kafka.admin]\nrequest_timeout_ms = 20000\n',
        {"JWTRIAGE_KAFKA__RECEIVE_BUFFER_BYTES": "262144"},
    )
    values = [json.dumps({"n": n, "pad": "x" * 200}).encode() for n in range(50)]
    assert sorted(round_trip(config, values)) == sorted(values)
    producer = kafka_io.make_producer(config)
    try:
        assert producer.config["compression_type"] == "gzip" and producer.config["client_id"] == "jwtriage-options-test"
        assert producer.config["receive_buffer_bytes"] == 262144 and producer.config["acks"] == 1
    finally:
        producer.close(timeout=5)


PASSPHRASE = f"CANARY-key-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[kafka_sasl_broker.SaslBroker, str]]:
    password = f"CANARY-scram-{uuid.uuid4().hex}"
    broker = kafka_sasl_broker.start(tmp_path_factory.mktemp("sasl-broker"), "jwtriage", password, PASSPHRASE)
    try:
        yield broker, password
    finally:
        broker.stop()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_with_the_password_from_a_file(
    tmp_path: Path, sasl_broker: tuple[kafka_sasl_broker.SaslBroker, str], mechanism: str
) -> None:
    broker, password = sasl_broker
    (tmp_path / "pw").write_text(password + "\n")
    config = config_from(tmp_path, broker.sasl_bootstrap,
                         f'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "{mechanism}"\n'
                         f'sasl_plain_username = "jwtriage"\nsasl_plain_password_file = "{tmp_path / "pw"}"\n'
                         '[kafka.producer]\ncompression_type = "gzip"\n')
    values = [f"scram-{n}".encode() for n in range(20)]
    assert sorted(round_trip(config, values)) == sorted(values)


def test_a_wrong_scram_password_is_refused_and_never_logged(
    tmp_path: Path, sasl_broker: tuple[kafka_sasl_broker.SaslBroker, str], caplog: pytest.LogCaptureFixture
) -> None:
    broker, password = sasl_broker
    wrong = f"CANARY-wrong-{uuid.uuid4().hex}"
    config = config_from(tmp_path, broker.sasl_bootstrap,
                         'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "SCRAM-SHA-512"\n'
                         'sasl_plain_username = "jwtriage"\nsasl_plain_password_env = "KAFKA_PW"\n'
                         'bootstrap_timeout_ms = 3000\n', {"KAFKA_PW": wrong})
    caplog.set_level(logging.DEBUG, logger="kafka")
    with pytest.raises(Exception):  # noqa: B017 - kafka-python's bootstrap timeout, whatever its class
        kafka_io.ensure_topics(config)
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "Authentication failed" in text or "SaslAuthenticat" in text, text[-2000:]
    assert wrong not in text and password not in text


def _unsigned_jwt(sub: str, lifetime: int) -> str:
    """What Kafka's built-in unsecured OAUTHBEARER validator accepts: alg none, sub and exp."""
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    return f"{part({'alg': 'none'})}.{part({'sub': sub, 'iat': now - 5, 'exp': now + lifetime})}."


def test_oauthbearer_reads_the_token_file_again_on_every_connection(
    tmp_path: Path, sasl_broker: tuple[kafka_sasl_broker.SaslBroker, str]
) -> None:
    broker, _ = sasl_broker
    token = tmp_path / "token"
    token.write_text(_unsigned_jwt("jwtriage", 600))
    config = config_from(tmp_path, broker.sasl_bootstrap,
                         f'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "OAUTHBEARER"\n'
                         f'sasl_oauth_token_file = "{token}"\nbootstrap_timeout_ms = 5000\n')
    assert round_trip(config, [b"oauth-1"]) == [b"oauth-1"]
    token.write_text(_unsigned_jwt("jwtriage", -60))  # expired: the broker refuses the next connection
    with pytest.raises(Exception):  # noqa: B017 - kafka-python's bootstrap timeout, whatever its class
        kafka_io.ensure_topics(config)
    token.write_text(_unsigned_jwt("jwtriage", 600))  # rotated: accepted again, nothing restarted
    kafka_io.ensure_topics(config)


def test_mutual_tls_with_an_encrypted_client_key(
    tmp_path: Path, sasl_broker: tuple[kafka_sasl_broker.SaslBroker, str], caplog: pytest.LogCaptureFixture
) -> None:
    broker, _ = sasl_broker
    assert broker.pki is not None
    tls = (f'security_protocol = "SSL"\nssl_cafile = "{broker.pki.ca}"\nbootstrap_timeout_ms = 5000\n'
           f'ssl_certfile = "{broker.pki.client_cert}"\nssl_keyfile = "{broker.pki.client_key}"\n')
    config = config_from(tmp_path, broker.ssl_bootstrap, tls + 'ssl_password_env = "KEY_PASS"\n',
                         {"KEY_PASS": PASSPHRASE})
    caplog.set_level(logging.DEBUG, logger="kafka")
    assert round_trip(config, [b"mtls-1", b"mtls-2"]) == [b"mtls-1", b"mtls-2"]  # hostname checked: 127.0.0.1
    assert PASSPHRASE not in caplog.text + "".join(str(r.args) for r in caplog.records)
    # Without a client certificate the broker refuses the handshake.
    bare = config_from(tmp_path, broker.ssl_bootstrap,
                       f'security_protocol = "SSL"\nssl_cafile = "{broker.pki.ca}"\nbootstrap_timeout_ms = 3000\n')
    with pytest.raises(Exception):  # noqa: B017 - kafka-python's bootstrap timeout, whatever its class
        kafka_io.ensure_topics(bare)
