"""Server and client middleware: headers both ways, call_completed, get_middleware,
and a factory that refuses calls. Run for every pairing that involves flight_secure:
flight_secure on both ends, pyarrow client -> flight_secure server, and
flight_secure client -> pyarrow server."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pyarrow.flight as pa_flight
import pytest
from conftest import DataServer, location_of, plain_table, running_server, sample_table

import flight_secure

WAIT = 5.0


def middleware_for(flight: ModuleType) -> tuple[type, type]:
    """A recording server middleware factory and client factory built on ``flight``."""

    class ServerRecorder(flight.ServerMiddleware):
        def __init__(self, factory: Any, info: Any, headers: dict) -> None:
            super().__init__()
            self.factory = factory
            self.method = info.method.name
            self.client_header = headers.get("x-client-header", [])

        def sending_headers(self) -> dict[str, str]:
            return {"x-server-header": "from-server"}

        def call_completed(self, exception: BaseException | None) -> None:
            self.factory.completed.put((self.method, exception))

    class ServerRecorderFactory(flight.ServerMiddlewareFactory):
        def __init__(self) -> None:
            super().__init__()
            self.completed: queue.Queue = queue.Queue()

        def start_call(self, info: Any, headers: dict) -> Any:
            if "x-deny" in headers:
                raise flight.FlightUnauthenticatedError("denied by middleware")
            return ServerRecorder(self, info, headers)

    class ClientRecorder(flight.ClientMiddleware):
        def __init__(self, info: Any) -> None:
            super().__init__()
            self.method = info.method.name
            self.received: dict = {}
            self.completed: list = []
            self.done = threading.Event()

        def sending_headers(self) -> dict[str, str]:
            return {"x-client-header": "from-client"}

        def received_headers(self, headers: dict) -> None:
            self.received.update(headers)

        def call_completed(self, exception: BaseException | None) -> None:
            self.completed.append(exception)
            self.done.set()

    class ClientRecorderFactory(flight.ClientMiddlewareFactory):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list = []

        def start_call(self, info: Any) -> Any:
            recorder = ClientRecorder(info)
            self.calls.append(recorder)
            return recorder

    return ServerRecorderFactory, ClientRecorderFactory


class MiddlewareServer(DataServer):
    """DataServer plus actions that read the call's middleware, and one that fails."""

    def do_action(self, context: Any, action: Any) -> Iterator[Any]:
        if action.type == "client-header":
            recorder = context.get_middleware("recorder")
            yield self.flight.Result(",".join(recorder.client_header).encode())
        elif action.type == "unknown-middleware":
            yield self.flight.Result(repr(context.get_middleware("no-such-key")).encode())
        elif action.type == "fail":
            raise RuntimeError("boom in handler")
        elif action.type == "add-headers":
            context.add_header("x-added-header", "added")
            context.add_trailer("x-added-trailer", "trailed")
            yield self.flight.Result(b"ok")
        else:
            yield from super().do_action(context, action)

    def do_get(self, context: Any, ticket: Any) -> Any:
        if ticket.ticket == b"endless":
            batch = plain_table().to_batches()[0]
            return self.flight.GeneratorStream(batch.schema, (batch for _ in range(1_000_000)))
        return super().do_get(context, ticket)


@dataclass
class Pair:
    flight: ModuleType  # the client's implementation
    client: Any
    client_factory: Any
    server_factory: Any

    def last_client_call(self) -> Any:
        recorder = self.client_factory.calls[-1]
        assert recorder.done.wait(WAIT), "client call_completed was not called"
        return recorder

    def server_completion(self) -> tuple[str, BaseException | None]:
        return self.server_factory.completed.get(timeout=WAIT)

    def action(self, name: str, **options: Any) -> list[bytes]:
        call_options = self.flight.FlightCallOptions(**options)
        results = self.client.do_action(self.flight.Action(name, b""), call_options)
        return [r.body.to_pybytes() for r in results]


PAIRS = {
    "flight_secure->flight_secure": (flight_secure, flight_secure),
    "pyarrow->flight_secure": (pa_flight, flight_secure),
    "flight_secure->pyarrow": (flight_secure, pa_flight),
}


@pytest.fixture(scope="module", params=sorted(PAIRS))
def pair_setup(request: pytest.FixtureRequest) -> Iterator[Pair]:
    client_flight, server_flight = PAIRS[request.param]
    server_factory = middleware_for(server_flight)[0]()
    client_factory = middleware_for(client_flight)[1]()
    with running_server(
        server_flight, MiddlewareServer, middleware={"recorder": server_factory}
    ) as server:
        client = client_flight.connect(location_of(server), middleware=[client_factory])
        yield Pair(client_flight, client, client_factory, server_factory)
        client.close()


@pytest.fixture
def pair(pair_setup: Pair) -> Pair:
    """The module's pair with the record of earlier calls cleared."""
    pair_setup.client_factory.calls.clear()
    completed = pair_setup.server_factory.completed
    while not completed.empty():
        completed.get_nowait()
    return pair_setup


def test_client_middleware_headers_reach_server_middleware(pair: Pair) -> None:
    assert pair.action("client-header") == [b"from-client"]


def test_call_option_headers_reach_server_alongside_middleware_headers(pair: Pair) -> None:
    result = pair.action("client-header", headers=[(b"x-client-header", b"from-options")])
    assert sorted(result[0].split(b",")) == [b"from-client", b"from-options"]


def test_server_middleware_headers_reach_client_middleware(pair: Pair) -> None:
    pair.action("echo")
    assert pair.last_client_call().received.get("x-server-header") == ["from-server"]


def test_server_middleware_headers_reach_client_on_streams(pair: Pair) -> None:
    pair.client.do_get(pair.flight.Ticket(b"sample")).read_all()
    assert pair.last_client_call().received.get("x-server-header") == ["from-server"]


def test_context_add_header_and_add_trailer_reach_client_middleware(pair: Pair) -> None:
    pair.action("add-headers")
    received = pair.last_client_call().received
    assert (received.get("x-added-header"), received.get("x-added-trailer")) == (
        ["added"],
        ["trailed"],
    )


def test_client_middleware_is_told_the_method(pair: Pair) -> None:
    pair.client.get_flight_info(pair.flight.FlightDescriptor.for_path("sample"))
    assert pair.last_client_call().method == "GET_FLIGHT_INFO"


def test_server_middleware_is_told_the_method(pair: Pair) -> None:
    pair.client.get_schema(pair.flight.FlightDescriptor.for_path("sample"))
    assert pair.server_completion()[0] == "GET_SCHEMA"


def test_get_middleware_of_unknown_key_is_none(pair: Pair) -> None:
    assert pair.action("unknown-middleware") == [b"None"]


def test_server_call_completed_without_exception(pair: Pair) -> None:
    pair.action("echo")
    assert pair.server_completion() == ("DO_ACTION", None)


def test_server_call_completed_after_stream_ends(pair: Pair) -> None:
    table = pair.client.do_get(pair.flight.Ticket(b"sample")).read_all()
    assert table.equals(sample_table())
    assert pair.server_completion() == ("DO_GET", None)


def test_server_call_completed_with_the_handlers_exception(pair: Pair) -> None:
    with pytest.raises(pair.flight.FlightServerError):
        pair.action("fail")
    method, exception = pair.server_completion()
    assert method == "DO_ACTION"
    assert exception is not None
    assert "boom in handler" in str(exception)


def test_server_call_completed_when_client_cancels_stream(pair: Pair) -> None:
    reader = pair.client.do_get(pair.flight.Ticket(b"endless"))
    reader.read_chunk()
    reader.cancel()
    assert pair.server_completion()[0] == "DO_GET"


def test_client_call_completed_without_exception(pair: Pair) -> None:
    pair.action("echo")
    assert pair.last_client_call().completed == [None]


def test_client_call_completed_with_the_calls_error(pair: Pair) -> None:
    with pytest.raises(pair.flight.FlightServerError):
        pair.action("fail")
    (exception,) = pair.last_client_call().completed
    assert isinstance(exception, pair.flight.FlightServerError)


def test_client_call_completed_after_stream_ends(pair: Pair) -> None:
    pair.client.do_get(pair.flight.Ticket(b"sample")).read_all()
    assert pair.last_client_call().completed == [None]


def test_factory_raising_unauthenticated_refuses_the_call(pair: Pair) -> None:
    with pytest.raises(pair.flight.FlightUnauthenticatedError, match="denied by middleware"):
        pair.action("echo", headers=[(b"x-deny", b"1")])


def test_refused_call_does_not_reach_the_handler(pair: Pair) -> None:
    descriptor = pair.flight.FlightDescriptor.for_path("mw-refused")
    options = pair.flight.FlightCallOptions(headers=[(b"x-deny", b"1")])
    with pytest.raises(pair.flight.FlightUnauthenticatedError):
        writer, _ = pair.client.do_put(descriptor, sample_table().schema, options)
        writer.write_table(sample_table())
        writer.close()
    with pytest.raises(KeyError):
        pair.client.get_flight_info(descriptor)


def test_headers_assigned_to_call_options_later_are_sent() -> None:
    server_factory = middleware_for(flight_secure)[0]()
    with running_server(flight_secure, MiddlewareServer,
                        middleware={"recorder": server_factory}) as server, \
            flight_secure.connect(location_of(server)) as client:
        options = flight_secure.FlightCallOptions(timeout=WAIT)
        options.headers = [(b"x-client-header", b"assigned later")]
        results = client.do_action(flight_secure.Action("client-header", b""), options)
        assert [r.body.to_pybytes() for r in results] == [b"assigned later"]


def test_middleware_started_before_a_refusal_hears_how_the_call_ended() -> None:
    """pyarrow never tells it (a tracing span would stay open); flight_secure does."""
    completed: list = []

    class Started(flight_secure.ServerMiddleware):
        def call_completed(self, exception: BaseException | None) -> None:
            completed.append(exception)

    class Starts(flight_secure.ServerMiddlewareFactory):
        def start_call(self, info: Any, headers: dict) -> Any:
            return Started()

    class Refuses(flight_secure.ServerMiddlewareFactory):
        def start_call(self, info: Any, headers: dict) -> Any:
            raise flight_secure.FlightUnauthenticatedError("refused by the second factory")

    with running_server(flight_secure, MiddlewareServer,
                        middleware={"first": Starts(), "second": Refuses()}) as server, \
            flight_secure.connect(location_of(server)) as client, \
            pytest.raises(flight_secure.FlightUnauthenticatedError, match="second factory"):
        list(client.do_action(flight_secure.Action("echo", b"")))
    assert [type(e) for e in completed] == [flight_secure.FlightUnauthenticatedError]
    assert str(completed[0]) == "refused by the second factory"


@pytest.mark.parametrize("flight", [flight_secure, pa_flight], ids=["flight_secure", "pyarrow"])
def test_two_tracing_factories_are_refused(flight: ModuleType) -> None:
    pytest.importorskip("opentelemetry")
    middleware = {"trace": flight.TracingServerMiddlewareFactory(),
                  "again": flight.TracingServerMiddlewareFactory()}
    with pytest.raises(ValueError, match=r"^Can only provide TracingServerMiddlewareFactory once$"):
        flight.FlightServerBase("grpc://localhost:0", middleware=middleware)
