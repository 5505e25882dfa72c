"""Verdicts reused over spans of time (`pipeline.engine.spans`): always the verdict a fresh judgement gives.

The streams here are what makes spans pay and what could make them wrong: a few long-lived
tokens retried many times, a handful of fetch times (one instant also written with another
UTC offset, which the sentence prints), and event times on the grid where a printed
duration changes (every half second, half minute, minute, hour from the key's publication,
its removal and the fetch time), a microsecond either side, around a key that is removed and
published again. A reusing pipeline and a fresh one must give the same rows and the same
JSON lines, byte for byte.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import ClassifyConfig, Config
from pipeline.engine import spans
from pipeline.io.files import JsonlVerdictSink
from pipeline.records import Batch, Envelope, Position, RecordKind
from pipeline.runner import Pipeline
from tests.world import CORP, DROP, T0, config, default_snapshots, good_claims, mint, snapshot

T = int(T0.timestamp())
LONG = {"iat": T - 11 * 86400, "exp": T + 3 * 86400}
#: rsa-1 is removed at T0-30min and published again at T0+2h: the branch "no finding" comes back.
SNAPSHOTS = [*default_snapshots(), snapshot(CORP, T0 + timedelta(hours=2), ["rsa-1", "rsa-2", "rsa-3", "ec-1"])]
TOKENS = [
    mint("rsa-1", good_claims(**LONG)),
    mint("rsa-2", good_claims(**LONG)),
    mint("rsa-3", good_claims(**LONG)),
    mint("rsa-2", good_claims(**LONG, aud="api://elsewhere")),
    mint("rsa-2", good_claims(**LONG, sub=DROP)),
    mint("rsa-2", good_claims(iat=T - 3600, exp=T + 1800)),
    mint("rsa-2", good_claims(**LONG, aud=["api://payments", "api://orders"])),
]
_KEY_TIMES = [T0 - timedelta(hours=2), T0 - timedelta(minutes=30), T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
_FETCHED = [T0 - timedelta(hours=3), T0 - timedelta(hours=1), T0 - timedelta(minutes=20), T0 + timedelta(minutes=90)]
FETCHED = [None, *_FETCHED, _FETCHED[1].astimezone(timezone(timedelta(hours=2)))]
#: Offsets from a base where `human_duration`'s text changes, and a microsecond either side.
_EDGES = [0.0, 0.5, 1.5, 60.0, 90.0, 119.5, 120.0, 150.0, 5370.0, 5400.0, 5460.0, 7200.0, 172800.0, 176400.0]
_NUDGES = [0.0, 1e-6, -1e-6, 2e-6, -3e-6, 0.25]


def _at(base: datetime, edge: float, sign: int, nudge: float) -> datetime:
    return base + timedelta(seconds=sign * edge + nudge)


instants = st.builds(
    _at,
    st.sampled_from(_KEY_TIMES + _FETCHED),
    st.sampled_from(_EDGES),
    st.sampled_from([1, -1]),
    st.sampled_from(_NUDGES),
).flatmap(lambda at: st.sampled_from([at, at.astimezone(timezone(timedelta(hours=-5)))]))
event_ids = st.one_of(st.from_regex(r"e[0-9]{1,4}", fullmatch=True), st.text(min_size=1, max_size=6))
events = st.tuples(
    st.integers(0, len(TOKENS) - 1),
    instants,
    st.integers(0, len(FETCHED) - 1),
    st.sampled_from(["payments-api", "orders-api"]),
    event_ids,
)
Drawn = list[tuple[int, datetime, int, str, str]]


def _pipeline(reuse: bool) -> Pipeline:
    cfg: Config = config()
    return Pipeline(cfg.model_copy(update={"classify": ClassifyConfig(reuse_judgements=reuse)}))


def _envelopes(drawn: Drawn, repeat: int) -> list[Envelope]:
    out = [Envelope(RecordKind.SNAPSHOT, s.model_dump_json().encode(), Position("jwks", 0, n))
           for n, s in enumerate(SNAPSHOTS)]
    n = 0
    for index, ts, fetched, service, event_id in drawn:
        for retry in range(repeat):  # each event retried a few seconds apart: the same token, later
            event: dict[str, Any] = {"event_id": event_id, "ts": (ts + timedelta(seconds=3 * retry)).isoformat(),
                                     "service": service, "token": TOKENS[index]}
            if FETCHED[fetched] is not None:
                event["service_jwks_fetched_at"] = FETCHED[fetched].isoformat()
            out.append(Envelope(RecordKind.EVENT, json.dumps(event).encode(), Position("events", 0, n)))
            n += 1
    return out


def _rows(batch: Batch) -> list[tuple[Any, ...]]:
    return [
        (j.event.event_id, j.verdict.classification, j.verdict.classification.model_dump_json(),
         j.verdict.key_thumbprint, j.verdict.key_first_seen, j.verdict.claims_json, j.verdict.header_json,
         [(f.step, f.cause, f.evidence) for f in j.verdict.findings])
        for j in batch.judged
    ]


def _lines(batch: Batch, pipeline: Pipeline) -> str:
    out = io.StringIO()
    JsonlVerdictSink(out, io.StringIO()).write(batch, pipeline.timeline)
    return out.getvalue()


def _compare(envelopes: list[Envelope], size: int) -> Pipeline:
    reusing, fresh = _pipeline(True), _pipeline(False)
    for start in range(0, len(envelopes), size):
        chunk = envelopes[start:start + size]
        mine, theirs = reusing.process(chunk), fresh.process(chunk)
        assert _rows(mine) == _rows(theirs)
        assert _lines(mine, reusing) == _lines(theirs, fresh)
    return reusing


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(events, min_size=1, max_size=40), st.integers(1, 4), st.integers(1, 30))
def test_a_verdict_reused_over_a_span_is_the_fresh_one(drawn: Drawn, repeat: int, size: int) -> None:
    _compare(_envelopes(drawn, repeat), size)


def test_an_outage_like_stream_is_mostly_reused() -> None:
    """Retries every 2 s for an hour around the rotations, a few fetch times: most verdicts come from spans."""
    drawn: Drawn = []
    for n in range(0, 3600):  # every token with every fetch time and service, from T0-45min to T0+75min
        at = T0 - timedelta(minutes=45) + timedelta(seconds=2 * n, microseconds=n * 7)
        block = n // 30  # a minute of one token's retries, then the next token, fetch time, service
        service = ("payments-api", "orders-api")[block // 24 % 2]
        drawn.append((block % 4, at, block // 4 % len(FETCHED), service, f"r{n}"))
    reusing = _compare(_envelopes(drawn, 1), 500)
    memo = reusing.classifier.spans
    assert memo is not None and memo.hits > len(drawn) // 2, memo.hits


def test_spans_are_forgotten_when_the_key_timeline_changes() -> None:
    drawn: Drawn = [(1, T0 + timedelta(seconds=n), 1, "payments-api", f"e{n}") for n in range(20)]
    reusing = _pipeline(True)
    reusing.process(_envelopes(drawn, 1))
    memo = reusing.classifier.spans
    assert memo is not None and memo.tails and memo.spans
    reusing.process([Envelope(RecordKind.SNAPSHOT, SNAPSHOTS[3].model_dump_json().encode(), Position("jwks", 0, 9))])
    reusing.process(_envelopes(drawn[:1], 1)[len(SNAPSHOTS):])
    assert len(memo.tails) == 0


def test_a_guessed_span_is_checked_at_both_ends() -> None:
    """A wrong guess (a span across a minute's edge) is refused: the check runs at its ends and disagrees."""
    world_pipeline = _pipeline(True)
    world_pipeline.process(_envelopes([], 1))
    key = next(k for k in world_pipeline.timeline.all_keys() if k.kid == "rsa-2")
    memo = world_pipeline.classifier.spans
    assert memo is not None
    policy = world_pipeline.classifier._policies["payments-api"]
    fetched = FETCHED[1]
    published = spans._micros(key.first_seen)
    at = published + 150_000_000  # 2.5 min after publication: "2 min" rounds to "3 min" at 150 s
    found = spans._finding_at(at - 1, fetched, "payments-api", key, world_pipeline.timeline, policy)
    later = spans._finding_at(at + 30_000_000, fetched, "payments-api", key, world_pipeline.timeline, policy)
    assert found is not None and later is not None and found != later
    guess = spans._guess_span(at - 5_000_000, [published, spans._micros(fetched)], (published, float("inf")))
    assert guess is not None and guess[1] < at  # the guess stops short of the edge


def test_a_fetch_time_with_another_offset_keeps_its_own_sentence() -> None:
    """The same instant written +02:00 and Z: equal datetimes, printed apart; a span of one is not the other's."""
    assert FETCHED[2] == FETCHED[5] and FETCHED[2].isoformat() != FETCHED[5].isoformat()
    drawn: Drawn = [(2, T0 + timedelta(minutes=61, seconds=2 * n), (2, 5)[n % 2], "payments-api", f"z{n}")
                    for n in range(120)]  # rsa-3 is published at T0+1h, after both: stale_jwks with both
    reusing = _compare(_envelopes(drawn, 1), 40)
    memo = reusing.classifier.spans
    assert memo is not None and memo.hits > 60, memo.hits


def test_events_at_the_end_of_time_are_judged_as_fresh_ones() -> None:
    """Near year 9999 a duration of ~8,000 years loses microseconds to float rounding: a guessed span's end
    prints another hour than its start, so the span is refused (and one past year 9999 could not be probed at
    all); the verdicts are the fresh ones, and no event becomes a dead letter."""
    token = mint("rsa-3", good_claims(iat=T - 86400, exp=10**15))
    end = datetime(9999, 12, 31, 23, 59, 0, tzinfo=T0.tzinfo)
    envelopes = [Envelope(RecordKind.SNAPSHOT, s.model_dump_json().encode(), Position("jwks", 0, n))
                 for n, s in enumerate(SNAPSHOTS)]
    for n in range(6):
        event = {"event_id": f"x{n}", "ts": (end + timedelta(seconds=n)).isoformat(), "service": "payments-api",
                 "token": token, "service_jwks_fetched_at": FETCHED[2].isoformat()}
        envelopes.append(Envelope(RecordKind.EVENT, json.dumps(event).encode(), Position("events", 0, n)))
    reusing = _compare(envelopes, 3)
    assert not reusing.process([]).dead_letters


def test_a_retry_in_its_tokens_last_span_reuses_it_up_to_the_tokens_expiry() -> None:
    """A token's last span is kept on its judgement (`last_span`) only where its time claims pass at both ends.

    A token of rsa-3 (published at T0+1h, after both fetch times: stale_jwks) retried every
    second across its `exp` plus the leeway and the minute edges of the key's age, under one
    fetch time, then under another: the kept span serves the retries inside it, never one
    past `exp` or under the other fetch time (the verdicts are the fresh ones).
    """
    expires = T0 + timedelta(seconds=5417 + 30)  # off the grid of the sentence's durations; leeway 30 s
    token = mint("rsa-3", good_claims(iat=T + 3600, exp=T + 5417))
    envelopes = [Envelope(RecordKind.SNAPSHOT, s.model_dump_json().encode(), Position("jwks", 0, n))
                 for n, s in enumerate(SNAPSHOTS)]
    for n in range(300):
        event = {"event_id": f"m{n}", "ts": (expires - timedelta(seconds=200 - n, microseconds=n)).isoformat(),
                 "service": "payments-api", "token": token,
                 "service_jwks_fetched_at": FETCHED[1 + n // 150].isoformat()}
        envelopes.append(Envelope(RecordKind.EVENT, json.dumps(event).encode(), Position("events", 0, n)))
    reusing = _compare(envelopes, 37)
    memo, reuse = reusing.classifier.spans, reusing.classifier.reuse
    assert memo is not None and reuse is not None and memo.hits > 150, memo.hits
    kept = [static.last_span for static in reuse.cache.values() if static.last_span]
    assert kept and all(span[1] < spans._micros(expires) for span in kept)
