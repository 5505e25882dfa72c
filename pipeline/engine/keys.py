"""The JWKS timeline: for each issuer and key, when it was first seen, last seen, removed.

Keys come only from JWKS snapshots, never from a token. A key is identified by its issuer
and RFC 7638 thumbprint (a `kid` reused for new material is a new key). A key's
`first_seen` is the `fetched_at` of its issuer's first snapshot that holds it, and
`removed_at` that of the first later snapshot without it; a key that comes back opens a
new interval. A key in the issuer's earliest snapshot was published before history began.

Snapshots arrive in any order (Kafka topics interleave, a store is replayed). The timeline
is kept incrementally: an issuer's history is its sorted snapshot times plus *runs* (a
stretch of consecutive snapshots holding the same set of keys: a heartbeat that changes
nothing only moves the end of a run, it stores no copy of the set); a snapshot, early, late
or in order, changes only the runs and key intervals next to its own time, so loading N
snapshots costs O(N log N), not the O(N^2) of re-sorting the history for each one.

What a key may cost is bounded: an RSA key over `MAX_RSA_BITS` or with an exponent over
`MAX_RSA_EXPONENT` is refused (a 3072-bit exponent costs ~10 ms per verify), and a token's
kid is tried against the newest `max_keys_per_kid` keys an issuer published under it, not
every key ever published (2,400 keys under one kid would be 2,400 verifies per event).
What is refused is logged once, not once per snapshot.
"""

from __future__ import annotations

import hashlib
import json
import logging
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.utils import base64url_decode, base64url_encode

from pipeline.errors import JwtriageError
from pipeline.models import JwksSnapshot

log = logging.getLogger(__name__)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

#: RFC 7638 members per key type, in the order the thumbprint hashes them.
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}

#: The largest RSA modulus accepted (bits): verify cost grows with it, and no issuer needs more.
MAX_RSA_BITS = 8192
#: The largest RSA public exponent accepted; issuers use 65537 (sometimes 3): a huge one is a CPU trap.
MAX_RSA_EXPONENT = 2**32
#: Keys tried per (issuer, kid): the newest this many; older ones under the same kid are not tried.
MAX_KEYS_PER_KID = 16
#: Parsed JWKs remembered (by their JSON), so heartbeats do not parse the same keys again.
_LOAD_CACHE_SIZE = 4096


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
    if kty == "RSA":
        _check_rsa_size(jwk["n"], jwk["e"])
    algorithm = {"RSA": RSAAlgorithm, "EC": ECAlgorithm, "OKP": OKPAlgorithm}[kty]
    try:
        key = algorithm.from_jwk(jwk)  # type: ignore[attr-defined]
    except Exception as exc:  # PyJWT raises several types for bad key material
        raise BadJwk(f"{kty} key material is invalid: {exc}") from None
    if not isinstance(key, PublicKey):
        raise BadJwk(f"{kty} JWK did not give a public key")
    return kty, jwk.get("crv"), key, _thumbprint(jwk)


def _check_rsa_size(n: str, e: str) -> None:
    """Refuse an RSA key too costly to verify with, before it is built (`BadJwk`)."""
    try:
        modulus_bits = int.from_bytes(base64url_decode(n), "big").bit_length()
        exponent = int.from_bytes(base64url_decode(e), "big")
    except (ValueError, TypeError):
        return  # not base64url: from_jwk says what is wrong
    if modulus_bits > MAX_RSA_BITS:
        raise BadJwk(f"RSA modulus of {modulus_bits} bits is over the {MAX_RSA_BITS}-bit bound; refused")
    if exponent > MAX_RSA_EXPONENT:
        raise BadJwk(f"RSA exponent of {exponent.bit_length()} bits is over the 2**32 bound; refused")


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """A key added to or removed from an issuer's published set (a rotation step)."""

    issuer: str
    kid: str | None
    thumbprint: str
    kty: str
    action: str  # "added" or "removed"
    at: datetime


@dataclass(slots=True)
class _Run:
    """Consecutive snapshots of one issuer (from `first` to `last`) that all held the same keys."""

    first: datetime
    last: datetime
    keys: frozenset[str]  # thumbprints


@dataclass(slots=True)
class _History:
    """One issuer's snapshots: every time (sorted, unique) and the runs over them (neighbours differ)."""

    times: list[datetime] = field(default_factory=list)
    runs: list[_Run] = field(default_factory=list)

    def run_at(self, when: datetime) -> int:
        """The index of the run holding the snapshot time `when`."""
        return bisect_right(self.runs, when, key=_run_first) - 1


def _run_first(run: _Run) -> datetime:
    return run.first


def _interval_first(interval: KeyInterval) -> datetime:
    return interval.first_seen


class KeyTimeline:
    """Every key each issuer ever published, answering "which keys at time t" questions.

    Snapshots may arrive in any order; each one updates only what its time touches (see
    the module docstring). `work` counts the runs and key intervals updated: the cost of
    loading, counted rather than timed (tests assert it grows linearly).
    """

    def __init__(self, snapshots: Iterable[JwksSnapshot] = (), *, max_keys_per_kid: int = MAX_KEYS_PER_KID) -> None:
        if max_keys_per_kid < 1:
            raise ValueError("max_keys_per_kid must be at least 1")
        self.max_keys_per_kid = max_keys_per_kid
        self._history: dict[str, _History] = {}
        self._keys: dict[tuple[str, str], TimelineKey] = {}
        self._order: dict[int, int] = {}  # id(key) → arrival number, to tell the newest of equals
        self._by_kid: dict[Any, list[TimelineKey]] = {}
        self._all: list[TimelineKey] = []
        self._kid_cache: dict[str, list[TimelineKey]] = {}  # valid for `version`
        self._loaded: dict[str, tuple[str, str | None, PublicKey, str] | BadJwk] = {}
        self._logged: set[str] = set()
        self.problems: list[str] = []  # each distinct problem once
        self.version = 0
        self.work = 0
        for snapshot in snapshots:
            self.add(snapshot)

    def add(self, snapshot: JwksSnapshot) -> list[str]:
        """Record a snapshot; returns the problems found in it (bad JWKs, skipped)."""
        problems: list[str] = []
        raw_keys = snapshot.jwks.get("keys")
        if not isinstance(raw_keys, list):
            problems.append(f"{snapshot.issuer} at {snapshot.fetched_at.isoformat()}: JWKS has no 'keys' list")
            raw_keys = []
        held: dict[str, TimelineKey] = {}
        for position, jwk in enumerate(raw_keys):
            try:
                kty, crv, public_key, thumbprint = self._load(jwk)
            except BadJwk as exc:
                kid = jwk.get("kid") if isinstance(jwk, dict) else None
                named = f" (kid {kid!r})" if isinstance(kid, str) else ""
                problems.append(f"{snapshot.issuer} key #{position}{named}: {exc}")
                continue
            kid = jwk.get("kid") if isinstance(jwk.get("kid"), str) else None
            known = self._keys.get((snapshot.issuer, thumbprint))
            if known is None:
                known = TimelineKey(snapshot.issuer, kid, thumbprint, kty, crv, public_key)
                self._keys[(snapshot.issuer, thumbprint)] = known
                self._order[id(known)] = len(self._all)
                self._by_kid.setdefault(kid, []).append(known)
                self._all.append(known)
            held[thumbprint] = known
        self._place(snapshot.issuer, snapshot.fetched_at, frozenset(held))
        self.version += 1
        self._kid_cache.clear()
        for problem in problems:
            if problem not in self._logged:
                self._logged.add(problem)
                self.problems.append(problem)
                log.warning("skipped a JWK: %s", problem)
        return problems

    def _load(self, jwk: Any) -> tuple[str, str | None, PublicKey, str]:
        """`load_public_key`, remembered by the JWK's JSON: a heartbeat repeats the same keys."""
        try:
            text = json.dumps(jwk, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError):
            return load_public_key(jwk)
        found = self._loaded.get(text)
        if found is None:
            try:
                found = load_public_key(jwk)
            except BadJwk as exc:
                found = exc
            if len(self._loaded) >= _LOAD_CACHE_SIZE:
                self._loaded.clear()
            self._loaded[text] = found
        if isinstance(found, BadJwk):
            raise BadJwk(str(found))
        return found

    # -- placing one snapshot ----------------------------------------------------------------

    def _place(self, issuer: str, when: datetime, held: frozenset[str]) -> None:
        history = self._history.setdefault(issuer, _History())
        times = history.times
        index = bisect_left(times, when)
        if index < len(times) and times[index] == when:
            run = history.runs[history.run_at(when)]
            if run.keys != held:  # the same moment fetched again with other keys: rare, rebuilt whole
                self._replace(issuer, history, index, held)
            return
        before = times[index - 1] if index > 0 else None
        after = times[index] if index < len(times) else None
        times.insert(index, when)
        keys_before = history.runs[history.run_at(before)].keys if before is not None else frozenset()
        keys_after = history.runs[history.run_at(after)].keys if after is not None else frozenset()
        self._place_run(history, when, held, before, after)
        for thumbprint in keys_before | keys_after | held:
            self._update_intervals(
                self._keys[(issuer, thumbprint)],
                when,
                before,
                after,
                (thumbprint in keys_before, thumbprint in keys_after, thumbprint in held),
            )

    def _place_run(
        self, history: _History, when: datetime, held: frozenset[str], before: datetime | None, after: datetime | None
    ) -> None:
        runs = history.runs
        self.work += 1
        left = history.run_at(before) if before is not None else -1
        right = history.run_at(after) if after is not None else len(runs)
        if left >= 0 and left == right:  # inside a run: split it unless the keys are the same
            run = runs[left]
            if run.keys != held:
                assert before is not None and after is not None
                runs[left : left + 1] = [
                    _Run(run.first, before, run.keys),
                    _Run(when, when, held),
                    _Run(after, run.last, run.keys),
                ]
        elif left >= 0 and runs[left].keys == held:
            runs[left].last = when
        elif right < len(runs) and runs[right].keys == held:
            runs[right].first = when
        else:
            runs.insert(left + 1, _Run(when, when, held))

    def _update_intervals(
        self,
        key: TimelineKey,
        when: datetime,
        before: datetime | None,
        after: datetime | None,
        present: tuple[bool, bool, bool],
    ) -> None:
        """A new snapshot at `when` between the snapshots `before` and `after`: the key's intervals around it.

        `present` says whether the key was in the snapshot before, the one after, and this one.
        """
        in_before, in_after, in_now = present
        spans = key.intervals
        self.work += 1
        if in_before and in_after:
            if not in_now:  # one interval over before..after: split around `when`
                assert before is not None and after is not None
                i = bisect_right(spans, before, key=_interval_first) - 1
                span = spans[i]
                spans[i : i + 1] = [
                    KeyInterval(span.first_seen, before, when),
                    KeyInterval(after, span.last_seen, span.removed_at),
                ]
        elif in_before:  # the interval that ended at `before` now ends at `when` or is removed there
            assert before is not None
            i = bisect_right(spans, before, key=_interval_first) - 1
            span = spans[i]
            spans[i] = (
                KeyInterval(span.first_seen, when, after) if in_now else KeyInterval(span.first_seen, before, when)
            )
        elif in_now:
            if in_after:  # the interval that began at `after` now begins at `when`
                assert after is not None
                i = bisect_right(spans, after, key=_interval_first) - 1
                spans[i] = KeyInterval(when, spans[i].last_seen, spans[i].removed_at)
            else:
                spans.insert(bisect_right(spans, when, key=_interval_first), KeyInterval(when, when, after))

    def _replace(self, issuer: str, history: _History, index: int, held: frozenset[str]) -> None:
        """The snapshot at `times[index]` now holds `held`: split its run, then rebuild the issuer's intervals."""
        times, runs = history.times, history.runs
        when = times[index]
        position = history.run_at(when)
        run = runs[position]
        pieces = []
        if run.first < when:
            pieces.append(_Run(run.first, times[index - 1], run.keys))
        pieces.append(_Run(when, when, held))
        if when < run.last:
            pieces.append(_Run(times[index + 1], run.last, run.keys))
        runs[position : position + 1] = pieces
        merged: list[_Run] = []
        for piece in runs:
            if merged and merged[-1].keys == piece.keys:
                merged[-1].last = piece.last
            else:
                merged.append(piece)
        history.runs = merged
        self._rebuild_intervals(issuer, history)

    def _rebuild_intervals(self, issuer: str, history: _History) -> None:
        open_since: dict[str, tuple[datetime, datetime]] = {}
        intervals: dict[str, list[KeyInterval]] = {}
        for run in history.runs:
            self.work += 1
            for thumbprint in [t for t in open_since if t not in run.keys]:
                first, last = open_since.pop(thumbprint)
                intervals.setdefault(thumbprint, []).append(KeyInterval(first, last, run.first))
            for thumbprint in run.keys:
                first, _ = open_since.get(thumbprint, (run.first, run.first))
                open_since[thumbprint] = (first, run.last)
        for thumbprint, (first, last) in open_since.items():
            intervals.setdefault(thumbprint, []).append(KeyInterval(first, last, None))
        for (owner, thumbprint), key in self._keys.items():
            if owner == issuer:
                key.intervals = intervals.get(thumbprint, [])

    # -- questions -------------------------------------------------------------------------

    @property
    def issuers(self) -> list[str]:
        return sorted(self._history)

    def earliest_snapshot(self, issuer: str) -> datetime | None:
        history = self._history.get(issuer)
        return history.times[0] if history and history.times else None

    def latest_snapshot(self, issuer: str) -> datetime | None:
        history = self._history.get(issuer)
        return history.times[-1] if history and history.times else None

    def snapshot_count(self, issuer: str) -> int:
        history = self._history.get(issuer)
        return len(history.times) if history else 0

    def run_count(self, issuer: str) -> int:
        """How many distinct stretches of the same key set the issuer's history holds (what is stored)."""
        history = self._history.get(issuer)
        return len(history.runs) if history else 0

    def all_keys(self, issuer: str | None = None) -> list[TimelineKey]:
        return [k for k in self._all if k.intervals and (issuer is None or k.issuer == issuer)]

    def keys_with_kid(self, kid: Any) -> list[TimelineKey]:
        """The keys a token naming `kid` is tried against: per issuer, the newest `max_keys_per_kid`."""
        if not isinstance(kid, str):
            return []
        cached = self._kid_cache.get(kid)
        if cached is not None:
            return list(cached)
        keys = [k for k in self._by_kid.get(kid, ()) if k.intervals]
        per_issuer: dict[str, list[TimelineKey]] = {}
        for key in keys:
            per_issuer.setdefault(key.issuer, []).append(key)
        dropped: set[int] = set()
        for issuer, group in per_issuer.items():
            if len(group) > self.max_keys_per_kid:
                newest = sorted(group, key=self._recency, reverse=True)
                dropped.update(id(k) for k in newest[self.max_keys_per_kid :])
                self._log_once(
                    f"{issuer} published {len(group)} keys under kid {kid!r}: only the newest "
                    f"{self.max_keys_per_kid} are tried",
                    key=f"kid-cap {issuer} {kid}",
                )
        chosen = [k for k in keys if id(k) not in dropped] if dropped else keys
        if keys:  # only kids that name a key: made-up kids cannot grow the cache
            self._kid_cache[kid] = chosen
        return list(chosen)

    def _recency(self, key: TimelineKey) -> tuple[datetime, datetime, int]:
        return key.last_seen, key.intervals[-1].first_seen, self._order[id(key)]

    def _log_once(self, message: str, key: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning("%s", message)

    def published(self, issuer: str, when: datetime) -> list[TimelineKey]:
        """Which keys `issuer` published at `when`."""
        return [k for k in self.all_keys(issuer) if k.published_at(when)]

    def first_seen(self, kid: str, issuer: str | None = None) -> datetime | None:
        """When `kid` first appeared (at `issuer`, or anywhere)."""
        times = [
            k.first_seen for k in self._by_kid.get(kid, ()) if k.intervals and (issuer is None or k.issuer == issuer)
        ]
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
