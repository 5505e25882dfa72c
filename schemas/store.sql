-- jwtriage DuckDB store, schema version 3. Generated from pipeline/io/store_schema.py.
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
