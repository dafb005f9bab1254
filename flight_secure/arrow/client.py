"""The client half of the adapter: flight_secure's client handlers on pyarrow.flight's client.

``pyarrow.flight.FlightClient.authenticate`` takes only pyarrow's own
``ClientAuthHandler``; :class:`ClientAuth` wraps any flight_secure handler
(``BasicClientAuthHandler``, ``JWTClientAuthHandler``, ...) as one. pyarrow's
client asks the handler for its token on every call, as ``auth-token-bin``.

Renewal, as flight_secure's own client does it: when the token is a JWT, the
handshake is run again shortly before it expires (see
:func:`flight_secure.session.refresh_time`). pyarrow's client cannot re-run a
handshake while it is in use (``authenticate`` replaces the handler that
other threads' calls are reading), so the renewal runs on a second client,
made by ``reconnect``; :func:`connect` sets that up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pyarrow.flight as pa_flight

from flight_secure import session
from flight_secure.arrow.errors import to_pyarrow
from flight_secure.auth.base import ClientAuthHandler
from flight_secure.errors import FlightError
from flight_secure.types import to_bytes

__all__ = ["ClientAuth", "connect"]

log = logging.getLogger("flight_secure.client")


class ClientAuth(pa_flight.ClientAuthHandler):
    """A flight_secure client handler, for ``pyarrow.flight.FlightClient.authenticate``.

    ``handler`` runs the Handshake as it does for flight_secure's client; its
    token is what pyarrow's client sends on later calls. With ``reconnect``, a
    function returning a new ``pyarrow.flight.FlightClient`` to the same server,
    a JWT token is renewed before it expires: the first call due for renewal
    runs ``handler``'s handshake on such a client (``options`` are its call
    options), while other threads keep sending the current token. A failed
    renewal is retried after ``flight_secure.session.REFRESH_RETRY`` seconds and
    its error raised to the call that triggered it, as flight_secure's own client
    does. Without ``reconnect`` the token is never renewed.
    """

    def __init__(self, handler: ClientAuthHandler,
                 reconnect: Callable[[], pa_flight.FlightClient] | None = None,
                 options: pa_flight.FlightCallOptions | None = None) -> None:
        super().__init__()
        self.handler = handler
        self._reconnect = reconnect
        self._options = options
        self._token = b""
        self._renew_at: float | None = None
        self._renewing = threading.Lock()

    def __repr__(self) -> str:
        return f"ClientAuth({self.handler!r})"

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        """Run ``handler``'s handshake; schedule the token's renewal."""
        try:
            self.handler.authenticate(outgoing, incoming)
            token = to_bytes(self.handler.get_token())
        except FlightError as exc:
            raise to_pyarrow(exc) from None
        self._token = token
        if self._reconnect is not None:
            self._renew_at = session.refresh_time(token, time.time())

    def get_token(self) -> bytes:
        """The current token, renewed first when it is due."""
        due = self._renew_at
        if due is not None and time.time() >= due:
            self._renew(due)
        return self._token

    def _renew(self, due: float) -> None:
        if not self._renewing.acquire(blocking=False):
            return  # another thread renews; the current token is still valid
        try:
            if self._renew_at != due:
                return  # renewed by another thread meanwhile
            self._renew_at = time.time() + session.REFRESH_RETRY
            assert self._reconnect is not None
            with self._reconnect() as renewal:
                renewal.authenticate(self, self._options)
            log.debug("renewed the session token of %r", self.handler)
        finally:
            self._renewing.release()


def connect(location: Any, auth_handler: ClientAuthHandler | None = None, *,
            options: pa_flight.FlightCallOptions | None = None,
            **client_options: Any) -> pa_flight.FlightClient:
    """A ``pyarrow.flight.FlightClient`` for ``location``, logged in with ``auth_handler``.

    ``client_options`` are pyarrow's (``tls_root_certs``, ``cert_chain``,
    ``private_key``, ``middleware``, ...); ``options`` the call options of the
    handshakes. The client sends ``auth_handler``'s token on every call and renews
    a JWT before it expires (:class:`ClientAuth`, renewing over a second client
    made with the same arguments). Raises what the login raises (the client is
    closed then).
    """
    client = pa_flight.FlightClient(location, **client_options)
    if auth_handler is None:
        return client
    auth = ClientAuth(auth_handler, lambda: pa_flight.FlightClient(location, **client_options),
                      options)
    try:
        client.authenticate(auth, options)
    except BaseException:
        client.close()
        raise
    return client
