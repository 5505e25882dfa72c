"""A consumer's live table of verdicts: the upsert, and a Bloom filter of its ids so new events skip the DELETE.

A batch replaces the stored rows of its (event_id, ts) with `DELETE … USING`. DuckDB can skip a row
group only by the batch's min/max `ts`, and a batch's `ts` spread as widely as the partitions it
mixes drift apart: in a burst each batch's DELETE scanned most of the live table and deleted
nothing (bench/results.md, "The burst's excess CPU per event"). Nearly every event is new, so the
filter says "certainly not stored" for almost all of them, and only the few it cannot rule out
take the DELETE.

The filter never forgets an id it was given, so it never says "not stored" of a stored row: an id
that left the table (pruned, rolled back) costs only a DELETE that finds nothing, as every DELETE
did before. Hashes are DuckDB's `hash(event_id)`, computed where the rows are; numpy holds the bits.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa

#: Hash functions per id (double hashing of one 64-bit hash).
HASHES = 7
#: Bits per id the table holds: about one false "may be stored" in 100,000 new ids at the fullest.
BITS_PER_ID = 32
#: The smallest filter, in bits (2 MiB): a consumer's first hours need no resizing.
MIN_BITS = 1 << 24
_TS = pa.timestamp("us", tz="UTC")


class LiveVerdicts:
    """Upserts into a consumer's live `classifications`, noting each replaced version in `superseded`."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.ids = StoredIds(con, "classifications")

    def upsert(self, table: pa.Table, now: datetime) -> None:
        """Replace the stored rows of the batch's (event_id, ts), then append it; inside the caller's transaction."""
        self.con.register("_batch", table)
        hashes = self.ids.hashes("_batch")  # once: the probe and the note after the INSERT use the same
        maybe = self.ids.may_hold(hashes)
        replaced = []
        if maybe.any():
            self.con.register("_maybe", table.filter(pa.array(maybe)))
            replaced = self.con.execute(
                "DELETE FROM classifications USING _maybe WHERE classifications.event_id = _maybe.event_id "
                "AND classifications.ts = _maybe.ts RETURNING classifications.event_id, classifications.ts, "
                "classifications.classified_at"
            ).fetchall()
            self.con.unregister("_maybe")
        self.con.execute("INSERT INTO classifications BY NAME SELECT * FROM _batch")
        self.ids.add(hashes)
        self.con.unregister("_batch")  # on failure the rollback drops the registrations with the rest
        if replaced:
            self.con.register("_replaced", pa.table({
                "event_id": [r[0] for r in replaced],
                "ts": pa.array([r[1] for r in replaced], _TS),
                "classified_at": pa.array([r[2] for r in replaced], _TS),
                "superseded_at": pa.repeat(pa.scalar(now, _TS), len(replaced)),
            }))
            self.con.execute("INSERT INTO superseded BY NAME SELECT * FROM _replaced")
            self.con.unregister("_replaced")


class StoredIds:
    """A Bloom filter of the event ids in `table`, built from it at start and grown as ids are added."""

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str) -> None:
        self.con, self.table = con, table
        self.bits = np.zeros(MIN_BITS // 8, dtype=np.uint8)
        self.ids = 0  # ids set since the last rebuild (more than the table holds once rows leave it)
        self.rebuild()

    def rebuild(self) -> None:
        """The filter again from the table: at start-up, and when the ids set outgrow its size."""
        hashes = self.hashes(self.table)
        size = MIN_BITS
        while size < BITS_PER_ID * 2 * len(hashes):  # room to double before the next rebuild
            size *= 2
        self.bits = np.zeros(size // 8, dtype=np.uint8)
        self.ids = 0
        self._set(hashes)

    def hashes(self, relation: str) -> np.ndarray:
        """The event ids' 64-bit hashes, per row of `relation` (a table or a registered batch)."""
        column = self.con.execute(f"SELECT hash(event_id) AS h FROM {relation}").fetchnumpy()["h"]
        return np.asarray(column, dtype=np.uint64)

    def may_hold(self, hashes: np.ndarray) -> np.ndarray:
        """Per id (its hash from `hashes`), whether it may be in the table: every one of its bits is set."""
        byte, bit = self._positions(hashes)
        return ((self.bits[byte] >> bit) & 1).all(axis=0)

    def add(self, hashes: np.ndarray) -> None:
        """Note ids (their `hashes`) going into the table."""
        if (self.ids + len(hashes)) * BITS_PER_ID > self.bits.size * 8:
            self.rebuild()  # sized to what the table holds now: pruned rows have left it
        self._set(hashes)  # (again, after a rebuild that read them: cheap, and right before the INSERT too)

    def _set(self, hashes: np.ndarray) -> None:
        byte, bit = self._positions(hashes)
        # `.at`, not `bits[byte] |= …`: ids whose bits share a byte would keep only one of them.
        np.bitwise_or.at(self.bits, byte.ravel(), np.left_shift(np.uint8(1), bit.ravel()))
        self.ids += len(hashes)

    def _positions(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(byte, bit) of each id's HASHES bits, as HASHES x ids arrays (double hashing of the 64-bit hash)."""
        mask = np.uint64(self.bits.size * 8 - 1)
        first, step = hashes & np.uint64(0xFFFFFFFF), (hashes >> np.uint64(32)) | np.uint64(1)
        index = (first + np.arange(HASHES, dtype=np.uint64)[:, None] * step) & mask
        return index >> np.uint64(3), (index & np.uint64(7)).astype(np.uint8)
