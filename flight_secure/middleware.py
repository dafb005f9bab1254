"""Server and client middleware, with pyarrow.flight's interfaces.

A server middleware factory sees every call's method and headers before the
handler runs, may refuse it by raising a Flight error, and may return a
middleware object that adds response headers and hears how the call ended. A
client middleware factory does the same on the client side;
:class:`ClientCallMiddleware` calls a client call's middleware as Arrow's
clients do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from flight_secure.types import CallInfo

log = logging.getLogger("flight_secure.client")

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
        """Headers from the server: called with its response headers when they
        arrive (if it sent any), then with its trailers when the call ends."""

    def call_completed(self, exception: BaseException | None) -> None:
        """Called once when the call ends, with the error it ended with (or None)."""


class ClientMiddlewareFactory:
    """Creates a :class:`ClientMiddleware` for each outgoing call."""

    def start_call(self, info: CallInfo) -> ClientMiddleware | None:
        return None


class ClientCallMiddleware:
    """The client middleware of one call, called when and as Arrow's clients call it.

    The factories' ``start_call(info)`` results are the call's middleware (None
    skips one). :meth:`outgoing_metadata` is what their ``sending_headers`` add to
    the call; :meth:`headers_arrived` hands them the server's response headers,
    once, if there are any; :meth:`finish` hands them the trailers and then the
    call's error (or None), once. A factory or middleware method that raises is
    logged and left out, as pyarrow does: the call goes on.
    """

    __slots__ = ("_finished", "_headers_seen", "instances")

    def __init__(self, factories: Iterable[ClientMiddlewareFactory], info: CallInfo) -> None:
        self.instances: list[ClientMiddleware] = []
        for factory in factories:
            try:
                instance = factory.start_call(info)
            except Exception:
                log.warning("client middleware start_call failed; skipped", exc_info=True)
                continue
            if instance is not None:
                self.instances.append(instance)
        self._headers_seen = False
        self._finished = False

    def outgoing_metadata(self) -> list[tuple[str, str | bytes]]:
        """The headers the middleware adds to the call, as gRPC metadata."""
        metadata: list[tuple[str, str | bytes]] = []
        for instance in self.instances:
            try:
                sent = instance.sending_headers()
            except Exception:
                log.warning("client middleware sending_headers failed", exc_info=True)
                continue
            if sent:
                metadata.extend(headers_to_metadata(sent))
        return metadata

    def headers_arrived(self, call: Any) -> None:
        """Tell the middleware ``call``'s response headers (the first time only, and
        only when there are some); ``call`` is a grpcio call whose headers are in."""
        if self._headers_seen:
            return
        self._headers_seen = True
        metadata = _call_metadata(call, "initial_metadata")
        if metadata:
            headers = headers_to_dict(metadata)
            self._each("received_headers", lambda instance: instance.received_headers(headers))

    def finish(self, call: Any, error: BaseException | None) -> None:
        """The call ended with ``error`` (None: success): tell the middleware its
        response headers (if not yet told), its trailers, then how it ended. Once."""
        if self._finished:
            return
        self._finished = True
        self.headers_arrived(call)
        trailers = headers_to_dict(_call_metadata(call, "trailing_metadata"))
        self._each("received_headers", lambda instance: instance.received_headers(trailers))
        self._each("call_completed", lambda instance: instance.call_completed(error))

    def _each(self, what: str, tell: Callable[[ClientMiddleware], Any]) -> None:
        for instance in self.instances:
            try:
                tell(instance)
            except Exception:
                log.warning("client middleware %s failed", what, exc_info=True)


def _call_metadata(call: Any, which: str) -> tuple:
    """``call``'s initial or trailing metadata; empty when grpcio has none to give."""
    try:
        return tuple(getattr(call, which)() or ())
    except Exception:  # a call that never started has no metadata
        return ()


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
