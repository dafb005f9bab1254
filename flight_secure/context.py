"""ServerCallContext: what a handler knows about the call it is serving."""

from __future__ import annotations

from typing import Any

from flight_secure.auth.base import CallCredentials, Principal
from flight_secure.middleware import Headers, ServerMiddleware, headers_to_dict
from flight_secure.types import FlightMethod


class ServerCallContext:
    """Per-call context handed to every RPC handler.

    ``peer_identity()`` is the authenticated identity (bytes, empty when the server
    has no authentication); ``principal`` carries the details (scheme, claims,
    roles, client certificate).
    """

    __slots__ = (
        "_credentials",
        "_grpc_context",
        "_headers",
        "_middleware",
        "_response_headers",
        "_trailers",
        "method",
        "principal",
    )

    def __init__(self, grpc_context: Any, method: FlightMethod) -> None:
        self._grpc_context = grpc_context
        self.method = method
        self.principal: Principal | None = None
        self._credentials: CallCredentials | None = None
        self._headers: Headers | None = None
        self._middleware: dict[str, ServerMiddleware] | None = None
        self._response_headers: list[tuple[str, Any]] | None = None
        self._trailers: list[tuple[str, Any]] | None = None

    @property
    def credentials(self) -> CallCredentials:
        """What the auth gate sees of this call (headers, peer, client certificate)."""
        if self._credentials is None:
            self._credentials = CallCredentials.from_grpc(self.method, self._grpc_context)
        return self._credentials

    def peer_identity(self) -> bytes:
        """The authenticated caller's identity; b"" when none was established."""
        return self.principal.identity if self.principal is not None else b""

    def peer(self) -> str:
        """The peer's address as gRPC reports it, e.g. ``ipv4:127.0.0.1:50432``."""
        return self._grpc_context.peer()

    def is_cancelled(self) -> bool:
        """True once the client cancelled the call or it otherwise ended."""
        return not self._grpc_context.is_active()

    @property
    def headers(self) -> Headers:
        """The call's incoming headers, ``{name: [values]}``."""
        if self._headers is None:
            self._headers = headers_to_dict(self.credentials.metadata)
        return self._headers

    def get_middleware(self, key: str) -> ServerMiddleware | None:
        """The middleware instance that factory ``key`` created for this call."""
        return (self._middleware or {}).get(key)

    def add_header(self, key: str, value: str | bytes) -> None:
        """Send an extra response header (before the first response message)."""
        if self._response_headers is None:
            self._response_headers = []
        self._response_headers.append((key.lower(), value))

    def add_trailer(self, key: str, value: str | bytes) -> None:
        """Send an extra trailer when the call ends."""
        if self._trailers is None:
            self._trailers = []
        self._trailers.append((key.lower(), value))

    def attach_middleware(self, instances: dict[str, ServerMiddleware]) -> None:
        """The middleware the server started for this call, by factory key."""
        self._middleware = instances

    def take_response_headers(self) -> list[tuple[str, Any]]:
        """The headers added with :meth:`add_header` since the last take, as pairs."""
        headers, self._response_headers = self._response_headers or [], None
        return headers

    def take_trailers(self) -> list[tuple[str, Any]]:
        """The trailers added with :meth:`add_trailer` since the last take, as pairs."""
        trailers, self._trailers = self._trailers or [], None
        return trailers

    def __repr__(self) -> str:
        identity = self.peer_identity()
        return f"<ServerCallContext method={self.method.name} peer_identity={identity!r}>"
