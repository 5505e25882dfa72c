"""Floods of unique records for the bounds test, measured in a fresh process.

    python -m tests.reliability.flood N CAP [KIND ...]

feeds N unique records (the kinds in turn) to a Pipeline whose caps (join state, signature
cache, parse cache) are all CAP, in batches of 1,000, and prints one JSON object: the growth
of the process's peak resident memory during the flood (kB), the pipeline's state sizes and
counts. A fresh process per flood gives every measurement the same clean baseline.

Peak RSS rather than tracemalloc: tracing every allocation makes the 100k flood ten times
slower (minutes), and the peak RSS is what an operator's memory limit sees. The peak is reset
just before the flood (Linux: /proc/self/clear_refs).
"""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import re
import sys
from collections.abc import Iterator

from pipeline.config import ClassifyConfig
from pipeline.engine import classify
from pipeline.engine.keys import KeyTimeline
from pipeline.records import Envelope, Position, RecordKind
from pipeline.runner import Pipeline, PipelineLimits
from tests.world import AUDIENCE, CORP, T0, config, default_snapshots

KINDS = ("fingerprint", "sample", "unknown_kid", "signature")
TS = T0.isoformat()


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).rstrip(b"=").decode()


_HEADER_EC = _b64({"alg": "ES256", "kid": "ec-1"})


def flood(n: int, kinds: tuple[str, ...] = KINDS) -> Iterator[Envelope]:
    """`n` unique records, the kinds in turn; built lazily, so the flood itself holds no memory."""
    claims = {"iss": CORP, "sub": "u", "aud": AUDIENCE, "azp": "web-app", "iat": int(T0.timestamp()) - 60,
              "exp": int(T0.timestamp()) + 600}
    for i in range(n):
        kind = kinds[i % len(kinds)]
        payload = _b64({**claims, "jti": f"flood-{i}"})
        if kind == "fingerprint":  # an event waiting for a sample that never comes
            fp = hashlib.sha256(f"never-sampled-{i}".encode()).hexdigest()
            value = {"event_id": f"e{i}", "ts": TS, "service": "payments-api", "token_sha256": fp}
            yield Envelope(RecordKind.EVENT, json.dumps(value).encode(), Position("f", 0, i))
        elif kind == "sample":  # a sample no event asks for
            token = f"{_HEADER_EC}.{payload}.c2ln"
            yield Envelope(RecordKind.SAMPLE, json.dumps({"token": token}).encode(), Position("s", 0, i))
        else:  # a made-up kid (waits for a key), or a known kid with a unique bad signature (a cache entry)
            header = _b64({"alg": "ES256", "kid": f"made-up-{i}"}) if kind == "unknown_kid" else _HEADER_EC
            # A short ES256 signature: rejected without curve arithmetic, but cached like any other result.
            signature = base64.urlsafe_b64encode(i.to_bytes(8, "big")).rstrip(b"=").decode()
            token = f"{header}.{payload}.{signature}"
            value = {"event_id": f"e{i}", "ts": TS, "service": "payments-api", "token": token}
            yield Envelope(RecordKind.EVENT, json.dumps(value).encode(), Position("f", 0, i))


def small_pipeline(cap: int) -> Pipeline:
    classify.PARSE_CACHE_SIZE = cap
    cfg = config().model_copy(update={"classify": ClassifyConfig(signature_cache_size=cap)})
    limits = PipelineLimits(max_samples=cap, max_waiting=cap, max_waiting_for_key=cap, max_recent=cap)
    return Pipeline(cfg, KeyTimeline(default_snapshots()), limits)


def _memory_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        match = re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def main(argv: list[str]) -> dict[str, object]:
    n, cap = int(argv[0]), int(argv[1])
    kinds = tuple(argv[2:]) or KINDS
    pipeline = small_pipeline(cap)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _memory_kb("VmRSS")
    batch: list[Envelope] = []
    for envelope in flood(n, kinds):
        batch.append(envelope)
        if len(batch) == 1_000:
            pipeline.process(batch)
            batch = []
    pipeline.process(batch)
    return {
        "growth_kb": _memory_kb("VmHWM") - before,
        "sizes": {**pipeline.state_sizes, "parsed_tokens": len(pipeline.classifier.parse_cache)},
        "counts": pipeline.counts,
        "signature_checks": pipeline.classifier.cache.misses,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
