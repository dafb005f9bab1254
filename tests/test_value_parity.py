"""Flight's value types behave as pyarrow.flight's do: equality, nanosecond expiration
times, a FlightInfo without a schema, TypeError for wrong argument types, and reprs.

Every test runs the same code on both implementations (``IMPLEMENTATIONS``), or
compares flight_secure's answer with pyarrow's for the same input.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from conftest import IMPLEMENTATIONS, connected, running_server

import flight_secure

IMPLS = list(IMPLEMENTATIONS.values())
IMPL_IDS = list(IMPLEMENTATIONS)
SCHEMA = pa.schema([("x", pa.int64()), ("tags", pa.list_(pa.string()))])
NANOS = 1_700_000_000_123_456_789


def _when(nanos: int = NANOS, unit: str = "ns", tz: str | None = "UTC") -> pa.TimestampScalar:
    return pa.scalar(nanos, type=pa.timestamp(unit, tz=tz))


def _endpoint(flight: ModuleType, **overrides: Any) -> Any:
    fields = dict(ticket=b"t", locations=["grpc://h:1"], expiration_time=_when(),
                  app_metadata=b"m")
    fields.update(overrides)
    return flight.FlightEndpoint(**fields)


def _info(flight: ModuleType, **overrides: Any) -> Any:
    fields = dict(schema=SCHEMA, descriptor=flight.FlightDescriptor.for_path("p"),
                  endpoints=[_endpoint(flight)], total_records=3, total_bytes=40,
                  ordered=True, app_metadata=b"info")
    fields.update(overrides)
    return flight.FlightInfo(**fields)


# ---------------------------------------------------------------------- equality

#: type -> (make a value, make one that differs in one field)
VALUES: dict[str, tuple[Callable[[ModuleType], Any], Callable[[ModuleType], Any]]] = {
    "Action": (lambda f: f.Action("drop", b"body"), lambda f: f.Action("drop", b"other")),
    "Result": (lambda f: f.Result(b"body"), lambda f: f.Result(b"bod")),
    "BasicAuth": (lambda f: f.BasicAuth("alice", "pw"), lambda f: f.BasicAuth("alice", "pw2")),
    "SchemaResult": (
        lambda f: f.SchemaResult(SCHEMA),
        lambda f: f.SchemaResult(SCHEMA.with_metadata({"k": "v"})),
    ),
    "FlightInfo": (lambda f: _info(f), lambda f: _info(f, total_bytes=41)),
    "FlightEndpoint": (
        lambda f: _endpoint(f),
        lambda f: _endpoint(f, expiration_time=_when(NANOS + 1)),
    ),
    "Ticket": (lambda f: f.Ticket(b"t"), lambda f: f.Ticket(b"u")),
    "Location": (lambda f: f.Location("grpc://h:1"), lambda f: f.Location("grpc://h:2")),
}


@pytest.mark.parametrize("name", sorted(VALUES))
@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_values_with_the_same_fields_are_equal(flight: ModuleType, name: str) -> None:
    make, _ = VALUES[name]
    assert make(flight) == make(flight)


@pytest.mark.parametrize("name", sorted(VALUES))
@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_values_that_differ_in_one_field_are_not_equal(flight: ModuleType, name: str) -> None:
    make, make_other = VALUES[name]
    assert make(flight) != make_other(flight)


@pytest.mark.parametrize("name", sorted(set(VALUES) - {"Location"}))
@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_values_equal_their_serialized_round_trip(flight: ModuleType, name: str) -> None:
    value = VALUES[name][0](flight)
    assert type(value).deserialize(value.serialize()) == value


@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_endpoint_equality_includes_the_expiration_time(flight: ModuleType) -> None:
    assert _endpoint(flight) != _endpoint(flight, expiration_time=None)


@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_values_built_from_str_or_bytes_are_equal(flight: ModuleType) -> None:
    assert flight.Action("a", b"x") == flight.Action(b"a", bytearray(b"x"))
    assert flight.BasicAuth() == flight.BasicAuth(None, "")
    assert flight.FlightEndpoint(b"t", ["grpc://h:1"]) == flight.FlightEndpoint(
        flight.Ticket("t"), [flight.Location(b"grpc://h:1")]
    )


# -------------------------------------------------------------- expiration time


@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_expiration_time_keeps_nanoseconds_through_the_wire_form(flight: ModuleType) -> None:
    read = flight.FlightEndpoint.deserialize(_endpoint(flight).serialize())
    assert read.expiration_time.value == NANOS
    assert read.expiration_time.type == pa.timestamp("ns", tz="UTC")


@pytest.mark.parametrize(
    ("given", "nanos"),
    [
        (_when(5, "us", None), 5_000),
        (_when(5, "s", "Europe/Paris"), 5_000_000_000),
        (_when(NANOS, "ns", "UTC"), NANOS),
    ],
    ids=["microseconds-naive", "seconds-paris", "nanoseconds-utc"],
)
@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_expiration_time_reads_as_utc_nanoseconds(
    flight: ModuleType, given: pa.TimestampScalar, nanos: int
) -> None:
    expiration = flight.FlightEndpoint(b"t", [], expiration_time=given).expiration_time
    assert (expiration.value, expiration.type) == (nanos, pa.timestamp("ns", tz="UTC"))


# ------------------------------------------------------------ schema-less info


@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_flight_info_without_a_schema_has_schema_none(flight: ModuleType) -> None:
    info = _info(flight, schema=None)
    assert info.schema is None
    assert flight.FlightInfo.deserialize(info.serialize()).schema is None


@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_flight_info_with_an_empty_schema_keeps_it(flight: ModuleType) -> None:
    info = flight.FlightInfo.deserialize(_info(flight, schema=pa.schema([])).serialize())
    assert info.schema == pa.schema([])


class SchemaLessInfoServer:
    """GetFlightInfo answers with a FlightInfo that carries no schema."""

    flight: ModuleType

    def get_flight_info(self, context: Any, descriptor: Any) -> Any:
        return _info(self.flight, schema=None, descriptor=descriptor)


@pytest.mark.parametrize("client_flight", IMPLS, ids=[f"client={i}" for i in IMPL_IDS])
@pytest.mark.parametrize("server_flight", IMPLS, ids=[f"server={i}" for i in IMPL_IDS])
def test_a_schema_less_flight_info_reads_as_schema_none_over_the_wire(
    server_flight: ModuleType, client_flight: ModuleType
) -> None:
    with (
        running_server(server_flight, SchemaLessInfoServer) as server,
        connected(client_flight, server) as client,
    ):
        info = client.get_flight_info(client_flight.FlightDescriptor.for_command(b"q"))
    assert info.schema is None
    assert info.descriptor.command == b"q"


# ------------------------------------------------------------- argument types

#: Calls pyarrow refuses with TypeError.
REFUSED: dict[str, Callable[[ModuleType], Any]] = {
    "Action type int": lambda f: f.Action(1, b""),
    "Action body str": lambda f: f.Action("a", "text"),
    "Action body None": lambda f: f.Action("a", None),
    "Action body int": lambda f: f.Action("a", 1),
    "Result body str": lambda f: f.Result("text"),
    "Result body None": lambda f: f.Result(None),
    "Result body int": lambda f: f.Result(3),
    "Ticket int": lambda f: f.Ticket(1),
    "Ticket None": lambda f: f.Ticket(None),
    "BasicAuth int": lambda f: f.BasicAuth(1, 2),
    "for_path int": lambda f: f.FlightDescriptor.for_path(1),
    "for_path list": lambda f: f.FlightDescriptor.for_path(["a", "b"]),
    "for_command None": lambda f: f.FlightDescriptor.for_command(None),
    "Location int": lambda f: f.Location(1),
    "Location None": lambda f: f.Location(None),
    "for_grpc_tcp port str": lambda f: f.Location.for_grpc_tcp("h", "1"),
    "for_grpc_unix int": lambda f: f.Location.for_grpc_unix(1),
    "FlightEndpoint ticket int": lambda f: f.FlightEndpoint(1, []),
    "FlightEndpoint ticket bytearray": lambda f: f.FlightEndpoint(bytearray(b"t"), []),
    "FlightEndpoint location int": lambda f: f.FlightEndpoint(b"t", [1]),
    "FlightEndpoint expiration datetime": lambda f: f.FlightEndpoint(
        b"t", [], expiration_time=pa.scalar(0, pa.timestamp("s")).as_py()
    ),
    "FlightEndpoint expiration int": lambda f: f.FlightEndpoint(b"t", [], expiration_time=1),
    "FlightEndpoint expiration null": lambda f: f.FlightEndpoint(
        b"t", [], expiration_time=pa.scalar(None, pa.timestamp("s"))
    ),
    "FlightEndpoint app_metadata int": lambda f: f.FlightEndpoint(b"t", [], app_metadata=1),
    "FlightInfo schema bytes": lambda f: f.FlightInfo(
        b"x", f.FlightDescriptor.for_path("p"), []
    ),
    "FlightInfo descriptor str": lambda f: f.FlightInfo(SCHEMA, "p", []),
    "FlightInfo endpoint bytes": lambda f: f.FlightInfo(
        SCHEMA, f.FlightDescriptor.for_path("p"), [b"t"]
    ),
    "FlightInfo total_records str": lambda f: f.FlightInfo(
        SCHEMA, f.FlightDescriptor.for_path("p"), [], total_records="3"
    ),
    "FlightInfo app_metadata int": lambda f: f.FlightInfo(
        SCHEMA, f.FlightDescriptor.for_path("p"), [], app_metadata=1
    ),
    "SchemaResult bytes": lambda f: f.SchemaResult(b"x"),
    "FlightCallOptions timeout str": lambda f: f.FlightCallOptions(timeout="1"),
}

#: Calls pyarrow accepts, with types a stricter check could wrongly refuse.
ACCEPTED: dict[str, Callable[[ModuleType], Any]] = {
    "Action bytes type, buffer body": lambda f: f.Action(b"a", pa.py_buffer(b"x")),
    "Action memoryview body": lambda f: f.Action("a", memoryview(b"x")),
    "Result bytearray": lambda f: f.Result(bytearray(b"x")),
    "Ticket str": lambda f: f.Ticket("t"),
    "Ticket bytearray": lambda f: f.Ticket(bytearray(b"t")),
    "BasicAuth None": lambda f: f.BasicAuth(None, None),
    "for_command str": lambda f: f.FlightDescriptor.for_command("SELECT 1"),
    "Location bytes": lambda f: f.Location(b"grpc://h:1"),
    "for_grpc_tcp bytes host": lambda f: f.Location.for_grpc_tcp(b"h", 1),
    "FlightEndpoint str ticket, str app_metadata": lambda f: f.FlightEndpoint(
        "t", [], app_metadata="m"
    ),
    "FlightEndpoint microsecond expiration": lambda f: f.FlightEndpoint(
        b"t", [], expiration_time=_when(5, "us", None)
    ),
    "FlightInfo no schema, float count": lambda f: f.FlightInfo(
        None, f.FlightDescriptor.for_path("p"), [], total_records=3.0
    ),
    "FlightInfo str app_metadata": lambda f: f.FlightInfo(
        SCHEMA, f.FlightDescriptor.for_path("p"), [], app_metadata="m"
    ),
    "FlightCallOptions int and bool timeouts": lambda f: (f.FlightCallOptions(timeout=1),
                                                          f.FlightCallOptions(timeout=True)),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_wrong_argument_types_raise_type_error(flight: ModuleType, case: str) -> None:
    with pytest.raises(TypeError):
        REFUSED[case](flight)


@pytest.mark.parametrize("case", sorted(ACCEPTED))
@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_argument_types_pyarrow_accepts_are_accepted(flight: ModuleType, case: str) -> None:
    ACCEPTED[case](flight)


# ---------------------------------------------------------------------- reprs

REPRS: dict[str, Callable[[ModuleType], Any]] = {
    "Action": lambda f: f.Action("a'b", b"body"),
    "Result": lambda f: f.Result(b"body"),
    "BasicAuth": lambda f: f.BasicAuth("alice", "secret"),
    "SchemaResult": lambda f: f.SchemaResult(SCHEMA.with_metadata({"k": "v"})),
    "FlightInfo": lambda f: _info(f),
    "FlightInfo without schema": lambda f: _info(f, schema=None),
    "FlightEndpoint": lambda f: _endpoint(f, app_metadata=b"\x00m"),
    "FlightEndpoint without expiration": lambda f: _endpoint(f, expiration_time=None),
    "FlightDescriptor path": lambda f: f.FlightDescriptor.for_path("a", b"b"),
    "FlightDescriptor command": lambda f: f.FlightDescriptor.for_command(b"SELECT"),
    "Ticket": lambda f: f.Ticket(b"t"),
    "Location": lambda f: f.Location("grpc+tls://h:1"),
    "FlightCallOptions": lambda f: f.FlightCallOptions(),
    "FlightCallOptions with values": lambda f: f.FlightCallOptions(
        timeout=1.5, headers=[(b"k", b"v")], read_options=pa.ipc.IpcReadOptions(use_threads=False)
    ),
}


@pytest.mark.parametrize("case", sorted(REPRS))
def test_repr_is_pyarrows_with_our_module_name(case: str) -> None:
    theirs = repr(REPRS[case](pa_flight)).replace("pyarrow.flight.", "flight_secure.")
    assert repr(REPRS[case](flight_secure)) == theirs


@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_basic_auth_repr_never_shows_the_password(flight: ModuleType) -> None:
    assert "secret" not in repr(flight.BasicAuth("alice", "secret"))


READ_ONLY = {
    "FlightEndpoint": (_endpoint, ["ticket", "locations", "expiration_time", "app_metadata"]),
    "FlightInfo": (_info, ["schema", "descriptor", "endpoints", "total_records", "total_bytes",
                           "ordered", "app_metadata"]),
    "SchemaResult": (lambda f: f.SchemaResult(SCHEMA), ["schema"]),
}
READ_ONLY_CASES = [(name, field) for name, (_, fields) in READ_ONLY.items() for field in fields]


@pytest.mark.parametrize(("name", "field"), READ_ONLY_CASES,
                         ids=[".".join(case) for case in READ_ONLY_CASES])
@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_value_fields_are_read_only(flight: ModuleType, name: str, field: str) -> None:
    value = READ_ONLY[name][0](flight)
    with pytest.raises(AttributeError):
        setattr(value, field, getattr(value, field))
