"""Malformed requests sent with raw gRPC: clear INVALID_ARGUMENT / NOT_FOUND statuses,
no tracebacks, and a server that keeps serving. Also: client deadlines on streams."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from conftest import connected, location_of, running_server, sample_table
from raw_wire import flight_data, ipc_messages, raw_call

import flight_secure
from flight_secure._generated import flight_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def put_stream(*tables: pa.Table) -> list[bytes]:
    """A DoPut request stream: the first table's messages, then only the batches of the rest."""
    messages = []
    for index, table in enumerate(tables):
        ipc = ipc_messages(table)
        messages += ipc if index == 0 else ipc[1:]
    frames = [flight_data(h, b) for h, b in messages]
    frames[0] = flight_data(*messages[0], path="bad-input")
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


# name -> (RPC, request, expected code, fragment of the message)
CASES: dict[str, tuple[str, Any, grpc.StatusCode, str]] = {
    "do_put_bytes_not_flight_data": (
        "DoPut", [b"\xff\xff\xff\xff\xff\xff"], INVALID, "FlightData"),
    "do_put_flight_data_not_arrow_ipc": (
        "DoPut", [flight_data(b"not an arrow ipc message", path="x")],
        INVALID, "Arrow IPC"),
    "do_put_without_descriptor": (
        "DoPut", [flight_data(SCHEMA_HEADER)], INVALID, "FlightDescriptor"),
    "do_put_batch_of_another_schema": (
        "DoPut", put_stream(INTS, STRINGS), INVALID, "IPC"),
    "do_put_second_schema_mid_stream": (
        "DoPut",
        [*put_stream(INTS), flight_data(ipc_messages(STRINGS)[0][0])], INVALID, "schema"),
    "do_put_batch_before_schema": (
        "DoPut", [flight_data(BATCH_HEADER, BATCH_BODY, path="x")],
        INVALID, "schema"),
    "do_put_body_shorter_than_header_says": (
        "DoPut",
        [flight_data(SCHEMA_HEADER, path="x"), flight_data(BATCH_HEADER, BATCH_BODY[:3])],
        INVALID, "body"),
    "do_put_field_name_not_utf8": (
        "DoPut",
        [flight_data(schema_named_badly(pa.schema([("zq", pa.int64())])), path="x")],
        INVALID, "utf-8"),
    "do_put_nested_field_name_not_utf8": (
        "DoPut",
        [flight_data(schema_named_badly(pa.schema([("s", pa.struct([("zq", pa.int8())]))])),
                     path="x")],
        INVALID, "utf-8"),
    "do_exchange_bytes_not_flight_data": (
        "DoExchange", [b"\x0a\xff\xff\xff\xff\x0f"], INVALID, "FlightData"),
    "get_flight_info_unknown_descriptor_type": (
        "GetFlightInfo", _descriptor(type=0, path=["sample"]), INVALID, "type"),
    "get_flight_info_undefined_descriptor_type": (
        "GetFlightInfo", _descriptor(type=7, cmd=b"sample"), INVALID, "type"),
    "get_flight_info_garbage_bytes": (
        "GetFlightInfo", b"\xff\xff\xff", INVALID, "FlightDescriptor"),
    "get_schema_garbage_bytes": (
        "GetSchema", b"\x12\x80", INVALID, "FlightDescriptor"),
    "do_get_unknown_ticket": (
        "DoGet", pb.Ticket(ticket=b"no-such-table").SerializeToString(),
        NOT_FOUND, "no-such-table"),
    "do_get_garbage_ticket_bytes": (
        "DoGet", b"\xff\xff\xff", INVALID, "Ticket"),
    "do_action_garbage_bytes": (
        "DoAction", b"\x0a\x90", INVALID, "Action"),
    "list_flights_garbage_bytes": (
        "ListFlights", b"\xff", INVALID, "Criteria"),
}


@pytest.fixture(scope="module")
def channel(fs_data_server: Any) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"localhost:{fs_data_server.port}") as chan:
        yield chan


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gets_its_status_code(channel: grpc.Channel, case: str) -> None:
    rpc, request, code, _ = CASES[case]
    outcome = raw_call(channel, rpc, request, timeout=10)
    assert outcome.code == code, outcome.details


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_message_is_clear_and_has_no_traceback(
    channel: grpc.Channel, case: str
) -> None:
    rpc, request, _, fragment = CASES[case]
    details = raw_call(channel, rpc, request, timeout=10).details
    assert fragment in details
    assert "Traceback" not in details
    assert 'File "' not in details


@pytest.mark.parametrize("case", sorted(CASES))
def test_server_keeps_serving_after_bad_input(
    channel: grpc.Channel, fs_data_server: Any, case: str
) -> None:
    rpc, request, _, _ = CASES[case]
    raw_call(channel, rpc, request, timeout=10)
    with connected(flight_secure, fs_data_server) as client:
        assert client.do_get(flight_secure.Ticket(b"sample")).read_all().equals(sample_table())


def test_bad_put_stores_nothing(channel: grpc.Channel, fs_data_server: Any) -> None:
    assert raw_call(channel, "DoPut", put_stream(INTS, STRINGS), timeout=10).code == INVALID
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
