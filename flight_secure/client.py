"""FlightClient: calls a Flight service, with pyarrow.flight's API.

Each client is one connection. Its login (the Handshake and the token it yields)
is :class:`~flight_secure.session.ClientSession`'s job; its streams' readers and
writers are :mod:`flight_secure.streams`'.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from functools import partial
from typing import Any

import grpc
import grpc.experimental
import pyarrow as pa

from flight_secure._generated import flight_pb2 as pb
from flight_secure.auth.base import AUTH_TOKEN_HEADER, ClientAuthHandler
from flight_secure.errors import (
    FlightInvalidArgumentError,
    FlightUnavailableError,
    error_from_rpc,
)
from flight_secure.framing import FrameDecoder
from flight_secure.grpc_internals import release_call
from flight_secure.location import GRPC_DEFAULT_PORT
from flight_secure.middleware import (
    ClientCallMiddleware,
    ClientMiddlewareFactory,
    headers_to_metadata,
)
from flight_secure.outbox import Outbox
from flight_secure.rpcs import RPC_BY_NAME, RPCS, Rpc
from flight_secure.session import ClientSession
from flight_secure.streams import FlightMetadataReader, FlightStreamReader, FlightStreamWriter
from flight_secure.tls import channel_credentials, check_client_options
from flight_secure.types import (
    Action,
    ActionType,
    CallInfo,
    FlightDescriptor,
    FlightInfo,
    Location,
    PollInfo,
    Result,
    SchemaResult,
    Ticket,
    to_bytes,
)
from flight_secure.wire import DEFAULT_MAX_MESSAGE_SIZE, decode_flight_data, encode_bytes_message


class FlightCallOptions:
    """Per-call options: timeout (seconds), IPC write/read options, extra headers.

    ``timeout`` is a number of seconds or None (TypeError otherwise, as in pyarrow).
    ``headers`` are name/value pairs (or a dict) of bytes or str; ``metadata`` is
    them as gRPC metadata, kept in step when ``headers`` is assigned.
    """

    __slots__ = ("_headers", "_sets_token", "_timeout", "metadata", "read_options",
                 "write_options")

    def __init__(
        self,
        timeout: float | None = None,
        write_options: pa.ipc.IpcWriteOptions | None = None,
        headers: Any = None,
        read_options: pa.ipc.IpcReadOptions | None = None,
    ) -> None:
        self.timeout = timeout
        self.write_options = write_options
        self.headers = headers
        self.read_options = read_options

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @timeout.setter
    def timeout(self, timeout: float | None) -> None:
        if timeout is not None and not isinstance(timeout, int | float):
            raise TypeError(f"must be real number, not {type(timeout).__name__}")
        self._timeout = timeout

    @property
    def headers(self) -> Any:
        return self._headers

    @headers.setter
    def headers(self, headers: Any) -> None:
        self._headers = headers
        self.metadata: tuple = tuple(headers_to_metadata(headers)) if headers else ()
        # A call that brings its own token overrides the session token.
        self._sets_token = any(key == AUTH_TOKEN_HEADER for key, _ in self.metadata)

    def __repr__(self) -> str:
        """pyarrow's form; unset options show the values a call uses (-1.0: no timeout)."""
        timeout = -1.0 if self.timeout is None else float(self.timeout)
        return (
            f"<flight_secure.FlightCallOptions timeout={timeout} "
            f"headers={list(self.headers or [])}\n"
            f" read_options={self.read_options or pa.ipc.IpcReadOptions()}\n"
            f" write_options={self.write_options or pa.ipc.IpcWriteOptions()}\n>"
        )


_DEFAULT_OPTIONS = FlightCallOptions()


class FlightClient:
    """A connection to one Flight service.

    ``tls_root_certs`` (PEM) are the CAs trusted for a ``grpc+tls`` location
    (system roots when omitted); ``cert_chain``/``private_key`` present a client
    certificate for mutual TLS; ``override_hostname`` checks the server
    certificate against another name; ``disable_server_verification`` trusts any
    server certificate and warns, as the name says. ``generic_options`` are gRPC
    channel arguments; each replaces the client's own setting of the same name.
    ``max_decompressed_size`` is the most bytes a compressed batch from the server
    (DoGet, DoExchange) may take once decompressed, checked before decompressing
    (-1: no limit); larger ones raise FlightResourceExhaustedError.

    A ``(host, port)`` location is dialled with TLS when any TLS option is given
    (as pyarrow.flight does; ``disable_server_verification=False`` counts, as in
    pyarrow), else in plaintext; a location without a port dials gRPC's default,
    443. A TLS option given with a plaintext location (``grpc://``,
    ``grpc+tcp://``, ``grpc+unix://``) raises FlightInvalidArgumentError: the
    connection is never silently left unencrypted.

    Making a client does no I/O: it connects on its first call, as Arrow's
    clients do, so an unreachable server is reported by that call (and with
    ``disable_server_verification``, the server's certificate is fetched then). After
    :meth:`close`, every call raises FlightInvalidArgumentError (an
    ``ArrowInvalid``, as in pyarrow) "FlightClient is closed".
    """

    def __init__(
        self,
        location: str | Location | tuple[str, int],
        tls_root_certs: bytes | str | None = None,
        *,
        cert_chain: bytes | str | None = None,
        private_key: bytes | str | None = None,
        override_hostname: str | None = None,
        middleware: list[ClientMiddlewareFactory] | None = None,
        write_size_limit_bytes: int | None = None,
        disable_server_verification: bool | None = None,
        generic_options: list[tuple[str, Any]] | None = None,
        max_decompressed_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        tls_requested = bool(
            tls_root_certs or cert_chain or private_key or override_hostname
            or disable_server_verification
        )
        self.location = _dial_location(
            location, tls_requested or disable_server_verification is not None
        )
        options: dict[str, Any] = {
            "grpc.max_receive_message_length": -1,
            "grpc.max_send_message_length": -1,
            # Server-streaming calls (DoGet, DoAction, ListFlights) are read in the
            # caller's thread, without the channel's helper thread: measured ~1.5x
            # DoGet throughput with 64 KB batches and ~10-20% faster DoAction.
            grpc.experimental.ChannelOptions.SingleThreadedUnaryStream: 1,
            # Each client has its own connection, as in Arrow's clients: grpcio would
            # otherwise share one between all clients of a process with the same
            # target and credentials, and with it the server's per-connection limits.
            "grpc.use_local_subchannel_pool": 1,
        }
        target = self.location.grpc_target(GRPC_DEFAULT_PORT)
        if self.location.is_tls:
            check_client_options(cert_chain, private_key, bool(disable_server_verification))
            credentials = partial(channel_credentials, self.location, tls_root_certs,
                                  cert_chain, private_key, override_hostname,
                                  bool(disable_server_verification))
        elif tls_requested:
            raise FlightInvalidArgumentError(
                f"TLS options were given for the plaintext location {self.location}; "
                "use a grpc+tls:// location to encrypt the connection"
            )
        else:
            credentials = None
        self._dial = partial(_open_channel, target, credentials, options, generic_options)
        self._middleware = list(middleware or [])
        self._write_size_limit = write_size_limit_bytes
        self._max_decompressed_size = max_decompressed_size
        self._closed = False
        self._connecting = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._session: ClientSession | None = None
        self._stubs: dict[str, Any] | None = None
        if not (self.location.is_tls and disable_server_verification):
            self._connection()  # a gRPC channel connects at its first call: no I/O yet

    # ------------------------------------------------------------------ plumbing

    def _connection(self) -> dict[str, Any]:
        """The stubs of the RPCs; the first call opens the channel. Raises
        FlightInvalidArgumentError once the client is closed."""
        stubs = self._stubs
        if stubs is not None and not self._closed:
            return stubs
        with self._connecting:
            if self._closed:
                raise FlightInvalidArgumentError("FlightClient is closed")
            if self._stubs is not None:
                return self._stubs
        # Dialling may fetch the server's certificate (disable_server_verification):
        # outside the lock, so that close() never waits for it.
        channel = self._dial()
        with self._connecting:
            if self._closed or self._stubs is not None:
                channel.close()  # closed meanwhile, or another thread dialled first
                if self._closed:
                    raise FlightInvalidArgumentError("FlightClient is closed")
                return self._stubs
            self._channel = channel
            self._session = ClientSession(channel)
            self._stubs = {rpc.name: _stub(channel, rpc)
                           for rpc in RPCS if rpc.name != "Handshake"}
            return self._stubs

    def _closed_meanwhile(self, exc: ValueError) -> Exception:
        """grpcio's ValueError for a channel that close() closed after the call got its
        stub, as the error of a closed client; any other ValueError as it is."""
        return FlightInvalidArgumentError("FlightClient is closed") if self._closed else exc

    def _start(self, options: FlightCallOptions, rpc: Rpc
               ) -> tuple[Any, tuple, ClientCallMiddleware | None]:
        """What a call needs: its stub, its metadata (session token, the options'
        headers, the middleware's headers) and its middleware (None without any)."""
        stub = self._connection()[rpc.name]
        token = self._session.token_metadata()
        metadata = options.metadata if options._sets_token else token + options.metadata
        if not self._middleware:
            return stub, metadata, None
        middleware = ClientCallMiddleware(self._middleware, CallInfo(rpc.method))
        return stub, metadata + tuple(middleware.outgoing_metadata()), middleware

    def _unary(self, name: str, request: bytes, options: FlightCallOptions | None) -> bytes:
        options = options or _DEFAULT_OPTIONS
        stub, metadata, middleware = self._start(options, RPC_BY_NAME[name])
        try:
            if middleware is None:
                return stub(request, metadata=metadata, timeout=options.timeout)
            response, call = stub.with_call(request, metadata=metadata, timeout=options.timeout)
        except grpc.RpcError as exc:
            error = error_from_rpc(exc)
            if middleware is not None:
                middleware.finish(exc, error)
            raise error from None
        except ValueError as exc:
            raise self._closed_meanwhile(exc) from None
        middleware.finish(call, None)
        return response

    def _server_stream(
        self, name: str, request: bytes, options: FlightCallOptions, *, action: bool = False
    ) -> tuple[Any, Iterator[Any]]:
        """Start a call with one request; (the call, its responses).

        Dropping the responses early cancels the call. An ``action`` call is
        DoAction's, as Arrow's clients make it: it returns once the server has begun
        to answer (its headers, or its end).
        """
        stub, metadata, middleware = self._start(options, RPC_BY_NAME[name])
        try:
            call = stub(request, metadata=metadata, timeout=options.timeout)
        except ValueError as exc:
            raise self._closed_meanwhile(exc) from None
        responses = self._iterate(call, middleware)
        if action:
            _wait_for_headers(call)
            if middleware is not None:
                middleware.headers_arrived(call)
        return call, responses

    def _client_stream(
        self, name: str, options: FlightCallOptions
    ) -> tuple[Outbox, Any, Iterator[Any]]:
        """Start DoPut or DoExchange; (the outbox its writer fills, the call, its responses)."""
        stub, metadata, middleware = self._start(options, RPC_BY_NAME[name])
        outbox = Outbox()
        try:
            call = stub(iter(outbox), metadata=metadata, timeout=options.timeout)
        except ValueError as exc:
            raise self._closed_meanwhile(exc) from None
        return outbox, call, self._iterate(call, middleware)

    def _iterate(self, call: Any, middleware: ClientCallMiddleware | None) -> Iterator[Any]:
        """The call's responses; once they are dropped, the call is let go of
        (:func:`_let_go`) and its middleware told how it ended."""
        responses = self._responses(call, middleware)
        # Not at exit: another thread may be blocked reading the call, holding it.
        weakref.finalize(responses, _let_go, call, middleware).atexit = False
        return responses

    def _responses(self, call: Any, middleware: ClientCallMiddleware | None
                   ) -> Iterator[Any]:
        """The messages of ``call``, as Flight errors when it fails.

        The middleware hears the response headers when the first message arrives and
        the call's end when it comes. An interrupt (KeyboardInterrupt, SystemExit)
        while waiting cancels the call: nobody is left to read it. A method, so that
        the generator holds the client: a stream outlives the client object it came
        from (``connect(...).do_get(...)``), as in pyarrow.
        """
        try:
            if middleware is None:
                yield from call
            else:
                for message in call:
                    middleware.headers_arrived(call)
                    yield message
        except grpc.RpcError as exc:
            error = error_from_rpc(exc)
            if middleware is not None:
                middleware.finish(exc, error)
            raise error from None
        except (KeyboardInterrupt, SystemExit):
            call.cancel()
            raise
        if middleware is not None:
            middleware.finish(call, None)

    def _decoder(self, call: Any, responses: Iterator[Any],
                 options: FlightCallOptions) -> FrameDecoder:
        return FrameDecoder(responses, options.read_options, self._max_decompressed_size,
                            on_interrupt=call.cancel)

    # ------------------------------------------------------------ authentication

    def authenticate(
        self, auth_handler: ClientAuthHandler, options: FlightCallOptions | None = None
    ) -> None:
        """Run the Handshake with ``auth_handler``; later calls send its token.

        When the token is a JWT, the client re-runs the handshake by itself shortly
        before the token expires.
        """
        options = options or _DEFAULT_OPTIONS
        self._connection()
        self._session.authenticate(auth_handler, options.metadata, options.timeout)

    def authenticate_basic_token(
        self, username: str | bytes, password: str | bytes, options: FlightCallOptions | None = None
    ) -> tuple[bytes, bytes]:
        """Log in with HTTP Basic credentials in the Handshake's headers.

        Returns the ``(b"authorization", b"Bearer <token>")`` header pair the server
        sent back; pass it in ``FlightCallOptions(headers=[pair])`` on later calls.
        """
        options = options or _DEFAULT_OPTIONS
        self._connection()
        return self._session.authenticate_basic_token(
            username, password, options.metadata, options.timeout
        )

    # ---------------------------------------------------------------- the RPCs

    def wait_for_available(self, timeout: float = 5.0) -> None:
        """Block until the server accepts connections (FlightUnavailableError otherwise)."""
        self._connection()
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise FlightUnavailableError(
                f"server at {self.location} was not available within {timeout:g} s"
            ) from None

    def list_actions(self, options: FlightCallOptions | None = None) -> list[ActionType]:
        _, responses = self._server_stream("ListActions", b"", options or _DEFAULT_OPTIONS)
        out = []
        for raw in responses:
            message = pb.ActionType.FromString(raw)
            out.append(ActionType(message.type, message.description))
        return out

    def do_action(
        self, action: Action | tuple | str, options: FlightCallOptions | None = None
    ) -> Iterator[Result]:
        """Run an action; returns an iterator over its results.

        As in pyarrow, the call starts at once and this returns when the server
        has begun to answer (its handler has produced a first result, or ended):
        dropping the results unread cancels what is left of the action, not its start.
        """
        if isinstance(action, str):
            action = Action(action, b"")
        elif isinstance(action, tuple):
            action = Action(*action)
        _, responses = self._server_stream(
            "DoAction", action.serialize(), options or _DEFAULT_OPTIONS, action=True
        )
        return (Result(pb.Result.FromString(raw).body) for raw in responses)

    def list_flights(
        self, criteria: bytes | None = None, options: FlightCallOptions | None = None
    ) -> Iterator[FlightInfo]:
        request = pb.Criteria(expression=to_bytes(criteria)).SerializeToString()
        _, responses = self._server_stream("ListFlights", request, options or _DEFAULT_OPTIONS)
        return (FlightInfo.deserialize(raw) for raw in responses)

    def get_flight_info(
        self, descriptor: FlightDescriptor, options: FlightCallOptions | None = None
    ) -> FlightInfo:
        return FlightInfo.deserialize(
            self._unary("GetFlightInfo", descriptor.serialize(), options)
        )

    def poll_flight_info(
        self, descriptor: FlightDescriptor, options: FlightCallOptions | None = None
    ) -> PollInfo:
        return PollInfo.deserialize(self._unary("PollFlightInfo", descriptor.serialize(), options))

    def get_schema(
        self, descriptor: FlightDescriptor, options: FlightCallOptions | None = None
    ) -> SchemaResult:
        return SchemaResult.deserialize(self._unary("GetSchema", descriptor.serialize(), options))

    def do_get(
        self, ticket: Ticket, options: FlightCallOptions | None = None
    ) -> FlightStreamReader:
        """Fetch the stream behind ``ticket``; the server's error is raised here."""
        options = options or _DEFAULT_OPTIONS
        call, responses = self._server_stream("DoGet", encode_bytes_message(ticket.ticket),
                                              options)
        decoder = self._decoder(call, responses, options)
        reader = FlightStreamReader(decoder, call)
        decoder.wait_for_schema()
        return reader

    def do_put(
        self,
        descriptor: FlightDescriptor,
        schema: pa.Schema,
        options: FlightCallOptions | None = None,
    ) -> tuple[FlightStreamWriter, FlightMetadataReader]:
        """Upload a stream: returns ``(writer, metadata_reader)``."""
        options = options or _DEFAULT_OPTIONS
        outbox, call, responses = self._client_stream("DoPut", options)
        reader = FlightMetadataReader(responses, on_interrupt=call.cancel)
        writer = FlightStreamWriter(outbox, call, options.write_options, self._write_size_limit,
                                    descriptor.serialize(), schema, reader)
        return writer, reader

    def do_exchange(
        self, descriptor: FlightDescriptor, options: FlightCallOptions | None = None
    ) -> tuple[FlightStreamWriter, FlightStreamReader]:
        """Open a two-way data stream: returns ``(writer, reader)``."""
        options = options or _DEFAULT_OPTIONS
        outbox, call, responses = self._client_stream("DoExchange", options)
        reader = FlightStreamReader(self._decoder(call, responses, options), call)
        writer = FlightStreamWriter(outbox, call, options.write_options, self._write_size_limit,
                                    descriptor.serialize())
        return writer, reader

    def close(self) -> None:
        """Close the connection; calls in flight are cancelled, later calls raise."""
        with self._connecting:
            if self._closed:
                return
            self._closed = True
            channel = self._channel
        if channel is not None:
            channel.close()

    def __enter__(self) -> FlightClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            return


def _open_channel(target: str, credentials: Any, options: dict[str, Any],
                  generic_options: list[tuple[str, Any]] | None) -> grpc.Channel:
    """The channel to ``target``: TLS with what ``credentials()`` returns (credentials
    and extra options), else plaintext; ``generic_options`` override ``options``."""
    options = dict(options)
    if credentials is None:
        options.update(generic_options or ())
        return grpc.insecure_channel(target, options=list(options.items()))
    channel_credentials, extra = credentials()
    options.update(extra)
    options.update(generic_options or ())
    return grpc.secure_channel(target, channel_credentials, options=list(options.items()))


def _let_go(call: Any, middleware: ClientCallMiddleware | None) -> None:
    """What becomes of a call whose responses were dropped: cancelled if it still
    runs, and freed (:func:`~flight_secure.grpc_internals.release_call`); its
    middleware, if not told yet, hears how it ended."""
    release_call(call)
    if middleware is not None:
        call.add_done_callback(partial(_tell_ending, middleware))


def _tell_ending(middleware: ClientCallMiddleware, call: Any) -> None:
    error = None if call.code() == grpc.StatusCode.OK else error_from_rpc(call)
    middleware.finish(call, error)


def _wait_for_headers(call: Any) -> None:
    """Wait until the server has answered ``call`` (its headers, or its end)."""
    try:
        call.initial_metadata()
    except (KeyboardInterrupt, SystemExit):
        call.cancel()
        raise


def _stub(channel: grpc.Channel, rpc: Rpc) -> Any:
    """The channel's callable for ``rpc``, of its call shape; FlightData responses
    are sliced by :func:`~flight_secure.wire.decode_flight_data`."""
    frames = decode_flight_data if rpc.response == "FlightData" else None
    if rpc.client_streams:
        return channel.stream_stream(rpc.path, response_deserializer=frames)
    if rpc.server_streams:
        return channel.unary_stream(rpc.path, response_deserializer=frames)
    return channel.unary_unary(rpc.path)


def _dial_location(location: str | Location | tuple[str, int], tls: bool) -> Location:
    """The location a client dials: a ``(host, port)`` pair becomes grpc+tls when ``tls``."""
    if isinstance(location, tuple):
        host, port = location
        return Location.for_grpc_tls(host, port) if tls else Location.for_grpc_tcp(host, port)
    return Location(location)


def connect(location: str | Location | tuple[str, int], **kwargs: Any) -> FlightClient:
    """Connect to a Flight service (see :class:`FlightClient` for the options)."""
    return FlightClient(location, **kwargs)


__all__ = ["FlightCallOptions", "FlightClient", "connect"]
