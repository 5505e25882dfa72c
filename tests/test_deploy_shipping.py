"""deploy/shipping/: the Envoy log format and the Vector, Fluent Bit and OTel Collector configs.

None of the shippers runs here; each file is parsed, and what it emits is checked against
what the `envoy` adapter and the wire models read: field names, topics, the hash.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import Config, KafkaConfig
from pipeline.engine.tokens import fingerprint
from pipeline.io.formats import envoy, event_decoder
from pipeline.models import AuthFailureEvent, SampledToken

SHIPPING = Path(__file__).resolve().parent.parent / "deploy" / "shipping"
SOURCE_TOPIC = "envoy.access"
SAMPLES_TOPIC = KafkaConfig().samples_topic


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((SHIPPING / name).read_text())
    assert isinstance(document, dict)
    return document


def kafka_source_comment(name: str) -> None:
    """Each shipper says which `[[kafka.sources]]` entry reads what it produces."""
    text = (SHIPPING / name).read_text()
    assert f'topic = "{SOURCE_TOPIC}"' in text and 'format = "envoy"' in text


@pytest.fixture(scope="module")
def config() -> Config:
    return Config.model_validate(
        {
            "issuers": [{"name": "corp", "issuer": "https://i", "jwks_uri": "https://i/j", "algorithms": ["RS256"]}],
            "services": [{"name": "payments-api", "issuers": ["corp"], "audience": "a", "hosts": ["pay.acme.test"]}],
        }
    )


def test_the_envoy_log_format_has_every_key_the_adapter_reads(config: Config) -> None:
    document = load("envoy-access-log.yaml")
    fmt = document["access_log"][0]["typed_config"]["log_format"]["json_format"]
    assert fmt["response_code_details"] == "%RESPONSE_CODE_DETAILS%"
    assert fmt["authority"] == "%REQ(:AUTHORITY)%" and "authority" in envoy.AUTHORITY_KEYS
    assert fmt["request_id"] == "%REQ(X-REQUEST-ID)%" and "request_id" in envoy.REQUEST_ID_KEYS
    assert fmt["start_time"] == "%START_TIME%" and "start_time" in envoy.TIME_KEYS
    jwt_filter = document["http_filters"][0]["typed_config"]
    key = jwt_filter["failed_status_in_metadata"]
    assert key in envoy.FAILED_STATUS_KEYS and fmt[key] == f"%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:{key})%"
    # A line in that format, as Envoy writes it for a rejection and for a failed token let through.
    values = {
        "%START_TIME%": "2026-11-23T10:42:00.123Z",
        "%RESPONSE_CODE_DETAILS%": "jwt_authn_access_denied{Jwt_is_expired}",
        "%REQ(:AUTHORITY)%": "pay.acme.test",
        "%REQ(X-REQUEST-ID)%": "req-1",
    }
    line = {k: values.get(v, "-") for k, v in fmt.items()}
    event = event_decoder("envoy", config)(json.dumps(line).encode(), 1 << 20)
    assert event is not None and (event.service, event.event_id) == ("payments-api", "req-1")
    passed = {**line, "response_code_details": "via_upstream", key: {"code": 3, "message": "Jwt is expired"}}
    event = event_decoder("envoy", config)(json.dumps(passed).encode(), 1 << 20)
    assert event is not None and event.reported_error == "Jwt is expired"


def test_the_field_names_shippers_add_are_the_wire_models() -> None:
    assert "token_sha256" in AuthFailureEvent.model_fields and "token" in SampledToken.model_fields
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
    assert hashlib.sha256(token.encode()).hexdigest() == fingerprint(token)  # what sha2/SHA256 compute


def test_vector(config: Config) -> None:
    document = load("vector.yaml")
    kafka_source_comment("vector.yaml")
    sinks, transforms = document["sinks"], document["transforms"]
    assert sinks["jwtriage_failures"]["topic"] == SOURCE_TOPIC
    assert sinks["jwtriage_samples"]["topic"] == SAMPLES_TOPIC
    assert all(sink["encoding"]["codec"] == "json" and sink["type"] == "kafka" for sink in sinks.values())
    parsed = transforms["parsed"]["source"]
    assert '.token_sha256 = sha2(token, variant: "SHA-256")' in parsed and "del(.authorization)" in parsed
    assert "response_code_details" in transforms["rejections"]["condition"]
    assert "jwt_failure" in transforms["rejections"]["condition"]
    assert '"token": ._sample' in transforms["samples"]["source"]
    assert "del(._sample)" in transforms["failures"]["source"]
    for name, transform in transforms.items():  # the graph is wired: every input exists
        for source in transform["inputs"]:
            assert source in transforms or source in document["sources"], name
    assert sinks["jwtriage_failures"]["key_field"] in envoy.AUTHORITY_KEYS


def test_fluent_bit() -> None:
    document = load("fluent-bit.yaml")
    kafka_source_comment("fluent-bit.yaml")
    pipeline = document["pipeline"]
    (output,) = pipeline["outputs"]
    assert output["name"] == "kafka" and output["topics"] == SOURCE_TOPIC and output["format"] == "json"
    grep = next(f for f in pipeline["filters"] if f["name"] == "grep")
    keys = [rule.split()[0] for rule in grep["regex"]]
    assert keys[0] == "response_code_details" and "jwt_failure" in keys[1]
    modifier = next(f for f in pipeline["filters"] if f["name"] == "record_modifier")
    assert modifier["remove_key"] == "authorization"
    assert pipeline["inputs"][0]["parser"] == document["parsers"][0]["name"]
    assert document["parsers"][0]["time_key"] in envoy.TIME_KEYS


def test_otel_collector() -> None:
    document = load("otelcol.yaml")
    kafka_source_comment("otelcol.yaml")
    exporters = document["exporters"]
    assert exporters["kafka/failures"]["topic"] == SOURCE_TOPIC and exporters["kafka/samples"]["topic"] == SAMPLES_TOPIC
    assert all(e["encoding"] == "raw" for e in exporters.values())
    statements = " ".join(document["processors"]["transform/hash_token"]["log_statements"][0]["statements"])
    assert 'set(body["token_sha256"], SHA256(cache["token"]))' in statements
    assert 'delete_key(body, "authorization")' in statements
    sample = " ".join(document["processors"]["transform/sample_record"]["log_statements"][0]["statements"])
    assert re.search(r'set\(body, \{"token": ', sample)
    for name, pipe in document["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipe[kind]:
                assert component in document[kind], f"{name}: {component}"
    rejections = document["processors"]["filter/jwt_rejections"]["logs"]["log_record"][0]
    assert "response_code_details" in rejections and "jwt_failure" in rejections
