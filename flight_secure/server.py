"""FlightServerBase and FlightServerOptions: a server's lifecycle and the RPCs to override.

How each RPC reaches these methods is :mod:`flight_secure.dispatch`'s job.
"""

from __future__ import annotations

import logging
import signal as _signal
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from flight_secure.auth.base import Principal, ServerAuthHandler
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
from flight_secure.tls import pem_bytes
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
from flight_secure.wire import DEFAULT_MAX_MESSAGE_SIZE

log = logging.getLogger("flight_secure.server")


class FlightServerOptions:
    """How a server listens, whom it lets in, and how much one caller can make it hold.

    The first six parameters are pyarrow.flight's; the others are keywords. Each
    limit is checked here: ValueError names the first one that cannot work.

    Args:
        location: where to listen: a URI (``grpc://``, ``grpc+tcp://``,
            ``grpc+tls://``, ``grpc+unix://``), a Location or ``(host, port)``;
            None is localhost at a port the OS chooses.
        auth_handler: authenticates every call but Handshake, and runs Handshake;
            None admits every caller (or, with ``verify_client``, every certificate).
        tls_certificates: the server's certificate and key pairs; a ``grpc+tls``
            location needs one (or ``tls_credentials``).
        verify_client: demand a client certificate signed by ``root_certificates``;
            without an ``auth_handler`` it is the caller's identity.
        root_certificates: PEM of the CAs that sign client certificates.
        middleware: server middleware factories, by the key handlers look them up with.
        max_workers: threads that serve calls; as many more run the handlers of
            DoPut, DoExchange and Handshake beside their calls. Further calls wait.
        max_concurrent_handshakes: handshakes in progress at once; more are
            refused with RESOURCE_EXHAUSTED.
        handshake_timeout: seconds a handshake may take before it is ended with
            DEADLINE_EXCEEDED.
        max_message_size: the largest message the server reads, in bytes (-1: no
            limit). Larger ones are refused with RESOURCE_EXHAUSTED from their
            5-byte length prefix, before their body is read. The default, 64 MiB,
            sits between Arrow's servers: C++ and Java read messages of any size
            (C++ lifts gRPC's 4 MiB default so that big record batches flow), Go
            keeps grpc-go's 4 MiB, which refuses the multi-megabyte batches a
            pyarrow client sends by default (one message per chunk of a table).
            64 MiB passes a 131,072-row batch (Arrow's default scanner batch) of 64
            eight-byte columns, and bounds what one message can make the server
            hold, a Handshake message included. Send larger batches in chunks
            (``write_table(table, max_chunksize=...)``) or raise the limit.
        max_decompressed_size: the most bytes the buffers of one compressed record
            or dictionary batch (DoPut, DoExchange) may take once decompressed; -1:
            no limit; None: ``max_message_size``, so that a batch is bounded alike
            sent compressed or not. Each compressed buffer declares its size in an
            8-byte prefix, which is checked before anything is decompressed: a
            larger batch is refused with RESOURCE_EXHAUSTED.
        max_metadata_size: the largest header block of a call, in bytes.
        authorizer: called as ``authorizer(principal, method, action_type)`` after
            authentication; raises FlightUnauthorizedError to refuse (see
            :class:`~flight_secure.auth.AccessPolicy`).
        tls_credentials: gRPC server credentials used instead of
            ``tls_certificates``, e.g. ``tls.reloading_server_credentials(...)``.
        end_of_stream_grace: seconds for which a DoPut's end is confirmed before the
            handler's reader reports it, so that a cut-off upload never looks
            finished. The confirmation is normally one more read through gRPC (well
            under a millisecond); the whole grace is waited out only where grpcio's
            internals differ from the ones it was built on. 0 turns the check off.
        stream_window_bytes: how much of one call's request stream gRPC accepts
            ahead of the handler: the HTTP/2 stream window, kept fixed (the
            server does not grow it by bandwidth probing). A call's messages are
            read only once the auth gate has admitted it, so this is also all that
            an unauthenticated call, or one waiting for a worker, can make the
            server hold. Big batches upload faster with a larger window; over a
            link with round-trip time RTT one upload moves at most window/RTT.
        max_streams_per_connection: how many calls one connection may have open at
            once (HTTP/2's ``SETTINGS_MAX_CONCURRENT_STREAMS``); a client's further
            calls wait in that client. None: no limit, as in gRPC and Arrow. It
            bounds how many stream windows one connection can fill, and below
            ``max_workers`` it keeps one connection from occupying every worker.
            Caveat, seen in the hostile-input fuzz: with a limit, a connection whose
            calls keep being refused later gets some calls reset with
            ``REFUSED_STREAM`` (UNAVAILABLE) instead of their real error, as gRPC's
            defence against rapid resets lowers the limit for a while.
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
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_decompressed_size: int | None = None,
        max_metadata_size: int = 16 * 1024,
        authorizer: Callable[[Principal | None, FlightMethod, str | None], None] | None = None,
        tls_credentials: grpc.ServerCredentials | None = None,
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
        self.handshake_timeout = handshake_timeout
        self.max_message_size = max_message_size
        self.max_decompressed_size = max_decompressed_size
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
    for name, minimum, also_allowed in (
        ("max_workers", 1, ()),
        ("max_concurrent_handshakes", 1, ()),
        ("max_message_size", 1, (-1,)),  # -1: no limit
        ("max_decompressed_size", 1, (None, -1)),  # None: max_message_size
        ("stream_window_bytes", 1, ()),
        ("max_streams_per_connection", 1, (None,)),  # None: no limit
    ):
        value = getattr(options, name)
        if any(value is allowed for allowed in also_allowed):
            continue
        if type(value) is not int or not minimum <= value <= _INT32_MAX:
            extra = "".join(f" or {allowed!r}" for allowed in also_allowed)
            raise ValueError(
                f"{name} must be an integer from {minimum} to {_INT32_MAX}{extra}, "
                f"not {value!r}"
            )
    for name, zero_allowed in (("handshake_timeout", False), ("end_of_stream_grace", True)):
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
        self._dispatcher = RpcDispatcher(self, options)
        grpc_options = [
            ("grpc.max_receive_message_length", options.max_message_size),
            ("grpc.max_send_message_length", -1),
            ("grpc.max_metadata_size", options.max_metadata_size),
            ("grpc.so_reuseport", 0),
            ("grpc.http2.lookahead_bytes", options.stream_window_bytes),
            # Bandwidth probing would grow stream windows past stream_window_bytes
            # (measured: ~12 MiB held per queued upload on one connection, not 4).
            ("grpc.http2.bdp_probe", 0),
            # grpcio takes arriving calls from gRPC's core one at a time; calls that
            # arrive faster wait in the core, which by default cancels them at random
            # beyond 1,000 waiting (or after 30 s): a bare CANCELLED, logged nowhere.
            # 1024 busy clients met it on ~0.5% of their calls. A waiting call waits.
            ("grpc.server.max_pending_requests", _INT32_MAX),
            ("grpc.server.max_pending_requests_hard_limit", _INT32_MAX),
            ("grpc.server_max_unrequested_time_in_server", _INT32_MAX),
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
                [(pem_bytes(p.key), pem_bytes(p.cert)) for p in options.tls_certificates],
                root_certificates=pem_bytes(options.root_certificates),
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
        if loc.is_tls:
            return Location.for_grpc_tls(host, self.port)
        return Location.for_grpc_tcp(host, self.port)

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
