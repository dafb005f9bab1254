"""The dispatch of every Flight RPC: from gRPC's call to the user's handler and back.

:class:`RpcDispatcher` builds the gRPC service for one :class:`FlightServerBase`.
Each call goes through :meth:`RpcDispatcher._open_call` (the auth gate, then
middleware), the server's handler, and :meth:`RpcDispatcher._close_call` (response
headers, trailers, middleware ``call_completed``). No request message is read
before ``_open_call`` has admitted the call. An exception from the handler is
sent to the client as the matching gRPC status with its message, and the server
keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from flight_secure._generated import flight_pb2 as pb
from flight_secure.auth.base import LoginThrottledError
from flight_secure.auth.gate import AuthGate
from flight_secure.auth.handshakes import HandshakeLimits
from flight_secure.context import ServerCallContext
from flight_secure.errors import (
    FlightCancelledError,
    FlightError,
    FlightInvalidArgumentError,
    FlightTimedOutError,
    FlightUnimplementedError,
    server_status,
)
from flight_secure.framing import FrameDecoder
from flight_secure.grpc_internals import read_past_end
from flight_secure.middleware import ServerMiddleware, headers_to_metadata
from flight_secure.outbox import Outbox
from flight_secure.rpcs import RPCS, SERVICE, Rpc
from flight_secure.server_options import FlightServerOptions
from flight_secure.streams import (
    FlightMetadataWriter,
    MetadataRecordBatchReader,
    MetadataRecordBatchWriter,
    flight_data_frames,
)
from flight_secure.types import (
    Action,
    ActionType,
    CallInfo,
    FlightDescriptor,
    FlightInfo,
    FlightMethod,
    PollInfo,
    Result,
    SchemaResult,
    Ticket,
)
from flight_secure.wire import decode_flight_data, parse_message
from flight_secure.workers import DaemonThreadPool

if TYPE_CHECKING:
    from flight_secure.server import FlightServerBase

log = logging.getLogger("flight_secure.server")

#: The trailer telling a throttled client how many seconds to wait before retrying.
RETRY_AFTER_TRAILER = "retry-after"
_M = FlightMethod


class _CallState:
    """What :meth:`RpcDispatcher._open_call` hands to the call's closing step."""

    __slots__ = ("context", "grpc_context", "headers_sent", "middleware")

    def __init__(self, context: ServerCallContext, grpc_context: Any) -> None:
        self.context = context
        self.grpc_context = grpc_context
        self.middleware: list = []
        self.headers_sent = False


class RpcDispatcher:
    """Serves the Flight service of ``server`` under ``options``."""

    def __init__(self, server: FlightServerBase, options: FlightServerOptions) -> None:
        self.server = server
        self.options = options
        self.gate = AuthGate(
            _auth_handler(options),
            options.authorizer,
            require_certificate=options.verify_client,
        )
        self.middleware_factories = options.middleware
        self.max_decompressed_size = (
            options.max_message_size if options.max_decompressed_size is None
            else options.max_decompressed_size
        )
        self.handshakes = HandshakeLimits(options.max_concurrent_handshakes,
                                          options.max_idle_handshakes_per_peer)
        # Handshakes wait (for credentials, for a checking slot): in threads of their
        # own, so a login storm never holds the threads DoPut and DoExchange need.
        self.handshake_helpers = DaemonThreadPool(options.max_workers, "flight-handshake")
        self.helpers = DaemonThreadPool(options.max_workers, "flight-stream")
        #: The threads gRPC runs each call on.
        self.workers = DaemonThreadPool(options.max_workers, "flight-rpc")
        self._close_deadline: float | None = None

    def close(self, wait: float) -> bool:
        """Stop the threads once the calls on them have ended (gRPC has ended the
        calls in flight), waiting ``wait`` seconds at most for their handlers to
        return; False when some had not. Those go on, on daemon threads."""
        if self._close_deadline is None:  # a second close keeps the first one's deadline
            self._close_deadline = time.monotonic() + wait
        deadline = self._close_deadline
        pools = (self.workers, self.helpers, self.handshake_helpers)
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        return all([pool.wait_idle(max(deadline - time.monotonic(), 0.0)) for pool in pools])

    def _open_call(self, grpc_context: Any, method: FlightMethod) -> _CallState:
        """Authenticate, authorize and start middleware for a call (raises to refuse)."""
        context = ServerCallContext(grpc_context, method)
        state = _CallState(context, grpc_context)
        gate = self.gate
        if gate.needed and method is not _M.HANDSHAKE:
            context.principal = gate.admit(context.credentials)
        if gate.authorizer is not None and method not in (_M.HANDSHAKE, _M.DO_ACTION):
            gate.authorize(context.principal, method, None, context.credentials)
        factories = self.middleware_factories
        if factories:
            info = CallInfo(method)
            headers = context.headers
            instances = {}
            for key, factory in factories.items():
                try:
                    instance = factory.start_call(info, headers)
                except Exception as exc:  # refused: the middleware started hears it
                    _tell_completed(instances.values(), exc)
                    raise
                if instance is not None:
                    instances[key] = instance
            context.attach_middleware(instances)
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
        extra.extend(headers_to_metadata(state.context.take_response_headers()))
        if extra:
            state.grpc_context.send_initial_metadata(tuple(extra))

    def _close_call(self, state: _CallState, error: BaseException | None) -> None:
        trailers = state.context.take_trailers()
        if trailers:
            state.grpc_context.set_trailing_metadata(tuple(headers_to_metadata(trailers)))
        _tell_completed(state.middleware, error)

    def _abort(self, grpc_context: Any, state: _CallState | None, exc: BaseException) -> None:
        """End the call with the status for ``exc``; never returns."""
        status = server_status(exc)
        if not isinstance(exc, FlightError):  # its traceback is logged, never sent
            internal = status.code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
            log.log(logging.ERROR if internal else logging.DEBUG, "handler raised %s",
                    type(exc).__name__, exc_info=exc)
        trailers = []
        if state is not None:
            trailers.extend(headers_to_metadata(state.context.take_trailers()))
            try:
                self._send_headers(state)
            except Exception:  # headers could not be sent; the status still can
                log.debug("could not send response headers", exc_info=True)
            self._close_call(state, exc)
        trailers.extend(status.trailers())
        grpc_context.set_trailing_metadata(tuple(trailers))
        grpc_context.abort(status.code, status.text)

    def _unary(self, method: FlightMethod, run):
        def behavior(requests: Iterator[bytes], grpc_context: Any) -> bytes:
            state = None
            try:
                state = self._open_call(grpc_context, method)
                response = run(state.context, _only_request(requests))
                self._send_headers(state)
            except Exception as exc:
                self._abort(grpc_context, state, exc)
            self._close_call(state, None)
            return response

        return grpc.stream_unary_rpc_method_handler(behavior)

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
        def behavior(requests: Iterator[bytes], grpc_context: Any) -> Iterator[bytes]:
            return self._stream_responses(
                grpc_context, method, lambda state: run(state.context, _only_request(requests))
            )

        return grpc.stream_stream_rpc_method_handler(behavior)

    def _bidi_stream(self, method: FlightMethod, run, deserializer=None):
        def behavior(requests: Iterator[Any], grpc_context: Any) -> Iterator[bytes]:
            return self._stream_responses(
                grpc_context,
                method,
                lambda state: run(state, self._client_messages(requests, grpc_context, method)),
            )

        return grpc.stream_stream_rpc_method_handler(behavior, request_deserializer=deserializer)

    def generic_handler(self) -> grpc.GenericRpcHandler:
        """The gRPC handlers of every RPC in :data:`~flight_secure.rpcs.RPCS`."""
        runs = {
            "Handshake": self._run_handshake,
            "ListFlights": self._run_list_flights,
            "GetFlightInfo": self._descriptor_call("get_flight_info", FlightInfo),
            "PollFlightInfo": self._descriptor_call("poll_flight_info", PollInfo),
            "GetSchema": self._run_get_schema,
            "DoGet": self._run_do_get,
            "DoPut": self._run_do_put,
            "DoExchange": self._run_do_exchange,
            "DoAction": self._run_do_action,
            "ListActions": self._run_list_actions,
        }
        handlers = {rpc.name: self._method_handler(rpc, runs[rpc.name]) for rpc in RPCS}
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def _method_handler(self, rpc: Rpc, run: Any) -> grpc.RpcMethodHandler:
        """The handler of the right shape for ``rpc``, around ``run``."""
        if rpc.client_streams:
            frames = decode_flight_data if rpc.request == "FlightData" else None
            return self._bidi_stream(rpc.method, run, frames)
        if rpc.server_streams:
            return self._server_stream(rpc.method, run)
        return self._unary(rpc.method, run)

    def _run_list_flights(self, context: ServerCallContext, request: bytes) -> Iterator[bytes]:
        criteria = parse_message(pb.Criteria, request).expression
        for info in self.server.list_flights(context, criteria) or ():
            yield info.serialize()

    def _descriptor_call(self, handler_name: str, result_type: type) -> Any:
        """GetFlightInfo and PollFlightInfo: descriptor in, one ``result_type`` out."""

        def run(context: ServerCallContext, request: bytes) -> bytes:
            descriptor = FlightDescriptor.deserialize(request)
            result = getattr(self.server, handler_name)(context, descriptor)
            if not isinstance(result, result_type):
                raise TypeError(
                    f"{handler_name} must return a {result_type.__name__}, "
                    f"not {type(result).__name__}"
                )
            return result.serialize()

        return run

    def _run_get_schema(self, context: ServerCallContext, request: bytes) -> bytes:
        descriptor = FlightDescriptor.deserialize(request)
        result = self.server.get_schema(context, descriptor)
        if isinstance(result, SchemaResult):
            return result.serialize()
        return SchemaResult(result).serialize()

    def _run_do_get(self, context: ServerCallContext, request: bytes) -> Iterator[bytes]:
        ticket = Ticket.deserialize(request)
        return flight_data_frames(self.server.do_get(context, ticket))

    def _run_do_action(self, context: ServerCallContext, request: bytes) -> Iterator[bytes]:
        action = Action.deserialize(request)
        gate = self.gate
        if gate.authorizer is not None:
            gate.authorize(context.principal, _M.DO_ACTION, action.type, context.credentials)
        results = self.server.do_action(context, action)
        for result in results or ():
            # A bytes-like result is sent as a Result; a str or any other value
            # raises TypeError (FlightServerError for the client), as in pyarrow.
            yield (result if isinstance(result, Result) else Result(result)).serialize()

    def _run_list_actions(self, context: ServerCallContext, request: bytes) -> Iterator[bytes]:
        for item in self.server.list_actions(context):
            listed = listed_action_type(item)
            yield pb.ActionType(type=listed.type,
                                description=listed.description).SerializeToString()

    def _run_handshake(self, state: _CallState, requests: Iterator[bytes]) -> Iterator[bytes]:
        """The Handshake: admitted by the gate's limits, run by the gate in a helper
        thread while this generator sends its replies, within two deadlines:
        ``handshake_silence_timeout`` until credentials arrive, ``handshake_timeout``
        in all."""
        context = state.context
        if self.options.auth_handler is None:
            raise FlightUnimplementedError(
                "this server has no auth handler, so there is no handshake to run"
            )
        options = self.options
        began = time.monotonic()
        admission = self.handshakes.begin(context.credentials, began + options.handshake_timeout)
        try:
            outbox = Outbox()
            payloads = (parse_message(pb.HandshakeRequest, r).payload for r in requests)

            def send(payload: bytes) -> None:
                outbox.put(pb.HandshakeResponse(payload=payload).SerializeToString())

            def run() -> Any:
                try:
                    return self.gate.handshake(context.credentials, payloads, send, admission)
                finally:
                    outbox.close()

            future = self.handshake_helpers.submit(run)
            frames = iter(outbox)
            while True:
                remaining = self._handshake_deadline(admission, began) - time.monotonic()
                if not outbox.wait_ready(max(remaining, 0.0)):
                    continue  # a deadline came: see what it means now
                try:
                    yield next(frames)
                except StopIteration:
                    break
            try:
                login = future.result()
            except LoginThrottledError as exc:
                context.add_trailer(RETRY_AFTER_TRAILER, str(exc.retry_after))
                raise
            if login is not None:
                for key, value in login.response_headers.items():
                    context.add_header(key, value)
        finally:
            admission.close()

    def _handshake_deadline(self, admission: Any, began: float) -> float:
        """When the Handshake that ``began`` must next have made progress.

        A silent one reaching the limits' ``idle_after`` is counted as idle (which
        may refuse it); an idle one is ended at ``handshake_silence_timeout``; any
        one at ``handshake_timeout``. Raises FlightTimedOutError for a deadline that
        has passed.
        """
        now = time.monotonic()
        silence, timeout = self.options.handshake_silence_timeout, self.options.handshake_timeout
        quiet_until = began + min(silence, timeout)
        if not admission.has_credentials and now < quiet_until:
            idle_after = began + min(self.handshakes.idle_after, silence, timeout)
            if now < idle_after:
                return idle_after
            admission.went_idle()
            if not admission.has_credentials:
                return quiet_until
        if admission.has_credentials and now < began + timeout:
            return began + timeout
        if admission.has_credentials or silence >= timeout:
            raise FlightTimedOutError(f"handshake did not finish within {timeout:g} s")
        raise FlightTimedOutError(f"no credentials arrived within {silence:g} s")

    def _client_messages(
        self, requests: Iterator[Any], grpc_context: Any, method: FlightMethod
    ) -> Iterator[Any]:
        """The client's messages; a cancelled or broken call raises FlightCancelledError.

        gRPC sometimes ends the messages of a cancelled call as if the client had
        finished: the cancellation reaches grpcio's bookkeeping a moment later. For
        DoPut, where a clean end means "store this", the end is confirmed before the
        handler sees it: once one more read of the call has come back through gRPC
        (:func:`~flight_secure.grpc_internals.read_past_end`), a cancelled call shows
        as inactive. Where that read cannot be made, the call is watched for
        ``end_of_stream_grace`` seconds instead: if it ends within them, the upload
        was cut off.
        """
        ended = threading.Event()
        grace = self.options.end_of_stream_grace
        confirm = method is _M.DO_PUT and grace > 0
        if confirm and not grpc_context.add_callback(ended.set):
            ended.set()
        try:
            yield from requests
        except grpc.RpcError:
            raise FlightCancelledError("the client cancelled the call or disconnected") from None
        if confirm:
            if not ended.is_set() and not read_past_end(grpc_context, grace):
                ended.wait(grace)
            if ended.is_set() or not grpc_context.is_active():
                raise FlightCancelledError(
                    "the client went away before it finished the upload"
                )

    def _run_do_put(self, state: _CallState, requests: Iterator[Any]) -> Iterator[bytes]:
        def handle(context, descriptor, reader, outbox):
            self.server.do_put(context, descriptor, reader, FlightMetadataWriter(outbox))
            # Drain what the handler left unread so the client's writes complete.
            for _ in reader:
                pass

        return self._run_data_stream(state, requests, handle)

    def _run_do_exchange(self, state: _CallState, requests: Iterator[Any]) -> Iterator[bytes]:
        def handle(context, descriptor, reader, outbox):
            writer = MetadataRecordBatchWriter(outbox, None)
            self.server.do_exchange(context, descriptor, reader, writer)

        return self._run_data_stream(state, requests, handle)

    def _run_data_stream(
        self, state: _CallState, requests: Iterator[Any], handle: Any
    ) -> Iterator[bytes]:
        """DoPut and DoExchange: the handler runs in a helper thread, reading the
        client's stream, while this generator sends what it writes (backpressured)."""
        context = state.context
        decoder = FrameDecoder(requests, max_decompressed_size=self.max_decompressed_size)
        descriptor = _descriptor_of(decoder)
        reader = MetadataRecordBatchReader(decoder)
        outbox = Outbox()

        def run() -> None:
            try:
                handle(context, descriptor, reader, outbox)
            finally:
                outbox.close()

        future = self.helpers.submit(run)
        try:
            yield from outbox
        finally:
            # When the client goes away this generator is closed mid-stream: a handler
            # blocked writing must wake up (with FlightCancelledError) and return.
            outbox.fail(FlightCancelledError("the client cancelled the call or disconnected"))
        future.result()


def _tell_completed(instances: Iterable[ServerMiddleware], error: BaseException | None) -> None:
    """``call_completed(error)`` on each middleware; one that raises is logged."""
    for instance in instances:
        try:
            instance.call_completed(error)
        except Exception:
            log.exception("server middleware call_completed failed")


def _auth_handler(options: FlightServerOptions) -> Any:
    """The server's handler; with ``verify_client`` and none given, the certificate's
    identity is the caller's (a call without a certificate is refused)."""
    if options.auth_handler is None and options.verify_client:
        from flight_secure.auth.mtls import MutualTLSServerAuthHandler

        return MutualTLSServerAuthHandler()
    return options.auth_handler


def listed_action_type(item: Any) -> ActionType:
    """An item a handler's ``list_actions`` returned, as an ActionType.

    The item is an ActionType or a tuple whose first two members are the type and
    the description (str or bytes); as in pyarrow, anything else raises TypeError
    and a shorter tuple IndexError, which the client sees as FlightServerError.
    """
    if not isinstance(item, tuple):
        raise TypeError("Results of list_actions must be ActionType or tuple")
    return ActionType(_text(item[0]), _text(item[1]))


def _text(value: Any) -> str:
    """A str, or bytes read as UTF-8; TypeError for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    raise TypeError(f"expected bytes, {type(value).__name__} found")


def _only_request(requests: Iterator[bytes]) -> bytes:
    """The one request message of a unary-request call, read once the call is admitted.

    Every RPC is served as a request stream so that nothing of a request is read
    before the auth gate has admitted the call: until then gRPC holds at most the
    stream's flow-control window of it.
    """
    try:
        return next(requests)
    except StopIteration:
        raise FlightInvalidArgumentError("the call carried no request message") from None
    except grpc.RpcError:
        raise FlightCancelledError("the client cancelled the call or disconnected") from None


def _descriptor_of(decoder: Any) -> FlightDescriptor:
    raw = decoder.descriptor
    if raw is None:
        raise FlightInvalidArgumentError(
            "the first FlightData message must carry the FlightDescriptor"
        )
    return FlightDescriptor.deserialize(bytes(raw))
