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
        maybe = self.ids.may_hold("_batch")
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
        self.ids.add("_batch")
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
        hashes = self._hashes(self.table)
        size = MIN_BITS
        while size < BITS_PER_ID * 2 * len(hashes):  # room to double before the next rebuild
            size *= 2
        self.bits = np.zeros(size // 8, dtype=np.uint8)
        self.ids = 0
        self._set(hashes)

    def may_hold(self, relation: str) -> np.ndarray:
        """Per row of `relation` (a registered batch), whether its event_id may be in the table."""
        hashes = self._hashes(relation)
        found = np.ones(len(hashes), dtype=bool)
        for index in self._indexes(hashes):
            found &= (self.bits[index >> np.uint64(3)] >> (index & np.uint64(7)).astype(np.uint8)) & 1 == 1
        return found

    def add(self, relation: str) -> None:
        """Note the event ids of `relation` (a batch going into the table)."""
        hashes = self._hashes(relation)
        if (self.ids + len(hashes)) * BITS_PER_ID > self.bits.size * 8:
            self.rebuild()  # sized to what the table holds now: pruned rows have left it
        self._set(hashes)  # (again, after a rebuild that read them: cheap, and right before the INSERT too)

    def _set(self, hashes: np.ndarray) -> None:
        for index in self._indexes(hashes):
            bit = np.left_shift(np.uint8(1), (index & np.uint64(7)).astype(np.uint8))
            np.bitwise_or.at(self.bits, index >> np.uint64(3), bit)
        self.ids += len(hashes)

    def _indexes(self, hashes: np.ndarray) -> list[np.ndarray]:
        mask = np.uint64(self.bits.size * 8 - 1)
        first, step = hashes & np.uint64(0xFFFFFFFF), (hashes >> np.uint64(32)) | np.uint64(1)
        return [(first + np.uint64(i) * step) & mask for i in range(HASHES)]

    def _hashes(self, relation: str) -> np.ndarray:
        column = self.con.execute(f"SELECT hash(event_id) AS h FROM {relation}").fetchnumpy()["h"]
        return np.asarray(column, dtype=np.uint64)
