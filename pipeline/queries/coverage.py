"""What the store still holds raw, and where its hourly rollups take over (issue 21).

`store_coverage` (one row) says `raw_since`, the earliest hour whose raw rows are all kept
(NULL: everything), and `rolled_through`, the time before which rollups are complete (NULL:
none yet): the end of the closed hours (`closed_through`), or, in a store with one writer, the
end of its provisional rollup of the open hours (a minute's edge inside the newest hour; the
rollup row of that hour counts the events before it, raw rows the rest). A store written before
rollups has no such view: everything is raw, and every query runs as it always did.

A counting query whose window starts before `rolled_through` reads `classifications_hourly`
for the hours before it and raw rows from it on (`Split`); one whose window starts at or after
it reads raw rows only. In the rollups an hour belongs to a window when the hour *starts*
inside it (a window's edges are exact to the hour there). A query that cuts time finer than an
hour (a chart of 5-minute buckets) reads rollups only where raw rows expired (before
`raw_since`), so its recent buckets keep their shape; such charts cover short windows.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import duckdb

from pipeline.io.store_parts import coverage_signature, pin_open_rollup, raw_relation
from pipeline.io.store_rollups import rollup_relation
from pipeline.queries.base import Filters


@dataclass(frozen=True, slots=True)
class Coverage:
    """`store_coverage`'s row; both None for a store without rollups (everything raw)."""

    raw_since: datetime | None = None
    rolled_through: datetime | None = None
    closed_through: datetime | None = None  # where the closed hours end (an hour's edge; <= rolled_through)

    def expired_before(self, since: datetime | None) -> datetime | None:
        """`raw_since` when a window starting at `since` (None: the beginning) reaches before it, else None."""
        if self.raw_since is None or (since is not None and since >= self.raw_since):
            return None
        return self.raw_since


#: A reader connection's last coverage and the files' signature it was read at (`store_parts.coverage_signature`).
_SEEN: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, tuple[tuple[str, ...], Coverage]] = (
    weakref.WeakKeyDictionary())


def coverage(con: duckdb.DuckDBPyConnection) -> Coverage:
    """The store's coverage; `Coverage()` when it has no `store_coverage` or no `classifications_hourly`.

    Every question asks it first (a report ~19 times): on a reader connection it is read again only
    when the files it follows changed (a look at two or three files, not a query over them).
    """
    signature = coverage_signature(con)
    if signature is not None and (seen := _SEEN.get(con)) is not None and seen[0] == signature:
        return seen[1]
    found = _coverage(con)
    if signature is not None:
        _SEEN[con] = (signature, found)
    return found


def _coverage(con: duckdb.DuckDBPyConnection) -> Coverage:
    try:
        found = con.execute("SELECT * FROM store_coverage LIMIT 1")
        names = [d[0] for d in found.description or []]
        row = found.fetchone()
    except (duckdb.CatalogException, duckdb.BinderException):  # an older store: no rollups, everything raw
        return Coverage()
    if row is None or (row[1] is not None and not _has_rollups(con)):
        return Coverage()
    values = dict(zip(names, row, strict=True))  # a lake's or an older catalog's view has no closed_through
    if values.get("open_through_us") is not None:  # this connection's questions count this open rollup
        pin_open_rollup(con, values["open_through_us"])
    rolled = values.get("rolled_through")
    return Coverage(values.get("raw_since"), rolled, values.get("closed_through", rolled))


def _has_rollups(con: duckdb.DuckDBPyConnection) -> bool:
    """Is there a `classifications_hourly`? From the catalog: binding the parts store's view lists its files."""
    found = con.execute("SELECT count(*) FROM (SELECT view_name AS name FROM duckdb_views() UNION ALL "
                        "SELECT table_name FROM duckdb_tables()) WHERE name = 'classifications_hourly'").fetchone()
    return bool(found and found[0])


@dataclass(frozen=True, slots=True)
class Split:
    """A filter that reads rollups for hours before `boundary` and raw rows from `boundary` on."""

    boundary: datetime
    filters: Filters
    closed: datetime | None = None  # where the closed hours end, when `boundary` is inside an open hour
    hourly: str = "classifications_hourly"  # the rollups to read (a FROM item of that name: `rollup_relation`)
    raw: str = "classifications"  # the raw rows to read from the boundary on (`raw_relation`)

    def settled(self, *cuts: datetime | None) -> Split:
        """This split, or one at the closed hours' end when a cut (a window's edge) falls inside the open rollup's
        last hour off an hour's edge: that hour's rollup row cannot be cut there, raw rows can."""
        if self.closed is None or not any(c is not None and self.closed < c < self.boundary and c.timestamp() % 3600
                                          for c in cuts):
            return self
        return replace(self, boundary=self.closed, closed=None)


def split(con: duckdb.DuckDBPyConnection, filters: Filters, fine: bool = False) -> Split | None:
    """The split for `filters`, or None when raw rows answer it alone (no rollups, or a window after them).

    `fine`: the query cuts time finer than an hour; rollups only where raw rows expired.
    """
    found = coverage(con)
    boundary, closed = found.rolled_through, found.closed_through
    if fine and boundary is not None:
        boundary = None if found.raw_since is None else min(found.raw_since, closed or boundary)
    if boundary is None or (filters.since is not None and filters.since >= boundary):
        return None
    if (filters.since is not None and closed is not None and filters.since > closed
            and filters.since.timestamp() % 3600):
        # a window starting inside an open hour: the open rollup's row of that hour would not count in it (an
        # hour counts where it starts), so raw rows answer, as they did before the open hours were rolled
        return None
    until = boundary if filters.until is None else min(filters.until, boundary)
    closed = closed if closed is not None and closed < boundary else None
    # raw rows from the closed hours' end on, should a cut move the boundary there (`settled`)
    return Split(boundary, filters, closed, rollup_relation(con, filters.since, until),
                 raw_relation(con, closed or boundary, filters.until)).settled(filters.until)


def by_day(con: duckdb.DuckDBPyConnection, s: Split, hours_on: frozenset[int] = frozenset()) -> Split:
    """`s` reading the closed days wholly inside its window (and before its boundary) from their daily rows where
    the writer wrote them (`store_rollups`), up to 24x fewer rows than their hours, but the days numbered (since the
    epoch) in `hours_on`. Only for a question whose answer is a sum, an extreme or a merge of the rows its filter
    keeps (by key columns and `rollups.ROW_FLAGS`): no hour buckets, no cut inside a day, no row placed by its
    own time (but in the days `hours_on` names)."""
    until = s.boundary if s.filters.until is None else min(s.filters.until, s.boundary)
    return replace(s, hourly=rollup_relation(con, s.filters.since, until, days=True, hours_on=hours_on))


def finer_than_an_hour(seconds: float, since: datetime | None = None) -> bool:
    """Whether buckets `seconds` wide (starting at `since`) cut an hour: rollups cannot fill them."""
    aligned = since is None or since.timestamp() % 3600 == 0
    return not (seconds % 3600 == 0 and aligned)


def expired_note(con: duckdb.DuckDBPyConnection, since: datetime | None) -> str | None:
    """The line a view shows when its window starts before the raw rows do, else None."""
    expired = coverage(con).expired_before(since)
    return None if expired is None else expired_text(expired)


def expired_text(expired: datetime, per_event: bool = False) -> str:
    """The note itself (one wording everywhere); `per_event` for a view of single events, which rollups lack."""
    if per_event:
        return f"raw detail expired before {when(expired)} UTC: events from then on only"
    return f"raw detail expired before {when(expired)} UTC; counts from hourly rollups"


def when(moment: datetime) -> str:
    """A coverage boundary as text (UTC, to the minute)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
