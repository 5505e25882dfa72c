"""Split and decode a compact token without trusting it; fingerprint it; redact it.

Nothing here verifies anything: the header and claims are just data to be judged later.
Every way a string can fail to be a compact JWS becomes a `MalformedToken` with a reason,
never an exception that escapes (arbitrary input must not crash the stream).
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.engine.identifiers import IdentifierHasher, stored_claims
from pipeline.errors import JwtriageError
from pipeline.limits import MAX_JSON_DEPTH, nesting_exceeds
from pipeline.limits import MAX_TOKEN_BYTES as MAX_TOKEN_BYTES  # re-exported: the token limit is read here

#: Claims judged as times; each must be a JSON number when present.
TIME_CLAIMS = ("exp", "nbf", "iat")
#: The base64url alphabet (RFC 4648 §5), and its mapping onto the standard one binascii decodes.
_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_URL_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
#: Distinct header segments whose decoding is kept (an issuer signs every token under a handful
#: of headers), the longest segment kept (real headers are under 200 bytes), and the bytes
#: the cache may hold in all (segments, decoded headers and their JSON, as `_header_bytes` counts).
HEADER_CACHE_SIZE = 1_024
HEADER_CACHE_MAX_BYTES = 2_048
HEADER_CACHE_BUDGET = 4 * 1024 * 1024


class MalformedToken(JwtriageError, ValueError):
    """The input is not a compact JWS; `reason` says which part failed."""

    def __init__(self, reason: str, header: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.header = header


class EncryptedToken(MalformedToken):
    """A JWE: five segments whose header has `enc` (RFC 7516 §9); encrypted, so nothing in it can be judged."""


@dataclass(slots=True)
class ParsedToken:
    """A compact JWS split into its parts, decoded but not trusted; read-only by convention.

    Not `frozen`: a frozen dataclass sets each field through `object.__setattr__`, about
    2 µs per instance, and every event with a token makes one.
    """

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes
    fingerprint: str
    stored_claims: dict[str, Any]  # the claims as the store keeps them: personal claims keyed-hashed
    alg: str  # the header's alg, a string (`parse` checks): read several times per token
    header_json: str  # the header and the stored claims as JSON text, as the store writes them
    claims_json: str
    # (latest of nbf/iat, exp) as `checks.time_bounds` reads them; None until the first event needs them
    time_bounds: tuple[float, float] | tuple[()] | None = None

    @property
    def kid(self) -> Any:
        return self.header.get("kid")


def fingerprint(token: str) -> str:
    """Hex SHA-256 of the compact token's bytes: the join key and the stored identity."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def b64url_decode(segment: bytes) -> bytes:
    """Strict base64url without padding (RFC 7515 §2); raises `MalformedToken`.

    Two C passes rather than a regex and `base64`'s wrappers (about 3 µs less per token):
    deleting every alphabet byte must leave nothing (no `=`, `+`, `/`, whitespace), then
    binascii decodes the standard-alphabet form with its padding restored.
    """
    if segment.translate(None, _B64URL_ALPHABET) or len(segment) % 4 == 1:
        raise MalformedToken("a segment is not base64url")
    try:
        return binascii.a2b_base64(segment.translate(_URL_TO_STANDARD) + b"=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise MalformedToken("a segment is not base64url") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: One decoder for every token: strict JSON (NaN and Infinity are not numbers in a JWT).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _decode_json(text: str) -> Any:
    """`_DECODER.decode(text)`, minus its two whitespace regexes when there is no whitespace to skip.

    A JWT's JSON never starts or ends with whitespace, so `raw_decode` alone usually reads it
    all (about 1.3 µs less per part); anything else takes the full `decode`, which accepts
    or rejects it exactly as before.
    """
    if text and text[0] not in " \t\n\r":
        value, end = _DECODER.raw_decode(text)
        if end == len(text):
            return value
    return _DECODER.decode(text)


def _json_object(raw: bytes, part: str) -> tuple[dict[str, Any], bool]:
    """The JSON object `raw` holds, and whether orjson read it (then `to_json` may use orjson too).

    orjson is about 4x quicker than `json` here and accepts a subset of what it does (no NaN,
    no unpaired surrogate, no number that overflows a double), with equal values, except that
    it turns an integer beyond 64 bits into a float: a run of 19 or more digits, or anything
    orjson refuses, takes the `json` path, which decides exactly as before. Nesting is checked
    first, on the bytes, for both paths alike (`pipeline.limits`): what is read here can
    always be written back by `to_json`.
    """
    if nesting_exceeds(raw):
        raise MalformedToken(f"the {part} is nested deeper than {MAX_JSON_DEPTH} levels")
    if _LONG_NUMBER not in raw.translate(_DIGITS_TO_ZERO):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            if not isinstance(value, dict):
                raise MalformedToken(f"the {part} is not a JSON object")
            return value, True
    try:
        value = _decode_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedToken(f"the {part} is not JSON") from None
    if not isinstance(value, dict):
        raise MalformedToken(f"the {part} is not a JSON object")
    if b"\\u" in raw and _has_lone_surrogate(value):
        # JOSE JSON is UTF-8 (RFC 7515 §5.2); an unpaired \ud800 escape decodes to no character,
        # and neither the store's JSON columns nor any output can hold it.
        raise MalformedToken(f"the {part} is not JSON (an unpaired UTF-16 surrogate escape)")
    return value, False


#: Every ASCII digit as "0", any other byte as " ": an integer orjson might read as a float
#: (beyond 64 bits) has 19 digits or more. Two C passes, four times quicker than a regex search.
_DIGITS_TO_ZERO = bytes(b"0"[0] if i in b"0123456789" else b" "[0] for i in range(256))
_LONG_NUMBER = b"0" * 19


def to_json(value: Any, by_orjson: bool) -> str:
    """`value` as JSON text, keys sorted; with orjson only for what orjson decoded (so no inf, no big int).

    Total for decoded token JSON: what fails to encode (it cannot, after the depth check in
    `_json_object`) is a `MalformedToken`, never another exception.
    """
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode() if by_orjson else _encode_sorted(value)
    except (TypeError, ValueError, RecursionError):
        raise MalformedToken("the token's JSON cannot be written back (too deep, or not JSON)") from None
    return redact_tokens(text)  # a claim (or header member) that is itself a token is a credential


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError, RecursionError):
        return True
    return False


def is_number(value: Any) -> bool:
    # A tuple, not `int | float`: the union would be built anew on every call.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def segment_count(token: str) -> int:
    return token.count(".") + 1


def parse(token: str, hasher: IdentifierHasher | None = None) -> ParsedToken:
    """Split and decode; raises `MalformedToken` (with the header, when it decoded).

    `hasher` makes `stored_claims` (see `identifiers`): without one, personal claims are redacted.
    """
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedToken("the token is not ASCII") from None
    if len(raw) > MAX_TOKEN_BYTES:
        raise MalformedToken(f"the token is longer than {MAX_TOKEN_BYTES} bytes")
    parts = raw.split(b".")
    if len(parts) != 3:
        if len(parts) == 5:
            _five_segments(parts[0])
        raise MalformedToken(f"a compact JWS has 3 segments, this has {len(parts)}")
    header_b64, payload_b64, signature_b64 = parts
    header, alg, header_json = _header(header_b64)
    try:
        claims, by_orjson = _json_object(b64url_decode(payload_b64), "payload")
        signature = b64url_decode(signature_b64)
    except MalformedToken as exc:
        raise MalformedToken(exc.reason, header) from None
    for claim in TIME_CLAIMS:
        if claim in claims and not is_number(claims[claim]):
            raise MalformedToken(f"the {claim} claim is not a number", header)
    stored = stored_claims(claims, hasher)
    return ParsedToken(
        header=header,
        claims=claims,
        signing_input=header_b64 + b"." + payload_b64,
        signature=signature,
        fingerprint=hashlib.sha256(raw).hexdigest(),
        stored_claims=stored,
        alg=alg,
        header_json=header_json,
        claims_json=to_json(stored, by_orjson),
    )


def _five_segments(header_b64: bytes) -> None:
    """A five-segment token: an `EncryptedToken` when its header has `enc` (a JWE), else malformed."""
    try:
        header, _ = _json_object(b64url_decode(header_b64), "header")
    except MalformedToken as exc:
        raise MalformedToken(f"a compact JWS has 3 segments, this has 5 and {exc.reason}") from None
    if "enc" in header:
        raise EncryptedToken("a JWE (5 segments, its header names enc): encrypted", header)
    raise MalformedToken("a compact JWS has 3 segments, this has 5 but its header has no enc: not a JWE either", header)


#: header segment → (header, alg, header JSON) of the headers that parsed; see `_header`.
_HEADERS: dict[bytes, tuple[dict[str, Any], str, str]] = {}
_header_bytes = 0  # what `_HEADERS` holds, counted as in `_header`


def header_cache_usage() -> tuple[int, int, int, int]:
    """(entries, bytes, entry cap, byte cap) of the header cache, for the metrics."""
    return len(_HEADERS), _header_bytes, HEADER_CACHE_SIZE, HEADER_CACHE_BUDGET


def _header(segment: bytes) -> tuple[dict[str, Any], str, str]:
    """The decoded header, its alg and its JSON text; raises `MalformedToken`.

    Tokens share their header segment (one per issuer key, give or take `typ`), so the
    decoding is kept per segment and the dict is shared: read-only by convention, like the
    rest of `ParsedToken`. The cache is emptied when full (entries or bytes) and keeps no
    long header, so made-up headers cannot make it grow.
    """
    global _header_bytes
    known = _HEADERS.get(segment)
    if known is not None:
        return known
    header, by_orjson = _json_object(b64url_decode(segment), "header")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise MalformedToken("the header's alg is missing or not a string", header)
    if "crit" in header:
        # jwtriage understands no JWS extension, so RFC 7515 §4.1.11 makes the token invalid.
        raise MalformedToken(
            "the header has crit, naming extensions jwtriage does not understand (RFC 7515 §4.1.11)", header
        )
    known = (header, alg, to_json(header, by_orjson))
    if len(segment) <= HEADER_CACHE_MAX_BYTES:
        size = len(segment) + 2 * len(known[2]) + 200  # the segment, the dict (about its JSON), the JSON
        if len(_HEADERS) >= HEADER_CACHE_SIZE or _header_bytes + size > HEADER_CACHE_BUDGET:
            _HEADERS.clear()
            _header_bytes = 0
        _HEADERS[segment] = known
        _header_bytes += size
    return known


#: `json.dumps(value, sort_keys=True, default=str)`, without building a new encoder for every call.
#: Decoded JSON never needs the `default`; it keeps anything else from raising.
_encode_sorted = json.JSONEncoder(sort_keys=True, default=str).encode


def excerpt(value: str | bytes, limit: int = 120) -> str:
    """A short, token-free excerpt of bad input for a dead letter or an error line.

    Anything that looks like a JWT segment (long base64url runs) is replaced, so a dead
    letter can show where the input went wrong without carrying a credential.
    """
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    text = _SECRETISH.sub("<redacted>", text[: limit * 4])
    return text[:limit] + ("…" if len(text) > limit else "")


_SECRETISH = re.compile(r"[A-Za-z0-9_\-+/=]{16,}")

#: A dot between segments, however it was escaped: plain, percent-encoded (once or more),
#: or a JSON / JavaScript unicode escape (its backslash itself escaped any number of times).
_DOT = r"(?:\.|%(?:25)*2[eE]|\\+u002[eE])"
#: A segment character, likewise: base64url, standard base64 (`/` maybe JSON-escaped as `\/`),
#: percent-encoded `-`, `_`, `+`, `/`, `=`.
_SEGMENT_CHAR = r"(?:[A-Za-z0-9_\-+]|\\*/|%(?:25)*(?:2[dDbBfF]|5[fF]|3[dD]))"
#: A compact JWS/JWE in text: a first segment that starts like encoded JSON (`{"`, `{ `, `{\n`
#: give `ey`/`ew`), then one to four more segments. Not inside a longer base64url run (the
#: look-behind comes after the literal `e[wy]`, which lets the engine skip ahead to each `e`:
#: 9x quicker on a sentence without a token, 0.35 µs for a 200-character detail).
_TOKEN_IN_TEXT = re.compile(
    rf"e[wy](?<![A-Za-z0-9_\-%]e[wy]){_SEGMENT_CHAR}{{6,}}(?:{_DOT}{_SEGMENT_CHAR}*){{1,4}}"
)
_LONE_DOT = re.compile(rf"{_DOT}$")


def redact_tokens(text: str) -> str:
    """`text` with every token-shaped string in it, in any escaping, replaced by its fingerprint's start.

    Tokens are credentials (DESIGN.md): a token-shaped value anywhere (a claim, a validator's
    message, a percent-encoded URL, JSON-escaped text) is a token, and no output may carry
    one. The fingerprint still lets a reader match it. Text without one is returned as is
    (one C regex scan), so ordinary header and claims JSON is stored unchanged.
    """
    if "e" not in text:
        return text
    return _TOKEN_IN_TEXT.sub(_token_mark, text)


def has_token(text: str) -> bool:
    """Whether `redact_tokens` might change `text` (a cheap test before redacting several fields)."""
    return _TOKEN_IN_TEXT.search(text) is not None


def _token_mark(match: re.Match[str]) -> str:
    found = match[0]
    if _LONE_DOT.search(found) and len(_DOT_SPLIT.split(found)) == 2:
        return found  # one segment and a trailing dot: the end of a sentence, not a token
    return f"<token sha256:{hashlib.sha256(found.encode()).hexdigest()[:12]}…>"


_DOT_SPLIT = re.compile(_DOT)
