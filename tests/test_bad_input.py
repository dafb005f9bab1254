"""Malformed requests sent with raw gRPC: clear INVALID_ARGUMENT / NOT_FOUND statuses,
no tracebacks, and a server that keeps serving. Also: client deadlines on streams."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from conftest import connected, location_of, running_server, sample_table

import flight_secure
from flight_secure._generated import flight_pb2 as pb

SERVICE = "/arrow.flight.protocol.FlightService/"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def ipc_messages(table: pa.Table) -> list[tuple[bytes, bytes]]:
    """The (flatbuffer header, body) of each IPC message of ``table``'s stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return [
        (m.metadata.to_pybytes(), m.body.to_pybytes() if m.body is not None else b"")
        for m in pa.ipc.MessageReader.open_stream(sink.getvalue())
    ]


def flight_data(header: bytes = b"", body: bytes = b"", descriptor: str | None = None) -> bytes:
    message = pb.FlightData(data_header=header, data_body=body)
    if descriptor is not None:
        message.flight_descriptor.CopyFrom(pb.FlightDescriptor(type=pb.FlightDescriptor.PATH,
                                                               path=[descriptor]))
    return message.SerializeToString()


def put_stream(*tables: pa.Table) -> list[bytes]:
    """A DoPut request stream: the first table's messages, then only the batches of the rest."""
    messages = []
    for index, table in enumerate(tables):
        ipc = ipc_messages(table)
        messages += ipc if index == 0 else ipc[1:]
    frames = [flight_data(h, b) for h, b in messages]
    frames[0] = flight_data(*messages[0], descriptor="bad-input")
    return frames


INTS = pa.table({"x": pa.array([1, 2, 3], pa.int64())})
STRINGS = pa.table({"s": pa.array(["a", "b"]), "t": pa.array(["c", "d"])})
SCHEMA_HEADER = ipc_messages(INTS)[0][0]
BATCH_HEADER, BATCH_BODY = ipc_messages(INTS)[1]


def schema_named_badly(schema: pa.Schema) -> bytes:
    """``schema``'s IPC header with its field name "zq" turned into two non-UTF-8 bytes."""
    header = ipc_messages(schema.empty_table())[0][0]
    assert header.count(b"zq") == 1
    return header.replace(b"zq", b"\xff\xfe")


def _descriptor(**fields: Any) -> bytes:
    return pb.FlightDescriptor(**fields).SerializeToString()


# name -> (method, kind, request, expected code, fragment of the message)
CASES: dict[str, tuple[str, str, Any, grpc.StatusCode, str]] = {
    "do_put_bytes_not_flight_data": (
        "DoPut", "stream", [b"\xff\xff\xff\xff\xff\xff"], INVALID, "FlightData"),
    "do_put_flight_data_not_arrow_ipc": (
        "DoPut", "stream", [flight_data(b"not an arrow ipc message", descriptor="x")],
        INVALID, "Arrow IPC"),
    "do_put_without_descriptor": (
        "DoPut", "stream", [flight_data(SCHEMA_HEADER)], INVALID, "FlightDescriptor"),
    "do_put_batch_of_another_schema": (
        "DoPut", "stream", put_stream(INTS, STRINGS), INVALID, "IPC"),
    "do_put_second_schema_mid_stream": (
        "DoPut", "stream",
        [*put_stream(INTS), flight_data(ipc_messages(STRINGS)[0][0])], INVALID, "schema"),
    "do_put_batch_before_schema": (
        "DoPut", "stream", [flight_data(BATCH_HEADER, BATCH_BODY, descriptor="x")],
        INVALID, "schema"),
    "do_put_body_shorter_than_header_says": (
        "DoPut", "stream",
        [flight_data(SCHEMA_HEADER, descriptor="x"), flight_data(BATCH_HEADER, BATCH_BODY[:3])],
        INVALID, "body"),
    "do_put_field_name_not_utf8": (
        "DoPut", "stream",
        [flight_data(schema_named_badly(pa.schema([("zq", pa.int64())])), descriptor="x")],
        INVALID, "utf-8"),
    "do_put_nested_field_name_not_utf8": (
        "DoPut", "stream",
        [flight_data(schema_named_badly(pa.schema([("s", pa.struct([("zq", pa.int8())]))])),
                     descriptor="x")],
        INVALID, "utf-8"),
    "do_exchange_bytes_not_flight_data": (
        "DoExchange", "stream", [b"\x0a\xff\xff\xff\xff\x0f"], INVALID, "FlightData"),
    "get_flight_info_unknown_descriptor_type": (
        "GetFlightInfo", "unary", _descriptor(type=0, path=["sample"]), INVALID, "type"),
    "get_flight_info_undefined_descriptor_type": (
        "GetFlightInfo", "unary", _descriptor(type=7, cmd=b"sample"), INVALID, "type"),
    "get_flight_info_garbage_bytes": (
        "GetFlightInfo", "unary", b"\xff\xff\xff", INVALID, "FlightDescriptor"),
    "get_schema_garbage_bytes": (
        "GetSchema", "unary", b"\x12\x80", INVALID, "FlightDescriptor"),
    "do_get_unknown_ticket": (
        "DoGet", "server-stream", pb.Ticket(ticket=b"no-such-table").SerializeToString(),
        NOT_FOUND, "no-such-table"),
    "do_get_garbage_ticket_bytes": (
        "DoGet", "server-stream", b"\xff\xff\xff", INVALID, "Ticket"),
    "do_action_garbage_bytes": (
        "DoAction", "server-stream", b"\x0a\x90", INVALID, "Action"),
    "list_flights_garbage_bytes": (
        "ListFlights", "server-stream", b"\xff", INVALID, "Criteria"),
}


def raw_call(channel: grpc.Channel, method: str, kind: str, request: Any) -> None:
    """Call ``method`` with raw bytes and consume the whole response."""
    path = SERVICE + method
    if kind == "unary":
        channel.unary_unary(path)(request, timeout=10)
    elif kind == "server-stream":
        list(channel.unary_stream(path)(request, timeout=10))
    else:
        list(channel.stream_stream(path)(iter(request), timeout=10))


@pytest.fixture(scope="module")
def channel(fs_data_server: Any) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"localhost:{fs_data_server.port}") as chan:
        yield chan


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gets_its_status_code(channel: grpc.Channel, case: str) -> None:
    method, kind, request, code, _ = CASES[case]
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(channel, method, kind, request)
    assert caught.value.code() == code, caught.value.details()


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_message_is_clear_and_has_no_traceback(
    channel: grpc.Channel, case: str
) -> None:
    method, kind, request, _, fragment = CASES[case]
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(channel, method, kind, request)
    details = caught.value.details() or ""
    assert fragment in details
    assert "Traceback" not in details
    assert 'File "' not in details


@pytest.mark.parametrize("case", sorted(CASES))
def test_server_keeps_serving_after_bad_input(
    channel: grpc.Channel, fs_data_server: Any, case: str
) -> None:
    method, kind, request, _, _ = CASES[case]
    with contextlib.suppress(grpc.RpcError):
        raw_call(channel, method, kind, request)
    with connected(flight_secure, fs_data_server) as client:
        assert client.do_get(flight_secure.Ticket(b"sample")).read_all().equals(sample_table())


def test_bad_put_stores_nothing(channel: grpc.Channel, fs_data_server: Any) -> None:
    with pytest.raises(grpc.RpcError):
        raw_call(channel, "DoPut", "stream", put_stream(INTS, STRINGS))
    assert "bad-input" not in fs_data_server.tables


# ------------------------------------------------------------- client deadlines

TIMEOUT = 0.5
DEADLINE = 10.0


class BlockingServer:
    """Streams that stall until ``release`` is set (the fixture sets it in teardown)."""

    flight: Any
    release = threading.Event()

    def do_get(self, context: Any, ticket: Any) -> Any:
        def stalled() -> Iterator[pa.RecordBatch]:
            self.release.wait(DEADLINE)
            yield from sample_table().to_batches()

        return self.flight.GeneratorStream(sample_table().schema, stalled())

    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        yield b"first"
        self.release.wait(DEADLINE)
        yield b"second"

    def do_exchange(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        self.release.wait(DEADLINE)


@pytest.fixture(scope="module")
def blocking_server() -> Iterator[Any]:
    with running_server(flight_secure, BlockingServer) as server:
        yield server
        BlockingServer.release.set()


STALLED_CALLS: dict[str, Callable[[Any, Any], Any]] = {
    "do_get": lambda f, c: c.do_get(
        f.Ticket(b"t"), f.FlightCallOptions(timeout=TIMEOUT)).read_all(),
    "do_action": lambda f, c: list(
        c.do_action(f.Action("a", b""), f.FlightCallOptions(timeout=TIMEOUT))),
    "do_exchange": lambda f, c: c.do_exchange(
        f.FlightDescriptor.for_command(b"x"), f.FlightCallOptions(timeout=TIMEOUT)
    )[1].read_chunk(),
}


@pytest.mark.parametrize("call", sorted(STALLED_CALLS))
@pytest.mark.parametrize("flight", [flight_secure, pa_flight], ids=["flight_secure", "pyarrow"])
def test_client_timeout_fires_on_stalled_stream(
    blocking_server: Any, flight: Any, call: str
) -> None:
    client = flight.connect(location_of(blocking_server))
    started = time.monotonic()
    try:
        with pytest.raises(flight.FlightTimedOutError):
            STALLED_CALLS[call](flight, client)
    finally:
        client.close()
    assert time.monotonic() - started < DEADLINE / 2
