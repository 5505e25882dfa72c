"""The lab's run: start, set up the realm, rotate under traffic, collect, compare.

The rotation (seconds after the traffic starts; tokens live 60 s, billing-batch's 180 s):
  12 s  publish k2: a new rsa-generated provider, priority 50 (k1's is 100)
  24 s  switch: k2's priority to 150 (services that fetched less than 30 s ago stay stale)
  40 s  remove k1 while billing-batch's k1 token lives (a broken step)
  62 s  k3 created at priority 200 at once: it signs as soon as it is published (a broken step)
 110 s  the traffic stops
"""

from __future__ import annotations

import secrets
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from lab import jwtriage_side as jt
from lab import report
from lab.keycloak import Keycloak, LabClient
from lab.procs import LAB_DIR, Processes, free_port, http_ok, wait_until
from lab.services import definitions, start_services
from lab.traffic import Traffic
from lab.truth import KeyLife

AUDIENCE = "api://lab"
TOKEN_LIFESPAN = 60
SAMPLE_BELOW = 128  # a token is sampled when the first byte of its SHA-256 is below this: 1 in 2
CLIENTS = [
    LabClient("orders-web", AUDIENCE),
    LabClient("billing-batch", AUDIENCE, lifespan=180),
    LabClient("portal", AUDIENCE, password_grant=True),
    LabClient("reports-job", "api://reports"),
    LabClient("mobile-app", AUDIENCE),
    LabClient("sync-agent", AUDIENCE),
    LabClient("intruder", AUDIENCE),
]
ROTATION = [(12, "publish"), (24, "switch"), (40, "remove"), (62, "sign-unpublished"), (110, "end")]


def keycloak_home() -> Path:
    homes = sorted(LAB_DIR.glob("keycloak-*/bin/kc.sh"))
    if not homes:
        raise RuntimeError("Keycloak is not unpacked under .lab/ (run scripts/lab-up.sh, or make lab)")
    return homes[-1].parent.parent


class Lab:
    def __init__(self, keycloak_url: str | None = None, keep: bool = False) -> None:
        self.procs = Processes()
        self.keycloak_url = keycloak_url
        self.keep = keep
        self.run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(3)
        self.run_dir = LAB_DIR / "run"
        self.traffic: Traffic | None = None
        self.topics_created = False
        self.keys: dict[str, KeyLife] = {}
        self.mismatches = 0  # checks where the report/dashboard queries disagree with the stored verdicts

    def run(self) -> float:
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        kc = self._keycloak()
        secrets_by_name = self._realm(kc)
        services = definitions()
        urls = start_services(self.procs, self.run_dir, kc.issuer, kc.jwks_uri, AUDIENCE, SAMPLE_BELOW)
        config, store = self.run_dir / "jwtriage.toml", self.run_dir / "jwtriage.duckdb"
        jt.write_config(config, self.run_id, kc.issuer, kc.jwks_uri, AUDIENCE, services, store)
        jt.create_topics(self.run_id)
        self.topics_created = True
        jt.start_jwks_watch(self.procs, config, self.run_dir)
        time.sleep(3)  # the watcher's first snapshot
        self.traffic = Traffic(kc, urls, secrets_by_name)
        self._rotate_under_traffic(kc)
        fetches = {name: [_time(t) for t in httpx.get(f"{url}/fetches").json()] for name, url in urls.items()}
        sent, errors = self.traffic.sent, self.traffic.errors
        self.procs.stop_all()  # Keycloak, services, watcher: the CPU is the consumer's now
        for error in errors:
            print(f"lab: a client failed: {error}")
        events, samples = jt.ship(self.run_id, self.run_dir, services)
        print(f"lab: {len(sent)} requests, {events} rejections logged, {samples} tokens sampled")
        t0 = time.monotonic()
        jt.consume(config, store, self.run_dir)
        print(f"lab: jwtriage consume took {time.monotonic() - t0:.0f} s")
        stored, queries = jt.stored(store)
        leeways = {s.name: s.leeway for s in services}
        judged = report.judge_all(sent, stored, leeways, jt.SKEW_WINDOW, self.keys, fetches)
        return self._print(judged, queries, fetches)

    def _print(self, judged: list[report.Judged], queries: dict, fetches: dict[str, list[datetime]]) -> float:
        print(
            "\nkeys: "
            + "; ".join(
                f"{k.kid[:8]} published {_hms(k.published)} switched {_hms(k.switched)} removed {_hms(k.removed)}"
                for k in self.keys.values()
            )
        )
        print(
            "JWKS fetches: "
            + "; ".join(f"{name} {' '.join(_hms(f) for f in times)}" for name, times in fetches.items())
        )
        print()
        report.print_table(judged)
        report.print_disagreements(judged)
        print("\nwhat the report/dashboard queries say:")
        checks = report.check_queries(judged, queries, self.keys)
        for line in checks:
            print(line)
        self.mismatches = sum(1 for line in checks if line.lstrip().startswith("MISMATCH"))
        coarse = sum(1 for j in judged if j.message_level)
        print(
            f"\n{coarse} of the agreeing verdicts had no sampled token and agree as far as the library's "
            "message can say (see lab/truth.py MESSAGE_LEVEL)"
        )
        line, pct = report.headline(judged)
        print(line)
        return pct

    def _keycloak(self) -> Keycloak:
        if self.keycloak_url:
            return Keycloak(self.keycloak_url, "admin", "admin")
        port = free_port()
        home = keycloak_home()
        env = {
            "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
            "KC_BOOTSTRAP_ADMIN_PASSWORD": "admin",
            "JAVA_OPTS_KC_HEAP": "-Xms64m -Xmx512m",
        }
        argv = [
            str(home / "bin" / "kc.sh"),
            "start-dev",
            f"--http-port={port}",
            "--http-host=127.0.0.1",
            "--http-management-port=" + str(free_port()),
        ]
        self.procs.start("keycloak", argv, env, self.run_dir / "keycloak.log", cwd=home)
        base = f"http://127.0.0.1:{port}"
        took = wait_until(
            "Keycloak", http_ok(f"{base}/realms/master/.well-known/openid-configuration"), 420, self.procs
        )
        print(f"lab: Keycloak started in {took:.0f} s")
        return Keycloak(base, "admin", "admin")

    def _realm(self, kc: Keycloak) -> dict[str, str]:
        kc.create_realm(TOKEN_LIFESPAN)
        created = datetime.now(UTC)
        secrets_by_name = {c.client_id: secrets.token_urlsafe(16) for c in CLIENTS}
        for client in CLIENTS:
            kc.create_client(client, secrets_by_name[client.client_id])
        secrets_by_name["alice"] = secrets.token_urlsafe(12)
        kc.create_user("alice", secrets_by_name["alice"])
        self.k1_provider = kc.default_rsa_provider()
        k1 = kc.rsa_kid(self.k1_provider)
        self.keys[k1] = KeyLife(k1, created)
        return secrets_by_name

    def _rotate_under_traffic(self, kc: Keycloak) -> None:
        assert self.traffic is not None
        self.traffic.start()
        start = time.monotonic()
        k1 = next(iter(self.keys))
        k2_provider = ""
        for at, step in ROTATION:
            time.sleep(max(0.0, start + at - time.monotonic()))
            self.procs.check_alive()
            if step == "publish":
                k2_provider, when = kc.add_rsa_provider("k2", 50)
                k2 = kc.rsa_kid(k2_provider)
                self.keys[k2] = KeyLife(k2, when)
            elif step == "switch":
                self.keys[kc.rsa_kid(k2_provider)].switched = kc.set_priority(k2_provider, 150)
            elif step == "remove":
                self.keys[k1].removed = kc.delete_provider(self.k1_provider)
            elif step == "sign-unpublished":
                k3_provider, when = kc.add_rsa_provider("k3", 200)
                k3 = kc.rsa_kid(k3_provider)
                self.keys[k3] = KeyLife(k3, when, switched=when)
            print(f"lab: t={time.monotonic() - start:5.1f} s {step}", flush=True)
        self.traffic.stop()

    def stop(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
        self.procs.stop_all()
        if self.topics_created:
            jt.delete_topics(self.run_id)
        for samples in self.run_dir.glob("*.samples.jsonl"):  # raw tokens: credentials
            samples.unlink()
        if not self.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _hms(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S.%f")[:-3] if value else "-"
