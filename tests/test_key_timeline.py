"""The key timeline, kept incrementally: the same intervals as rebuilding the sorted history for
every snapshot (the reference below, the algorithm it replaced), in any arrival order; work
that grows linearly with the snapshots (counted, not timed); heartbeats stored as a time range;
the bounds on keys tried per kid and on RSA key size and exponent, each refusal logged once."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.utils import base64url_decode, base64url_encode

from pipeline.engine.keys import MAX_KEYS_PER_KID, BadJwk, KeyTimeline, load_public_key
from pipeline.models import JwksSnapshot

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ISSUERS = ("https://a.test", "https://b.test")


def ec_jwk(kid: str) -> dict[str, Any]:
    jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


POOL = [ec_jwk(f"k{n}") for n in range(6)]


def snapshot(issuer: str, minute: float, keys: list[dict[str, Any]]) -> JwksSnapshot:
    return JwksSnapshot(issuer=issuer, fetched_at=T0 + timedelta(minutes=minute), jwks={"keys": keys})


def reference_intervals(snapshots: list[JwksSnapshot]) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
    """The intervals as the replaced `_rebuild` computed them: every issuer's snapshots sorted, then walked."""
    by_issuer: dict[str, dict[datetime, set[str]]] = {}
    for snap in snapshots:  # the last snapshot at a given time wins
        held = {load_public_key(k)[3] for k in snap.jwks["keys"]}
        by_issuer.setdefault(snap.issuer, {})[snap.fetched_at] = held
    out: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for issuer, history in by_issuer.items():
        open_since: dict[str, tuple[datetime, datetime]] = {}
        for fetched_at, present in sorted(history.items()):
            for thumbprint in present:
                first, _ = open_since.get(thumbprint, (fetched_at, fetched_at))
                open_since[thumbprint] = (first, fetched_at)
            for thumbprint in [t for t in open_since if t not in present]:
                first, last = open_since.pop(thumbprint)
                out.setdefault((issuer, thumbprint), []).append((first, last, fetched_at))
        for thumbprint, (first, last) in open_since.items():
            out.setdefault((issuer, thumbprint), []).append((first, last, None))
    return out


def intervals_of(timeline: KeyTimeline) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
    return {
        (k.issuer, k.thumbprint): [(i.first_seen, i.last_seen, i.removed_at) for i in k.intervals]
        for k in timeline.all_keys()
    }


def random_history(rng: random.Random, count: int) -> list[JwksSnapshot]:
    """Snapshots of two issuers: long runs of heartbeats, rotations, keys that come back, repeated times."""
    out = []
    for issuer in ISSUERS:
        held = [POOL[0]]
        for n in range(count):
            if rng.random() < 0.25:
                held = rng.sample(POOL, rng.randint(1, 3))
            minute = n if rng.random() > 0.05 else rng.randrange(max(1, n))  # a time fetched again
            out.append(snapshot(issuer, minute, held))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_any_arrival_order_gives_the_intervals_of_the_sorted_rebuild(seed: int) -> None:
    rng = random.Random(seed)
    history = random_history(rng, rng.randint(1, 60))
    arrival = list(history)
    if seed % 4:  # in order, shuffled, or in order with late stragglers
        rng.shuffle(arrival) if seed % 4 == 1 else arrival.sort(key=lambda s: s.fetched_at + timedelta(
            minutes=rng.choice([0, 0, 0, 30])))  # fmt: skip
    timeline = KeyTimeline()
    for snap in arrival:
        timeline.add(snap)
    assert intervals_of(timeline) == reference_intervals(arrival)
    for issuer in ISSUERS:
        times = [s.fetched_at for s in arrival if s.issuer == issuer]
        assert timeline.earliest_snapshot(issuer) == min(times)
        assert timeline.latest_snapshot(issuer) == max(times)
        assert timeline.snapshot_count(issuer) == len(set(times))


def test_a_late_snapshot_splits_an_interval_and_opens_one_inside_a_run() -> None:
    a, b = POOL[0], POOL[1]
    timeline = KeyTimeline([snapshot(ISSUERS[0], m, [a]) for m in (0, 10, 20, 30)])
    assert timeline.run_count(ISSUERS[0]) == 1
    timeline.add(snapshot(ISSUERS[0], 15, [b]))  # arrives last, dated in the middle of the run
    key_a, key_b = (next(k for k in timeline.all_keys() if k.kid == kid) for kid in ("k0", "k1"))
    at = [T0 + timedelta(minutes=m) for m in (0, 10, 15, 20, 30)]
    assert [(i.first_seen, i.last_seen, i.removed_at) for i in key_a.intervals] == [
        (at[0], at[1], at[2]),
        (at[3], at[4], None),
    ]
    assert [(i.first_seen, i.last_seen, i.removed_at) for i in key_b.intervals] == [(at[2], at[2], at[3])]
    assert timeline.run_count(ISSUERS[0]) == 3
    assert timeline.is_young(key_b) and not timeline.is_young(key_a)


def test_heartbeats_are_a_time_range_not_copies() -> None:
    timeline = KeyTimeline()
    for minute in range(1000):
        timeline.add(snapshot(ISSUERS[0], 5 * minute, [POOL[0], POOL[1]]))
    assert timeline.run_count(ISSUERS[0]) == 1 and timeline.snapshot_count(ISSUERS[0]) == 1000
    timeline.add(snapshot(ISSUERS[0], 5000, [POOL[1], POOL[2]]))  # a rotation step
    assert timeline.run_count(ISSUERS[0]) == 2


def _heartbeat_work(per_issuer: int) -> tuple[int, int]:
    """(timeline work units, snapshots the replaced rebuild would have re-processed) for a heartbeat load."""
    timeline = KeyTimeline()
    for issuer in ("https://a.test", "https://b.test", "https://c.test"):
        for n in range(per_issuer):
            keys = [POOL[(n // 500) % 6], POOL[(n // 500 + 1) % 6]]  # a rotation every 500 heartbeats
            timeline.add(snapshot(issuer, 5 * n, keys))
    return timeline.work, 3 * per_issuer * (per_issuer + 1) // 2


def test_loading_work_grows_linearly_with_the_heartbeats() -> None:
    small, small_before = _heartbeat_work(1000)
    large, large_before = _heartbeat_work(8000)
    assert large < 10 * small  # the issue's bound: 8x the snapshots, under 10x the work
    assert large <= 8.5 * small  # and in fact linear
    assert large_before > 60 * small_before  # what the rebuild per snapshot cost: quadratic


def test_late_snapshots_cost_only_their_neighbourhood() -> None:
    timeline = KeyTimeline([snapshot(ISSUERS[0], 5 * n, [POOL[0]]) for n in range(4000)])
    before = timeline.work
    for n in range(100):  # stragglers dated inside the history, each with another key set
        timeline.add(snapshot(ISSUERS[0], 5 * (40 * n) + 1, [POOL[1]]))
    assert timeline.work - before <= 100 * 4  # a run split and a few intervals each, not a replay


def test_a_time_fetched_again_with_other_keys_replaces_it() -> None:
    timeline = KeyTimeline([snapshot(ISSUERS[0], m, [POOL[0]]) for m in range(5)])
    timeline.add(snapshot(ISSUERS[0], 2, [POOL[0], POOL[1]]))
    arrival = [snapshot(ISSUERS[0], m, [POOL[0]]) for m in range(5)] + [snapshot(ISSUERS[0], 2, [POOL[0], POOL[1]])]
    assert intervals_of(timeline) == reference_intervals(arrival)
    timeline.add(snapshot(ISSUERS[0], 2, [POOL[0]]))  # and back: one run again
    assert timeline.run_count(ISSUERS[0]) == 1
    assert [k.kid for k in timeline.all_keys()] == ["k0"]


# -- bounds ----------------------------------------------------------------------------------


def test_keys_tried_per_kid_are_the_newest_few(caplog: pytest.LogCaptureFixture) -> None:
    flood = [{**ec_jwk("same"), "kid": "same"} for _ in range(MAX_KEYS_PER_KID + 24)]
    timeline = KeyTimeline()
    with caplog.at_level(logging.WARNING, logger="pipeline.engine.keys"):
        for minute in range(3):
            timeline.add(snapshot(ISSUERS[0], minute, flood))
            assert len(timeline.keys_with_kid("same")) == MAX_KEYS_PER_KID
            assert len(timeline.keys_with_kid("same")) == MAX_KEYS_PER_KID
    assert len(timeline.all_keys()) == MAX_KEYS_PER_KID + 24  # all kept in the history, not all tried
    assert len([r for r in caplog.records if "under kid 'same'" in r.getMessage()]) == 1

    rotated = KeyTimeline(max_keys_per_kid=2)
    same = [{**ec_jwk("x"), "kid": "x"} for _ in range(4)]
    for minute, jwk in enumerate(same):  # each snapshot replaces the key under kid x
        rotated.add(snapshot(ISSUERS[0], minute, [jwk]))
        rotated.add(snapshot(ISSUERS[1], minute, [same[0]]))
    tried = rotated.keys_with_kid("x")
    thumbprints = {load_public_key(j)[3] for j in same[2:]}
    assert {k.thumbprint for k in tried if k.issuer == ISSUERS[0]} == thumbprints  # the newest two
    assert [k.issuer for k in tried].count(ISSUERS[1]) == 1  # per issuer
    assert rotated.first_seen("x", ISSUERS[0]) == T0  # history still knows the oldest


def _rsa_jwk(n: int, e: int, kid: str) -> dict[str, Any]:
    def b64(value: int) -> str:
        return base64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).decode()

    return {"kty": "RSA", "kid": kid, "use": "sig", "n": b64(n), "e": b64(e)}


def test_rsa_keys_too_large_or_with_huge_exponents_are_refused_once(caplog: pytest.LogCaptureFixture) -> None:
    good = RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 2048).public_key(), as_dict=True)
    modulus = int.from_bytes(base64url_decode(good["n"]), "big")
    huge_n = _rsa_jwk((1 << 8199) | 1, 65537, "huge-n")  # 8,200 bits: refused before any arithmetic
    huge_e = _rsa_jwk(modulus, (1 << 3071) | 1, "huge-e")  # a 3072-bit exponent
    with pytest.raises(BadJwk, match="8200 bits is over the 8192-bit bound"):
        load_public_key(huge_n)
    with pytest.raises(BadJwk, match="exponent of 3072 bits"):
        load_public_key(huge_e)
    assert load_public_key(_rsa_jwk(modulus, 3, "e3"))[0] == "RSA"  # small odd exponents stay usable
    timeline = KeyTimeline()
    with caplog.at_level(logging.WARNING, logger="pipeline.engine.keys"):
        for minute in range(50):
            timeline.add(snapshot(ISSUERS[0], minute, [{**good, "kid": "ok"}, huge_n, huge_e]))
    assert [k.kid for k in timeline.all_keys()] == ["ok"]
    refused = [r.getMessage() for r in caplog.records]
    assert len(refused) == 2, refused  # one line per refused key, not one per snapshot
    assert any("kid 'huge-n'" in line for line in refused) and any("kid 'huge-e'" in line for line in refused)
    assert len(timeline.problems) == 2
