"""Canaries for the grpcio internals that flight_secure relies on.

Each internal lives in :mod:`flight_secure.grpc_internals` with its reason. These
tests use it on live grpcio objects; when an upgrade removes one, they fail naming
the grpcio version and the internal, instead of the package quietly waiting out a
grace period, leaking calls or losing certificate rotation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import grpc.experimental
import pytest

from flight_secure import grpc_internals
from flight_secure.certs import generate_dev_certificates
from flight_secure.grpc_internals import GRPCIO_VERSION

SERVICE = "canary.Service"


def lacks(missing: list[str]) -> str:
    return f"grpcio {GRPCIO_VERSION} no longer has: {', '.join(missing)}"


def serve(handlers: dict[str, grpc.RpcMethodHandler]) -> tuple[grpc.Server, str]:
    server = grpc.server(ThreadPoolExecutor(2),
                         handlers=[grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("localhost:0")
    server.start()
    return server, f"localhost:{port}"


def test_a_server_call_can_be_read_past_its_end() -> None:
    def upload(requests: Iterator[bytes], context: Any) -> bytes:
        for _ in requests:
            pass
        missing = grpc_internals.missing_in_server_context(context)
        if missing:
            return lacks(missing).encode()
        answered = grpc_internals.read_past_end(context, 5.0)
        return b"answered" if answered else b"no answer to the read past the end"

    server, target = serve({"Upload": grpc.stream_unary_rpc_method_handler(upload)})
    try:
        with grpc.insecure_channel(target) as channel:
            answer = channel.stream_unary(f"/{SERVICE}/Upload")(iter([b"a", b"b"]), timeout=10)
    finally:
        server.stop(None)
    assert answer == b"answered", answer.decode()


def test_an_abandoned_client_call_can_be_released() -> None:
    def numbers(request: bytes, context: Any) -> Iterator[bytes]:
        for number in range(1000):
            yield b"%d" % number

    server, target = serve({"Numbers": grpc.unary_stream_rpc_method_handler(numbers)})
    options = [(grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1)]
    try:
        with grpc.insecure_channel(target, options=options) as channel:
            call = channel.unary_stream(f"/{SERVICE}/Numbers")(b"", timeout=10)
            assert next(call) == b"0"
            missing = grpc_internals.missing_in_client_call(call)
            assert missing == [], lacks(missing)
            grpc_internals.release_call(call)
            assert call.code() == grpc.StatusCode.CANCELLED
    finally:
        server.stop(None)


def test_dynamic_server_credentials_can_be_wrapped(tmp_path: Path) -> None:
    pki = generate_dev_certificates(tmp_path)
    cert, key = pki.server_pems()
    configuration = grpc.ssl_server_certificate_configuration([(key, cert)])
    credentials = grpc.dynamic_ssl_server_credentials(configuration, lambda: None)
    missing = grpc_internals.missing_in_credentials(credentials)
    assert missing == [], lacks(missing)
    assert grpc_internals.core_credentials(credentials) is not None


def test_a_missing_internal_is_logged_once_and_the_caller_falls_back(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flight_secure.grpc"):
        assert grpc_internals.read_past_end(object(), 0.01) is False
        assert grpc_internals.read_past_end(object(), 0.01) is False
    warnings = [r.getMessage() for r in caplog.records if r.name == "flight_secure.grpc"]
    assert warnings == [f"grpcio {GRPCIO_VERSION} has no server-call batch operations: every "
                        "DoPut waits out end_of_stream_grace to confirm its end"]
