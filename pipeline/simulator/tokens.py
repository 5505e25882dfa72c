"""The clients' tokens: minted with their issuer's key of the moment, held, and reused.

Clients reuse a token while it is valid, as real ones do (which also exercises the
pipeline's signature cache); with `unique_tokens` every event gets a freshly signed one,
for benchmarks. A `Token` knows what the pipeline cannot: which published key really
signed it (`signer`), which is what the judge uses instead of verifying signatures.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.simulator.cast import ISSUER_BY_NAME, ClientSpec
from pipeline.simulator.clock import MINUTE, SECOND
from pipeline.simulator.keys import encode
from pipeline.simulator.world import World


@dataclass(slots=True)
class Token:
    """A token as the world knows it: its text, which published key really signed it, how it travels."""

    text: str
    signed_with: str | None  # the simulator key that signed it (None: no real signature)
    signer: str | None  # kid of the published key whose valid signature this is, else None
    iat: int | None  # seconds
    exp: int | None
    mode: str  # "inline", "sampled" (event carries the fingerprint, sampler sends the token), "unsampled"
    sha256: str
    samples_sent: int = 0


class Minter:
    """Mints the clients' tokens and keeps the ones they hold, one per (client, slot)."""

    def __init__(self, world: World, unique_tokens: bool) -> None:
        self.world = world
        self.rng: random.Random = world.rng
        self.unique_tokens = unique_tokens
        self.cache: dict[tuple[str, str], Token] = {}

    def mode(self, inline: float = 0.68, sampled: float = 0.29) -> str:
        """How a token travels: inline in the event, sampled (the event carries its fingerprint,
        the sampler sends the token) or unsampled (only the fingerprint, ever)."""
        roll = self.rng.random()
        return "inline" if roll < inline else "sampled" if roll < inline + sampled else "unsampled"

    def wrap(
        self,
        text: str,
        signed_with: str | None,
        signer: str | None,
        iat: int | None,
        exp: int | None,
        mode: str | None = None,
    ) -> Token:
        """A token record for `text` (a fresh travel mode unless one is given)."""
        sha256 = hashlib.sha256(text.encode("ascii")).hexdigest()
        return Token(text, signed_with, signer, iat, exp, mode or self.mode(), sha256)

    def _claims(self, client: ClientSpec, iat: int, exp: int, nbf: int | None = None) -> dict[str, Any]:
        issuer = ISSUER_BY_NAME[client.issuer or "corp"].url
        claims: dict[str, Any] = {"iss": issuer}
        if client.subject == "user":
            claims["sub"] = f"user-{self.rng.randrange(1, 40_000):05d}"
        elif client.subject is not None:
            claims["sub"] = client.subject
        claims["aud"] = list(client.audiences) if len(client.audiences) > 1 else client.audiences[0]
        claims[client.party_claim] = client.name
        claims["iat"] = iat
        if nbf is not None:
            claims["nbf"] = nbf
        claims["exp"] = exp
        claims["jti"] = f"{self.rng.getrandbits(64):016x}"
        claims["scope"] = "openid api.read" if client.subject == "user" else "api.read api.write"
        return claims

    def _sign_claims(self, client: ClientSpec, claims: dict[str, Any], kid: str) -> tuple[str, str | None]:
        """(token, the published kid whose valid signature it carries)."""
        key = self.world.keys[kid]
        alg = client.alg or key.alg
        header_kid = client.kid_override or kid
        text = encode(claims, key, alg, {"kid": header_kid})
        # A token is verifiable with a published key only with that key's own alg and kid.
        signer = kid if (alg == key.alg and header_kid == kid and client.issuer is not None) else None
        return text, signer

    def mint(
        self,
        client: ClientSpec,
        signed_at: int,
        *,
        iat: int | None = None,
        exp: int | None = None,
        nbf: bool = False,
        kid: str | None = None,
        edit: Callable[[dict[str, Any]], None] | None = None,
        mode: str | None = None,
    ) -> Token:
        """A fresh token for `client`, signed at `signed_at` with the key it then used."""
        iat_s = iat if iat is not None else signed_at // SECOND
        exp_s = exp if exp is not None else iat_s + client.lifetime_s
        claims = self._claims(client, iat_s, exp_s, iat_s if nbf else None)
        if edit is not None:
            edit(claims)
        key = kid or self.world.key_for(client, signed_at)
        text, signer = self._sign_claims(client, claims, key)
        return self.wrap(text, key, signer, iat_s, exp_s, mode)

    def reuse(
        self, slot: tuple[str, str], fits: Callable[[Token], bool], make: Callable[[], Token]
    ) -> Token:
        """The client's token in that slot while it still fits, else a new one (unless every
        event must carry a fresh token, for benchmarks)."""
        held = self.cache.get(slot)
        if held is not None and not self.unique_tokens and fits(held):
            return held
        token = make()
        self.cache[slot] = token
        return token

    def ordinary(self, client: ClientSpec, when: int, kid: str | None = None) -> Token:
        """The token the client currently holds; a new one when it is near expiry."""
        wanted = kid or self.world.key_for(client, when)
        since = self.world.signing_since(client, wanted)

        def fits(t: Token) -> bool:
            return (
                t.signed_with == wanted
                and t.iat is not None
                and t.exp is not None
                and t.iat * SECOND <= when - SECOND
                and when <= t.exp * SECOND - 60 * SECOND
            )

        def make() -> Token:
            latest = when - SECOND
            earliest = max(since, when - min(client.lifetime_s * SECOND // 2, 20 * MINUTE))
            signed = self.rng.randrange(earliest, latest) if latest > earliest else latest
            return self.mint(client, signed, kid=wanted)

        return self.reuse((client.name, f"ordinary:{wanted}"), fits, make)

    def variant(
        self, client: ClientSpec, when: int, slot: str, edit: Callable[[dict[str, Any]], None]
    ) -> Token:
        """A client's token with one systematic defect, held and reused like an ordinary one."""
        kid = self.world.key_for(client, when)

        def fits(t: Token) -> bool:
            return (
                t.signed_with == kid
                and t.iat is not None
                and t.iat * SECOND <= when - SECOND
                and when <= (t.exp or 0) * SECOND - MINUTE
            )

        def make() -> Token:
            signed = max(self.world.signing_since(client, kid), when - self.rng.randrange(2 * SECOND, 20 * MINUTE))
            return self.mint(client, min(signed, when - SECOND), kid=kid, edit=edit)

        return self.reuse((client.name, slot), fits, make)
