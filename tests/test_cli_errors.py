"""The store and consumer problems a person meets at the terminal: one stderr line, exit 2, never a traceback.

Each case runs `python -m pipeline.cli` in a subprocess, as a shell would: an invalid
`--instance`, a second consumer on an instance another process holds, and a store written
by a newer jwtriage (refused by the consumer and by every reader).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from pipeline.io.store import Store
from pipeline.io.store_schema import SCHEMA_VERSION, parts_dir
from tests.world import CONFIG_TOML

ROOT = Path(__file__).resolve().parent.parent

#: Nothing listens on port 1: a consumer that got as far as Kafka would fail there, loudly.
NO_BROKER = '\n[kafka]\nbootstrap_servers = "127.0.0.1:1"\n'


def jwtriage(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWTRIAGE_")}
    env["PYTHONPATH"] = str(ROOT)
    env["JWTRIAGE_HASH_KEY"] = "test-hash-key-" + "0" * 32  # consume refuses to start without one
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], *phrases: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == 2, result.stderr
    assert lines[0].startswith("jwtriage: ")
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "jwtriage.toml"
    path.write_text(CONFIG_TOML + NO_BROKER)
    return path


def consume(config: Path, db: Path, instance: str) -> subprocess.CompletedProcess[str]:
    return jwtriage(
        config.parent, "consume", "--config", str(config), "--db", str(db), "--instance", instance,
        "--exit-when-idle", "1",
    )


def make_newer(path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("UPDATE store_meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    finally:
        con.close()


def test_an_invalid_instance_name_is_one_line_and_exit_2(config: Path, tmp_path: Path) -> None:
    result = consume(config, tmp_path / "s.duckdb", "a b")
    line = assert_one_line_refusal(result, "instance name 'a b'", "hint")
    assert "letters, digits" in line
    assert not parts_dir(tmp_path / "s.duckdb").exists()  # refused before anything was created


@pytest.fixture
def held_instance(tmp_path: Path) -> Iterator[Path]:
    """A store whose instance `one` another process holds open for writing."""
    db = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pipeline.io.store import Store\n"
            f"s = Store({str(db)!r}, instance='one')\nprint('open', flush=True)\ntime.sleep(60)",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        yield db
    finally:
        holder.kill()
        holder.communicate()


def test_a_second_consumer_on_a_held_instance_is_one_line_and_exit_2(config: Path, held_instance: Path) -> None:
    result = consume(config, held_instance, "one")
    assert_one_line_refusal(result, "one.live.duckdb", "Only one process may write a store", "--instance")


def test_a_consumer_refuses_a_store_with_a_newer_schema(config: Path, tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    Store(db, instance="one").close()
    make_newer(parts_dir(db) / "one.live.duckdb")
    result = consume(config, db, "one")
    assert_one_line_refusal(result, f"schema version {SCHEMA_VERSION + 1}", f"knows ({SCHEMA_VERSION})", "hint")


@pytest.mark.parametrize("command", ["report", "triage"])
@pytest.mark.parametrize("layout", ["file", "published"])
def test_readers_refuse_a_store_with_a_newer_schema(tmp_path: Path, command: str, layout: str) -> None:
    """The demo's single file and a consumer's published snapshot alike: refused, never misread."""
    db = tmp_path / "s.duckdb"
    if layout == "file":
        Store(db).close()
        newer = db
    else:
        store = Store(db, instance="one")
        store.con.execute("UPDATE store_meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
        store.publish()
        store.close()
        newer = db  # the store as a whole: its parts are Parquet files, one catalog
    if layout == "file":
        make_newer(db)
    result = jwtriage(tmp_path, command, "--db", str(db))
    assert_one_line_refusal(result, str(newer), "newer than this jwtriage", "hint")


def test_readers_still_open_a_store_of_this_version(tmp_path: Path) -> None:
    """The control: the same commands on a store this jwtriage wrote do not refuse it."""
    db = tmp_path / "s.duckdb"
    Store(db).close()
    result = jwtriage(tmp_path, "report", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
