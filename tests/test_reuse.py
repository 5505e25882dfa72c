"""Judgement reuse (`pipeline.engine.reuse`): a reused judgement is always the one a fresh judgement gives.

Two pipelines, one reusing and one judging every event afresh, read the same random
streams: repeated tokens, event times on and around every time threshold (exp, nbf and iat
with the leeway and the skew window, key publication and removal, the cache-age window),
fetch times around the keys' publication, and key snapshots that arrive late, in random
batches. Every verdict and every re-judged row must be identical, byte for byte.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import ClassifyConfig, Config
from pipeline.engine.classify import Classifier
from pipeline.engine.keys import KeyTimeline
from pipeline.engine.reuse import JudgementReuse
from pipeline.records import Batch, Envelope, Position, RecordKind
from pipeline.runner import Pipeline
from tests.world import AUDIENCE, CORP, DROP, T0, World, config, default_snapshots, good_claims, mint

T = int(T0.timestamp())
WINDOW = 300  # the default skew window
#: Token claims whose thresholds fall in the hours around T0, where the key timeline changes too.
_CLAIMS = [
    good_claims(),
    good_claims(exp=T - 40),
    good_claims(exp=T + 20, iat=T - 3600),
    good_claims(exp=T - 330),
    good_claims(nbf=T + 45),
    good_claims(nbf=T + 400, iat=T + 350),
    good_claims(iat=T + 31),
    good_claims(exp=T + 7200, iat=T - 7000),
    good_claims(exp=T + 7200, aud="api://elsewhere"),
    good_claims(exp=T + 7200, sub=DROP),
    good_claims(exp=T + 7200, iss="https://evil.test"),
    good_claims(exp=1.5e9 + 0.25, iat=1.4e9),
]
#: The keys cover a published, a retired, a not-yet-published key, EC, a rogue signer and no kid.
_SIGNERS = [("rsa-2", None), ("rsa-1", None), ("rsa-3", None), ("ec-1", None), ("rsa-2", "rogue"), (None, "rsa-2")]
TOKENS = [mint(kid, claims, signer=signer) for claims in _CLAIMS for kid, signer in _SIGNERS[:3]]
TOKENS += [mint(kid, _CLAIMS[0], signer=signer) for kid, signer in _SIGNERS[3:]]
TOKENS += [mint("rsa-2", c, signer=None) for c in ({"aud": AUDIENCE, "exp": "soon"}, {"iss": CORP})]

#: Every time at which some check can flip, for some token above (the thresholds ± leeway ± window).
_KEY_TIMES = [T0 - timedelta(hours=2), T0 - timedelta(minutes=30), T0 + timedelta(hours=1)]
_POINTS = sorted(
    {float(c[name]) + sign * leeway + extra
     for c in _CLAIMS for name in ("exp", "nbf", "iat") if isinstance(c.get(name), int | float)
     for sign in (1, -1) for leeway in (0, 30) for extra in (0, sign * WINDOW)}
    | {k.timestamp() + extra for k in _KEY_TIMES for extra in (0, 900, 86400)}
)
_DELTAS = [0.0, 1e-6, -1e-6, 1e-3, -1e-3, 0.5, -0.5, 1.0, -1.0, 61.0, -61.0]


def _instant(point: float, delta: float) -> datetime:
    return datetime.fromtimestamp(point + delta, T0.tzinfo)


instants = st.one_of(
    st.builds(_instant, st.sampled_from(_POINTS), st.sampled_from(_DELTAS)),
    st.builds(_instant, st.just(float(T)), st.floats(-4 * 3600, 4 * 3600, allow_nan=False)),
).flatmap(lambda at: st.sampled_from([at, at.astimezone(timezone(timedelta(hours=2)))]))
events = st.tuples(
    st.integers(0, len(TOKENS) - 1),
    instants,
    st.one_of(st.none(), instants),
    st.sampled_from(["payments-api", "orders-api", "staging-api"]),
)


def _pipeline(reuse: bool) -> Pipeline:
    cfg: Config = config()
    return Pipeline(cfg.model_copy(update={"classify": ClassifyConfig(reuse_judgements=reuse)}))


Drawn = list[tuple[int, datetime, datetime | None, str]]


def _envelopes(drawn: Drawn, early: int, late_at: list[int]) -> list[Envelope]:
    snapshots = default_snapshots()
    out = [Envelope(RecordKind.SNAPSHOT, s.model_dump_json().encode(), Position("jwks", 0, n))
           for n, s in enumerate(snapshots[:early])]
    late = snapshots[early:]
    for n, (index, ts, fetched, service) in enumerate(drawn):
        while late and late_at and late_at[0] <= n:
            late_at.pop(0)
            out.append(Envelope(RecordKind.SNAPSHOT, late.pop(0).model_dump_json().encode(), Position("jwks", 0, 99)))
        event: dict[str, Any] = {"event_id": f"e{n}", "ts": ts.isoformat(), "service": service, "token": TOKENS[index]}
        if fetched is not None:
            event["service_jwks_fetched_at"] = fetched.isoformat()
        out.append(Envelope(RecordKind.EVENT, json.dumps(event).encode(), Position("events", 0, n)))
    out += [Envelope(RecordKind.SNAPSHOT, s.model_dump_json().encode(), Position("jwks", 0, 99)) for s in late]
    return out


def _rows(batch: Batch) -> list[tuple[Any, ...]]:
    return [
        (j.event.event_id, j.verdict.classification.model_dump_json(), j.verdict.key_thumbprint,
         j.verdict.key_first_seen, j.verdict.claims_json, j.verdict.header_json,
         [(f.step, f.cause, f.evidence) for f in j.verdict.findings])
        for j in batch.judged
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.lists(events, min_size=1, max_size=60),
    st.integers(0, 5),
    st.lists(st.integers(0, 60), max_size=5).map(sorted),
    st.lists(st.integers(1, 25), min_size=1, max_size=6),
)
def test_a_reused_judgement_is_the_fresh_one(drawn: Drawn, early: int, late_at: list[int], sizes: list[int]) -> None:
    envelopes = _envelopes(drawn, early, late_at)
    reusing, fresh = _pipeline(True), _pipeline(False)
    assert reusing.classifier.reuse is not None and fresh.classifier.reuse is None
    start = 0
    for n in range(len(envelopes)):
        size = sizes[n % len(sizes)]
        chunk = envelopes[start:start + size]
        if not chunk:
            break
        start += size
        assert _rows(reusing.process(chunk)) == _rows(fresh.process(chunk))


def test_repeated_tokens_are_reused_and_a_snapshot_clears_the_cache() -> None:
    world = World()
    token = mint("rsa-2")
    seen = []
    for n in range(5):
        event = world.event(token, at=T0 + timedelta(seconds=n * 200), event_id=f"e{n}")
        seen.append(world.classifier.classify(event, token).classification.cause.value)
    reuse = world.classifier.reuse
    assert reuse is not None and (reuse.hits, reuse.misses) == (4, 1)
    assert seen[0] == "valid" and seen[-1] in {"clock_skew", "expired"}  # the same token, expired by the last event
    world.timeline.add(default_snapshots()[-2])
    world.classifier.classify(world.event(token, event_id="e9"), token)
    assert reuse.misses == 2  # a new timeline version is judged afresh


def test_the_reuse_cache_is_bounded_in_entries_and_bytes() -> None:
    world = World()
    small = JudgementReuse(world.classifier, capacity=3, max_bytes=10_000_000)
    world.classifier.reuse = small
    tokens = [mint("rsa-2", good_claims(jti=str(n))) for n in range(6)]
    for n, token in enumerate(tokens):
        world.classifier.classify(world.event(token, event_id=f"e{n}"), token)
    assert len(small.cache) == 3
    tight = JudgementReuse(world.classifier, capacity=100, max_bytes=1_000)
    world.classifier.reuse = tight
    for n, token in enumerate(tokens):
        world.classifier.classify(world.event(token, event_id=f"e{n}"), token)
    assert 0 < len(tight.cache) < 6 and tight.cache.bytes <= 1_000


def test_reuse_can_be_switched_off_by_the_environment() -> None:
    from pipeline.config import load_config

    path = Path(__file__).parent.parent / "examples" / "jwtriage.toml"
    cfg = load_config(path, environ={"JWTRIAGE_CLASSIFY__REUSE_JUDGEMENTS": "false"})
    assert Classifier(cfg, KeyTimeline()).reuse is None
    assert Classifier(load_config(path, environ={}), KeyTimeline()).reuse is not None


def test_key_times_are_printed_with_their_own_offset() -> None:
    from pipeline.engine.checks import _key_stamp

    utc = T0
    paris = T0.astimezone(timezone(timedelta(hours=1)))
    assert utc == paris
    assert (_key_stamp(utc), _key_stamp(paris)) == ("2026-11-20T12:00:00Z", "2026-11-20T13:00:00+01:00")


def test_a_token_prepared_in_an_earlier_batch_is_never_taken_for_another() -> None:
    """`prepare` hands `classify` each token's parse by the token object's id; it keeps those objects alive.

    Were they let go, a new token of the same length would often get a freed token's address,
    hence its id, and be judged with the other token's parse.
    """
    world = World()
    first, second = mint("rsa-2"), mint("rsa-2", good_claims(aud="api://paymentz"))
    assert len(first) == len(second) and first != second
    for _ in range(50):
        world.classifier.prepare([("payments-api", "".join(list(first)))])  # only `prepare` holds this copy
        other = "".join(list(second))
        got = world.classifier.classify(world.event(other), other).classification
        assert got.cause.value == "audience_mismatch", got
