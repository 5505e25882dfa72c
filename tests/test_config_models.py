"""Configuration (file + environment) and the wire models' contract."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.config import load_config, resolve_config_path
from pipeline.errors import ConfigError
from pipeline.models import AuthFailureEvent, json_schemas
from pipeline.records import RecordError, decode_record
from tests.world import CONFIG_TOML, T0

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "jwtriage.toml"
    path.write_text(CONFIG_TOML)
    return path


def test_defaults_and_file(config_file: Path) -> None:
    config = load_config(config_file, environ={})
    assert config.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert config.kafka.failures_topic == "auth.failures"
    assert config.store.path == "jwtriage.duckdb"
    assert config.classify.skew_window_seconds == 300
    assert config.classify.max_jwks_cache_ttl_seconds == 86400
    payments = config.service("payments-api")
    assert payments is not None and payments.leeway_seconds == 30 and payments.authorized_parties == ("web-app",)
    orders = config.service("orders-api")
    assert orders is not None and orders.required_claims == ("exp",) and orders.leeway_seconds == 0


def test_environment_overrides_file_and_flags_override_both(config_file: Path) -> None:
    config_file.write_text(CONFIG_TOML + '\n[store]\npath = "from-file.duckdb"\n[kafka]\ngroup_id = "file"\n')
    env = {
        "JWTRIAGE_DB": "from-env.duckdb",
        "JWTRIAGE_KAFKA__BOOTSTRAP_SERVERS": "10.0.0.1:9093",
        "JWTRIAGE_CLASSIFY__SKEW_WINDOW_SECONDS": "120",
        "UNRELATED": "x",
    }
    config = load_config(config_file, environ=env)
    assert config.store.path == "from-env.duckdb"
    assert config.kafka.bootstrap_servers == "10.0.0.1:9093"
    assert config.kafka.group_id == "file"
    assert config.classify.skew_window_seconds == 120
    flagged = load_config(config_file, environ=env, overrides={"store": {"path": "from-flag.duckdb"}})
    assert flagged.store.path == "from-flag.duckdb"


def test_config_path_resolution() -> None:
    assert resolve_config_path("a.toml", {"JWTRIAGE_CONFIG": "b.toml"}) == Path("a.toml")
    assert resolve_config_path(None, {"JWTRIAGE_CONFIG": "b.toml"}) == Path("b.toml")
    assert resolve_config_path(None, {}) == Path("jwtriage.toml")


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (lambda t: t.replace('audience = "api://orders"\n', ""), "services[1].audience: Field required"),
        (lambda t: t.replace('issuers = ["staging"]', 'issuers = ["nope"]'), "unknown issuer(s) ['nope']"),
        (lambda t: t.replace('algorithms = ["RS256"]', 'algorithms = ["HS257"]'), "issuers[1].algorithms"),
        (lambda t: t.replace("leeway_seconds = 30", 'leeway_seconds = "soon"'), "services[0].leeway_seconds"),
        (lambda t: t + "\n[kafka]\nbootstrap = 1\n", "kafka: unknown key 'bootstrap' (did you mean 'bootstrap_"),
        (lambda t: t + "\n[[services\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_file_and_the_key(config_file: Path, mutation: object, expected: str) -> None:
    config_file.write_text(mutation(CONFIG_TOML))  # type: ignore[operator]
    with pytest.raises(ConfigError) as err:
        load_config(config_file, environ={})
    assert str(config_file) in str(err.value)
    assert expected in str(err.value)


def test_bad_environment_value_names_the_key(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("classify.skew_window_seconds")):
        load_config(config_file, environ={"JWTRIAGE_CLASSIFY__SKEW_WINDOW_SECONDS": "lots"})


def test_missing_config_file_gives_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("examples/jwtriage.toml")):
        load_config(tmp_path / "nope.toml", environ={})


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "examples" / "jwtriage.toml", environ={})
    assert config.services and config.issuers


@pytest.mark.parametrize("name", sorted(json_schemas()))
def test_json_schemas_are_in_sync(name: str) -> None:
    stored = json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())
    assert stored == json_schemas()[name], "run `python -m pipeline.models` to regenerate schemas/"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "should be an object"),
        (b'{"event_id": "e", "service": "s"}', "ts: Field required"),
        (b'{"event_id": "e", "ts": "2026-11-20T12:00:00", "service": "s"}', "UTC offset"),
        (b'{"event_id": 7, "ts": "2026-11-20T12:00:00Z", "service": "s"}', "event_id"),
        (b'{"event_id": "e", "ts": "2026-11-20T12:00:00Z", "service": "s", "token_sha256": "xyz"}', "token_sha256"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
)
def test_bad_records_have_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(RecordError) as err:
        decode_record(raw, AuthFailureEvent)
    assert reason in str(err.value)


def test_oversized_record_is_refused_before_parsing() -> None:
    with pytest.raises(RecordError, match="over the 100-byte limit"):
        decode_record(b'{"x": "' + b"a" * 200 + b'"}', AuthFailureEvent, max_bytes=100)


def test_record_with_offset_other_than_utc_is_accepted() -> None:
    raw = b'{"event_id": "e", "ts": "2026-11-20T13:00:00+01:00", "service": "s", "extra": 1}'
    event = decode_record(raw, AuthFailureEvent)
    assert event.ts.utcoffset() is not None and event.ts.timestamp() == T0.timestamp()


def test_a_typo_names_the_nearest_key_and_nothing_unrelated(config_file: Path) -> None:
    """Issue 18: `leeway_second` → the nearest valid key, not "services: Tuple should have at least 1 item"."""
    config_file.write_text(CONFIG_TOML.replace("leeway_seconds", "leeway_second"))
    with pytest.raises(ConfigError) as err:
        load_config(config_file, environ={})
    text = str(err.value)
    assert "services[0]" in text and "unknown key 'leeway_second' (did you mean 'leeway_seconds'?)" in text
    assert "at least 1 item" not in text and "Extra inputs" not in text


def test_a_typo_in_an_environment_variable_blames_the_variable(config_file: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(config_file, environ={"JWTRIAGE_KAFKA__BOOTSTRAP_SERVER": "kafka:9092"})
    text = str(err.value)
    assert text.startswith("invalid configuration in the environment")
    assert "JWTRIAGE_KAFKA__BOOTSTRAP_SERVER" in text and "did you mean JWTRIAGE_KAFKA__BOOTSTRAP_SERVERS?" in text
    assert f"{config_file}: invalid" not in text and "kafka:9092" not in text  # never the value (a password?)
