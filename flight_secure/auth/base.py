"""The authentication contract: what a server-side scheme is given and what it answers.

Everything a handler may implement is declared here, with its default, and
:class:`~flight_secure.auth.gate.AuthGate` is the one place that calls it:

* :class:`ServerAuthHandler` — pyarrow.flight's ``authenticate(outgoing, incoming)``
  and ``is_valid(token)``, plus the hooks that see the whole call
  (:class:`CallCredentials`): ``authenticate_headers``, ``authenticate_handshake``,
  ``authenticate_call``; ``needs_certificate`` says whether the handler can work
  at all without the client certificate. A pyarrow-style handler implements only
  the first two and the defaults route every hook to them.
* :class:`CallCredentials` — what the engine knows about a caller before dispatch:
  method, headers, peer, the verified client certificate when the engine can see
  it, and the claims a wrapping handler wants in tokens issued during the call.
  It is built the same way by every engine, from a grpcio context or from plain
  values (pyarrow's C++ engine shows a middleware the headers and the method,
  and ``ServerCallContext.peer()``, never the certificate).
* :class:`Principal` — who the caller is, as a handler established it;
  :class:`HeaderLogin` — a Handshake answered from its headers;
  :class:`LoginThrottledError` — a refused login that says when to retry.
* :class:`ClientAuthHandler` — the client half (pyarrow.flight's interface).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from flight_secure.errors import FlightUnauthenticatedError
from flight_secure.types import FlightMethod

AUTH_TOKEN_HEADER = "auth-token-bin"  # noqa: S105 (a header name, not a secret)
AUTHORIZATION_HEADER = "authorization"
#: Where a peer is not known (an engine that does not say).
UNKNOWN_PEER = "-"
#: The refusal of a call that must and does not come with a client certificate.
CERTIFICATE_REQUIRED = (
    "client certificate required: this server authenticates callers by mutual TLS "
    "(connect over grpc+tls:// with cert_chain= and private_key=)"
)

Headers = Iterable[tuple[str, str | bytes]] | Mapping[str, Iterable[str | bytes]]
"""Call headers as (name, value) pairs, or as pyarrow's ``{name: [values]}``."""

_NO_CLAIMS: Mapping[str, Any] = MappingProxyType({})


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


def principal_from_identity(identity: bytes | str | None) -> Principal:
    """The Principal (scheme ``"token"``) for what a pyarrow-style ``is_valid`` returned.

    An empty identity is admitted as pyarrow admits it (an anonymous caller that
    passed the handler); None is not an identity: FlightUnauthenticatedError.
    """
    if identity is None:
        raise FlightUnauthenticatedError("the auth handler returned no identity for the call")
    name = identity.decode("utf-8", "replace") if isinstance(identity, bytes) else str(identity)
    return Principal(name=name, method="token")


class LoginThrottledError(FlightUnauthenticatedError):
    """A login refused until ``retry_after`` seconds have passed (UNAUTHENTICATED).

    The server also sends the wait as a ``retry-after`` trailer (whole seconds).
    """

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class HeaderLogin:
    """The result of a header-based Handshake: who logged in and the headers to send."""

    principal: Principal
    response_headers: Mapping[str, str] = field(repr=False)  # carries the session token


def _pairs(headers: Headers) -> tuple[tuple[str, str | bytes], ...]:
    if isinstance(headers, Mapping):
        return tuple((str(key).lower(), value) for key, values in headers.items()
                     for value in ((values,) if isinstance(values, str | bytes) else values))
    return tuple(headers)


class CallCredentials:
    """What the server knows about a caller before dispatch, whatever the engine.

    * ``method`` — the RPC being called;
    * ``metadata`` — the call's headers as (lowercase name, value) pairs;
      :meth:`header`, :attr:`auth_token`, :attr:`bearer_token` and
      :attr:`basic_credentials` read them;
    * ``peer`` — the peer as gRPC writes it (``ipv4:10.0.0.1:5000``), or ``"-"``;
    * ``peer_certificate_pem`` — the verified client certificate (PEM) of an mTLS
      connection; None when the connection has none *or the engine cannot see it*;
    * ``certificates_visible`` — whether the engine can see client certificates at
      all, so a handler can tell "no certificate" from "cannot know";
    * ``token_claims`` — claims to add to any token a handler issues while
      serving this call (see :meth:`with_token_claims`).

    Build one with :meth:`from_grpc` or :meth:`from_values`. Values are read when
    first asked for (headers parsed, certificate fetched only if a handler needs it).
    """

    __slots__ = ("_certificate", "_load_certificate", "_load_metadata", "_load_peer",
                 "_metadata", "_peer", "certificates_visible", "method", "token_claims")

    def __init__(self, method: FlightMethod, *,
                 metadata: Callable[[], Iterable[tuple[str, str | bytes]]],
                 peer: Callable[[], str], certificate: Callable[[], bytes | None],
                 certificates_visible: bool,
                 token_claims: Mapping[str, Any] = _NO_CLAIMS) -> None:
        """Prefer :meth:`from_grpc` or :meth:`from_values`; the sources here are called
        at most once, when the value is first needed."""
        self.method = method
        self.certificates_visible = certificates_visible
        self.token_claims = token_claims
        self._load_metadata, self._load_peer, self._load_certificate = metadata, peer, certificate
        self._metadata: tuple | None = None
        self._peer: str | None = None
        self._certificate: Any = False

    @classmethod
    def from_grpc(cls, method: FlightMethod, grpc_context: Any) -> CallCredentials:
        """The caller of a grpcio server call (``grpc.ServicerContext``).

        Reads only the context's public API: ``invocation_metadata()``, ``peer()`` and
        ``auth_context()`` (its ``x509_pem_cert``, set by gRPC for a verified client
        certificate).
        """

        def certificate() -> bytes | None:
            pems = (grpc_context.auth_context() or {}).get("x509_pem_cert")
            return pems[0] if pems else None

        return cls(method, metadata=grpc_context.invocation_metadata, peer=grpc_context.peer,
                   certificate=certificate, certificates_visible=True)

    @classmethod
    def from_values(cls, method: FlightMethod, headers: Headers = (),
                    peer: str = UNKNOWN_PEER, certificate: bytes | None = None, *,
                    certificates_visible: bool = False) -> CallCredentials:
        """A caller described by plain values, e.g. what pyarrow's engine shows a middleware.

        ``headers`` as pairs or as ``{name: [values]}``; ``certificate`` is the verified
        client certificate's PEM, when the engine knows it; ``certificates_visible``
        says whether it could (True when a certificate is given).
        """
        pairs = _pairs(headers)
        return cls(method, metadata=lambda: pairs, peer=lambda: peer,
                   certificate=lambda: certificate,
                   certificates_visible=certificates_visible or certificate is not None)

    def with_token_claims(self, claims: Mapping[str, Any]) -> CallCredentials:
        """This call, with ``claims`` added to :attr:`token_claims` (a new object).

        A handler that wraps another hands it such a call, so that the tokens the
        inner handler issues carry what the wrapper needs (e.g. a certificate
        binding) without either changing the other's configuration.
        """
        merged = MappingProxyType({**self.token_claims, **claims})
        copy = CallCredentials(self.method, metadata=self._load_metadata, peer=self._load_peer,
                               certificate=self._load_certificate,
                               certificates_visible=self.certificates_visible,
                               token_claims=merged)
        copy._metadata, copy._peer, copy._certificate = self._metadata, self._peer, \
            self._certificate
        return copy

    @property
    def metadata(self) -> tuple:
        """The call's headers as (lowercase name, value) pairs; ``-bin`` values are bytes."""
        if self._metadata is None:
            self._metadata = tuple(self._load_metadata() or ())
        return self._metadata

    def header(self, name: str) -> str | bytes | None:
        """The first value of header ``name`` (lowercase), or None."""
        for key, value in self.metadata:
            if key == name:
                return value
        return None

    @property
    def peer(self) -> str:
        """The peer as gRPC writes it (``ipv4:10.0.0.1:5000``), or ``"-"`` when unknown."""
        if self._peer is None:
            self._peer = self._load_peer() or UNKNOWN_PEER
        return self._peer

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
        """The verified client certificate (PEM) of an mTLS connection.

        None when the connection has none, and always None where the engine cannot
        see certificates (:attr:`certificates_visible` is then False).
        """
        if self._certificate is False:
            self._certificate = self._load_certificate()
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
    """Server side of an auth scheme: every hook the server calls, with its default.

    **Refusing.** Any hook refuses by raising: :class:`FlightUnauthenticatedError`
    (UNAUTHENTICATED) for missing or bad credentials, :class:`FlightUnauthorizedError`
    (PERMISSION_DENIED) for a caller who is known but not let in, another Flight
    error for its own status. Any other exception is refused as UNAUTHENTICATED; its
    text goes to the audit log, never to the client. A hook that returns None where
    a Principal is due refuses the call too: no path admits a caller without one.

    **pyarrow.flight's interface** (all a pyarrow-style handler implements):

    * :meth:`authenticate` ``(outgoing, incoming)`` runs the Handshake RPC's message
      exchange;
    * :meth:`is_valid` ``(token)`` turns the ``auth-token-bin`` header of any other
      call (b"" when absent) into the caller's identity (bytes or str; empty is an
      anonymous caller the handler let in, as in pyarrow).

    **The hooks that see the call** (:class:`CallCredentials`), in the order the
    server calls them:

    * :meth:`authenticate_headers` — Handshake, first: log the caller in from the
      call's headers (``authorization: Basic`` or ``Bearer``) and return a
      :class:`HeaderLogin`, or None to go on with the message exchange;
    * :meth:`authenticate_handshake` — Handshake, then: the message exchange, with
      the call at hand (peer, certificate, :attr:`CallCredentials.token_claims`);
    * :meth:`authenticate_call` — every other RPC, before dispatch: the caller's
      :class:`Principal`.

    **Configuration.** :attr:`needs_certificate` is True for a handler that cannot
    work without the client certificate; an engine that cannot see certificates
    refuses such a handler when it is configured, not call by call. :meth:`close`
    releases what the handler holds (threads); the server's owner calls it.
    """

    #: True when the handler needs the verified client certificate of each call.
    needs_certificate: bool = False

    def authenticate(self, outgoing: ServerAuthSender, incoming: ServerAuthReader) -> None:
        """pyarrow's Handshake: read the client's messages, write replies; raise to refuse."""
        raise NotImplementedError

    def is_valid(self, token: bytes) -> bytes | str:
        """pyarrow's per-call check: the identity for ``token``, or raise to refuse."""
        raise NotImplementedError

    def authenticate_headers(self, call: CallCredentials) -> HeaderLogin | None:
        """Log the caller of a Handshake in from its headers; None to run the exchange.

        The default finds nothing to log in with (None).
        """
        return None

    def authenticate_handshake(self, call: CallCredentials, outgoing: ServerAuthSender,
                               incoming: ServerAuthReader) -> None:
        """The Handshake's message exchange, knowing the call; raise to refuse.

        The default is pyarrow's :meth:`authenticate` ``(outgoing, incoming)``.
        """
        self.authenticate(outgoing, incoming)

    def authenticate_call(self, call: CallCredentials) -> Principal:
        """The caller of a non-Handshake RPC; raise to refuse.

        The default asks pyarrow's :meth:`is_valid` about the ``auth-token-bin``
        header (b"" when absent): its identity becomes a Principal with scheme
        ``"token"``; None is refused (see :func:`principal_from_identity`).
        """
        return principal_from_identity(self.is_valid(call.auth_token or b""))

    def close(self) -> None:
        """Release what the handler holds; the default holds nothing."""


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
