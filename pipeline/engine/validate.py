"""Signature checks with keys from the timeline only, and the cache that makes repeats cheap.

The algorithm is the issuer's and the key's, never the header's alone: `fits` decides
whether a key of a given type can be used with an allowed alg at all, and only then is
the signature checked, with the `cryptography` key object kept on the timeline key (so
no key is parsed twice). A signature result depends only on (token, key, alg), so it is
cached; verdicts are never cached, because they depend on the event's time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from pipeline.bounded import BoundedCache
from pipeline.engine.keys import TimelineKey


@dataclass(frozen=True, slots=True)
class AlgSpec:
    """What an alg needs: the key type (and curve) and how to check the signature."""

    kty: str
    curves: tuple[str, ...]
    scheme: str  # "pkcs1", "pss", "ecdsa", "eddsa"
    hash: type[hashes.HashAlgorithm] | None = None
    coordinate_bytes: int = 0


ALGORITHMS: dict[str, AlgSpec] = {
    "RS256": AlgSpec("RSA", (), "pkcs1", hashes.SHA256),
    "RS384": AlgSpec("RSA", (), "pkcs1", hashes.SHA384),
    "RS512": AlgSpec("RSA", (), "pkcs1", hashes.SHA512),
    "PS256": AlgSpec("RSA", (), "pss", hashes.SHA256),
    "PS384": AlgSpec("RSA", (), "pss", hashes.SHA384),
    "PS512": AlgSpec("RSA", (), "pss", hashes.SHA512),
    "ES256": AlgSpec("EC", ("P-256",), "ecdsa", hashes.SHA256, 32),
    "ES384": AlgSpec("EC", ("P-384",), "ecdsa", hashes.SHA384, 48),
    "ES512": AlgSpec("EC", ("P-521",), "ecdsa", hashes.SHA512, 66),
    "EdDSA": AlgSpec("OKP", ("Ed25519", "Ed448"), "eddsa"),
    "Ed25519": AlgSpec("OKP", ("Ed25519",), "eddsa"),
}

#: Each alg's hash and RSA padding objects, built once: they are stateless, and building
#: them for every signature costs as much as the rest of the Python around OpenSSL.
_HASHES: dict[str, hashes.HashAlgorithm] = {alg: spec.hash() for alg, spec in ALGORITHMS.items() if spec.hash}
_RSA_PADDINGS: dict[str, padding.AsymmetricPadding] = {
    alg: padding.PKCS1v15()
    if spec.scheme == "pkcs1"
    else padding.PSS(mgf=padding.MGF1(_HASHES[alg]), salt_length=_HASHES[alg].digest_size)
    for alg, spec in ALGORITHMS.items()
    if spec.scheme in ("pkcs1", "pss")
}

#: Group orders of the NIST curves (FIPS 186-4, D.1.2), for the psychic-signature check.
CURVE_ORDERS = {
    "ES256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "ES384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16
    ),
    "ES512": int(
        "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA" + "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
        16,
    ),
}


def fits(alg: str, key: TimelineKey) -> bool:
    """Can `key` be used with `alg` at all (type and curve)?"""
    spec = ALGORITHMS.get(alg)
    if spec is None or spec.kty != key.kty:
        return False
    return not spec.curves or key.crv in spec.curves


#: The raw r‖s length (RFC 7518 §3.4) of each ES* signature: 64, 96 or 132 bytes.
RAW_SIGNATURE_BYTES = {alg: 2 * ALGORITHMS[alg].coordinate_bytes for alg in CURVE_ORDERS}


def is_psychic(alg: str, signature: bytes) -> bool:
    """A raw r‖s ECDSA signature whose r or s is 0 or not below the curve order (CVE-2022-21449).

    Only a signature of exactly the raw length for its alg is read as r‖s: anything else
    (a DER-encoded signature, whatever its length's parity) is just a bad signature.
    """
    order = CURVE_ORDERS.get(alg)
    if order is None or len(signature) != RAW_SIGNATURE_BYTES[alg]:
        return False
    half = len(signature) // 2
    r = int.from_bytes(signature[:half], "big")
    s = int.from_bytes(signature[half:], "big")
    return r == 0 or s == 0 or r >= order or s >= order


#: (key class, key interface) → is it one; see `_implements`.
_IMPLEMENTS: dict[tuple[type, type], bool] = {}


def _implements(key_class: type, interface: type) -> bool:
    """`issubclass`, remembered per key class (there are a handful).

    cryptography's key interfaces are ABCs with its Rust classes registered, and their
    isinstance cache stays empty for those: every `isinstance` re-runs
    `ABCMeta.__subclasscheck__` in Python, about 1 µs per signature.
    """
    known = _IMPLEMENTS.get((key_class, interface))
    if known is None:
        known = _IMPLEMENTS[(key_class, interface)] = issubclass(key_class, interface)
    return known


def _is_rsa(public_key: object) -> TypeGuard[rsa.RSAPublicKey]:
    return _implements(type(public_key), rsa.RSAPublicKey)


def _is_ec(public_key: object) -> TypeGuard[ec.EllipticCurvePublicKey]:
    return _implements(type(public_key), ec.EllipticCurvePublicKey)


def _is_edwards(public_key: object) -> TypeGuard[ed25519.Ed25519PublicKey | ed448.Ed448PublicKey]:
    key_class = type(public_key)
    return _implements(key_class, ed25519.Ed25519PublicKey) or _implements(key_class, ed448.Ed448PublicKey)


def verify(alg: str, key: TimelineKey, signing_input: bytes, signature: bytes) -> bool:
    """True when `signature` is `key`'s signature of `signing_input` under `alg`."""
    spec = ALGORITHMS.get(alg)
    if spec is None or not fits(alg, key):
        return False
    public_key = key.public_key
    try:
        if spec.scheme in ("pkcs1", "pss") and _is_rsa(public_key):
            public_key.verify(signature, signing_input, _RSA_PADDINGS[alg], _HASHES[alg])
        elif spec.scheme == "ecdsa" and _is_ec(public_key):
            if len(signature) != 2 * spec.coordinate_bytes or is_psychic(alg, signature):
                return False
            r = int.from_bytes(signature[: spec.coordinate_bytes], "big")
            s = int.from_bytes(signature[spec.coordinate_bytes :], "big")
            public_key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(_HASHES[alg]))
        elif spec.scheme == "eddsa" and _is_edwards(public_key):
            public_key.verify(signature, signing_input)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


#: The bytes the signature cache may hold: ~200 per entry, so the entry count binds first at the default.
SIGNATURE_CACHE_MAX_BYTES = 32 * 1024 * 1024


def _result_bytes(cache_key: tuple[str, str, str], result: bool) -> int:
    return len(cache_key[0]) + len(cache_key[1]) + len(cache_key[2]) + 100  # the strings, the tuple, the entry


class SignatureCache:
    """Bounded LRU of signature results keyed by (fingerprint, key thumbprint, alg), in entries and bytes."""

    def __init__(self, capacity: int = 100_000, max_bytes: int = SIGNATURE_CACHE_MAX_BYTES) -> None:
        self.results: BoundedCache[tuple[str, str, str], bool] = BoundedCache(capacity, max_bytes, _result_bytes)
        self.hits = 0
        self.misses = 0

    @property
    def capacity(self) -> int:
        return self.results.capacity

    def __len__(self) -> int:
        return len(self.results)

    def verify(self, fingerprint: str, alg: str, key: TimelineKey, signing_input: bytes, signature: bytes) -> bool:
        cache_key = (fingerprint, key.thumbprint, alg)
        result = self.results.get(cache_key)
        if result is not None:
            self.results.move_to_end(cache_key)
            self.hits += 1
            return result
        self.misses += 1
        result = verify(alg, key, signing_input, signature)
        self.results.put(cache_key, result)
        return result
