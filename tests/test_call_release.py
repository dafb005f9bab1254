"""Server-streaming calls the caller stops reading are cancelled and freed.

The client reads DoGet/DoAction/ListFlights in the caller's thread (grpcio's
single-threaded mode), where a call's memory is released only after all of its
events are read. These tests abandon or cancel thousands of calls and check the
client process does not grow with them (measured: ~20 KiB per call, +60 MiB over
3000 calls, when nothing reads the last events).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from conftest import PYTHON

import flight_secure as flight

SERVER = """
import pyarrow as pa, flight_secure as flight

class Server(flight.FlightServerBase):
    def do_action(self, context, action):
        return iter([flight.Result(b"first"), flight.Result(b"second")])

    def do_get(self, context, ticket):
        batch = pa.record_batch({"x": list(range(100))})
        return flight.GeneratorStream(batch.schema, (batch for _ in range(10_000)))

server = Server("grpc://127.0.0.1:0")
print(server.port, flush=True)
server.serve()
"""

CALLS = 3000
MAX_GROWTH_MIB = 20


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def client() -> Iterator[flight.FlightClient]:
    """A client of a server in another process, so only the client's memory is measured."""
    process = subprocess.Popen([PYTHON, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        with flight.connect(f"grpc://127.0.0.1:{port}") as connection:
            yield connection
    finally:
        process.kill()
        process.wait(10)


def growth_over(calls: int, make_and_drop) -> float:
    for _ in range(100):  # warm up allocator and channel
        make_and_drop()
    before = rss_mib()
    for _ in range(calls):
        make_and_drop()
    return rss_mib() - before


def test_abandoned_action_results_free_their_call(client) -> None:
    def first_result_only() -> None:
        assert next(iter(client.do_action("go"))).body.to_pybytes() == b"first"

    growth = growth_over(CALLS, first_result_only)
    assert growth < MAX_GROWTH_MIB, f"{growth:.1f} MiB kept by {CALLS} abandoned DoActions"


def test_cancelled_do_get_frees_its_call(client) -> None:
    def cancel_after_one_chunk() -> None:
        reader = client.do_get(flight.Ticket(b"t"))
        assert reader.read_chunk().data.num_rows == 100
        reader.cancel()

    growth = growth_over(CALLS, cancel_after_one_chunk)
    assert growth < MAX_GROWTH_MIB, f"{growth:.1f} MiB kept by {CALLS} cancelled DoGets"
