"""Authentication and authorization for Flight servers and clients.

The contract lives in :mod:`flight_secure.auth.base`; the gate that applies it to
every call in :mod:`flight_secure.auth.gate`, with what it relies on:
:mod:`~flight_secure.auth.handshakes` (how many Handshakes may be in progress),
:mod:`~flight_secure.auth.network` (peers counted by network),
:mod:`~flight_secure.auth.audit` (the audit log's one format),
:mod:`~flight_secure.auth.cache` (verified tokens). Each scheme in its own module:

* :mod:`~flight_secure.auth.passwords` — bcrypt htpasswd ``PasswordStore``;
* :mod:`~flight_secure.auth.guard` — ``LoginGuard`` against password floods (its
  counts in :mod:`~flight_secure.auth.counters`, or shared in Redis:
  :mod:`~flight_secure.auth.redis_counters`);
* :mod:`~flight_secure.auth.tokens` — ``JWTIssuer``, ``JWTVerifier`` (keys in
  :mod:`~flight_secure.auth.keys`);
* :mod:`~flight_secure.auth.revocation` — ``RevocationList``, ``RevocationFile``;
  lists kept elsewhere: ``RevocationView`` (a URL,
  :mod:`~flight_secure.auth.revocation_view`) and ``RedisRevocations``
  (:mod:`~flight_secure.auth.redis_revocations`);
* :mod:`~flight_secure.auth.basic` — Basic logins that issue session tokens;
* :mod:`~flight_secure.auth.jwt_auth` — bearer JWTs from an identity provider;
* :mod:`~flight_secure.auth.mtls` — identity from client certificates, token binding
  (certificate parsing in :mod:`~flight_secure.auth.certificates`; bound tokens, checked
  by every token handler, in :mod:`~flight_secure.auth.binding`);
* :mod:`~flight_secure.auth.policy` — ``AccessPolicy`` and ``require_roles``.

The scheme modules load on first use (they pull in bcrypt, PyJWT and
cryptography), so ``import flight_secure`` stays quick for clients.
"""

from __future__ import annotations

import importlib
from typing import Any

from flight_secure.auth.base import (
    CallCredentials,
    CertificateInfo,
    ClientAuthHandler,
    ClientAuthReader,
    ClientAuthSender,
    HeaderLogin,
    LoginThrottledError,
    Principal,
    ServerAuthHandler,
    ServerAuthReader,
    ServerAuthSender,
)

#: Public name -> the module that defines it, imported when the name is first used.
_LAZY: dict[str, str] = {
    "BasicClientAuthHandler": "basic",
    "BasicServerAuthHandler": "basic",
    "JWTClientAuthHandler": "jwt_auth",
    "JWTServerAuthHandler": "jwt_auth",
    "MutualTLSServerAuthHandler": "mtls",
    "certificate_thumbprint": "mtls",
    "principal_from_certificate": "mtls",
    "AccessPolicy": "policy",
    "RoleRequirement": "policy",
    "require_roles": "policy",
    "LoginDecision": "guard",
    "LoginGuard": "guard",
    "LoginCounters": "counters",
    "MemoryLoginCounters": "counters",
    "RedisLoginCounters": "redis_counters",
    "PasswordFileError": "passwords",
    "PasswordStore": "passwords",
    "JWTIssuer": "tokens",
    "JWTVerifier": "tokens",
    "RevocationFile": "revocation",
    "RevocationList": "revocation",
    "Revocations": "revocation",
    "RevocationsUnavailable": "revocation",
    "RevocationView": "revocation_view",
    "RedisRevocations": "redis_revocations",
    "TokenAlgorithmRefused": "tokens",
    "TokenAudienceMismatch": "tokens",
    "TokenBadSignature": "tokens",
    "TokenError": "tokens",
    "TokenExpired": "tokens",
    "TokenIssuerMismatch": "tokens",
    "TokenMalformed": "tokens",
    "TokenMissingClaim": "tokens",
    "TokenNotYetValid": "tokens",
    "TokenRevoked": "tokens",
    "TokenUnknownKey": "tokens",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "CallCredentials",
    "CertificateInfo",
    "ClientAuthHandler",
    "ClientAuthReader",
    "ClientAuthSender",
    "HeaderLogin",
    "LoginThrottledError",
    "Principal",
    "ServerAuthHandler",
    "ServerAuthReader",
    "ServerAuthSender",
    *_LAZY,
]
