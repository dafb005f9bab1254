"""Keys for signing and verifying JWTs, each bound to the algorithm family it belongs to.

An HMAC secret only verifies ``HS*``, RSA only ``RS*``/``PS*``, EC only the ``ES*``
matching its curve, Ed25519/Ed448 only ``EdDSA``: that binding is what rules out
HS/RS key confusion. Weak keys (short secrets, small RSA moduli, private keys
where public ones belong) are refused with ValueError. Verification keys come
from key objects (:func:`key_object`), PEM (:func:`public_key`), HMAC secrets
(:func:`secret_key`) or a JWKS document (:func:`jwks_keys`), read from a file or
fetched from a URL (:func:`fetch_jwks`).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

log = logging.getLogger("flight_secure.auth.tokens")

MIN_HMAC_SECRET_BYTES = 32
MIN_RSA_BITS = 2048
MAX_JWKS_BYTES = 1024 * 1024

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHM_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
SUPPORTED_ALGORITHMS = (
    HMAC_ALGORITHMS | RSA_ALGORITHMS | frozenset(EC_ALGORITHM_BY_CURVE.values()) | {"EdDSA"}
)

PRIVATE_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
            ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)


def show_untrusted(value: object) -> str:
    """repr() of attacker-controlled header values, cut short for logs."""
    text = repr(value)
    return text if len(text) <= 64 else text[:60] + "...'"


def is_pem(data: bytes) -> bool:
    return data.lstrip().startswith(b"-----BEGIN")


def hmac_secret(value: str | bytes) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if is_pem(data) or data.startswith(b"ssh-"):
        raise ValueError("an HMAC secret must not be a PEM/SSH key (key confusion risk)")
    if len(data) < MIN_HMAC_SECRET_BYTES:
        raise ValueError(f"HMAC secret must be at least {MIN_HMAC_SECRET_BYTES} bytes")
    return data


def algorithms_for(key: Any) -> frozenset[str]:
    """The algorithms a verification key may be used with; ValueError for weak keys."""
    if isinstance(key, bytes):
        return HMAC_ALGORITHMS
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key must be at least {MIN_RSA_BITS} bits, got {key.key_size}")
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in EC_ALGORITHM_BY_CURVE:
            raise ValueError(f"unsupported EC curve {key.curve.name}")
        return frozenset({EC_ALGORITHM_BY_CURVE[key.curve.name]})
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return frozenset({"EdDSA"})
    raise TypeError(f"unsupported key type {type(key).__name__}")


def check_algorithm(algorithm: str) -> None:
    if not isinstance(algorithm, str) or algorithm.lower() == "none":
        raise ValueError("algorithm 'none' (unsigned tokens) is never allowed")
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"unsupported algorithm {algorithm!r}; "
                         f"use one of {sorted(SUPPORTED_ALGORITHMS)}")


@dataclass(frozen=True)
class VerificationKey:
    kid: str | None
    algorithms: frozenset[str]
    key: Any


def key_object(value: Any) -> VerificationKey:
    """A verification key from a public key or certificate object.

    Raises ValueError for a private key and TypeError for anything else (text,
    bytes, paths: their meaning would have to be guessed).
    """
    if isinstance(value, x509.Certificate):
        value = value.public_key()
    elif isinstance(value, PRIVATE_KEY_TYPES):
        raise ValueError("verifier keys must be public; pass private_key.public_key()")
    elif isinstance(value, str | bytes | os.PathLike):
        raise TypeError(
            "JWTVerifier(keys, ...) takes key objects or a JWKS dict; for text, bytes or "
            "a path say what it is: JWTVerifier.from_public_key (PEM), from_secret (HMAC), "
            "from_jwks_file or from_jwks_url"
        )
    return VerificationKey(None, algorithms_for(value), value)


def public_key(value: Any) -> VerificationKey:
    """A verification key from PEM (text or bytes) of a public key or certificate, or
    from a key or certificate object. ValueError for anything else, private keys too."""
    if not isinstance(value, str | bytes):
        return key_object(value)
    data = value.encode("utf-8") if isinstance(value, str) else value
    if not is_pem(data):
        raise ValueError("not a PEM public key or certificate (for an HMAC secret use "
                         "JWTVerifier.from_secret)")
    if b"PRIVATE KEY" in data:
        raise ValueError("verifier keys must be public; got a private key PEM")
    try:
        if b"CERTIFICATE" in data:
            return key_object(x509.load_pem_x509_certificate(data))
        return key_object(serialization.load_pem_public_key(data))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("could not load the PEM public key or certificate") from None


def secret_key(value: Any) -> VerificationKey:
    """A verification key from an HMAC secret (str or bytes, at least 32 bytes)."""
    if not isinstance(value, str | bytes):
        raise TypeError(f"an HMAC secret is str or bytes, not {type(value).__name__}")
    return VerificationKey(None, HMAC_ALGORITHMS, hmac_secret(value))


def jwk_key(entry: Any) -> VerificationKey:
    if not isinstance(entry, Mapping):
        raise ValueError("JWK is not an object")
    if entry.get("use", "sig") != "sig":
        raise ValueError("JWK is not a signature key")
    if entry.get("kty") != "oct" and "d" in entry:
        raise ValueError("JWK contains private key material")
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError("JWK kid is not a string")
    key = jwt.PyJWK(dict(entry)).key
    algorithms = algorithms_for(hmac_secret(key) if isinstance(key, bytes) else key)
    alg = entry.get("alg")
    if alg is not None:
        if alg not in algorithms:
            raise ValueError(f"JWK alg {show_untrusted(alg)} does not fit its key type")
        algorithms = frozenset({alg})
    return VerificationKey(kid, algorithms, key)


def jwks_keys(document: Any, source: str) -> tuple[VerificationKey, ...]:
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError(f"{source}: a JWKS must be an object with a 'keys' list")
    keys = []
    for index, entry in enumerate(document["keys"]):
        try:
            keys.append(jwk_key(entry))
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            log.warning("%s: ignoring key #%d: %s", source, index, exc)
    return tuple(keys)


def fetch_jwks(url: str, timeout: float) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https)
        body = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
    return json.loads(body)
