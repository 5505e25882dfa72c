"""The scenario simulator: deterministic, well-formed streams whose truth follows DESIGN.md.

The truth is what the classifier's accuracy is measured against, so these tests re-derive
as much of it as they can independently of the simulator's own judge: signatures are
checked with PyJWT against the keys in the emitted JWKS snapshots, key timing against the
snapshot times as emitted, and bad lines against the wire model.
"""

from __future__ import annotations

import ast
import hashlib
import json
import tomllib
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jwt
import pytest
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from pipeline.models import Attack, AuthFailureEvent, Cause, Confidence, JwksSnapshot, SampledToken
from pipeline.simulator import DEFAULT_START, REPORTED_ERRORS, Scenario, simulate, write_scenario
from pipeline.simulator.scenario import simulate_with_intent

SMALL = 3000


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return simulate(seed=7, events=SMALL)


@pytest.fixture(scope="module")
def config(scenario: Scenario) -> dict[str, Any]:
    return tomllib.loads(scenario.config_toml)


@pytest.fixture(scope="module")
def events(scenario: Scenario) -> list[AuthFailureEvent | None]:
    """The events lines as the wire model reads them (None for a line it rejects)."""
    out: list[AuthFailureEvent | None] = []
    for record in scenario.events:
        try:
            out.append(AuthFailureEvent.model_validate_json(record.value))
        except ValidationError:
            out.append(None)
    return out


@pytest.fixture(scope="module")
def snapshots(scenario: Scenario) -> list[JwksSnapshot]:
    return [JwksSnapshot.model_validate_json(r.value) for r in scenario.snapshots]


@pytest.fixture(scope="module")
def samples(scenario: Scenario) -> dict[str, str]:
    """fingerprint → token, from the samples stream."""
    out = {}
    for record in scenario.samples:
        token = SampledToken.model_validate_json(record.value).token
        out[hashlib.sha256(token.encode("utf-8")).hexdigest()] = token
    return out


def _timeline(snapshots: list[JwksSnapshot]) -> dict[str, Any]:
    """first_seen / removed_at per (issuer URL, kid), and each issuer's earliest snapshot,
    re-derived here from the snapshots exactly as DESIGN.md step 8 defines them."""
    first: dict[tuple[str, str], datetime] = {}
    removed: dict[tuple[str, str], datetime] = {}
    earliest: dict[str, datetime] = {}
    held: dict[str, set[str]] = {}
    jwks: dict[str, dict[str, Any]] = {}
    for snap in sorted(snapshots, key=lambda s: (s.issuer, s.fetched_at)):
        kids = {k["kid"] for k in snap.jwks["keys"]}
        earliest.setdefault(snap.issuer, snap.fetched_at)
        for key in snap.jwks["keys"]:
            first.setdefault((snap.issuer, key["kid"]), snap.fetched_at)
            jwks[key["kid"]] = key
        for kid in held.get(snap.issuer, set()) - kids:
            removed.setdefault((snap.issuer, kid), snap.fetched_at)
        held[snap.issuer] = kids
    return {"first": first, "removed": removed, "earliest": earliest, "jwks": jwks}


def _token_of(event: AuthFailureEvent, samples: dict[str, str]) -> str | None:
    if event.token is not None:
        return event.token
    return samples.get(event.token_sha256 or "")


# -- determinism ---------------------------------------------------------------------------


def _written(tmp_path: Path, name: str, scenario: Scenario) -> dict[str, bytes]:
    paths = write_scenario(scenario, tmp_path / name)
    assert set(paths) == {"config", "jwks", "events", "samples", "truth"}
    return {role: path.read_bytes() for role, path in paths.items()}


def test_same_seed_gives_byte_identical_output_and_another_seed_differs(tmp_path: Path) -> None:
    first = _written(tmp_path, "a", simulate(seed=11, events=1500))
    again = _written(tmp_path, "b", simulate(seed=11, events=1500))
    other = _written(tmp_path, "c", simulate(seed=12, events=1500))
    assert first == again
    assert first["events"] != other["events"]
    assert first["truth"] != other["truth"]


def test_start_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        simulate(events=10, start=datetime(2026, 11, 23))  # a naive start: the point of the test


def test_unique_tokens_gives_every_token_event_its_own_token() -> None:
    scenario = simulate(seed=3, events=300, unique_tokens=True)
    tokens: Counter[str] = Counter()
    for record, row in zip(scenario.events, scenario.truth, strict=True):
        if row["dead_letter"] is None:
            event = json.loads(record.value)
            if event.get("token") or event.get("token_sha256"):
                tokens[event.get("token") or event["token_sha256"]] += 1
    repeated = {
        t: n for t, n in tokens.items() if n > 1 and t not in ("undefined", "null", "[object Object]")
    }
    assert not repeated


# -- coverage and shape of the truth -----------------------------------------------------------


def test_every_cause_and_attack_appears_in_the_default_scenario(scenario: Scenario) -> None:
    causes = Counter(row["cause"] for row in scenario.truth)
    assert {c.value for c in Cause} <= set(causes)
    attacks = Counter(a for row in scenario.truth for a in row["attacks"])
    assert {a.value for a in Attack} <= set(attacks)
    assert {row["dead_letter"] for row in scenario.truth} >= {
        "not_json",
        "invalid_utf8",
        "missing_ts",
        "naive_ts",
        "unknown_service",
    }
    # The mix is a rotation day: key timing, expiry and skew are the bulk.
    bulk = sum(causes[c] for c in ("stale_jwks", "unpublished_key", "retired_key", "expired", "clock_skew"))
    assert bulk > 0.5 * len(scenario.truth)
    assert causes.most_common(1)[0][0] == "stale_jwks"


def test_truth_has_one_row_per_events_line(scenario: Scenario, events: list[AuthFailureEvent | None]) -> None:
    assert len(scenario.truth) == len(scenario.events) == SMALL
    assert [row["line"] for row in scenario.truth] == list(range(1, SMALL + 1))
    keys = {"line", "event_id", "cause", "attacks", "confidence", "dead_letter", "scenario"}
    for row, event in zip(scenario.truth, events, strict=True):
        assert set(row) == keys
        if row["dead_letter"] is None:
            assert event is not None and row["event_id"] == event.event_id
            assert row["cause"] in {c.value for c in Cause}
            assert row["confidence"] in {c.value for c in Confidence}
            assert set(row["attacks"]) <= {a.value for a in Attack}
        else:
            assert row["cause"] is None and row["confidence"] is None and row["attacks"] == []
    ids = [row["event_id"] for row in scenario.truth if row["event_id"] is not None]
    assert len(ids) == len(set(ids))


def test_bad_lines_are_really_bad_and_good_ones_validate(
    scenario: Scenario, config: dict[str, Any], events: list[AuthFailureEvent | None]
) -> None:
    services = {s["name"] for s in config["services"]}
    for row, event, record in zip(scenario.truth, events, scenario.events, strict=True):
        if row["dead_letter"] is None:
            assert event is not None, record.value[:200]
            assert event.service in services
            assert record.key == event.service
            assert b"\n" not in record.value
        elif row["dead_letter"] == "unknown_service":
            assert event is not None and event.service not in services
        else:
            assert event is None, row
        if row["dead_letter"] == "invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                record.value.decode("utf-8")


def test_streams_are_in_time_order_and_events_start_at_start(scenario: Scenario) -> None:
    for stream in (scenario.snapshots, scenario.events, scenario.samples):
        times = [r.ts for r in stream]
        assert times == sorted(times)
        assert all(t.tzinfo is not None for t in times)
    assert scenario.events[0].ts >= DEFAULT_START
    assert scenario.events[-1].ts < DEFAULT_START + timedelta(hours=24, minutes=5)


def test_config_parses_and_names_every_service_and_issuer(
    scenario: Scenario,
    config: dict[str, Any],
    events: list[AuthFailureEvent | None],
    snapshots: list[JwksSnapshot],
) -> None:
    issuers = {i["name"]: i for i in config["issuers"]}
    assert {"corp", "partner", "staging"} <= set(issuers)
    for service in config["services"]:
        assert set(service["issuers"]) <= set(issuers)
        assert service["audience"] and "required_claims" in service
    accepted = {name for s in config["services"] for name in s["issuers"]}
    assert "staging" not in accepted  # configured, accepted by no prod service
    assert 5 <= len(config["services"]) <= 8
    used = {e.service for e, row in zip(events, scenario.truth, strict=True) if e and not row["dead_letter"]}
    assert used <= {s["name"] for s in config["services"]}
    assert {s.issuer for s in snapshots} == {i["issuer"] for i in issuers.values()}
    assert config["classify"]["skew_window_seconds"] == 300


def test_reported_errors_come_only_from_the_fixed_list(
    scenario: Scenario, events: list[AuthFailureEvent | None], samples: dict[str, str]
) -> None:
    for row, event in zip(scenario.truth, events, strict=True):
        if event is None or row["dead_letter"]:
            continue
        if event.reported_error is not None:
            assert event.reported_error in REPORTED_ERRORS
        if row["confidence"] == "reported":
            assert _token_of(event, samples) is None
            expected = REPORTED_ERRORS.get(event.reported_error or "", Cause.UNVERIFIABLE)
            assert row["cause"] == expected.value and row["attacks"] == []
        else:
            assert _token_of(event, samples) is not None


# -- tokens and samples --------------------------------------------------------------------------


def test_sampled_fingerprints_match_their_tokens_and_most_tokens_are_inline(
    scenario: Scenario, events: list[AuthFailureEvent | None], samples: dict[str, str]
) -> None:
    for record in scenario.samples:
        sample = SampledToken.model_validate_json(record.value)
        assert record.key is None
        assert hashlib.sha256(sample.token.encode("ascii")).hexdigest() in samples
    good = [e for e in events if e is not None]
    inline = sum(e.token is not None for e in good)
    joined = sum(e.token_sha256 in samples for e in good if e.token_sha256)
    unsampled = sum(e.token_sha256 not in samples for e in good if e.token_sha256)
    assert inline > joined > unsampled > 0
    assert all(e.token is None or e.token_sha256 is None for e in good)


def test_no_token_appears_in_the_truth(tmp_path: Path, scenario: Scenario, samples: dict[str, str]) -> None:
    truth = write_scenario(scenario, tmp_path)["truth"].read_text()
    tokens = set(samples.values())
    for record in scenario.events:
        try:
            token = json.loads(record.value).get("token")
        except ValueError:
            continue
        if token:
            tokens.add(token)
    for token in (t for t in tokens if len(t) > 20):  # not the literal "null" a buggy client sends
        for part in [token, *[p for p in token.split(".") if len(p) >= 16]]:
            assert part not in truth


def test_signatures_agree_with_the_truth(
    scenario: Scenario,
    events: list[AuthFailureEvent | None],
    snapshots: list[JwksSnapshot],
    samples: dict[str, str],
) -> None:
    """Every verified cause past step 3 is a token that really verifies with the published key
    named by its kid; a bad_signature is one that really does not."""
    jwks = _timeline(snapshots)["jwks"]
    loaders: dict[str, Any] = {"RSA": RSAAlgorithm, "EC": ECAlgorithm, "OKP": OKPAlgorithm}
    signed_causes = {
        "valid", "stale_jwks", "unpublished_key", "retired_key", "clock_skew", "expired", "not_yet_valid",
        "missing_claim", "audience_mismatch",
    }  # fmt: skip
    checked: dict[str, bool] = {}
    counts: Counter[str] = Counter()
    for row, event in zip(scenario.truth, events, strict=True):
        if (
            event is None
            or row["confidence"] != "verified"
            or row["cause"] not in signed_causes | {"bad_signature"}
        ):
            continue
        token = _token_of(event, samples)
        assert token is not None
        if token not in checked:
            header = jwt.get_unverified_header(token)
            key = loaders[jwks[header["kid"]]["kty"]].from_jwk(json.dumps(jwks[header["kid"]]))
            try:
                jwt.PyJWS().decode(token, key=key, algorithms=[header["alg"]])
                checked[token] = True
            except jwt.InvalidSignatureError:
                checked[token] = False
        assert checked[token] is (row["cause"] != "bad_signature"), row
        counts[row["cause"]] += 1
    assert set(counts) == signed_causes | {"bad_signature"}


def test_key_timing_truth_follows_the_snapshots_as_emitted(
    scenario: Scenario,
    config: dict[str, Any],
    events: list[AuthFailureEvent | None],
    snapshots: list[JwksSnapshot],
    samples: dict[str, str],
) -> None:
    timeline = _timeline(snapshots)
    issuer_url = {i["name"]: i["issuer"] for i in config["issuers"]}
    for issuer, first in timeline["earliest"].items():
        assert DEFAULT_START - timedelta(minutes=5) <= first <= DEFAULT_START, issuer
    services = {s["name"]: s for s in config["services"]}
    max_ttl = config["classify"]["max_jwks_cache_ttl_seconds"]
    seen: Counter[str] = Counter()
    for row, event in zip(scenario.truth, events, strict=True):
        if event is None or row["confidence"] == "reported":
            continue
        cause = row["cause"]
        if cause not in ("stale_jwks", "unpublished_key", "retired_key", "valid"):
            continue
        token = _token_of(event, samples)
        assert token is not None
        kid = jwt.get_unverified_header(token)["kid"]
        issuer = jwt.decode(token, options={"verify_signature": False})["iss"]
        assert issuer in {issuer_url[n] for n in services[event.service]["issuers"]}
        first = timeline["first"][(issuer, kid)]
        removed = timeline["removed"].get((issuer, kid))
        fetched = event.service_jwks_fetched_at
        seen[cause] += 1
        if cause == "unpublished_key":
            assert first > event.ts
            continue
        assert first <= event.ts
        if cause == "retired_key":
            assert removed is not None and removed <= event.ts
            continue
        assert removed is None or removed > event.ts
        if fetched is not None:
            stale = fetched < first
        else:
            # The service's own cache TTL where the config declares it, else the global maximum.
            ttl = services[event.service].get("jwks_cache_ttl_seconds", max_ttl)
            young = (event.ts - first).total_seconds() < ttl and first > timeline["earliest"][issuer]
            stale = young
            seen[f"heuristic-{cause}"] += 1
            seen[f"ttl-{'declared' if 'jwks_cache_ttl_seconds' in services[event.service] else 'max'}-{cause}"] += 1
        assert stale is (cause == "stale_jwks"), row
        assert (row["confidence"] == "inferred") is (cause == "stale_jwks" and fetched is None), row
    assert {"stale_jwks", "unpublished_key", "retired_key", "valid", "heuristic-stale_jwks"} <= set(seen)
    # Both ways of judging a key's age without a fetch time occur: by a declared TTL and by the maximum.
    assert {"ttl-declared-valid", "ttl-max-stale_jwks"} <= set(seen), seen


def test_inferred_verdicts_are_exactly_the_stale_ones_whose_service_reports_no_fetch_time(
    scenario: Scenario, config: dict[str, Any], events: list[AuthFailureEvent | None]
) -> None:
    """DESIGN.md `confidence`: `inferred` only where stale_jwks rests on a guess about the service's cache."""
    counts: Counter[tuple[str, str]] = Counter()
    for row, event in zip(scenario.truth, events, strict=True):
        if event is None or row["confidence"] == "reported":
            continue
        counts[(row["confidence"], event.service)] += 1
        no_fetch_time = event.service_jwks_fetched_at is None
        assert (row["confidence"] == "inferred") is (row["cause"] == "stale_jwks" and no_fetch_time), row
    inferred = {service for confidence, service in counts if confidence == "inferred"}
    silent = {s["name"] for s in config["services"]} - {
        e.service for e in events if e is not None and e.service_jwks_fetched_at is not None
    }
    assert inferred and inferred <= silent


def test_services_declare_their_cache_ttl_except_the_undocumented_one(config: dict[str, Any]) -> None:
    declared = {s["name"]: s.get("jwks_cache_ttl_seconds") for s in config["services"]}
    assert declared["edge-proxy"] == 300 and declared["reports-api"] == 900
    assert declared["billing-legacy"] is None  # judged by max_jwks_cache_ttl_seconds


def test_snapshots_change_only_by_rotation_steps(snapshots: list[JwksSnapshot]) -> None:
    """Each issuer publishes a new key before signing with it (except partner's bad
    rotation, which the unpublished_key events show) and removes the old one later."""
    timeline = _timeline(snapshots)
    kids_by_issuer: dict[str, list[str]] = {}
    for (issuer, kid), first in sorted(timeline["first"].items(), key=lambda item: item[1]):
        kids_by_issuer.setdefault(issuer, []).append(kid)
        assert first >= timeline["earliest"][issuer]
    for issuer, kids in kids_by_issuer.items():
        added = [k for k in kids if timeline["first"][(issuer, k)] > timeline["earliest"][issuer]]
        assert len(added) == 1, issuer  # one rotation per issuer inside the window
        assert any((issuer, k) in timeline["removed"] for k in kids)
    for snap in snapshots:
        assert all("d" not in key for key in snap.jwks["keys"])  # public keys only


# -- the cross-check of intent and judgement --------------------------------------------------------


def test_the_simulator_imports_nothing_from_the_engine_it_measures() -> None:
    """The judge is the yardstick for pipeline.engine: sharing its code would hide a shared bug."""
    package = Path(__file__).resolve().parents[1] / "pipeline" / "simulator"
    modules = sorted(package.glob("*.py"))
    assert {p.stem for p in modules} >= {"judge", "scenario", "world", "builders"}
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            assert not [n for n in names if n.startswith(("pipeline.engine", "pipeline.runner"))], module.name


@pytest.mark.parametrize(("seed", "hours"), [(1, 24.0), (5, 6.0)])
def test_every_event_gets_the_cause_it_was_built_for(seed: int, hours: float) -> None:
    scenario, intended = simulate_with_intent(seed, 2000, hours, None, False)
    wrong = [
        (row["scenario"], row["cause"], want.value)
        for row, want in zip(scenario.truth, intended, strict=True)
        if want is not None and row["cause"] != want.value
    ]
    assert not wrong, Counter(wrong).most_common(5)


def test_a_start_in_another_offset_keeps_the_instant() -> None:
    start = datetime(2026, 3, 1, 8, 30, tzinfo=UTC) + timedelta(microseconds=250_000)
    local = start.astimezone(timezone(timedelta(hours=-5)))
    assert (
        simulate(seed=2, events=200, start=start).events == simulate(seed=2, events=200, start=local).events
    )


def test_the_judge_follows_the_tightened_rules() -> None:
    """The judge's own reading of DESIGN.md's changed rules, on hand-built tokens (it knows the signer)."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from pipeline.simulator.cast import ISSUER_BY_NAME, SERVICE_BY_NAME
    from pipeline.simulator.judge import Judge, Timeline
    from pipeline.simulator.keys import P256_ORDER, b64, b64json

    ts = 1_800_000_000_000  # ms
    timeline = Timeline(
        [
            ("corp", ts - 36_000_000, ("corp-rs-2026-10", "corp-es-2026")),
            ("corp", ts - 200_000, ("corp-rs-2026-10", "corp-es-2026", "corp-rs-2026-11")),
            ("partner", ts - 36_000_000, ("partner-es-01",)),
        ]
    )
    judge = Judge(timeline)
    orders, edge, billing = (SERVICE_BY_NAME[n] for n in ("orders-api", "edge-proxy", "billing-legacy"))

    def token(header: dict[str, Any], signature: bytes = b"s" * 256, service: Any = orders, **claims: Any) -> str:
        body = {"iss": ISSUER_BY_NAME["corp"].url, "aud": service.audience, "sub": "u", "exp": ts // 1000 + 600}
        return f"{b64json(header)}.{b64json({**body, **claims})}.{b64(signature)}"

    def cause(text: str, signer: str | None, service: Any = orders, at: int = ts) -> Cause:
        return judge.token(text, signer, service, at, None)[0]

    rs, rs_new = {"alg": "RS256", "kid": "corp-rs-2026-10"}, {"alg": "RS256", "kid": "corp-rs-2026-11"}
    assert cause(token({**rs, "crit": ["exp"]}), "corp-rs-2026-10") is Cause.MALFORMED
    assert cause(f"{b64json({'alg': 'RSA-OAEP', 'enc': 'A256GCM'})}.a.b.c.d", None) is Cause.UNVERIFIABLE
    assert cause(f"{b64json({'alg': 'RS256'})}.a.b.c.d", None) is Cause.MALFORMED
    # Without kid: every key that fits the alg is tried.
    assert cause(token({"alg": "RS256"}), "corp-rs-2026-10") is Cause.VALID
    assert cause(token({"alg": "RS256"}), None) is Cause.BAD_SIGNATURE
    assert cause(token({"alg": "ES256"}, bytes(63) + b"\x01"), "partner-es-01") is Cause.ISSUER_MISMATCH
    # exp fails at ts >= exp + leeway (orders-api: 60 s).
    exp = ts // 1000 - 60
    assert cause(token(rs, exp=exp), "corp-rs-2026-10") is Cause.CLOCK_SKEW
    assert cause(token(rs, exp=exp + 1), "corp-rs-2026-10") is Cause.VALID
    # psychic_signature: raw r‖s only, never DER.
    es = {"alg": "ES256", "kid": "corp-es-2026"}
    assert judge.token(token(es, P256_ORDER.to_bytes(32, "big") * 2), None, orders, ts, None)[1] == [
        "psychic_signature"
    ]
    assert judge.token(token(es, encode_dss_signature(P256_ORDER, P256_ORDER)), None, orders, ts, None)[1] == []
    # No fetch time: the service's declared TTL (edge-proxy 5 min), else the maximum (billing-legacy).
    young = token(rs_new, service=edge)
    assert cause(young, "corp-rs-2026-11", edge) is Cause.STALE_JWKS  # 200 s old
    assert cause(young, "corp-rs-2026-11", edge, ts + 200_000) is Cause.VALID  # 400 s old
    later = token(rs_new, service=billing, exp=ts // 1000 + 3 * 3600)
    assert cause(later, "corp-rs-2026-11", billing, ts + 7_200_000) is Cause.STALE_JWKS  # 2 h old, max 24 h
