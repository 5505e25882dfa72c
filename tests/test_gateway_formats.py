"""Gateway log formats (envoy, kong, aws-httpapi, nginx): real lines in, events, skips and dead letters out.

The fixtures in tests/fixtures/gateways/ come from the projects' own documentation and test
suites (SOURCES.md says which); expected.json says what each line must become.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import Config, load_config, normalise_host
from pipeline.engine.reported import cause_from_reported
from pipeline.errors import ConfigError, UsageError
from pipeline.io.formats import GATEWAY_FORMATS, event_decoder, known_formats
from pipeline.metrics import Metrics
from pipeline.models import AuthFailureEvent, Cause
from pipeline.records import Envelope, Position, RecordError, RecordKind
from pipeline.runner import Pipeline
from tests.gateway_world import GATEWAYS, REJECTIONS, istio_day, istio_line, write_config

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = json.loads((GATEWAYS / "expected.json").read_text())


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return load_config(write_config(tmp_path_factory.mktemp("gw") / "jwtriage.toml"), {})


def fixture_lines(name: str) -> list[bytes]:
    return [line for line in (GATEWAYS / name).read_bytes().splitlines() if line.strip()]


def classify_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "classify", *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


# -- the fixtures, line by line ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED["expected"]))
def test_every_fixture_line_becomes_what_expected_json_says(name: str, config: Config) -> None:
    decode = event_decoder(EXPECTED["formats"][name], config)
    lines, expected = fixture_lines(name), EXPECTED["expected"][name]
    assert len(lines) == len(expected)
    for number, (line, outcome) in enumerate(zip(lines, expected, strict=True), start=1):
        if outcome == "dead":
            with pytest.raises(RecordError, match="unknown service"):
                decode(line, 1 << 20)
            continue
        event = decode(line, 1 << 20)
        if outcome == "skip":
            assert event is None, f"{name}:{number} should be skipped"
            continue
        assert isinstance(event, AuthFailureEvent), f"{name}:{number}"
        assert event.service in {"httpbin", "local", "pets"}
        assert event.reported_error and event.token is None
        cause = cause_from_reported(event.reported_error).value
        assert cause == (cause if outcome == "event" else outcome), f"{name}:{number}: {event.reported_error!r}"


@pytest.mark.parametrize("name", sorted(EXPECTED["expected"]))
def test_classify_format_reads_the_fixture_and_counts_what_it_skipped(name: str, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "jwtriage.toml")
    (tmp_path / "jwks.jsonl").write_text("")
    done = classify_cli(
        "--config",
        str(cfg),
        "--jwks",
        str(tmp_path / "jwks.jsonl"),
        "--format",
        EXPECTED["formats"][name],
        str(GATEWAYS / name),
    )
    expected = EXPECTED["expected"][name]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    events = [o for o in expected if o not in {"skip", "dead"}]
    assert len(rows) == len(events)
    for row, outcome in zip(rows, events, strict=True):
        assert outcome == "event" or row["cause"] == outcome
    err = done.stderr.decode()
    dead, skipped = expected.count("dead"), expected.count("skip")
    assert done.returncode == (1 if dead else 0), err
    assert f"{len(events)} JWT rejections judged, {skipped} lines skipped" in err
    assert f"{dead} dead letters" in err


def test_event_fields_come_from_the_line(config: Config) -> None:
    envoy, kong, aws, nginx = (event_decoder(f, config) for f in ("envoy", "kong", "aws-httpapi", "nginx"))
    e = envoy(fixture_lines("envoy.jsonl")[3], 1 << 20)
    assert e is not None and e.service == "httpbin" and e.event_id == "5e0b7d2c-95e4-4c3b-a6a1-1b3c9e2f4d55"
    assert e.ts == datetime(2020, 11, 25, 21, 27, 3, 250000, tzinfo=UTC)
    k = kong(fixture_lines("kong.jsonl")[1], 1 << 20)
    assert k is not None and k.event_id == "5b1d2f6e0a9c4e7d8f3a2b1c0d9e8f7a" and k.service == "local"
    assert k.ts == datetime.fromtimestamp(1726783862.011, UTC)
    k3 = kong(fixture_lines("kong.jsonl")[2], 1 << 20)
    assert k3 is not None and k3.event_id == "c0ffee00c0ffee00c0ffee00c0ffee00"  # the x-kong-request-id header
    a = aws(fixture_lines("aws_httpapi.jsonl")[0], 1 << 20)
    assert a is not None and a.event_id == "Mc7UVioPPHcEKPA=" and a.service == "pets"
    assert a.ts == datetime(2020, 5, 13, 4, 7, 30, tzinfo=UTC)
    a2 = aws(fixture_lines("aws_httpapi.jsonl")[1], 1 << 20)
    assert a2 is not None and a2.ts == datetime.fromtimestamp(1589342882, UTC)
    n = nginx(fixture_lines("nginx.log")[1], 1 << 20)
    assert n is not None and n.service == "local" and n.ts == datetime(2026, 11, 23, 10, 42, tzinfo=UTC)
    assert n.reported_error == 'auth_jwt: rejected due to signature validate failure: kid="test1"'
    assert n.event_id.startswith("line-sha256:") and n.request_id is None
    assert nginx(fixture_lines("nginx.log")[1], 1 << 20) == n  # the same line, the same id


def test_a_shipped_token_sha256_is_kept_and_a_bad_one_is_a_dead_letter(config: Config) -> None:
    envoy = event_decoder("envoy", config)
    line = json.loads(istio_line("jwt_authn_access_denied{Jwt_is_expired}", request_id="r1"))
    good = envoy(json.dumps({**line, "token_sha256": "AB" * 32}).encode(), 1 << 20)
    assert good is not None and good.token_sha256 == "ab" * 32
    with pytest.raises(RecordError, match="token_sha256"):
        envoy(json.dumps({**line, "token_sha256": "xyz"}).encode(), 1 << 20)


def test_a_kong_batch_array_of_one_is_read_and_a_longer_one_is_a_dead_letter(config: Config) -> None:
    kong = event_decoder("kong", config)
    entry = fixture_lines("kong.jsonl")[1]
    assert kong(b"[" + entry + b"]", 1 << 20) is not None
    with pytest.raises(RecordError, match="max_batch_size"):
        kong(b"[" + entry + b"," + entry + b"]", 1 << 20)


# -- the "Done when": Istio's default JSON log, every jwt_authn rejection ---------------


def test_istio_default_json_lines_classify_to_the_cause_they_name(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "jwtriage.toml")
    (tmp_path / "jwks.jsonl").write_text("")
    lines, expected = istio_day()
    (tmp_path / "access.log").write_text("\n".join(lines) + "\n")
    done = classify_cli(
        "--config", str(cfg), "--jwks", str(tmp_path / "jwks.jsonl"), "--format", "envoy", str(tmp_path / "access.log")
    )
    got = {row["event_id"]: row["cause"] for row in map(json.loads, done.stdout.splitlines())}
    assert got == expected  # every status, and nothing for the 200s or the stranger
    skipped = sum(1 for line in lines if '"200"' in line)
    err = done.stderr.decode()
    assert done.returncode == 1 and f"{len(REJECTIONS)} JWT rejections judged, {skipped} lines skipped" in err
    assert "unknown service: host 'evil.test'" in err and "1 dead letters" in err


def test_skipped_lines_advance_positions_and_count_in_the_metrics(config: Config) -> None:
    lines, _ = istio_day()
    envelopes = [
        Envelope(RecordKind.EVENT, line.encode(), Position("envoy.access", 0, n)) for n, line in enumerate(lines)
    ]
    pipeline = Pipeline(config, source_formats={"envoy.access": "envoy"})
    batch = pipeline.process(envelopes)
    skipped = sum(1 for line in lines if '"200"' in line)
    assert batch.skipped == {"envoy": skipped} and pipeline.counts["skipped"] == skipped
    assert batch.positions[("envoy.access", 0)] == len(lines)
    assert len(batch.dead_letters) == 1 and len(batch.judged) == len(REJECTIONS)
    metrics = Metrics()
    metrics.observe_batch(batch)
    assert metrics.registry.get_sample_value("jwtriage_records_skipped_total", {"format": "envoy"}) == skipped


def test_a_source_format_applies_to_its_source_only(config: Config) -> None:
    """`[[kafka.sources]]`: an envoy topic next to the jwtriage failures topic, each decoded its own way."""
    line = istio_line("jwt_authn_access_denied{Jwt_is_expired}", request_id="r1").encode()
    pipeline = Pipeline(config, source_formats={"envoy.access": "envoy"})
    batch = pipeline.process(
        [
            Envelope(RecordKind.EVENT, line, Position("envoy.access", 0, 0)),
            Envelope(RecordKind.EVENT, line, Position("auth.failures", 0, 0)),
        ]
    )
    assert [j.event.event_id for j in batch.judged] == ["r1"]
    assert [d.position.source for d in batch.dead_letters] == ["auth.failures"]  # not an AuthFailureEvent


# -- hostile input ------------------------------------------------------------------------------

_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)
_KEYS = st.sampled_from(
    [
        "response_code_details",
        "authority",
        ":authority",
        "start_time",
        "request_id",
        "jwt_failure",
        "response",
        "request",
        "started_at",
        "source",
        "tries",
        "status",
        "authorizerError",
        "domainName",
        "requestTimeEpoch",
        "requestTime",
        "token_sha256",
        "reported_error",
        "x-request-id",
    ]
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(GATEWAY_FORMATS)), raw=st.binary(max_size=300))
def test_decoders_are_total_on_random_bytes(name: str, raw: bytes) -> None:
    decode = event_decoder(name, _CONFIG)
    with contextlib.suppress(RecordError):
        decode(raw, 1 << 20)


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(GATEWAY_FORMATS)), obj=st.dictionaries(_KEYS, _JSONISH, max_size=8))
def test_decoders_are_total_on_json_of_the_wrong_shape(name: str, obj: dict[str, object]) -> None:
    decode = event_decoder(name, _CONFIG)
    with contextlib.suppress(RecordError):
        decode(json.dumps(obj).encode(), 1 << 20)


def test_size_cap_deep_nesting_and_bad_utf8_are_dead_letters(config: Config) -> None:
    for name in sorted(GATEWAY_FORMATS):
        decode = event_decoder(name, config)
        with pytest.raises(RecordError, match="over the 100-byte limit"):
            decode(b"x" * 101, 100)
        for raw in (b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe{}", b'{"a": 1'):
            with pytest.raises(RecordError):
                decode(raw, 1 << 20)


def test_a_huge_message_is_cut_and_a_huge_request_id_is_replaced_by_the_line_hash(config: Config) -> None:
    envoy = event_decoder("envoy", config)
    line = istio_line("jwt_authn_access_denied{" + "Jwt_is_expired_" * 50_000 + "}", request_id="x" * 5_000)
    event = envoy(line.encode(), 1 << 20)
    assert event is not None and len(event.reported_error or "") <= 2_048
    assert event.event_id.startswith("line-sha256:") and event.request_id is None


# -- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("API.Acme.test:8443", "api.acme.test"),
        ("[::1]:8080", "::1"),
        ("::1", "::1"),
        ("a.test.", "a.test"),
        (" b.test ", "b.test"),
    ],
)
def test_hosts_match_without_case_or_port(value: str, host: str) -> None:
    assert normalise_host(value) == host


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('hosts = ["httpbin"]', "is in the hosts of both"),
        ('hosts = ["a b"]', "is not a host name"),
        ('hosts = [""]', "is not a host name"),
    ],
)
def test_bad_hosts_are_config_errors(tmp_path: Path, extra: str, message: str) -> None:
    text = write_config(tmp_path / "c.toml").read_text().replace('hosts = ["localhost"]', extra)
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.toml", {})


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ('[[kafka.sources]]\ntopic = "envoy.access"\nformat = "apache"\n', "unknown event format 'apache'"),
        (
            '[[kafka.sources]]\ntopic = "a"\nformat = "envoy"\n[[kafka.sources]]\ntopic = "a"\nformat = "kong"\n',
            "topics must be unique",
        ),
        ('[[kafka.sources]]\ntopic = "auth.jwks"\nformat = "envoy"\n', "is not an event topic"),
        ('[[kafka.sources]]\ntopic = "a"\n', "format"),
    ],
)
def test_bad_kafka_sources_are_config_errors(tmp_path: Path, sources: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path / "c.toml", "\n" + sources), {})


def test_kafka_sources_read_and_default_to_none(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path / "a.toml"), {}).kafka.sources == ()
    cfg = load_config(
        write_config(tmp_path / "b.toml", '\n[[kafka.sources]]\ntopic = "envoy.access"\nformat = "envoy"\n'), {}
    )
    assert [(s.topic, s.format) for s in cfg.kafka.sources] == [("envoy.access", "envoy")]
    from pipeline.io.kafka import event_topics, source_formats, topic_kinds

    assert event_topics(cfg.kafka) == ["auth.failures", "envoy.access"]
    assert source_formats(cfg.kafka) == {"envoy.access": "envoy"}
    assert topic_kinds(cfg.kafka)["envoy.access"] is RecordKind.EVENT


def test_formats_are_named_and_a_gateway_format_needs_the_config() -> None:
    assert known_formats() == {"jwtriage", "envoy", "kong", "aws-httpapi", "nginx"}
    with pytest.raises(UsageError, match="needs the config"):
        event_decoder("envoy")


def test_classify_help_lists_the_formats() -> None:
    from pipeline.cli import main

    out = io.StringIO()
    with pytest.raises(SystemExit):
        sys_stdout, sys.stdout = sys.stdout, out
        try:
            main(["classify", "--help"])
        finally:
            sys.stdout = sys_stdout
    assert "aws-httpapi" in out.getvalue() and "--format" in out.getvalue()


_CONFIG = Config.model_validate(
    {
        "issuers": [
            {"name": "corp", "issuer": "https://login.acme.test", "jwks_uri": "https://x", "algorithms": ["RS256"]}
        ],
        "services": [{"name": "s", "issuers": ["corp"], "audience": "a", "hosts": ["httpbin", "localhost"]}],
    }
)


def test_nginx_rejections_read_as_the_cause_their_message_names(config: Config) -> None:
    """The auth_jwt messages of the fixture (kjdev/nginx-auth-jwt's own test suite) through the reported table."""

    nginx = event_decoder("nginx", config)
    causes = []
    for line in fixture_lines("nginx.log"):
        try:
            event = nginx(line, 1 << 20)
        except RecordError:
            continue
        if event is not None:
            causes.append(cause_from_reported(event.reported_error))
    assert causes == [
        Cause.BAD_SIGNATURE,  # signature validate failure: kid="test1"
        Cause.UNVERIFIABLE,  # token was not provided: says nothing about a token
        Cause.MISSING_CLAIM,  # missing claim: sub
        Cause.UNVERIFIABLE,  # "unacceptable algorithm: equals expected=..." is not in the module's current source
    ]
