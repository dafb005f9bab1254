"""Mutual TLS: the verified client certificate as the caller's identity.

The TLS layer (the server's ``verify_client=True`` and ``root_certificates``) has
already verified the certificate chain by the time a call arrives; this module only
reads the verified leaf certificate and decides who it names.

* :func:`principal_from_certificate` turns a certificate into a :class:`Principal`
  (``method="mtls"``). The identity is the first URI SAN (a SPIFFE ID, say), else
  the first e-mail SAN, else the first DNS SAN, else the subject CN; the order and
  the sources are ``identity_from``.
* :class:`MutualTLSServerAuthHandler` requires that certificate, optionally checks
  its identity against an allow-list, and can wrap a token handler so that a call
  must carry both a certificate and a valid token. With ``bind_tokens=True`` a
  token is accepted only from the certificate it was issued to (RFC 8705: the
  token's claim ``cnf: {"x5t#S256": <thumbprint>}``, see :mod:`~flight_secure.auth.binding`);
  without, a token bound to a certificate is still accepted only over that one.

Refusals: no client certificate, or a token that is invalid or bound to another
certificate -> :class:`FlightUnauthenticatedError` (UNAUTHENTICATED); a verified
certificate whose identity is not in ``allowed`` -> :class:`FlightUnauthorizedError`
(PERMISSION_DENIED: the caller is known, it is just not let in).
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
from collections.abc import Iterable, Sequence

from flight_secure.auth.audit import audit_event
from flight_secure.auth.base import (
    CERTIFICATE_REQUIRED,
    CallCredentials,
    CertificateInfo,
    HeaderLogin,
    Principal,
    ServerAuthHandler,
    ServerAuthReader,
    ServerAuthSender,
)
from flight_secure.auth.binding import OTHER_CERTIFICATE, binding_claims, bound_thumbprint
from flight_secure.auth.certificates import (
    IDENTITY_SOURCES,
    certificate_info,
    certificate_thumbprint,
    identity_sources,
    thumbprint,
)
from flight_secure.errors import FlightUnauthenticatedError, FlightUnauthorizedError

__all__ = [
    "CERTIFICATE_REQUIRED",
    "IDENTITY_SOURCES",
    "MutualTLSServerAuthHandler",
    "binding_claims",
    "certificate_info",
    "certificate_thumbprint",
    "principal_from_certificate",
]

def principal_from_certificate(
    pem: bytes | str, *, identity_from: Sequence[str] = IDENTITY_SOURCES
) -> Principal:
    """The caller named by a verified client certificate (PEM).

    The identity is the first value found in the sources ``identity_from``, tried
    in order: ``"uri"`` (first URI SAN, e.g. ``spiffe://example.org/alice``),
    ``"email"`` (first e-mail SAN), ``"dns"`` (first DNS SAN), ``"cn"`` (subject CN).
    The Principal has ``method="mtls"`` and ``certificate`` set: subject (RFC 4514),
    identity, SANs (``"uri:..."``, ``"email:..."``, ``"dns:..."``, ``"ip:..."``),
    SHA-256 fingerprint (lowercase hex of the DER) and the PEM.

    This does not verify the certificate: pass only one the TLS layer verified.
    Raises ValueError for a malformed PEM or unknown source names, and
    FlightUnauthenticatedError when the certificate holds none of the sources.
    """
    info = certificate_info(pem, identity_from=identity_from)
    return Principal(name=info.identity, method="mtls", certificate=info)


class MutualTLSServerAuthHandler(ServerAuthHandler):
    """Authenticates callers by their verified client certificate, alone or with a token.

    The server must verify client certificates (``verify_client=True`` with
    ``root_certificates``); a call without one is refused with UNAUTHENTICATED
    (:data:`CERTIFICATE_REQUIRED`), and an engine that cannot see certificates
    refuses this handler at configuration (``needs_certificate``). ``identity_from``
    orders the identity sources (see :func:`principal_from_certificate`).
    ``allowed``, when given, lists the identities let in (an empty list lets no one
    in); a verified certificate with another identity is refused with
    PERMISSION_DENIED.

    Without ``inner``, the certificate's Principal is the caller's. With ``inner``
    (a token handler), each call needs the certificate *and* ``inner``'s approval:
    this handler checks the certificate, then hands the call to the same hook of
    ``inner`` (``authenticate_headers``, ``authenticate_handshake``,
    ``authenticate_call``); the caller's Principal is ``inner``'s with
    ``certificate`` attached.

    ``bind_tokens=True`` (needs ``inner``) accepts a token only if the Principal
    ``inner`` returns carries the claim ``cnf: {"x5t#S256": ...}`` equal to the
    thumbprint of the connection's certificate; unbound tokens are refused. In a
    Handshake, ``inner`` is handed the call with that binding in its
    :attr:`~flight_secure.auth.base.CallCredentials.token_claims`, so a handler
    that issues tokens (``BasicServerAuthHandler``) binds them to the certificate
    presented. ``inner`` itself is never changed: wrapping it twice binds the same
    certificate once.
    """

    needs_certificate = True

    def __init__(
        self,
        inner: ServerAuthHandler | None = None,
        *,
        identity_from: Sequence[str] = IDENTITY_SOURCES,
        allowed: Iterable[str] | None = None,
        bind_tokens: bool = False,
    ) -> None:
        if bind_tokens and inner is None:
            raise ValueError("bind_tokens=True needs an inner token handler")
        if isinstance(allowed, str):
            raise TypeError("allowed must be a collection of identities, not one string")
        self.inner = inner
        self.identity_from = identity_sources(identity_from)
        self.allowed = None if allowed is None else frozenset(allowed)
        self.bind_tokens = bind_tokens

    def __repr__(self) -> str:
        return (f"MutualTLSServerAuthHandler(inner={self.inner!r}, "
                f"bind_tokens={self.bind_tokens})")

    # ------------------------------------------------------------ the contract

    def authenticate_call(self, call: CallCredentials) -> Principal:
        """The caller's Principal for a non-Handshake call, or raise to refuse."""
        certificate = self._certified(call)
        if self.inner is None:
            return Principal(name=certificate.identity, method="mtls", certificate=certificate)
        principal = self.inner.authenticate_call(call)
        if not isinstance(principal, Principal):
            raise FlightUnauthenticatedError("the token was not accepted")
        if self.bind_tokens:
            _check_binding(principal, certificate)
        return dataclasses.replace(principal, certificate=certificate)

    def authenticate_headers(self, call: CallCredentials) -> HeaderLogin | None:
        """A Handshake: check the certificate, then let ``inner`` log in from headers."""
        certificate = self._certified(call)
        if self.inner is None:
            return None
        login = self.inner.authenticate_headers(self._for_inner(call))
        if login is None:
            return None
        principal = dataclasses.replace(login.principal, certificate=certificate)
        return HeaderLogin(principal, login.response_headers)

    def authenticate_handshake(self, call: CallCredentials, outgoing: ServerAuthSender,
                               incoming: ServerAuthReader) -> None:
        """A Handshake without header login: check the certificate, then run ``inner``'s."""
        self._certified(call)
        if self.inner is not None:
            self.inner.authenticate_handshake(self._for_inner(call), outgoing, incoming)

    def authenticate(self, outgoing: ServerAuthSender, incoming: ServerAuthReader) -> None:
        """Not usable alone: without the call there is no certificate to check."""
        raise FlightUnauthenticatedError(CERTIFICATE_REQUIRED)

    def is_valid(self, token: bytes) -> bytes:
        """Not usable alone: a token says nothing about the connection's certificate."""
        raise FlightUnauthenticatedError(
            "MutualTLSServerAuthHandler needs the call's certificate: use authenticate_call"
        )

    def close(self) -> None:
        """Close ``inner``."""
        if self.inner is not None:
            self.inner.close()

    # ---------------------------------------------------------------- helpers

    def _certified(self, call: CallCredentials) -> CertificateInfo:
        """The connection's certificate, refused when absent or not allowed."""
        pem = call.peer_certificate_pem
        if pem is None:
            raise FlightUnauthenticatedError(CERTIFICATE_REQUIRED)
        info = certificate_info(pem, identity_from=self.identity_from)
        if self.allowed is not None and info.identity not in self.allowed:
            audit_event(logging.WARNING, "call refused", call=call, who=info.identity,
                        scheme="mtls", rpc=call.method,
                        reason="certificate identity not allowed")
            raise FlightUnauthorizedError(
                f"client certificate identity {info.identity!r} is not allowed on this server"
            )
        return info

    def _for_inner(self, call: CallCredentials) -> CallCredentials:
        """The call as ``inner`` sees it: with the certificate binding to put in tokens."""
        if not self.bind_tokens:
            return call
        return call.with_token_claims(binding_claims(call.peer_certificate_pem))


def _check_binding(principal: Principal, certificate: CertificateInfo) -> None:
    """Refuse unless ``principal``'s token is bound to ``certificate`` (RFC 8705)."""
    bound = bound_thumbprint(principal.claims) if principal.claims else None
    if bound is None:
        raise FlightUnauthenticatedError(
            "the token is not bound to a client certificate (no cnf x5t#S256 claim)"
        )
    if not hmac.compare_digest(bound.encode(), thumbprint(certificate).encode()):
        raise FlightUnauthenticatedError(OTHER_CERTIFICATE)
