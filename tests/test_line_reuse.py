"""`classify`'s lines made straight from a retry's line (`pipeline.engine.line_reuse`): the full path's, byte for byte.

Raw event lines are written here by hand, so the strict head the fast path reads
(`{"event_id":"…","ts":"…Z",`) meets every neighbour it must refuse: ids that JSON escapes,
times with another offset, seven or more fraction digits, a month 13, a second 60, rests
that name `ts` or `event_id` again (the last key wins in the decoder), an escaped key, an
unknown service, lines that are not JSON, duplicate ids, tokens retried across their
`exp` + leeway and the key's publish and removal times, and a snapshot that comes after
events. A pipeline with line reuse and one without (reuse on, and reuse off) must print the
same stdout and stderr and count the same events.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import ClassifyConfig
from pipeline.engine import line_reuse
from pipeline.io.files import JsonlVerdictSink
from pipeline.records import Envelope, Position, RecordKind
from pipeline.runner import Pipeline
from tests.test_verdict_spans import FETCHED, SNAPSHOTS, TOKENS, instants
from tests.world import CORP, JWE, T0, config, good_claims, mint, snapshot

T = int(T0.timestamp())
#: Tokens retried across `exp` + leeway (30 s) and `nbf`: their verdict changes inside the stream.
EDGY = [mint("rsa-2", good_claims(iat=T - 600, exp=T + 45)), mint("rsa-3", good_claims(iat=T + 3590, exp=T + 7200)),
        mint("rsa-2", good_claims(iat=T - 60, exp=T + 600, nbf=T + 20))]
ALL_TOKENS: list[str | None] = [*TOKENS, *EDGY, "abc.def", JWE, None]
LATE = snapshot(CORP, T0 + timedelta(minutes=10), ["rsa-3", "ec-1", "ed-1"])  # retires rsa-2 mid-stream

#: How a line's time is written: Z with 0-9 fraction digits, another offset, or out of range.
TS_FORMS = ["z0", "z1", "z3", "z6", "z7", "z9", "+00:00", "-05:00", "month13", "second60"]
#: What follows the head: the usual rest, or one the fast path must never learn from.
REST_FORMS = ["plain", "plain", "plain", "ts_again", "id_again", "escaped_key", "extra", "unknown_service", "spaced"]


def _ts(at: datetime, form: str) -> str:
    at = at.astimezone(UTC)
    whole = at.strftime("%Y-%m-%dT%H:%M:%S")
    micros = f"{at.microsecond:06d}"
    if form.startswith("z"):
        digits = int(form[1:])
        return whole + (("." + (micros + "000")[:digits]) if digits else "") + "Z"
    if form == "month13":
        return "2026-13-01T00:00:00Z"
    if form == "second60":
        return whole[:-2] + "60Z"
    return at.astimezone(timezone(timedelta(hours=int(form[:3])))).isoformat()


def _line(event_id: str, ts: str, token: str | None, fetched: datetime | None, service: str, form: str,
          other: str) -> bytes:
    rest: dict[str, Any] = {"service": "nobody-api" if form == "unknown_service" else service}
    if token is not None:
        rest["token"] = token
    rest["reported_error"] = "Jwt is expired"
    if fetched is not None:
        rest["service_jwks_fetched_at"] = fetched.isoformat()
    if form == "extra":
        rest["client_id"] = "ts"
    if form == "ts_again":
        rest["ts"] = other
    if form == "id_again":
        rest["event_id"] = "the-rest-s"
    body = json.dumps(rest, separators=(", ", ": ") if form == "spaced" else (",", ":"))[1:-1]
    if form == "escaped_key":
        body += f',"\\u0074s":"{other}"'
    return f'{{"event_id":{json.dumps(event_id)},"ts":"{ts}",{body}}}'.encode()


#: Times off every edge (a retry's usual place, where spans are a minute long), or on one.
quiet_instants = st.integers(0, 12_000).map(lambda n: T0 - timedelta(minutes=200) + timedelta(seconds=1.7 * n))
lines = st.tuples(
    st.integers(0, len(ALL_TOKENS) - 1),
    st.one_of(quiet_instants, instants),
    st.integers(0, len(FETCHED) - 1),
    st.sampled_from(["payments-api", "orders-api"]),
    st.one_of(st.sampled_from(["e1", "e2", "r-7:x.y"]), st.from_regex(r"e[0-9]{1,3}", fullmatch=True),
              st.text(min_size=1, max_size=4)),
    st.sampled_from(["z6"] * 8 + TS_FORMS),
    st.sampled_from(["plain"] * 8 + REST_FORMS),
    st.integers(1, 12),  # retries of the line's rest, 1.3 s apart
)


def _stream(drawn: list[Any], junk_at: list[int]) -> list[bytes]:
    out: list[bytes] = []
    for token, at, fetched, service, event_id, ts_form, rest_form, retries in drawn:
        for retry in range(retries):
            when = at + timedelta(seconds=1.3 * retry)
            out.append(_line(event_id, _ts(when, ts_form), ALL_TOKENS[token], FETCHED[fetched], service, rest_form,
                             _ts(at - timedelta(hours=1), "z3")))
    for at in junk_at:
        out.insert(min(at, len(out)), b'{"event_id":"j","ts":"2026-11-29T10:00:00Z",' if at % 2 else b"not json")
    return out


def _run(lines: list[bytes], size: int, late_at: int | None, *, reuse: bool, reused_lines: bool) -> tuple[Any, ...]:
    cfg = config().model_copy(update={"classify": ClassifyConfig(reuse_judgements=reuse)})
    pipeline = Pipeline(cfg, snapshots_first=True, reused_lines=reused_lines)
    out, errors = io.StringIO(), io.StringIO()
    sink = JsonlVerdictSink(out, errors)
    snapshots = [Envelope(RecordKind.SNAPSHOT, s.model_dump_json().encode(), Position("jwks", 0, n))
                 for n, s in enumerate(SNAPSHOTS)]
    sink.write(pipeline.process(snapshots), pipeline.timeline)
    events = [Envelope(RecordKind.EVENT, line, Position("events", 0, n + 1)) for n, line in enumerate(lines)]
    if late_at is not None:  # a source that breaks its word: a snapshot after events
        events.insert(late_at, Envelope(RecordKind.SNAPSHOT, LATE.model_dump_json().encode(), Position("jwks", 0, 99)))
    for start in range(0, len(events), size):
        sink.write(pipeline.process(events[start:start + size]), pipeline.timeline)
    hits = pipeline._lines.hits if pipeline._lines is not None else 0
    return out.getvalue(), errors.getvalue(), sink.bad, pipeline.counts, hits


def _same(lines: list[bytes], size: int, late_at: int | None = None) -> int:
    fast = _run(lines, size, late_at, reuse=True, reused_lines=True)
    full = _run(lines, size, late_at, reuse=True, reused_lines=False)
    fresh = _run(lines, size, late_at, reuse=False, reused_lines=False)
    assert fast[:4] == full[:4] == fresh[:4]
    return int(fast[4])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(lines, min_size=1, max_size=30), st.lists(st.integers(0, 60), max_size=3), st.integers(1, 40),
       st.one_of(st.none(), st.integers(0, 80)))
def test_a_line_made_from_its_rest_is_the_full_paths(drawn: list[Any], junk_at: list[int], size: int,
                                                     late_at: int | None) -> None:
    lines = _stream(drawn, junk_at)
    _same(lines, size, None if late_at is None else min(late_at, len(lines)))


def _retries(rest_form: str = "plain", count: int = 400, token: str = TOKENS[2], first: int = 0) -> list[bytes]:
    """One token retried every 1.3 s from T0+65min (rsa-3 is published at T0+1h: stale_jwks), fetch time T0-1h."""
    start = T0 + timedelta(minutes=65)
    return [_line(f"r{n}", _ts(start + timedelta(seconds=1.3 * n), "z6"), token, FETCHED[2], "payments-api",
                  rest_form, _ts(start - timedelta(hours=1), "z3")) for n in range(first, first + count)]


def test_most_retries_of_an_outage_take_the_fast_path() -> None:
    hits = _same(_retries(), 50)
    assert hits > 300, hits


@pytest.mark.parametrize("form", ["ts_again", "id_again", "escaped_key"])
def test_a_rest_that_names_ts_or_event_id_again_is_never_learned(form: str) -> None:
    """Its decoded `ts` (or `event_id`) is the rest's, not the head's: a line made from the head would be wrong.

    The head of the first such line agrees with the rest (so the decoded record matches its
    head); later ones have other ids and times inside spans whose tails plain retries taught.
    """
    start = T0 + timedelta(minutes=65)
    plain = _retries(count=100)
    rest_ts = _ts(start - timedelta(hours=1), "z3")
    first_id = "the-rest-s" if form == "id_again" else "t0"
    trick = [_line(first_id, rest_ts if form != "id_again" else _ts(start, "z6"), TOKENS[2], FETCHED[2],
                   "payments-api", form, rest_ts)]
    trick += [_line(f"t{n}", _ts(start + timedelta(seconds=1.3 * n + 0.1), "z6"), TOKENS[2], FETCHED[2],
                    "payments-api", form, rest_ts) for n in range(1, 100)]
    _same(plain + trick, 20)


def test_a_snapshot_after_events_turns_the_fast_path_off() -> None:
    lines = _retries(count=200)
    assert _same(lines, 25, late_at=120) < 120


@pytest.mark.parametrize(("entries", "held"), [(3, 32 * 1024 * 1024), (10_000, 9_000)])
def test_the_rests_kept_are_bounded_in_entries_and_bytes(monkeypatch: Any, entries: int, held: int) -> None:
    monkeypatch.setattr(line_reuse, "MAX_RESTS", entries)
    monkeypatch.setattr(line_reuse, "MAX_REST_BYTES", held)
    lines = [line for n in range(8) for line in _retries(count=3, first=10 * n,
                                                           token=mint("rsa-2", good_claims(jti=str(n))))]
    cfg = config()
    pipeline = Pipeline(cfg, snapshots_first=True, reused_lines=True)
    pipeline.process([Envelope(RecordKind.SNAPSHOT, s.model_dump_json().encode(), Position("jwks", 0, n))
                      for n, s in enumerate(SNAPSHOTS)])
    for n, line in enumerate(lines):
        pipeline.process([Envelope(RecordKind.EVENT, line, Position("events", 0, n))])
    kept, size, max_entries, max_bytes = pipeline.cache_usage()["line_rests"]
    assert (max_entries, max_bytes) == (entries, held)
    assert 0 < kept <= entries and size <= held and kept < 8, (kept, size)
    assert pipeline._lines is not None and size == sum(
        line_reuse._entry_bytes(rest, entry[1]) for rest, entry in pipeline._lines._rests.items()
    )
