"""The four resource servers: which library each uses, how it caches its JWKS, how to start it.

Cache settings are the libraries' defaults except the Go service's periodic refresh (every
`GO_REFRESH` s instead of an hour); the JWKS-cache facts jwtriage's config gets for them are
the ones a team would know: PyJWKClient 300 s, jose 600 s, keyfunc its refresh interval,
Nimbus 300 s; Nimbus's claims verifier allows 60 s of clock skew by default.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from lab.procs import ROOT, Processes, free_port, http_ok, wait_until

SERVICES_DIR = ROOT / "lab" / "services"
GO_REFRESH = 40


@dataclass(frozen=True)
class Service:
    name: str
    library: str
    argv: list[str]
    cache_ttl: int
    leeway: int = 0


def definitions() -> list[Service]:
    java = shutil.which("java") or "java"
    return [
        Service("orders-py", "PyJWT PyJWKClient", [sys.executable, str(SERVICES_DIR / "python" / "service.py")], 300),
        Service("catalog-node", "jose createRemoteJWKSet", ["node", str(SERVICES_DIR / "node" / "service.mjs")], 600),
        Service("payments-go", "golang-jwt + keyfunc", [str(SERVICES_DIR / "go" / "lab-service-go")], GO_REFRESH),
        Service(
            "ledger-java",
            "Nimbus DefaultJWTProcessor",
            [
                java,
                "-Xmx96m",
                "-XX:TieredStopAtLevel=1",
                "-XX:+UseSerialGC",
                "-jar",
                str(SERVICES_DIR / "java" / "target" / "lab-service-java.jar"),
            ],
            300,
            leeway=60,
        ),
    ]


def start_services(
    procs: Processes, run_dir: Path, issuer: str, jwks_uri: str, audience: str, sample_below: int
) -> dict[str, str]:
    """Start every service; returns name -> base URL once each answers /health."""
    urls: dict[str, str] = {}
    for service in definitions():
        port = free_port()
        env = {
            "LAB_SERVICE": service.name,
            "LAB_PORT": str(port),
            "LAB_JWKS_URL": jwks_uri,
            "LAB_ISSUER": issuer,
            "LAB_AUDIENCE": audience,
            "LAB_SAMPLE_BELOW": str(sample_below),
            "LAB_REFRESH_SECONDS": str(GO_REFRESH),
            "LAB_EVENTS": str(run_dir / f"{service.name}.events.jsonl"),
            "LAB_SAMPLES": str(run_dir / f"{service.name}.samples.jsonl"),
        }
        procs.start(service.name, service.argv, env, run_dir / f"{service.name}.log", cwd=SERVICES_DIR)
        urls[service.name] = f"http://127.0.0.1:{port}"
    for name, url in urls.items():
        wait_until(name, http_ok(f"{url}/health"), 90, procs)
    return urls
