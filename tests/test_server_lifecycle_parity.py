"""A server's handlers cannot keep it running forever.

* A GeneratorStream whose generator yields only empty tables ends the call with
  pyarrow's error after 128 of them in a row, as pyarrow's server does (both
  implementations, same program).
* A handler that never returns does not keep the process from exiting once the
  server has shut down. pyarrow's server waits for such a handler forever (its
  shutdown() blocks, and so does the process's exit); flight_secure cancels the
  call after the shutdown's grace and the process exits. Each program runs in a
  child process, which must exit by itself. A handler that does return once its
  call is cancelled is waited for, so it can clean up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pytest
from conftest import IMPLEMENTATIONS, PYTHON, ROOT, connected, running_server, start_server

import flight_secure

IMPLS = list(IMPLEMENTATIONS.values())
IMPL_IDS = list(IMPLEMENTATIONS)
SCHEMA = pa.schema([("n", pa.int64())])
EMPTY = pa.table({"n": pa.array([], pa.int64())})
BATCH = pa.record_batch([pa.array([1, 2])], schema=SCHEMA)


class EmptyItemsServer:
    """DoGet ``endless`` yields empty tables forever; ``<n>`` yields n empty tables,
    n empty readers or n empty RecordBatchStreams (``<kind>:<n>``), then one batch."""

    flight: ModuleType

    def do_get(self, context: Any, ticket: Any) -> Any:
        text = ticket.ticket.decode()
        if text == "endless":
            def endless() -> Iterator[Any]:
                while True:
                    yield EMPTY
            return self.flight.GeneratorStream(SCHEMA, endless())
        kind, count = text.split(":")
        empty = {
            "table": lambda: EMPTY,
            "reader": lambda: pa.RecordBatchReader.from_batches(SCHEMA, []),
            "stream": lambda: self.flight.RecordBatchStream(EMPTY),
        }[kind]
        items = [empty() for _ in range(int(count))] + [BATCH]
        return self.flight.GeneratorStream(SCHEMA, iter(items))


@pytest.fixture(scope="module", params=IMPL_IDS)
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    with running_server(IMPLEMENTATIONS[request.param], EmptyItemsServer) as started:
        yield started


def _read(server: Any, flight: ModuleType, ticket: str) -> tuple[str, Any]:
    with connected(flight, server) as client:
        options = flight.FlightCallOptions(timeout=20)
        try:
            reader = client.do_get(flight.Ticket(ticket.encode()), options)
            return "rows", reader.read_all().num_rows
        except flight.FlightError as exc:
            return type(exc).__name__, str(exc).split(". Detail: ")[0]


RAN_OUT = ("FlightServerError", "While getting next payload, ran out of attempts to get "
           "something to send (application server implementation error)")


@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_a_generator_of_empty_tables_gives_up(server: Any, flight: ModuleType) -> None:
    assert _read(server, flight, "endless") == RAN_OUT


@pytest.mark.parametrize("kind", ["table", "reader", "stream"])
@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_127_empty_items_in_a_row_are_skipped(server: Any, flight: ModuleType, kind: str) -> None:
    assert _read(server, flight, f"{kind}:127") == ("rows", 2)


@pytest.mark.parametrize("kind", ["table", "reader", "stream"])
@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_128_empty_items_in_a_row_end_the_call(server: Any, flight: ModuleType, kind: str) -> None:
    assert _read(server, flight, f"{kind}:128") == RAN_OUT


# ------------------------------------------------------------ stuck handlers

STUCK_PROGRAM = textwrap.dedent('''
    import sys
    import threading

    import pyarrow as pa

    import flight_secure as flight

    started = threading.Event()


    def stuck():
        started.set()
        threading.Event().wait()  # never set


    class StuckServer(flight.FlightServerBase):
        def do_action(self, context, action):
            stuck()
            return []

        def do_get(self, context, ticket):
            def batches():
                stuck()
                yield pa.record_batch([pa.array([1])], names=["n"])
            return flight.GeneratorStream(pa.schema([("n", pa.int64())]), batches())

        def do_put(self, context, descriptor, reader, writer):
            stuck()

        def do_exchange(self, context, descriptor, reader, writer):
            stuck()


    def call(client, rpc):
        try:
            if rpc == "DoAction":
                list(client.do_action(flight.Action("stuck", b"")))
            elif rpc == "DoGet":
                client.do_get(flight.Ticket(b"stuck")).read_all()
            elif rpc == "DoPut":
                writer, _ = client.do_put(flight.FlightDescriptor.for_path("x"),
                                          pa.schema([("n", pa.int64())]))
                writer.close()
            else:
                writer, reader = client.do_exchange(flight.FlightDescriptor.for_path("x"))
                reader.read_all()
        except flight.FlightError:
            pass


    server = StuckServer("grpc://localhost:0")
    client = flight.connect(f"grpc://localhost:{server.port}")
    threading.Thread(target=call, args=(client, sys.argv[1]), daemon=True).start()
    assert started.wait(10), "the handler did not start"
    if sys.argv[2] == "shutdown":
        server.shutdown(0.5)
    print("main thread done", flush=True)
''')


@pytest.mark.parametrize("ending", ["shutdown", "main thread ends"])
@pytest.mark.parametrize("rpc", ["DoAction", "DoGet", "DoPut", "DoExchange"])
def test_a_stuck_handler_does_not_keep_the_process_alive(
    tmp_path: Path, rpc: str, ending: str
) -> None:
    program = tmp_path / "stuck.py"
    program.write_text(STUCK_PROGRAM)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([PYTHON, str(program), rpc, ending.split()[0]], capture_output=True,
                            text=True, env=env, timeout=30, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "main thread done\n"


class CleaningUp:
    """DoAction sends one result, waits for its call to be cancelled, then takes
    0.2 s to clean up and says so."""

    flight: ModuleType
    cleaned: threading.Event

    def do_action(self, context: Any, action: Any) -> Iterator[Any]:
        yield self.flight.Result(b"started")
        deadline = time.monotonic() + 10
        while not context.is_cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        self.cleaned.set()


def test_shutdown_lets_cancelled_handlers_finish_cleaning_up() -> None:
    behaviour = type("CleaningUp", (CleaningUp,), {"cleaned": threading.Event()})
    server = start_server(flight_secure, behaviour)
    with connected(flight_secure, server) as client:
        results = iter(client.do_action(flight_secure.Action("clean", b"")))
        assert next(results).body.to_pybytes() == b"started"
        server.shutdown(0.1)
        assert behaviour.cleaned.is_set()


def test_serve_returns_after_a_signal_only_once_cancelled_handlers_cleaned_up() -> None:
    behaviour = type("CleaningUp", (CleaningUp,), {"cleaned": threading.Event()})
    server = start_server(flight_secure, behaviour)
    previous = signal.getsignal(signal.SIGUSR1)
    server.set_shutdown_on_signals([signal.SIGUSR1])
    cleaned_when_serve_returned: list[bool] = []

    def serve() -> None:
        server.serve()
        cleaned_when_serve_returned.append(behaviour.cleaned.is_set())

    serving = threading.Thread(target=serve)
    serving.start()
    try:
        with connected(flight_secure, server) as client:
            results = iter(client.do_action(flight_secure.Action("clean", b"")))
            assert next(results).body.to_pybytes() == b"started"
            os.kill(os.getpid(), signal.SIGUSR1)
            serving.join(30)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        server.shutdown(0)
    assert cleaned_when_serve_returned == [True]
