"""The lab's clients: they get tokens from Keycloak and call every service, some of them misbehaving.

Each client is a thread with one behaviour; every request it sends is remembered with its
intent, the token's kid and exp and the moment it was sent (the lab's record of what happened;
the token itself is never kept). Forged tokens (alg none, HS256 keyed with the realm's RSA
public key) are built here from a real token's claims.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm

from lab.keycloak import Keycloak


@dataclass(frozen=True)
class Sent:
    """One request as the lab knows it."""

    request_id: str
    client_id: str
    service: str
    intent: str  # normal | wrong_audience | skewed_clock | replay | alg_none | key_confusion
    kid: str | None
    exp: float | None
    sent_at: datetime
    status: int


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in token.split(".")[:2])
    return header, payload


def alg_none(token: str) -> str:
    header, _ = unverified(token)
    forged = {"alg": "none", "typ": "JWT", "kid": header.get("kid")}
    return f"{b64url(json.dumps(forged).encode())}.{token.split('.')[1]}."


def key_confusion(token: str, public_pem: bytes) -> str:
    """HS256 over the token's claims, keyed with the realm's RSA public key in PEM (the classic attack)."""
    header, _ = unverified(token)
    forged = {"alg": "HS256", "typ": "JWT", "kid": header.get("kid")}
    signing_input = f"{b64url(json.dumps(forged).encode())}.{token.split('.')[1]}"
    signature = hmac.new(public_pem, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def public_pem(jwks: dict[str, Any]) -> bytes:
    key = next(k for k in jwks["keys"] if k.get("use") == "sig" and k.get("kty") == "RSA")
    public = RSAAlgorithm.from_jwk(json.dumps(key))
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[union-attr]


class Traffic:
    """Runs the clients until `stop()`; `sent` holds every request."""

    def __init__(self, kc: Keycloak, services: dict[str, str], secrets: dict[str, str]) -> None:
        self.kc = kc
        self.services = services  # name -> base URL
        self.secrets = secrets
        self.sent: list[Sent] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.http = httpx.Client(timeout=10.0)

    def start(self) -> None:
        behaviours: list[Callable[[], None]] = [
            lambda: self._fresh("orders-web", every=8.0),
            lambda: self._lazy("billing-batch"),
            lambda: self._user("portal", "alice"),
            lambda: self._fresh("reports-job", every=10.0, intent="wrong_audience"),
            lambda: self._skewed("mobile-app"),
            lambda: self._replayer("sync-agent"),
            lambda: self._attacker("intruder"),
        ]
        for run in behaviours:
            thread = threading.Thread(target=self._guard(run), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        self.http.close()

    def _guard(self, run: Callable[[], None]) -> Callable[[], None]:
        def guarded() -> None:
            try:
                run()
            except Exception as exc:  # a client's failure is reported, the others go on
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")

        return guarded

    def _call_all(self, client_id: str, token: str, intent: str) -> None:
        header, payload = unverified(token)
        for service, base in self.services.items():
            request_id = str(uuid.uuid4())
            sent_at = datetime.now(UTC)
            response = self.http.get(
                f"{base}/api",
                headers={"Authorization": f"Bearer {token}", "X-Request-Id": request_id, "X-Client-Id": client_id},
            )
            record = Sent(
                request_id,
                client_id,
                service,
                intent,
                header.get("kid"),
                payload.get("exp"),
                sent_at,
                response.status_code,
            )
            with self._lock:
                self.sent.append(record)

    def _pause(self, seconds: float) -> bool:
        """Sleep about `seconds` (jittered); False once the lab is stopping."""
        return not self._stop.wait(seconds * random.uniform(0.8, 1.2))

    def _token(self, client_id: str) -> str:
        return self.kc.client_token(client_id, self.secrets[client_id])

    def _fresh(self, client_id: str, every: float, intent: str = "normal") -> None:
        token, got = self._token(client_id), time.monotonic()
        while self._pause(2.0):
            if time.monotonic() - got > every:
                token, got = self._token(client_id), time.monotonic()
            self._call_all(client_id, token, intent)

    def _lazy(self, client_id: str) -> None:
        """Keeps each token until 3 s before it expires (so it outlives a key's removal)."""
        token = self._token(client_id)
        while self._pause(2.0):
            if unverified(token)[1]["exp"] - time.time() < 3:
                token = self._token(client_id)
            self._call_all(client_id, token, "normal")

    def _user(self, client_id: str, username: str) -> None:
        login = lambda: self.kc.user_token(client_id, self.secrets[client_id], username, self.secrets[username])  # noqa: E731
        token, got = login(), time.monotonic()
        while self._pause(3.0):
            if time.monotonic() - got > 15:
                token, got = login(), time.monotonic()
            self._call_all(client_id, token, "normal")

    def _skewed(self, client_id: str) -> None:
        """Its clock runs 10 s slow: it keeps using a token up to 8 s after the token expired."""
        token = self._token(client_id)
        while self._pause(2.0):
            late = time.time() - unverified(token)[1]["exp"]
            if late > 8:
                token, late = self._token(client_id), -1.0
            if -1 < late < 1:  # too close to exp to say which side of it the service saw
                continue
            self._call_all(client_id, token, "skewed_clock" if late >= 1 else "normal")

    def _replayer(self, client_id: str) -> None:
        """Captures a token and replays it 40-55 s after it expired."""
        held = self._token(client_id)
        while self._pause(3.0):
            late = time.time() - unverified(held)[1]["exp"]
            if late > 55:
                held = self._token(client_id)
            elif late >= 40:
                self._call_all(client_id, held, "replay")

    def _attacker(self, client_id: str) -> None:
        """Forges alg-none and HS256 key-confusion tokens from its own token's claims."""
        pem = public_pem(self.http.get(self.kc.jwks_uri).json())
        while self._pause(6.0):
            token = self._token(client_id)
            self._call_all(client_id, alg_none(token), "alg_none")
            self._call_all(client_id, key_confusion(token, pem), "key_confusion")
