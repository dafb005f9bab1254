"""Streaming holds a few batches at a time, whatever the stream's length.

Server and client run in this process; ``tracemalloc`` sees every Python
allocation of both (frames being encoded, received messages, batches viewing
them) and the growth of Arrow's memory pool is sampled alongside. A stream of
100 MB in 512 KB batches must never have more than a few megabytes alive at
once: the bound is the client's send queue (8 MiB) plus a handful of batches,
far below the stream's size.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import flight_secure as flight

BATCH = pa.record_batch({"v": np.arange(64 * 1024, dtype=np.int64)})  # 512 KiB
COUNT = 200  # 100 MiB per stream
MiB = 1024 * 1024


class Streams(flight.FlightServerBase):
    """DoGet streams BATCH COUNT times; DoPut reads and drops what it gets."""

    def do_get(self, context: Any, ticket: Any) -> Any:
        return flight.GeneratorStream(BATCH.schema, (BATCH for _ in range(COUNT)))

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        rows = sum(chunk.data.num_rows for chunk in reader)
        writer.write(str(rows).encode())


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with Streams("grpc://127.0.0.1:0") as server, \
            flight.connect(f"grpc://127.0.0.1:{server.port}") as connection:
        yield connection


class ArrowPool:
    """Samples the growth of Arrow's memory pool (which tracemalloc does not see)."""

    def __init__(self) -> None:
        self.base = pa.total_allocated_bytes()
        self.peak = 0

    def sample(self) -> None:
        self.peak = max(self.peak, pa.total_allocated_bytes() - self.base)


def traced_peak(run: Any) -> int:
    """Peak bytes of Python allocations alive while ``run()`` ran."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_do_get_holds_a_few_batches(client: Any) -> None:
    rows = []
    pool = ArrowPool()

    def run() -> None:
        for chunk in client.do_get(flight.Ticket(b"stream")):
            rows.append(chunk.data.num_rows)
            pool.sample()

    peak = traced_peak(run)
    assert sum(rows) == COUNT * BATCH.num_rows
    assert peak < 8 * BATCH.nbytes, f"{peak / MiB:.1f} MiB alive during a 100 MiB DoGet"
    assert pool.peak < 8 * BATCH.nbytes, f"Arrow's pool grew {pool.peak / MiB:.1f} MiB"


def test_do_put_holds_its_send_queue_and_a_few_batches(client: Any) -> None:
    acknowledged = []
    pool = ArrowPool()

    def run() -> None:
        writer, reader = client.do_put(flight.FlightDescriptor.for_path("x"), BATCH.schema)
        for _ in range(COUNT):
            writer.write_batch(BATCH)
            pool.sample()
        writer.done_writing()
        acknowledged.append(bytes(reader.read()))
        writer.close()

    peak = traced_peak(run)
    assert acknowledged == [str(COUNT * BATCH.num_rows).encode()]
    assert peak < 8 * MiB + 8 * BATCH.nbytes, f"{peak / MiB:.1f} MiB alive during a 100 MiB DoPut"
    assert pool.peak < 8 * MiB + 8 * BATCH.nbytes, f"Arrow's pool grew {pool.peak / MiB:.1f} MiB"
