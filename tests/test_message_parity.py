"""Error text programs match on is pyarrow.flight's, word for word.

A call that fails without an Arrow status (a non-Arrow gRPC server, a deadline, an
unreachable server) reads "Flight returned <lowercase status> error, with message:
..."; one an Arrow server refused carries that server's message (and ". Detail: ..."
when it sent one); a write over ``write_size_limit_bytes`` "exceeded soft limit".
Each test runs the same client code on both implementations and compares the text.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from types import ModuleType
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from conftest import IMPLEMENTATIONS, connected, free_location, running_server

from flight_secure._generated import flight_pb2 as pb

IMPLS = list(IMPLEMENTATIONS.values())
IMPL_IDS = list(IMPLEMENTATIONS)
SERVICE = "arrow.flight.protocol.FlightService"


class _RawFlightService(grpc.GenericRpcHandler):
    """A gRPC server that is no Arrow implementation: DoAction fails with the status
    its action type names, plain gRPC, no Arrow trailers; ListFlights never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def service(self, details: Any) -> Any:
        if details.method == f"/{SERVICE}/DoAction":
            return grpc.unary_stream_rpc_method_handler(self._do_action)
        if details.method == f"/{SERVICE}/ListFlights":
            return grpc.unary_stream_rpc_method_handler(self._list_flights)
        return None

    def _do_action(self, request: bytes, context: Any) -> Iterator[bytes]:
        kind = pb.Action.FromString(request).type
        context.abort(grpc.StatusCode[kind], f"raw {kind}")
        yield b""

    def _list_flights(self, request: bytes, context: Any) -> Iterator[bytes]:
        self.release.wait(10)
        yield from ()


@pytest.fixture(scope="module")
def raw_server() -> Iterator[tuple[str, _RawFlightService]]:
    handler = _RawFlightService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler])
    port = server.add_insecure_port("localhost:0")
    server.start()
    yield f"grpc://localhost:{port}", handler
    handler.release.set()
    server.stop(0)


def _failure(flight: ModuleType, location: str, call: Any) -> BaseException:
    client = flight.connect(location)
    try:
        call(flight, client)
    except Exception as exc:
        return exc
    finally:
        client.close()
    raise AssertionError("the call did not fail")


def _texts(location: str, call: Any) -> dict[str, str]:
    return {name: str(_failure(f, location, call)) for name, f in IMPLEMENTATIONS.items()}


CODES = [code.name for code in grpc.StatusCode if code is not grpc.StatusCode.OK]


@pytest.mark.parametrize("code", CODES)
def test_a_non_arrow_server_s_status_reads_in_arrows_words(raw_server: Any, code: str) -> None:
    location, _ = raw_server
    texts = _texts(location, lambda f, c: list(c.do_action(f.Action(code, b""))))
    if code == "ALREADY_EXISTS":
        # pyarrow's check_status knows no AlreadyExists class and prefixes "Unknown: ".
        assert texts["pyarrow"] == f"Unknown: {texts['flight_secure']}"
    else:
        assert texts["flight_secure"] == texts["pyarrow"]
    assert texts["flight_secure"].endswith(f"with message: raw {code}")


def test_a_deadline_reads_as_a_timeout_error(raw_server: Any) -> None:
    location, _ = raw_server
    options = {name: f.FlightCallOptions(timeout=0.3) for name, f in IMPLEMENTATIONS.items()}
    texts = {
        name: str(_failure(f, location, lambda f, c, n=name: list(c.list_flights(b"", options[n]))))
        for name, f in IMPLEMENTATIONS.items()
    }
    assert texts["flight_secure"] == texts["pyarrow"]
    assert texts["flight_secure"] == (
        "Flight returned timeout error, with message: Deadline Exceeded"
    )


def test_an_unreachable_server_reads_as_an_unavailable_error() -> None:
    location = free_location()
    texts = _texts(location, lambda f, c: list(c.list_flights()))
    prefix = "Flight returned unavailable error, with message: failed to connect to all addresses"
    assert texts["pyarrow"].startswith(prefix)
    assert texts["flight_secure"].startswith(prefix)
    assert "nothing is listening at that address" in texts["flight_secure"]


class RefusingServer:
    """DoAction raises the error its action type names."""

    flight: ModuleType

    def do_action(self, context: Any, action: Any) -> Any:
        errors = {
            "unauthenticated": self.flight.FlightUnauthenticatedError("bad credentials"),
            "unavailable": self.flight.FlightUnavailableError("going away"),
            "server": self.flight.FlightServerError("handler failed"),
            "key": KeyError("no such table"),
        }
        raise errors[action.type]


@pytest.mark.parametrize("kind", ["unauthenticated", "unavailable", "server", "key"])
@pytest.mark.parametrize("server_flight", IMPLS, ids=[f"server={i}" for i in IMPL_IDS])
def test_an_arrow_server_s_refusal_reads_as_that_server_s_message(
    server_flight: ModuleType, kind: str
) -> None:
    with running_server(server_flight, RefusingServer) as server:
        location = f"grpc://localhost:{server.port}"
        texts = _texts(location, lambda f, c: list(c.do_action(f.Action(kind, b""))))
    assert texts["flight_secure"] == texts["pyarrow"]
    assert "(gRPC" not in texts["flight_secure"]


class SinkServer:
    """DoPut reads the upload to its end."""

    flight: ModuleType

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        reader.read_all()


@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_a_write_over_the_size_limit_exceeded_soft_limit(flight: ModuleType) -> None:
    table = pa.table({"v": list(range(1000))})
    with (
        running_server(pa_flight, SinkServer) as server,
        connected(flight, server, write_size_limit_bytes=1000) as client,
    ):
        writer, _ = client.do_put(flight.FlightDescriptor.for_path("t"), table.schema)
        with pytest.raises(flight.FlightWriteSizeExceededError) as exceeded:
            writer.write_table(table)
        writer.close()
    assert str(exceeded.value) == "IPC payload size exceeded soft limit"
    assert isinstance(exceeded.value, pa.ArrowInvalid)
    assert exceeded.value.limit == 1000
    assert exceeded.value.actual > 8000
