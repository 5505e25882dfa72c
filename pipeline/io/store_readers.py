"""The readers' side of the store: one read-only connection over what the writers published.

The dashboard, `report`, `triage` and `explain --db` read through `connect_readonly`; none of
them ever opens a writer's working file. Every part is checked against the schema version
this jwtriage knows, so a store written by a newer one is refused with one line, not misread.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from pipeline.engine.keys import KeyTimeline
from pipeline.errors import StoreError
from pipeline.io.store_parts import create_views, is_parts_store, mark_reader, schema_version_of
from pipeline.io.store_schema import parts_dir, refuse_newer, sql_path, stored_version
from pipeline.models import JwksSnapshot


def timeline_from(con: duckdb.DuckDBPyConnection) -> KeyTimeline:
    """The key timeline as a store holds it (its snapshots, replayed in order)."""
    timeline = KeyTimeline()
    for issuer, fetched_at, jwks in con.execute(
        "SELECT issuer, fetched_at, jwks FROM jwks_snapshots ORDER BY issuer, fetched_at"
    ).fetchall():
        timeline.add(JwksSnapshot(issuer=issuer, fetched_at=fetched_at, jwks=json.loads(jwks)))
    return timeline


#: How readers combine the stores of several consumers. Events are split between consumers by
#: partition, so their rows are simply appended (a dedup over every row would make a 10M-row read
#: take minutes); every consumer reads all keys and samples, so those tables are deduplicated.
_COMBINED_VIEWS = {
    "classifications": "{union}",
    "dead_letters": "SELECT DISTINCT ON (source, source_partition, source_offset) * FROM ({union})",
    "jwks_snapshots": "SELECT DISTINCT ON (issuer, fetched_at) * FROM ({union})",
    "jwks_keys": "SELECT DISTINCT ON (issuer, thumbprint, interval_no) * FROM ({union}) ORDER BY last_seen DESC",
    "key_rotations": "SELECT DISTINCT * FROM ({union})",
    "source_positions": "{union}",
    "awaiting_key": "{union}",
    "store_meta": "SELECT DISTINCT * FROM ({union})",
}


def published_parts(path: str | Path) -> list[Path]:
    """What consumers have published for `path`: each writer's state folder (`store_parts`), else the
    DuckDB copies older versions published (`<instance>.duckdb`)."""
    if str(path).startswith("ducklake:"):
        return [Path(str(path))]  # a lake: one shared store, always there to open
    folder = parts_dir(path)
    if not folder.is_dir():
        return []
    if is_parts_store(folder):
        return sorted(p for p in (folder / "state").iterdir() if p.is_dir() and p.name != "_schema")
    return sorted(p for p in folder.glob("*.duckdb") if not p.name.endswith(".live.duckdb"))


def _part_views(con: duckdb.DuckDBPyConnection, path: str | Path) -> duckdb.DuckDBPyConnection:
    """`con` (in memory) with the views over the Parquet files consumers append (`store_parts.view_sql`)."""
    try:
        create_views(con, parts_dir(path).resolve(), lazy=True)
        refuse_newer(schema_version_of(con), path)
        mark_reader(con, parts_dir(path).resolve())
    except duckdb.Error as exc:
        con.close()
        raise StoreError(f"cannot open the store {path}: {str(exc).strip().splitlines()[0]}") from None
    except BaseException:
        con.close()
        raise
    return con


def connect_readonly(path: str | Path) -> duckdb.DuckDBPyConnection:
    """A reader's connection (dashboard, report, triage, explain, sql); raises `StoreError` with a hint.

    Its session's time zone is UTC, as every surface shows times: a day, an hour bucket or a time
    without an offset in a query means the same on any machine.
    """
    con = _connect_readonly(path)
    con.execute("SET TimeZone = 'UTC'")
    return con


def _connect_readonly(path: str | Path) -> duckdb.DuckDBPyConnection:
    """The connection, before its session settings.

    A store written by the demo or a backfill is the file itself. A store written by
    consumers is the Parquet files they append under `<path>.parts/` (read through the views
    `store_parts.view_sql` defines, which `<path>` itself also holds for plain DuckDB); stores
    published by older versions as DuckDB copies are still read. The reader sees one set of
    tables over every writer, so the same `--db` works for one consumer or several, while they write.
    """
    if str(path).startswith("ducklake:"):
        from pipeline.io.lake import connect_lake  # the lake's extensions load only for a lake

        return connect_lake(path, read_only=True)
    if is_parts_store(parts_dir(path)):
        return _part_views(duckdb.connect(":memory:"), path)
    parts = published_parts(path)
    if not parts:
        if not Path(path).exists():
            raise StoreError(f"no store at {path} (hint: run `jwtriage demo` or `jwtriage consume`, or pass --db)")
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as exc:
            raise StoreError(f"cannot open {path} for reading: {exc}") from None
        try:
            refuse_newer(stored_version(con), path)
        except BaseException:
            con.close()
            raise
        return con
    con = duckdb.connect(":memory:")
    try:
        for number, part in enumerate(parts):
            con.execute(f"ATTACH '{sql_path(part)}' AS part{number} (READ_ONLY)")
            refuse_newer(stored_version(con, f"part{number}"), part)
        for table, shape in _COMBINED_VIEWS.items():
            union = " UNION ALL BY NAME ".join(f"SELECT * FROM part{n}.{table}" for n in range(len(parts)))
            view = union if len(parts) == 1 else shape.format(union=union)
            con.execute(f"CREATE VIEW {table} AS {view}")
    except duckdb.Error as exc:
        con.close()
        raise StoreError(f"cannot open the published stores of {path}: {exc}") from None
    except BaseException:
        con.close()
        raise
    return con
