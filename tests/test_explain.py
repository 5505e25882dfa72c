"""`jwtriage explain`: every cause and attack, the evidence, the contract of --json, and the token kept secret."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.causes import ATTACK_ADVICE, REMEDIATION
from pipeline.config import Config
from pipeline.engine.tokens import fingerprint
from pipeline.io.memory import ListSource
from pipeline.io.store import Store
from pipeline.models import Attack, AuthFailureEvent, Cause, Classification
from pipeline.records import Envelope, Position, RecordKind
from pipeline.runner import Pipeline, run
from tests.world import (
    AUDIENCE,
    CONFIG_TOML,
    DROP,
    JWE,
    STAGING,
    T0,
    World,
    default_snapshots,
    forge,
    good_claims,
    mint,
    private_key,
    public_jwk,
)

NOW = int(T0.timestamp())
AT = "2026-11-20T12:00:00Z"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    for name in ("JWTRIAGE_DB", "JWTRIAGE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "400")  # rich wraps at the terminal width; keep sentences on one line
    (tmp_path / "jwtriage.toml").write_text(CONFIG_TOML)
    (tmp_path / "jwks.jsonl").write_text("".join(s.model_dump_json() + "\n" for s in default_snapshots()))
    return {"config": tmp_path / "jwtriage.toml", "jwks": tmp_path / "jwks.jsonl", "dir": tmp_path}


Runner = Callable[..., tuple[int, str, str]]


@pytest.fixture
def explain(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Runner:
    """Run `jwtriage explain` in-process with `stdin` as its standard input; returns (status, stdout, stderr)."""

    def run_explain(stdin: bytes | str, *args: str, keys: tuple[str, ...] | None = None) -> tuple[int, str, str]:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        source = keys if keys is not None else ("--jwks", str(files["jwks"]))
        status = cli.main(["explain", "--config", str(files["config"]), *source, "--at", AT, *args])
        out, err = capsys.readouterr()
        return status, out, err

    return run_explain


def flat(text: str) -> str:
    """Output with line wrapping undone (rich wraps long sentences at spaces)."""
    return " ".join(text.split())


def assert_secret(token: str, *outputs: str) -> None:
    """Neither the token nor any of its non-trivial segments appears in the output."""
    for output in outputs:
        assert token not in output
        for segment in token.split("."):
            if len(segment) >= 12:
                assert segment not in output


# -- every cause -------------------------------------------------------------------------------

CASES: list[tuple[str, Callable[[], str], Cause, list[str]]] = [
    ("valid", lambda: mint("ec-1"), Cause.VALID, ["passes every check", "✓ │ 8. key timing"]),
    (
        "stale_jwks",
        lambda: mint("rsa-2"),
        Cause.STALE_JWKS,
        [
            "kid rsa-2 of corp (RSA)",
            "published 2026-11-20 10:00:00 UTC (2 h before --at)",
            "2 h old",
            "(inferred)",
            "inferred, not verified: payments-api reports no JWKS fetch time",
        ],
    ),
    (
        "retired_key",
        lambda: mint("rsa-1"),
        Cause.RETIRED_KEY,
        ["removed 2026-11-20 11:30:00 UTC (30 min before --at)", "already in the first snapshot", "stays valid until"],
    ),
    (
        "unpublished_key",
        lambda: mint("rsa-3"),
        Cause.UNPUBLISHED_KEY,
        ["published 2026-11-20 13:00:00 UTC (60 min after --at)", "← verifies the signature"],
    ),
    ("malformed", lambda: "not-a-jwt.at-all", Cause.MALFORMED, ["a compact JWS has 3 segments", "does not parse"]),
    ("unverifiable", lambda: JWE, Cause.UNVERIFIABLE, ["a JWE", "encrypted"]),
    ("bad_alg", lambda: mint("rsa-2", alg="RS384"), Cause.BAD_ALG, ["alg RS384 is not among", "not checked"]),
    (
        "bad_alg_key_type",
        lambda: forge({"alg": "ES256", "kid": "rsa-2"}, good_claims(), bytes(64)),
        Cause.BAD_ALG,
        ["cannot be used with kid 'rsa-2'", "kid rsa-2 of corp (RSA)"],
    ),
    (
        "unknown_kid",
        lambda: mint("rogue-1", signer="rogue"),
        Cause.UNKNOWN_KID,
        ["kid rogue-1: no configured issuer ever published it", "corp since 2026-11-10 12:00:00 UTC"],
    ),
    (
        "bad_signature",
        lambda: mint("rsa-2", signer="rogue"),
        Cause.BAD_SIGNATURE,
        ["kid rsa-2 of corp (RSA)", "the signature verifies with none of these keys"],
    ),
    (
        "issuer_mismatch",
        lambda: mint("stg-1", claims=good_claims(iss=STAGING)),
        Cause.ISSUER_MISMATCH,
        ["the signature verifies with staging's key", "an issuer payments-api does NOT accept"],
    ),
    (
        "audience_mismatch",
        lambda: mint("ec-1", claims=good_claims(aud="api://orders")),
        Cause.AUDIENCE_MISMATCH,
        ["aud api://orders; payments-api expects api://payments"],
    ),
    (
        "clock_skew",
        lambda: mint("ec-1", claims=good_claims(exp=NOW - 100)),
        Cause.CLOCK_SKEW,
        ["exp 2026-11-20 11:58:20 UTC (100 s before --at)", "off by 70 s beyond payments-api's 30 s leeway"],
    ),
    (
        "expired",
        lambda: mint("ec-1", claims=good_claims(exp=NOW - 3 * 3600 - 12 * 60)),
        Cause.EXPIRED,
        ["exp 2026-11-20 08:48:00 UTC (3 h 12 min before --at)"],
    ),
    (
        "not_yet_valid",
        lambda: mint("ec-1", claims=good_claims(nbf=NOW + 7200)),
        Cause.NOT_YET_VALID,
        ["nbf 2026-11-20 14:00:00 UTC (2 h after --at)"],
    ),
    (
        "missing_claim",
        lambda: mint("ec-1", claims=good_claims(sub=DROP)),
        Cause.MISSING_CLAIM,
        ["missing: sub"],
    ),
]


@pytest.mark.parametrize(("name", "make", "cause", "evidence"), CASES, ids=[c[0] for c in CASES])
def test_every_cause_names_verdict_evidence_and_remediation(
    explain: Runner, name: str, make: Callable[[], str], cause: Cause, evidence: list[str]
) -> None:
    token = make()
    status, out, err = explain(token + "\n", "--service", "payments-api")
    assert status == 0, err
    text = flat(out)
    assert "Verdict for payments-api" in text
    assert f"{cause.value} —" in text
    for words in evidence:
        assert flat(words) in text, words
    assert flat(REMEDIATION[cause]) in text
    assert f"sha256 {fingerprint(token)[:16]}" in text
    assert_secret(token, out, err)


@pytest.mark.parametrize(("name", "make", "cause", "evidence"), CASES, ids=[c[0] for c in CASES])
def test_json_is_the_classifiers_verdict_with_a_null_event_id(
    explain: Runner, name: str, make: Callable[[], str], cause: Cause, evidence: list[str]
) -> None:
    token = make()
    status, out, err = explain(token, "--service", "payments-api", "--json")
    assert status == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    got = Classification.model_validate_json(lines[0])
    assert got.event_id is None and json.loads(lines[0])["event_id"] is None
    assert got.cause is cause
    # The same verdict the pipeline gives an event at --at without a fetch time.
    expected = World().judge(token, service_jwks_fetched_at=None).classification
    assert got == expected.model_copy(update={"event_id": None})
    assert_secret(token, out, err)


@pytest.mark.parametrize(("name", "make", "cause", "evidence"), CASES, ids=[c[0] for c in CASES])
def test_the_failed_checks_shown_are_the_verdicts_findings_in_order(
    explain: Runner, name: str, make: Callable[[], str], cause: Cause, evidence: list[str]
) -> None:
    """explain renders the classifier's findings: the causes under the ✗ checks are `findings`, in check order."""
    token = make()
    _, out, _ = explain(token, "--service", "payments-api")
    _, line, _ = explain(token, "--service", "payments-api", "--json")
    shown = [c.strip() for found in re.findall(r"│ +→ ([a-z_]+(?:, [a-z_]+)*)", out) for c in found.split(",")]
    assert list(dict.fromkeys(shown)) == [c.value for c in Classification.model_validate_json(line).findings]
    assert out.count("✗") == len({f.step for f in World().judge(token, service_jwks_fetched_at=None).findings})


# -- every attack ------------------------------------------------------------------------------

ATTACKS: list[tuple[Attack, Callable[[], str]]] = [
    (Attack.ALG_NONE, lambda: forge({"alg": "none", "kid": "rsa-2"}, good_claims())),
    (Attack.KEY_CONFUSION, lambda: forge({"alg": "HS256", "kid": "rsa-2"}, good_claims(), b"h" * 32)),
    (
        Attack.JWK_INJECTION,
        lambda: mint("rogue-1", signer="rogue", headers={"jwk": public_jwk(private_key("rogue"), "rogue-1")}),
    ),
    (Attack.JKU_INJECTION, lambda: mint("rsa-2", signer="rogue", headers={"jku": "https://attacker.test/jwks"})),
    (Attack.KID_INJECTION, lambda: mint("../../dev/null", signer="rogue")),
    (Attack.PSYCHIC_SIGNATURE, lambda: forge({"alg": "ES256", "kid": "ec-1"}, good_claims(), bytes(64))),
]


@pytest.mark.parametrize(("attack", "make"), ATTACKS, ids=[a.value for a, _ in ATTACKS])
def test_every_attack_is_named_with_its_advice(explain: Runner, attack: Attack, make: Callable[[], str]) -> None:
    token = make()
    status, out, err = explain(token, "--service", "payments-api")
    assert status == 0, err
    text = flat(out)
    assert "attack patterns:" in text and attack.value in text
    assert flat(ATTACK_ADVICE[attack]) in text
    assert_secret(token, out, err)
    status, out, _ = explain(token, "--service", "payments-api", "--json")
    assert attack in Classification.model_validate_json(out).attacks


def test_explain_works_offline(explain: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys come only from the snapshots: a jku/x5u in the token is never fetched."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("explain opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    token = mint("rsa-2", signer="rogue", headers={"jku": "http://127.0.0.1:9/jwks", "x5u": "http://127.0.0.1:9/x"})
    status, out, err = explain(token, "--service", "payments-api")
    assert status == 0, err
    assert "bad_signature —" in flat(out) and "jku_injection" in out


def test_control_characters_in_the_token_never_reach_the_terminal(explain: Runner) -> None:
    token = forge({"alg": "none", "kid": "x\x1b]0;pwned\x07\x1b[31m"}, good_claims(sub="[bold]\x1b[2J"))
    status, out, _ = explain(token, "--service", "payments-api")
    assert status == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b" in out  # shown escaped instead


# -- reading the token -------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", ["Bearer {}", "  {}\n\n", "Authorization: Bearer {}\r\n", '"{}"', "bearer {}"])
def test_bearer_prefix_quotes_and_whitespace_are_stripped(explain: Runner, wrap: str) -> None:
    token = mint("ec-1")
    status, out, _ = explain(wrap.format(token), "--service", "payments-api", "--json")
    assert status == 0 and Classification.model_validate_json(out).cause is Cause.VALID


def test_a_token_as_an_argument_is_refused_without_echoing_it(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    token = mint("rsa-2")
    status = cli.main(["explain", "--config", str(files["config"]), "--jwks", str(files["jwks"]), token])
    out, err = capsys.readouterr()
    assert status == 2
    assert "stdin" in err and "shell history" in err and "pbpaste | jwtriage explain" in err
    assert_secret(token, out, err)


def test_a_token_as_an_argument_is_refused_even_among_flags(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    token = mint("rsa-2")
    status = cli.main(["explain", token, "--service", "payments-api", "--config", str(files["config"])])
    out, err = capsys.readouterr()
    assert status == 2
    assert_secret(token, out, err)


@pytest.mark.parametrize("stdin", ["", "\n  \n", "Bearer "])
def test_empty_stdin_gives_the_hint(explain: Runner, stdin: str) -> None:
    status, out, err = explain(stdin, "--service", "payments-api")
    assert status == 2 and out == ""
    assert "paste the token and press Ctrl-D, or: pbpaste | jwtriage explain" in err


def test_more_than_64_kb_is_refused(explain: Runner) -> None:
    status, _, err = explain("a" * (65 * 1024), "--service", "payments-api")
    assert status == 2 and "64 KB" in err


def test_two_tokens_are_refused(explain: Runner) -> None:
    status, _, err = explain(mint("ec-1") + "\n" + mint("rsa-2"), "--service", "payments-api")
    assert status == 2 and "exactly one token" in err


def test_verbose_logging_never_shows_the_token(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token = mint("rsa-1")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(token.encode())))
    argv = ["-v", "explain", "--config", str(files["config"]), "--jwks", str(files["jwks"]), "--at", AT]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert_secret(token, out, err)


def test_a_pasted_token_on_a_terminal_is_not_echoed(files: dict[str, Path]) -> None:
    """On a TTY the token is read with echo off, so it never lands in the terminal's scrollback."""
    token = mint("rsa-1")
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWTRIAGE_")}
    argv = ["explain", "--config", str(files["config"]), "--jwks", str(files["jwks"]), "--at", AT, "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *argv, "--service", "payments-api"],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
    os.close(slave)
    try:
        assert proc.stderr is not None
        prompt = proc.stderr.readline().decode()
        assert "Paste the token" in prompt
        os.write(master, token.encode() + b"\n")
        out, err = proc.communicate(timeout=60)
        echoed = b""
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline and select.select([master], [], [], 0.1)[0]:
            try:
                echoed += os.read(master, 65536)
            except OSError:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert Classification.model_validate_json(out).cause is Cause.RETIRED_KEY
    assert token.encode() not in echoed and token.split(".")[2][:20].encode() not in echoed
    assert_secret(token, out.decode(), err.decode())


# -- without --service: every configured service ---------------------------------------------


def test_without_service_every_service_is_judged_and_the_accepting_one_named(explain: Runner) -> None:
    token = mint("stg-1", claims=good_claims(iss=STAGING))
    status, out, _ = explain(token)
    assert status == 0
    text = flat(out)
    assert "Every configured service" in text
    for service, cause in (("payments-api", "issuer_mismatch"), ("orders-api", "issuer_mismatch")):
        assert service in text and cause in text
    assert "Would accept it at 2026-11-20 12:00:00 UTC: staging-api." in text
    # aud names payments-api and staging-api; only staging-api accepts the token's iss: it gets the details.
    assert "Details for staging-api" in text and "Checks for staging-api" in text
    assert_secret(token, out)


def test_without_service_and_no_acceptor(explain: Runner) -> None:
    status, out, _ = explain(mint("rsa-1", claims=good_claims(aud="api://nowhere")))
    assert status == 0
    text = flat(out)
    assert "No configured service would accept it" in text
    assert "pass --service NAME" in text


def test_json_without_service_needs_one_named_service(explain: Runner) -> None:
    status, out, err = explain(mint("ec-1", claims=good_claims(aud="api://nowhere")), "--json")
    assert status == 2 and out == "" and "--service" in err
    status, out, _ = explain(mint("ec-1"), "--json")  # aud and iss name payments-api alone
    assert status == 0 and Classification.model_validate_json(out).cause is Cause.VALID


def test_unknown_service_is_a_usage_error(explain: Runner) -> None:
    status, _, err = explain(mint("ec-1"), "--service", "nope")
    assert status == 2 and "payments-api" in err and "'nope'" in err
    token = mint("ec-1")  # pasted after --service by mistake: refused without echoing it
    status, out, err = explain("", "--service", token)
    assert status == 2
    assert_secret(token, out, err)


@pytest.mark.parametrize("at", ["yesterday", "2026-11-20T12:00:00"])
def test_bad_at_is_a_usage_error(files: dict[str, Path], capsys: pytest.CaptureFixture[str], at: str) -> None:
    status = cli.main(["explain", "--config", str(files["config"]), "--jwks", str(files["jwks"]), "--at", at])
    assert status == 2 and "--at" in capsys.readouterr().err


def test_at_defaults_to_now(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token = mint("ec-1")  # expired long before now (it lives 10 min after T0)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(token.encode())))
    argv = ["explain", "--config", str(files["config"]), "--jwks", str(files["jwks"]), "--service", "payments-api"]
    assert cli.main(argv) == 0
    text = flat(capsys.readouterr().out)
    assert "expired —" in text and "(now)" in text and " ago)" in text


# -- keys from the store -----------------------------------------------------------------------


def _store(path: Path, events: list[AuthFailureEvent]) -> Path:
    """A small store on the pipeline's own path: the world's snapshots, then `events`."""
    envelopes = [
        Envelope(RecordKind.SNAPSHOT, s.model_dump_json().encode(), Position("auth.jwks", 0, n))
        for n, s in enumerate(default_snapshots())
    ]
    envelopes += [
        Envelope(RecordKind.EVENT, e.model_dump_json().encode(), Position("auth.failures", 0, n))
        for n, e in enumerate(events)
    ]
    config = Config.model_validate({**tomllib.loads(CONFIG_TOML), "store": {"path": str(path)}})
    with Store(path) as store:
        run(ListSource(envelopes), Pipeline(config), store)
    return path


def test_keys_and_history_from_the_store(explain: Runner, files: dict[str, Path]) -> None:
    token = mint("rsa-2")
    events = [
        AuthFailureEvent(
            event_id=f"e{n}",
            ts=T0 - timedelta(seconds=10 * n),
            service="payments-api",
            token=token,
            service_jwks_fetched_at=T0 - timedelta(hours=5),
            client_id="web-app",
        )
        for n in range(3)
    ]
    db = _store(files["dir"] / "store.duckdb", events)
    status, out, err = explain(token, "--service", "payments-api", keys=("--db", str(db)))
    assert status == 0, err
    text = flat(out)
    assert "keys from store" in text
    assert "stale_jwks —" in text
    assert "this token was rejected 3 time(s)" in text and "payments-api 3× stale_jwks" in text
    assert "kid rsa-2 was 2 h old" in text and "payments-api's JWKS cache was up to 5 h old" in text
    assert_secret(token, out, err)
    assert token.encode() not in db.read_bytes()
    # Without --service, aud names payments-api and staging-api, iss only payments-api: it gets the details.
    status, out, _ = explain(token, keys=("--db", str(db)))
    assert status == 0 and "Details for payments-api" in flat(out)


def test_without_service_the_store_names_the_service_that_rejected_the_token(
    explain: Runner, files: dict[str, Path]
) -> None:
    token = mint("ec-1", claims=good_claims(aud="api://nowhere"))
    event = AuthFailureEvent(event_id="e", ts=T0, service="orders-api", token=token)
    db = _store(files["dir"] / "store.duckdb", [event])
    status, out, _ = explain(token, keys=("--db", str(db)))
    assert status == 0
    text = flat(out)
    assert "Details for orders-api (the service that rejected this token most often" in text
    assert "audience_mismatch —" in text
    status, out, err = explain(token, "--json", keys=("--db", str(db)))
    assert status == 2 and "--service" in err  # --json never guesses from history


def test_store_from_the_environment(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _store(files["dir"] / "env.duckdb", [])
    monkeypatch.setenv("JWTRIAGE_DB", str(db))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(mint("ec-1").encode())))
    status = cli.main(["explain", "--config", str(files["config"]), "--at", AT, "--service", "payments-api"])
    assert status == 0
    assert "valid —" in flat(capsys.readouterr().out)


def test_missing_store_or_store_without_snapshots_is_a_usage_error(explain: Runner, files: dict[str, Path]) -> None:
    status, _, err = explain(mint("ec-1"), keys=("--db", str(files["dir"] / "missing.duckdb")))
    assert status == 2 and "no store at" in err and "--jwks" in err
    empty = files["dir"] / "empty.duckdb"
    Store(empty).close()
    status, _, err = explain(mint("ec-1"), keys=("--db", str(empty)))
    assert status == 2 and "no JWKS snapshots" in err


def test_db_and_jwks_are_exclusive(explain: Runner, files: dict[str, Path]) -> None:
    with pytest.raises(SystemExit) as exit_:
        explain(mint("ec-1"), keys=("--db", "x.duckdb", "--jwks", str(files["jwks"])))
    assert exit_.value.code == 2


def test_a_jwks_file_with_a_bad_line_still_works(explain: Runner, files: dict[str, Path]) -> None:
    jwks = files["dir"] / "mixed.jsonl"
    jwks.write_text("not json\n" + files["jwks"].read_text())
    status, out, err = explain(mint("ec-1"), "--service", "payments-api", keys=("--jwks", str(jwks)))
    assert status == 0 and "mixed.jsonl:1" in err and "valid —" in flat(out)


def test_unknown_kid_warns_when_the_key_history_ends_long_before(explain: Runner, files: dict[str, Path]) -> None:
    later = "2026-11-25T12:00:00Z"
    token = mint("rogue-1", signer="rogue", claims=good_claims(aud=AUDIENCE))
    status, out, _ = explain(token, "--service", "payments-api", "--at", later)  # the last --at wins
    assert status == 0
    assert "the last JWKS snapshot of corp here is from 2026-11-20 13:00:00 UTC" in flat(out)


def test_a_mistyped_db_is_named_as_the_store_not_as_a_missing_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --config or ./jwtriage.toml the config would be looked for beside the store; the store comes first."""
    monkeypatch.chdir(tmp_path)
    for name in ("JWTRIAGE_CONFIG", "JWTRIAGE_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(mint("ec-1").encode())))
    assert cli.main(["explain", "--db", "nothere.duckdb", "--service", "payments-api"]) == 2
    err = capsys.readouterr().err
    assert "no store at nothere.duckdb" in err and "config file not found" not in err
