"""Keycloak, driven only through its own admin REST API: the realm, clients, a user, and key providers.

The rotation is done the way Keycloak documents it: a new `rsa-generated` key provider with a
lower priority publishes a key (Keycloak lists every enabled key in the realm's JWKS), raising
its priority above the old one's switches signing to it, deleting the old provider removes its
key. Every call's moment is returned so the lab knows when each key changed state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

REALM = "lab"
KEY_PROVIDER = "org.keycloak.keys.KeyProvider"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LabClient:
    """A confidential client of the realm: the audience its tokens carry, whether it may log users in."""

    client_id: str
    audience: str
    password_grant: bool = False
    lifespan: int | None = None  # its own access-token lifespan (s), else the realm's


class Keycloak:
    """Admin REST calls against one Keycloak at `base` (the admin token is refreshed as needed)."""

    def __init__(self, base: str, admin_user: str, admin_password: str) -> None:
        self.base = base.rstrip("/")
        self.http = httpx.Client(timeout=30.0)
        self._admin = (admin_user, admin_password)
        self._token: str | None = None
        self._token_until = 0.0

    @property
    def issuer(self) -> str:
        return f"{self.base}/realms/{REALM}"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/certs"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    def close(self) -> None:
        self.http.close()

    def _headers(self) -> dict[str, str]:
        if self._token is None or time.monotonic() > self._token_until:
            response = self.http.post(
                f"{self.base}/realms/master/protocol/openid-connect/token",
                data={
                    "grant_type": "password",
                    "client_id": "admin-cli",
                    "username": self._admin[0],
                    "password": self._admin[1],
                },
            )
            response.raise_for_status()
            body = response.json()
            self._token = body["access_token"]
            self._token_until = time.monotonic() + float(body.get("expires_in", 60)) - 10
        return {"Authorization": f"Bearer {self._token}"}

    def admin(self, method: str, path: str, json: Any = None) -> httpx.Response:
        url = f"{self.base}/admin/realms{path}"
        response = self.http.request(method, url, json=json, headers=self._headers())
        if response.status_code >= 400:
            raise RuntimeError(f"Keycloak {method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    # --- the realm -------------------------------------------------------------------------------

    def create_realm(self, token_lifespan: int) -> None:
        """A fresh realm (an old one of the same name is deleted first: a second run starts clean)."""
        if self.http.get(f"{self.issuer}/.well-known/openid-configuration").status_code == 200:
            self.admin("DELETE", f"/{REALM}")
        self.admin("POST", "", {"realm": REALM, "enabled": True, "accessTokenLifespan": token_lifespan})

    def create_client(self, client: LabClient, secret: str) -> None:
        mapper = {
            "name": "audience",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {
                "included.custom.audience": client.audience,
                "access.token.claim": "true",
                "id.token.claim": "false",
            },
        }
        self.admin(
            "POST",
            f"/{REALM}/clients",
            {
                "clientId": client.client_id,
                "secret": secret,
                "publicClient": False,
                "enabled": True,
                "serviceAccountsEnabled": True,
                "standardFlowEnabled": False,
                "directAccessGrantsEnabled": client.password_grant,
                "protocolMappers": [mapper],
                "attributes": {"access.token.lifespan": str(client.lifespan)} if client.lifespan else {},
            },
        )

    def create_user(self, username: str, password: str) -> None:
        self.admin(
            "POST",
            f"/{REALM}/users",
            {
                "username": username,
                "enabled": True,
                "email": f"{username}@lab.test",
                "emailVerified": True,
                "firstName": username.title(),
                "lastName": "Lab",
                "credentials": [{"type": "password", "value": password, "temporary": False}],
            },
        )

    # --- key providers ---------------------------------------------------------------------------

    def key_providers(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", f"/{REALM}/components?type={KEY_PROVIDER}").json())

    def rsa_kid(self, provider_id: str) -> str:
        """The kid of the RS256 key a provider holds (from the realm's keys view)."""
        for key in self.admin("GET", f"/{REALM}/keys").json()["keys"]:
            if key.get("providerId") == provider_id and key.get("algorithm") == "RS256":
                return str(key["kid"])
        raise RuntimeError(f"no RS256 key from provider {provider_id}")

    def default_rsa_provider(self) -> str:
        for provider in self.key_providers():
            if provider["providerId"] == "rsa-generated":
                return str(provider["id"])
        raise RuntimeError("the realm has no rsa-generated key provider")

    def add_rsa_provider(self, name: str, priority: int) -> tuple[str, datetime]:
        """Create an `rsa-generated` provider; returns its id and the moment Keycloak confirmed it."""
        realm_id = self.admin("GET", f"/{REALM}").json()["id"]
        response = self.admin(
            "POST",
            f"/{REALM}/components",
            {
                "name": name,
                "providerId": "rsa-generated",
                "providerType": KEY_PROVIDER,
                "parentId": realm_id,
                "config": {
                    "priority": [str(priority)],
                    "enabled": ["true"],
                    "active": ["true"],
                    "keySize": ["2048"],
                    "algorithm": ["RS256"],
                },
            },
        )
        return response.headers["Location"].rstrip("/").rsplit("/", 1)[-1], utc_now()

    def set_priority(self, provider_id: str, priority: int) -> datetime:
        component = self.admin("GET", f"/{REALM}/components/{provider_id}").json()
        component["config"]["priority"] = [str(priority)]
        self.admin("PUT", f"/{REALM}/components/{provider_id}", component)
        return utc_now()

    def delete_provider(self, provider_id: str) -> datetime:
        self.admin("DELETE", f"/{REALM}/components/{provider_id}")
        return utc_now()

    # --- tokens, as the clients get them -----------------------------------------------------------

    def client_token(self, client_id: str, secret: str) -> str:
        return self._token_request(
            {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        )

    def user_token(self, client_id: str, secret: str, username: str, password: str) -> str:
        return self._token_request(
            {
                "grant_type": "password",
                "client_id": client_id,
                "client_secret": secret,
                "username": username,
                "password": password,
                "scope": "openid",
            }
        )

    def _token_request(self, form: dict[str, str]) -> str:
        response = self.http.post(self.token_endpoint, data=form)
        if response.status_code != 200:
            raise RuntimeError(f"token endpoint: HTTP {response.status_code}: {response.text[:200]}")
        return str(response.json()["access_token"])
