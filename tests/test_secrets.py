"""Canary secrets through every path: no secret value in a log, an error, a dead letter, a metric or `--help`.

Each test puts unique strings where the config's secrets go (the Kafka SASL password, the
TLS key's passphrase, the store's hash key), inline, from the environment and from
`*_file` files, then drives a path that could echo them and asserts no canary appears.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from pipeline.cli import COMMANDS, main
from pipeline.config import Config, KafkaConfig, load_config
from pipeline.errors import ConfigError
from pipeline.io import kafka as kafka_io

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "examples" / "jwtriage.toml").read_text(encoding="utf-8")


def canary(kind: str) -> str:
    return f"CANARY-{kind}-{uuid.uuid4().hex}"


def with_kafka(extra: str) -> str:
    """The example config with lines added to its [kafka] table."""
    return EXAMPLE.replace("[kafka]\n", f"[kafka]\n{extra}\n", 1)


def config_error(tmp_path: Path, toml: str, environ: dict[str, str] | None = None) -> str:
    path = tmp_path / f"{uuid.uuid4().hex}.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return str(caught.value)


def test_secrets_are_secret_str_and_read_from_files_and_the_environment(tmp_path: Path) -> None:
    password, passphrase, key = canary("sasl"), canary("ssl"), canary("hashkey")
    (tmp_path / "pw").write_text(password + "\n")
    (tmp_path / "key").write_text(key)
    path = tmp_path / "c.toml"
    path.write_text(with_kafka(f'sasl_plain_password_file = "{tmp_path / "pw"}"'), encoding="utf-8")
    environ = {"JWTRIAGE_KAFKA__SSL_PASSWORD": passphrase, "JWTRIAGE_STORE__HASH_KEY_FILE": str(tmp_path / "key")}
    config = load_config(path, environ)
    assert isinstance(config.kafka.sasl_plain_password, SecretStr)
    assert config.kafka.sasl_plain_password.get_secret_value() == password  # the file's newline is dropped
    assert config.kafka.ssl_password is not None and config.kafka.ssl_password.get_secret_value() == passphrase
    assert config.store.hash_key is not None and config.store.hash_key.get_secret_value() == key
    for text in (repr(config), str(config), config.model_dump_json(), repr(config.kafka), str(config.model_dump())):
        assert password not in text and passphrase not in text and key not in text
    # The Kafka clients get the value itself, revealed at the last moment.
    options = kafka_io.client_options(config.kafka)
    assert options["sasl_plain_password"] == password and options["ssl_password"] == passphrase


def test_config_errors_never_echo_a_secret(tmp_path: Path) -> None:
    secret = canary("sasl")
    (tmp_path / "pw").write_text(secret)
    broken = {
        "another key is invalid": with_kafka(f'sasl_plain_password = "{secret}"\nmax_message_bytes = -1'),
        "a secret of the wrong type": with_kafka(f'sasl_plain_password = ["{secret}"]'),
        "a secret and its file": with_kafka(
            f'sasl_plain_password = "{secret}"\nsasl_plain_password_file = "{tmp_path / "pw"}"'
        ),
        "a misspelt secret key": with_kafka(f'sasl_plain_pasword = "{secret}"'),
        "a TOML error on the secret's line": with_kafka(f'sasl_plain_password = "{secret}'),
        "a passphrase of the wrong type": with_kafka(f"ssl_password = {{ value = '{secret}' }}"),
        "a hash key too short": EXAMPLE.replace("[store]\n", f'[store]\nhash_key = "{secret[:30]}"\n', 1),
    }
    for what, toml in broken.items():
        message = config_error(tmp_path, toml)
        assert secret not in message and secret[:30] not in message, (what, message)
    from_env = config_error(tmp_path, with_kafka("max_message_bytes = -1"), {"JWTRIAGE_HASH_KEY": secret[:30]})
    assert secret[:30] not in from_env and "hash_key" in from_env
    missing = config_error(tmp_path, with_kafka(f'sasl_plain_password_file = "{tmp_path / "nope"}"'))
    assert "nope" in missing and "No such file" in missing
    # A ValidationError raised outside load_config (a model built in code) does not show its input either.
    with pytest.raises(ValidationError) as caught:
        KafkaConfig.model_validate({"sasl_plain_password": secret, "max_message_bytes": -1})
    assert secret not in str(caught.value) and secret not in repr(caught.value.errors())
    short = f"S{uuid.uuid4().hex[:10]}"  # pydantic shortens long inputs in the middle: a short one shows whole
    with pytest.raises(ValidationError) as whole:  # an error about the whole table would show the whole table
        KafkaConfig.model_validate({"sasl_plain_password_file": "/x", "sasl_plain_password": short})
    assert short not in str(whole.value)  # (its .errors() still hold the input: `_format_error` reads only msg)
    with pytest.raises(ValidationError) as both:
        Config.model_validate({"issuers": [], "services": [], "kafka": {"sasl_plain_password": secret, "x": 1}})
    assert secret not in str(both.value)


def test_help_never_shows_a_secret(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "JWTRIAGE_KAFKA__SASL_PLAIN_PASSWORD": canary("sasl"),
        "JWTRIAGE_KAFKA__SSL_PASSWORD": canary("ssl"),
        "JWTRIAGE_HASH_KEY": canary("hashkey"),
        "JWTRIAGE_DASHBOARD__AUTH__CLIENT_SECRET": canary("oidc"),
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    for argv in (["--help"], *([name, "--help"] for name, _ in COMMANDS)):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
        out = capsys.readouterr()
        assert out.out and not any(v in out.out + out.err for v in secrets.values()), argv


def _jwtriage(*args: str, env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.kafka
def test_a_consumer_refused_by_sasl_never_logs_its_password(tmp_path: Path) -> None:
    """The local broker speaks PLAINTEXT: the SASL handshake fails; kafka-python retries, gives up, logs it all."""
    password, passphrase = canary("sasl"), canary("ssl")
    (tmp_path / "pw").write_text(password)
    config = tmp_path / "c.toml"
    config.write_text(
        with_kafka(
            'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\nsasl_plain_username = "jwtriage"\n'
            f'sasl_plain_password_file = "{tmp_path / "pw"}"'
        ),
        encoding="utf-8",
    )
    prefix = f"sec{uuid.uuid4().hex[:8]}"
    env = {
        "JWTRIAGE_HASH_KEY": canary("hashkey"),
        "JWTRIAGE_KAFKA__SSL_PASSWORD": passphrase,
        "JWTRIAGE_KAFKA__GROUP_ID": prefix,
        "JWTRIAGE_KAFKA__FAILURES_TOPIC": f"{prefix}.f",
    }
    result = _jwtriage("-v", "consume", "--config", str(config), "--db", str(tmp_path / "s.duckdb"),
                       "--exit-when-idle", "2", env=env, cwd=tmp_path, timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Sasl" in output  # it did try, and failed, and said so
    assert password not in output and passphrase not in output and env["JWTRIAGE_HASH_KEY"] not in output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.kafka
def test_a_running_consumer_keeps_its_secrets_out_of_logs_dead_letters_metrics_and_the_store(tmp_path: Path) -> None:
    from tests.reliability.kafka_run import KafkaRun, produce_tracked, read_topic, wait_for
    from tests.reliability.scenarios import scenario, tagged_records

    sc = scenario(300, 5)
    password, passphrase, key = canary("sasl"), canary("ssl"), canary("hashkey")
    (tmp_path / "ssl-pw").write_text(passphrase)
    run = KafkaRun.create(tmp_path / "run", sc.config_toml)
    run.env.update(
        {
            "JWTRIAGE_HASH_KEY": key,
            "JWTRIAGE_KAFKA__SASL_PLAIN_PASSWORD": password,  # unused on PLAINTEXT, but loaded and carried
            "JWTRIAGE_KAFKA__SSL_PASSWORD_FILE": str(tmp_path / "ssl-pw"),
            "JWTRIAGE_KAFKA__DEAD_LETTER_TOPIC": run.kafka.failures_topic + ".dlq",
        }
    )
    try:
        bad = [b"not json", json.dumps({"event_id": "x", "service": "nope"}).encode(), b'{"token": 5}']
        records = [(r.topic, r.key, r.value) for r in tagged_records(sc, run.kafka)]
        records += [(run.kafka.failures_topic, None, value) for value in bad]
        produce_tracked(run.kafka, records)
        port = _free_port()
        consumer = run.consumer("--metrics-port", str(port), "--publish-interval", "1", verbose=True)
        wait_for(lambda: run.stored_rows() >= len(sc.events), 120, "the consumer's rows", every=0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        consumer.process.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=60) == 0, consumer.output()
        letters = run.query("SELECT * FROM dead_letters")
        published = read_topic(run.kafka, run.kafka.failures_topic + ".dlq")
        assert len(letters) >= len(bad) and len(published) >= len(bad)
        assert "jwtriage_events_total" in metrics
        texts = {
            "logs": consumer.output(),
            "dead letters": repr(letters),
            "dead-letter topic": repr(published),
            "metrics": metrics,
        }
        for where, text in texts.items():
            for secret in (password, passphrase, key):
                assert secret not in text, where
        for store_file in sorted(p for p in run.db.parent.rglob("*.duckdb*") if p.is_file()):  # key never stored
            raw = store_file.read_bytes()
            assert all(secret.encode() not in raw for secret in (password, passphrase, key)), store_file
    finally:
        run.close()
