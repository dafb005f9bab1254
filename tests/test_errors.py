"""Handler errors reach clients as the matching Flight error class, both ways.

A flight_secure server's errors reach flight_secure and pyarrow.flight clients;
a pyarrow.flight server's errors reach flight_secure clients. Each RPC shape is
covered: unary (GetFlightInfo), server streaming (DoGet, DoAction failing after a
first result) and bidirectional (DoPut).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from conftest import connected, running_server, sample_table

import flight_secure

FLIGHT_ERRORS = [
    "FlightUnauthenticatedError",
    "FlightUnauthorizedError",
    "FlightUnavailableError",
    "FlightTimedOutError",
    "FlightCancelledError",
    "FlightInternalError",
    "FlightServerError",
]

#: Plain Python errors and the Arrow error class a client raises for them.
PLAIN_ERRORS: dict[str, tuple[Callable[[str], Exception], type[Exception]]] = {
    "ValueError": (ValueError, pa.ArrowInvalid),
    "KeyError": (KeyError, pa.ArrowKeyError),
    "NotImplementedError": (NotImplementedError, pa.ArrowNotImplementedError),
}

SHAPES = ["get_flight_info", "do_get", "do_action", "do_put"]


def _exception(flight: ModuleType, name: str) -> Exception:
    """The exception a handler raises for the call named ``name``."""
    if name in PLAIN_ERRORS:
        return PLAIN_ERRORS[name][0](f"refused: {name}")
    if name == "RuntimeError":
        return RuntimeError("refused: RuntimeError")
    return getattr(flight, name)(f"refused: {name}", f"extra-{name}".encode())


class FailingServer:
    """Every RPC raises the exception named by its descriptor/ticket/action; "ok" succeeds."""

    flight: ModuleType

    def get_flight_info(self, context: Any, descriptor: Any) -> Any:
        name = descriptor.path[0].decode()
        if name == "ok":
            return self.flight.FlightInfo(pa.schema([]), descriptor, [], 0, 0)
        raise _exception(self.flight, name)

    def do_get(self, context: Any, ticket: Any) -> Any:
        name = ticket.ticket.decode()
        if name == "ok":
            return self.flight.RecordBatchStream(sample_table())
        raise _exception(self.flight, name)

    def do_action(self, context: Any, action: Any) -> Iterator[Any]:
        yield self.flight.Result(b"first")
        if action.type != "ok":
            raise _exception(self.flight, action.type)

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        reader.read_all()
        name = descriptor.path[0].decode()
        if name != "ok":
            raise _exception(self.flight, name)


def call(flight: ModuleType, client: Any, shape: str, name: str) -> None:
    """Make a ``shape`` call named ``name`` through to its end."""
    if shape == "get_flight_info":
        client.get_flight_info(flight.FlightDescriptor.for_path(name))
    elif shape == "do_get":
        client.do_get(flight.Ticket(name.encode())).read_all()
    elif shape == "do_action":
        list(client.do_action(flight.Action(name, b"")))
    else:
        table = sample_table()
        writer, _ = client.do_put(flight.FlightDescriptor.for_path(name), table.schema)
        writer.write_table(table)
        writer.close()


@pytest.fixture(scope="module")
def fs_server() -> Iterator[Any]:
    with running_server(flight_secure, FailingServer) as server:
        yield server


@pytest.fixture(scope="module")
def pa_server() -> Iterator[Any]:
    with running_server(pa_flight, FailingServer) as server:
        yield server


@pytest.fixture(scope="module", params=["flight_secure", "pyarrow"])
def client_of_fs(request: pytest.FixtureRequest, fs_server: Any) -> Iterator[tuple]:
    """(client module, client) for each implementation, connected to the fs server."""
    flight = flight_secure if request.param == "flight_secure" else pa_flight
    with connected(flight, fs_server) as client:
        yield flight, client


@pytest.fixture(scope="module")
def fs_client_of_pa(pa_server: Any) -> Iterator[Any]:
    with connected(flight_secure, pa_server) as client:
        yield client


# ------------------------------------------------- flight_secure server -> clients


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", FLIGHT_ERRORS)
def test_flight_error_reaches_client_as_its_class(
    client_of_fs: tuple, name: str, shape: str
) -> None:
    flight, client = client_of_fs
    with pytest.raises(getattr(flight, name)) as caught:
        call(flight, client, shape, name)
    assert f"refused: {name}" in str(caught.value)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", FLIGHT_ERRORS)
def test_flight_error_extra_info_round_trips(client_of_fs: tuple, name: str, shape: str) -> None:
    flight, client = client_of_fs
    with pytest.raises(flight.FlightError) as caught:
        call(flight, client, shape, name)
    assert caught.value.extra_info == f"extra-{name}".encode()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(PLAIN_ERRORS))
def test_plain_error_reaches_client_as_arrow_error(
    client_of_fs: tuple, name: str, shape: str
) -> None:
    flight, client = client_of_fs
    with pytest.raises(PLAIN_ERRORS[name][1]) as caught:
        call(flight, client, shape, name)
    assert f"refused: {name}" in str(caught.value)


@pytest.mark.parametrize("shape", SHAPES)
def test_runtime_error_message_reaches_client_without_traceback(
    client_of_fs: tuple, shape: str
) -> None:
    flight, client = client_of_fs
    with pytest.raises(flight.FlightServerError) as caught:
        call(flight, client, shape, "RuntimeError")
    message = str(caught.value)
    assert "refused: RuntimeError" in message
    assert "Traceback" not in message
    assert ".py" not in message


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", [*FLIGHT_ERRORS, *sorted(PLAIN_ERRORS), "RuntimeError"])
def test_server_keeps_serving_after_handler_error(
    client_of_fs: tuple, name: str, shape: str
) -> None:
    flight, client = client_of_fs
    with pytest.raises(Exception):  # noqa: B017 - the class is specified by the tests above
        call(flight, client, shape, name)
    call(flight, client, shape, "ok")


def test_unimplemented_rpc_is_unimplemented(client_of_fs: tuple) -> None:
    flight, client = client_of_fs
    with pytest.raises(pa.ArrowNotImplementedError):
        client.get_schema(flight.FlightDescriptor.for_path("anything"))


# ------------------------------------------------- pyarrow server -> flight_secure


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", FLIGHT_ERRORS)
def test_pyarrow_server_flight_error_reaches_flight_secure_client(
    fs_client_of_pa: Any, name: str, shape: str
) -> None:
    with pytest.raises(getattr(flight_secure, name)) as caught:
        call(flight_secure, fs_client_of_pa, shape, name)
    assert f"refused: {name}" in str(caught.value)
    assert caught.value.extra_info == f"extra-{name}".encode()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(PLAIN_ERRORS))
def test_pyarrow_server_plain_error_reaches_flight_secure_client(
    fs_client_of_pa: Any, name: str, shape: str
) -> None:
    with pytest.raises(PLAIN_ERRORS[name][1]):
        call(flight_secure, fs_client_of_pa, shape, name)


@pytest.mark.parametrize("shape", SHAPES)
def test_pyarrow_server_runtime_error_reaches_flight_secure_client_as_server_error(
    fs_client_of_pa: Any, shape: str
) -> None:
    with pytest.raises(flight_secure.FlightServerError, match="refused: RuntimeError"):
        call(flight_secure, fs_client_of_pa, shape, "RuntimeError")
