"""Tokens bound to a client certificate (RFC 8705), and the check every token handler runs.

A bound token carries the claim ``cnf: {"x5t#S256": <thumbprint>}``: the base64url
SHA-256 of the DER of the one client certificate it may be presented over
(:func:`binding_claims` makes it). Whoever holds such a token without that
certificate's private key must get nothing from it, so :func:`check_binding`,
which every token handler runs on every call, refuses a bound token with
UNAUTHENTICATED unless the call came over a connection whose verified client
certificate is that one:

* on a connection without a client certificate;
* where the engine cannot see client certificates (pyarrow's C++ engine), as the
  binding cannot be checked there;
* over another certificate;
* when ``cnf`` is not a thumbprint this server can check (a key-bound ``jkt`` or
  ``jwk`` confirmation, say).

A token without ``cnf`` is not bound and passes. Requiring a binding is the
business of :class:`~flight_secure.auth.mtls.MutualTLSServerAuthHandler` with
``bind_tokens=True`` (see :func:`bound_thumbprint`).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from flight_secure.auth.base import CallCredentials
from flight_secure.auth.certificates import certificate_thumbprint
from flight_secure.errors import FlightUnauthenticatedError

__all__ = ["CNF_CLAIM", "THUMBPRINT_MEMBER", "binding_claims", "bound_thumbprint",
           "check_binding"]

CNF_CLAIM = "cnf"
THUMBPRINT_MEMBER = "x5t#S256"

#: What a refused bound token is told, by why.
UNCHECKABLE = ("the token is bound to a client certificate, which this server cannot see; "
               "it is not accepted here")
NO_CERTIFICATE = ("the token is bound to a client certificate: present it over a connection "
                  "with that certificate")
OTHER_CERTIFICATE = "the token was issued to another client certificate than this connection's"
UNKNOWN_CONFIRMATION = ("the token is bound (cnf) to a key this server cannot check; it is "
                        "not accepted here")


def binding_claims(pem: bytes | str) -> dict[str, Any]:
    """The claims that bind a token to certificate ``pem``: ``{"cnf": {"x5t#S256": ...}}``."""
    return {CNF_CLAIM: {THUMBPRINT_MEMBER: certificate_thumbprint(pem)}}


def bound_thumbprint(claims: Mapping[str, Any]) -> str | None:
    """The certificate thumbprint a token with ``claims`` is bound to; None when it
    carries no ``cnf``. Raises FlightUnauthenticatedError when ``cnf`` holds no
    ``x5t#S256`` string (a binding this server cannot check)."""
    confirmation = claims.get(CNF_CLAIM)
    if confirmation is None:
        return None
    bound = confirmation.get(THUMBPRINT_MEMBER) if isinstance(confirmation, Mapping) else None
    if not isinstance(bound, str):
        raise FlightUnauthenticatedError(UNKNOWN_CONFIRMATION)
    return bound


def check_binding(claims: Mapping[str, Any], call: CallCredentials) -> None:
    """Refuse (FlightUnauthenticatedError) a token with ``claims`` bound to a client
    certificate other than the verified one ``call`` came over; return for an unbound
    token or the right certificate."""
    bound = bound_thumbprint(claims)
    if bound is None:
        return
    pem = call.peer_certificate_pem
    if pem is None:
        raise FlightUnauthenticatedError(
            NO_CERTIFICATE if call.certificates_visible else UNCHECKABLE)
    if not hmac.compare_digest(bound.encode(), certificate_thumbprint(bytes(pem)).encode()):
        raise FlightUnauthenticatedError(OTHER_CERTIFICATE)
