"""FlightServerOptions: how a server listens, whom it lets in, and the limits it keeps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from flight_secure.auth.base import Principal, ServerAuthHandler
from flight_secure.middleware import ServerMiddlewareFactory
from flight_secure.tracing import TracingServerMiddlewareFactory
from flight_secure.types import CertKeyPair, FlightMethod, Location
from flight_secure.wire import DEFAULT_MAX_MESSAGE_SIZE


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
        max_concurrent_handshakes: handshakes whose credentials are being checked
            at once; more wait for their turn.
        max_idle_handshakes_per_peer: handshakes one client network (an IPv4
            address, an IPv6 /64) may keep open without sending credentials; more
            are refused with RESOURCE_EXHAUSTED (see
            :mod:`flight_secure.auth.handshakes`).
        handshake_silence_timeout: seconds a handshake may stay without sending
            credentials before it is ended.
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
        max_idle_handshakes_per_peer: int = 8,
        handshake_silence_timeout: float = 2.0,
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
        self.max_idle_handshakes_per_peer = max_idle_handshakes_per_peer
        self.handshake_silence_timeout = handshake_silence_timeout
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
        _check_middleware(self.middleware)


#: The largest value of gRPC's integer channel arguments (a limit's upper bound;
#: as a setting, no limit).
GRPC_INT_MAX = 2**31 - 1


def _check_limits(options: FlightServerOptions) -> None:
    """Raise ValueError naming the first limit that cannot work."""
    for name, minimum, also_allowed in (
        ("max_workers", 1, ()),
        ("max_concurrent_handshakes", 1, ()),
        ("max_idle_handshakes_per_peer", 1, ()),
        ("max_message_size", 1, (-1,)),  # -1: no limit
        ("max_decompressed_size", 1, (None, -1)),  # None: max_message_size
        ("stream_window_bytes", 1, ()),
        ("max_streams_per_connection", 1, (None,)),  # None: no limit
    ):
        value = getattr(options, name)
        if any(value is allowed for allowed in also_allowed):
            continue
        if type(value) is not int or not minimum <= value <= GRPC_INT_MAX:
            extra = "".join(f" or {allowed!r}" for allowed in also_allowed)
            raise ValueError(
                f"{name} must be an integer from {minimum} to {GRPC_INT_MAX}{extra}, "
                f"not {value!r}"
            )
    for name, zero_allowed in (("handshake_timeout", False), ("handshake_silence_timeout", False),
                               ("end_of_stream_grace", True)):
        value = getattr(options, name)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or value < 0 or (value == 0 and not zero_allowed):
            bound = "0 or more" if zero_allowed else "above 0"
            raise ValueError(f"{name} must be a number of seconds {bound}, not {value!r}")


def _check_middleware(middleware: dict[str, ServerMiddlewareFactory]) -> None:
    """ValueError when more than one factory traces calls (pyarrow's rule and words)."""
    tracing = [f for f in middleware.values() if isinstance(f, TracingServerMiddlewareFactory)]
    if len(tracing) > 1:
        raise ValueError("Can only provide TracingServerMiddlewareFactory once")


def _as_location(location: Any) -> Location:
    if location is None:
        return Location("grpc://localhost:0")
    if isinstance(location, tuple):
        return Location.for_grpc_tcp(*location)
    return Location(location)
