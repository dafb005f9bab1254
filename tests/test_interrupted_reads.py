"""Ctrl-C in the middle of a read: the call is cancelled and never reads as complete.

The interrupt lands wherever the client is at that moment: waiting in gRPC for the
next message, or decoding one it already has. Either way the server must see the
call cancelled, later reads of the stream must raise FlightCancelledError (not end
quietly, which would pass a cut-off stream for a whole one), and a DoPut whose
acknowledgement read was interrupted must not be reported as stored by
``writer.close()``. Each case runs in a child process: the interrupt is a real
KeyboardInterrupt in its main thread (``_thread.interrupt_main``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent('''
    import _thread, sys, threading
    import pyarrow as pa
    import flight_secure as flight

    SCHEMA = pa.schema([("n", pa.int64())])
    BATCH = pa.record_batch([pa.array(range(2048), pa.int64())], schema=SCHEMA)
    cancelled = threading.Event()

    class Endless(flight.FlightServerBase):
        def do_get(self, context, ticket):
            def batches():
                try:
                    for _ in range(1_000_000):
                        if context.is_cancelled():
                            return
                        yield BATCH
                finally:  # also when the server drops the stream of a cancelled call
                    if context.is_cancelled():
                        cancelled.set()
            return flight.GeneratorStream(SCHEMA, batches())

        def do_put(self, context, descriptor, reader, writer):
            while not context.is_cancelled():
                try:
                    reader.read_chunk()
                except (StopIteration, flight.FlightError):
                    break
            if context.is_cancelled():
                cancelled.set()

    def interrupted(read):
        threading.Timer(0.3, _thread.interrupt_main).start()
        try:
            read()
        except KeyboardInterrupt:
            return "interrupted"
        return "returned"

    def outcome(step):
        try:
            step()
        except Exception as exc:
            return type(exc).__name__
        return "no error"

    with Endless() as server:
        client = flight.connect(server.location)
        if sys.argv[1] == "DoGet":
            reader = client.do_get(flight.Ticket(b"endless"))
            print("first:", reader.read_chunk().data.num_rows)
            print("read_all:", interrupted(reader.read_all))
            print("later read_chunk:", outcome(reader.read_chunk))
            print("later read_all:", outcome(reader.read_all))
        else:
            writer, acks = client.do_put(flight.FlightDescriptor.for_path("up"), SCHEMA)
            writer.write_batch(BATCH)
            print("ack read:", interrupted(acks.read))
            print("close:", outcome(writer.close))
        print("server saw it cancelled:", cancelled.wait(10))
        client.close()
''')


def _run(rpc: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROGRAM, rpc], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("attempt", range(3))  # the interrupt lands at a different point
def test_an_interrupted_download_is_cancelled_and_later_reads_say_so(attempt: int) -> None:
    assert _run("DoGet").splitlines() == [
        "first: 2048",
        "read_all: interrupted",
        "later read_chunk: FlightCancelledError",
        "later read_all: FlightCancelledError",
        "server saw it cancelled: True",
    ]


def test_an_upload_whose_acknowledgement_read_was_interrupted_is_not_reported_stored(
) -> None:
    assert _run("DoPut").splitlines() == [
        "ack read: interrupted",
        "close: FlightCancelledError",
        "server saw it cancelled: True",
    ]
