"""Benchmark: `jwtriage classify` end to end against bare PyJWT `jwt.decode`, in the same run.

Both sides get the same tokens. The baseline is the floor a hand-written validator pays:
`jwt.decode` with a prepared key object (no JWKS lookup, no JSON in or out). jwtriage
reads JSONL events, validates them, joins, classifies with every check of DESIGN.md and
writes a JSON line per event; start-up (imports, config, JWKS) is excluded.

    python bench/bench_classify.py [--unique 3000] [--repeat 10] [--algs RS256] [--quick]

Prints tokens/s for both and the ratio (targets: >= 0.7x on unique tokens, >= 3x when each
token repeats 10 times, because signature results are cached by fingerprint and key). With
the default --algs RS256 it also runs ES256 alone, EdDSA alone and the three mixed; each
case runs three times on each side, interleaved, and the best is kept; the load average is printed beside it.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import AUDIENCE, CONFIG_TOML, ISSUER, Summary, header, load

from pipeline.config import Config
from pipeline.io.files import FileSource
from pipeline.runner import Pipeline, streaming_gc


def make_keys() -> dict[str, tuple[Any, dict[str, Any]]]:
    """alg → (private key, public JWK)."""
    keys: dict[str, tuple[Any, dict[str, Any]]] = {}
    for alg, private, to_jwk in (
        ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm.to_jwk),
        ("ES256", ec.generate_private_key(ec.SECP256R1()), ECAlgorithm.to_jwk),
        ("EdDSA", ed25519.Ed25519PrivateKey.generate(), OKPAlgorithm.to_jwk),
    ):
        jwk = json.loads(to_jwk(private.public_key()))
        jwk.update(kid=f"k-{alg}", use="sig")
        keys[alg] = (private, jwk)
    return keys


def mint_tokens(keys: dict[str, tuple[Any, dict[str, Any]]], algs: list[str], count: int, now: int) -> list[str]:
    tokens = []
    for n in range(count):
        alg = algs[n % len(algs)]
        private, jwk = keys[alg]
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"user-{n}", "iat": now - 60, "exp": now + 3600, "jti": str(n)}
        tokens.append(jwt.encode(claims, private, algorithm=alg, headers={"kid": jwk["kid"]}))
    return tokens


def bare_decode(tokens: list[str], keys: dict[str, tuple[Any, dict[str, Any]]]) -> float:
    """Seconds for PyJWT to decode every token with a prepared public key (kid lookup in a dict)."""
    prepared = {jwk["kid"]: (private.public_key(), alg) for alg, (private, jwk) in keys.items()}
    started = time.perf_counter()
    for token in tokens:
        key, alg = prepared[jwt.get_unverified_header(token)["kid"]]
        jwt.decode(token, key, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER, leeway=30)
    return time.perf_counter() - started


def jwtriage_classify(tokens: list[str], keys: dict[str, tuple[Any, dict[str, Any]]], workdir: Path) -> float:
    """Seconds for the classify path (JSONL in, one JSON line out per event), start-up excluded."""
    at = datetime.now(UTC)
    snapshot = {
        "issuer": ISSUER,
        "fetched_at": (at - timedelta(days=30)).isoformat(),
        "jwks": {"keys": [jwk for _, jwk in keys.values()]},
    }
    (workdir / "jwks.jsonl").write_text(json.dumps(snapshot) + "\n")
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    with (workdir / "events.jsonl").open("w") as f:
        for n, token in enumerate(tokens):
            f.write(json.dumps({"event_id": f"e{n}", "ts": stamp, "service": "api", "token": token}) + "\n")
    config = Config.model_validate(tomllib.loads(CONFIG_TOML))
    pipeline = Pipeline(config)
    source = FileSource(workdir / "events.jsonl", snapshots=workdir / "jwks.jsonl")
    out = io.StringIO()
    batches = source.batches()
    pipeline.process(next(batches))  # the JWKS: start-up, not timed
    started = time.perf_counter()
    causes: dict[str, int] = {}
    with streaming_gc():  # as cmd_classify does
        for envelopes in batches:
            for judged in pipeline.process(envelopes).judged:
                out.write(judged.verdict.classification.model_dump_json())
                out.write("\n")
                cause = judged.verdict.classification.cause.value
                causes[cause] = causes.get(cause, 0) + 1
    elapsed = time.perf_counter() - started
    assert causes == {"valid": len(tokens)}, causes  # the benchmark measures real verdicts
    return elapsed


TARGET_UNIQUE, TARGET_REPEATED = 0.7, 3.0


def run_case(
    name: str,
    tokens: list[str],
    keys: dict[str, tuple[Any, dict[str, Any]]],
    workdir: Path,
    summary: Summary,
    target: float,
) -> None:
    baseline = ours = float("inf")
    for _ in range(3):  # interleaved, so a change in the machine's load hits both sides alike
        baseline = min(baseline, bare_decode(tokens, keys))
        ours = min(ours, jwtriage_classify(tokens, keys, workdir))
    n, at = len(tokens), load()
    print(
        f"{name:<34} {n:>7} tokens | bare jwt.decode {n / baseline:>9,.0f}/s ({baseline / n * 1e6:5.1f} us) | "
        f"jwtriage classify {n / ours:>9,.0f}/s ({ours / n * 1e6:5.1f} us) | ratio {baseline / ours:4.2f}x | "
        f"load {at:.2f}",
        flush=True,
    )
    summary.add(
        f"classify: {name}",
        n / ours,
        "tokens/s",
        baseline=n / baseline,
        target=f">= {target}x",
        met=baseline / ours >= target,
        load=at,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unique", type=int, default=3000, help="distinct tokens per case")
    parser.add_argument("--repeat", type=int, default=10, help="times each token repeats in the repeated case")
    parser.add_argument("--algs", default="RS256", help="comma-separated mix, e.g. RS256,ES256,EdDSA")
    parser.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    parser.add_argument("--summary", type=Path, help="write the headline figures here as JSON (for run_all.py)")
    args = parser.parse_args(argv)
    import shutil
    import tempfile

    unique_count = 100 if args.quick else args.unique
    keys = make_keys()
    now = int(time.time())
    workdir = Path(tempfile.mkdtemp(prefix="jwtriage-bench-"))
    header("classify: jwtriage classify (JSONL in, JSON lines out) vs bare jwt.decode with prepared keys")
    print("ratio = bare time / jwtriage time (higher is better for jwtriage)")
    summary = Summary("classify", [])
    mixes = [args.algs.split(",")]
    if args.algs == "RS256":
        mixes += [["ES256"], ["EdDSA"], ["RS256", "ES256", "EdDSA"]]
    for mix in mixes:
        label = "+".join(mix)
        unique = mint_tokens(keys, mix, unique_count, now)
        run_case(f"{label} unique", unique, keys, workdir, summary, TARGET_UNIQUE)
        repeated = [t for t in unique[: max(1, unique_count // args.repeat)] for _ in range(args.repeat)]
        random.Random(1).shuffle(repeated)
        run_case(f"{label} each token x{args.repeat}", repeated, keys, workdir, summary, TARGET_REPEATED)
    shutil.rmtree(workdir, ignore_errors=True)
    summary.write(args.summary)


if __name__ == "__main__":
    main()
