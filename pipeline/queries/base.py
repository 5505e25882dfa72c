"""What every query shares: the filters, rows as dicts, bucket widths, and the rotation-damage condition."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import duckdb

from pipeline.causes import ROTATION_DAMAGE, STEP_CAUSES


@dataclass(frozen=True, slots=True)
class Filters:
    """The filters every view shares; None means "any". `without_attacks` keeps events with no attack label."""

    since: datetime | None = None
    until: datetime | None = None
    services: tuple[str, ...] | None = None
    issuers: tuple[str, ...] | None = None
    causes: tuple[str, ...] | None = None
    without_attacks: bool = False

    def where(self, alias: str = "", hourly: bool = False) -> tuple[str, list[Any]]:
        """A SQL condition and its parameters; `hourly` for `classifications_hourly` (an hour counts when it
        starts in the window; a row without attacks has `attack` NULL)."""
        p = f"{alias}." if alias else ""
        time = f"{p}hour" if hourly else f"{p}ts"
        clauses: list[str] = ["TRUE"]
        params: list[Any] = []
        if self.since is not None:
            clauses.append(f"{time} >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append(f"{time} < ?")
            params.append(self.until)
        for column, values in (("service", self.services), ("issuer", self.issuers), ("cause", self.causes)):
            if values:
                clauses.append(f"{p}{column} IN ({marks(values)})")
                params.extend(values)
        if self.without_attacks:
            clauses.append(f"{p}attack IS NULL" if hourly else f"len({p}attacks) = 0")
        return " AND ".join(clauses), params

    def window(self, since: datetime | None, until: datetime | None) -> Filters:
        """The same filter over another time window."""
        return replace(self, since=since, until=until)

    def with_previous(self) -> Filters:
        """The filter widened back by one window length (the window and the one just before it)."""
        if self.since is None or self.until is None:
            raise ValueError("a comparison with the previous window needs since and until")
        return self.window(self.since - (self.until - self.since), self.until)

    @classmethod
    def step_damage(cls, action: str, services: tuple[str, ...] | None = None) -> Filters:
        """The failures a rotation step with this action causes on its own key (its kid is the caller's to add)."""
        return cls(services=services, causes=STEP_CAUSES[action], without_attacks=True)


#: No filter at all: every event (the default of every query that takes filters).
NO_FILTERS = Filters()


def marks(values: Any) -> str:
    """One `?` per value, for `IN (…)`."""
    return ", ".join("?" for _ in values)


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """The result as one dict per row."""
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def rotation_damage(alias: str = "") -> tuple[str, list[Any]]:
    """SQL: the event counts as caused by a key rotation (DESIGN.md): a rotation cause and no attack label."""
    p = f"{alias}." if alias else ""
    return f"({p}cause IN ({marks(ROTATION_DAMAGE)}) AND len({p}attacks) = 0)", list(ROTATION_DAMAGE)


def damage_of_step(action: str, alias: str = "") -> tuple[str, list[Any]]:
    """SQL: the event is damage a rotation step causes, the step's action being the SQL expression `action`.

    stale_jwks / unpublished_key after a key was added, retired_key after one was removed
    (`pipeline.causes.STEP_CAUSES`); the caller matches the step's key.
    """
    p = f"{alias}." if alias else ""
    parts, params = [], []
    for step, causes in STEP_CAUSES.items():
        parts.append(f"({action} = ? AND {p}cause IN ({marks(causes)}))")
        params += [step, *causes]
    return f"(({' OR '.join(parts)}) AND len({p}attacks) = 0)", params


BUCKET_SECONDS = {
    "1 minute": 60,
    "5 minutes": 300,
    "15 minutes": 900,
    "1 hour": 3600,
    "6 hours": 21600,
    "1 day": 86400,
}


def interval(bucket: str) -> str:
    """A bucket width that may go into SQL (only these)."""
    if bucket not in BUCKET_SECONDS:
        raise ValueError(f"bucket must be one of {sorted(BUCKET_SECONDS)}")
    return bucket


#: Columns that views may rank by (they are put into SQL, so only these).
RANKABLE = frozenset({"service", "client_id", "kid", "issuer", "alg"})


def check_rankable(column: str) -> None:
    if column not in RANKABLE:
        raise ValueError(f"cannot rank by {column!r}; choose from {sorted(RANKABLE)}")
