"""A handler's failures reach clients as a pyarrow.flight server reports them.

The same server class runs on pyarrow.flight and on flight_secure; each client
(either implementation) must raise the same class for both, with the same
message up to the status detail. A pyarrow server's detail for an exception
that is not a Flight error is the Python traceback; flight_secure's names the
exception's type and nothing else: no traceback, no server path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from conftest import IMPLEMENTATIONS, connected, running_server

import flight_secure

#: What a handler raises, by the name the call carries. The flight module is
#: passed so Flight errors are the server implementation's own classes.
RAISED: dict[str, Callable[[ModuleType], BaseException]] = {
    "TypeError": lambda f: TypeError("wrong type"),
    "ValueError": lambda f: ValueError("wrong value"),
    "KeyError": lambda f: KeyError("missing"),
    "IndexError": lambda f: IndexError("out of range"),
    "RuntimeError": lambda f: RuntimeError("it broke"),
    "NotImplementedError": lambda f: NotImplementedError("not yet"),
    "MemoryError": lambda f: MemoryError("too big"),
    "OSError": lambda f: OSError("disk gone"),
    "PermissionError": lambda f: PermissionError("file mode"),
    "FileNotFoundError": lambda f: FileNotFoundError("no file"),
    "FileExistsError": lambda f: FileExistsError("file there"),
    "TimeoutError": lambda f: TimeoutError("too slow"),
    "OverflowError": lambda f: OverflowError("too large"),
    "LookupError": lambda f: LookupError("not listed"),
    "empty RuntimeError": lambda f: RuntimeError(),
    "ArrowInvalid": lambda f: pa.ArrowInvalid("invalid"),
    "ArrowTypeError": lambda f: pa.ArrowTypeError("arrow type"),
    "ArrowCancelled": lambda f: pa.ArrowCancelled("stopped"),
    "FlightUnauthenticatedError": lambda f: f.FlightUnauthenticatedError("bad creds"),
    "FlightUnauthorizedError": lambda f: f.FlightUnauthorizedError("not yours"),
    "FlightServerError": lambda f: f.FlightServerError("server says no"),
    "FlightInternalError": lambda f: f.FlightInternalError("inside"),
    "FlightTimedOutError": lambda f: f.FlightTimedOutError("late"),
    "FlightCancelledError": lambda f: f.FlightCancelledError("called off"),
    "FlightUnavailableError": lambda f: f.FlightUnavailableError("away"),
}

DETAIL = ". Detail: "


class RaisingServer:
    """DoAction and DoGet raise what their action type or ticket names; ListActions
    returns what ``listed`` names."""

    flight: ModuleType

    def do_action(self, context: Any, action: Any) -> Iterator[Any]:
        if action.type == "result:str":
            return ["text is not a body"]
        if action.type == "result:int":
            return [7]
        if action.type == "result:none":
            return [None]
        raise RAISED[action.type](self.flight)

    def do_get(self, context: Any, ticket: Any) -> Any:
        raise RAISED[ticket.ticket.decode()](self.flight)


LISTINGS: dict[str, Any] = {
    "a str": ["echo"],
    "a list": [["echo", "returns the body"]],
    "a short tuple": [("echo",)],
    "a number as type": [(1, "returns the body")],
    "None": None,
}


class ListingServer:
    """ListActions returns the listing its class attribute ``listing`` names."""

    flight: ModuleType
    listing: str

    def list_actions(self, context: Any) -> Any:
        return LISTINGS[self.listing]


class SilentServer:
    """Overrides nothing: every RPC has the base class's behaviour."""


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Any]]:
    """A RaisingServer on each implementation, by implementation name."""
    with running_server(pa_flight, RaisingServer) as theirs, \
            running_server(flight_secure, RaisingServer) as ours:
        yield {"pyarrow": theirs, "flight_secure": ours}


def _failure(server: Any, client_flight: ModuleType, call: Callable[[ModuleType, Any], Any]
             ) -> BaseException:
    with connected(client_flight, server) as client:
        try:
            call(client_flight, client)
        except Exception as exc:
            return exc
    raise AssertionError("the call did not fail")


def _compare(failures: dict[str, BaseException]) -> None:
    """flight_secure's server failed the call as pyarrow's did."""
    theirs, ours = failures["pyarrow"], failures["flight_secure"]
    assert type(ours) is type(theirs)
    their_text, ours_text = str(theirs), str(ours)
    assert ours_text.split(DETAIL)[0] == their_text.split(DETAIL)[0]
    assert (DETAIL in ours_text) == (DETAIL in their_text)
    if DETAIL in their_text:
        their_detail = their_text.split(DETAIL, 1)[1]
        our_detail = ours_text.split(DETAIL, 1)[1]
        if their_detail.startswith("Python exception: "):
            assert our_detail.startswith("Python exception: ")
        else:
            assert our_detail == their_detail


def _failures(servers: dict[str, Any], client_flight: ModuleType,
              call: Callable[[ModuleType, Any], Any]) -> dict[str, BaseException]:
    return {name: _failure(server, client_flight, call) for name, server in servers.items()}


@pytest.mark.parametrize("client_impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("raised", list(RAISED))
def test_action_failure_reaches_client_as_from_pyarrow_server(
    servers: dict[str, Any], client_impl: str, raised: str
) -> None:
    def call(flight: ModuleType, client: Any) -> None:
        list(client.do_action(flight.Action(raised, b"")))

    _compare(_failures(servers, IMPLEMENTATIONS[client_impl], call))


@pytest.mark.parametrize("client_impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("raised", ["TypeError", "IndexError", "PermissionError",
                                    "FlightUnauthenticatedError"])
def test_do_get_failure_reaches_client_as_from_pyarrow_server(
    servers: dict[str, Any], client_impl: str, raised: str
) -> None:
    def call(flight: ModuleType, client: Any) -> None:
        client.do_get(flight.Ticket(raised.encode())).read_all()

    _compare(_failures(servers, IMPLEMENTATIONS[client_impl], call))


@pytest.mark.parametrize("client_impl", list(IMPLEMENTATIONS))
def test_type_error_is_a_server_error_for_every_client(
    servers: dict[str, Any], client_impl: str
) -> None:
    flight = IMPLEMENTATIONS[client_impl]
    failure = _failure(servers["flight_secure"], flight,
                       lambda f, c: list(c.do_action(f.Action("TypeError", b""))))
    assert type(failure) is flight.FlightServerError
    assert str(failure) == "wrong type. Detail: Python exception: TypeError"


@pytest.mark.parametrize("raised", ["TypeError", "RuntimeError", "MemoryError", "KeyError"])
def test_no_traceback_or_server_path_reaches_the_client(
    servers: dict[str, Any], raised: str
) -> None:
    failure = _failure(servers["flight_secure"], pa_flight,
                       lambda f, c: list(c.do_action(f.Action(raised, b""))))
    text = str(failure)
    assert "Traceback" not in text
    assert ".py" not in text
    assert __file__.rsplit("/", 2)[0] not in text


@pytest.mark.parametrize("client_impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("result", ["str", "int", "none"])
def test_action_result_that_is_no_body_is_refused(
    servers: dict[str, Any], client_impl: str, result: str
) -> None:
    def call(flight: ModuleType, client: Any) -> None:
        list(client.do_action(flight.Action(f"result:{result}", b"")))

    failures = _failures(servers, IMPLEMENTATIONS[client_impl], call)
    assert type(failures["flight_secure"]) is type(failures["pyarrow"])
    assert isinstance(failures["flight_secure"], IMPLEMENTATIONS[client_impl].FlightServerError)


def _list_actions_failures(behaviour: type, client_flight: ModuleType) -> dict[str, BaseException]:
    """How list_actions fails against ``behaviour`` served by each implementation."""
    failures = {}
    for name, server_flight in IMPLEMENTATIONS.items():
        with running_server(server_flight, behaviour) as server:
            failures[name] = _failure(server, client_flight, lambda f, c: c.list_actions())
    assert type(failures["flight_secure"]) is type(failures["pyarrow"])
    return failures


@pytest.mark.parametrize("client_impl", list(IMPLEMENTATIONS))
def test_default_list_actions_is_unimplemented(client_impl: str) -> None:
    failures = _list_actions_failures(SilentServer, IMPLEMENTATIONS[client_impl])
    assert isinstance(failures["flight_secure"], pa.ArrowNotImplementedError)


@pytest.mark.parametrize("client_impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("listing", list(LISTINGS))
def test_malformed_list_actions_item_is_a_server_error(client_impl: str, listing: str) -> None:
    flight = IMPLEMENTATIONS[client_impl]
    behaviour = type("Listing", (ListingServer,), {"listing": listing})
    failures = _list_actions_failures(behaviour, flight)
    assert isinstance(failures["flight_secure"], flight.FlightServerError)


@pytest.mark.parametrize("client_impl", list(IMPLEMENTATIONS))
def test_action_types_listed_as_tuples_of_bytes_are_accepted(client_impl: str) -> None:
    flight = IMPLEMENTATIONS[client_impl]
    behaviour = type("Listing", (ListingServer,), {
        "list_actions": lambda self, context: [(b"echo", b"body back", "ignored")]})
    listed = {}
    for name, server_flight in IMPLEMENTATIONS.items():
        with running_server(server_flight, behaviour) as server, \
                connected(flight, server) as client:
            listed[name] = [(a.type, a.description) for a in client.list_actions()]
    assert listed["flight_secure"] == listed["pyarrow"] == [("echo", "body back")]
