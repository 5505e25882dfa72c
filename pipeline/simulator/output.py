"""Writing a scenario: the jwtriage config it is classified with, and the JSONL files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pipeline.simulator.cast import ISSUERS, MAX_JWKS_CACHE_TTL_SECONDS, SERVICES, SKEW_WINDOW_SECONDS
from pipeline.simulator.records import Scenario


def _toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


#: How every scenario config starts: `jwtriage demo` replaces only a config that does (`commands.demo`).
CONFIG_HEADER = "# jwtriage config for the simulated key-rotation scenario"


def config_toml(seed: int) -> str:
    """A complete jwtriage config (DESIGN.md contract) naming every issuer and service."""
    lines = [
        f"{CONFIG_HEADER} (pipeline/simulator, seed {seed}).",
        "# The JWKS cache notes are the simulator's, for people; jwtriage reads only jwks_cache_ttl_seconds.",
        "",
        "[classify]",
        f"skew_window_seconds = {SKEW_WINDOW_SECONDS}",
        f"max_jwks_cache_ttl_seconds = {MAX_JWKS_CACHE_TTL_SECONDS}",
    ]
    for issuer in ISSUERS:
        lines += [
            "",
            "[[issuers]]",
            f'name = "{issuer.name}"',
            f'issuer = "{issuer.url}"',
            f'jwks_uri = "{issuer.url}/.well-known/jwks.json"',
            f"algorithms = {_toml_list(issuer.algorithms)}",
        ]
    for service in SERVICES:
        refresh = (
            "refetches on an unknown kid"
            if service.refresh_on_unknown_kid
            else "no refetch on an unknown kid"
        )
        ttl = f"{service.ttl_s // 3600} h" if service.ttl_s >= 3600 else f"{service.ttl_s // 60} min"
        reports = "reports" if service.fetch_time == "reported" else "does not report"
        declared = "" if service.ttl_declared else " (TTL not declared to jwtriage)"
        lines += [
            "",
            f"# JWKS cache: TTL {ttl}, {refresh}; {reports} its fetch time{declared}.",
            "[[services]]",
            f'name = "{service.name}"',
            f"issuers = {_toml_list(service.issuers)}",
            f'audience = "{service.audience}"',
            f"leeway_seconds = {service.leeway_s}",
            f"required_claims = {_toml_list(service.required)}",
        ]
        if service.parties is not None:
            lines.append(f"authorized_parties = {_toml_list(service.parties)}")
        if service.ttl_declared:
            lines.append(f"jwks_cache_ttl_seconds = {service.ttl_s}")
    return "\n".join(lines) + "\n"


def with_tables(config: str, store: str | None = None, kafka: dict[str, str] | None = None) -> str:
    """`config` with a `[store]` table (the store's path) and a `[kafka]` table (broker and topics) appended."""
    lines = [config.rstrip("\n")]
    if store is not None:
        lines += ["", "[store]", f"path = {json.dumps(store)}"]
    if kafka:
        lines += ["", "[kafka]", *(f"{key} = {json.dumps(value)}" for key, value in kafka.items())]
    return "\n".join(lines) + "\n"


def write_scenario(scenario: Scenario, out_dir: Path) -> dict[str, Path]:
    """Write the config, the three streams as JSONL and the truth; returns the paths by role."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "config": out_dir / "jwtriage.toml",
        "jwks": out_dir / "jwks.jsonl",
        "events": out_dir / "events.jsonl",
        "samples": out_dir / "samples.jsonl",
        "truth": out_dir / "truth.jsonl",
    }
    paths["config"].write_text(scenario.config_toml, encoding="utf-8")
    for role, records in (
        ("jwks", scenario.snapshots),
        ("events", scenario.events),
        ("samples", scenario.samples),
    ):
        paths[role].write_bytes(b"".join(r.value + b"\n" for r in records))
    paths["truth"].write_text(
        "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in scenario.truth), encoding="utf-8"
    )
    return paths
