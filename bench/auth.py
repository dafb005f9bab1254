"""Authentication set-ups compared by the ``auth`` variant.

* flight_secure: its own ``BasicServerAuthHandler(PasswordStore)`` (bcrypt-checked
  Basic handshake, then a JWT on every call) and ``BasicClientAuthHandler``.
* pyarrow: a comparable handler written here on pyarrow's legacy
  ``ServerAuthHandler``/``ClientAuthHandler``: the handshake carries
  ``user:password`` checked with bcrypt at the same cost, and returns an
  HMAC-SHA256-signed token with an expiry that ``is_valid`` verifies on every call.
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

TOKEN_TTL_S = 3600


class HmacTokens:
    """Issues and checks ``base64(payload).base64(hmac)`` tokens; one random key per instance."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

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


def _pyarrow_server_handler(flight: ModuleType, user: str, password: str, cost: int) -> Any:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost))

    class HmacServerAuthHandler(flight.ServerAuthHandler):
        """Handshake: ``user:password`` in, signed token out; is_valid checks the token."""

        def __init__(self) -> None:
            super().__init__()
            self.tokens = HmacTokens()

        def authenticate(self, outgoing: Any, incoming: Any) -> None:
            name, _, secret = incoming.read().partition(b":")
            if name.decode() != user or not bcrypt.checkpw(secret, hashed):
                raise flight.FlightUnauthenticatedError("bad credentials")
            outgoing.write(self.tokens.issue(user))

        def is_valid(self, token: bytes) -> bytes:
            subject = self.tokens.check(token) if token else None
            if subject is None:
                raise flight.FlightUnauthenticatedError("bad token")
            return subject.encode()

    return HmacServerAuthHandler()


def _pyarrow_client_handler(flight: ModuleType, user: str, password: str) -> Any:
    class HmacClientAuthHandler(flight.ClientAuthHandler):
        """Sends ``user:password`` once; then presents the returned token."""

        def __init__(self) -> None:
            super().__init__()
            self.token = b""

        def authenticate(self, outgoing: Any, incoming: Any) -> None:
            outgoing.write(f"{user}:{password}".encode())
            self.token = incoming.read()

        def get_token(self) -> bytes:
            return self.token

    return HmacClientAuthHandler()


def server_handler(impl: str, flight: ModuleType, user: str, password: str, cost: int) -> Any:
    """The server auth handler of ``impl`` accepting ``user``/``password`` (bcrypt ``cost``).

    Raises ImportError/AttributeError/TypeError when flight_secure's auth API is missing.
    """
    if impl == "pyarrow":
        return _pyarrow_server_handler(flight, user, password, cost)
    from flight_secure.auth import BasicServerAuthHandler, PasswordStore

    store = PasswordStore(rounds=cost)
    store.add(user, password)
    return BasicServerAuthHandler(store)


def client_handler(impl: str, flight: ModuleType, user: str, password: str) -> Any:
    """A fresh client auth handler of ``impl`` for ``client.authenticate``."""
    if impl == "pyarrow":
        return _pyarrow_client_handler(flight, user, password)
    from flight_secure.auth import BasicClientAuthHandler

    return BasicClientAuthHandler(user, password)
