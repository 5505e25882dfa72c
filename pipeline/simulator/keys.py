"""The simulator's own keys and JOSE encoding: base64url segments, deterministic signing.

The keys are shipped (`pipeline/data/simulator_keys.json`) because RSA generation cannot be
seeded; signing is deterministic (RSA PKCS#1 v1.5, Ed25519, RFC 6979 ECDSA) so that a seed
fixes every byte.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


@dataclass(frozen=True, slots=True)
class Key:
    """A simulator key: its private half signs, its public JWK is what an issuer publishes."""

    kid: str
    alg: str
    kty: str
    crv: str | None
    private: Any
    public_jwk: dict[str, Any]
    public_pem: bytes


_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "role"})


@lru_cache(maxsize=1)
def load_keys() -> dict[str, Key]:
    """The shipped simulator-only keys (RSA generation cannot be seeded, so they are fixed)."""
    text = resources.files("pipeline").joinpath("data", "simulator_keys.json").read_text(encoding="utf-8")
    keys: dict[str, Key] = {}
    for jwk in json.loads(text)["keys"]:
        private: Any
        if jwk["kty"] == "RSA":  # our own fixed keys: skip the slow validation of the primes
            n = {
                m: int.from_bytes(b64decode(jwk[m]), "big")
                for m in ("n", "e", "d", "p", "q", "dp", "dq", "qi")
            }
            public_numbers = rsa.RSAPublicNumbers(n["e"], n["n"])
            private = rsa.RSAPrivateNumbers(
                n["p"], n["q"], n["d"], n["dp"], n["dq"], n["qi"], public_numbers
            ).private_key(unsafe_skip_rsa_key_validation=True)
        elif jwk["kty"] == "EC":
            private = ECAlgorithm.from_jwk(json.dumps(jwk))
        else:
            private = OKPAlgorithm.from_jwk(json.dumps(jwk))
        public = {k: v for k, v in jwk.items() if k not in _PRIVATE_MEMBERS}
        pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        keys[jwk["kid"]] = Key(jwk["kid"], jwk["alg"], jwk["kty"], jwk.get("crv"), private, public, pem)
    return keys


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def strict_b64(segment: str) -> bytes:
    if not _B64URL.match(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def strict_object(segment: str) -> dict[str, Any]:
    value = json.loads(strict_b64(segment).decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


_RSA_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "RS256": hashes.SHA256,
    "RS384": hashes.SHA384,
    "RS512": hashes.SHA512,
}


def encode(claims: dict[str, Any], key: Key, alg: str, header: dict[str, Any]) -> str:
    """A compact JWS. PyJWT for RSA and EdDSA; ES256 by hand with RFC 6979 deterministic
    ECDSA, because PyJWT's ECDSA is randomized and the output must be byte-identical."""
    if alg == "ES256":
        full = {"alg": alg, "typ": "JWT", **header}
        signing_input = f"{b64json(dict(sorted(full.items())))}.{b64json(claims)}".encode("ascii")
        der = key.private.sign(signing_input, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return f"{signing_input.decode('ascii')}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    return jwt.encode(claims, key.private, algorithm=alg, headers=header)


def raw_sign(key: Key, alg: str, signing_input: bytes) -> bytes:
    """Sign without PyJWT, for hand-built hostile headers PyJWT would normalise."""
    if alg in _RSA_HASHES and isinstance(key.private, rsa.RSAPrivateKey):
        return key.private.sign(signing_input, padding.PKCS1v15(), _RSA_HASHES[alg]())
    if alg == "ES256" and isinstance(key.private, ec.EllipticCurvePrivateKey):
        der = key.private.sign(signing_input, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "EdDSA" and isinstance(key.private, ed25519.Ed25519PrivateKey):
        return key.private.sign(signing_input)
    raise ValueError(f"cannot sign {alg} with {key.kid}")
