"""Key hygiene's uses from the hourly rollups (issue 21): the same rows as the raw query while the raw rows are
kept, and still the key's uses once they expired (the raw query then saw only what was left).

The stores are `test_rollups`' plain DuckDB files: raw rows, `classifications_hourly` rolled by
`pipeline.rollups.hourly_sql` before a boundary, `store_coverage`, and a key timeline of two keys of
one issuer, one removed inside an hour.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline import queries
from pipeline.io.store_schema import create_statement
from tests.test_rollups import roll_up_and_expire

START = datetime(2026, 3, 2, tzinfo=UTC)
HOURS = 12
UNTIL = START + timedelta(hours=HOURS)

used_event = st.fixed_dictionaries(
    {
        "minute": st.integers(0, HOURS * 60 - 1),
        "second": st.integers(0, 59),
        "key": st.sampled_from(["old", "new", None]),
        "confidence": st.sampled_from(["verified", "inferred", "reported"]),
        "attacks": st.lists(st.sampled_from(["alg_none", "kid_injection"]), max_size=2),
        "token": st.integers(0, 12),
        # the token's iat, minutes before the first event's minute (negative: claims to be issued later)
        "iat_before": st.integers(-30, 600),
    }
)


def hygiene_store(events: list[dict[str, Any]], removed_minute: int) -> duckdb.DuckDBPyConnection:
    """Raw rows of `events` and the key timeline: `old` there from the start and removed at `removed_minute` (and
    some seconds: inside an hour), `new` published an hour in."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(create_statement("classifications"))
    con.execute(create_statement("jwks_keys"))
    removed = START + timedelta(minutes=removed_minute, seconds=17)
    con.execute("INSERT INTO jwks_keys VALUES ('i', 'k-old', 'old', 'RSA', NULL, 0, ?, ?, ?, true), "
                "('i', 'k-new', 'new', 'RSA', NULL, 0, ?, ?, NULL, false)",
                [START - timedelta(days=1), removed, removed, START + timedelta(hours=1), UNTIL])
    iats: dict[int, int] = {}  # a token's claims are the same in each of its events
    values = []
    for n, e in enumerate(events):
        ts = START + timedelta(minutes=e["minute"], seconds=e["second"])
        iat = iats.setdefault(e["token"], int(ts.timestamp()) - 60 * e["iat_before"])
        key = e["key"] if e["confidence"] != "reported" else None
        values.append([f"e{n}", ts, e["confidence"], e["attacks"], None if key is None else "i",
                       None if key is None else f"k-{key}", str(e["token"]), key,
                       json.dumps({"iat": iat, "exp": iat + 3600}), n, ts])
    if values:
        con.executemany(
            """INSERT INTO classifications (event_id, ts, service, cause, confidence, attacks, findings, issuer, kid,
                   token_sha256, key_thumbprint, token_claims, source, source_partition, source_offset, classified_at)
               VALUES (?, ?, 's', 'expired', ?, ?, [], ?, ?, sha256(?), ?, ?::JSON, 'test', 0, ?, ?)""",
            values,
        )
    return con


def rolled(events: list[dict[str, Any]], removed_minute: int, rolled_hours: int, raw_hours: int
           ) -> duckdb.DuckDBPyConnection:
    con = hygiene_store(events, removed_minute)
    roll_up_and_expire(con, START + timedelta(hours=rolled_hours), START + timedelta(hours=raw_hours))
    return con


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANY_USES = [{"minute": m, "second": m % 60, "key": "old" if m % 3 else "new", "confidence": "verified",
              "attacks": ["alg_none"] if m % 11 == 0 else [], "token": m % 13, "iat_before": (m % 7) * 20 - 10}
             for m in range(0, HOURS * 60, 4)]  # fmt: skip


@SETTINGS
@given(st.lists(used_event, max_size=40), st.integers(0, HOURS * 60 - 1), st.integers(1, HOURS))
@example(MANY_USES, 5 * 60 + 30, 8)  # removed mid-hour, uses on both sides of it, in a rolled hour
def test_while_the_raw_rows_are_kept_the_rollups_give_the_raw_rows_answer(
    events: list[dict[str, Any]], removed_minute: int, rolled_hours: int
) -> None:
    expected = queries.key_hygiene(hygiene_store(events, removed_minute), START, UNTIL)
    assert queries.key_hygiene(rolled(events, removed_minute, rolled_hours, 0), START, UNTIL) == expected


@SETTINGS
@given(st.lists(used_event, max_size=40), st.integers(0, HOURS * 60 - 1), st.integers(1, HOURS))
@example(MANY_USES, 2 * 60 + 30, 8)
# the event after the removal is counted in its first label's row; its second label's row spans it too
@example([{"minute": 0, "second": 0, "key": "old", "confidence": "verified", "attacks": ["alg_none"], "token": 0,
           "iat_before": 0},
          {"minute": 0, "second": 17, "key": "old", "confidence": "verified", "attacks": ["kid_injection", "alg_none"],
           "token": 0, "iat_before": 0}], 0, 1)
def test_after_the_raw_rows_expired_the_uses_are_still_counted(
    events: list[dict[str, Any]], removed_minute: int, rolled_hours: int
) -> None:
    """Raw rows kept from the rollups' boundary on: every figure as before the expiry, but uses after a removal
    whose hour expired, which are then a lower bound that still says whether there were any."""
    expected = queries.key_hygiene(hygiene_store(events, removed_minute), START, UNTIL)
    found = queries.key_hygiene(rolled(events, removed_minute, rolled_hours, rolled_hours), START, UNTIL)
    assert [{k: v for k, v in row.items() if k != "uses_after_removal"} for row in found] == [
        {k: v for k, v in row.items() if k != "uses_after_removal"} for row in expected]
    for got, raw in zip(found, expected, strict=True):
        removal_hour = None if raw["removed_at"] is None else raw["removed_at"].replace(minute=0, second=0)
        if removal_hour is None or removal_hour >= START + timedelta(hours=rolled_hours):
            assert got["uses_after_removal"] == raw["uses_after_removal"]
        else:
            assert min(1, raw["uses_after_removal"]) <= got["uses_after_removal"] <= raw["uses_after_removal"]


def test_the_uses_of_expired_hours_count() -> None:
    """The raw query counted only what retention left: here the old key's uses before the last two hours."""
    raw = queries.key_hygiene(hygiene_store(MANY_USES, HOURS * 60 - 30), START, UNTIL)
    expired = queries.key_hygiene(rolled(MANY_USES, HOURS * 60 - 30, HOURS - 2, HOURS - 2), START, UNTIL)
    old = next(row for row in raw if row["thumbprint"] == "old")
    assert old["uses"] > 100
    assert expired == raw


def test_hours_rolled_before_the_rollups_had_the_key_read_their_raw_rows() -> None:
    """A store rolled by an older jwtriage (no `key_thumbprint` in its rollups): those hours' uses come from their
    raw rows while they are kept, not counted as none."""
    con = rolled(MANY_USES, 5 * 60 + 30, 8, 0)
    con.execute("UPDATE classifications_hourly SET key_thumbprint = NULL, min_iat = NULL, max_iat = NULL "
                "WHERE hour < ?", [START + timedelta(hours=6)])
    expected = queries.key_hygiene(hygiene_store(MANY_USES, 5 * 60 + 30), START, UNTIL)
    assert queries.key_hygiene(con, START, UNTIL) == expected


def test_rollups_without_the_key_columns_at_all_read_the_raw_rows() -> None:
    """A lake whose views an older writer made has no `key_thumbprint` to read: the raw query answers."""
    con = rolled(MANY_USES, 5 * 60 + 30, 8, 0)
    for column in ("key_thumbprint", "min_iat", "max_iat"):
        con.execute(f"ALTER TABLE classifications_hourly DROP COLUMN {column}")
    expected = queries.key_hygiene(hygiene_store(MANY_USES, 5 * 60 + 30), START, UNTIL)
    assert queries.key_hygiene(con, START, UNTIL) == expected
