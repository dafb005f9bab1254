"""The one place where a call's credentials become an identity.

:class:`AuthGate` is consulted by the server for every RPC before dispatch
(:meth:`AuthGate.admit`) and runs the Handshake RPC (:meth:`AuthGate.handshake`).
It decides with the configured handler and records every decision in the audit
log (logger ``flight_secure.audit``): who, method, peer and reason. Secrets
(passwords, tokens) never reach the log or the error messages.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any

from flight_secure.auth.base import (
    CallCredentials,
    HeaderLogin,
    Principal,
    ServerAuthHandler,
    ServerAuthReader,
    ServerAuthSender,
)
from flight_secure.errors import (
    FlightError,
    FlightUnauthenticatedError,
    FlightUnauthorizedError,
)
from flight_secure.types import FlightMethod

audit = logging.getLogger("flight_secure.audit")

REFUSED = "authentication required: no valid credentials were presented"


class _Sender(ServerAuthSender):
    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._send = send

    def write(self, message: bytes) -> None:
        self._send(bytes(message))


class _Reader(ServerAuthReader):
    def __init__(self, payloads: Iterator[bytes]) -> None:
        self._payloads = payloads

    def read(self) -> bytes:
        try:
            return next(self._payloads)
        except StopIteration:
            raise FlightUnauthenticatedError(
                "handshake ended before the client sent its credentials"
            ) from None


class AuthGate:
    """Admits or refuses calls for one server.

    ``handler`` is the server's auth handler (or None); ``tls_identity`` says that
    the server verifies client certificates, in which case, without a handler, the
    certificate's identity is the caller's identity. ``authorizer`` (optional) is
    called as ``authorizer(principal, method, action_type)`` and raises
    :class:`FlightUnauthorizedError` to refuse.
    """

    def __init__(
        self,
        handler: ServerAuthHandler | None,
        tls_identity: bool = False,
        authorizer: Callable[[Principal | None, FlightMethod, str | None], None] | None = None,
    ) -> None:
        self.handler = handler
        self.tls_identity = tls_identity
        self.authorizer = authorizer
        self._call_hook = getattr(handler, "authenticate_call", None)
        self._header_hook = getattr(handler, "authenticate_headers", None)
        self._wants_context = _accepts_context(handler)

    @property
    def needed(self) -> bool:
        """Whether calls need any authentication work at all."""
        return self.handler is not None or self.tls_identity

    def admit(self, call: CallCredentials) -> Principal | None:
        """The caller's principal, or raise UNAUTHENTICATED (audited)."""
        handler = self.handler
        if handler is None:
            return self._certificate_principal(call) if self.tls_identity else None
        try:
            if self._call_hook is not None:
                return self._call_hook(call)
            identity = handler.is_valid(call.auth_token or b"")
        except FlightUnauthenticatedError as exc:
            self._refuse(call, str(exc))
            raise
        except FlightError:
            raise
        except Exception as exc:
            self._refuse(call, f"{type(exc).__name__}: {exc}")
            raise FlightUnauthenticatedError(REFUSED) from None
        if identity is None:
            self._refuse(call, "handler returned no identity")
            raise FlightUnauthenticatedError(REFUSED)
        name = identity.decode("utf-8", "replace") if isinstance(identity, bytes) else str(identity)
        return Principal(name=name, method="token")

    def authorize(
        self, principal: Principal | None, method: FlightMethod, action_type: str | None, call
    ) -> None:
        """Apply the authorizer, if any; audited refusal with PERMISSION_DENIED."""
        if self.authorizer is None:
            return
        try:
            self.authorizer(principal, method, action_type)
        except FlightUnauthorizedError as exc:
            audit.warning(
                "call refused: who=%s method=%s action=%s peer=%s reason=%s",
                principal.name if principal else "-", method.name, action_type or "-",
                call.peer, exc,
            )
            raise

    def handshake(
        self,
        call: CallCredentials,
        payloads: Iterator[bytes],
        send: Callable[[bytes], None],
        context: Any = None,
    ) -> HeaderLogin | None:
        """Run the Handshake RPC's authentication.

        A handler that implements ``authenticate_headers`` first gets the chance to
        log the caller in from the call's headers (``authorization: Basic``); its
        result's headers are returned for the server to send. Otherwise the
        handler's ``authenticate(outgoing, incoming)`` exchanges messages through
        ``send`` and ``payloads``. Raises a Flight error to refuse.
        """
        handler = self.handler
        if handler is None:
            for _ in payloads:
                pass
            return None
        try:
            if self._header_hook is not None:
                login = self._header_hook(call)
                if login is not None:
                    audit.info(
                        "handshake ok: who=%s scheme=%s peer=%s",
                        login.principal.name, login.principal.method, call.peer,
                    )
                    return login
            if self._wants_context:
                handler.authenticate(_Sender(send), _Reader(payloads), context)
            else:
                handler.authenticate(_Sender(send), _Reader(payloads))
        except FlightError as exc:
            audit.warning("handshake refused: peer=%s reason=%s", call.peer, exc)
            raise
        except Exception as exc:
            audit.warning(
                "handshake refused: peer=%s reason=%s: %s", call.peer, type(exc).__name__, exc
            )
            raise FlightUnauthenticatedError(
                "handshake refused: the credentials were not accepted"
            ) from None
        audit.info("handshake ok: peer=%s handler=%s", call.peer, type(handler).__name__)
        return None

    def _certificate_principal(self, call: CallCredentials) -> Principal | None:
        pem = call.peer_certificate_pem
        if pem is None:
            return None
        from flight_secure.auth.mtls import principal_from_certificate

        return principal_from_certificate(pem)

    def _refuse(self, call: CallCredentials, reason: str) -> None:
        audit.warning(
            "call refused: method=%s peer=%s reason=%s", call.method.name, call.peer, reason
        )


def _accepts_context(handler: Any) -> bool:
    """Whether ``handler.authenticate`` takes a third (context) argument."""
    method = getattr(handler, "authenticate", None)
    if method is None:
        return False
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    positional = [
        p for p in params.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 3
