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
  token's claim ``cnf: {"x5t#S256": <thumbprint>}``, see :func:`certificate_thumbprint`).

Refusals: no client certificate, or a token that is invalid or bound to another
certificate -> :class:`FlightUnauthenticatedError` (UNAUTHENTICATED); a verified
certificate whose identity is not in ``allowed`` -> :class:`FlightUnauthorizedError`
(PERMISSION_DENIED: the caller is known, it is just not let in).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

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

audit = logging.getLogger("flight_secure.audit")

#: Where an identity may come from, in the default order of preference.
IDENTITY_SOURCES = ("uri", "email", "dns", "cn")
#: SAN kinds kept in :attr:`CertificateInfo.sans`, labelled ``"<kind>:<value>"``.
_SAN_KINDS: dict[str, type[x509.GeneralName]] = {
    "uri": x509.UniformResourceIdentifier,
    "email": x509.RFC822Name,
    "dns": x509.DNSName,
    "ip": x509.IPAddress,
}
CNF_CLAIM = "cnf"
THUMBPRINT_MEMBER = "x5t#S256"


def _certificate(pem: bytes | str) -> x509.Certificate:
    data = pem.encode() if isinstance(pem, str) else bytes(pem)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ValueError("not a PEM X.509 certificate") from None


def certificate_thumbprint(pem: bytes | str) -> str:
    """The RFC 8705 ``x5t#S256`` of a certificate: unpadded base64url of SHA-256(DER).

    Raises ValueError when ``pem`` is not a PEM certificate.
    """
    return _thumbprint(hashlib.sha256(_certificate(pem).public_bytes(Encoding.DER)).digest())


def _thumbprint(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def binding_claims(pem: bytes | str) -> dict[str, Any]:
    """The claims that bind a token to certificate ``pem``: ``{"cnf": {"x5t#S256": ...}}``."""
    return {CNF_CLAIM: {THUMBPRINT_MEMBER: certificate_thumbprint(pem)}}


def _sans(certificate: x509.Certificate) -> dict[str, list[str]]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return {}
    return {
        kind: [str(value) for value in extension.value.get_values_for_type(general_name)]
        for kind, general_name in _SAN_KINDS.items()
    }


@lru_cache(maxsize=256)
def _info(pem: bytes, identity_from: tuple[str, ...]) -> CertificateInfo:
    certificate = _certificate(pem)
    sans = _sans(certificate)
    candidates = dict(sans)
    candidates["cn"] = [
        str(attribute.value)
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]
    identity = next((candidates[s][0] for s in identity_from if candidates.get(s)), None)
    if not identity:
        raise FlightUnauthenticatedError(
            f"the client certificate names no identity in {', '.join(identity_from)}"
        )
    return CertificateInfo(
        subject=certificate.subject.rfc4514_string(),
        identity=identity,
        sans=tuple(f"{kind}:{value}" for kind, values in sans.items() for value in values),
        fingerprint_sha256=hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest(),
        pem=pem,
    )


def _sources(identity_from: Sequence[str]) -> tuple[str, ...]:
    sources = (identity_from,) if isinstance(identity_from, str) else tuple(identity_from)
    unknown = [s for s in sources if s not in IDENTITY_SOURCES]
    if unknown or not sources:
        raise ValueError(
            f"identity_from must name some of {', '.join(IDENTITY_SOURCES)}, not {sources!r}"
        )
    return sources


def certificate_info(
    pem: bytes | str, *, identity_from: Sequence[str] = IDENTITY_SOURCES
) -> CertificateInfo:
    """The details of certificate ``pem``; see :func:`principal_from_certificate`."""
    data = pem.encode() if isinstance(pem, str) else bytes(pem)
    return _info(data, _sources(identity_from))


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
        self.identity_from = _sources(identity_from)
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
        info = _info(bytes(pem), self.identity_from)
        if self.allowed is not None and info.identity not in self.allowed:
            audit.warning(
                "call refused: method=%s peer=%s reason=certificate identity %r not allowed",
                call.method.name, call.peer, info.identity,
            )
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
    confirmation = principal.claims.get(CNF_CLAIM) if principal.claims else None
    bound = confirmation.get(THUMBPRINT_MEMBER) if isinstance(confirmation, Mapping) else None
    if not isinstance(bound, str):
        raise FlightUnauthenticatedError(
            "the token is not bound to a client certificate (no cnf x5t#S256 claim)"
        )
    expected = _thumbprint(bytes.fromhex(certificate.fingerprint_sha256))
    if not hmac.compare_digest(bound.encode(), expected.encode()):
        raise FlightUnauthenticatedError(
            "the token was issued to another client certificate than this connection's"
        )
