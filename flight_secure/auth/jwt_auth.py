"""Bearer JWTs from an identity provider: the server handler and the client handler.

:class:`JWTServerAuthHandler` accepts a token wherever a Flight client may put it:

* as the Handshake payload (the reply echoes the token, so Arrow-style clients
  that keep the server's reply as their token keep working);
* in ``authorization: Bearer <token>`` on the Handshake's headers (answered with
  the same header) or on any later call, without a handshake;
* in ``auth-token-bin`` (Arrow's token header) on any later call.

Every call's token is verified by a :class:`~flight_secure.auth.tokens.JWTVerifier`
(cheap after the first time: it caches verified claims). The caller's identity is
the ``identity_claim``; its roles come from the ``roles_claim`` and from the OAuth
scope claims (``scope``: space-separated, ``scp``: list or string). A token bound to
a client certificate (a ``cnf`` claim, RFC 8705) is accepted only over a connection
with that verified certificate (:func:`~flight_secure.auth.binding.check_binding`):
never on an engine that cannot see certificates, nor without one.

:class:`~flight_secure.auth.basic.BasicServerAuthHandler` builds on this handler
(its session tokens are JWTs too) and shares :func:`claim_roles`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flight_secure.auth.audit import audit_event
from flight_secure.auth.base import (
    CallCredentials,
    ClientAuthHandler,
    ClientAuthReader,
    ClientAuthSender,
    HeaderLogin,
    Principal,
    ServerAuthHandler,
    ServerAuthReader,
    ServerAuthSender,
)
from flight_secure.auth.binding import check_binding
from flight_secure.auth.cache import TokenCache
from flight_secure.auth.revocation import Revocations
from flight_secure.auth.tokens import Claims, JWTVerifier, TokenError, TokenExpired, TokenRevoked
from flight_secure.errors import FlightUnauthenticatedError
from flight_secure.types import FlightMethod

__all__ = ["JWTClientAuthHandler", "JWTServerAuthHandler", "claim_roles"]

ASK_FOR_CREDENTIALS = "authentication required: no token (auth-token-bin or Bearer) was sent"
EXPIRED = "token has expired; authenticate again"
INVALID = "invalid token"
SCOPE_CLAIMS = ("scope", "scp")

T = TypeVar("T")


def _presented_token(call: CallCredentials) -> str | None:
    """The call's token: ``auth-token-bin`` first, else ``authorization: Bearer``."""
    raw = call.auth_token
    if raw:
        return raw.decode("latin-1")
    return call.bearer_token or None


def _refuse_on_token_error(check: Callable[[Any], T], value: Any, call: CallCredentials,
                           scheme: str) -> T:
    """``check(value)``, with a TokenError turned into UNAUTHENTICATED.

    The client learns only "expired" or "invalid"; which check failed goes to the
    audit log (``reason``), never the token itself.
    """
    try:
        return check(value)
    except TokenError as exc:
        audit_event(logging.WARNING, "token refused", call=call, scheme=scheme,
                    reason=f"{type(exc).__name__}: {exc}")
        raise FlightUnauthenticatedError(EXPIRED if isinstance(exc, TokenExpired)
                                         else INVALID) from None


def claim_roles(claims: Claims, *names: str) -> frozenset[str]:
    """Roles named by the claims ``names``: each a list of strings or a space-separated string."""
    roles: set[str] = set()
    for name in names:
        value = claims.get(name)
        if isinstance(value, str):
            roles.update(value.split())
        elif isinstance(value, list | tuple):
            roles.update(item for item in value if isinstance(item, str))
    return frozenset(roles)


class JWTServerAuthHandler(ServerAuthHandler):
    """Accepts JWTs issued elsewhere (an identity provider), checked by ``verifier``.

    ``identity_claim`` names the claim that becomes ``peer_identity()`` (a non-empty
    string, else the token is refused); ``roles_claim`` names the claim listing the
    caller's roles, joined by the roles of the ``scope``/``scp`` claims. The
    :class:`Principal` has ``method="jwt"`` and the verified claims.

    The Principal of each verified token is kept for the token's life in a
    :class:`~flight_secure.auth.cache.TokenCache` of ``cache_size`` entries, so a
    token costs one signature check, then a lookup per call; revocation and
    :meth:`current` are checked on every call, and the cache is not used across a
    change of the verifier's keys.
    """

    method = "jwt"

    def __init__(self, verifier: JWTVerifier, *, identity_claim: str = "sub",
                 roles_claim: str = "roles", cache_size: int = 4096) -> None:
        self.verifier = verifier
        self.identity_claim = identity_claim
        self._role_claims = (roles_claim, *SCOPE_CLAIMS)
        self._verified: TokenCache[tuple[Principal, int]] = TokenCache(cache_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(verifier={self.verifier!r})"

    def login(self, token: str | None, call: CallCredentials) -> Principal:
        """The Principal of a valid ``token`` presented in ``call``, else UNAUTHENTICATED
        (also for a token bound to a client certificate ``call`` did not come over)."""
        if not token:
            raise FlightUnauthenticatedError(ASK_FOR_CREDENTIALS)
        verifier = self.verifier
        verifier.refresh_if_stale()
        cached = self._verified.get(token)
        if cached is not None and cached[1] == verifier.generation:
            principal = cached[0]
            _refuse_on_token_error(verifier.check_revoked, principal.claims, call, self.method)
        else:
            principal = self._verified_principal(token, call)
        try:
            check_binding(principal.claims, call)
        except FlightUnauthenticatedError as exc:
            audit_event(logging.WARNING, "token refused", call=call, who=principal.name,
                        scheme=self.method, reason=str(exc))
            raise
        return self.current(principal, call)

    def current(self, principal: Principal, call: CallCredentials) -> Principal:
        """The caller as of this call, from the Principal its token established.

        Called on every call, after the token was verified or found in the cache:
        an override may refuse (raise UNAUTHENTICATED, e.g. for a session that has
        ended) or return a Principal updated with what changed since. The default
        returns ``principal``.
        """
        return principal

    def roles_of(self, name: str, claims: Claims) -> frozenset[str]:
        """The roles a verified token grants: those its role and scope claims list."""
        return claim_roles(claims, *self._role_claims)

    def revoke_token(self, token: str | bytes) -> None:
        """Refuse ``token`` from now on (until it expires).

        Raises TokenError when it is not a valid token of this handler's verifier
        (there is nothing to revoke) and ValueError when the verifier has no
        revocation list.
        """
        revocations = self._revocations()
        try:
            claims = self.verifier.verify(token)
        except TokenRevoked:
            return
        jti, exp = claims.get("jti"), claims.get("exp")
        if not isinstance(jti, str):
            raise ValueError("the token has no jti claim to revoke it by")
        revocations.revoke(jti, until=float(exp) + self.verifier.leeway + 1
                           if isinstance(exp, int | float) else None)

    def revoke_user(self, user: str) -> None:
        """Refuse every token whose ``sub`` is ``user`` issued before now.

        The entry is kept for ever: tokens from elsewhere may live long. Raises
        ValueError when the verifier has no revocation list.
        """
        self._revocations().revoke_subject(user)

    def _revocations(self) -> Revocations:
        revocations = self.verifier.revocations
        if revocations is None:
            raise ValueError("this handler's verifier has no revocation list: give the "
                             "JWTVerifier revoked=RevocationList()")
        return revocations

    def _verified_principal(self, token: str, call: CallCredentials) -> Principal:
        generation = self.verifier.generation
        claims = _refuse_on_token_error(self.verifier.verify, token, call, self.method)
        name = claims.get(self.identity_claim)
        if not isinstance(name, str) or not name:
            audit_event(logging.WARNING, "token refused", call=call, scheme=self.method,
                        reason=f"no {self.identity_claim!r} claim")
            raise FlightUnauthenticatedError(INVALID)
        principal = Principal(name=name, method=self.method, claims=claims,
                              roles=self.roles_of(name, claims))
        exp = claims.get("exp")
        if isinstance(exp, int | float):
            self._verified.put(token, (principal, generation), float(exp))
        return principal

    def authenticate_call(self, call: CallCredentials) -> Principal:
        """The caller of a non-Handshake RPC, from ``auth-token-bin`` or a Bearer header."""
        return self.login(_presented_token(call), call)

    def authenticate_headers(self, call: CallCredentials) -> HeaderLogin | None:
        """Answer a Handshake carrying ``authorization: Bearer``; None without one."""
        token = call.bearer_token
        if token is None:
            return None
        principal = self.login(token, call)
        return HeaderLogin(principal, {"authorization": f"Bearer {token}"})

    def authenticate_handshake(self, call: CallCredentials, outgoing: ServerAuthSender,
                               incoming: ServerAuthReader) -> None:
        """Message handshake: the payload is the token; the reply echoes it."""
        payload = incoming.read()
        self.login(payload.decode("latin-1"), call)
        outgoing.write(payload)

    def authenticate(self, outgoing: ServerAuthSender, incoming: ServerAuthReader) -> None:
        """pyarrow's Handshake (no call at hand): as :meth:`authenticate_handshake`."""
        self.authenticate_handshake(CallCredentials.from_values(FlightMethod.HANDSHAKE),
                                    outgoing, incoming)

    def is_valid(self, token: bytes) -> str:
        """pyarrow's per-call check: the identity of a valid token, else UNAUTHENTICATED."""
        call = CallCredentials.from_values(FlightMethod.INVALID)
        return self.login((token or b"").decode("latin-1"), call).name


class JWTClientAuthHandler(ClientAuthHandler):
    """Sends a JWT as the Handshake payload.

    ``token`` is the token or a callable returning one; the callable is called on
    every handshake, so a client that re-authenticates before expiry presents a
    fresh token. ``get_token()`` returns the server's reply when it sent a
    non-empty one (Arrow servers may answer with their own session token), else
    the token presented.
    """

    writes_once = True

    def __init__(self, token: str | bytes | Callable[[], str | bytes]) -> None:
        self._source = token
        self._token = b""

    def __repr__(self) -> str:
        return "JWTClientAuthHandler(token=<redacted>)"

    def authenticate(self, outgoing: ClientAuthSender, incoming: ClientAuthReader) -> None:
        token = self._source() if callable(self._source) else self._source
        raw = token.encode("ascii") if isinstance(token, str) else bytes(token)
        outgoing.write(raw)
        reply = incoming.read()
        self._token = bytes(reply) if reply else raw

    def get_token(self) -> bytes:
        return self._token

