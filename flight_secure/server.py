"""FlightServerBase: a server's lifecycle and the RPCs to override.

What it is configured with is :class:`~flight_secure.server_options.FlightServerOptions`;
how each RPC reaches these methods is :mod:`flight_secure.dispatch`'s job.
"""

from __future__ import annotations

import atexit
import logging
import signal as _signal
import threading
import weakref
from collections.abc import Iterable
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
from flight_secure.server_options import GRPC_INT_MAX, FlightServerOptions
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
    Location,
    PollInfo,
    SchemaResult,
    Ticket,
)

log = logging.getLogger("flight_secure.server")

#: Seconds the interpreter's exit waits for gRPC to end a server still running.
EXIT_STOP_WAIT = 1.0

#: Servers started, by id (a subclass need not be hashable), see :func:`_stop_at_exit`.
_RUNNING: weakref.WeakValueDictionary[int, FlightServerBase] = weakref.WeakValueDictionary()


def _stop_at_exit() -> None:
    """Stop, at interpreter exit, the servers nobody shut down: their calls cancelled
    at once, handlers not waited for (they run on daemon threads).

    grpcio's core torn down at exit under a server whose handlers are still inside
    a call can abort the process ("terminate called without an active exception");
    pyarrow.flight likewise shuts its servers down at exit.
    """
    for server in list(_RUNNING.values()):
        grpc_server = server._grpc_server
        if grpc_server is not None and not server._stopped.is_set():
            grpc_server.stop(0).wait(EXIT_STOP_WAIT)


atexit.register(_stop_at_exit)


class FlightServerBase:
    """Base class of Flight servers: override the RPC methods you serve.

    Constructed with any of Arrow's keyword arguments the server starts at once
    (pyarrow's style); constructed with none, it starts on the first of
    :meth:`init`, :attr:`port`, :meth:`serve` or ``with``, on localhost at a free port.
    """

    #: Seconds handlers get to return once :meth:`shutdown` has cancelled their calls.
    CANCEL_WAIT = 2.0

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
            # Bandwidth probing would grow stream windows past stream_window_bytes
            # (measured: ~12 MiB held per queued upload on one connection, not 4).
            ("grpc.http2.bdp_probe", 0),
            # grpcio takes arriving calls from gRPC's core one at a time; calls that
            # arrive faster wait in the core, which by default cancels them at random
            # beyond 1,000 waiting (or after 30 s): a bare CANCELLED, logged nowhere.
            # 1024 busy clients met it on ~0.5% of their calls. A waiting call waits.
            ("grpc.server.max_pending_requests", GRPC_INT_MAX),
            ("grpc.server.max_pending_requests_hard_limit", GRPC_INT_MAX),
            ("grpc.server_max_unrequested_time_in_server", GRPC_INT_MAX),
        ]
        if options.max_streams_per_connection is not None:
            limit = options.max_streams_per_connection
            grpc_options.append(("grpc.max_concurrent_streams", limit))
        server = grpc.server(
            self._dispatcher.workers,
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
        _RUNNING[id(self)] = self

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
        # serve() returns once this shutdown has finished, handlers' CANCEL_WAIT included.
        threading.Thread(target=self.shutdown, daemon=True).start()

    def shutdown(self, grace: float | None = 2.0) -> None:
        """Stop accepting calls, and cancel those in flight after ``grace`` seconds.

        The cancelled calls' handlers then get :attr:`CANCEL_WAIT` seconds to
        return (to clean up); one that does not is left running on a daemon thread,
        so it cannot keep the process from exiting.
        """
        server = self._grpc_server
        if server is None:
            self._stopped.set()
            return
        try:
            server.stop(grace).wait()
            if not self._dispatcher.close(self.CANCEL_WAIT) and not self._stopped.is_set():
                log.warning("a handler still runs %g s after its call was cancelled at "
                            "shutdown", self.CANCEL_WAIT)
        finally:
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
        raise NotImplementedError("ListActions is not implemented by this server")

    def do_action(self, context: ServerCallContext, action: Action) -> Iterable[Any] | None:
        raise NotImplementedError(f"action {action.type!r} is not implemented by this server")


__all__ = ["FlightServerBase", "FlightServerOptions"]
