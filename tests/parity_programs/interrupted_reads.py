"""A pyarrow.flight program: Ctrl-C while a DoGet or DoExchange read_all waits.

The server runs in a child process and holds each stream open after its first
batch until the call is cancelled (HOLD seconds at most). The client reads that batch
and is interrupted (SIGINT) in read_all; then the DoExchange writer is closed,
which must not wait for a server that will not answer. With ``--server-state``
the program also asks the server whether each call was cancelled (flight_secure
cancels it; pyarrow leaves it running). Written for pyarrow.flight;
FLIGHT_IMPL=flight_secure runs it (client and server) on flight_secure.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import pyarrow as pa

if os.environ.get("FLIGHT_IMPL") == "flight_secure":
    import flight_secure as flight
else:
    import pyarrow.flight as flight

SCHEMA = pa.schema([("n", pa.int64())])
BATCH = pa.record_batch([pa.array([1, 2, 3])], schema=SCHEMA)
HOLD = 4.0


class HoldingServer(flight.FlightServerBase):
    def __init__(self, location):
        super().__init__(location)
        self.ended = {}
        self.changed = threading.Condition()

    def _hold(self, context, name):
        deadline = time.monotonic() + HOLD
        while time.monotonic() < deadline and not context.is_cancelled():
            time.sleep(0.01)
        with self.changed:
            self.ended[name] = "cancelled" if context.is_cancelled() else "never cancelled"
            self.changed.notify_all()

    def do_get(self, context, ticket):
        def batches():
            yield BATCH
            self._hold(context, "DoGet")
        return flight.GeneratorStream(SCHEMA, batches())

    def do_exchange(self, context, descriptor, reader, writer):
        reader.read_chunk()
        writer.begin(SCHEMA)
        writer.write_batch(BATCH)
        self._hold(context, "DoExchange")

    def do_action(self, context, action):
        name = action.body.to_pybytes().decode()
        with self.changed:
            self.changed.wait_for(lambda: name in self.ended, HOLD + 5)
            return [self.ended.get(name, "still running").encode()]


def serve():
    server = HoldingServer("grpc://localhost:0")
    print(server.port, flush=True)
    sys.stdin.read()  # until the client is done


def interrupt_soon():
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()


def read_interrupted(reader, name):
    interrupt_soon()
    try:
        reader.read_all()
        print(name, "read_all returned")
    except KeyboardInterrupt:
        print(name, "read_all interrupted")


def on_server(client, name):
    results = client.do_action(flight.Action("ended", name.encode()))
    return [r.body.to_pybytes().decode() for r in results]


def main(show_server_state):
    child = subprocess.Popen([sys.executable, __file__, "serve"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        client = flight.connect(f"grpc://localhost:{child.stdout.readline().strip()}")

        # Readers stay referenced until the server is gone: pyarrow's would wait
        # for their call to end when dropped.
        get_reader = client.do_get(flight.Ticket(b"held"))
        print("DoGet first batch rows:", get_reader.read_chunk().data.num_rows)
        read_interrupted(get_reader, "DoGet")
        if show_server_state:
            print("DoGet on the server:", on_server(client, "DoGet"))

        writer, reader = client.do_exchange(flight.FlightDescriptor.for_command(b"held"))
        writer.begin(SCHEMA)
        writer.write_batch(BATCH)
        print("DoExchange first batch rows:", reader.read_chunk().data.num_rows)
        read_interrupted(reader, "DoExchange")
        if show_server_state:
            print("DoExchange on the server:", on_server(client, "DoExchange"))
        started = time.monotonic()
        with contextlib.suppress(flight.FlightError):
            writer.close()
        # pyarrow's read_all returns once the server ends the call by itself, so its
        # close() has nothing to wait for; ours must not wait for the server either.
        print("writer.close() returned at once:", time.monotonic() - started < HOLD / 2)
        client.close()
    finally:
        child.kill()
        child.wait()


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        main(sys.argv[1:] == ["--server-state"])
