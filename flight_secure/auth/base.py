"""The authentication contracts every auth scheme implements.

pyarrow.flight's two handler interfaces are kept as they are:

* :class:`ServerAuthHandler` — ``authenticate(outgoing, incoming)`` runs the
  Handshake RPC; ``is_valid(token)`` turns the token of a later call into an
  identity (or raises).
* :class:`ClientAuthHandler` — ``authenticate(outgoing, incoming)`` and
  ``get_token()``.

flight_secure adds one optional, richer hook that its built-in handlers use:
``authenticate_call(call: CallCredentials) -> Principal``. It sees everything the
server knows about the caller before dispatch (headers, peer, TLS certificate),
so a handler can accept ``authorization: Bearer`` as well as ``auth-token-bin``
and can bind a token to a client certificate. A handler may also implement
``authenticate_headers(call) -> HeaderLogin | None`` to answer a Handshake that
carries ``authorization: Basic ...`` in its headers.

:class:`~flight_secure.auth.gate.AuthGate` is the one place that calls these.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flight_secure.types import FlightMethod

AUTH_TOKEN_HEADER = "auth-token-bin"  # noqa: S105 (a header name, not a secret)
AUTHORIZATION_HEADER = "authorization"


@dataclass(frozen=True)
class CertificateInfo:
    """The verified client certificate of an mTLS connection."""

    subject: str
    identity: str
    sans: tuple[str, ...] = ()
    fingerprint_sha256: str = ""
    pem: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Principal:
    """Who is calling, as established by authentication.

    ``name`` is what ``ServerCallContext.peer_identity()`` returns (as bytes);
    ``method`` names the scheme ("basic", "jwt", "mtls", "token", ...);
    ``claims`` are the verified token claims, if any; ``roles`` feed authorization.
    """

    name: str
    method: str
    claims: Mapping[str, Any] = field(default_factory=dict)
    roles: frozenset[str] = frozenset()
    certificate: CertificateInfo | None = None

    @property
    def identity(self) -> bytes:
        return self.name.encode()


@dataclass(frozen=True)
class HeaderLogin:
    """The result of a header-based Handshake: who logged in and the headers to send."""

    principal: Principal
    response_headers: Mapping[str, str] = field(repr=False)  # carries the session token


class CallCredentials:
    """What the server knows about a caller before dispatch.

    Built lazily from the gRPC call: headers are parsed only when asked for, the
    peer certificate only when a handler needs it.
    """

    __slots__ = ("_certificate", "_grpc_context", "_metadata", "method")

    def __init__(self, method: FlightMethod, grpc_context: Any) -> None:
        self.method = method
        self._grpc_context = grpc_context
        self._metadata: tuple | None = None
        self._certificate: Any = False

    @property
    def metadata(self) -> tuple:
        if self._metadata is None:
            self._metadata = tuple(self._grpc_context.invocation_metadata() or ())
        return self._metadata

    def header(self, name: str) -> str | bytes | None:
        """The first value of header ``name`` (lowercase), or None."""
        for key, value in self.metadata:
            if key == name:
                return value
        return None

    @property
    def peer(self) -> str:
        return self._grpc_context.peer()

    @property
    def auth_token(self) -> bytes | None:
        """The ``auth-token-bin`` header (Arrow's token header), if present."""
        value = self.header(AUTH_TOKEN_HEADER)
        if value is None:
            return None
        return value if isinstance(value, bytes) else value.encode()

    def _authorization(self, scheme: str) -> str | None:
        value = self.header(AUTHORIZATION_HEADER)
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not value:
            return None
        prefix, _, rest = value.partition(" ")
        if prefix.lower() != scheme.lower():
            return None
        return rest.strip()

    @property
    def bearer_token(self) -> str | None:
        """The token of an ``authorization: Bearer <token>`` header, if present."""
        return self._authorization("Bearer")

    @property
    def basic_credentials(self) -> tuple[str, str] | None:
        """(user, password) from ``authorization: Basic base64(user:password)``.

        The base64 may leave out its ``=`` padding. Raises ValueError when the header
        is present but malformed.
        """
        encoded = self._authorization("Basic")
        if encoded is None:
            return None
        # Standard base64 with or without its "=" padding (Arrow Go's client sends none);
        # anything that is not exactly the encoding of what it decodes to is refused.
        unpadded = encoded.rstrip("=")
        try:
            raw = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
            canonical = base64.b64encode(raw).decode("ascii")
            if encoded not in (canonical, canonical.rstrip("=")):
                raise binascii.Error("not the canonical encoding")
            decoded = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("authorization: Basic header is not valid base64 UTF-8") from None
        user, sep, password = decoded.partition(":")
        if not sep:
            raise ValueError("authorization: Basic header has no user:password pair")
        return user, password

    @property
    def peer_certificate_pem(self) -> bytes | None:
        """The verified client certificate (PEM) of an mTLS connection, if any."""
        if self._certificate is False:
            auth = self._grpc_context.auth_context() or {}
            pems = auth.get("x509_pem_cert")
            self._certificate = pems[0] if pems else None
        return self._certificate


class ServerAuthSender:
    """The handshake's outgoing side on the server: ``write(bytes)``."""

    def write(self, message: bytes) -> None:
        raise NotImplementedError


class ServerAuthReader:
    """The handshake's incoming side on the server: ``read() -> bytes``."""

    def read(self) -> bytes:
        raise NotImplementedError


class ClientAuthSender(ServerAuthSender):
    """The handshake's outgoing side on the client."""


class ClientAuthReader(ServerAuthReader):
    """The handshake's incoming side on the client."""


class ServerAuthHandler:
    """Server side of an auth scheme (pyarrow.flight's interface).

    ``authenticate(outgoing, incoming)`` runs during the Handshake RPC and raises a
    Flight error to refuse. ``is_valid(token)`` is called for every other RPC with
    the ``auth-token-bin`` header (b"" when absent) and returns the caller's
    identity (bytes or str) or raises to refuse with UNAUTHENTICATED.
    """

    def authenticate(self, outgoing: ServerAuthSender, incoming: ServerAuthReader) -> None:
        raise NotImplementedError

    def is_valid(self, token: bytes) -> bytes | str:
        raise NotImplementedError


class ClientAuthHandler:
    """Client side of an auth scheme (pyarrow.flight's interface).

    ``authenticate(outgoing, incoming)`` runs the client half of the handshake;
    ``get_token()`` returns the token to send as ``auth-token-bin`` on later calls.

    A handler that sets ``writes_once = True`` promises to write exactly one message,
    before its first read. The client then sends the Handshake as a single request
    (no request-stream thread; the same bytes on the wire) and refuses a second write.
    The promise covers the class's own ``authenticate``: a subclass that overrides
    ``authenticate`` is a normal handler unless it sets ``writes_once`` itself.
    """

    writes_once: bool = False

    def authenticate(self, outgoing: ClientAuthSender, incoming: ClientAuthReader) -> None:
        raise NotImplementedError

    def get_token(self) -> bytes | str:
        raise NotImplementedError
