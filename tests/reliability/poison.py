"""Poison input, built deterministically: bad records by family, and good records with hostile tokens.

A *bad record* fails its wire model: it must become exactly one dead letter whose reason
names what is wrong (`reason` is a regex the stored reason must match). A *hostile-token
record* is a valid AuthFailureEvent whose token is as bad as can be: it must be a row with
the cause DESIGN.md gives it, never a dead letter.

Hand-made families × variants come from `random.Random(seed)`; the rest are drawn by
hypothesis (`st.binary()`, `st.recursive` JSON) with `derandomize=True`, classified by an
independent oracle (Python's own json module), so the expected reason never comes from the
code under test.
"""

from __future__ import annotations

import base64
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipeline.engine.tokens import MAX_TOKEN_BYTES
from pipeline.records import DEFAULT_MAX_RECORD_BYTES

LIMIT = DEFAULT_MAX_RECORD_BYTES
TEN_MB = 10 * 1024 * 1024


@dataclass(frozen=True)
class Bad:
    """A record that fails its wire model."""

    family: str
    kind: str  # "event", "sample" or "snapshot": the topic it goes to
    value: bytes
    reason: str  # regex the dead letter's reason must match


@dataclass(frozen=True)
class Hostile:
    """A valid event whose token (inline, or joined from a sample) is hostile."""

    family: str
    event: dict[str, Any]
    cause: str
    sample: str | None = None  # the token, when it travels on the samples topic
    confidence: str = "verified"


# -- helpers -------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: str | bytes, payload: str | bytes, signature: bytes = b"sig") -> str:
    """A compact token from raw header and payload JSON text (anything goes)."""
    h = header.encode() if isinstance(header, str) else header
    p = payload.encode() if isinstance(payload, str) else payload
    return f"{b64(h)}.{b64(p)}.{b64(signature)}"


def _oracle(value: bytes) -> str:
    """The reason family a record should get, decided with Python's json module, not the code under test."""
    if len(value) > LIMIT:
        return r"^record is [\d,]+ bytes, over the 1,048,576-byte limit$"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return r"^not UTF-8 \(byte \d+\)$"
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return r"^not JSON: "
    if not isinstance(doc, dict):
        return r"^Input should be an object"
    if "event_id" not in doc:
        return r"^event_id: Field required"
    return r"^event_id: "  # present but not a string (the only kind the generators make)


def hypothesis_examples(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """`count` values drawn by hypothesis, the same on every run (derandomized, no database)."""
    drawn: list[Any] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)


# -- the generator -------------------------------------------------------------------------------


class PoisonFactory:
    """Builds the poison for one scenario config (its service names, its time window)."""

    def __init__(self, services: list[str], ts: str, seed: int = 2024) -> None:
        self.services = services
        self.ts = ts
        self.rng = random.Random(seed)
        self.n = 0

    def event(self, **fields: Any) -> dict[str, Any]:
        self.n += 1
        doc: dict[str, Any] = {
            "event_id": f"poison-{self.n}",
            "ts": self.ts,
            "service": self.rng.choice(self.services),
            "reported_error": "Jwt is expired",
            "request_id": f"req-{self.n}",
        }
        doc.update(fields)
        return {k: v for k, v in doc.items() if v is not _DROP}

    def dumps(self, doc: Any) -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode()

    # -- bad records ---------------------------------------------------------------------------

    def bad_records(self) -> list[Bad]:
        families: list[tuple[int, Callable[[], Bad]]] = [
            (1500, self._not_utf8),
            (1500, self._not_json),
            (400, self._deep),
            (150, self._bomb),
            (2000, self._wrong_type),
            (1000, self._missing),
            (500, self._not_object),
            (1000, self._naive_time),
            (1000, self._unknown_service),
            (400, self._bad_sample),
            (150, self._bad_snapshot),
        ]
        bad = [make() for count, make in families for _ in range(count)]
        bad += self._oversized()
        bad += [Bad("hypothesis-bytes", "event", v, _oracle(v)) for v in self._hypothesis_bytes()]
        bad += [Bad("hypothesis-json", "event", v, _oracle(v)) for v in self._hypothesis_json()]
        return bad

    def _not_utf8(self) -> Bad:
        value = self.dumps(self.event(client_id="kiosk"))
        junk = self.rng.choice(
            [b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80", b"\xf4\x90\x80\x80",
             b"caf\xe9", b"\xe2\x82"]
        )
        at = self.rng.randrange(len(value) + 1)
        return Bad("not-utf8", "event", value[:at] + junk + value[at:], r"^not UTF-8 \(byte \d+\)$")

    def _not_json(self) -> Bad:
        good = self.dumps(self.event(token=raw_token('{"alg":"RS256"}', '{"sub":"x"}')))
        variant = self.rng.randrange(8)
        if variant == 0:
            value = good[: self.rng.randrange(len(good))]  # cut by a producer
        elif variant == 1:
            value = good + b" trailing"
        elif variant == 2:
            value = good + good
        elif variant == 3:
            value = good.replace(b'"', b"'")
        elif variant == 4:
            value = good[:-1] + b",}"
        elif variant == 5:
            value = b"2026-11-23T01:00:00Z WARN upstream connect error or disconnect/reset before headers"
        elif variant == 6:
            value = good.replace(b'"request_id"', b'"request_id\x01"')  # a raw control character
        else:
            value = b"/* note */" + good
        return Bad("not-json", "event", value, r"^not JSON: ")

    def _deep(self) -> Bad:
        """Nesting far past Python's recursion limit (1000), and past the JSON parser's own."""
        self.deep_count = getattr(self, "deep_count", 0) + 1
        depth = 100_000 if self.deep_count % 100 == 0 else self.rng.choice([300, 1_001, 2_000, 5_000, 20_000])
        shape = self.rng.randrange(3)
        if shape == 0:
            value = b"[" * depth + b"]" * depth
        elif shape == 1:
            value = b'{"a":' * depth + b"1" + b"}" * depth
        else:  # a valid event carrying the nesting in a field it would ignore
            inner = b"[" * depth + b"]" * depth
            value = self.dumps(self.event())[:-1] + b',"extra":' + inner + b"}"
        return Bad("deep-nesting", "event", value, r"^not JSON: .*(recursion limit|nested deeper)")

    def _bomb(self) -> Bad:
        variant = self.rng.randrange(4)
        if variant == 0:  # a huge number
            value = b'{"event_id":' + b"9" * self.rng.randrange(5_000, 20_000) + b"}"
            reason = r"^not JSON: .*number out of range"
        elif variant == 1:  # a wide object of many keys, no event_id
            keys = self.rng.randrange(1_000, 5_000)
            value = b"{" + b",".join(b'"k%d":[0,{},""]' % k for k in range(keys)) + b"}"
            reason = r"^event_id: Field required"
        elif variant == 2:  # a long array where a string belongs
            value = self.dumps(self.event(event_id=[0] * self.rng.randrange(1_000, 20_000)))
            reason = r"^event_id: Input should be a valid string"
        else:  # a string of escapes where a datetime belongs
            value = self.dumps(self.event(ts="\u0000" * self.rng.randrange(1_000, 5_000)))
            reason = r"^ts: "
        return Bad("json-bomb", "event", value, reason)

    def _wrong_type(self) -> Bad:
        field, value = self.rng.choice(
            [
                ("event_id", 12345), ("event_id", 1.5), ("event_id", True), ("event_id", None), ("event_id", ["a"]),
                ("event_id", {"id": "a"}), ("event_id", ""),
                ("ts", True), ("ts", ["2026-11-23T01:00:00Z"]), ("ts", "not a time"), ("ts", "2026-13-45T00:00:00Z"),
                ("ts", ""), ("ts", None), ("ts", {"at": 1}),
                ("service", 7), ("service", None), ("service", ["payments-api"]), ("service", ""),
                ("token", 5), ("token", ["a.b.c"]), ("token", {"jwt": "a.b.c"}), ("token", False),
                ("token_sha256", "xyz"), ("token_sha256", "a" * 63), ("token_sha256", "a" * 65),
                ("token_sha256", 123), ("token_sha256", "g" * 64),
                ("reported_error", 401), ("reported_error", {"error": "x"}), ("reported_error", ["x"]),
                ("service_jwks_fetched_at", "yesterday"), ("service_jwks_fetched_at", True),
                ("client_id", 42), ("client_id", ["web-app"]), ("request_id", {"id": 1}),
            ]
        )
        return Bad("wrong-type", "event", self.dumps(self.event(**{field: value})), rf"^{field}: ")

    def _missing(self) -> Bad:
        field = self.rng.choice(["event_id", "ts", "service"])
        return Bad("missing-field", "event", self.dumps(self.event(**{field: _DROP})), rf"^{field}: Field required")

    def _not_object(self) -> Bad:
        value = self.rng.choice(
            [[], [self.event()], "event", 42, 4.2, None, True, False, [[], {}], "2026-11-23T01:00:00Z"]
        )
        return Bad("not-an-object", "event", self.dumps(value), r"^Input should be an object")

    def _naive_time(self) -> Bad:
        field = self.rng.choice(["ts", "service_jwks_fetched_at"])
        naive = self.rng.choice(
            ["2026-11-23T01:00:00", "2026-11-23T01:00:00.123", "2026-11-23", "2026-11-23T01:00:00.123456"]
        )
        value = self.dumps(self.event(**{field: naive}))
        return Bad("naive-time", "event", value, rf"^{field}: a time needs a UTC offset")

    def _unknown_service(self) -> Bad:
        known = self.rng.choice(self.services)
        name = self.rng.choice(
            ["nobody", known.upper(), known + " ", " " + known, known + "\u0000", known + "\u200b",
             "x" * 5000, known + "-v2", "*", "../" + known]
        )
        value = self.dumps(self.event(service=name))
        return Bad("unknown-service", "event", value, r"^service .* is not in the config")

    def _bad_sample(self) -> Bad:
        field, value, reason = self.rng.choice(
            [
                ("token", _DROP, r"^token: Field required"),
                ("token", "", r"^token: String should have at least 1 character"),
                ("token", 12, r"^token: Input should be a valid string"),
                ("token", None, r"^token: Input should be a valid string"),
                ("sampled_at", "2026-11-23T01:00:00", r"^sampled_at: a time needs a UTC offset"),
            ]
        )
        doc = {"token": raw_token('{"alg":"RS256"}', "{}"), "sampled_at": self.ts, field: value}
        doc = {k: v for k, v in doc.items() if v is not _DROP}
        if self.rng.random() < 0.2:
            return Bad("bad-sample", "sample", b"\xff" + self.dumps(doc), r"^not UTF-8")
        return Bad("bad-sample", "sample", self.dumps(doc), reason)

    def _bad_snapshot(self) -> Bad:
        field, value, reason = self.rng.choice(
            [
                ("fetched_at", _DROP, r"^fetched_at: Field required"),
                ("fetched_at", "2026-11-23T01:00:00", r"^fetched_at: a time needs a UTC offset"),
                ("jwks", [], r"^jwks: Input should be an object"),
                ("jwks", "keys", r"^jwks: Input should be an object"),
                ("issuer", "", r"^issuer: String should have at least 1 character"),
                ("issuer", 5, r"^issuer: Input should be a valid string"),
            ]
        )
        doc = {"issuer": "https://login.acme.test", "fetched_at": self.ts, "jwks": {"keys": []}, field: value}
        doc = {k: v for k, v in doc.items() if v is not _DROP}
        return Bad("bad-snapshot", "snapshot", self.dumps(doc), reason)

    def _oversized(self) -> list[Bad]:
        """Two 10 MB values (a valid event, and bytes that are not UTF-8), deep nesting and a few just over the limit.

        Each is bigger than the consumer's max_partition_fetch_bytes (2 MiB): it must still be fetched.
        """
        over = r"^record is [\d,]+ bytes, over the 1,048,576-byte limit$"
        big_event = self.dumps(self.event(reported_error="x" * TEN_MB))
        out = [
            Bad("oversized", "event", big_event, over),
            Bad("oversized", "event", b"\xff" * TEN_MB, over),
            Bad("oversized", "event", b"[" * 600_000 + b"]" * 600_000, over),
        ]
        for extra in (1, 2, 1000, 50_000):
            doc = self.dumps(self.event(pad=""))
            out.append(Bad("oversized", "event", self._pad_to(doc, LIMIT + extra), over))
        return out

    @staticmethod
    def _pad_to(doc: bytes, size: int) -> bytes:
        assert doc.endswith(b'"pad":""}')
        return doc[:-2] + b"p" * (size - len(doc)) + b'"}'

    def at_the_limit(self) -> tuple[dict[str, Any], bytes]:
        """A valid event of exactly the byte limit: it must be a row, not a dead letter."""
        doc = self.event(pad="")
        return doc, self._pad_to(self.dumps(doc), LIMIT)

    def _hypothesis_bytes(self) -> list[bytes]:
        # Lists of values per example: hypothesis's cost is per example, and 1,200 examples take seconds.
        drawn = hypothesis_examples(st.lists(st.binary(max_size=400), min_size=20, max_size=20), 60)
        return [v for values in drawn for v in values]

    def _hypothesis_json(self) -> list[bytes]:
        """Arbitrary JSON documents, and events whose event_id is an arbitrary non-string JSON value."""
        drawn = hypothesis_examples(st.lists(_JSON, min_size=20, max_size=20), 25)
        values = [v for group in drawn for v in group]
        out = [self.dumps(v) for v in values[:300] if not (isinstance(v, dict) and isinstance(v.get("event_id"), str))]
        out += [self.dumps(self.event(event_id=v)) for v in values[300:] if not isinstance(v, str)]
        return out

    # -- hostile tokens ------------------------------------------------------------------------

    def hostile(self, valid_header: dict[str, Any], claims: dict[str, Any], service: str) -> list[Hostile]:
        """Valid events of `service` whose tokens are hostile; header and claims come from a real token for it."""
        header = json.dumps(valid_header)
        payload = json.dumps(claims)
        kid = valid_header.get("kid", "k")
        cases: list[tuple[str, str, str]] = [
            # five segments without `enc` in the header are no JWE: malformed (DESIGN.md step 1)
            ("jwe-5-parts-no-enc", "eyJhbGciOiJSU0EtT0FFUCJ9.a2V5.aXY.Y2lwaGVy.dGFn", "malformed"),
            ("jwe-5-parts", "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a2V5.aXY.Y2lwaGVy.dGFn", "unverifiable"),
            ("jwe-5-empty-parts", "....", "malformed"),
            ("10000-segments", ".".join(["eyJ"] * 10_000), "malformed"),
            ("10000-empty-segments", "." * 9_999, "malformed"),
            ("4-segments", raw_token(header, payload) + ".x", "malformed"),
            ("2-segments", raw_token(header, payload).rsplit(".", 1)[0], "malformed"),
            ("1-segment", "not-a-token", "malformed"),
            ("empty-token", "", "malformed"),
            ("non-ascii-token", "é.é.é", "malformed"),
            ("bad-base64", raw_token(header, payload) + "!", "malformed"),
            ("padded-base64", raw_token(header, payload) + "==", "malformed"),
            ("header-not-json", raw_token("{alg:RS256}", payload), "malformed"),
            ("header-array", raw_token("[1,2]", payload), "malformed"),
            ("payload-array", raw_token(header, "[]"), "malformed"),
            ("payload-not-utf8", raw_token(header.encode(), b'{"sub":"\xff"}'), "malformed"),
            ("alg-number", raw_token(json.dumps({**valid_header, "alg": 256}), payload), "malformed"),
            ("alg-null", raw_token(json.dumps({**valid_header, "alg": None}), payload), "malformed"),
            ("alg-list", raw_token(json.dumps({**valid_header, "alg": ["RS256"]}), payload), "malformed"),
            ("alg-object", raw_token(json.dumps({**valid_header, "alg": {"name": "RS256"}}), payload), "malformed"),
            ("alg-missing", raw_token(json.dumps({"kid": kid}), payload), "malformed"),
            ("exp-string", raw_token(header, json.dumps({**claims, "exp": "tomorrow"})), "malformed"),
            ("exp-numeric-string", raw_token(header, json.dumps({**claims, "exp": str(claims.get("exp", 1))})),
             "malformed"),
            ("nbf-string", raw_token(header, json.dumps({**claims, "nbf": "2026-11-23T00:00:00Z"})), "malformed"),
            ("iat-bool", raw_token(header, json.dumps({**claims, "iat": True})), "malformed"),
            ("exp-null", raw_token(header, json.dumps({**claims, "exp": None})), "malformed"),
            ("exp-nan", raw_token(header, payload[:-1] + ', "exp": NaN}'), "malformed"),
            ("header-deeper-than-recursion-limit", raw_token("[" * 5_000 + "]" * 5_000, payload), "malformed"),
            ("payload-deeper-than-recursion-limit", raw_token(header, '{"a":' + "[" * 5_000 + "]" * 5_000 + "}"),
             "malformed"),
            ("huge-kid-over-token-limit",
             raw_token(json.dumps({**valid_header, "kid": "k" * MAX_TOKEN_BYTES}), payload), "malformed"),
            ("huge-kid", raw_token(json.dumps({**valid_header, "kid": "k" * 100_000}), payload), "unknown_kid"),
            ("kid-object", raw_token(json.dumps({**valid_header, "kid": {"$ne": None}}), payload), "unknown_kid"),
            ("lone-surrogate-in-kid", raw_token(header[:-1] + ', "kid": "\\ud800"}', payload), "malformed"),
            ("lone-surrogate-in-header", raw_token(header[:-1] + ', "x": "\\udfff"}', payload), "malformed"),
            ("lone-surrogate-in-claim", raw_token(header, payload[:-1] + ', "aud": "\\ud800"}'), "malformed"),
            ("lone-surrogate-in-alg", raw_token('{"alg": "\\ud800"}', payload), "malformed"),
        ]
        out: list[Hostile] = []
        for family, token, cause in cases:
            for repeat in range(4):
                # An empty token is not a valid sample; one over the token limit is a dead letter as a
                # sample (`nested` has that case), so it travels inline only.
                if repeat % 2 == 0 or not token or len(token) > MAX_TOKEN_BYTES:
                    out.append(Hostile(family, self.event(token=token, service=service), cause))
                else:  # the same token through the samples topic, joined by fingerprint
                    fp = _sha256(token)
                    out.append(
                        Hostile(family + "/sampled", self.event(token_sha256=fp, service=service), cause, sample=token)
                    )
        for ts in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "2026-11-23T01:00:00.123456789Z"):
            out.append(Hostile("extreme-ts", self.event(ts=ts, reported_error=None), "unverifiable", None, "reported"))
        return out


    # -- nesting in the band every reader accepts and some writer refuses (issue 17) ----------

    #: 65 is the first depth refused; 254-1023 parsed with orjson and then failed `orjson.dumps`.
    DEPTHS = (65, 200, 253, 254, 255, 300, 512, 1000, 1022, 1023, 1024, 1025, 2_000, 20_000)

    def nested(
        self, valid_header: dict[str, Any], claims: dict[str, Any], service: str
    ) -> tuple[list[Bad], list[Hostile]]:
        """Nesting at every depth in header, payload, claims, event fields, samples and snapshots; huge tokens.

        A token nested too deep is `malformed` (inline and sampled alike); a record nested too
        deep is a dead letter saying so; a token of 1 MB is `malformed`, a sample of 1 MB a dead
        letter; a header of 100,000 keys makes its record too long (a dead letter), one of
        10,000 keys is a token like any other (its kid is the real one: judged, `bad_signature`).
        """
        header = json.dumps(valid_header)
        payload = json.dumps(claims)
        bad: list[Bad] = []
        hostile: list[Hostile] = []
        nested_too_deep = r"^not JSON: .*(recursion limit|nested deeper)"

        def deep(depth: int) -> str:  # `depth` levels of arrays, alone
            return "[" * depth + "]" * depth

        for depth in self.DEPTHS:
            inner = deep(depth - 1)  # inside an object: `depth` levels in all
            tokens = {
                "nested-header": raw_token(header[:-1] + f', "x": {inner}}}', payload),
                "nested-payload": raw_token(header, payload[:-1] + f', "x": {inner}}}'),
                "nested-claim-sub": raw_token(header, json.dumps({**claims, "sub": "@"})
                                              .replace('"@"', deep(depth - 1))),
                "nested-claim-aud": raw_token(header, json.dumps({**claims, "aud": "@"})
                                              .replace('"@"', '{"a":' * (depth - 1) + "1" + "}" * (depth - 1))),
                "nested-header-kid": raw_token(header.replace(f'"{valid_header.get("kid")}"', deep(depth - 1)),
                                               payload),
            }
            for family, token in tokens.items():
                hostile.append(Hostile(f"{family}-{depth}", self.event(token=token, service=service), "malformed"))
                hostile.append(Hostile(f"{family}-{depth}/sampled", self.event(token_sha256=_sha256(token),
                                       service=service), "malformed", sample=token))
            event = self.dumps(self.event(service=service))
            bad.append(Bad(f"nested-event-field-{depth}", "event", event[:-1] + b',"extra":' + inner.encode() + b"}",
                           nested_too_deep))
            bad.append(Bad(f"nested-event-field-{depth}", "event",
                           event[:-1] + b',"client_id":' + inner.encode() + b"}", nested_too_deep))
            sample = self.dumps({"token": raw_token(header, payload), "sampled_at": self.ts})
            bad.append(Bad(f"nested-sample-{depth}", "sample", sample[:-1] + b',"x":' + inner.encode() + b"}",
                           nested_too_deep))
            snapshot = self.dumps({"issuer": "https://login.acme.test", "fetched_at": self.ts,
                                   "jwks": {"keys": [{"kty": "oct", "k": "@"}]}}).replace(b'"@"', inner.encode())
            bad.append(Bad(f"nested-snapshot-{depth}", "snapshot", snapshot, nested_too_deep))
        megabyte = raw_token(header, payload[:-1] + ', "pad": "' + "p" * 745_000 + '"}')
        assert 990_000 < len(megabyte) < LIMIT - 1_000
        hostile.append(Hostile("1mb-token", self.event(token=megabyte, service=service), "malformed"))
        bad.append(Bad("1mb-sample", "sample", self.dumps({"token": megabyte}),
                       r"^token: the sampled token is [\d,]+ bytes, over the 262,144-byte token limit$"))
        wide = {**valid_header, **{f"k{i}": 0 for i in range(100_000)}}
        bad.append(Bad("100k-key-header", "event", self.dumps(self.event(token=raw_token(json.dumps(wide), payload),
                                                                         service=service)),
                       r"^record is [\d,]+ bytes, over the 1,048,576-byte limit$"))
        wide = {**valid_header, **{f"k{i}": 0 for i in range(10_000)}}
        hostile.append(Hostile("10k-key-header", self.event(token=raw_token(json.dumps(wide), payload),
                                                           service=service), "bad_signature"))
        return bad, hostile


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


_DROP: Any = _Drop()


def _sha256(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def matches(pattern: str, reason: str) -> bool:
    return re.search(pattern, reason, re.DOTALL) is not None
