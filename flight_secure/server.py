"""FlightServerBase: the server, its options, and the dispatch of every RPC.

Each RPC goes through :meth:`FlightServerBase._open_call` (auth gate, then
middleware), the user's handler, and :meth:`FlightServerBase._close_call`
(response headers, trailers, middleware ``call_completed``); an exception from
the handler is sent to the client as the matching gRPC status with its message,
and the server keeps serving.
"""

from __future__ import annotations

import logging
import signal as _signal
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from flight_secure._generated import flight_pb2 as pb
from flight_secure.auth.base import ServerAuthHandler
from flight_secure.auth.gate import AuthGate
from flight_secure.context import ServerCallContext
from flight_secure.errors import (
    FlightCancelledError,
    FlightError,
    FlightInvalidArgumentError,
    FlightResourceExhaustedError,
    FlightTimedOutError,
    FlightUnimplementedError,
    arrow_status_trailers,
    status_for_exception,
)
from flight_secure.framing import decode_flight_data, encode_bytes_message
from flight_secure.middleware import ServerMiddlewareFactory, headers_to_metadata
from flight_secure.streams import (
    FlightMetadataWriter,
    MetadataRecordBatchReader,
    MetadataRecordBatchWriter,
    Outbox,
    as_flight_data_stream,
)
from flight_secure.types import (
    Action,
    ActionType,
    CallInfo,
    CertKeyPair,
    FlightDescriptor,
    FlightInfo,
    FlightMethod,
    Location,
    PollInfo,
    Result,
    SchemaResult,
    Ticket,
    to_bytes,
)

log = logging.getLogger("flight_secure.server")

SERVICE = "arrow.flight.protocol.FlightService"
_M = FlightMethod


class FlightServerOptions:
    """How a server listens and whom it lets in.

    The first six arguments are Arrow's. The rest are flight_secure's limits:
    ``max_workers`` threads serve calls; ``max_concurrent_handshakes`` bounds
    handshakes in progress (more are refused with RESOURCE_EXHAUSTED);
    ``handshake_timeout`` ends a stuck handshake; ``max_message_size`` (bytes,
    -1 for no limit) caps one received message; ``max_metadata_size`` caps a
    call's headers; ``authorizer`` decides per call after authentication.
    """

    def __init__(
        self,
        location: str | Location | tuple[str, int] | None = None,
        auth_handler: ServerAuthHandler | None = None,
        tls_certificates: list[CertKeyPair] | None = None,
        verify_client: bool = False,
        root_certificates: bytes | str | None = None,
        middleware: dict[str, ServerMiddlewareFactory] | None = None,
        *,
        max_workers: int = 64,
        max_concurrent_handshakes: int = 16,
        handshake_timeout: float = 10.0,
        max_message_size: int = -1,
        max_metadata_size: int = 16 * 1024,
        authorizer: Any = None,
        tls_credentials: Any = None,
    ) -> None:
        self.location = _as_location(location)
        self.auth_handler = auth_handler
        self.tls_certificates = list(tls_certificates or [])
        self.verify_client = verify_client
        self.root_certificates = root_certificates
        self.middleware = dict(middleware or {})
        self.max_workers = max_workers
        self.max_concurrent_handshakes = max_concurrent_handshakes
        self.handshake_timeout = handshake_timeout
        self.max_message_size = max_message_size
        self.max_metadata_size = max_metadata_size
        self.authorizer = authorizer
        self.tls_credentials = tls_credentials


def _as_location(location: Any) -> Location:
    if location is None:
        return Location("grpc://localhost:0")
    if isinstance(location, tuple):
        return Location.for_grpc_tcp(*location)
    return Location(location)


def _pem(value: bytes | str | None) -> bytes | None:
    if value is None:
        return None
    return value.encode() if isinstance(value, str) else bytes(value)


class _CallState:
    """What :meth:`FlightServerBase._open_call` hands to the call's closing step."""

    __slots__ = ("context", "headers_sent", "middleware")

    def __init__(self, context: ServerCallContext) -> None:
        self.context = context
        self.middleware: list = []
        self.headers_sent = False


class FlightServerBase:
    """Base class of Flight servers: override the RPC methods you serve.

    Constructed with any of Arrow's keyword arguments the server starts at once
    (pyarrow's style); constructed with none, it starts on the first of
    :meth:`init`, :attr:`port`, :meth:`serve` or ``with``, on localhost at a free port.
    """

    def __init__(
        self,
        location: str | Location | tuple[str, int] | None = None,
        auth_handler: ServerAuthHandler | None = None,
        tls_certificates: list[CertKeyPair] | None = None,
        verify_client: bool = False,
        root_certificates: bytes | str | None = None,
        middleware: dict[str, ServerMiddlewareFactory] | None = None,
        **options: Any,
    ) -> None:
        self._grpc_server: grpc.Server | None = None
        self._port: int | None = None
        self._options: FlightServerOptions | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        explicit = (location, auth_handler, tls_certificates, root_certificates, middleware)
        if any(v is not None for v in explicit) or verify_client or options:
            self.init(
                FlightServerOptions(
                    location, auth_handler, tls_certificates, verify_client,
                    root_certificates, middleware, **options,
                )
            )

    # ----------------------------------------------------------------- lifecycle

    def init(self, options: FlightServerOptions | None = None) -> None:
        """Bind and start serving in the background; returns at once."""
        with self._lock:
            if self._grpc_server is not None:
                raise FlightError("the server is already running")
            options = options or FlightServerOptions()
            self._start(options)

    def _ensure_started(self) -> None:
        if self._grpc_server is None:
            with self._lock:
                if self._grpc_server is None:
                    self._start(FlightServerOptions())

    def _start(self, options: FlightServerOptions) -> None:
        location = options.location
        if location.scheme == "grpc+tls" and not (
            options.tls_certificates or options.tls_credentials
        ):
            raise FlightInvalidArgumentError(
                "a grpc+tls:// location needs tls_certificates=[CertKeyPair(cert, key)]"
            )
        if options.verify_client and not (options.root_certificates or options.tls_credentials):
            raise FlightInvalidArgumentError(
                "verify_client=True needs root_certificates (the CA that signs client certificates)"
            )
        self._options = options
        self._gate = AuthGate(
            options.auth_handler,
            tls_identity=options.verify_client,
            authorizer=options.authorizer,
        )
        self._middleware_factories = options.middleware
        self._handshake_slots = threading.BoundedSemaphore(options.max_concurrent_handshakes)
        self._helpers = ThreadPoolExecutor(
            max_workers=options.max_workers, thread_name_prefix="flight-stream"
        )
        grpc_options = [
            ("grpc.max_receive_message_length", options.max_message_size),
            ("grpc.max_send_message_length", -1),
            ("grpc.max_metadata_size", options.max_metadata_size),
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.server(
            ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="flight-rpc"),
            handlers=[self._generic_handler()],
            options=grpc_options,
        )
        target = location.grpc_target()
        if options.tls_credentials is not None:
            credentials = options.tls_credentials
        elif options.tls_certificates:
            credentials = grpc.ssl_server_credentials(
                [(_pem(p.key), _pem(p.cert)) for p in options.tls_certificates],
                root_certificates=_pem(options.root_certificates),
                require_client_auth=bool(options.verify_client),
            )
        else:
            credentials = None
        try:
            if credentials is not None:
                port = server.add_secure_port(target, credentials)
            else:
                port = server.add_insecure_port(target)
        except RuntimeError as exc:
            raise FlightError(f"could not listen on {location}: {exc}") from None
        if location.scheme != "grpc+unix" and not port:
            raise FlightError(f"could not listen on {location}: address in use or unavailable")
        server.start()
        self._grpc_server = server
        self._port = port
        self._stopped.clear()

    @property
    def port(self) -> int:
        """The TCP port the server listens on (chosen by the OS for port 0)."""
        self._ensure_started()
        return self._port or 0

    @property
    def location(self) -> Location:
        """Where clients can reach this server."""
        self._ensure_started()
        loc = self._options.location
        if loc.scheme == "grpc+unix":
            return loc
        host = loc.host or "localhost"
        scheme = "grpc+tls" if loc.is_tls else "grpc+tcp"
        return Location(f"{scheme}://{host if ':' not in host else '[' + host + ']'}:{self.port}")

    def serve(self) -> None:
        """Block until :meth:`shutdown` (or a signal set with set_shutdown_on_signals)."""
        self._ensure_started()
        while not self._stopped.wait(0.25):
            pass
        self.wait()

    run = serve

    def set_shutdown_on_signals(self, signals: Iterable[int]) -> None:
        """Make these signals stop the server, so a blocked :meth:`serve` returns.

        Must be called from the main thread (Python's rule for signal handlers).
        """
        for signum in signals:
            _signal.signal(signum, lambda *_: self._stop_now())

    def _stop_now(self) -> None:
        threading.Thread(target=self.shutdown, daemon=True).start()
        self._stopped.set()

    def shutdown(self, grace: float | None = 2.0) -> None:
        """Stop accepting calls and end those in flight after ``grace`` seconds."""
        server = self._grpc_server
        if server is None:
            self._stopped.set()
            return
        server.stop(grace).wait()
        self._helpers.shutdown(wait=False, cancel_futures=True)
        self._stopped.set()

    def wait(self) -> None:
        """Block until the server has shut down."""
        if self._grpc_server is not None:
            self._stopped.wait()
            self._grpc_server.wait_for_termination()

    def __enter__(self) -> FlightServerBase:
        self._ensure_started()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ------------------------------------------------------- methods to override

    def list_flights(self, context: ServerCallContext, criteria: bytes) -> Iterable[FlightInfo]:
        raise NotImplementedError("ListFlights is not implemented by this server")

    def get_flight_info(
        self, context: ServerCallContext, descriptor: FlightDescriptor
    ) -> FlightInfo:
        raise NotImplementedError("GetFlightInfo is not implemented by this server")

    def poll_flight_info(
        self, context: ServerCallContext, descriptor: FlightDescriptor
    ) -> PollInfo:
        raise NotImplementedError("PollFlightInfo is not implemented by this server")

    def get_schema(self, context: ServerCallContext, descriptor: FlightDescriptor) -> SchemaResult:
        raise NotImplementedError("GetSchema is not implemented by this server")

    def do_get(self, context: ServerCallContext, ticket: Ticket) -> Any:
        raise NotImplementedError("DoGet is not implemented by this server")

    def do_put(
        self,
        context: ServerCallContext,
        descriptor: FlightDescriptor,
        reader: MetadataRecordBatchReader,
        writer: FlightMetadataWriter,
    ) -> None:
        raise NotImplementedError("DoPut is not implemented by this server")

    def do_exchange(
        self,
        context: ServerCallContext,
        descriptor: FlightDescriptor,
        reader: MetadataRecordBatchReader,
        writer: MetadataRecordBatchWriter,
    ) -> None:
        raise NotImplementedError("DoExchange is not implemented by this server")

    def list_actions(self, context: ServerCallContext) -> Iterable[ActionType | tuple[str, str]]:
        return []

    def do_action(self, context: ServerCallContext, action: Action) -> Iterable[Any] | None:
        raise NotImplementedError(f"action {action.type!r} is not implemented by this server")

    # ------------------------------------------------------------ call plumbing

    def _open_call(self, grpc_context: Any, method: FlightMethod) -> _CallState:
        """Authenticate, authorize and start middleware for a call (raises to refuse)."""
        context = ServerCallContext(grpc_context, method)
        state = _CallState(context)
        gate = self._gate
        if gate.needed and method is not _M.HANDSHAKE:
            context.principal = gate.admit(context.credentials)
        if gate.authorizer is not None and method not in (_M.HANDSHAKE, _M.DO_ACTION):
            gate.authorize(context.principal, method, None, context.credentials)
        factories = self._middleware_factories
        if factories:
            info = CallInfo(method)
            headers = context.headers
            instances = {}
            for key, factory in factories.items():
                instance = factory.start_call(info, headers)
                if instance is not None:
                    instances[key] = instance
            context._middleware = instances
            state.middleware = list(instances.values())
        return state

    def _send_headers(self, state: _CallState) -> None:
        if state.headers_sent:
            return
        state.headers_sent = True
        extra = []
        for instance in state.middleware:
            sent = instance.sending_headers()
            if sent:
                extra.extend(headers_to_metadata(sent))
        if state.context._response_headers:
            extra.extend(headers_to_metadata(state.context._response_headers))
        if extra:
            state.context._grpc_context.send_initial_metadata(tuple(extra))

    def _close_call(self, state: _CallState, error: BaseException | None) -> None:
        context = state.context
        if context._trailers:
            context._grpc_context.set_trailing_metadata(
                tuple(headers_to_metadata(context._trailers))
            )
        for instance in state.middleware:
            try:
                instance.call_completed(error)
            except Exception:
                log.exception("server middleware call_completed failed")

    def _abort(self, grpc_context: Any, state: _CallState | None, exc: BaseException) -> None:
        """End the call with the status for ``exc``; never returns."""
        code, message = status_for_exception(exc)
        if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL) and not isinstance(
            exc, FlightError
        ):
            log.error("handler raised %s", type(exc).__name__, exc_info=exc)
        trailers = []
        if state is not None:
            if state.context._trailers:
                trailers.extend(headers_to_metadata(state.context._trailers))
                state.context._trailers = None
            try:
                self._send_headers(state)
            except Exception:  # headers could not be sent; the status still can
                log.debug("could not send response headers", exc_info=True)
            self._close_call(state, exc)
        trailers.extend(arrow_status_trailers(exc, message))
        grpc_context.set_trailing_metadata(tuple(trailers))
        grpc_context.abort(code, message)

    def _unary(self, method: FlightMethod, run):
        def behavior(request: bytes, grpc_context: Any) -> bytes:
            state = None
            try:
                state = self._open_call(grpc_context, method)
                response = run(state.context, request)
                self._send_headers(state)
            except Exception as exc:
                self._abort(grpc_context, state, exc)
            self._close_call(state, None)
            return response

        return grpc.unary_unary_rpc_method_handler(behavior)

    def _stream_responses(
        self, grpc_context: Any, method: FlightMethod, produce: Any
    ) -> Iterator[bytes]:
        """Run a streaming RPC: open the call, yield what ``produce(state)`` yields, close.

        A client that cancels (or disconnects) closes this generator at its ``yield``;
        middleware then hears ``call_completed`` with a FlightCancelledError.
        """
        state = None
        finished = False
        try:
            state = self._open_call(grpc_context, method)
            for message in produce(state):
                if not state.headers_sent:
                    self._send_headers(state)
                yield message
            self._send_headers(state)
            finished = True
            self._close_call(state, None)
        except Exception as exc:
            finished = True
            self._abort(grpc_context, state, exc)
        finally:
            if not finished and state is not None:
                self._close_call(state, FlightCancelledError("the client cancelled the call"))

    def _server_stream(self, method: FlightMethod, run):
        def behavior(request: bytes, grpc_context: Any) -> Iterator[bytes]:
            return self._stream_responses(
                grpc_context, method, lambda state: run(state.context, request)
            )

        return grpc.unary_stream_rpc_method_handler(behavior)

    def _bidi_stream(self, method: FlightMethod, run, deserializer=None):
        def behavior(requests: Iterator[Any], grpc_context: Any) -> Iterator[bytes]:
            return self._stream_responses(
                grpc_context, method, lambda state: run(state, _client_messages(requests))
            )

        return grpc.stream_stream_rpc_method_handler(behavior, request_deserializer=deserializer)

    def _generic_handler(self) -> grpc.GenericRpcHandler:
        handlers = {
            "Handshake": self._bidi_stream(_M.HANDSHAKE, self._run_handshake),
            "ListFlights": self._server_stream(_M.LIST_FLIGHTS, self._run_list_flights),
            "GetFlightInfo": self._unary(_M.GET_FLIGHT_INFO, self._run_get_flight_info),
            "PollFlightInfo": self._unary(_M.POLL_FLIGHT_INFO, self._run_poll_flight_info),
            "GetSchema": self._unary(_M.GET_SCHEMA, self._run_get_schema),
            "DoGet": self._server_stream(_M.DO_GET, self._run_do_get),
            "DoPut": self._bidi_stream(_M.DO_PUT, self._run_do_put, decode_flight_data),
            "DoExchange": self._bidi_stream(
                _M.DO_EXCHANGE, self._run_do_exchange, decode_flight_data
            ),
            "DoAction": self._server_stream(_M.DO_ACTION, self._run_do_action),
            "ListActions": self._server_stream(_M.LIST_ACTIONS, self._run_list_actions),
        }
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    # ------------------------------------------------------------- the RPCs

    def _run_list_flights(self, context: ServerCallContext, request: bytes) -> Iterator[bytes]:
        criteria = _parse(pb.Criteria, request).expression
        for info in self.list_flights(context, criteria) or ():
            yield info.serialize()

    def _run_get_flight_info(self, context: ServerCallContext, request: bytes) -> bytes:
        descriptor = FlightDescriptor._from_proto(_parse(pb.FlightDescriptor, request))
        info = self.get_flight_info(context, descriptor)
        if not isinstance(info, FlightInfo):
            raise TypeError(f"get_flight_info must return a FlightInfo, not {type(info).__name__}")
        return info.serialize()

    def _run_poll_flight_info(self, context: ServerCallContext, request: bytes) -> bytes:
        descriptor = FlightDescriptor._from_proto(_parse(pb.FlightDescriptor, request))
        poll = self.poll_flight_info(context, descriptor)
        if not isinstance(poll, PollInfo):
            raise TypeError(f"poll_flight_info must return a PollInfo, not {type(poll).__name__}")
        return poll.serialize()

    def _run_get_schema(self, context: ServerCallContext, request: bytes) -> bytes:
        descriptor = FlightDescriptor._from_proto(_parse(pb.FlightDescriptor, request))
        result = self.get_schema(context, descriptor)
        if isinstance(result, SchemaResult):
            return result.serialize()
        return SchemaResult(result).serialize()

    def _run_do_get(self, context: ServerCallContext, request: bytes) -> Iterator[bytes]:
        ticket = Ticket(_parse(pb.Ticket, request).ticket)
        stream = as_flight_data_stream(self.do_get(context, ticket))
        return stream._frames()

    def _run_do_action(self, context: ServerCallContext, request: bytes) -> Iterator[bytes]:
        message = _parse(pb.Action, request)
        action = Action(message.type, message.body)
        gate = self._gate
        if gate.authorizer is not None:
            gate.authorize(context.principal, _M.DO_ACTION, action.type, context.credentials)
        results = self.do_action(context, action)
        for result in results or ():
            body = result._body if isinstance(result, Result) else to_bytes(result)
            yield encode_bytes_message(body)

    def _run_list_actions(self, context: ServerCallContext, request: bytes) -> Iterator[bytes]:
        for item in self.list_actions(context) or ():
            if isinstance(item, ActionType):
                kind, description = item.type, item.description
            else:
                kind, description = item
            yield pb.ActionType(type=kind, description=description).SerializeToString()

    def _run_handshake(self, state: _CallState, requests: Iterator[bytes]) -> Iterator[bytes]:
        if not self._handshake_slots.acquire(blocking=False):
            raise FlightResourceExhaustedError(
                "too many handshakes in progress; retry shortly"
            )
        try:
            yield from self._handshake_exchange(state, requests)
        finally:
            self._handshake_slots.release()

    def _handshake_exchange(self, state: _CallState, requests: Iterator[bytes]):
        context = state.context
        if self._gate.handler is None:
            raise FlightUnimplementedError(
                "this server has no auth handler, so there is no handshake to run"
            )
        outbox = Outbox(capacity=16)
        payloads = (_parse(pb.HandshakeRequest, r).payload for r in requests)

        def send(payload: bytes) -> None:
            outbox.put(pb.HandshakeResponse(payload=payload).SerializeToString())

        def run() -> Any:
            try:
                return self._gate.handshake(context.credentials, payloads, send, context)
            finally:
                outbox.close()

        future = self._helpers.submit(run)
        timeout = self._options.handshake_timeout
        yield from _drain_until(outbox, future, timeout, context)
        login = future.result()
        if login is not None:
            for key, value in login.response_headers.items():
                context.add_header(key, value)

    def _run_do_put(self, state: _CallState, requests: Iterator[Any]) -> Iterator[bytes]:
        context = state.context
        from flight_secure.framing import FrameDecoder

        decoder = FrameDecoder(requests)
        descriptor = _descriptor_of(decoder)
        reader = MetadataRecordBatchReader(decoder)
        outbox = Outbox(capacity=64)
        writer = FlightMetadataWriter(outbox)

        def run() -> None:
            try:
                self.do_put(context, descriptor, reader, writer)
                # Drain what the handler left unread so the client's writes complete.
                for _ in reader:
                    pass
            finally:
                outbox.close()

        future = self._helpers.submit(run)
        yield from _drain_until(outbox, future, None, context)
        future.result()

    def _run_do_exchange(self, state: _CallState, requests: Iterator[Any]) -> Iterator[bytes]:
        context = state.context
        from flight_secure.framing import FrameDecoder

        decoder = FrameDecoder(requests)
        descriptor = _descriptor_of(decoder)
        reader = MetadataRecordBatchReader(decoder)
        outbox = Outbox(capacity=8)
        writer = MetadataRecordBatchWriter(outbox, None)

        def run() -> None:
            try:
                self.do_exchange(context, descriptor, reader, writer)
            finally:
                outbox.close()

        future = self._helpers.submit(run)
        yield from _drain_until(outbox, future, None, context)
        future.result()


def _client_messages(requests: Iterator[Any]) -> Iterator[Any]:
    """The client's messages; a cancelled or broken call raises FlightCancelledError."""
    try:
        yield from requests
    except grpc.RpcError:
        raise FlightCancelledError("the client cancelled the call or disconnected") from None


def _descriptor_of(decoder: Any) -> FlightDescriptor:
    raw = decoder.descriptor
    if raw is None:
        raise FlightInvalidArgumentError(
            "the first FlightData message must carry the FlightDescriptor"
        )
    return FlightDescriptor._from_proto(_parse(pb.FlightDescriptor, bytes(raw)))


def _drain_until(outbox: Outbox, future: Any, timeout: float | None, context) -> Iterator[bytes]:
    """Yield the outbox's frames while a helper thread fills it.

    With ``timeout``, give up (DEADLINE_EXCEEDED) when the helper has not finished
    in time; the helper is unblocked when gRPC ends the call.
    """
    if timeout is None:
        yield from outbox
        return
    import time

    deadline = time.monotonic() + timeout
    frames = iter(outbox)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not _wait_ready(outbox, remaining):
            raise FlightTimedOutError(f"handshake did not finish within {timeout:g} s")
        try:
            yield next(frames)
        except StopIteration:
            return


def _wait_ready(outbox: Outbox, timeout: float) -> bool:
    with outbox._cond:
        return outbox._cond.wait_for(lambda: bool(outbox._items), timeout)


def _parse(message_type: Any, data: bytes) -> Any:
    try:
        return message_type.FromString(data)
    except Exception:
        raise FlightInvalidArgumentError(
            f"request is not a valid {message_type.DESCRIPTOR.name} message"
        ) from None


__all__ = ["FlightServerBase", "FlightServerOptions", "FlightUnimplementedError"]
