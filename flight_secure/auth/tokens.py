"""JSON Web Token issuing and verification on PyJWT, hardened against the usual attacks.

* :class:`JWTIssuer` signs short-lived tokens (``iat``, ``nbf``, ``exp``, a random
  128-bit ``jti``, ``sub`` and optionally ``iss``/``aud``).
* :class:`JWTVerifier` checks them.  The allowed algorithms must be named
  explicitly; ``alg: none`` is always refused; every key is bound to the algorithm
  family it belongs to (an HMAC secret only verifies ``HS*``, RSA only ``RS*``/``PS*``,
  EC only the ``ES*`` matching its curve, Ed25519/Ed448 only ``EdDSA``; see
  :mod:`flight_secure.auth.keys`), which rules out HS/RS key confusion. Keys may
  come from a JWKS file or URL that is re-read when a token names an unknown
  ``kid`` (rate limited), so keys can be rotated without restarts.
* Each failure raises a specific :class:`TokenError` subclass whose message names
  the failed check and never contains the token.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from flight_secure.auth.cache import TokenCache
from flight_secure.auth.keys import (  # the limits stay importable from here
    HMAC_ALGORITHMS,
    MAX_JWKS_BYTES,
    MIN_HMAC_SECRET_BYTES,
    MIN_RSA_BITS,
    PRIVATE_KEY_TYPES,
    SUPPORTED_ALGORITHMS,
    VerificationKey,
    algorithms_for,
    check_algorithm,
    fetch_jwks,
    hmac_secret,
    is_pem,
    jwks_keys,
    key_object,
    public_key,
    secret_key,
    show_untrusted,
)
from flight_secure.auth.revocation import RevocationList, Revocations  # importable here too

__all__ = [
    "MAX_JWKS_BYTES", "MIN_HMAC_SECRET_BYTES", "MIN_RSA_BITS", "SUPPORTED_ALGORITHMS",
    "Claims", "JWTIssuer", "JWTVerifier", "RevocationList", "TokenAlgorithmRefused",
    "TokenAudienceMismatch", "TokenBadSignature", "TokenError", "TokenExpired",
    "TokenIssuerMismatch", "TokenMalformed", "TokenMissingClaim", "TokenNotYetValid",
    "TokenRevoked", "TokenUnknownKey",
]

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 16 * 1024
_REGISTERED = frozenset({"sub", "iat", "nbf", "exp", "jti", "iss", "aud"})
Claims = Mapping[str, Any]
"""A verified token's claims: a read-only mapping (``types.MappingProxyType``)."""



class TokenError(Exception):
    """Base class: the token was refused.  Messages never include the token."""


class TokenMalformed(TokenError):
    """The token is not a well-formed JWS compact serialisation with valid claims."""


class TokenAlgorithmRefused(TokenError):
    """The header ``alg`` is ``none``, not allowed, or not usable with the selected key."""


class TokenUnknownKey(TokenError):
    """No key with the token's ``kid`` is known, even after refreshing the key set."""


class TokenBadSignature(TokenError):
    """The signature does not verify with any candidate key."""


class TokenExpired(TokenError):
    """``exp`` is in the past (beyond the leeway)."""


class TokenNotYetValid(TokenError):
    """``nbf`` or ``iat`` is in the future (beyond the leeway)."""


class TokenAudienceMismatch(TokenError):
    """``aud`` does not name this service (or is present when no audience is configured)."""


class TokenIssuerMismatch(TokenError):
    """``iss`` is not the configured issuer."""


class TokenMissingClaim(TokenError):
    """A required claim is absent."""


class TokenRevoked(TokenError):
    """The token's ``jti`` is on the revocation list."""


class JWTIssuer:
    """Signs tokens with one private key (or HMAC secret) and one algorithm.

    ``key`` is a cryptography private key, PEM text/bytes of an unencrypted private
    key, or for ``HS*`` a secret of at least 32 bytes (48/64 for HS384/HS512).
    The key must match ``algorithm``: EdDSA needs Ed25519/Ed448, ES256 a P-256 key
    (ES384 P-384, ES512 P-521), RS*/PS* an RSA key of at least 2048 bits.
    ``ttl`` (seconds or timedelta, default 15 minutes) sets ``exp`` relative to issue time.
    """

    def __init__(self, key: Any, algorithm: str = "EdDSA", issuer: str | None = None,
                 audience: str | Sequence[str] | None = None,
                 ttl: timedelta | float = 900.0, key_id: str | None = None) -> None:
        check_algorithm(algorithm)
        seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
        if not seconds > 0:
            raise ValueError("ttl must be positive")
        self._algorithm, self._issuer, self._key_id = algorithm, issuer, key_id
        self._audience = audience if audience is None or isinstance(audience, str) \
            else list(audience)
        self._ttl = seconds
        self._key = self._signing_key(key, algorithm)

    @staticmethod
    def _signing_key(key: Any, algorithm: str) -> Any:
        if algorithm in HMAC_ALGORITHMS:
            if not isinstance(key, str | bytes):
                raise TypeError(f"{algorithm} needs a shared secret (bytes or str)")
            secret = hmac_secret(key)
            needed = int(algorithm[2:]) // 8
            if len(secret) < needed:
                raise ValueError(f"{algorithm} secret must be at least {needed} bytes")
            return secret
        if isinstance(key, str | bytes):
            data = key.encode("utf-8") if isinstance(key, str) else key
            if not is_pem(data):
                raise ValueError(f"{algorithm} needs a private key (PEM or key object), "
                                 "not a shared secret")
            try:
                key = serialization.load_pem_private_key(data, password=None)
            except (ValueError, TypeError):
                raise ValueError("could not load the PEM private key (it must be an "
                                 "unencrypted private key)") from None
        if not isinstance(key, PRIVATE_KEY_TYPES):
            raise TypeError(f"{algorithm} needs a private key, got {type(key).__name__}")
        allowed = algorithms_for(key.public_key())
        if algorithm not in allowed:
            raise ValueError(f"algorithm {algorithm} cannot be used with a "
                             f"{type(key).__name__}; this key supports {sorted(allowed)}")
        return key

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @property
    def key_id(self) -> str | None:
        return self._key_id

    @property
    def ttl(self) -> float:
        """Seconds from issue to ``exp`` (rounded up when a token is issued)."""
        return self._ttl

    def issue(self, subject: str, **claims: Any) -> str:
        """Return a signed token for ``subject`` carrying ``claims``.

        Registered claims (sub, iat, nbf, exp, jti, iss, aud) are set by the issuer
        and may not be passed in ``claims`` (ValueError).
        """
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be a non-empty string")
        clash = _REGISTERED.intersection(claims)
        if clash:
            raise ValueError(f"claims {sorted(clash)} are set by the issuer")
        now = int(time.time())
        payload: dict[str, Any] = {**claims, "sub": subject, "iat": now, "nbf": now,
                                   "exp": now + math.ceil(self._ttl),
                                   "jti": secrets.token_urlsafe(16)}
        if self._issuer is not None:
            payload["iss"] = self._issuer
        if self._audience is not None:
            payload["aud"] = self._audience
        headers = {"kid": self._key_id} if self._key_id is not None else None
        return jwt.encode(payload, self._key, algorithm=self._algorithm, headers=headers)

    def public_jwk(self) -> dict[str, Any]:
        """The public verification key as a JWK (with ``alg``, ``use: sig`` and ``kid``).

        Raises ValueError for HMAC algorithms: a shared secret must never be published.
        """
        if self._algorithm in HMAC_ALGORITHMS:
            raise ValueError("HMAC secrets have no public JWK; never publish a shared secret")
        impl = jwt.get_algorithm_by_name(self._algorithm)
        jwk: dict[str, Any] = impl.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update(alg=self._algorithm, use="sig")
        if self._key_id is not None:
            jwk["kid"] = self._key_id
        return jwk

    def __repr__(self) -> str:
        return f"JWTIssuer(algorithm={self._algorithm!r}, key_id={self._key_id!r})"


class JWTVerifier:
    """Verifies tokens against a fixed allow-list of algorithms and a set of keys.

    Each source of keys has its own constructor, so nothing is guessed from a
    value's shape:

    * :meth:`from_public_key` — PEM (text or bytes) of a public key or certificate,
      or a key / certificate object, or a list of those;
    * :meth:`from_secret` — an HMAC secret (at least 32 bytes), or a list of them;
    * :meth:`from_jwks` — a JWKS document (a dict with ``keys``);
    * :meth:`from_jwks_file` / :meth:`from_jwks_url` — a JWKS read from a JSON file
      or fetched from an ``http(s)://`` URL: read at construction (errors
      propagate), re-read when a token names an unknown ``kid`` (at most once per
      ``min_refresh_interval`` seconds) and when older than ``jwks_refresh_interval``.

    ``JWTVerifier(keys, algorithms)`` itself takes what cannot be mistaken: public
    key or certificate objects (one or a list) or a JWKS dict. A str, bytes or path
    could mean several of the above, so it raises TypeError naming the constructors.

    A token naming a ``kid`` uses that key (or, if none has that kid, keys without
    a kid); a token without ``kid`` is tried against every key of its algorithm.
    ``verify`` returns :class:`Claims` or raises a :class:`TokenError` subclass.
    Successful results are cached (:class:`~flight_secure.auth.cache.TokenCache`,
    ``cache_size`` entries) until the token's ``exp``; revocation (``revoked``) is
    re-checked on every hit. The options of every constructor: ``audience``,
    ``issuer`` (the values ``aud`` / ``iss`` must have), ``leeway`` (clock skew),
    ``required_claims``, ``revoked``, ``cache_size``, ``clock`` (monotonic, for
    the JWKS refresh intervals). All methods are thread-safe.
    """

    def __init__(self, keys: Any, algorithms: Sequence[str], **options: Any) -> None:
        if isinstance(keys, Mapping):
            found, source = jwks_keys(keys, "JWKS"), "JWKS"
        else:
            found, source = tuple(key_object(k) for k in _as_list(keys)), "public keys"
        self._configure(found, source, None, algorithms, **options)

    @classmethod
    def from_public_key(cls, keys: Any, algorithms: Sequence[str],
                        **options: Any) -> JWTVerifier:
        """Keys from PEM (text or bytes) of public keys or certificates, or from objects.

        Raises ValueError for a private key, a weak key or text that is not PEM.
        """
        found = tuple(public_key(k) for k in _as_list(keys))
        return cls._made(found, "public keys", None, algorithms, **options)

    @classmethod
    def from_secret(cls, secrets: str | bytes | Sequence[str | bytes],
                    algorithms: Sequence[str], **options: Any) -> JWTVerifier:
        """HMAC secrets (``HS*`` only); ValueError for one under 32 bytes or a PEM/SSH key."""
        found = tuple(secret_key(k) for k in _as_list(secrets))
        return cls._made(found, "secrets", None, algorithms, **options)

    @classmethod
    def from_jwks(cls, document: Mapping[str, Any], algorithms: Sequence[str],
                  **options: Any) -> JWTVerifier:
        """Keys from a JWKS document; entries that are unusable are skipped (logged)."""
        return cls._made(jwks_keys(document, "JWKS"), "JWKS", None, algorithms, **options)

    @classmethod
    def from_jwks_file(cls, path: str | os.PathLike[str], algorithms: Sequence[str], *,
                       jwks_refresh_interval: float | None = 300.0,
                       min_refresh_interval: float = 30.0, **options: Any) -> JWTVerifier:
        """Keys from a JWKS JSON file, re-read as the class docstring says."""
        source = Path(path)
        return cls._made(None, str(source), lambda: json.loads(source.read_bytes()),
                         algorithms, jwks_refresh_interval=jwks_refresh_interval,
                         min_refresh_interval=min_refresh_interval, **options)

    @classmethod
    def from_jwks_url(cls, url: str, algorithms: Sequence[str], *,
                      fetch_timeout: float = 5.0,
                      jwks_refresh_interval: float | None = 300.0,
                      min_refresh_interval: float = 30.0, **options: Any) -> JWTVerifier:
        """Keys from the JWKS at an ``http(s)://`` URL (fetched with ``fetch_timeout``),
        re-fetched as the class docstring says; ValueError for another scheme."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError("a JWKS URL must start with http:// or https://")
        return cls._made(None, url, lambda: fetch_jwks(url, fetch_timeout), algorithms,
                         jwks_refresh_interval=jwks_refresh_interval,
                         min_refresh_interval=min_refresh_interval, **options)

    @classmethod
    def _made(cls, keys: tuple[VerificationKey, ...] | None, source: str,
              fetch: Callable[[], Any] | None, algorithms: Sequence[str],
              **options: Any) -> JWTVerifier:
        verifier = cls.__new__(cls)
        verifier._configure(keys, source, fetch, algorithms, **options)
        return verifier

    def _configure(self, keys: tuple[VerificationKey, ...] | None, source: str,
                   fetch: Callable[[], Any] | None, algorithms: Sequence[str], *,
                   audience: str | Sequence[str] | None = None,
                   issuer: str | Sequence[str] | None = None,
                   leeway: float | timedelta = 30.0,
                   required_claims: Sequence[str] = ("exp", "sub"),
                   revoked: Revocations | None = None,
                   jwks_refresh_interval: float | None = None,
                   min_refresh_interval: float = 30.0, cache_size: int = 1024,
                   clock: Callable[[], float] = time.monotonic) -> None:
        """Set up from ``keys`` (or, with ``fetch``, what it returns: a JWKS document)."""
        if isinstance(algorithms, str) or not isinstance(algorithms, Sequence):
            raise TypeError("algorithms must be a list of names, e.g. ['EdDSA']")
        if not algorithms:
            raise ValueError("algorithms must name at least one algorithm")
        for name in algorithms:
            check_algorithm(name)
        self._algorithms = frozenset(algorithms)
        self._audience = audience if audience is None or isinstance(audience, str) \
            else list(audience)
        self._issuer = issuer if issuer is None or isinstance(issuer, str) else list(issuer)
        self._leeway = leeway.total_seconds() if isinstance(leeway, timedelta) else leeway
        self._required = list(required_claims)
        self._revoked, self._clock = revoked, clock
        self._stale_after, self._min_refresh = jwks_refresh_interval, min_refresh_interval
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._cache: TokenCache[Claims] = TokenCache(cache_size)
        self._generation = 0
        self._fetch, self._source = fetch, source
        self._keys = jwks_keys(fetch(), source) if fetch is not None else keys or ()
        if not any(k.algorithms & self._algorithms for k in self._keys):
            raise ValueError(f"{self._source}: no key usable with {sorted(self._algorithms)}")
        self._last_success = clock()
        self._last_attempt = -math.inf  # the first unknown kid may refresh at once

    def __repr__(self) -> str:
        return (f"JWTVerifier(source={self._source!r}, keys={len(self._keys)}, "
                f"algorithms={sorted(self._algorithms)})")

    @property
    def generation(self) -> int:
        """A number that changes whenever the key set changes (a JWKS re-read found
        other keys). Claims verified under an older generation may rest on a key that
        was withdrawn: a cache of verified tokens must not use them."""
        return self._generation

    def refresh_if_stale(self) -> None:
        """Re-read a JWKS file or URL older than ``jwks_refresh_interval``, without
        waiting for a re-read already under way. Cheap when nothing is due."""
        self._maybe_refresh(wait=False, stale_only=True)

    @property
    def revocations(self) -> Revocations | None:
        """The revocation list consulted on every verification, if any."""
        return self._revoked

    @property
    def leeway(self) -> float:
        """Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``."""
        return self._leeway

    def check_revoked(self, claims: Claims) -> None:
        """Raise TokenRevoked if the revocation list names the token of ``claims``
        (by its ``jti``, or as a token its ``sub`` had before a revocation)."""
        if self._revoked is not None and self._revoked.rejects(claims):
            raise TokenRevoked("token has been revoked")

    def verify(self, token: str | bytes) -> Claims:
        """Return the claims of a valid token; raise a TokenError subclass otherwise."""
        raw = _normalise(token)
        self.refresh_if_stale()  # may withdraw keys and cached claims
        claims = self._cache.get(raw)
        if claims is None:
            claims = self._verify_uncached(raw)
            self.check_revoked(claims)
            exp = claims.get("exp")
            if isinstance(exp, int | float):
                self._cache.put(raw, claims, float(exp))
        else:
            self.check_revoked(claims)
        return claims

    def _verify_uncached(self, raw: str) -> Claims:
        """The token parsed once, by PyJWT's decode; its header is read first (it names
        the algorithm and key) without PyJWT, whose parse of the whole token is slow."""
        header = _unverified_header(raw)
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str):
            raise TokenMalformed("token header has no 'alg'")
        if alg.lower() == "none":
            raise TokenAlgorithmRefused("unsigned tokens (alg 'none') are never accepted")
        if alg not in self._algorithms:
            raise TokenAlgorithmRefused(f"algorithm {show_untrusted(alg)} is not allowed")
        for key in self._candidates(kid, alg):
            try:
                payload = jwt.decode(raw, key.key, algorithms=[alg], audience=self._audience,
                                     issuer=self._issuer, leeway=self._leeway,
                                     options={"require": self._required})
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise _translate(exc, raw) from None
            return MappingProxyType(payload)
        raise TokenBadSignature(f"{alg} signature does not verify with any matching key")

    def _candidates(self, kid: Any, alg: str) -> list[VerificationKey]:
        keys = self._keys
        if kid is None:
            usable = [k for k in keys if alg in k.algorithms]
            if not usable:
                raise TokenAlgorithmRefused(f"no configured key may be used with {alg}")
            return usable
        exact = [k for k in keys if k.kid == kid]
        if not exact and self._fetch is not None:
            self._maybe_refresh(wait=True, stale_only=False)
            keys = self._keys
            exact = [k for k in keys if k.kid == kid]
        if exact:
            usable = [k for k in exact if alg in k.algorithms]
            if not usable:
                raise TokenAlgorithmRefused(f"key {show_untrusted(kid)} may not be used with {alg}")
            return usable
        usable = [k for k in keys if k.kid is None and alg in k.algorithms]
        if not usable:
            raise TokenUnknownKey(f"no key with kid {show_untrusted(kid)} in {self._source}")
        return usable

    def _maybe_refresh(self, *, wait: bool, stale_only: bool) -> None:
        """Re-read the JWKS source, at most once per ``min_refresh_interval``."""
        if self._fetch is None:
            return
        if stale_only and (self._stale_after is None
                           or self._clock() - self._last_success < self._stale_after):
            return
        if not self._refresh_lock.acquire(blocking=wait):
            return  # another thread is refreshing; carry on with the current keys
        try:
            now = self._clock()
            if now - self._last_attempt < self._min_refresh:
                return
            self._last_attempt = now
            try:
                keys = jwks_keys(self._fetch(), self._source)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                log.warning("JWKS refresh from %s failed: %s", self._source, exc)
                return
            if not keys:
                log.warning("JWKS refresh from %s found no usable keys; keeping old", self._source)
                return
            self._last_success = now
            with self._lock:
                if keys != self._keys:
                    self._keys = keys
                    self._generation += 1
                    self._cache.clear()  # a key may have been withdrawn
        finally:
            self._refresh_lock.release()


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _normalise(token: Any) -> str:
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise TokenMalformed("token is not ASCII") from None
    if not isinstance(token, str):
        raise TokenMalformed(f"token must be str or bytes, not {type(token).__name__}")
    if not token.isascii():
        raise TokenMalformed("token is not ASCII")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenMalformed(f"token is longer than {MAX_TOKEN_LENGTH} characters")
    if token.count(".") != 2:
        raise TokenMalformed("token must have three dot-separated segments")
    return token


def _unverified_header(raw: str) -> dict[str, Any]:
    """The JOSE header of ``raw`` (not yet verified): its first segment as strict
    base64url JSON; TokenMalformed otherwise. PyJWT checks it again when it decodes."""
    segment = raw.partition(".")[0]
    try:
        text = base64.b64decode(segment + "=" * (-len(segment) % 4), altchars=b"-_",
                                validate=True)
        header = json.loads(text)
    except (binascii.Error, ValueError):  # JSON and UTF-8 errors are ValueErrors
        raise TokenMalformed("token header is invalid: not base64url-encoded JSON") from None
    if not isinstance(header, dict):
        raise TokenMalformed("token header is invalid: not a JSON object")
    return header


def _detail(exc: Exception, raw: str) -> str:
    """PyJWT's reason, dropped if it could echo any part of the token."""
    text = str(exc)[:200]
    if any(len(part) >= 8 and part in text for part in raw.split(".")):
        return type(exc).__name__
    return text


_TRANSLATIONS: tuple[tuple[type[jwt.PyJWTError], type[TokenError], str], ...] = (
    (jwt.ExpiredSignatureError, TokenExpired, "token has expired (exp is past the leeway)"),
    (jwt.ImmatureSignatureError, TokenNotYetValid, "token not valid yet (nbf/iat in future)"),
    (jwt.InvalidAudienceError, TokenAudienceMismatch, "audience check failed"),
    (jwt.InvalidIssuerError, TokenIssuerMismatch, "issuer check failed"),
    (jwt.InvalidAlgorithmError, TokenAlgorithmRefused, "algorithm refused"),
    (jwt.InvalidKeyError, TokenBadSignature, "key refused"),
)


def _translate(exc: jwt.PyJWTError, raw: str) -> TokenError:
    """Map a PyJWT failure to our exception; the message names the failed check."""
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return TokenMissingClaim(f"token lacks required claim {exc.claim!r}")
    for pyjwt_error, ours, message in _TRANSLATIONS:
        if isinstance(exc, pyjwt_error):
            return ours(f"{message}: {_detail(exc, raw)}")
    return TokenMalformed(f"token is malformed: {_detail(exc, raw)}")
