"""A client's login session: the Handshake, the token it yields, and its renewal.

:class:`ClientSession` runs the Handshake RPC for one FlightClient, with a
``ClientAuthHandler`` (pyarrow's message exchange) or with HTTP Basic credentials
in the call's headers, keeps the token the handler returns, and re-runs the
handshake by itself shortly before a JWT-shaped token expires.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from flight_secure._generated import flight_pb2 as pb
from flight_secure.auth.base import (
    AUTH_TOKEN_HEADER,
    AUTHORIZATION_HEADER,
    ClientAuthHandler,
    ClientAuthReader,
    ClientAuthSender,
)
from flight_secure.errors import FlightError, FlightUnauthenticatedError, error_from_rpc
from flight_secure.grpc_internals import release_call
from flight_secure.outbox import Outbox
from flight_secure.rpcs import RPC_BY_NAME
from flight_secure.types import to_bytes

#: Re-run the handshake when the session token has less than this many seconds left.
TOKEN_REFRESH_MARGIN = 30.0
#: After a failed automatic re-handshake, try again this many seconds later.
REFRESH_RETRY = 5.0

Metadata = tuple[tuple[str, str | bytes], ...]


class ClientSession:
    """The login state of one client connection (``channel``).

    :meth:`authenticate` and :meth:`authenticate_basic_token` log in;
    :meth:`token_metadata` is the token header every later call carries, renewed
    first when its renewal is due. ``stubs`` are the two ways of calling
    Handshake: ``"Handshake"``, a request stream, and ``"HandshakeOnce"``, a single
    request for handlers that write one message (``writes_once``).
    """

    def __init__(self, channel: grpc.Channel) -> None:
        path = RPC_BY_NAME["Handshake"].path
        self.stubs: dict[str, Any] = {
            "Handshake": channel.stream_stream(path),
            "HandshakeOnce": channel.unary_stream(path),
        }
        self._token_metadata: Metadata = ()
        self._auth_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._reauth: tuple[ClientAuthHandler, Metadata, float | None] | None = None
        self._refresh_at: float | None = None

    def token_metadata(self) -> Metadata:
        """The token header for a call: ``auth-token-bin``, or nothing before a login.

        Renews the token first when its renewal is due; a failed renewal raises here
        and is retried on a later call (after REFRESH_RETRY seconds) while the old
        token still works. Concurrent callers wait for the one that renews.
        """
        due = self._refresh_at
        if due is not None and time.time() >= due:
            with self._refresh_lock:
                if self._refresh_at == due and self._reauth is not None:
                    handler, metadata, timeout = self._reauth
                    self._refresh_at = time.time() + REFRESH_RETRY
                    self.authenticate(handler, metadata, timeout)
        return self._token_metadata

    def authenticate(
        self, handler: ClientAuthHandler, metadata: Metadata, timeout: float | None
    ) -> None:
        """Run the Handshake with ``handler`` (sending ``metadata``); keep its token.

        Raises the Flight error the server refused with.
        """
        with self._auth_lock:
            if _writes_once(handler):
                call = self._handshake_one_request(handler, metadata, timeout)
            else:
                outbox = Outbox()
                call = self.stubs["Handshake"](iter(outbox), metadata=metadata, timeout=timeout)
                try:
                    handler.authenticate(_Sender(outbox), _Reader(call))
                except grpc.RpcError as exc:
                    raise error_from_rpc(exc) from None
                finally:
                    outbox.close()
            try:
                for _ in call:
                    pass
            except grpc.RpcError as exc:
                raise error_from_rpc(exc) from None
            token = to_bytes(handler.get_token())
            self._token_metadata = ((AUTH_TOKEN_HEADER, token),) if token else ()
            self._reauth = (handler, metadata, timeout)
            self._refresh_at = refresh_time(token, time.time())

    def _handshake_one_request(
        self, handler: ClientAuthHandler, metadata: Metadata, timeout: float | None
    ) -> Any:
        """Run a ``writes_once`` handler: its one message is the whole request stream.

        The call starts at the handler's first read, as a single-request call read in
        this thread; the server sees the same Handshake stream as from any client.
        """
        sender = _OneMessageSender()
        call = None

        def start() -> Iterator[bytes]:
            nonlocal call
            if sender.message is None:
                raise FlightError(
                    "a writes_once auth handler must write its message before the call starts"
                )
            call = self.stubs["HandshakeOnce"](sender.message, metadata=metadata,
                                               timeout=timeout)
            return call

        try:
            handler.authenticate(sender, _Reader(start=start))
        except BaseException as exc:
            if call is not None:
                release_call(call)
            if isinstance(exc, grpc.RpcError):
                raise error_from_rpc(exc) from None
            raise
        return call if call is not None else start()

    def authenticate_basic_token(
        self, username: str | bytes, password: str | bytes, metadata: Metadata,
        timeout: float | None,
    ) -> tuple[bytes, bytes]:
        """Log in with HTTP Basic credentials in the Handshake's headers.

        Returns the ``(b"authorization", b"Bearer <token>")`` header pair the server
        sent back; raises FlightUnauthenticatedError when it sent none.
        """
        raw = to_bytes(username) + b":" + to_bytes(password)
        header = (AUTHORIZATION_HEADER, "Basic " + base64.b64encode(raw).decode())
        call = self.stubs["Handshake"](iter(()), metadata=(header, *metadata), timeout=timeout)
        try:
            for _ in call:
                pass
            initial = call.initial_metadata() or ()
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        for key, value in initial:
            if key == AUTHORIZATION_HEADER:
                return AUTHORIZATION_HEADER.encode(), to_bytes(value)
        raise FlightUnauthenticatedError("the server did not return a bearer token")


class _Sender(ClientAuthSender):
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def write(self, message: bytes | str) -> None:
        self._outbox.put(pb.HandshakeRequest(payload=to_bytes(message)).SerializeToString())


class _OneMessageSender(ClientAuthSender):
    """Keeps the one message of a ``writes_once`` handler; refuses a second."""

    def __init__(self) -> None:
        self.message: bytes | None = None

    def write(self, message: bytes | str) -> None:
        if self.message is not None:
            raise FlightError(
                "the auth handler declares writes_once but wrote a second message"
            )
        self.message = pb.HandshakeRequest(payload=to_bytes(message)).SerializeToString()


class _Reader(ClientAuthReader):
    """The server's handshake replies: from ``responses``, or from the call that
    ``start()`` makes on the first read."""

    def __init__(
        self,
        responses: Iterator[bytes] | None = None,
        start: Callable[[], Iterator[bytes]] | None = None,
    ) -> None:
        self._responses = responses
        self._start = start

    def read(self) -> bytes:
        if self._responses is None:
            self._responses = self._start()
        try:
            raw = next(self._responses)
        except StopIteration:
            raise FlightUnauthenticatedError(
                "the server ended the handshake without a reply"
            ) from None
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        return pb.HandshakeResponse.FromString(raw).payload


def _writes_once(handler: ClientAuthHandler) -> bool:
    """The nearest ``writes_once`` declaration that is not behind an override of
    ``authenticate``: a subclass that overrides ``authenticate`` must declare it anew."""
    for cls in type(handler).__mro__:
        if "writes_once" in vars(cls):
            return vars(cls)["writes_once"] is True
        if "authenticate" in vars(cls):
            return False
    return False


def refresh_time(token: bytes, now: float) -> float | None:
    """When to re-run the handshake for a JWT-shaped token; None for other tokens.

    The token is read unverified (it only schedules the refresh): the client renews
    TOKEN_REFRESH_MARGIN seconds before ``exp``, or after four fifths of the
    token's lifetime when that is shorter.
    """
    parts = token.split(b".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + b"=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
        exp, iat = claims.get("exp"), claims.get("iat", now)
    except (ValueError, AttributeError):
        return None
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        return None
    margin = min(TOKEN_REFRESH_MARGIN, max(exp - iat, 0) / 5)
    return max(now, exp - margin)
