"""Server and client middleware, with pyarrow.flight's interfaces.

A server middleware factory sees every call's method and headers before the
handler runs, may refuse it by raising a Flight error, and may return a
middleware object that adds response headers and hears how the call ended. A
client middleware factory does the same on the client side.
"""

from __future__ import annotations

from typing import Any

from flight_secure.types import CallInfo

Headers = dict[str, list[Any]]


class ServerMiddleware:
    """Per-call server middleware; every method is optional."""

    def sending_headers(self) -> dict[str, Any] | None:
        """Headers to add to the response's initial metadata."""
        return None

    def call_completed(self, exception: BaseException | None) -> None:
        """Called once when the call ends, with the error it ended with (or None)."""


class ServerMiddlewareFactory:
    """Creates a :class:`ServerMiddleware` for each incoming call."""

    def start_call(self, info: CallInfo, headers: Headers) -> ServerMiddleware | None:
        """Return middleware for this call, None to skip, or raise a Flight error to refuse."""
        return None


class ClientMiddleware:
    """Per-call client middleware; every method is optional."""

    def sending_headers(self) -> dict[str, Any] | None:
        """Headers to add to the outgoing call."""
        return None

    def received_headers(self, headers: Headers) -> None:
        """The server's response headers (initial metadata and trailers)."""

    def call_completed(self, exception: BaseException | None) -> None:
        """Called once when the call ends, with the error it ended with (or None)."""


class ClientMiddlewareFactory:
    """Creates a :class:`ClientMiddleware` for each outgoing call."""

    def start_call(self, info: CallInfo) -> ClientMiddleware | None:
        return None


def headers_to_dict(metadata: Any) -> Headers:
    """gRPC metadata (key/value pairs) as pyarrow's ``{key: [values]}`` dictionary."""
    headers: Headers = {}
    for key, value in metadata or ():
        headers.setdefault(key, []).append(value)
    return headers


def headers_to_metadata(headers: Any) -> list[tuple[str, str | bytes]]:
    """Headers given as a dict or as pairs of str/bytes, as grpcio metadata.

    Keys become lowercase text; ``-bin`` keys carry bytes, others text.
    """
    pairs = headers.items() if isinstance(headers, dict) else headers
    out: list[tuple[str, str | bytes]] = []
    for key, values in pairs or ():
        name = (key.decode() if isinstance(key, bytes) else str(key)).lower()
        for value in values if isinstance(values, list | tuple) else (values,):
            if name.endswith("-bin"):
                out.append((name, value.encode() if isinstance(value, str) else bytes(value)))
            else:
                out.append((name, value.decode() if isinstance(value, bytes) else str(value)))
    return out
