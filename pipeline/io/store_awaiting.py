"""The store's `awaiting_key` index: stored unknown_kid events with a token, found by kid when their key arrives.

Every batch's events leave it and those judged unknown_kid (again) come back in: a snapshot
that brings their kid finds them there (`pipeline.rejudge`). Past `MAX_AWAITING_KEY` rows the
oldest are let go, and said so. Nearly always (an outage included) the index is empty and a
batch has no unknown_kid row: nothing can leave or come in, so its three statements (~1.5 µs
of a consumer's CPU per event) are skipped. For that the row count is kept from batch to
batch; whatever may change the table otherwise (a rollback, `forget`) makes it unknown, and
the next batch counts again.
"""

from __future__ import annotations

import logging

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.models import Cause, Confidence

log = logging.getLogger(__name__)

#: Stored unknown_kid events kept findable by kid (`awaiting_key`); past it the oldest are let go, with a warning.
MAX_AWAITING_KEY = 100_000
_UNKNOWN_KID = Cause.UNKNOWN_KID.value


class AwaitingKeyIndex:
    """Keeps `awaiting_key` in step with the rows a store writes; `rows` is its row count, None when not known."""

    def __init__(self) -> None:
        self.rows: int | None = None

    def index(self, con: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
        """A batch's rows (in its transaction): its events leave the index, its unknown_kid ones come back in."""
        if self.rows == 0 and not pc.any(pc.equal(rows["cause"], _UNKNOWN_KID)).as_py():
            return
        con.register("_judged", rows)
        try:
            con.execute("DELETE FROM awaiting_key WHERE event_id IN (SELECT event_id FROM _judged)").fetchall()
            con.execute(
                "INSERT INTO awaiting_key SELECT event_id, ts, kid, source, source_partition, source_offset, "
                "token_sha256 FROM _judged WHERE cause = ? AND kid IS NOT NULL AND confidence <> ?",
                [_UNKNOWN_KID, Confidence.REPORTED.value],
            ).fetchall()
        finally:
            con.unregister("_judged")
        [(count,)] = con.execute("SELECT count(*) FROM awaiting_key").fetchall()
        over = count - MAX_AWAITING_KEY
        if over > 0:
            con.execute(
                "DELETE FROM awaiting_key WHERE event_id IN (SELECT event_id FROM awaiting_key ORDER BY ts LIMIT ?)",
                [over],
            ).fetchall()
            log.warning("awaiting_key holds over %d events: the oldest %d will not be judged again", MAX_AWAITING_KEY,
                        over)
        self.rows = min(count, MAX_AWAITING_KEY)

    def forget(self, con: duckdb.DuckDBPyConnection, event_ids: list[str]) -> None:
        """Take events out that cannot be judged again (their record or sample is gone)."""
        if event_ids:
            sql = "DELETE FROM awaiting_key WHERE event_id IN (SELECT unnest(?::VARCHAR[]))"
            con.execute(sql, [event_ids]).fetchall()
            self.rows = None
