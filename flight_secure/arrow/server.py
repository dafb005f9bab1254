"""The server half of the adapter: flight_secure's auth gate inside pyarrow.flight's engine.

pyarrow's C++ server calls Python at three points of a call, all on the thread
that serves it, in this order:

* ``ServerAuthHandler.is_valid(token)`` (every RPC but Handshake): the
  ``auth-token-bin`` header alone; no method, no other header, no peer;
* ``ServerMiddlewareFactory.start_call(info, headers)``: the method and every
  header; the response headers of its middleware are taken right after;
* ``ServerAuthHandler.authenticate(outgoing, incoming)`` (Handshake only): the
  message stream; no header, no peer.

So the call is decided in ``start_call``, the only point that sees the whole
call: :class:`AuthMiddlewareFactory` builds the
:class:`~flight_secure.auth.base.CallCredentials` (peer unknown, certificate
invisible) and asks :class:`~flight_secure.auth.gate.AuthGate`, the same code the
Python engine runs: ``admit`` and ``authorize`` for every RPC, ``login_from_headers``
for a Handshake. The Handshake's message exchange runs later in
:class:`HandshakeHandler.authenticate` (``exchange_messages``); ``is_valid``
admits every token, the decision having been left to ``start_call``.

The caller's Principal is kept for the rest of the call per serving thread
(pyarrow runs middleware and handler on one thread) and read with
:func:`principal`. A ``threading.local`` would not do: pyarrow gives each
callback a fresh Python thread state, and the thread's locals with it. So the
record is keyed by the thread's ident and valid only for the same
``threading.current_thread()`` object, which a Python thread that later reuses a
finished thread's ident never is. pyarrow's own ``context.peer_identity()``
stays empty: it is filled by ``is_valid``, which runs before the headers are seen.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

import pyarrow.flight as pa_flight

from flight_secure.arrow.errors import from_pyarrow, to_pyarrow
from flight_secure.auth.base import UNKNOWN_PEER, CallCredentials, Principal, ServerAuthHandler
from flight_secure.auth.gate import AuthGate, Authorizer
from flight_secure.types import FlightMethod

__all__ = [
    "MIDDLEWARE_KEY",
    "AuthMiddlewareFactory",
    "HandshakeHandler",
    "authorize_action",
    "principal",
    "server_options",
]

#: The key of the adapter's middleware in pyarrow's ``middleware`` dict.
MIDDLEWARE_KEY = "flight_secure.auth"

#: pyarrow's method enum -> flight_secure's, by name (pyarrow's has no PollFlightInfo).
_METHODS: Mapping[Any, FlightMethod] = {
    method: FlightMethod[method.name] for method in pa_flight.FlightMethod
}

NOT_SERVING = (
    "no call is known on this thread: principal() and authorize_action() work on the "
    "thread pyarrow serves the call on, in a server configured with "
    "flight_secure.arrow.server_options()"
)
ENGINE_CANNOT_SEE_CERTIFICATES = (
    "pyarrow.flight's engine does not show Python the client certificate, so it "
    "cannot give certificate identities or check certificate-bound tokens; serve with "
    "flight_secure.FlightServerBase for those (verify_client=True still admits only "
    "clients with a certificate from root_certificates)"
)


class _ServedCall:
    """What the thread serving a call knows of it, from its ``start_call`` on.

    ``gate`` is the AuthGate of the call's server; ``principal`` the caller it
    admitted; ``handshake`` the credentials of a Handshake whose messages are
    still to be exchanged (dropped once they are: the record outlives the call,
    and no header of a call, where tokens travel, is kept past it). ``thread`` is
    the ``threading.current_thread()`` the record belongs to.
    """

    __slots__ = ("gate", "handshake", "principal", "thread")

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.gate: AuthGate | None = None
        self.principal: Principal | None = None
        self.handshake: CallCredentials | None = None


#: Thread ident -> the call that thread serves (or served last).
_served: dict[int, _ServedCall] = {}


def _starting_call() -> _ServedCall:
    """The record of the current thread, made or reused for a call that starts."""
    thread = threading.current_thread()
    record = _served.get(thread.ident)
    if record is None or record.thread is not thread:
        record = _served[thread.ident] = _ServedCall(thread)
    return record


def _current_call() -> _ServedCall:
    """The record of the call the current thread serves; RuntimeError without one."""
    thread = threading.current_thread()
    record = _served.get(thread.ident)
    if record is None or record.thread is not thread or record.gate is None:
        raise RuntimeError(NOT_SERVING)
    return record

class _LoginHeaders(pa_flight.ServerMiddleware):
    """Sends the response headers of a header login (the session token)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)

    def sending_headers(self) -> dict[str, str]:
        return self._headers

    def __repr__(self) -> str:
        return "_LoginHeaders(<redacted>)"


def _header_pairs(headers: dict[str, list]) -> list[tuple[str, str | bytes]]:
    """pyarrow's ``{name: [values]}`` (names already lowercase) as (name, value) pairs."""
    return [(name, value) for name, values in headers.items() for value in values]


def _unknown_peer() -> str:
    return UNKNOWN_PEER


def _no_certificate() -> None:
    return None


class AuthMiddlewareFactory(pa_flight.ServerMiddlewareFactory):
    """Admits or refuses each call at ``start_call``, through ``gate``.

    Every RPC but Handshake is admitted (``gate.admit``) and authorized for its
    method; a DoAction for the rule of DoAction itself, as its action type is
    seen only by the handler (:func:`authorize_action`). A Handshake gets
    ``gate.login_from_headers``; a header login's response headers (the session
    token) are sent by the returned middleware. Refusals are raised as pyarrow's
    Flight errors (see :mod:`flight_secure.arrow.errors`).
    """

    def __init__(self, gate: AuthGate) -> None:
        self.gate = gate

    def start_call(self, info: Any, headers: dict[str, list]) -> pa_flight.ServerMiddleware | None:
        served = _starting_call()
        served.principal = served.handshake = None
        served.gate = gate = self.gate
        method = _METHODS[info.method]
        call = CallCredentials(method, metadata=partial(_header_pairs, headers),
                               peer=_unknown_peer, certificate=_no_certificate,
                               certificates_visible=False)
        try:
            if method is FlightMethod.HANDSHAKE:
                login = gate.login_from_headers(call)
                if login is not None:
                    return _LoginHeaders(login.response_headers)
                served.handshake = call
                return None
            principal = gate.admit(call) if gate.needed else None
            if gate.authorizer is not None:
                gate.authorize(principal, method, None, call)
        except Exception as exc:
            raise to_pyarrow(exc) from None
        served.principal = principal
        return None


def _messages(incoming: Any) -> Iterator[bytes]:
    """The client's Handshake messages until its side of the stream ends."""
    while True:
        try:
            yield incoming.read()
        except OSError:  # pyarrow's "Stream is closed.": the client sent its last
            return


class HandshakeHandler(pa_flight.ServerAuthHandler):
    """pyarrow's auth handler: runs the Handshake's message exchange through ``gate``.

    ``authenticate`` exchanges messages for a Handshake that
    :class:`AuthMiddlewareFactory` did not log in from its headers (and does
    nothing for one it did). At most ``max_concurrent_handshakes`` exchanges run
    at once; more are refused with UNAVAILABLE ("retry shortly"), as pyarrow's
    engine gives no way to end a client's silent handshake from the server.
    ``is_valid`` admits every call: the middleware decides each one.
    """

    def __init__(self, gate: AuthGate, max_concurrent_handshakes: int = 16) -> None:
        if type(max_concurrent_handshakes) is not int or max_concurrent_handshakes < 1:
            raise ValueError("max_concurrent_handshakes must be an integer of 1 or more, "
                             f"not {max_concurrent_handshakes!r}")
        self.gate = gate
        self._slots = threading.BoundedSemaphore(max_concurrent_handshakes)

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        try:
            served = _current_call()
        except RuntimeError as exc:
            raise to_pyarrow(exc) from None
        call, served.handshake = served.handshake, None
        if call is None:
            return  # logged in from its headers by the middleware
        if not self._slots.acquire(blocking=False):
            raise pa_flight.FlightUnavailableError(
                "too many handshakes in progress; retry shortly")
        try:
            self.gate.exchange_messages(call, _messages(incoming), outgoing.write)
        except Exception as exc:
            raise to_pyarrow(exc) from None
        finally:
            self._slots.release()

    def is_valid(self, token: bytes) -> bytes:
        return b""


class PyarrowStyleHandler(ServerAuthHandler):
    """A ``pyarrow.flight.ServerAuthHandler`` under flight_secure's handler contract.

    Its ``authenticate`` and ``is_valid`` are called as they are; the pyarrow
    Flight errors they raise become flight_secure's (same status and message).
    """

    def __init__(self, wrapped: pa_flight.ServerAuthHandler) -> None:
        self.wrapped = wrapped

    def __repr__(self) -> str:
        return f"PyarrowStyleHandler({self.wrapped!r})"

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        try:
            self.wrapped.authenticate(outgoing, incoming)
        except pa_flight.FlightError as exc:
            raise from_pyarrow(exc) from None

    def is_valid(self, token: bytes) -> bytes | str:
        try:
            return self.wrapped.is_valid(token)
        except pa_flight.FlightError as exc:
            raise from_pyarrow(exc) from None


def server_options(auth_handler: ServerAuthHandler | pa_flight.ServerAuthHandler | None = None,
                   authorizer: Authorizer | None = None, *,
                   max_concurrent_handshakes: int = 16,
                   **pyarrow_kwargs: Any) -> dict[str, Any]:
    """Keyword arguments for ``pyarrow.flight.FlightServerBase(location, **options)``.

    ``auth_handler`` is a flight_secure handler (``BasicServerAuthHandler``,
    ``JWTServerAuthHandler``, any :class:`~flight_secure.auth.base.ServerAuthHandler`)
    or a ``pyarrow.flight.ServerAuthHandler``; ``authorizer`` (e.g. an
    ``AccessPolicy``) is applied to every call after authentication. Both behave
    as on flight_secure's own engine, with the differences this engine imposes:

    * handlers read the caller with :func:`principal`, not ``peer_identity()``;
    * rules per action type apply where do_action calls :func:`authorize_action`
      (the rule of DoAction itself applies to every DoAction before that);
    * the peer is not known (``"-"``): the login throttle's per-peer limit counts
      every caller as one peer, so it becomes a limit for the whole server;
    * a message Handshake is not timed out; at most ``max_concurrent_handshakes``
      run at once.

    Every other keyword (``tls_certificates``, ``verify_client``,
    ``root_certificates``, ``middleware``, ...) goes to pyarrow; the middleware
    given is kept and runs after the adapter's (:data:`MIDDLEWARE_KEY`), so it only
    sees admitted calls. Raises ValueError when the handler needs the client
    certificate (``MutualTLSServerAuthHandler``): this engine cannot show it.
    """
    if isinstance(auth_handler, pa_flight.ServerAuthHandler):
        auth_handler = PyarrowStyleHandler(auth_handler)
    try:
        gate = AuthGate(auth_handler, authorizer, certificates_visible=False)
    except ValueError as exc:
        raise ValueError(f"{exc}: {ENGINE_CANNOT_SEE_CERTIFICATES}") from None
    middleware = dict(pyarrow_kwargs.pop("middleware", None) or {})
    if MIDDLEWARE_KEY in middleware:
        raise ValueError(f"the middleware key {MIDDLEWARE_KEY!r} is flight_secure's own")
    options = dict(pyarrow_kwargs)
    options["middleware"] = {MIDDLEWARE_KEY: AuthMiddlewareFactory(gate), **middleware}
    if auth_handler is not None:
        options["auth_handler"] = HandshakeHandler(gate, max_concurrent_handshakes)
    return options


def principal(context: Any) -> Principal | None:
    """The caller's Principal in a handler of either engine; None without a handler.

    ``context`` is the handler's context: pyarrow's ServerCallContext (the call is
    then read on the thread pyarrow serves it on), or one that carries its
    ``principal`` (flight_secure's ServerCallContext, the bridge's
    ``HandlerContext``). Raises RuntimeError for a pyarrow call whose server was
    not configured with :func:`server_options`, or from another thread.
    """
    if isinstance(context, pa_flight.ServerCallContext):
        return _current_call().principal
    try:
        return context.principal
    except AttributeError:
        raise TypeError(f"expected a ServerCallContext, not {type(context).__name__}") from None


def authorize_action(context: Any, action: Any) -> None:
    """Apply the server's rules for ``action``'s type; call it first in ``do_action``.

    On pyarrow's engine this is where an ``AccessPolicy``'s rules per action
    type apply (refusal: PERMISSION_DENIED, audited). On flight_secure's engine,
    and under the bridge's ``ArrowServer``, they were applied before ``do_action``
    and this does nothing, so the same handler runs on both.
    """
    if not isinstance(context, pa_flight.ServerCallContext):
        return
    served = _current_call()
    gate = served.gate
    if gate.authorizer is None:
        return
    call = CallCredentials.from_values(FlightMethod.DO_ACTION)  # for the audit record
    try:
        gate.authorize(served.principal, FlightMethod.DO_ACTION, action.type, call)
    except Exception as exc:
        raise to_pyarrow(exc) from None
