"""``--impls floor,...``: the least work a Flight server on Python grpcio can do.

Not a Flight implementation: a reference point for the benchmark. Its server is
a bare ``grpc.server`` whose replies are computed once and then replayed as
prebuilt bytes, so a round measures only grpcio's Python layer, gRPC core and
the kernel. Nothing of flight_secure's server runs per call: no dispatcher,
context, auth gate or middleware, no encoding of batches.

* DoGet, DoAction and GetFlightInfo: the first call with given request
  bytes runs the handler (the benchmark's own ``BenchServer`` methods) and
  keeps the serialized replies; later calls send them again.
* Other RPCs answer UNIMPLEMENTED, and there are no auth handlers (the auth
  variants are reported as errors). TLS and mTLS work as in the others.
* The client is flight_secure's own ``FlightClient``; it measured the same as a
  raw grpcio client (bench/README.md), so a pair ``floor`` vs ``pyarrow`` bounds
  what any server on this stack can reach against pyarrow's C++ one, and
  ``flight_secure`` vs ``floor`` is what flight_secure's server costs above it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from flight_secure import (  # noqa: F401 - re-exported as the module's client-side API
    Action,
    CertKeyPair,
    FlightClient,
    FlightDescriptor,
    FlightEndpoint,
    FlightInfo,
    FlightServerError,
    Location,
    RecordBatchStream,
    Result,
    Ticket,
)
from flight_secure._generated import flight_pb2 as pb

_SERVICE = "arrow.flight.protocol.FlightService"


class FlightServerBase:
    """A grpcio server that replays each distinct request's first replies."""

    def __init__(
        self,
        location: str,
        tls_certificates: list[CertKeyPair] | None = None,
        verify_client: bool = False,
        root_certificates: bytes | None = None,
        **unsupported: Any,
    ) -> None:
        if unsupported:
            raise NotImplementedError(f"the floor server has no {sorted(unsupported)}")
        self._replies: dict[tuple[str, bytes], Any] = {}
        self._lock = threading.Lock()
        handlers = {
            "DoGet": grpc.unary_stream_rpc_method_handler(self._replay(self._get)),
            "DoAction": grpc.unary_stream_rpc_method_handler(self._replay(self._action)),
            "GetFlightInfo": grpc.unary_unary_rpc_method_handler(self._replay(self._info)),
        }
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=64),
            handlers=[grpc.method_handlers_generic_handler(_SERVICE, handlers)],
            options=[("grpc.max_send_message_length", -1)],
        )
        target = location.split("://", 1)[1]
        if tls_certificates:
            pair = tls_certificates[0]
            credentials = grpc.ssl_server_credentials(
                [(pair.key, pair.cert)],
                root_certificates=root_certificates,
                require_client_auth=verify_client,
            )
            self.port = self._server.add_secure_port(target, credentials)
        else:
            self.port = self._server.add_insecure_port(target)
        self._server.start()

    def _replay(self, build: Callable[[bytes], Any]) -> Callable[[bytes, Any], Any]:
        name = build.__name__

        def handler(request: bytes, context: Any) -> Any:
            key = (name, request)
            replies = self._replies.get(key)
            if replies is None:
                with self._lock:
                    replies = self._replies.get(key)
                    if replies is None:
                        replies = self._replies[key] = build(request)
            return iter(replies) if isinstance(replies, list) else replies

        return handler

    def _get(self, request: bytes) -> list[bytes]:
        ticket = pb.Ticket.FromString(request).ticket
        return list(self.do_get(None, Ticket(ticket))._frames())

    def _action(self, request: bytes) -> list[bytes]:
        action = pb.Action.FromString(request)
        results = self.do_action(None, Action(action.type, action.body))
        return [pb.Result(body=r.body.to_pybytes()).SerializeToString() for r in results]

    def _info(self, request: bytes) -> bytes:
        descriptor = FlightDescriptor.deserialize(request)
        return self.get_flight_info(None, descriptor).serialize()

    def do_get(self, context: Any, ticket: Ticket) -> Any:
        raise NotImplementedError

    def do_action(self, context: Any, action: Action) -> Any:
        raise NotImplementedError

    def get_flight_info(self, context: Any, descriptor: FlightDescriptor) -> Any:
        raise NotImplementedError

    def serve(self) -> None:
        self._server.wait_for_termination()

    def shutdown(self) -> None:
        self._server.stop(grace=None).wait()
