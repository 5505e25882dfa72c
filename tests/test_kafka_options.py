"""The `[kafka]` pass-through table: every kafka-python option settable, checked, typed; secrets hidden.

No broker: the kafka-python classes are replaced by recorders that keep their keyword
arguments (as in test_io_kafka.py), except where a real client is built to see what it logs.
"""

from __future__ import annotations

import logging
import socket
import ssl
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import KafkaConfig, load_config
from pipeline.errors import ConfigError
from pipeline.io import kafka as kafka_io
from pipeline.io import kafka_options
from tests import kafka_sasl_broker

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "examples" / "jwtriage.toml").read_text(encoding="utf-8")

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor


class Built(Exception):
    """Raised by a recorder once it has kept its arguments."""


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[dict[str, Any]]]:
    calls: dict[str, list[dict[str, Any]]] = {"KafkaConsumer": [], "KafkaProducer": [], "KafkaAdminClient": []}

    def recorder(name: str) -> Any:
        def build(*args: Any, **kwargs: Any) -> Any:
            calls[name].append(kwargs)
            raise Built(name)

        return build

    for name in calls:
        monkeypatch.setattr(kafka_io, name, recorder(name))
    return calls


def canary(kind: str) -> str:
    return f"CANARY-{kind}-{uuid.uuid4().hex}"


def load(tmp_path: Path, kafka_lines: str, environ: dict[str, str] | None = None) -> KafkaConfig:
    path = tmp_path / f"{uuid.uuid4().hex}.toml"
    top, sub, tables = kafka_lines.partition("[kafka.")  # [kafka.<client>] tables go to the end of the file
    text = EXAMPLE.replace("[kafka]\n", f"[kafka]\n{top}\n", 1) + (f"\n{sub}{tables}\n" if sub else "")
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ or {}).kafka


def load_error(tmp_path: Path, kafka_lines: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, kafka_lines, environ)
    return str(caught.value)


def build_all(config: KafkaConfig) -> None:
    for build in (lambda: kafka_io.KafkaSource(config, {}), lambda: kafka_io.produce(config, []),
                  lambda: kafka_io.ensure_topics(config)):
        with pytest.raises(Built):
            build()


def test_the_table_is_kafka_pythons_own_option_lists() -> None:
    table = kafka_options.option_table()
    for client, cls in (("consumer", KafkaConsumer), ("producer", KafkaProducer), ("admin", KafkaAdminClient)):
        assert {n for n, by in table.items() if client in by} == set(cls.DEFAULT_CONFIG)
        # Every option is settable, refused with a reason, or built from plain keys.
        for name in cls.DEFAULT_CONFIG:
            assert (name in kafka_options.settable(client)) + (name in kafka_options.REFUSED) + (
                name in kafka_options.BUILT) == 1, name
    assert len(kafka_options.settable()) >= 50


def test_pass_through_options_reach_the_clients_that_take_them_typed(
    tmp_path: Path, built: dict[str, list[dict[str, Any]]]
) -> None:
    config = load(
        tmp_path,
        'metadata_max_age_ms = 60000\ncompression_type = "gzip"\nfetch_min_bytes = 1024\n'
        'api_version = "3.7"\nsocket_options = [[6, 1, 1]]\n'
        'client_dns_lookup = "resolve_canonical_bootstrap_servers_only"\n'
        '[kafka.consumer]\nisolation_level = "read_committed"\npartition_assignment_strategy = ["roundrobin"]\n'
        'check_crcs = true\n[kafka.producer]\nlinger_ms = 5\nacks = 1\n[kafka.admin]\nrequest_timeout_ms = 7000\n',
        {"JWTRIAGE_KAFKA__RECONNECT_BACKOFF_MAX_MS": "9000", "JWTRIAGE_KAFKA__METRICS_ENABLED": "false"},
    )
    build_all(config)
    consumers, (producer,), (admin,) = built["KafkaConsumer"], built["KafkaProducer"], built["KafkaAdminClient"]
    assert len(consumers) == 1  # the group member (the recorder stops KafkaSource there)
    for options in (*consumers, producer, admin):
        assert options["metadata_max_age_ms"] == 60000 and options["api_version"] == (3, 7)
        assert options["socket_options"] == [(6, 1, 1)]
        assert options["reconnect_backoff_max_ms"] == 9000  # the environment's text, as an integer
    for options in consumers:
        assert options["fetch_min_bytes"] == 1024 and options["isolation_level"] == "read_committed"
        assert options["partition_assignment_strategy"] == (RoundRobinPartitionAssignor,)
        assert options["check_crcs"] is True and options["metrics_enabled"] is False
        assert options["enable_auto_commit"] is False  # jwtriage's own, whatever the config
        assert "compression_type" not in options and "linger_ms" not in options
    assert consumers[0]["group_id"] == config.group_id and consumers[0]["max_poll_records"] == kafka_io.BATCH_RECORDS
    assert producer["compression_type"] == "gzip" and producer["linger_ms"] == 5 and producer["acks"] == 1
    assert "fetch_min_bytes" not in producer and "fetch_min_bytes" not in admin
    assert admin["request_timeout_ms"] == 7000 and producer["request_timeout_ms"] == 15_000  # jwtriage's default


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("metadata_max_age = 1", "unknown key 'metadata_max_age' (did you mean 'metadata_max_age_ms'?)"),
        ("boostrap_servers = 'x:1'", "unknown key 'boostrap_servers' (did you mean 'bootstrap_servers'?)"),
        ("[kafka.consumer]\nfetch_min_byte = 1", "unknown key 'fetch_min_byte'"),
        ("[kafka.consumer]\nfetch_min_byte = 1", "did you mean 'fetch_min_bytes'?"),
        ("[kafka.consumer]\nlinger_ms = 1", "[kafka.consumer]: unknown key 'linger_ms'"),
        ("[kafka.streams]\nlinger_ms = 1", "unknown key 'streams'"),
        ("enable_auto_commit = true", "enable_auto_commit cannot be set: jwtriage commits offsets itself"),
        ("[kafka.consumer]\nvalue_deserializer = 'json'", "value_deserializer cannot be set: jwtriage reads raw"),
        ("[kafka.consumer]\ngroup_id = 'other'", "group_id cannot be set: the group is [kafka] group_id"),
        ("[kafka.producer]\nsasl_plain_password = 'x'", "[kafka.producer]: set sasl_plain_password in [kafka]"),
        ("ssl_context = 'x'", "ssl_context cannot be set: it is built from ssl_cafile"),
        ("sasl_oauth_token_provider = 'x'", "it is built from sasl_oauth_token_file"),
        ("partitioner = 'murmur2'", "partitioner cannot be set: takes a Python object"),
        ("metadata_max_age_ms = 'soon'", "metadata_max_age_ms must be a number"),
        ("metadata_max_age_ms = 1.5", "metadata_max_age_ms must be an integer"),
        ("allow_auto_create_topics = 'perhaps'", "allow_auto_create_topics must be true or false"),
        ("[kafka.consumer]\npartition_assignment_strategy = ['fair']", "a list of assignor names from"),
    ],
)
def test_a_key_that_cannot_be_used_is_refused_with_a_hint(tmp_path: Path, lines: str, expected: str) -> None:
    message = load_error(tmp_path, lines)
    assert expected in message, message
    assert "Traceback" not in message and "Value error" not in message


def test_an_unknown_key_in_the_environment_blames_the_variable(tmp_path: Path) -> None:
    message = load_error(tmp_path, "", {"JWTRIAGE_KAFKA__METADATA_MAX_AGE": "1"})
    assert "JWTRIAGE_KAFKA__METADATA_MAX_AGE" in message and "JWTRIAGE_KAFKA__METADATA_MAX_AGE_MS?" in message


def test_a_bad_value_is_never_repeated(tmp_path: Path) -> None:
    secret = canary("value")
    for lines in (f'metadata_max_age_ms = "{secret}"', f'[kafka.producer]\nacks = {{ x = "{secret}" }}',
                  f'sasl_plain_password = "{secret}"\nsasl_plain_password_env = "PW"',
                  f'sasl_oauth_token = "{secret}"\nmetadata_max_age = 1'):
        assert secret not in load_error(tmp_path, lines, {"PW": "x"}), lines


def test_scram_kwargs_with_the_password_from_the_environment(
    tmp_path: Path, built: dict[str, list[dict[str, Any]]]
) -> None:
    password = canary("scram")
    config = load(tmp_path, 'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "SCRAM-SHA-512"\n'
                  'sasl_plain_username = "jwtriage"\nsasl_plain_password_env = "KAFKA_PASSWORD"',
                  {"KAFKA_PASSWORD": password + "\n"})
    assert password not in repr(config) and password not in config.model_dump_json()
    options = kafka_io.client_options(config, "producer")
    assert {k: options[k] for k in ("security_protocol", "sasl_mechanism", "sasl_plain_username")} == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "jwtriage"}
    assert options["sasl_plain_password"] == password and password not in repr(options)
    assert "ssl_context" not in options and "sasl_oauth_token_provider" not in options
    assert "KAFKA_PASSWORD is not set" in load_error(tmp_path, 'sasl_plain_password_env = "KAFKA_PASSWORD"')


def test_oauthbearer_reads_its_token_file_on_every_connection(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    config = load(tmp_path, f'security_protocol = "SASL_SSL"\nsasl_mechanism = "OAUTHBEARER"\n'
                  f'sasl_oauth_token_file = "{token_file}"\nsasl_oauth_extensions = {{ logicalCluster = "lkc-1" }}')
    options = kafka_io.client_options(config)
    provider = options["sasl_oauth_token_provider"]
    assert isinstance(provider, kafka_options.token_provider_base())
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert provider.token() == "first-token" and provider.extensions() == {"logicalCluster": "lkc-1"}
    token_file.write_text("rotated-token")
    assert provider.token() == "rotated-token"
    assert kafka_io.client_options(config, "consumer")["sasl_oauth_token_provider"] is provider  # one, shared
    assert "first-token" not in repr(provider)
    # A fixed token from the environment; none at all is a config error with a hint.
    secret = canary("oauth")
    fixed = load(tmp_path, 'security_protocol = "SASL_SSL"\nsasl_mechanism = "OAUTHBEARER"\n'
                 'sasl_oauth_token_env = "TOKEN"', {"TOKEN": secret})
    assert kafka_io.client_options(fixed)["sasl_oauth_token_provider"].token() == secret
    with pytest.raises(ConfigError, match="needs sasl_oauth_token_file"):
        kafka_io.client_options(load(tmp_path, 'security_protocol = "SASL_SSL"\nsasl_mechanism = "OAUTHBEARER"'))
    assert "cannot read" in load_error(tmp_path, f'sasl_oauth_token_file = "{tmp_path / "none"}"')


def test_aws_msk_iam_is_checked_before_the_first_connection(tmp_path: Path) -> None:
    wrong = load(tmp_path, 'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "AWS_MSK_IAM"')
    with pytest.raises(ConfigError, match='needs security_protocol = "SASL_SSL"'):
        kafka_io.client_options(wrong)
    right = load(tmp_path, 'security_protocol = "SASL_SSL"\nsasl_mechanism = "AWS_MSK_IAM"')
    try:
        import botocore  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="needs the botocore package"):
            kafka_io.client_options(right)
    else:
        assert kafka_io.client_options(right)["sasl_mechanism"] == "AWS_MSK_IAM"


def test_mtls_builds_one_ssl_context_and_a_wrong_passphrase_is_a_config_error(tmp_path: Path) -> None:
    passphrase = canary("ssl")
    pki = kafka_sasl_broker.write_pki(tmp_path, passphrase)
    ca, cert, key = pki.ca, pki.client_cert, pki.client_key
    (tmp_path / "pass").write_text(passphrase)
    tls = (f'security_protocol = "SSL"\nssl_cafile = "{ca}"\nssl_certfile = "{cert}"\nssl_keyfile = "{key}"\n'
           'ssl_check_hostname = false\n')
    config = load(tmp_path, tls + f'ssl_password_file = "{tmp_path / "pass"}"')
    options = kafka_io.client_options(config, "admin")
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED and context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert kafka_io.client_options(config, "consumer")["ssl_context"] is context
    assert options["ssl_password"] == passphrase and passphrase not in repr(options)
    wrong = canary("wrong")
    with pytest.raises(ConfigError) as caught:
        kafka_io.client_options(load(tmp_path, tls + f'ssl_password = "{wrong}"'))
    assert "ssl_certfile/ssl_keyfile: cannot load" in str(caught.value) and "passphrase" in str(caught.value)
    assert wrong not in str(caught.value) and passphrase not in str(caught.value)
    with pytest.raises(ConfigError, match="ssl_cafile: cannot load"):
        kafka_io.client_options(load(tmp_path, f'security_protocol = "SSL"\nssl_cafile = "{tmp_path / "none"}"'))


def test_a_real_client_logging_its_configuration_never_shows_a_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KafkaAdminClient logs its whole configuration at DEBUG; the secrets in it are masked."""
    password, passphrase = canary("sasl"), canary("ssl")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing answers there
    config = load(tmp_path, 'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "SCRAM-SHA-256"\n'
                  'sasl_plain_username = "jwtriage"\nbootstrap_timeout_ms = 300',
                  {"JWTRIAGE_KAFKA__SASL_PLAIN_PASSWORD": password, "JWTRIAGE_KAFKA__SSL_PASSWORD": passphrase,
                   "JWTRIAGE_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    caplog.set_level(logging.DEBUG, logger="kafka")
    with pytest.raises(Exception):  # noqa: B017 - no broker: whatever kafka-python raises
        KafkaAdminClient(**kafka_io.client_options(config, "admin"))
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "Starting KafkaAdminClient with configuration" in logged and "'**********'" in logged
    assert password not in logged and passphrase not in logged


def test_the_docs_list_every_installed_option_and_their_examples_load(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "kafka-options.md").read_text(encoding="utf-8")
    missing = [name for name in kafka_options.option_table() if f"| `{name}` |" not in doc]
    assert missing == [], "regenerate the table: python -m pipeline.io.kafka_options"
    blocks = [b.split("```", 1)[0] for b in doc.split("```toml\n")[1:]]
    assert len(blocks) == 5
    (tmp_path / "secret").write_text("x")
    for block in blocks:
        lines = block.replace("[kafka]\n", "").replace("/run/secrets/kafka-password", str(tmp_path / "secret"))
        lines = lines.replace("/var/run/secrets/kafka/token", str(tmp_path / "secret"))
        lines = "\n".join(x for x in lines.splitlines() if not x.startswith("bootstrap_servers"))
        config = load(tmp_path, lines, {"KAFKA_KEY_PASSPHRASE": "x"})
        assert config.security_protocol or config.options
    tuned = load(tmp_path, "[kafka.consumer]\npartition_assignment_strategy = [\"cooperative-sticky\"]")
    assert tuned.consumer["partition_assignment_strategy"] == ("cooperative-sticky",)
    assert tuned.model_dump_json()  # the config stays plain data
    strategy = kafka_io.client_options(tuned, "consumer")["partition_assignment_strategy"]
    assert [cls.name for cls in strategy] == ["cooperative-sticky"]


def test_help_and_a_config_error_from_the_command_line_never_show_the_new_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.cli import COMMANDS, main

    token, password = canary("oauth"), canary("envpw")
    monkeypatch.setenv("JWTRIAGE_KAFKA__SASL_OAUTH_TOKEN", token)
    monkeypatch.setenv("KAFKA_PASSWORD", password)
    for argv in (["--help"], *([name, "--help"] for name, _ in COMMANDS)):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr()
        assert token not in out.out + out.err and password not in out.out + out.err, argv
    path = tmp_path / "bad.toml"
    path.write_text(EXAMPLE.replace("[kafka]\n", '[kafka]\nsasl_plain_password_env = "KAFKA_PASSWORD"\n'
                                    "metadata_max_age = 5\nenable_auto_commit = true\n", 1), encoding="utf-8")
    (tmp_path / "events.jsonl").write_text("")
    try:
        code = main(["classify", "--config", str(path), "--jwks", str(tmp_path / "events.jsonl"),
                     str(tmp_path / "events.jsonl")])
    except SystemExit as exited:
        code = exited.code
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 2, text
    assert "enable_auto_commit cannot be set" in text or "metadata_max_age" in text
    assert token not in text and password not in text
