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
admits every token, the decision having been left to ``start_call``. Both steps of
a Handshake are admitted by one
:class:`~flight_secure.auth.handshakes.HandshakeLimits`, as on flight_secure's
engine, with the differences :class:`HandshakeHandler` states.

The peer being unknown, every caller is of one network (``"-"``) for the limits
that count networks: the ``LoginGuard`` of a ``BasicServerAuthHandler`` and the
silent-handshake bound. Failed logins then lock a user out of the whole server,
and enough failures lock every password login out for a while (see
:func:`server_options`): guessing stays bounded, at the price of lockouts that
anyone can cause.

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
import time
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

import pyarrow.flight as pa_flight

from flight_secure.arrow.errors import from_pyarrow, to_pyarrow
from flight_secure.auth.base import (
    AUTHORIZATION_HEADER,
    UNKNOWN_PEER,
    CallCredentials,
    HeaderLogin,
    Principal,
    ServerAuthHandler,
)
from flight_secure.auth.gate import AuthGate, Authorizer
from flight_secure.auth.handshakes import HandshakeLimits
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
    ``gate.login_from_headers``: one whose headers carry credentials
    (``authorization``) first waits, up to ``handshake_timeout`` seconds, for one of
    the checking slots of ``limits``; a header login's response headers (the session
    token) are sent by the returned middleware. Refusals are raised as pyarrow's
    Flight errors (see :mod:`flight_secure.arrow.errors`).
    """

    def __init__(self, gate: AuthGate, limits: HandshakeLimits,
                 handshake_timeout: float) -> None:
        self.gate = gate
        self.limits = limits
        self.handshake_timeout = handshake_timeout

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
                login = self._login_from_headers(call)
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

    def _login_from_headers(self, call: CallCredentials) -> HeaderLogin | None:
        if call.header(AUTHORIZATION_HEADER) is None:
            return self.gate.login_from_headers(call)  # nothing to check, no slot taken
        admission = self.limits.begin(call, time.monotonic() + self.handshake_timeout)
        try:
            return self.gate.login_from_headers(call, admission)
        finally:
            admission.close()


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
    nothing for one it did), admitted by ``limits`` as flight_secure's engine
    admits one (:mod:`flight_secure.auth.handshakes`): it is *silent* until its first
    message arrives, then waits, up to ``handshake_timeout`` seconds, for a
    checking slot. pyarrow's engine gives the server no way to end a handshake
    whose client sends nothing, so a handshake cannot be judged after
    ``idle_after`` as there: each one is judged as it starts, and refused
    (UNAVAILABLE: this engine has no RESOURCE_EXHAUSTED) while
    ``limits.max_idle_per_network`` older ones are still silent. The peer being
    unknown, that bound is the whole server's. ``is_valid`` admits every call: the
    middleware decides each one.
    """

    def __init__(self, gate: AuthGate, limits: HandshakeLimits,
                 handshake_timeout: float) -> None:
        self.gate = gate
        self.limits = limits
        self.handshake_timeout = handshake_timeout

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        try:
            served = _current_call()
        except RuntimeError as exc:
            raise to_pyarrow(exc) from None
        call, served.handshake = served.handshake, None
        if call is None:
            return  # logged in from its headers by the middleware
        admission = self.limits.begin(call, time.monotonic() + self.handshake_timeout)
        try:
            admission.went_idle()  # now: it could not be ended later
            self.gate.exchange_messages(call, _messages(incoming), outgoing.write, admission)
        except Exception as exc:
            raise to_pyarrow(exc) from None
        finally:
            admission.close()

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


def _check_positive(name: str, value: Any, *, whole: bool) -> None:
    """ValueError naming ``name`` unless ``value`` is a number above 0 (an int if ``whole``)."""
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        what = "an integer of 1 or more" if whole else "a number of seconds above 0"
        raise ValueError(f"{name} must be {what}, not {value!r}")


def server_options(auth_handler: ServerAuthHandler | pa_flight.ServerAuthHandler | None = None,
                   authorizer: Authorizer | None = None, *,
                   max_concurrent_handshakes: int = 16, max_silent_handshakes: int = 256,
                   handshake_timeout: float = 10.0,
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
    * the peer is not known (``"-"`` in the audit log), so every caller is of one
      network for the ``LoginGuard``: ``max_failures_per_user`` failed logins for
      a user lock that user out of the whole server, ``max_failures_per_network``
      failures of any users lock every password login out, each for the guard's
      ``lockout`` (sessions already open, and tokens, keep working);
    * a Handshake is not timed out: at most ``max_silent_handshakes`` may have
      sent nothing yet, more are refused at once (UNAVAILABLE, "retry shortly").
      Once credentials arrived, at most ``max_concurrent_handshakes`` are checked
      at once, more wait up to ``handshake_timeout`` seconds for their turn.

    Every other keyword (``tls_certificates``, ``verify_client``,
    ``root_certificates``, ``middleware``, ...) goes to pyarrow; the middleware
    given is kept and runs after the adapter's (:data:`MIDDLEWARE_KEY`), so it only
    sees admitted calls. Raises ValueError for a limit that is not a positive
    number, and when the handler needs the client certificate
    (``MutualTLSServerAuthHandler``): this engine cannot show it.
    """
    _check_positive("max_concurrent_handshakes", max_concurrent_handshakes, whole=True)
    _check_positive("max_silent_handshakes", max_silent_handshakes, whole=True)
    _check_positive("handshake_timeout", handshake_timeout, whole=False)
    if isinstance(auth_handler, pa_flight.ServerAuthHandler):
        auth_handler = PyarrowStyleHandler(auth_handler)
    try:
        gate = AuthGate(auth_handler, authorizer, certificates_visible=False)
    except ValueError as exc:
        raise ValueError(f"{exc}: {ENGINE_CANNOT_SEE_CERTIFICATES}") from None
    middleware = dict(pyarrow_kwargs.pop("middleware", None) or {})
    if MIDDLEWARE_KEY in middleware:
        raise ValueError(f"the middleware key {MIDDLEWARE_KEY!r} is flight_secure's own")
    limits = HandshakeLimits(max_concurrent_handshakes, max_silent_handshakes)
    options = dict(pyarrow_kwargs)
    options["middleware"] = {MIDDLEWARE_KEY: AuthMiddlewareFactory(gate, limits,
                                                                   handshake_timeout),
                             **middleware}
    if auth_handler is not None:
        options["auth_handler"] = HandshakeHandler(gate, limits, handshake_timeout)
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
