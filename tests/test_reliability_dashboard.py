"""The dashboard: bound to 127.0.0.1 unless told otherwise, and a reader that never writes the store.

Faults looked for: a default that exposes the (login-less) dashboard on every interface; a
page that opens the store read-write (which would fight the consumer for the file, or change
it). What must hold: `jwtriage dashboard` defaults to 127.0.0.1 and starts streamlit with
`--server.address 127.0.0.1`; every DuckDB connection the app opens is read-only (a file opened
with read_only=True, or the in-memory connection of `connect_readonly` that ATTACHes the
published parts READ_ONLY); the app works while a consumer's writer holds its live file and
publishes; nothing it reads changes by a byte.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.cli import build_parser
from pipeline.commands import dashboard as dashboard_cmd
from pipeline.io.store import Store
from pipeline.io.store_readers import connect_readonly, published_parts
from pipeline.io.store_schema import parts_dir

APP = Path(__file__).resolve().parent.parent / "dashboards" / "app.py"
PAGES = ("views/overview.py", "views/rotations.py", "views/triage.py", "views/live.py")


def test_the_dashboard_listens_on_localhost_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(["dashboard", "--db", str(tmp_path / "x.duckdb")])
    assert args.host == "127.0.0.1"
    help_text = io.StringIO()
    commands = next(a for a in parser._actions if a.dest == "command")
    commands.choices["dashboard"].print_help(help_text)  # type: ignore[index]
    assert "default 127.0.0.1" in help_text.getvalue()

    started: list[list[str]] = []

    class FakeStreamlit:
        def __init__(self, command: list[str], **kwargs: Any) -> None:
            started.append(command)

        def wait(self, timeout: float | None = None) -> int:
            return 0

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(dashboard_cmd.subprocess, "Popen", FakeStreamlit)
    assert args.handler(args, io.BytesIO(), io.StringIO()) == 0
    (command,) = started
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    assert not any(a in command for a in ("0.0.0.0", "::", "--server.enableCORS"))


@pytest.fixture
def consumer_store(simulated_db: Path, tmp_path: Path) -> Path:
    """A store as consumers leave it: a published part, and the writer's live file next to it."""
    db = tmp_path / "consumed.duckdb"
    parts_dir(db).mkdir()
    shutil.copy(simulated_db, parts_dir(db) / "w.live.duckdb")
    return db


def test_the_app_opens_the_store_read_only_while_a_writer_holds_it(
    consumer_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    opened: list[tuple[str, bool, str]] = []
    real_connect = duckdb.connect

    def spy(database: str = ":memory:", read_only: bool = False, *args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1).f_code.co_name
        opened.append((str(database), bool(read_only), caller))
        return real_connect(database, read_only, *args, **kwargs)

    writer = Store(consumer_store, instance="w")  # holds w.live.duckdb for writing, as a running consumer does
    try:
        writer.publish()
        assert [p.name for p in published_parts(consumer_store)] == ["w"]
        # What readers read: the Parquet files the writer appended and the catalog `<db>` of views over them.
        published = [consumer_store, *(p for p in parts_dir(consumer_store).rglob("*.parquet"))]
        before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in published}

        monkeypatch.setattr(duckdb, "connect", spy)
        monkeypatch.setenv("JWTRIAGE_DB", str(consumer_store))
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.run()
        for page in PAGES:
            at.switch_page(page).run()
            assert not at.exception, (page, [e.value for e in at.exception])
            assert not at.warning or not any("Cannot read the store" in w.value for w in at.warning), page
        monkeypatch.setattr(duckdb, "connect", real_connect)

        assert opened, "the app read nothing"
        writable = [o for o in opened if not o[1] and not (o[0] == ":memory:" and o[2] == "_connect_readonly")]
        assert not writable, f"the dashboard opened the store for writing: {writable[:5]}"
        assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in published}

        # The writer was never blocked: it still writes and publishes while the app has run.
        writer.con.execute("INSERT OR REPLACE INTO store_meta VALUES ('reliability-test', 'written after the app ran')")
        writer.publish()
        reader = connect_readonly(consumer_store)
        written = reader.execute("SELECT value FROM store_meta WHERE key = 'reliability-test'").fetchall()
        reader.close()
        assert written == [("written after the app ran",)]
    finally:
        writer.close()

    # And connect_readonly, the app's only way in, holds nothing but views over the files: nothing to write to.
    con = connect_readonly(consumer_store)
    try:
        attached = con.execute("SELECT database_name FROM duckdb_databases() WHERE NOT internal").fetchall()
        assert attached == [("memory",)], attached
        kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall())
        assert kinds and set(kinds.values()) == {"VIEW"}, kinds
        with pytest.raises(duckdb.Error):
            con.execute("DELETE FROM classifications")
    finally:
        con.close()


def test_the_app_does_not_change_a_single_file_store(
    simulated_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A demo or backfill store is one file: after every page has read it, it is byte for byte the same."""
    from streamlit.testing.v1 import AppTest

    db = tmp_path / "demo.duckdb"
    shutil.copy(simulated_db, db)
    digest, mtime = hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns
    monkeypatch.setenv("JWTRIAGE_DB", str(db))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
    assert (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns) == (digest, mtime)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.duckdb"]  # no WAL, no lock file left behind
