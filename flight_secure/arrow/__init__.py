"""flight_secure's security layer on pyarrow.flight's C++ engine.

An existing ``pyarrow.flight`` server gains Basic or JWT login, authorization and
the audit log with one line, and reads the caller with :func:`principal`::

    import pyarrow.flight as flight
    import flight_secure.arrow
    from flight_secure.auth import AccessPolicy, BasicServerAuthHandler, PasswordStore

    class MyServer(flight.FlightServerBase):
        def do_get(self, context, ticket):
            caller = flight_secure.arrow.principal(context)   # name, method, claims, roles
            ...

    handler = BasicServerAuthHandler(PasswordStore.load("users.htpasswd"))
    server = MyServer("grpc+tls://0.0.0.0:8815", **flight_secure.arrow.server_options(
        handler, AccessPolicy({"DoPut": {"writer"}, "*": {"reader"}}),
        tls_certificates=[(cert_pem, key_pem)]))

The handlers are the ones flight_secure's own engine runs, decided by the same
:class:`~flight_secure.auth.gate.AuthGate`: the same logins on the wire, the same
refusals, the same audit records. What pyarrow's engine does not show Python
(the client certificate, the peer's address) is listed in :func:`server_options`.

A server written for flight_secure's engine runs on pyarrow's, unchanged, with
:class:`ArrowServer`. On the client side, :func:`connect` gives a
``pyarrow.flight.FlightClient`` logged in with a flight_secure client handler,
renewing its token before it expires; :class:`ClientAuth` wraps such a handler
for a client made elsewhere.
"""

from __future__ import annotations

from flight_secure.arrow.bridge import ArrowServer, HandlerContext
from flight_secure.arrow.client import ClientAuth, connect
from flight_secure.arrow.errors import from_pyarrow, to_pyarrow
from flight_secure.arrow.server import (
    MIDDLEWARE_KEY,
    authorize_action,
    principal,
    server_options,
)

__all__ = [
    "MIDDLEWARE_KEY",
    "ArrowServer",
    "ClientAuth",
    "HandlerContext",
    "authorize_action",
    "connect",
    "from_pyarrow",
    "principal",
    "server_options",
    "to_pyarrow",
]
