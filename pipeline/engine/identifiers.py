"""Keyed hashes of the claims that name a person, so stored claims can be grouped but not reversed.

An unkeyed hash of an e-mail-like `sub` is reversed by hashing a directory's address list;
an HMAC-SHA256 under a secret key that never enters the store is not. Each stored value
reads `hmac:<key id>:<32 hex>`: the key id (the first 8 hex of SHA-256 of the key) makes a
key change visible, since values under two keys never match.

Which claims name a person (`PERSONAL_CLAIMS`): the subject and the usual profile and
login-name claims of OIDC, Entra ID and Keycloak tokens. Client ids (`azp`, `client_id`,
`appid`, `cid`) stay readable: they name applications, not people, and triage needs them.
Only top-level claims are hashed (a nested `act.sub` is not).

Without a key (`hasher=None`: `classify`, `explain`, tests), personal claims are replaced
by `REDACTED`: nothing reversible is produced, and nothing groups either. Commands that
store claims need a key (`jwtriage keygen`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

#: The claims that name a person; each is stored as a keyed hash.
PERSONAL_CLAIMS = frozenset(
    {
        "sub",
        "email",
        "preferred_username",
        "upn",
        "unique_name",
        "name",
        "given_name",
        "family_name",
        "nickname",
        "phone_number",
        "oid",
    }
)
#: What a personal claim becomes when no key is configured.
REDACTED = "redacted:no-hash-key"
#: The shortest key accepted, in bytes (`jwtriage keygen` writes 32 random bytes as 64 hex).
MIN_KEY_BYTES = 32
_encode_sorted = json.JSONEncoder(sort_keys=True, default=str).encode


def key_id(key: bytes) -> str:
    """The first 8 hex of SHA-256 of the key: names the key without revealing it."""
    return hashlib.sha256(key).hexdigest()[:8]


def generate_key() -> str:
    """A new random key as text (64 hex characters: 32 bytes of entropy)."""
    return secrets.token_hex(32)


@dataclass(frozen=True, slots=True)
class IdentifierHasher:
    """HMAC-SHA256 under `key`; `kid` is stored in every value it makes."""

    key: bytes = field(repr=False)
    kid: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.key) < MIN_KEY_BYTES:
            raise ValueError(f"a hash key needs at least {MIN_KEY_BYTES} bytes (hint: jwtriage keygen)")
        object.__setattr__(self, "kid", key_id(self.key))

    @classmethod
    def from_text(cls, text: str) -> IdentifierHasher:
        """A key as configured (file contents or a variable), surrounding whitespace removed."""
        return cls(text.strip().encode("utf-8"))

    def hash(self, value: Any) -> str:
        digest = hmac.digest(self.key, _encode_sorted(value).encode(), "sha256")
        return f"hmac:{self.kid}:{digest[:16].hex()}"


def hasher_from(key: SecretStr | None) -> IdentifierHasher | None:
    """The hasher of a configured key (`[store] hash_key`, `hash_key_file` or JWTRIAGE_HASH_KEY), if any."""
    return IdentifierHasher.from_text(key.get_secret_value()) if key is not None else None


def stored_claims(claims: dict[str, Any], hasher: IdentifierHasher | None) -> dict[str, Any]:
    """The claims as stored: each personal claim hashed under the key (or `REDACTED`), the rest as given."""
    if PERSONAL_CLAIMS.isdisjoint(claims):
        return dict(claims)
    return {
        name: (value if name not in PERSONAL_CLAIMS else hasher.hash(value) if hasher else REDACTED)
        for name, value in claims.items()
    }
