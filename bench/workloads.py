"""Client-side workloads: one call of a function here is one measured round.

Every function takes a :class:`Session` (the connected client) and the round's
parameters, runs a bounded amount of work (``calls`` and ``max_s`` cap every
loop) and returns ``{"value": float, ...}`` in the workload's unit. Data the
client uploads is built before timing (``Session.prepare``).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pyarrow as pa

from bench.common import drain
from bench.data import DataSpec, make_table

Result = dict[str, Any]


def _no_auth() -> Any:
    raise RuntimeError("this variant has no authentication")


@dataclass
class Session:
    """A connected client of one implementation, plus the prepared upload table.

    ``new_auth_handler`` makes a fresh client auth handler of the session's scheme.
    """

    impl: str
    flight: ModuleType
    client: Any
    table: pa.Table | None = None
    new_auth_handler: Callable[[], Any] = _no_auth

    def prepare(self, spec: DataSpec) -> None:
        """Build (and keep only) the table of ``spec`` for uploads."""
        self.table = None
        self.table = make_table(spec)

    def upload(self) -> pa.Table:
        """The prepared table; raises RuntimeError when none was prepared."""
        if self.table is None:
            raise RuntimeError("no table prepared")
        return self.table


def _expect(label: str, got: int, want: int) -> None:
    if got != want:
        raise RuntimeError(f"{label}: got {got} rows, expected {want}")


def _get_once(session: Session, spec: DataSpec) -> int:
    """Stream the server's table for ``spec``; returns the received batch bytes."""
    count, rows = spec.shape()
    reader = session.client.do_get(session.flight.Ticket(spec.encode()))
    received, nbytes = drain(reader)
    _expect("DoGet", received, count * rows)
    return nbytes


def _upload(session: Session, table: pa.Table, name: str) -> None:
    """DoPut ``table`` to path ("bench", ``name``); returns once the server acknowledged
    every row (RuntimeError otherwise)."""
    descriptor = session.flight.FlightDescriptor.for_path("bench", name)
    writer, ack_reader = session.client.do_put(descriptor, table.schema)
    for batch in table.to_batches():
        writer.write_batch(batch)
    writer.done_writing()
    ack = ack_reader.read()
    writer.close()
    if ack is None:
        raise RuntimeError("DoPut: server sent no acknowledgement")
    _expect("DoPut", json.loads(ack.to_pybytes())["rows"], table.num_rows)


def _put_once(session: Session, spec: DataSpec) -> int:
    """Upload the prepared table; returns its bytes once the server acknowledged all of it."""
    table = session.upload()
    _upload(session, table, "put")
    return table.nbytes


def _exchange_once(session: Session, spec: DataSpec) -> int:
    """Send the prepared table through an echoing DoExchange; returns the bytes sent.

    A writer thread sends while this thread reads the echo, so flow control
    cannot deadlock the stream.
    """
    table = session.upload()
    descriptor = session.flight.FlightDescriptor.for_command(b"echo")
    failure: list[BaseException] = []
    writer, reader = session.client.do_exchange(descriptor)

    def send() -> None:
        try:
            writer.begin(table.schema)
            for batch in table.to_batches():
                writer.write_batch(batch)
            writer.done_writing()
        except BaseException as exc:  # surfaced by the reading thread
            failure.append(exc)

    sender = threading.Thread(target=send, name="exchange-send", daemon=True)
    sender.start()
    echoed, _ = drain(reader)
    sender.join()
    writer.close()
    if failure:
        raise failure[0]
    _expect("DoExchange", echoed, table.num_rows)
    return table.nbytes


TRANSFERS: dict[str, Callable[[Session, DataSpec], int]] = {
    "doget": _get_once,
    "doput": _put_once,
    "exchange": _exchange_once,
}


def transfer(
    session: Session, kind: str, spec: DataSpec, min_s: float, max_repeats: int, **_: Any
) -> Result:
    """GB/s of back-to-back transfers of ``kind``, repeated until ``min_s`` or ``max_repeats``."""
    once = TRANSFERS[kind]
    nbytes = repeats = 0
    start = time.perf_counter()
    while True:
        nbytes += once(session, spec)
        repeats += 1
        seconds = time.perf_counter() - start
        if seconds >= min_s or repeats >= max_repeats:
            break
    return {
        "value": nbytes / seconds / 1e9,
        "bytes": nbytes,
        "seconds": seconds,
        "repeats": repeats,
    }


def _action_call(session: Session) -> Callable[[], None]:
    action = session.flight.Action("ping", b"")

    def call() -> None:
        results = list(session.client.do_action(action))
        if len(results) != 1 or results[0].body.to_pybytes() != b"pong":
            raise RuntimeError("DoAction: unexpected reply")

    return call


def _info_call(session: Session) -> Callable[[], None]:
    descriptor = session.flight.FlightDescriptor.for_command(b"info")

    def call() -> None:
        session.client.get_flight_info(descriptor)

    return call


def _put_row_call(session: Session) -> Callable[[], None]:
    table = pa.table({"x": pa.array([1], pa.int64())})

    def call() -> None:
        _upload(session, table, "put-row")

    return call


CALLS: dict[str, Callable[[Session], Callable[[], None]]] = {
    "action": _action_call,
    "info": _info_call,
    "put_row": _put_row_call,
}


def latency(session: Session, call: str, calls: int, max_s: float, **_: Any) -> Result:
    """Median µs of up to ``calls`` sequential small calls (stops after ``max_s``)."""
    fn = CALLS[call](session)
    samples: list[float] = []
    deadline = time.perf_counter() + max_s
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        end = time.perf_counter()
        samples.append((end - start) * 1e6)
        if end > deadline:
            break
    return {"value": statistics.median(samples), "calls": len(samples), "p90": _p90(samples)}


def _p90(samples: list[float]) -> float:
    return sorted(samples)[int(0.9 * (len(samples) - 1))]


def concurrent(
    session: Session, call: str, calls: int, threads: int, max_s: float, **_: Any
) -> Result:
    """Calls/s of ``threads`` threads sharing one client, each making up to ``calls`` calls."""
    fn = CALLS[call](session)
    counts = [0] * threads
    failure: list[BaseException] = []
    gate = threading.Barrier(threads + 1)
    deadline = time.perf_counter() + max_s

    def worker(slot: int) -> None:
        gate.wait()
        try:
            for _ in range(calls):
                fn()
                counts[slot] += 1
                if time.perf_counter() > deadline:
                    break
        except BaseException as exc:  # surfaced by the coordinating thread
            failure.append(exc)

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    gate.wait()
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    seconds = time.perf_counter() - start
    if failure:
        raise failure[0]
    return {"value": sum(counts) / seconds, "calls": sum(counts), "seconds": seconds}


def handshake(session: Session, calls: int, max_s: float, **_: Any) -> Result:
    """Median ms of up to ``calls`` full auth handshakes, stopping once ``max_s`` has passed.

    Each handshake gets a fresh client handler, made (and a jwt minted) before timing.
    """
    samples: list[float] = []
    deadline = time.perf_counter() + max_s
    for _ in range(calls):
        handler = session.new_auth_handler()
        start = time.perf_counter()
        session.client.authenticate(handler)
        end = time.perf_counter()
        samples.append((end - start) * 1e3)
        if end > deadline:
            break
    return {"value": statistics.median(samples), "calls": len(samples)}


OPS: dict[str, Callable[..., Result]] = {
    "transfer": transfer,
    "latency": latency,
    "concurrent": concurrent,
    "handshake": handshake,
}
