"""`jwtriage classify` as DESIGN.md fixes it: JSON lines out, bad lines reported, exit codes, no network."""

from __future__ import annotations

import http.server
import io
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import cli
from pipeline.engine.tokens import fingerprint
from tests.world import (
    CONFIG_TOML,
    CONTRACT_FIELDS,
    T0,
    default_snapshots,
    forge,
    good_claims,
    mint,
    private_key,
    public_jwk,
)


def _iso(at: Any) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def event(event_id: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("ts", _iso(T0))
    fields.setdefault("service", "payments-api")
    fields.setdefault("service_jwks_fetched_at", _iso(T0 - timedelta(minutes=5)))
    return {"event_id": event_id, **fields}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "jwtriage.toml").write_text(CONFIG_TOML)
    (tmp_path / "jwks.jsonl").write_text("".join(s.model_dump_json() + "\n" for s in default_snapshots()))
    return {"config": tmp_path / "jwtriage.toml", "jwks": tmp_path / "jwks.jsonl", "dir": tmp_path}


def run(
    files: dict[str, Path], events: list[Any], *extra: str, samples: list[str] | None = None
) -> tuple[int, list[dict[str, Any]], str]:
    """Run `jwtriage classify` in-process; events may be dicts or raw bytes lines."""
    path = files["dir"] / "events.jsonl"
    path.write_bytes(b"".join((json.dumps(e).encode() if isinstance(e, dict) else e) + b"\n" for e in events))
    args = ["classify", "--config", str(files["config"]), "--jwks", str(files["jwks"]), *extra]
    if samples is not None:
        sample_path = files["dir"] / "samples.jsonl"
        sample_path.write_text("".join(json.dumps({"token": t}) + "\n" for t in samples))
        args += ["--samples", str(sample_path)]
    args.append(str(path))
    stdout, stderr = io.StringIO(), io.StringIO()
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = stdout, stderr
    try:
        status = cli.main(args)
    finally:
        sys.stdout, sys.stderr = old_out, old_err
    rows = [json.loads(line) for line in stdout.getvalue().splitlines()]
    return status, rows, stderr.getvalue()


def test_one_contract_line_per_event(files: dict[str, Path]) -> None:
    status, rows, err = run(files, [event("a", token=mint("rsa-2")), event("b", token=mint("rsa-1"))])
    assert status == 0 and err == ""
    assert [list(r) for r in rows] == [CONTRACT_FIELDS, CONTRACT_FIELDS]
    assert [(r["event_id"], r["cause"], r["confidence"]) for r in rows] == [
        ("a", "valid", "verified"),
        ("b", "retired_key", "verified"),
    ]
    assert rows[1]["findings"] == ["retired_key"] and rows[1]["attacks"] == []


def test_bad_lines_are_reported_with_file_line_and_reason_and_the_rest_goes_on(files: dict[str, Path]) -> None:
    events = [
        event("a", token=mint("rsa-2")),
        b"\xff\xfe not utf-8",
        b"{not json",
        json.dumps({"event_id": "c", "service": "payments-api"}).encode(),
        json.dumps(event("d", ts="2026-11-20T12:00:00")).encode(),
        json.dumps(event("e", service="nobody")).encode(),
        b"[" * 50_000,
        event("z", token=mint("ec-1")),
    ]
    status, rows, err = run(files, events)
    assert status == 1
    assert [r["event_id"] for r in rows] == ["a", "z"]
    lines = err.strip().splitlines()
    assert len(lines) == 7 and lines[6] == "jwtriage classify: 2 events judged, 6 bad lines"  # the total last
    name = str(files["dir"] / "events.jsonl")
    assert lines[0] == f"jwtriage: {name}:2: not UTF-8 (byte 0)"
    assert lines[1].startswith(f"jwtriage: {name}:3: not JSON")
    assert lines[2] == f"jwtriage: {name}:4: ts: Field required"
    assert "UTC offset" in lines[3] and ":5:" in lines[3]
    assert "service 'nobody' is not in the config" in lines[4] and ":6:" in lines[4]
    assert ":7: not JSON" in lines[5]


def test_bad_snapshot_line_counts_as_bad_input(files: dict[str, Path]) -> None:
    with files["jwks"].open("a") as f:
        f.write('{"issuer": "x"}\n')
    status, rows, err = run(files, [event("a", token=mint("rsa-2"))])
    assert status == 1 and rows[0]["cause"] == "valid"
    assert "jwks.jsonl:6: fetched_at: Field required" in err


def test_samples_are_joined_by_fingerprint(files: dict[str, Path]) -> None:
    token = mint("rsa-2", claims=good_claims(aud="api://orders"))
    unknown = "0" * 64
    status, rows, _ = run(
        files,
        [
            event("joined", token_sha256=fingerprint(token).upper()),
            event("unsampled", token_sha256=unknown, reported_error="Jwt is expired"),
        ],
        samples=[token],
    )
    assert status == 0
    assert (rows[0]["cause"], rows[0]["confidence"]) == ("audience_mismatch", "verified")
    assert (rows[1]["cause"], rows[1]["confidence"]) == ("expired", "reported")


def test_usage_and_config_errors_exit_2(files: dict[str, Path], tmp_path: Path) -> None:
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[[services]]\nname = 1\n")
    status, _, err = run({**files, "config": bad_config}, [])
    assert status == 2 and str(bad_config) in err
    status, _, err = run({**files, "jwks": tmp_path / "missing.jsonl"}, [])
    assert status == 2 and "cannot open" in err and "missing.jsonl" in err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["classify"])
    assert exit_info.value.code == 2


def test_raw_tokens_never_reach_the_output(files: dict[str, Path]) -> None:
    tokens = [mint("rsa-2"), mint("rsa-1", claims=good_claims(aud="x")), forge({"alg": "none"}, good_claims())]
    _, rows, err = run(files, [event(str(n), token=t) for n, t in enumerate(tokens)] + [b"{" + tokens[0].encode()])
    text = json.dumps(rows) + err
    for token in tokens:
        for segment in token.split("."):
            if len(segment) > 20:
                assert segment not in text


# -- no network, whatever the token says ----------------------------------------------------------


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, list[str]]]:
    """A JWKS on 127.0.0.1 that counts requests: an attacker's key behind a `jku`."""
    requests: list[str] = []
    body = json.dumps({"keys": [public_jwk(private_key("rogue"), "rsa-2")]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def hostile_events(base: str) -> list[dict[str, Any]]:
    attacker = public_jwk(private_key("rogue"), "rsa-2")
    return [
        event("jku", token=mint("rsa-2", signer="rogue", headers={"jku": f"{base}/jwks.json"})),
        event("x5u", token=mint("rsa-2", signer="rogue", headers={"x5u": f"{base}/cert.pem"})),
        event("jwk", token=mint("rsa-2", signer="rogue", headers={"jwk": attacker})),
        event("iss", token=mint("nope", signer="rogue", claims=good_claims(iss=f"{base}/"))),
    ]


def test_jku_is_never_fetched_by_the_real_command(files: dict[str, Path], jwks_server: tuple[str, list[str]]) -> None:
    base, requests = jwks_server
    path = files["dir"] / "hostile.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in hostile_events(base)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "classify",
            "--config",
            str(files["config"]),
            "--jwks",
            str(files["jwks"]),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["cause"] for r in rows] == ["bad_signature", "bad_signature", "bad_signature", "unknown_kid"]
    assert [r["attacks"] for r in rows][:3] == [["jku_injection"], ["jku_injection"], ["jwk_injection"]]
    assert requests == []  # the server was there to be asked, and nobody asked


def test_classification_opens_no_socket(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("classification tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    status, rows, _ = run(files, hostile_events("http://127.0.0.1:9"))
    assert status == 0 and len(rows) == 4


def test_classify_agrees_with_the_simulators_truth_on_cause_confidence_and_attacks(tmp_path: Path) -> None:
    """The simulated day through `jwtriage classify`: every event as its independent judge says, `inferred`
    exactly where a stale_jwks verdict rests on a service that reports no fetch time."""
    from pipeline.simulator import simulate, write_scenario

    paths = write_scenario(simulate(seed=7, events=3_000), tmp_path / "scenario")
    args = ["classify", "--config", str(paths["config"]), "--jwks", str(paths["jwks"])]
    args += ["--samples", str(paths["samples"]), str(paths["events"])]
    stdout, stderr = io.StringIO(), io.StringIO()
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = stdout, stderr
    try:
        assert cli.main(args) == 1  # the scenario holds bad lines on purpose
    finally:
        sys.stdout, sys.stderr = old_out, old_err
    got = {r["event_id"]: r for r in map(json.loads, stdout.getvalue().splitlines())}
    truth = [json.loads(line) for line in paths["truth"].read_text().splitlines()]
    judged = [t for t in truth if t["dead_letter"] is None]
    assert len(got) == len(judged) > 2_800
    wrong = [
        (t["cause"], t["confidence"], t["attacks"], got[t["event_id"]]["cause"], got[t["event_id"]]["confidence"])
        for t in judged
        if (t["cause"], t["confidence"], sorted(t["attacks"]))
        != (got[t["event_id"]]["cause"], got[t["event_id"]]["confidence"], sorted(got[t["event_id"]]["attacks"]))
    ]
    assert wrong == []
    assert {t["confidence"] for t in judged} == {"verified", "reported", "inferred"}


def test_a_snapshots_file_given_as_the_events_gets_a_hint(files: dict[str, Path]) -> None:
    """The two files swapped: every line is bad, and the last line says what is likely wrong."""
    snapshots = [s.model_dump_json().encode() for s in default_snapshots()]
    status, rows, err = run(files, snapshots)
    assert status == 1 and rows == []
    assert err.splitlines()[-1].startswith("jwtriage classify: 0 events judged, 5 bad lines; no line was an event: "
                                           "is it a JWKS snapshots file?")
