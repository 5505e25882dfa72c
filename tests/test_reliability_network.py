"""No fetch: nothing a token says makes jwtriage open a connection, in the consumer or in classify.

Fault: tokens that point at a server: `jku` (http and https), `x5u`, an embedded `jwk` (with
its own `x5u`), a `kid` that is a URL, an `iss` that is the server (where a validator would do
OIDC discovery); a JWKS snapshot whose keys carry `x5u`; and a config whose issuers'
`jwks_uri` is that same server. They reach the real consumer (a subprocess) through Kafka,
inline and through the samples topic, then `jwtriage classify` and `jwtriage explain`.

What must hold (DESIGN.md, "Re-validation": keys come only from JWKS snapshots, never from
the network during classification): the counting server on 127.0.0.1 sees zero TCP
connections and zero requests, and every event is still judged (with its attack labels).
The server is first shown to count a request, so "zero" means something.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.engine.tokens import fingerprint
from tests.reliability.commands import in_process
from tests.reliability.http_counter import Counter, counting_server
from tests.reliability.kafka_run import KafkaRun, produce_tracked
from tests.world import CONFIG_TOML, CORP, T0, default_snapshots, good_claims, mint, private_key, public_jwk

pytestmark = pytest.mark.kafka


@pytest.fixture
def trap() -> Iterator[Counter]:
    with counting_server({"keys": [public_jwk(private_key("rogue"), "rsa-2")]}) as counter:
        urllib.request.urlopen(f"{counter.base}/probe", timeout=10).read()
        assert counter.connections == 1 and counter.requests == ["GET /probe"], "the trap does not count"
        counter.reset()
        yield counter


def hostile_tokens(base: str) -> dict[str, str]:
    https = base.replace("http://", "https://")
    rogue_jwk = {**public_jwk(private_key("rogue"), "rsa-2"), "x5u": f"{base}/jwk-x5u.pem"}
    return {
        "jku": mint("rsa-2", signer="rogue", headers={"jku": f"{base}/jwks.json"}),
        "jku-https": mint("rsa-2", signer="rogue", headers={"jku": f"{https}/jwks.json"}),
        "jku-on-a-good-token": mint("rsa-2", headers={"jku": f"{base}/jwks.json"}),
        "x5u": mint("rsa-2", signer="rogue", headers={"x5u": f"{base}/cert.pem"}),
        "jwk": mint("rsa-2", signer="rogue", headers={"jwk": rogue_jwk}),
        "kid-url": mint(f"{base}/keys/1", signer="rogue"),
        "iss-url": mint("nope", signer="rogue", claims=good_claims(iss=f"{base}/")),
        "iss-discovery": mint(None, signer="rogue", claims=good_claims(iss=base)),
        "everything": mint(f"{base}/kid", signer="rogue", claims=good_claims(iss=base),
                           headers={"jku": f"{base}/a", "x5u": f"{base}/b", "jwk": rogue_jwk}),
    }


def records(base: str) -> tuple[list[bytes], list[bytes], list[bytes], dict[str, str]]:
    """(snapshots, samples, events) as JSON lines, and each event's token name."""
    snapshots = [s.model_dump_json().encode() for s in default_snapshots()]
    with_x5u = json.loads(snapshots[-2])
    with_x5u["fetched_at"] = "2026-11-20T11:45:00Z"
    with_x5u["jwks"]["keys"] = [{**k, "x5u": f"{base}/snapshot-x5u.pem"} for k in with_x5u["jwks"]["keys"]]
    snapshots.append(json.dumps(with_x5u).encode())
    tokens = hostile_tokens(base)
    samples = [json.dumps({"token": t}).encode() for t in tokens.values()]
    events, names = [], {}
    for name, token in tokens.items():
        for how, fields in (("inline", {"token": token}), ("sampled", {"token_sha256": fingerprint(token)})):
            event_id = f"{name}/{how}"
            names[event_id] = name
            events.append(json.dumps({"event_id": event_id, "ts": T0.isoformat(), "service": "payments-api",
                                      "service_jwks_fetched_at": "2026-11-20T11:50:00Z", **fields}).encode())
    return snapshots, samples, events, names


def config_pointing_at(base: str) -> str:
    """The test world's config, with every issuer's jwks_uri on the trap (only jwks-watch may fetch it)."""
    config = CONFIG_TOML.replace(f'jwks_uri = "{CORP}/.well-known/jwks.json"', f'jwks_uri = "{base}/corp/jwks"')
    config = config.replace(
        'jwks_uri = "https://login.staging.acme.test/.well-known/jwks.json"', f'jwks_uri = "{base}/staging/jwks"'
    )
    assert config.count(base) == 2
    return config


def check_rows(rows: dict[str, dict[str, Any]], names: dict[str, str]) -> None:
    assert set(rows) == set(names)
    for event_id, row in rows.items():
        assert row["confidence"] == "verified", (event_id, row)
        if names[event_id] in ("jku", "jku-https", "x5u", "jku-on-a-good-token"):
            assert "jku_injection" in row["attacks"], (event_id, row)
        if names[event_id] == "jwk":
            assert "jwk_injection" in row["attacks"], (event_id, row)
        if names[event_id] == "jku-on-a-good-token":
            assert row["cause"] == "valid", row  # judged on the published key, whatever the header says
        elif names[event_id] != "iss-discovery":
            assert row["cause"] not in ("valid", "unverifiable"), (event_id, row)


def test_urls_in_tokens_never_cause_a_request_from_the_consumer_classify_or_explain(
    trap: Counter, tmp_path: Path
) -> None:
    snapshots, samples, events, names = records(trap.base)
    run = KafkaRun.create(tmp_path / "run", config_pointing_at(trap.base))
    try:
        produce_tracked(run.kafka, [(run.kafka.jwks_topic, CORP, s) for s in snapshots]
                        + [(run.kafka.samples_topic, None, s) for s in samples]
                        + [(run.kafka.failures_topic, "payments-api", e) for e in events])
        consumer = run.consumer("--exit-when-idle", "2")
        assert consumer.wait(timeout=180) == 0, consumer.output()[-3000:]
        stored = run.query("SELECT event_id, cause, confidence, attacks FROM classifications")
        check_rows({e: {"cause": c, "confidence": f, "attacks": a} for e, c, f, a in stored}, names)
        assert (trap.connections, trap.requests) == (0, []), "the consumer reached out"

        for name, lines in {"jwks": snapshots, "samples": samples, "events": events}.items():
            (tmp_path / f"{name}.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
        jwks = str(tmp_path / "jwks.jsonl")
        classify = run.start(["classify", "--config", str(run.config_path), "--jwks", jwks,
                              "--samples", str(tmp_path / "samples.jsonl"), str(tmp_path / "events.jsonl")],
                             name="classify")
        assert classify.wait(timeout=120) == 0, classify.output()[-3000:]
        lines = [json.loads(line) for line in classify.stdout.read_text().splitlines()]
        check_rows({r["event_id"]: r for r in lines}, names)
        assert (trap.connections, trap.requests) == (0, []), "classify reached out"
    finally:
        run.close()

    for token in hostile_tokens(trap.base).values():
        out = in_process(["explain", "--config", str(run.config_path), "--jwks", jwks, "--service", "payments-api",
                          "--at", T0.isoformat(), "--json"], token.encode())
        assert '"cause"' in out, out[-500:]
    assert (trap.connections, trap.requests) == (0, []), "explain reached out"
