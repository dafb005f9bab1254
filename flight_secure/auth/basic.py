"""Username and password logins (bcrypt htpasswd) that hand out signed session tokens.

:class:`BasicServerAuthHandler` logs a user in once and gives back a short-lived
JWT; every later call presents that JWT and is checked like any bearer token (it
is a :class:`~flight_secure.auth.jwt_auth.JWTServerAuthHandler`). Two logins:

* the message Handshake of Arrow's ``BasicAuth``: the payload is a serialized
  ``BasicAuth`` (``flight_secure.BasicAuth`` or pyarrow's), the reply the token;
  clients send it back as ``auth-token-bin`` (what pyarrow's ``authenticate`` does);
* ``authorization: Basic base64(user:password)`` on the Handshake's headers
  (pyarrow's ``authenticate_basic_token``): the response header
  ``authorization: Bearer <token>`` carries the token.

Passwords are checked through a :class:`~flight_secure.auth.guard.LoginGuard`
(bounded bcrypt off the RPC threads, lockouts per user and per client host). The
client is told only "invalid username or password" for an unknown user and a
wrong password alike; every login is audited (``flight_secure.audit``).

:class:`BasicClientAuthHandler` is the client half of the message Handshake.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flight_secure.auth.audit import audit_event
from flight_secure.auth.base import (
    CallCredentials,
    ClientAuthHandler,
    ClientAuthReader,
    ClientAuthSender,
    HeaderLogin,
    LoginThrottledError,
    Principal,
    ServerAuthReader,
    ServerAuthSender,
)
from flight_secure.auth.guard import LoginGuard
from flight_secure.auth.jwt_auth import JWTServerAuthHandler, claim_roles
from flight_secure.auth.network import peer_network
from flight_secure.auth.passwords import PasswordStore
from flight_secure.auth.revocation import RevocationList, Revocations
from flight_secure.auth.tokens import Claims, JWTIssuer, JWTVerifier
from flight_secure.errors import (
    FlightInvalidArgumentError,
    FlightUnauthenticatedError,
    FlightUnavailableError,
)
from flight_secure.types import BasicAuth

__all__ = ["BasicClientAuthHandler", "BasicServerAuthHandler"]

#: A BasicAuth message holds a user name (at most 255 characters) and a password
#: (at most 72 bytes); anything much larger is not one.
MAX_HANDSHAKE_PAYLOAD = 4096

#: The ``iss`` of tokens from the ephemeral issuer a handler makes for itself.
EPHEMERAL_ISSUER = "flight-secure-basic"
#: The session-token claim naming the password it was issued for.
CREDENTIAL_CLAIM = "credential"
#: What a call with a session whose password changed (or whose user is gone) is told.
SESSION_ENDED = "session ended: the password changed or the user was removed; log in again"

#: What a refused login tells the client, per LoginGuard reason. Unknown user and
#: wrong password are both "bad_credentials": one message, nothing to tell them apart.
REFUSALS = {
    "bad_credentials": "invalid username or password",
    "throttled": "too many failed logins; try again in {retry_after} s",
    "busy": "too many logins in progress; try again later",
    "timeout": "the login took too long; try again later",
    "unavailable": "logins are unavailable right now; try again later",
}


class BasicServerAuthHandler(JWTServerAuthHandler):
    """Checks passwords against ``store`` and issues JWT session tokens.

    ``issuer`` signs the session tokens and ``verifier`` checks them; give both or
    neither. With neither, the handler makes an ephemeral Ed25519 key of its own
    (tokens from one server instance are worthless to any other), tokens live
    ``token_ttl`` seconds and ``revoked`` (default: a new in-memory
    :class:`~flight_secure.auth.revocation.RevocationList`) lists revoked ones; a
    given issuer uses its own ttl, a given verifier its own revocation list.

    **Sessions end with the password.** Each session token carries the claim
    ``credential``: the user's :meth:`PasswordStore.fingerprint` at login. Every
    call compares it with the store (a lookup, no bcrypt), so removing the user or
    changing the password (``store.remove``, ``store.add``, or an edited file that
    ``store.reload`` picked up) ends every session of theirs at the next call.
    :meth:`revoke_token` and :meth:`revoke_user` end sessions on demand.

    ``roles`` maps user names to roles, looked up on every call (so changes apply
    to tokens already issued); a ``roles`` claim in the token adds to them.
    ``guard`` limits and throttles password checks; by default the handler makes
    its own :class:`LoginGuard` (default limits), which :meth:`close` stops.
    A session token carries the login call's
    :attr:`~flight_secure.auth.base.CallCredentials.token_claims` (how
    :class:`~flight_secure.auth.mtls.MutualTLSServerAuthHandler` binds it to the
    client certificate of the login). The Principal of a call has
    ``method="basic"``, ``name`` the user name and the token's claims.
    """

    method = "basic"

    def __init__(self, store: PasswordStore, issuer: JWTIssuer | None = None,
                 verifier: JWTVerifier | None = None, *,
                 roles: Mapping[str, Iterable[str]] | None = None,
                 guard: LoginGuard | None = None, token_ttl: float = 900.0,
                 revoked: Revocations | None = None) -> None:
        if (issuer is None) != (verifier is None):
            raise ValueError("give both issuer and verifier (the verifier must accept the "
                             "issuer's tokens), or neither for an ephemeral signing key")
        if issuer is None or verifier is None:
            key = Ed25519PrivateKey.generate()
            issuer = JWTIssuer(key, "EdDSA", issuer=EPHEMERAL_ISSUER, ttl=token_ttl)
            verifier = JWTVerifier(key.public_key(), ["EdDSA"], issuer=EPHEMERAL_ISSUER,
                                   leeway=0,
                                   revoked=RevocationList() if revoked is None else revoked)
        elif revoked is not None:
            raise ValueError("a given verifier checks its own revocation list: give "
                             "revoked= to the JWTVerifier")
        super().__init__(verifier, identity_claim="sub", roles_claim="roles")
        self.store = store
        self.issuer = issuer
        self._roles = roles
        self._owns_guard = guard is None
        self.guard = LoginGuard() if guard is None else guard

    def __repr__(self) -> str:
        return f"BasicServerAuthHandler(store={self.store!r}, issuer={self.issuer!r})"

    def close(self) -> None:
        """Stop the LoginGuard this handler made for itself (a given guard is left alone)."""
        if self._owns_guard:
            self.guard.close()

    def roles_of(self, name: str, claims: Claims) -> frozenset[str]:
        """The roles of the token's ``roles`` claim (``roles`` adds to them per call)."""
        return claim_roles(claims, "roles")

    def current(self, principal: Principal, call: CallCredentials) -> Principal:
        """``principal`` with the roles ``roles`` grants its user now; UNAUTHENTICATED
        when the session's password is no longer the user's (or the user is gone)."""
        expected = self.store.fingerprint(principal.name)
        presented = principal.claims.get(CREDENTIAL_CLAIM)
        if expected is None or not isinstance(presented, str) or not hmac.compare_digest(
                presented.encode("utf-8"), expected.encode("ascii")):
            audit_event(logging.WARNING, "session ended", call=call, who=principal.name,
                        scheme=self.method, reason="the user was removed or the password "
                        "changed")
            raise FlightUnauthenticatedError(SESSION_ENDED)
        granted = self._roles.get(principal.name) if self._roles else None
        if not granted:
            return principal
        roles = principal.roles.union(granted)
        return principal if roles == principal.roles else replace(principal, roles=roles)

    def issue_token(self, user: str, password: str | bytes, call: CallCredentials) -> str:
        """A session token for ``user`` if ``password`` is right, else UNAUTHENTICATED.

        The check runs in the guard (which may also refuse: locked out, busy, or
        UNAVAILABLE when its shared counters cannot be reached); the outcome is
        audited with the reason, never the password. The token carries
        ``call.token_claims``.
        """
        peer = call.peer
        decision = self.guard.check(user, peer_network(peer),
                                    lambda: self.store.verify(user, password))
        if not decision.allowed:
            audit_event(logging.WARNING, "login refused", call=call, who=user,
                        scheme=self.method, reason=decision.reason)
            wait = decision.retry_after_seconds
            message = REFUSALS[decision.reason].format(retry_after=wait)
            if wait is not None:
                raise LoginThrottledError(message, wait)
            if decision.reason == "unavailable":  # no check ran: not the caller's fault
                raise FlightUnavailableError(message)
            raise FlightUnauthenticatedError(message)
        credential = self.store.fingerprint(user)
        if credential is None:  # removed since the check
            raise FlightUnauthenticatedError(REFUSALS["bad_credentials"])
        audit_event(logging.INFO, "login ok", call=call, who=user, scheme=self.method,
                    reason="password verified")
        return self.issuer.issue(user, **{**call.token_claims, CREDENTIAL_CLAIM: credential})

    def revoke_user(self, user: str) -> None:
        """End every session ``user`` has now; a later login starts a new one.

        Raises ValueError when the verifier has no revocation list.
        """
        self._revocations().revoke_subject(
            user, until=time.time() + self.issuer.ttl + self.verifier.leeway + 1)

    def authenticate_headers(self, call: CallCredentials) -> HeaderLogin | None:
        """Log in from ``authorization: Basic``; a Bearer header is checked as a token.

        Returns None when the Handshake carries neither, so the message handshake runs.
        """
        try:
            credentials = call.basic_credentials
        except ValueError as exc:
            raise FlightUnauthenticatedError(str(exc)) from None
        if credentials is None:
            return super().authenticate_headers(call)
        user, password = credentials
        token = self.issue_token(user, password, call)
        principal = self.login(token, call)
        return HeaderLogin(principal, {"authorization": f"Bearer {token}"})

    def authenticate_handshake(self, call: CallCredentials, outgoing: ServerAuthSender,
                               incoming: ServerAuthReader) -> None:
        """Message handshake: read one serialized BasicAuth, reply with the token.

        A payload that is too large or not a BasicAuth message is refused with
        UNAUTHENTICATED before any password check.
        """
        payload = incoming.read()
        if len(payload) > MAX_HANDSHAKE_PAYLOAD:
            raise FlightUnauthenticatedError(
                f"handshake payload of {len(payload)} bytes is too large for a BasicAuth "
                f"message (at most {MAX_HANDSHAKE_PAYLOAD})"
            )
        try:
            auth = BasicAuth.deserialize(payload)
        except FlightInvalidArgumentError:
            raise FlightUnauthenticatedError(
                "handshake payload is not a serialized BasicAuth message"
            ) from None
        token = self.issue_token(auth.username.decode("utf-8"), auth.password, call)
        outgoing.write(token.encode("ascii"))


class BasicClientAuthHandler(ClientAuthHandler):
    """Client half of Arrow's BasicAuth Handshake.

    Sends ``BasicAuth(username, password)`` and keeps the server's reply as the
    token (sent as ``auth-token-bin`` on later calls). Works against flight_secure's
    :class:`BasicServerAuthHandler` and against pyarrow servers whose handler
    reads a BasicAuth. The password is kept for re-authentication but never shown.
    """

    writes_once = True

    def __init__(self, username: str | bytes, password: str | bytes) -> None:
        self._auth = BasicAuth(username, password)
        self._token = b""

    def __repr__(self) -> str:
        return f"BasicClientAuthHandler(username={self._auth.username!r})"

    def authenticate(self, outgoing: ClientAuthSender, incoming: ClientAuthReader) -> None:
        outgoing.write(self._auth.serialize())
        self._token = bytes(incoming.read())

    def get_token(self) -> bytes:
        return self._token
