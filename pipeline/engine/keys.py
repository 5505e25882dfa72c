"""The JWKS timeline: for each issuer and key, when it was first seen, last seen, removed.

Keys come only from JWKS snapshots, never from a token. A key is identified by its issuer
and RFC 7638 thumbprint (a `kid` reused for new material is a new key). A key's
`first_seen` is the `fetched_at` of its issuer's first snapshot that holds it, and
`removed_at` that of the first later snapshot without it; a key that comes back opens a
new interval. A key in the issuer's earliest snapshot was published before history began.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.utils import base64url_encode

from pipeline.errors import JwtriageError
from pipeline.models import JwksSnapshot

log = logging.getLogger(__name__)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

#: RFC 7638 members per key type, in the order the thumbprint hashes them.
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}


@dataclass(frozen=True, slots=True)
class KeyInterval:
    """One stretch of publication: from the first snapshot that held the key to the first without it."""

    first_seen: datetime
    last_seen: datetime
    removed_at: datetime | None


@dataclass(slots=True)
class TimelineKey:
    """One signing key of one issuer, with every interval it was published."""

    issuer: str
    kid: str | None
    thumbprint: str
    kty: str
    crv: str | None
    public_key: PublicKey
    intervals: list[KeyInterval] = field(default_factory=list)

    @property
    def key_id(self) -> str:
        """A short stable id for caches and storage: issuer-independent material hash."""
        return self.thumbprint

    @property
    def first_seen(self) -> datetime:
        return self.intervals[0].first_seen

    @property
    def last_seen(self) -> datetime:
        return self.intervals[-1].last_seen

    @property
    def removed_at(self) -> datetime | None:
        return self.intervals[-1].removed_at

    def published_at(self, when: datetime) -> bool:
        return any(i.first_seen <= when and (i.removed_at is None or when < i.removed_at) for i in self.intervals)

    def interval_start(self, when: datetime) -> datetime:
        """When the publication interval that covers `when` began (the key's age at `when`)."""
        starts = [i.first_seen for i in self.intervals if i.first_seen <= when]
        return starts[-1] if starts else self.first_seen

    def removed_before(self, when: datetime) -> datetime | None:
        """When the key had been removed as of `when` (not republished since), else None."""
        latest = None
        for interval in self.intervals:
            if interval.first_seen <= when:
                latest = interval
        if latest is not None and latest.removed_at is not None and latest.removed_at <= when:
            return latest.removed_at
        return None


class BadJwk(JwtriageError, ValueError):
    """A JWK in a snapshot that cannot be a signing key; reported and skipped."""


def _thumbprint(jwk: dict[str, Any]) -> str:
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64url_encode(hashlib.sha256(canonical.encode()).digest()).decode()


def load_public_key(jwk: Any) -> tuple[str, str | None, PublicKey, str]:
    """(kty, crv, key object, thumbprint) for a public signing JWK; raises `BadJwk`."""
    if not isinstance(jwk, dict):
        raise BadJwk("a JWK is not a JSON object")
    kty = jwk.get("kty")
    if jwk.get("use") not in (None, "sig"):
        raise BadJwk(f"use={jwk.get('use')!r} is not a signing key")
    if not isinstance(kty, str) or kty not in _THUMBPRINT_MEMBERS:  # a list or an object is not hashable
        raise BadJwk(f"kty={kty!r} is not a public signing key type (RSA, EC, OKP)")
    if any(not isinstance(jwk.get(m), str) for m in _THUMBPRINT_MEMBERS[kty]):
        raise BadJwk(f"{kty} key lacks {'/'.join(_THUMBPRINT_MEMBERS[kty])}")
    if "d" in jwk:
        raise BadJwk("a private key was published in the JWKS; it is skipped")
    algorithm = {"RSA": RSAAlgorithm, "EC": ECAlgorithm, "OKP": OKPAlgorithm}[kty]
    try:
        key = algorithm.from_jwk(jwk)  # type: ignore[attr-defined]
    except Exception as exc:  # PyJWT raises several types for bad key material
        raise BadJwk(f"{kty} key material is invalid: {exc}") from None
    if not isinstance(key, PublicKey):
        raise BadJwk(f"{kty} JWK did not give a public key")
    return kty, jwk.get("crv"), key, _thumbprint(jwk)


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """A key added to or removed from an issuer's published set (a rotation step)."""

    issuer: str
    kid: str | None
    thumbprint: str
    kty: str
    action: str  # "added" or "removed"
    at: datetime


class KeyTimeline:
    """Every key each issuer ever published, answering "which keys at time t" questions.

    Snapshots may arrive in any order (Kafka topics interleave); the timeline rebuilds an
    issuer's intervals from its sorted snapshots when a new one arrives.
    """

    def __init__(self, snapshots: Iterable[JwksSnapshot] = ()) -> None:
        self._snapshots: dict[str, dict[datetime, list[tuple[str, TimelineKey]]]] = {}
        self._keys: dict[tuple[str, str], TimelineKey] = {}
        self._by_kid: dict[Any, list[TimelineKey]] = {}
        self._all: list[TimelineKey] = []
        # issuer → (earliest, latest) snapshot time: asked for every event, so not a scan of months of polls
        self._span: dict[str, tuple[datetime, datetime]] = {}
        self.problems: list[str] = []
        self.version = 0
        for snapshot in snapshots:
            self.add(snapshot)

    def add(self, snapshot: JwksSnapshot) -> list[str]:
        """Record a snapshot; returns the problems found in it (bad JWKs, skipped)."""
        problems: list[str] = []
        raw_keys = snapshot.jwks.get("keys")
        if not isinstance(raw_keys, list):
            problems.append(f"{snapshot.issuer} at {snapshot.fetched_at.isoformat()}: JWKS has no 'keys' list")
            raw_keys = []
        held: list[tuple[str, TimelineKey]] = []
        for position, jwk in enumerate(raw_keys):
            try:
                kty, crv, public_key, thumbprint = load_public_key(jwk)
            except BadJwk as exc:
                problems.append(f"{snapshot.issuer} key #{position}: {exc}")
                continue
            kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else None
            known = self._keys.get((snapshot.issuer, thumbprint))
            if known is None:
                known = TimelineKey(snapshot.issuer, kid, thumbprint, kty, crv, public_key)
                self._keys[(snapshot.issuer, thumbprint)] = known
                self._by_kid.setdefault(kid, []).append(known)
                self._all.append(known)
            held.append((thumbprint, known))
        self._snapshots.setdefault(snapshot.issuer, {})[snapshot.fetched_at] = held
        earliest, latest = self._span.get(snapshot.issuer, (snapshot.fetched_at, snapshot.fetched_at))
        self._span[snapshot.issuer] = (min(earliest, snapshot.fetched_at), max(latest, snapshot.fetched_at))
        self._rebuild(snapshot.issuer)
        self.version += 1
        for problem in problems:
            log.warning("skipped a JWK: %s", problem)
        self.problems.extend(problems)
        return problems

    def _rebuild(self, issuer: str) -> None:
        snapshots = sorted(self._snapshots[issuer].items())
        open_since: dict[str, tuple[datetime, datetime]] = {}
        intervals: dict[str, list[KeyInterval]] = {}
        for fetched_at, held in snapshots:
            present = {thumbprint for thumbprint, _ in held}
            for thumbprint in present:
                first, _ = open_since.get(thumbprint, (fetched_at, fetched_at))
                open_since[thumbprint] = (first, fetched_at)
            for thumbprint in [t for t in open_since if t not in present]:
                first, last = open_since.pop(thumbprint)
                intervals.setdefault(thumbprint, []).append(KeyInterval(first, last, fetched_at))
        for thumbprint, (first, last) in open_since.items():
            intervals.setdefault(thumbprint, []).append(KeyInterval(first, last, None))
        for thumbprint, spans in intervals.items():
            self._keys[(issuer, thumbprint)].intervals = spans

    # -- questions -------------------------------------------------------------------------

    @property
    def issuers(self) -> list[str]:
        return sorted(self._snapshots)

    def earliest_snapshot(self, issuer: str) -> datetime | None:
        span = self._span.get(issuer)
        return span[0] if span else None

    def latest_snapshot(self, issuer: str) -> datetime | None:
        span = self._span.get(issuer)
        return span[1] if span else None

    def all_keys(self, issuer: str | None = None) -> list[TimelineKey]:
        return [k for k in self._all if k.intervals and (issuer is None or k.issuer == issuer)]

    def keys_with_kid(self, kid: Any) -> list[TimelineKey]:
        """Every key ever published under `kid`, by any issuer."""
        if not isinstance(kid, str):
            return []
        return [k for k in self._by_kid.get(kid, ()) if k.intervals]

    def published(self, issuer: str, when: datetime) -> list[TimelineKey]:
        """Which keys `issuer` published at `when`."""
        return [k for k in self.all_keys(issuer) if k.published_at(when)]

    def first_seen(self, kid: str, issuer: str | None = None) -> datetime | None:
        """When `kid` first appeared (at `issuer`, or anywhere)."""
        times = [k.first_seen for k in self.keys_with_kid(kid) if issuer is None or k.issuer == issuer]
        return min(times) if times else None

    def is_young(self, key: TimelineKey) -> bool:
        """True when the key appeared after its issuer's history began."""
        earliest = self.earliest_snapshot(key.issuer)
        return earliest is not None and key.first_seen > earliest

    def events(self) -> list[KeyEvent]:
        """Every key added and removed, in time order: the rotations."""
        out: list[KeyEvent] = []
        for key in self.all_keys():
            for interval in key.intervals:
                out.append(KeyEvent(key.issuer, key.kid, key.thumbprint, key.kty, "added", interval.first_seen))
                if interval.removed_at is not None:
                    out.append(KeyEvent(key.issuer, key.kid, key.thumbprint, key.kty, "removed", interval.removed_at))
        return sorted(out, key=lambda e: (e.at, e.issuer, e.action))
