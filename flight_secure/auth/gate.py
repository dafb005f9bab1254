"""The one place where a call's credentials become an identity.

:class:`AuthGate` is consulted by the server for every RPC before dispatch
(:meth:`AuthGate.admit`) and runs the Handshake RPC (:meth:`AuthGate.handshake`).
It calls the hooks :class:`~flight_secure.auth.base.ServerAuthHandler` declares,
and nothing else, so it works the same for every scheme and every engine. It
records every refusal and login in the audit log (:mod:`flight_secure.auth.audit`):
who, RPC, peer, client certificate and reason. Secrets (passwords, tokens) never
reach the log or the error messages.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from flight_secure.auth.audit import audit_event
from flight_secure.auth.base import (
    AUTHORIZATION_HEADER,
    CERTIFICATE_REQUIRED,
    CallCredentials,
    HeaderLogin,
    Principal,
    ServerAuthHandler,
    ServerAuthReader,
    ServerAuthSender,
)
from flight_secure.auth.handshakes import HandshakeAdmission
from flight_secure.errors import (
    FlightError,
    FlightUnauthenticatedError,
    FlightUnauthorizedError,
)
from flight_secure.types import FlightMethod

REFUSED = "authentication required: no valid credentials were presented"

Authorizer = Callable[[Principal | None, FlightMethod, str | None], None]


class _Sender(ServerAuthSender):
    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._send = send

    def write(self, message: bytes) -> None:
        self._send(bytes(message))


class _Reader(ServerAuthReader):
    """The client's messages; ``on_first`` runs when the first one has arrived."""

    def __init__(self, payloads: Iterator[bytes], on_first: Callable[[], None] | None) -> None:
        self._payloads = payloads
        self._on_first = on_first

    def read(self) -> bytes:
        try:
            payload = next(self._payloads)
        except StopIteration:
            raise FlightUnauthenticatedError(
                "handshake ended before the client sent its credentials"
            ) from None
        if self._on_first is not None:
            on_first, self._on_first = self._on_first, None
            on_first()
        return payload


class AuthGate:
    """Admits or refuses calls for one server.

    ``handler`` is the server's auth handler (None: every caller is admitted, with
    no principal). ``authorizer`` (optional) is called as
    ``authorizer(principal, method, action_type)`` and raises
    :class:`FlightUnauthorizedError` to refuse. ``require_certificate`` refuses
    every call (Handshake included) that arrives without a verified client
    certificate, whatever the handler: set it when the server was asked to verify
    client certificates, so a transport that does not demand one cannot let a
    caller in without. ``certificates_visible`` says whether the engine can see
    client certificates at all.

    Raises ValueError at construction when the handler needs the client
    certificate (``needs_certificate``) or ``require_certificate`` is set but the
    engine cannot see certificates.
    """

    def __init__(self, handler: ServerAuthHandler | None, authorizer: Authorizer | None = None,
                 *, require_certificate: bool = False, certificates_visible: bool = True) -> None:
        if not certificates_visible:
            if handler is not None and handler.needs_certificate:
                raise ValueError(
                    f"{type(handler).__name__} needs the client certificate of each call, "
                    "and this engine cannot see client certificates"
                )
            if require_certificate:
                raise ValueError("this engine cannot see client certificates, so it cannot "
                                 "make them the condition of every call")
        self.handler = handler
        self.authorizer = authorizer
        self.require_certificate = require_certificate

    @property
    def needed(self) -> bool:
        """Whether calls need any authentication work at all."""
        return self.handler is not None or self.require_certificate

    def admit(self, call: CallCredentials) -> Principal | None:
        """The caller's principal (None without a handler), or raise (audited).

        UNAUTHENTICATED for missing or refused credentials; a Flight error the
        handler raised keeps its status (e.g. PERMISSION_DENIED).
        """
        handler = self.handler
        try:
            if self.require_certificate:
                self._check_certificate(call)
            if handler is None:
                return None
            principal = handler.authenticate_call(call)
        except FlightUnauthenticatedError as exc:
            self._refuse(call, str(exc))
            raise
        except FlightError:
            raise
        except Exception as exc:
            self._refuse(call, f"{type(exc).__name__}: {exc}")
            raise FlightUnauthenticatedError(REFUSED) from None
        if not isinstance(principal, Principal):
            self._refuse(call, "handler returned no principal")
            raise FlightUnauthenticatedError(REFUSED)
        return principal

    def authorize(self, principal: Principal | None, method: FlightMethod,
                  action_type: str | None, call: CallCredentials) -> None:
        """Apply the authorizer, if any; audited refusal with PERMISSION_DENIED."""
        if self.authorizer is None:
            return
        try:
            self.authorizer(principal, method, action_type)
        except FlightUnauthorizedError as exc:
            audit_event(logging.WARNING, "call refused", call=call,
                        who=principal.name if principal else None,
                        scheme=principal.method if principal else None, rpc=method,
                        action=action_type, reason=str(exc))
            raise

    def handshake(self, call: CallCredentials, payloads: Iterator[bytes],
                  send: Callable[[bytes], None],
                  admission: HandshakeAdmission | None = None) -> HeaderLogin | None:
        """Run the Handshake RPC's authentication: :meth:`login_from_headers`, then,
        when that found nothing to log in with, :meth:`exchange_messages`.

        Returns the :class:`HeaderLogin` (for the server to send its headers) or
        None after a message exchange. Raises a Flight error to refuse.
        ``admission`` (see :mod:`~flight_secure.auth.handshakes`) hears when the
        credentials arrive: before ``authenticate_headers`` when the call carries
        an ``authorization`` header, else when the handler reads the first message.
        """
        login = self.login_from_headers(call, admission)
        if login is not None:
            return login
        self.exchange_messages(call, payloads, send, admission)
        return None

    def login_from_headers(self, call: CallCredentials,
                           admission: HandshakeAdmission | None = None) -> HeaderLogin | None:
        """The Handshake's first step: the handler's ``authenticate_headers``.

        Returns its :class:`HeaderLogin` (audited), or None when the headers hold
        nothing to log in with (also without a handler). An engine that must send
        the response headers before it reads the client's messages calls this and
        :meth:`exchange_messages` at those two moments. Raises a Flight error to
        refuse (audited).
        """
        login = None
        with self._handshake_refusals(call):
            if self.require_certificate:
                self._check_certificate(call)
            if self.handler is None:
                return None
            if admission is not None and call.header(AUTHORIZATION_HEADER) is not None:
                admission.credentials_arrived()
            login = self.handler.authenticate_headers(call)
            if login is not None and not isinstance(login.principal, Principal):
                raise FlightUnauthenticatedError("the login established no principal")
        if login is not None:
            audit_event(logging.INFO, "handshake ok", call=call, who=login.principal.name,
                        scheme=login.principal.method)
        return login

    def exchange_messages(self, call: CallCredentials, payloads: Iterator[bytes],
                          send: Callable[[bytes], None],
                          admission: HandshakeAdmission | None = None) -> None:
        """The Handshake's second step: the handler's ``authenticate_handshake``.

        It reads the client's messages from ``payloads`` and replies through
        ``send``; without a handler the messages are read and ignored. Call it only
        after :meth:`login_from_headers` returned None for the same call. Raises a
        Flight error to refuse (audited).
        """
        handler = self.handler
        arrived = admission.credentials_arrived if admission is not None else None
        with self._handshake_refusals(call):
            if handler is None:
                for _ in payloads:
                    pass
                return
            handler.authenticate_handshake(call, _Sender(send), _Reader(payloads, arrived))
        audit_event(logging.INFO, "handshake ok", call=call, scheme=type(handler).__name__)

    @contextlib.contextmanager
    def _handshake_refusals(self, call: CallCredentials) -> Iterator[None]:
        """Audit a refused Handshake; anything but a Flight error becomes UNAUTHENTICATED."""
        try:
            yield
        except FlightError as exc:
            audit_event(logging.WARNING, "handshake refused", call=call, reason=str(exc))
            raise
        except Exception as exc:
            audit_event(logging.WARNING, "handshake refused", call=call,
                        reason=f"{type(exc).__name__}: {exc}")
            raise FlightUnauthenticatedError(
                "handshake refused: the credentials were not accepted"
            ) from None

    def _check_certificate(self, call: CallCredentials) -> None:
        if call.peer_certificate_pem is None:
            raise FlightUnauthenticatedError(CERTIFICATE_REQUIRED)

    def _refuse(self, call: CallCredentials, reason: str) -> None:
        audit_event(logging.WARNING, "call refused", call=call, rpc=call.method,
                    reason=reason)
