"""Judgement reuse for repeated tokens: what no time of the event can change is judged once per token and service.

In an outage most events repeat a token (each user retries it until it expires). DESIGN.md
allows a verdict to be reused only for an event whose `ts` and `service_jwks_fetched_at`
fall in the same interval of every time-dependent input, and a reused verdict must be the
one a fresh judgement gives. A whole verdict cannot be: its `skew_seconds` and its
sentence (how long ago the token expired, how old the key is, the event's time) change with
every second of `ts`, so two retries a second apart never share a verdict byte for byte.

So the reuse is split where time enters. Steps 2 to 5 (alg policy, key and signature,
`iss`, `aud`/`azp`) and the attack labels are a function of the token, the service and the
key timeline alone (`Classifier.judge_static`): that part is cached here, keyed by
(fingerprint, service) and valid for one timeline version (any snapshot clears it, since
it can bring or remove the key a kid names). Steps 6 to 8 (times, required claims, key
timing) and the verdict itself run for every event (`Classifier.judge_at`), the same code
a fresh judgement runs, unless the event's time falls in a span over which `spans` has
proven none of the verdict's text can change (it then takes the whole verdict from there).
Events without a token are never reused (their reported message is judged at their time too).

Bounded in entries and bytes (`pipeline.bounded`); `classify.reuse_judgements = false` (or
`JWTRIAGE_CLASSIFY__REUSE_JUDGEMENTS=false`) turns it off, which is how the benchmark and
the property tests compare the two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.bounded import BoundedCache

if TYPE_CHECKING:
    from pipeline.engine.checks import Findings, ServicePolicy
    from pipeline.engine.classify import Classifier, StaticJudgement
    from pipeline.engine.tokens import ParsedToken

#: Distinct (token, service) pairs kept. The classifier passes its parse cache's capacity (5,000): a
#: judgement is found through the token's parse, so one whose parse was forgotten would not be reused.
REUSE_CACHE_SIZE = 5_000
#: And their bytes: a fingerprint, a service name and a few evidence sentences each (~0.5 KB): ~2.5 MB when full.
REUSE_CACHE_MAX_BYTES = 16 * 1024 * 1024
_ENTRY_OVERHEAD = 400  # measured (tracemalloc): ~500 B an entry in all, with its key and evidence


def _entry_bytes(key: tuple[str, str], static: StaticJudgement) -> int:
    return _ENTRY_OVERHEAD + len(key[0]) + len(key[1]) + sum(len(f.evidence) + 60 for f in static.findings)


class JudgementReuse:
    """The static part of each (token, service) judgement, for the key timeline's current version."""

    def __init__(
        self, classifier: Classifier, capacity: int = REUSE_CACHE_SIZE, max_bytes: int = REUSE_CACHE_MAX_BYTES
    ) -> None:
        self._classifier = classifier
        self.cache: BoundedCache[tuple[str, str], StaticJudgement] = BoundedCache(capacity, max_bytes, _entry_bytes)
        self._version = classifier.timeline.version
        self.hits = 0
        self.misses = 0

    def _current(self) -> None:
        """Forget everything judged against an older timeline: a snapshot can change the keys a kid names."""
        version = self._classifier.timeline.version
        if version != self._version:
            self.cache.clear()
            self.cache.bytes = 0
            self._version = version

    def current(self) -> BoundedCache[tuple[str, str], StaticJudgement]:
        """The cache, keyed by (fingerprint, service), as of the timeline's current version (to test many pairs)."""
        self._current()
        return self.cache

    def cached(self, token: ParsedToken, policy: ServicePolicy) -> StaticJudgement | None:
        """Steps 2 to 5 of `token` for `policy`'s service as judged before (a hit), or None (`judged` then)."""
        if self._classifier.timeline.version != self._version:
            self._current()
        cached = self.cache.get((token.fingerprint, policy.service.name))
        if cached is not None:
            self.hits += 1
        return cached

    def judged(self, token: ParsedToken, policy: ServicePolicy, findings: Findings) -> StaticJudgement:
        """Steps 2 to 5 judged afresh (a miss) into the (empty) `findings`, and kept."""
        self.misses += 1
        static = self._classifier.judge_static(token, policy, findings)
        self.cache.put((token.fingerprint, policy.service.name), static)
        return static
