"""The store's schema: the DDL, its version, the migrations, and the one version check writer and readers share.

The writer (`store.Store`) creates or migrates a store to `SCHEMA_VERSION`; readers
(`store_readers.connect_readonly`) only check it. Both refuse a store written by a newer
jwtriage with the same one-line `StoreError`, so neither misreads tables it does not know.

    python -m pipeline.io.store_schema      regenerates schemas/store.sql from `DDL`
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline.errors import StoreError
from pipeline.models import Cause, Confidence

SCHEMA_VERSION = 3

#: The DDL of the current schema; `schemas/store.sql` is generated from it (a test keeps them in sync).
DDL = """
CREATE TABLE IF NOT EXISTS store_meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- No table that grows with the stream has a PRIMARY KEY: DuckDB keeps a key's index in
-- memory (about 100 bytes a row, for as long as the store grows). Store.write upserts by
-- the key in the comment itself (delete the batch's keys, then append).

-- One row per event (DESIGN.md's contract): the Classification fields plus ts and service.
-- Key: event_id (with ts, which an event never changes, so that a lookup skips old row groups).
CREATE TABLE IF NOT EXISTS classifications (
    event_id VARCHAR NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    service VARCHAR NOT NULL,
    cause VARCHAR NOT NULL,
    confidence VARCHAR NOT NULL,
    attacks VARCHAR[] NOT NULL,
    findings VARCHAR[] NOT NULL,
    issuer VARCHAR,
    kid VARCHAR,
    alg VARCHAR,
    audience JSON,
    skew_seconds DOUBLE,
    detail VARCHAR,
    client_id VARCHAR,
    request_id VARCHAR,
    token_sha256 VARCHAR,              -- fingerprint, never the token
    token_header JSON,
    token_claims JSON,                 -- with sub hashed
    key_thumbprint VARCHAR,
    key_first_seen TIMESTAMPTZ,
    service_jwks_fetched_at TIMESTAMPTZ,
    reported_error VARCHAR,
    source VARCHAR NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset BIGINT NOT NULL,
    classified_at TIMESTAMPTZ NOT NULL
);

-- Each JWKS snapshot as received, with public key members only. Key: (issuer, fetched_at).
CREATE TABLE IF NOT EXISTS jwks_snapshots (
    issuer VARCHAR NOT NULL,
    fetched_at TIMESTAMPTZ NOT NULL,
    kids VARCHAR[] NOT NULL,
    jwks JSON NOT NULL
);

-- The key timeline: one row per publication interval of each key (rewritten when it changes).
CREATE TABLE IF NOT EXISTS jwks_keys (
    issuer VARCHAR NOT NULL,
    kid VARCHAR,
    thumbprint VARCHAR NOT NULL,
    kty VARCHAR NOT NULL,
    crv VARCHAR,
    interval_no INTEGER NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    removed_at TIMESTAMPTZ,
    initial BOOLEAN NOT NULL,          -- in the issuer's earliest snapshot: published before history began
    PRIMARY KEY (issuer, thumbprint, interval_no)
);

-- Rotation steps: a key added (not counting the keys there from the start) or removed.
CREATE OR REPLACE VIEW key_rotations AS
    SELECT issuer, kid, thumbprint, kty, 'added' AS action, first_seen AS ts FROM jwks_keys WHERE NOT initial
    UNION ALL
    SELECT issuer, kid, thumbprint, kty, 'removed' AS action, removed_at AS ts FROM jwks_keys
    WHERE removed_at IS NOT NULL;

-- Records that fit no wire model, with the reason. Key: (source, source_partition, source_offset).
CREATE TABLE IF NOT EXISTS dead_letters (
    source VARCHAR NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset BIGINT NOT NULL,
    kind VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    excerpt VARCHAR NOT NULL,          -- token-like runs redacted
    received_at TIMESTAMPTZ NOT NULL
);

-- Stored events judged unknown_kid whose token is re-read to judge them again when a snapshot
-- brings their kid (pipeline.rejudge): found by kid without scanning classifications. Rows of
-- those events, in the same transaction; a row leaves when its event is judged again. Key: event_id.
CREATE TABLE IF NOT EXISTS awaiting_key (
    event_id VARCHAR NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    kid VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset BIGINT NOT NULL,
    token_sha256 VARCHAR
);

-- Where each source partition resumes: written in the same transaction as the rows.
CREATE TABLE IF NOT EXISTS source_positions (
    source VARCHAR NOT NULL,
    source_partition INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, source_partition)
);
""".strip()

def create_statement(table: str) -> str:
    """The CREATE TABLE statement of `table` in the current DDL."""
    start = DDL.index(f"CREATE TABLE IF NOT EXISTS {table} (")
    return DDL[start : DDL.index(");", start) + 1]


#: Schema migrations: version → statements that bring a store at version-1 up to it.
MIGRATIONS: dict[int, list[str]] = {
    # 2: no primary keys on the tables that grow with the stream (their indexes grew a writer's memory).
    2: [
        statement
        for table in ("classifications", "jwks_snapshots", "dead_letters")
        for statement in (
            f"ALTER TABLE {table} RENAME TO {table}_v1",
            create_statement(table),
            f"INSERT INTO {table} BY NAME SELECT * FROM {table}_v1",
            f"DROP TABLE {table}_v1",
        )
    ],
    # 3: the awaiting_key index of stored unknown_kid events (re-judging that survives restarts).
    3: [
        create_statement("awaiting_key"),
        "INSERT INTO awaiting_key SELECT event_id, ts, kid, source, source_partition, source_offset, token_sha256 "
        f"FROM classifications WHERE cause = '{Cause.UNKNOWN_KID.value}' AND kid IS NOT NULL "
        f"AND confidence <> '{Confidence.REPORTED.value}'",
    ],
}

def parts_dir(path: str | Path) -> Path:
    """Where consumers keep their working files and publish their read snapshots for `path`."""
    return Path(f"{path}.parts")


def sql_path(path: Path) -> str:
    """`path` quoted for a DuckDB string literal (ATTACH takes no parameters)."""
    return str(path).replace("'", "''")


def stored_version(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> int | None:
    """The schema version a store records: 0 when unset, None without a `store_meta` table (not a jwtriage store)."""
    table = f"{catalog}.store_meta" if catalog else "store_meta"
    try:
        row = con.execute(f"SELECT value FROM {table} WHERE key = 'schema_version'").fetchone()
    except duckdb.CatalogException:
        return None
    return int(row[0]) if row else 0


def refuse_newer(version: int | None, where: str | Path) -> None:
    """A `StoreError` when `where` was written by a newer jwtriage than this one."""
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"{where} has store schema version {version}, newer than this jwtriage knows ({SCHEMA_VERSION}) "
            "(hint: upgrade jwtriage to the version that wrote it, or point --db at another store)"
        )


def write_ddl(path: Path) -> None:
    """Regenerate `schemas/store.sql` from `DDL`."""
    path.write_text(
        f"-- jwtriage DuckDB store, schema version {SCHEMA_VERSION}. Generated from pipeline/io/store_schema.py.\n"
        f"{DDL}\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent.parent / "schemas" / "store.sql"
    write_ddl(target)
    print(f"wrote {target}")
