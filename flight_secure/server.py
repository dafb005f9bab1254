"""FlightServerBase and FlightServerOptions: a server's lifecycle and the RPCs to override.

How each RPC reaches these methods is :mod:`flight_secure.dispatch`'s job.
"""

from __future__ import annotations

import logging
import signal as _signal
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from flight_secure.auth.base import ServerAuthHandler
from flight_secure.context import ServerCallContext
from flight_secure.dispatch import RpcDispatcher
from flight_secure.errors import (
    FlightError,
    FlightInvalidArgumentError,
)
from flight_secure.middleware import ServerMiddlewareFactory
from flight_secure.streams import (
    FlightMetadataWriter,
    MetadataRecordBatchReader,
    MetadataRecordBatchWriter,
)
from flight_secure.types import (
    Action,
    ActionType,
    CertKeyPair,
    FlightDescriptor,
    FlightInfo,
    FlightMethod,
    Location,
    PollInfo,
    SchemaResult,
    Ticket,
)

log = logging.getLogger("flight_secure.server")

SERVICE = "arrow.flight.protocol.FlightService"
_M = FlightMethod


class FlightServerOptions:
    """How a server listens and whom it lets in.

    The first six arguments are Arrow's. The rest are flight_secure's limits:
    ``max_workers`` threads serve calls; ``max_concurrent_handshakes`` bounds the
    handshakes whose credentials are being checked (more wait for their turn);
    ``max_idle_handshakes_per_peer`` bounds the handshakes one client network (an
    IPv4 address, an IPv6 /64) may keep open without sending credentials (more
    are refused with RESOURCE_EXHAUSTED), and ``handshake_silence_timeout`` ends
    each that sends none in time; ``handshake_timeout`` ends a handshake that
    has not finished (see :mod:`flight_secure.auth.handshakes`); ``max_message_size`` (bytes,
    -1 for no limit) caps one received message; ``max_metadata_size`` caps a
    call's headers; ``authorizer`` decides per call after authentication;
    ``end_of_stream_grace`` is how long a DoPut's end is confirmed before the
    handler's reader reports it (so a cut-off upload never looks finished): the
    confirmation is normally one more read through gRPC (well under a
    millisecond) and waits out the whole grace only where grpcio's internals
    differ from the ones it was built on; 0 turns the check off;
    ``stream_window_bytes`` is how much of one incoming stream gRPC reads ahead
    of the handler (the HTTP/2 stream window's floor; uploads of big batches flow
    faster with a larger one). Each open stream may hold this much in memory
    before its handler, and the auth gate, run: lower it where many untrusted
    clients may queue uploads behind busy workers. ``max_streams_per_connection``
    (default None: no limit, as in gRPC and Arrow) is how many calls one
    connection may have open at once (HTTP/2's ``SETTINGS_MAX_CONCURRENT_STREAMS``);
    a client's further calls wait in that client until one ends. It bounds the
    stream windows one connection can fill, and below ``max_workers`` it keeps one
    connection from occupying every worker. Caveat, seen in the hostile-input
    fuzz: with a limit set, a connection whose calls keep being refused later gets
    some calls reset with ``REFUSED_STREAM`` (UNAVAILABLE) instead of their real
    error, as gRPC's defence against rapid resets lowers the limit for a while.
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
        max_idle_handshakes_per_peer: int = 8,
        handshake_silence_timeout: float = 2.0,
        handshake_timeout: float = 10.0,
        max_message_size: int = -1,
        max_metadata_size: int = 16 * 1024,
        authorizer: Any = None,
        tls_credentials: Any = None,
        end_of_stream_grace: float = 0.01,
        stream_window_bytes: int = 4 * 1024 * 1024,
        max_streams_per_connection: int | None = None,
    ) -> None:
        self.location = _as_location(location)
        self.auth_handler = auth_handler
        self.tls_certificates = list(tls_certificates or [])
        self.verify_client = verify_client
        self.root_certificates = root_certificates
        self.middleware = dict(middleware or {})
        self.max_workers = max_workers
        self.max_concurrent_handshakes = max_concurrent_handshakes
        self.max_idle_handshakes_per_peer = max_idle_handshakes_per_peer
        self.handshake_silence_timeout = handshake_silence_timeout
        self.handshake_timeout = handshake_timeout
        self.max_message_size = max_message_size
        self.max_metadata_size = max_metadata_size
        self.authorizer = authorizer
        self.tls_credentials = tls_credentials
        self.end_of_stream_grace = end_of_stream_grace
        self.stream_window_bytes = stream_window_bytes
        self.max_streams_per_connection = max_streams_per_connection
        _check_limits(self)


_INT32_MAX = 2**31 - 1


def _check_limits(options: FlightServerOptions) -> None:
    """Raise ValueError naming the first limit that cannot work."""
    for name, minimum, optional in (
        ("max_workers", 1, False),
        ("max_concurrent_handshakes", 1, False),
        ("max_idle_handshakes_per_peer", 1, False),
        ("stream_window_bytes", 1, False),
        ("max_streams_per_connection", 1, True),  # None: no limit
    ):
        value = getattr(options, name)
        if value is None and optional:
            continue
        if type(value) is not int or not minimum <= value <= _INT32_MAX:
            raise ValueError(
                f"{name} must be an integer from {minimum} to {_INT32_MAX}, not {value!r}"
            )
    for name, zero_allowed in (("handshake_timeout", False), ("handshake_silence_timeout", False),
                               ("end_of_stream_grace", True)):
        value = getattr(options, name)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or value < 0 or (value == 0 and not zero_allowed):
            bound = "0 or more" if zero_allowed else "above 0"
            raise ValueError(f"{name} must be a number of seconds {bound}, not {value!r}")


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
        if options.verify_client and not location.is_tls:
            raise FlightInvalidArgumentError(
                "verify_client=True needs a grpc+tls:// location: without TLS no client "
                "certificate can be asked for, and no caller would be identified"
            )
        if options.verify_client and not (options.root_certificates or options.tls_credentials):
            raise FlightInvalidArgumentError(
                "verify_client=True needs root_certificates (the CA that signs client certificates)"
            )
        self._options = options
        self._dispatcher = RpcDispatcher(self, options)
        grpc_options = [
            ("grpc.max_receive_message_length", options.max_message_size),
            ("grpc.max_send_message_length", -1),
            ("grpc.max_metadata_size", options.max_metadata_size),
            ("grpc.so_reuseport", 0),
            ("grpc.http2.lookahead_bytes", options.stream_window_bytes),
        ]
        if options.max_streams_per_connection is not None:
            limit = options.max_streams_per_connection
            grpc_options.append(("grpc.max_concurrent_streams", limit))
        server = grpc.server(
            ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="flight-rpc"),
            handlers=[self._dispatcher.generic_handler()],
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
        self._dispatcher.close()
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


__all__ = ["FlightServerBase", "FlightServerOptions"]
