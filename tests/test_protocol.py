"""The wire contract: generated code in sync, Arrow's names and field numbers, and
messages that each implementation serializes and the other reads back."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from conftest import PYTHON, ROOT, sample_table

import flight_secure
from flight_secure._generated import flight_pb2
from flight_secure.rpcs import RPCS, SERVICE

#: Field numbers of Arrow's format/Flight.proto (package arrow.flight.protocol).
ARROW_FIELDS: dict[str, dict[str, int]] = {
    "HandshakeRequest": {"protocol_version": 1, "payload": 2},
    "HandshakeResponse": {"protocol_version": 1, "payload": 2},
    "BasicAuth": {"username": 2, "password": 3},
    "Empty": {},
    "ActionType": {"type": 1, "description": 2},
    "Criteria": {"expression": 1},
    "Action": {"type": 1, "body": 2},
    "Result": {"body": 1},
    "SchemaResult": {"schema": 1},
    "FlightDescriptor": {"type": 1, "cmd": 2, "path": 3},
    "FlightInfo": {
        "schema": 1,
        "flight_descriptor": 2,
        "endpoint": 3,
        "total_records": 4,
        "total_bytes": 5,
        "ordered": 6,
        "app_metadata": 7,
    },
    "PollInfo": {"info": 1, "flight_descriptor": 2, "progress": 3, "expiration_time": 4},
    "CancelFlightInfoRequest": {"info": 1},
    "CancelFlightInfoResult": {"status": 1},
    "Ticket": {"ticket": 1},
    "Location": {"uri": 1},
    "FlightEndpoint": {"ticket": 1, "location": 2, "expiration_time": 3, "app_metadata": 4},
    "RenewFlightEndpointRequest": {"endpoint": 1},
    "FlightData": {"flight_descriptor": 1, "data_header": 2, "app_metadata": 3, "data_body": 1000},
    "PutResult": {"app_metadata": 1},
}

#: Arrow's FlightService: method -> (request, response, client streams, server streams).
ARROW_METHODS = {
    "Handshake": ("HandshakeRequest", "HandshakeResponse", True, True),
    "ListFlights": ("Criteria", "FlightInfo", False, True),
    "GetFlightInfo": ("FlightDescriptor", "FlightInfo", False, False),
    "PollFlightInfo": ("FlightDescriptor", "PollInfo", False, False),
    "GetSchema": ("FlightDescriptor", "SchemaResult", False, False),
    "DoGet": ("Ticket", "FlightData", False, True),
    "DoPut": ("FlightData", "PutResult", True, True),
    "DoExchange": ("FlightData", "FlightData", True, True),
    "DoAction": ("Action", "Result", False, True),
    "ListActions": ("Empty", "ActionType", False, True),
}


def test_generated_code_matches_the_proto() -> None:
    result = subprocess.run(
        [PYTHON, "scripts/generate_protos.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_is_arrow_flight_protocol() -> None:
    assert flight_pb2.DESCRIPTOR.package == "arrow.flight.protocol"


def test_service_is_flight_service_with_arrows_ten_methods() -> None:
    service = flight_pb2.DESCRIPTOR.services_by_name["FlightService"]
    assert service.full_name == "arrow.flight.protocol.FlightService"
    found = {
        m.name: (m.input_type.name, m.output_type.name, m.client_streaming, m.server_streaming)
        for m in service.methods
    }
    assert found == ARROW_METHODS


def test_the_rpc_table_is_arrows_service() -> None:
    assert SERVICE == "arrow.flight.protocol.FlightService"
    table = {rpc.name: (rpc.request, rpc.response, rpc.client_streams, rpc.server_streams)
             for rpc in RPCS}
    assert table == ARROW_METHODS
    assert list(table) == list(ARROW_METHODS)  # Flight.proto's order
    assert {rpc.name: rpc.method.name for rpc in RPCS} == {
        name: "".join(f"_{c}" if c.isupper() else c.upper() for c in name).lstrip("_")
        for name in ARROW_METHODS
    }


@pytest.mark.parametrize("message", sorted(ARROW_FIELDS))
def test_field_numbers_match_arrows_spec(message: str) -> None:
    descriptor = flight_pb2.DESCRIPTOR.message_types_by_name[message]
    assert {f.name: f.number for f in descriptor.fields} == ARROW_FIELDS[message]


def test_descriptor_type_enum_values_match_arrows_spec() -> None:
    enum = flight_pb2.FlightDescriptor.DescriptorType
    assert (enum.Value("UNKNOWN"), enum.Value("PATH"), enum.Value("CMD")) == (0, 1, 2)


def test_poll_info_progress_is_optional_double() -> None:
    field = flight_pb2.PollInfo.DESCRIPTOR.fields_by_name["progress"]
    assert field.type == field.TYPE_DOUBLE
    assert field.has_presence


# ----------------------------------------------------------- wire compatibility


def _info(flight: Any) -> Any:
    endpoints = [
        flight.FlightEndpoint(
            b"ticket-1",
            ["grpc+tcp://host-a:1234", "grpc+tls://host-b:443"],
            app_metadata=b"endpoint-meta",
        ),
        flight.FlightEndpoint(b"ticket-2", []),
    ]
    return flight.FlightInfo(
        sample_table().schema,
        flight.FlightDescriptor.for_path("dir", "data.arrow"),
        endpoints,
        total_records=42,
        total_bytes=4096,
        ordered=True,
        app_metadata=b"info-meta",
    )


def _info_fields(info: Any) -> tuple:
    return (
        info.schema,
        info.descriptor.descriptor_type.name,
        info.descriptor.path,
        [
            (
                e.ticket.ticket,
                sorted(_uri(loc) for loc in e.locations),
                bytes(e.app_metadata),
            )
            for e in info.endpoints
        ],
        info.total_records,
        info.total_bytes,
        info.ordered,
        bytes(info.app_metadata),
    )


def _uri(location: Any) -> bytes:
    uri = location.uri
    return uri if isinstance(uri, bytes) else uri.encode()


WAYS = [(flight_secure, pa_flight), (pa_flight, flight_secure)]
WAY_IDS = ["flight_secure->pyarrow", "pyarrow->flight_secure"]


@pytest.mark.parametrize(("writer", "reader"), WAYS, ids=WAY_IDS)
def test_flight_info_round_trips_between_implementations(writer: Any, reader: Any) -> None:
    written = _info(writer)
    read = reader.FlightInfo.deserialize(written.serialize())
    assert _info_fields(read) == _info_fields(written)


@pytest.mark.parametrize(("writer", "reader"), WAYS, ids=WAY_IDS)
def test_endpoint_expiration_time_round_trips(writer: Any, reader: Any) -> None:
    when = pa.scalar(dt.datetime(2030, 1, 2, 3, 4, 5, 6000), pa.timestamp("ns", tz="UTC"))
    written = writer.FlightEndpoint(b"t", ["grpc://h:1"], expiration_time=when)
    read = reader.FlightEndpoint.deserialize(written.serialize())
    assert read.expiration_time.as_py() == when.as_py()


DESCRIPTORS: dict[str, Callable[[Any], Any]] = {
    "path": lambda f: f.FlightDescriptor.for_path("a", "b/c", "ü"),
    "command": lambda f: f.FlightDescriptor.for_command(b"SELECT \x00\xff"),
}


@pytest.mark.parametrize("kind", sorted(DESCRIPTORS))
@pytest.mark.parametrize(("writer", "reader"), WAYS, ids=WAY_IDS)
def test_descriptor_round_trips_between_implementations(
    writer: Any, reader: Any, kind: str
) -> None:
    written = DESCRIPTORS[kind](writer)
    read = reader.FlightDescriptor.deserialize(written.serialize())
    assert (read.descriptor_type.name, read.path, read.command) == (
        written.descriptor_type.name,
        written.path,
        written.command,
    )


@pytest.mark.parametrize(("writer", "reader"), WAYS, ids=WAY_IDS)
def test_ticket_round_trips_between_implementations(writer: Any, reader: Any) -> None:
    written = writer.Ticket(b"\x00opaque\xfe ticket")
    assert reader.Ticket.deserialize(written.serialize()).ticket == b"\x00opaque\xfe ticket"


@pytest.mark.parametrize(("writer", "reader"), WAYS, ids=WAY_IDS)
def test_action_round_trips_between_implementations(writer: Any, reader: Any) -> None:
    read = reader.Action.deserialize(writer.Action("drop", b"\x01body").serialize())
    assert (read.type, read.body.to_pybytes()) == ("drop", b"\x01body")


@pytest.mark.parametrize(("writer", "reader"), WAYS, ids=WAY_IDS)
def test_result_round_trips_between_implementations(writer: Any, reader: Any) -> None:
    read = reader.Result.deserialize(writer.Result(b"\x00result").serialize())
    assert read.body.to_pybytes() == b"\x00result"


@pytest.mark.parametrize(("writer", "reader"), WAYS, ids=WAY_IDS)
def test_schema_result_round_trips_between_implementations(writer: Any, reader: Any) -> None:
    schema = sample_table().schema.with_metadata({b"k": b"v"})
    read = reader.SchemaResult.deserialize(writer.SchemaResult(schema).serialize())
    assert read.schema.equals(schema, check_metadata=True)


@pytest.mark.parametrize(("writer", "reader"), WAYS, ids=WAY_IDS)
def test_basic_auth_round_trips_between_implementations(writer: Any, reader: Any) -> None:
    read = reader.BasicAuth.deserialize(writer.BasicAuth("alice", "s3cret").serialize())
    assert (read.username, read.password) == (b"alice", b"s3cret")


def test_poll_info_round_trips() -> None:
    info = _info(flight_secure)
    when = pa.scalar(dt.datetime(2031, 5, 6, tzinfo=dt.timezone.utc), pa.timestamp("us", "UTC"))
    poll = flight_secure.PollInfo(
        info, flight_secure.FlightDescriptor.for_command(b"retry"), 0.25, when
    )
    read = flight_secure.PollInfo.deserialize(poll.serialize())
    assert _info_fields(read.info) == _info_fields(info)
    assert read.descriptor.command == b"retry"
    assert read.progress == 0.25
    assert read.expiration_time.as_py() == when.as_py()


def test_poll_info_without_progress_keeps_it_unset() -> None:
    read = flight_secure.PollInfo.deserialize(flight_secure.PollInfo(None).serialize())
    assert (read.info, read.descriptor, read.progress) == (None, None, None)


def test_garbage_bytes_are_not_a_flight_info() -> None:
    with pytest.raises(pa.ArrowInvalid):
        flight_secure.FlightInfo.deserialize(b"\xff\xff\xff\xff")
