"""Personal claims are stored as keyed hashes: a dictionary of likely subjects recovers nothing.

The old format, `sha256:` + 32 hex of the JSON value, was reversed by hashing a directory's
address list; these tests run exactly that attack (and HMAC under a wrong key) against a
store built from the simulator's day and one whose subjects are e-mail addresses, and show
the same attack does work with the right key (so the test can fail).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from pipeline.config import Config, load_config
from pipeline.engine.identifiers import PERSONAL_CLAIMS, REDACTED, IdentifierHasher, key_id, stored_claims
from pipeline.errors import ConfigError
from pipeline.io.memory import ListSource
from pipeline.io.store import Store
from pipeline.io.store_readers import connect_readonly
from pipeline.records import Envelope, Position, RecordKind
from pipeline.runner import Pipeline, run
from tests.world import T0, config, default_snapshots, good_claims, mint

ROOT = Path(__file__).resolve().parent.parent
KEY = "0123456789abcdef" * 4
WRONG_KEY = "fedcba9876543210" * 4
EMAILS = [
    f"{first}.{last}@example.com" for first in ("ada", "alan", "grace", "edsger") for last in ("lee", "ng", "ito")
]
_encode = json.JSONEncoder(sort_keys=True, default=str).encode


def unkeyed(value: Any) -> str:
    """The format the store used before: `sha256:` and 32 hex of SHA-256 of the JSON value."""
    return "sha256:" + hashlib.sha256(_encode(value).encode()).hexdigest()[:32]


def attack(stored: set[str], candidates: list[Any], key: str | None) -> set[Any]:
    """Every candidate whose hash (plain SHA-256, or HMAC under `key`) appears among the stored values."""
    found = set()
    for candidate in candidates:
        guesses = {unkeyed(candidate), hashlib.sha256(_encode(candidate).encode()).hexdigest()}
        if key is not None:
            digest = hmac.new(key.encode(), _encode(candidate).encode(), "sha256").hexdigest()[:32]
            guesses |= {digest, f"hmac:{key_id(key.encode())}:{digest}"}
        if any(g in value for g in guesses for value in stored):
            found.add(candidate)
    return found


def stored_personal_values(db: Path) -> tuple[set[str], str | None]:
    con = connect_readonly(db)
    try:
        values: set[str] = set()
        for (claims,) in con.execute(
            "SELECT token_claims FROM classifications WHERE token_claims IS NOT NULL"
        ).fetchall():
            parsed = json.loads(claims)
            values |= {str(parsed[name]) for name in PERSONAL_CLAIMS if name in parsed}
        kid = con.execute("SELECT value FROM store_meta WHERE key = 'hash_key_id'").fetchone()
    finally:
        con.close()
    return values, kid[0] if kid else None


def keyed_config(key: str = KEY) -> Config:
    base = config()
    return base.model_copy(update={"store": base.store.model_copy(update={"hash_key": SecretStr(key)})})


def email_store(db: Path, key: str = KEY) -> None:
    """A store of events whose tokens name people by e-mail (sub, email, preferred_username)."""
    envelopes = [
        Envelope(RecordKind.SNAPSHOT, s.model_dump_json().encode(), Position("jwks", 0, n))
        for n, s in enumerate(default_snapshots())
    ]
    for n, email in enumerate(EMAILS):
        token = mint("rsa-2", claims=good_claims(sub=email, email=email, preferred_username=email.split("@")[0]))
        event = {
            "event_id": f"e{n}",
            "ts": T0.isoformat(),
            "service": "payments-api",
            "token": token,
            "service_jwks_fetched_at": T0.isoformat(),
        }
        envelopes.append(Envelope(RecordKind.EVENT, json.dumps(event).encode(), Position("events", 0, n)))
    cfg = keyed_config(key)
    with Store(db) as store:
        store.note_hash_key(IdentifierHasher.from_text(key).kid)
        run(ListSource(envelopes, batch_size=100), Pipeline(cfg), store)


def test_a_dictionary_recovers_no_subject_of_the_simulated_day(simulated_db: Path) -> None:
    stored, kid = stored_personal_values(simulated_db)
    assert stored and kid is not None
    # Every personal value is an HMAC under the store's (throwaway) key: no unkeyed hash, no plain value.
    assert all(v.startswith(f"hmac:{kid}:") and len(v) == len(f"hmac:{kid}:") + 32 for v in stored)
    # The simulator's subjects are `user-00001`..`user-40000` and a few service accounts: the whole directory.
    directory: list[Any] = [f"user-{n:05d}" for n in range(1, 40_001)] + ["admin", "user-42"]
    assert attack(stored, directory, WRONG_KEY) == set()


def test_a_dictionary_of_addresses_recovers_nothing_without_the_key(tmp_path: Path) -> None:
    db = tmp_path / "emails.duckdb"
    email_store(db)
    stored, kid = stored_personal_values(db)
    assert kid == key_id(KEY.encode()) and len(stored) == 2 * len(EMAILS)  # sub = email: one value per address
    candidates: list[Any] = [*EMAILS, *(e.split("@")[0] for e in EMAILS), *(e.upper() for e in EMAILS)]
    assert attack(stored, candidates, None) == set()
    assert attack(stored, candidates, WRONG_KEY) == set()
    # The control: with the right key the same dictionary finds every address (so the attack is a real one).
    assert attack(stored, candidates, KEY) >= set(EMAILS)
    raw = db.read_bytes()
    assert not any(e.encode() in raw for e in EMAILS)  # nor is any address anywhere in the file


def test_client_ids_stay_readable_and_other_claims_are_untouched() -> None:
    hasher = IdentifierHasher.from_text(KEY)
    claims = {"sub": "ada@example.com", "email": "ada@example.com", "azp": "web-app", "client_id": "cli", "exp": 5}
    stored = stored_claims(claims, hasher)
    assert stored["azp"] == "web-app" and stored["client_id"] == "cli" and stored["exp"] == 5
    assert stored["sub"] == stored["email"] == hasher.hash("ada@example.com")  # one person groups as one
    assert stored_claims(claims, None)["sub"] == REDACTED  # no key: redacted, never an unkeyed hash
    assert IdentifierHasher.from_text(WRONG_KEY).hash("ada@example.com") != stored["sub"]


def test_a_short_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        IdentifierHasher(b"short")
    with pytest.raises(ConfigError, match="at least 32 bytes") as caught:
        load_config(ROOT / "examples" / "jwtriage.toml", {"JWTRIAGE_HASH_KEY": "tooshort-CANARY"})
    assert "CANARY" not in str(caught.value)
    loaded = load_config(ROOT / "examples" / "jwtriage.toml", {"JWTRIAGE_HASH_KEY": KEY})
    assert loaded.store.hash_key is not None and loaded.store.hash_key.get_secret_value() == KEY


def test_a_key_change_is_recorded_and_said(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        assert store.note_hash_key("aaaaaaaa") is None
        assert store.note_hash_key("aaaaaaaa") is None
        assert store.note_hash_key("bbbbbbbb") == "aaaaaaaa"


def test_consume_without_a_key_refuses_with_a_hint(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "consume",
            "--config",
            str(ROOT / "examples" / "jwtriage.toml"),
            "--db",
            str(tmp_path / "s.duckdb"),
            "--exit-when-idle",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no hash key" in result.stderr and "jwtriage keygen" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.duckdb").exists()  # refused before touching the store


def test_keygen_writes_a_private_file_once(tmp_path: Path) -> None:
    from pipeline.cli import main

    out = tmp_path / "hash.key"
    assert main(["keygen", "--out", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o600 and len(out.read_text().strip()) == 64
    assert main(["keygen", "--out", str(out)]) == 2  # never over an existing key
