"""Authentication set-ups compared by the ``basic`` and ``jwt`` variants.

``basic``: a handshake carrying user and password, checked with bcrypt at the
configured cost, answered with a session token that every later call presents.
``jwt``: the client presents a token minted beforehand by a shared-secret
"identity provider"; the handshake verifies and echoes it, and every later call
presents it.

* flight_secure: its own handlers. basic = ``BasicServerAuthHandler(PasswordStore)``
  (its session tokens are EdDSA JWTs) with ``BasicClientAuthHandler``; jwt =
  ``JWTServerAuthHandler(JWTVerifier.from_secret(secret, ["HS256"]))`` with
  ``JWTClientAuthHandler``.
* pyarrow: handlers written here on pyarrow's ``ServerAuthHandler``/
  ``ClientAuthHandler``; tokens are ``base64(claims).base64(HMAC-SHA256)`` with
  an expiry, checked in ``is_valid`` on every call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from types import ModuleType
from typing import Any

import bcrypt

SCHEMES = ("basic", "jwt")
TOKEN_TTL_S = 3600
USER, PASSWORD = "bench", "bench-password-0123"


class HmacTokens:
    """Issues and checks ``base64(claims).base64(hmac)`` tokens signed with ``key``."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _sign(self, payload: bytes) -> bytes:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest())

    def issue(self, subject: str) -> bytes:
        """A token for ``subject`` valid for TOKEN_TTL_S seconds."""
        body = json.dumps({"sub": subject, "exp": int(time.time()) + TOKEN_TTL_S}).encode()
        payload = base64.urlsafe_b64encode(body)
        return payload + b"." + self._sign(payload)

    def check(self, token: bytes) -> str | None:
        """The token's subject if its signature and expiry are good, else None."""
        payload, _, signature = token.partition(b".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        claims = json.loads(base64.urlsafe_b64decode(payload))
        return claims["sub"] if claims["exp"] > time.time() else None


def _pyarrow_server_handler(flight: ModuleType, tokens: HmacTokens, hashed: bytes | None) -> Any:
    class HmacServerAuthHandler(flight.ServerAuthHandler):
        """With ``hashed``: ``user:password`` in, new token out; else a token in, echoed."""

        def authenticate(self, outgoing: Any, incoming: Any) -> None:
            payload = incoming.read()
            if hashed is None:
                if tokens.check(payload) is None:
                    raise flight.FlightUnauthenticatedError("bad token")
                outgoing.write(payload)
                return
            name, _, secret = payload.partition(b":")
            if name.decode() != USER or not bcrypt.checkpw(secret, hashed):
                raise flight.FlightUnauthenticatedError("bad credentials")
            outgoing.write(tokens.issue(USER))

        def is_valid(self, token: bytes) -> bytes:
            subject = tokens.check(token) if token else None
            if subject is None:
                raise flight.FlightUnauthenticatedError("bad token")
            return subject.encode()

    return HmacServerAuthHandler()


def _pyarrow_client_handler(flight: ModuleType, message: bytes) -> Any:
    class MessageClientAuthHandler(flight.ClientAuthHandler):
        """Sends ``message`` (credentials or a token); presents the reply as the token."""

        def __init__(self) -> None:
            super().__init__()
            self.token = b""

        def authenticate(self, outgoing: Any, incoming: Any) -> None:
            outgoing.write(message)
            self.token = incoming.read()

        def get_token(self) -> bytes:
            return self.token

    return MessageClientAuthHandler()


def server_handler(impl: str, flight: ModuleType, scheme: str, cost: int, secret: bytes) -> Any:
    """The server auth handler of ``impl`` for ``scheme``.

    ``cost`` is the bcrypt cost of the stored password (basic); ``secret`` the
    identity provider's HMAC key (jwt). Raises ImportError/AttributeError when
    flight_secure's auth API is missing.
    """
    if impl == "pyarrow":
        if scheme == "jwt":
            return _pyarrow_server_handler(flight, HmacTokens(secret), None)
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=cost))
        return _pyarrow_server_handler(flight, HmacTokens(secrets.token_bytes(32)), hashed)
    from flight_secure import auth

    if scheme == "jwt":
        return auth.JWTServerAuthHandler(auth.JWTVerifier.from_secret(secret, ["HS256"]))
    store = auth.PasswordStore(rounds=cost)
    store.add(USER, PASSWORD)
    return auth.BasicServerAuthHandler(store)


def client_handler(impl: str, flight: ModuleType, scheme: str, secret: bytes) -> Any:
    """A fresh client auth handler of ``impl`` for ``client.authenticate``.

    For jwt a new token is minted with ``secret`` (the identity provider's part).
    """
    if impl == "pyarrow":
        if scheme == "jwt":
            return _pyarrow_client_handler(flight, HmacTokens(secret).issue(USER))
        return _pyarrow_client_handler(flight, f"{USER}:{PASSWORD}".encode())
    from flight_secure import auth

    if scheme == "jwt":
        return auth.JWTClientAuthHandler(auth.JWTIssuer(secret, "HS256").issue(USER))
    return auth.BasicClientAuthHandler(USER, PASSWORD)
