"""A client's life cycle is pyarrow.flight's: each test runs one client program on
both implementations (against the same server) and compares what it observes.

Covered: calls on a closed client, when client middleware hears headers, when
do_action returns (so an action whose results are dropped has started), a DoPut
error seen first by a reader
thread, client middleware that raises, making a client without I/O, and a
location without a port. Ctrl-C during a read is ``parity_programs/interrupted_reads.py``.
"""

from __future__ import annotations

import gc
import os
import select
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pyarrow as pa
import pytest
from conftest import IMPLEMENTATIONS, PYTHON, ROOT, connected, free_port, running_server

import flight_secure

IMPLS = list(IMPLEMENTATIONS.values())
IMPL_IDS = list(IMPLEMENTATIONS)
SCHEMA = pa.schema([("n", pa.int64())])
TABLE = pa.table({"n": [1, 2, 3]})


class LifecycleServer:
    """DoGet and DoAction send a header and a trailer; ``slow-record...`` records its
    start 0.3 s before its first result; ``ran`` says which actions started; DoPut
    acks once, then fails."""

    flight: ModuleType

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ran: list[str] = []
        super().__init__(*args, **kwargs)

    def do_get(self, context: Any, ticket: Any) -> Any:
        context.add_header("x-header", "get")
        context.add_trailer("x-trailer", "get")
        batches = [pa.record_batch([pa.array([i])], schema=SCHEMA) for i in range(3)]
        return self.flight.GeneratorStream(SCHEMA, iter(batches))

    def get_flight_info(self, context: Any, descriptor: Any) -> Any:
        context.add_header("x-header", "info")
        context.add_trailer("x-trailer", "info")
        return self.flight.FlightInfo(SCHEMA, descriptor, [], 0, 0)

    def do_action(self, context: Any, action: Any) -> Iterator[Any]:
        if action.type == "ran":
            yield self.flight.Result(",".join(self.ran).encode())
            return
        if action.type == "plain":
            yield self.flight.Result(b"plain")
            return
        if action.type.startswith("slow-record"):
            time.sleep(0.3)
            self.ran.append(action.type)
        context.add_header("x-header", action.type)
        context.add_trailer("x-trailer", action.type)
        if action.type == "fail":
            raise self.flight.FlightServerError("failed on purpose")
        yield self.flight.Result(b"first")
        yield self.flight.Result(b"second")

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        reader.read_chunk()
        writer.write(b"ack")
        raise self.flight.FlightUnauthorizedError("no more uploads")

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        return [("ran", "the actions that ran")]


@pytest.fixture(scope="module", params=IMPL_IDS)
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The LifecycleServer, on each implementation in turn."""
    with running_server(IMPLEMENTATIONS[request.param], LifecycleServer) as started:
        yield started


def _on_both(program: Callable[[ModuleType], Any]) -> dict[str, Any]:
    return {name: program(flight) for name, flight in IMPLEMENTATIONS.items()}


# ----------------------------------------------------------------- closed clients

#: Calls a program may make on a client it closed.
CLOSED_CALLS: dict[str, Callable[[ModuleType, Any], Any]] = {
    "list_actions": lambda f, c: c.list_actions(),
    "list_flights": lambda f, c: list(c.list_flights()),
    "get_flight_info": lambda f, c: c.get_flight_info(f.FlightDescriptor.for_path("x")),
    "get_schema": lambda f, c: c.get_schema(f.FlightDescriptor.for_path("x")),
    "do_get": lambda f, c: c.do_get(f.Ticket(b"x")),
    "do_action": lambda f, c: list(c.do_action(f.Action("plain", b""))),
    "do_put": lambda f, c: c.do_put(f.FlightDescriptor.for_path("x"), SCHEMA),
    "do_exchange": lambda f, c: c.do_exchange(f.FlightDescriptor.for_path("x")),
    "authenticate_basic_token": lambda f, c: c.authenticate_basic_token("user", "password"),
    "wait_for_available": lambda f, c: c.wait_for_available(1),
}


@pytest.mark.parametrize("name", sorted(CLOSED_CALLS))
def test_a_call_on_a_closed_client_is_arrow_invalid(server: Any, name: str) -> None:
    def program(flight: ModuleType) -> tuple[bool, str]:
        client = flight.connect(f"grpc://localhost:{server.port}")
        client.close()
        client.close()
        try:
            CLOSED_CALLS[name](flight, client)
        except pa.ArrowInvalid as exc:
            return True, str(exc)
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return False, "no error"

    outcomes = _on_both(program)
    assert outcomes["flight_secure"] == outcomes["pyarrow"] == (True, "FlightClient is closed")


def test_a_stream_outlives_the_client_object_it_came_from(server: Any) -> None:
    def program(flight: ModuleType) -> int:
        reader = flight.connect(f"grpc://localhost:{server.port}").do_get(flight.Ticket(b"x"))
        gc.collect()
        return reader.read_all().num_rows

    assert _on_both(program) == {"flight_secure": 3, "pyarrow": 3}


# ------------------------------------------------------------ middleware headers


def _header_log(server: Any, flight: ModuleType, calls: Callable[[Any, list], None]) -> list:
    """What client middleware hears during ``calls``, interleaved with its marks."""
    log: list = []

    class Listener(flight.ClientMiddleware):
        def received_headers(self, headers: dict) -> None:
            log.append(("headers", {k: v for k, v in headers.items()
                                    if k in ("x-header", "x-trailer")}))

        def call_completed(self, exception: Any) -> None:
            log.append(("completed", type(exception).__name__ if exception else None))

    class Factory(flight.ClientMiddlewareFactory):
        def start_call(self, info: Any) -> Any:
            return Listener()

    with connected(flight, server, middleware=[Factory()]) as client:
        calls(client, log)
    return log


def _read_do_get(flight: ModuleType) -> Callable[[Any, list], None]:
    def calls(client: Any, log: list) -> None:
        reader = client.do_get(flight.Ticket(b"x"))
        log.append("do_get returned")
        reader.read_chunk()
        log.append("first chunk read")
        reader.read_all()
        log.append("read to the end")
    return calls


def _run_action(flight: ModuleType, kind: str) -> Callable[[Any, list], None]:
    def calls(client: Any, log: list) -> None:
        results = client.do_action(flight.Action(kind, b""))
        log.append("do_action returned")
        try:
            for _ in results:
                log.append("result")
        except flight.FlightError:
            log.append("raised")
    return calls


HEADER_PROGRAMS: dict[str, Callable[[ModuleType], Callable[[Any, list], None]]] = {
    "DoGet": _read_do_get,
    "DoAction": lambda f: _run_action(f, "headers"),
    "DoAction without headers": lambda f: _run_action(f, "plain"),
    "DoAction that fails": lambda f: _run_action(f, "fail"),
    "GetFlightInfo": lambda f: lambda c, log: c.get_flight_info(f.FlightDescriptor.for_path("x")),
}


@pytest.mark.parametrize("program", sorted(HEADER_PROGRAMS))
def test_client_middleware_hears_headers_when_they_arrive(server: Any, program: str) -> None:
    logs = _on_both(lambda f: _header_log(server, f, HEADER_PROGRAMS[program](f)))
    assert logs["flight_secure"] == logs["pyarrow"]


def test_response_headers_are_heard_before_do_get_returns(server: Any) -> None:
    log = _header_log(server, flight_secure, _read_do_get(flight_secure))
    assert log[:2] == [("headers", {"x-header": ["get"]}), "do_get returned"]


# --------------------------------------------------------------- dropped results


@pytest.mark.parametrize("how", ["never iterated", "left after one result"])
def test_an_action_whose_results_are_dropped_has_started(server: Any, how: str) -> None:
    """do_action returns once the handler has produced its first result (here 0.3 s
    after it starts), so an action whose results are dropped has run that far."""
    def program(flight: ModuleType) -> tuple[bool, bool]:
        name = f"slow-record-{flight.__name__}-{how}"
        with connected(flight, server) as client:
            started = time.monotonic()
            results = client.do_action(flight.Action(name, b""))
            waited = time.monotonic() - started >= 0.3
            if how == "left after one result":
                next(iter(results))
            del results
            ran = next(iter(client.do_action(flight.Action("ran", b"")))).body.to_pybytes()
            return waited, name in ran.decode().split(",")

    assert _on_both(program) == {"flight_secure": (True, True), "pyarrow": (True, True)}


# ---------------------------------------------------------------- DoPut errors


def test_do_put_error_seen_by_a_reader_thread_is_raised_by_close(server: Any) -> None:
    def program(flight: ModuleType) -> tuple[list, str]:
        with connected(flight, server) as client:
            writer, reader = client.do_put(flight.FlightDescriptor.for_path("x"), SCHEMA)
            writer.write_table(TABLE)
            read: list = []

            def read_until_the_end() -> None:
                while True:
                    message = reader.read()
                    read.append(None if message is None else message.to_pybytes())
                    if message is None:
                        return

            thread = threading.Thread(target=read_until_the_end)
            thread.start()
            thread.join(10)
            try:
                writer.close()
            except flight.FlightUnauthorizedError as exc:
                return read, str(exc).split(". gRPC client debug context")[0]
            return read, "close raised nothing"

    outcomes = _on_both(program)
    assert outcomes["flight_secure"] == outcomes["pyarrow"]
    assert outcomes["flight_secure"] == ([b"ack", None], "no more uploads. Detail: Unauthorized")


# ------------------------------------------------------ middleware that raises


@pytest.mark.parametrize("failing", ["start_call", "sending_headers", "received_headers",
                                     "call_completed"])
def test_client_middleware_that_raises_is_left_out_and_the_call_goes_on(
    server: Any, failing: str, caplog: pytest.LogCaptureFixture
) -> None:
    def program(flight: ModuleType) -> tuple[int, list[bytes]]:
        class Failing(flight.ClientMiddleware):
            def sending_headers(self) -> dict:
                if failing == "sending_headers":
                    raise RuntimeError()
                return {}

            def received_headers(self, headers: dict) -> None:
                if failing == "received_headers":
                    raise RuntimeError()

            def call_completed(self, exception: Any) -> None:
                if failing == "call_completed":
                    raise RuntimeError()

        class Factory(flight.ClientMiddlewareFactory):
            def start_call(self, info: Any) -> Any:
                if failing == "start_call":
                    raise RuntimeError()
                return Failing()

        with connected(flight, server, middleware=[Factory()]) as client:
            rows = client.do_get(flight.Ticket(b"x")).read_all().num_rows
            results = [r.body.to_pybytes() for r in client.do_action(flight.Action("plain", b""))]
        return rows, results

    outcomes = _on_both(program)
    assert outcomes["flight_secure"] == outcomes["pyarrow"] == (3, [b"plain"])
    assert f"client middleware {failing} failed" in caplog.text


# ------------------------------------------------------- no I/O at construction


def _connections_made(make_client: Callable[[int], Any]) -> tuple[int, Any]:
    """(connections accepted while ``make_client(port)`` ran, the client it made),
    ``port`` being a listening socket that never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        client = make_client(listener.getsockname()[1])
        readable, _, _ = select.select([listener], [], [], 0.3)
        return len(readable), client


@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_making_a_client_without_server_verification_connects_to_nothing(
    flight: ModuleType,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        connections, client = _connections_made(lambda port: flight.connect(
            f"grpc+tls://127.0.0.1:{port}", disable_server_verification=True))
    client.close()
    assert connections == 0


def test_an_unreachable_server_is_reported_by_the_first_call_not_by_connect() -> None:
    def program(flight: ModuleType) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            client = flight.connect(f"grpc+tls://127.0.0.1:{free_port()}",
                                    disable_server_verification=True)
        with client:
            try:
                client.list_actions(flight.FlightCallOptions(timeout=10))
            except flight.FlightUnavailableError:
                return "first call unavailable"
        return "first call succeeded"

    assert _on_both(program) == {"flight_secure": "first call unavailable",
                                 "pyarrow": "first call unavailable"}


@pytest.mark.parametrize("scheme", ["grpc", "grpc+tcp", "grpc+tls"])
def test_a_location_without_a_port_dials_grpcs_default_port(scheme: str) -> None:
    def program(flight: ModuleType) -> str:
        with flight.connect(f"{scheme}://127.0.0.1") as client:
            try:
                client.list_actions(flight.FlightCallOptions(timeout=10))
            except flight.FlightUnavailableError as exc:
                return "dialled port 443" if "127.0.0.1:443" in str(exc) else str(exc)
        return "something answers on port 443"

    outcomes = _on_both(program)
    assert outcomes["flight_secure"] == outcomes["pyarrow"] == "dialled port 443"


# ----------------------------------------------------------------- interrupts


def test_an_interrupted_read_cancels_the_call_on_the_server() -> None:
    """flight_secure also cancels what pyarrow leaves running (see the program)."""
    program = ROOT / "tests" / "parity_programs" / "interrupted_reads.py"
    env = dict(os.environ, FLIGHT_IMPL="flight_secure", PYTHONPATH=str(ROOT))
    result = subprocess.run([PYTHON, str(program), "--server-state"], capture_output=True,
                            text=True, env=env, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "DoGet on the server: ['cancelled']" in result.stdout
    assert "DoExchange on the server: ['cancelled']" in result.stdout
