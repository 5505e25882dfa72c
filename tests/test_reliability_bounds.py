"""Bounds: floods of unique input keep the join state and the caches under their caps, and memory flat.

Fault: floods where every record is unique, so no cache can help (tests/reliability/flood.py):
events whose `token_sha256` matches no sample (they wait for one), samples no event asks
for, tokens with made-up kids (they wait for a key), and tokens of a known kid with unique
bad signatures (each one a new signature-cache entry), a quarter each. The pipeline runs
with every cap at 1,000 (PipelineLimits, the signature cache, the parse cache); each flood
runs in a fresh process.

What must hold: every structure ends at or under its cap, and the growth of peak memory
during a 100k-record flood is under 1.5x that of a 10k-record flood (a control shows the
same measure does grow tenfold when the caps are above the flood). The JWKS watcher, flooded
with 10,000 refreshes for distinct unknown kids, fetches at most once per
`min_refresh_interval` per issuer, and not at all while backing off after failures.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import datetime, timedelta

import httpx

from pipeline.io.memory import ListSnapshotSink
from pipeline.jwks_watcher import JwksWatcher, WatchSettings
from tests.reliability.kafka_run import ROOT
from tests.world import CORP, T0, config, private_key, public_jwk

CAP = 1_000


def run_flood(n: int, cap: int, *kinds: str) -> dict[str, object]:
    result = subprocess.run([sys.executable, "-m", "tests.reliability.flood", str(n), str(cap), *kinds],
                            capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout))


def test_join_state_and_caches_stay_under_their_caps_and_memory_stays_flat() -> None:
    small = run_flood(10_000, CAP)
    big = run_flood(100_000, CAP)
    sizes = big["sizes"]
    assert isinstance(sizes, dict) and all(size <= CAP for size in sizes.values()), sizes
    assert all(size == CAP for size in sizes.values()), f"some flood did not reach its cap: {sizes}"
    assert big["counts"] == {"events": 75_000, "samples": 25_000, "snapshots": 0, "dead_letters": 0, "rejudged": 0,
                             "skipped": 0}
    assert big["signature_checks"] == 25_000  # each unique signature checked once, then forgotten
    growth_small, growth_big = int(small["growth_kb"]), int(big["growth_kb"])  # type: ignore[call-overload]
    print(f"\npeak memory growth: {growth_small:,} kB over 10k records, {growth_big:,} kB over 100k; sizes {sizes}")
    assert growth_big < 1.5 * growth_small, f"memory grows with the flood: {growth_small:,} -> {growth_big:,} kB"


def test_control_the_same_measure_grows_when_the_caps_are_above_the_flood() -> None:
    """Without effective caps the 10x flood costs several times the memory: the flatness check can fail."""
    small = run_flood(5_000, 10**6, "fingerprint", "sample")
    big = run_flood(50_000, 10**6, "fingerprint", "sample")
    assert big["sizes"] == {"samples": 25_000, "awaiting_sample": 25_000, "awaiting_key": 0, "recent_with_token": 0,
                            "signature_cache": 0, "parsed_tokens": 0}
    growth_small, growth_big = int(small["growth_kb"]), int(big["growth_kb"])  # type: ignore[call-overload]
    print(f"\nuncapped: {growth_small:,} kB over 5k records, {growth_big:,} kB over 50k")
    assert growth_big > 3 * growth_small, (growth_small, growth_big)


# -- the JWKS watcher under a flood of unknown kids ---------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Idp:
    """The issuers' JWKS endpoints: every request counted; `status` makes them fail."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.status = 200
        self.body = {"keys": [public_jwk(private_key("rsa-2"), "rsa-2")]}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url.host)
        if self.status != 200:
            return httpx.Response(self.status)
        return httpx.Response(200, json=self.body, headers={"Cache-Control": "max-age=300"})


def test_a_flood_of_unknown_kids_does_not_make_the_watcher_hammer_the_issuer() -> None:
    idp, clock = Idp(), Clock()
    settings = WatchSettings(min_refresh_interval=30.0, backoff_base=120.0)
    watcher = JwksWatcher(config().issuers, ListSnapshotSink(), settings, transport=httpx.MockTransport(idp),
                          clock=clock, rng=random.Random(0))
    try:
        watcher.poll_all()
        assert len(idp.requests) == 2  # one scheduled poll per issuer
        idp.requests.clear()

        # 10,000 distinct kids for each issuer over 100 s (10 ms apart): at most one fetch per 30 s each.
        for n in range(10_000):
            watcher.refresh(CORP, f"kid-{n}")
            watcher.refresh("staging", f"kid-{n}")
            clock.advance(0.01)
        per_issuer = {host: idp.requests.count(host) for host in set(idp.requests)}
        assert all(count <= 100 // 30 + 1 for count in per_issuer.values()), per_issuer
        assert watcher.refreshes_suppressed >= 20_000 - 2 * (100 // 30 + 1)

        # A kid the set already holds never triggers a fetch.
        idp.requests.clear()
        clock.advance(60)
        assert not any(watcher.refresh(CORP, "rsa-2") for _ in range(1_000))
        assert idp.requests == []

        # While the issuer fails, the flood waits for the backoff instead of retrying at once.
        idp.status = 503
        clock.advance(60)
        watcher.refresh(CORP, "first")
        idp.requests.clear()
        for n in range(10_000):
            watcher.refresh(CORP, f"again-{n}")
            clock.advance(0.005)  # 50 s in all: past the 30 s limit, inside the first backoff (60-120 s)
        assert idp.requests == [], idp.requests[:5]
    finally:
        watcher.close()


# -- byte budgets beside the record counts (issue 17) ---------------------------------------------


def test_a_bounded_cache_keeps_its_byte_count_exact_and_forgets_the_oldest_first() -> None:
    from pipeline.bounded import BoundedCache

    cache: BoundedCache[str, str] = BoundedCache(capacity=100, max_bytes=1_000, size=lambda k, v: len(v))
    for i in range(50):
        cache.put(f"k{i}", "x" * (i * 7 % 300))
        assert cache.bytes == sum(len(v) for v in cache.values()) <= 1_000 and len(cache) <= 100
    assert list(cache)[-1] == "k49"  # the newest is kept; what went was the oldest
    first = next(iter(cache))
    cache.put(first, "y" * 10, move=False)  # replaced in place: counted anew, not moved
    assert next(iter(cache)) == first and cache.bytes == sum(len(v) for v in cache.values())
    assert cache.discard(first) == "y" * 10 and cache.discard(first) is None
    assert cache.bytes == sum(len(v) for v in cache.values())
    cache.put("huge", "z" * 5_000)  # bigger than the budget: not kept, and nothing else either
    assert len(cache) == 0 and cache.bytes == 0


def test_every_cache_and_queue_stays_under_its_byte_budget_with_big_distinct_records(monkeypatch: object) -> None:
    """Big, distinct samples, unknown-kid tokens and waiting events against small byte budgets; counts far above."""
    import base64 as b64
    import hashlib

    from pipeline.engine import classify, tokens
    from pipeline.engine.keys import KeyTimeline
    from pipeline.records import Envelope, Position, RecordKind
    from pipeline.runner import Pipeline, PipelineLimits
    from tests.world import AUDIENCE, default_snapshots

    mib = 1024 * 1024
    monkeypatch.setattr(classify, "PARSE_CACHE_MAX_BYTES", 2 * mib)  # type: ignore[attr-defined]
    monkeypatch.setattr(tokens, "HEADER_CACHE_BUDGET", 64 * 1024)  # type: ignore[attr-defined]
    limits = PipelineLimits(max_sample_bytes=3 * mib, max_waiting_bytes=mib, max_waiting_for_key_bytes=2 * mib,
                            max_recent_bytes=mib)
    pipeline = Pipeline(config(), KeyTimeline(default_snapshots()), limits)

    def seg(value: object) -> str:
        return b64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    def token(i: int, kid: str, pad: int) -> str:
        claims = {"iss": CORP, "aud": AUDIENCE, "sub": f"u{i}", "pad": "p" * pad}
        return f"{seg({'alg': 'RS256', 'kid': kid})}.{seg(claims)}.c2ln"

    offset = 0
    for round_ in range(6):
        batch = []
        for i in range(round_ * 40, round_ * 40 + 40):
            size = 50_000 + 3_000 * (i % 40)  # tokens of 70-225 KB, all distinct
            values = [
                (RecordKind.SAMPLE, {"token": token(i, "rsa-2", size)}),
                (RecordKind.EVENT, {"event_id": f"k{i}", "ts": T0.isoformat(), "service": "payments-api",
                                    "token": token(i, f"made-up-{i}", size)}),
                (RecordKind.EVENT, {"event_id": f"w{i}", "ts": T0.isoformat(), "service": "payments-api",
                                    "token_sha256": hashlib.sha256(f"never-{i}".encode()).hexdigest(),
                                    "reported_error": "e" * size}),
                (RecordKind.EVENT, {"event_id": f"r{i}", "ts": T0.isoformat(), "service": "payments-api",
                                    "token": token(i, "rsa-2", size)}),
            ]
            for kind, value in values:
                batch.append(Envelope(kind, json.dumps(value).encode(), Position(kind.value, 0, offset)))
                offset += 1
        result = pipeline.process(batch)
        assert not result.dead_letters
        usage = pipeline.cache_usage()
        for cache, (entries, held, max_entries, max_bytes) in usage.items():
            assert entries <= max_entries and held <= max_bytes, (cache, usage[cache])
        assert usage["samples"][1] == sum(len(fp) + len(t) + 100 for fp, t in pipeline._samples.items())
        assert usage["parsed_tokens"][1] == sum(
            classify._parsed_bytes(t, r) for t, r in pipeline.classifier.parse_cache.items()
        )
    usage = pipeline.cache_usage()
    # Each byte budget, not the record count (thousands), is what bound them: they are nearly full.
    for cache in ("samples", "awaiting_sample", "awaiting_key", "recent_with_token", "parsed_tokens"):
        entries, held, max_entries, max_bytes = usage[cache]
        assert held > max_bytes * 0.5 and entries < max_entries, (cache, usage[cache])
