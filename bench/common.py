"""Shared by the benchmark scripts: the machine and its load, best-of-N timing, signed corpora.

Every figure a script prints carries the 1-minute load average beside it (other people run
tests on this 2-core machine at the same time), and every measurement is run at least twice
and the best kept. Signing a fresh RSA token costs about a millisecond, so corpora of unique
tokens are signed once, in a process pool, and cached as JSONL under `bench/.cache/`
(git-ignored); later runs reuse them.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import platform
import shutil
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
#: Signed corpora, simulated days and dashboard stores, made once (JWTRIAGE_BENCH_CACHE moves it; the smoke test does).
CACHE = Path(os.environ.get("JWTRIAGE_BENCH_CACHE") or Path(__file__).resolve().parent / ".cache")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# A PYTHONPATH naming another tree is that tree's baseline run (`PYTHONPATH=<tree> python bench/...`): its
# entries go before this tree, or the "baseline" would measure this tree again (as it did until 2026-12-05).
sys.path[:0] = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]

T = TypeVar("T")

ISSUER = "https://login.bench.test"
AUDIENCE = "api://bench"
SERVICE = "api"
#: Every corpus event happens at this instant (fixed, so a cached corpus stays valid forever).
EVENT_TS = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CONFIG_TOML = f"""
[[issuers]]
name = "bench"
issuer = "{ISSUER}"
jwks_uri = "{ISSUER}/jwks"
algorithms = ["RS256", "ES256", "EdDSA"]

[[services]]
name = "{SERVICE}"
issuers = ["bench"]
audience = "{AUDIENCE}"
leeway_seconds = 30
required_claims = ["exp", "iat", "sub"]
"""


def module_from_tree(tree: Path, path: str, name: str) -> Any:
    """Another checkout's module (`path` inside `tree`) under `name`, beside this tree's `pipeline` (which its
    own imports then use): one function of a baseline tree measured against this tree's in the same process."""
    spec = importlib.util.spec_from_file_location(name, Path(tree) / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the machine ------------------------------------------------------------------------------


def load() -> float:
    """The 1-minute load average (2 cores here: above 2 means something else is competing)."""
    return os.getloadavg()[0]


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (5 min {five:.2f})"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores{memory}; {system}; python {sys.version.split()[0]}"


def versions() -> str:
    import cryptography
    import duckdb
    import jwt
    import pyarrow
    import pydantic

    return (
        f"PyJWT {jwt.__version__}, cryptography {cryptography.__version__}, pydantic {pydantic.__version__}, "
        f"duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__}"
    )


def best_of(runs: int, measure: Callable[[], T], key: Callable[[T], float]) -> T:
    """Run `measure` `runs` times (at least twice) and keep the result with the smallest `key`."""
    results = [measure() for _ in range(max(2, runs))]
    return min(results, key=key)


@dataclass
class Summary:
    """Headline figures a script hands to `run_all.py` (a JSON file given by --summary)."""

    script: str
    rows: list[dict[str, Any]]

    def add(self, name: str, value: float, unit: str, baseline: float | None = None, target: str = "",
            met: bool | None = None, load: float | None = None) -> None:
        self.rows.append({
            "name": name, "value": value, "unit": unit, "baseline": baseline,
            "ratio": (value / baseline) if baseline else None, "target": target, "met": met,
            "load": globals()["load"]() if load is None else load,
        })

    def write(self, path: Path | None) -> None:
        if path is not None:
            path.write_text(json.dumps({"script": self.script, "rows": self.rows}, indent=1))


def bench_config() -> Any:
    from pipeline.config import Config

    return Config.model_validate(tomllib.loads(CONFIG_TOML))


# -- signed corpora ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamFiles:
    """A cached stream's folder: its events, its JWKS snapshots and the config that judges them."""

    folder: Path

    @property
    def events(self) -> Path:
        return self.folder / "events.jsonl"

    @property
    def jwks(self) -> Path:
        return self.folder / "jwks.jsonl"

    @property
    def config(self) -> Path:
        return self.folder / "jwtriage.toml"


@dataclass(frozen=True)
class Corpus(StreamFiles):
    """A cached set of events, each carrying a freshly signed (unique) token, plus the JWKS."""

    count: int
    algs: tuple[str, ...]

    def tokens(self) -> list[str]:
        with self.events.open("rb") as f:
            return [json.loads(line)["token"] for line in f]

    def public_jwks(self) -> list[dict[str, Any]]:
        return json.loads(self.jwks.read_text().splitlines()[0])["jwks"]["keys"]  # type: ignore[no-any-return]


_KEYS: dict[str, Any] = {}  # alg → private key, in each pool worker


def _private_keys() -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization

    pem = CACHE / "keys.json"
    if not pem.exists():
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

        generated = {
            "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES256": ec.generate_private_key(ec.SECP256R1()),
            "EdDSA": ed25519.Ed25519PrivateKey.generate(),
        }
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = pem.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({
            alg: key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
            for alg, key in generated.items()
        }))
        os.replace(tmp, pem)
    return {
        alg: serialization.load_pem_private_key(text.encode(), password=None)
        for alg, text in json.loads(pem.read_text()).items()
    }


def public_jwk(alg: str, private: Any) -> dict[str, Any]:
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    to_jwk = {"RS256": RSAAlgorithm.to_jwk, "ES256": ECAlgorithm.to_jwk, "EdDSA": OKPAlgorithm.to_jwk}[alg]
    jwk: dict[str, Any] = json.loads(to_jwk(private.public_key()))
    jwk.update(kid=f"bench-{alg}", use="sig")
    return jwk


def _sign_range(job: tuple[int, int, tuple[str, ...]]) -> bytes:
    """Events start..stop-1 as JSONL bytes, each with its own freshly signed token."""
    import jwt

    start, stop, algs = job
    if not _KEYS:
        _KEYS.update(_private_keys())
    iat = int(EVENT_TS.timestamp()) - 120
    stamp = EVENT_TS.isoformat().replace("+00:00", "Z")
    lines = []
    for n in range(start, stop):
        alg = algs[n % len(algs)]
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"user-{n % 5000}", "iat": iat, "exp": iat + 3600,
                  "jti": f"t{n}", "azp": "bench-client"}
        token = jwt.encode(claims, _KEYS[alg], algorithm=alg, headers={"kid": f"bench-{alg}"})
        event = {"event_id": f"e{n:09d}", "ts": stamp, "service": SERVICE, "token": token,
                 "client_id": "bench-client", "request_id": f"r{n}", "reported_error": "Signature verification failed"}
        lines.append(json.dumps(event, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


def signed_corpus(count: int, algs: Sequence[str] = ("RS256",), quiet: bool = False) -> Corpus:
    """`count` events with a unique token each (algs in rotation), signed once and cached."""
    algs = tuple(algs)
    folder = CACHE / f"unique-{'+'.join(algs)}-{count}"
    corpus = Corpus(folder, count, algs)
    if corpus.events.exists():
        return corpus
    bigger = _bigger_corpus(count, algs)
    if bigger is not None:  # the first `count` events of a larger cached corpus
        tmp = folder.with_name(folder.name + f".{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with bigger.events.open("rb") as source, (tmp / "events.jsonl").open("wb") as out:
            for _, line in zip(range(count), source, strict=False):
                out.write(line)
        for name in ("jwks.jsonl", "jwtriage.toml"):
            shutil.copy(bigger.folder / name, tmp / name)
        _publish(tmp, folder)
        return corpus
    keys = _private_keys()
    started = time.perf_counter()
    if not quiet:
        print(f"signing {count:,} unique {'+'.join(algs)} tokens into {folder} (once; cached) …", flush=True)
    tmp = folder.with_name(folder.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    step = 2_000
    jobs = [(start, min(start + step, count), algs) for start in range(0, count, step)]
    with (tmp / "events.jsonl").open("wb") as out:
        if count <= step:
            out.write(_sign_range(jobs[0]))
        else:
            with multiprocessing.get_context("fork").Pool(os.cpu_count() or 2) as pool:
                for chunk in pool.imap(_sign_range, jobs):
                    out.write(chunk)
    snapshot = {
        "issuer": ISSUER,
        "fetched_at": (EVENT_TS - timedelta(days=30)).isoformat().replace("+00:00", "Z"),
        "jwks": {"keys": [public_jwk(alg, keys[alg]) for alg in ("RS256", "ES256", "EdDSA")]},
    }
    (tmp / "jwks.jsonl").write_text(json.dumps(snapshot) + "\n")
    (tmp / "jwtriage.toml").write_text(CONFIG_TOML)
    _publish(tmp, folder)
    if not quiet:
        print(f"  signed in {time.perf_counter() - started:.0f} s", flush=True)
    return corpus


def _bigger_corpus(count: int, algs: tuple[str, ...]) -> Corpus | None:
    prefix = f"unique-{'+'.join(algs)}-"
    sizes = [int(p.name[len(prefix):]) for p in CACHE.glob(f"{prefix}*") if p.name[len(prefix):].isdigit()]
    larger = [n for n in sizes if n > count and (CACHE / f"{prefix}{n}" / "events.jsonl").exists()]
    return Corpus(CACHE / f"{prefix}{min(larger)}", min(larger), algs) if larger else None


def simulated_files(events: int, seed: int = 7, quiet: bool = False) -> dict[str, Path]:
    """The simulator's output for `events` events over 24 h, written once (in a child process) and cached."""
    folder = CACHE / f"simulated-{seed}-{events}"
    paths = {role: folder / f"{role}.jsonl" for role in ("jwks", "events", "samples")}
    paths["config"] = folder / "jwtriage.toml"
    if all(p.exists() for p in paths.values()):
        return paths
    if not quiet:
        print(f"simulating {events:,} events (seed {seed}) into {folder} (once; cached) …", flush=True)
    started = time.perf_counter()
    tmp = folder.with_name(folder.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # In a child: the simulator holds the whole scenario in memory, which is not the pipeline's RSS.
    code = (
        "import sys; from pathlib import Path; from pipeline.simulator import simulate, write_scenario; "
        f"write_scenario(simulate(seed={seed}, events={events}, hours=24.0), Path(sys.argv[1]))"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code, str(tmp)], check=True, cwd=ROOT)
    (tmp / "truth.jsonl").unlink(missing_ok=True)
    _publish(tmp, folder)
    if not quiet:
        print(f"  simulated in {time.perf_counter() - started:.0f} s", flush=True)
    return paths


def _publish(tmp: Path, folder: Path) -> None:
    """Move a finished cache entry into place; if another run was quicker, keep theirs."""
    try:
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def header(title: str) -> None:
    print(f"== {title} ==")
    print(f"machine: {machine()}")
    print(f"{versions()}; {load_note()} at start; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", flush=True)
