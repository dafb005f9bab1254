"""Shared fixtures: free ports, sample tables, and servers from either implementation.

Servers are written once, as a *behaviour* class (plain methods, no base class),
and run on ``flight_secure`` or on ``pyarrow.flight`` with :func:`server_class` /
:func:`running_server`. A behaviour reaches its implementation's types through
``self.flight`` (the module it runs on), so the same code builds a
``RecordBatchStream`` or a ``FlightInfo`` of the right kind on each side.

Secured servers run on either *engine* (:data:`ENGINES`, the ``engine`` fixture):
flight_secure's own, or pyarrow.flight's with ``flight_secure.arrow``. Their
behaviours read the caller with ``flight_secure.arrow.principal(context)``, which
works on both.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest

import flight_secure
import flight_secure.arrow

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

#: The two implementations, by the name tests use in ids.
IMPLEMENTATIONS: dict[str, ModuleType] = {"flight_secure": flight_secure, "pyarrow": pa_flight}


# --------------------------------------------------------------------- addresses


def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def free_location() -> str:
    """A ``grpc://localhost:<port>`` URI on a port that is free right now."""
    return f"grpc://localhost:{free_port()}"


def location_of(server: Any) -> str:
    """The URI a client on localhost dials to reach ``server`` (either implementation)."""
    return f"grpc://localhost:{server.port}"


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` (for states no event announces) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.01)


# -------------------------------------------------------------------------- data


def sample_table(rows: int = 5) -> pa.Table:
    """A table with int, float, string, nested, dictionary and empty (null) columns."""
    ints = list(range(rows))
    return pa.table(
        {
            "i64": pa.array(ints, pa.int64()),
            "f64": pa.array([i * 0.5 for i in ints], pa.float64()),
            "s": pa.array([f"row-{i}" for i in ints], pa.string()),
            "nested": pa.array(
                [{"a": i, "tags": [str(i)] * (i % 3)} for i in ints],
                pa.struct([("a", pa.int32()), ("tags", pa.list_(pa.string()))]),
            ),
            "dict": pa.array([["red", "green", "blue"][i % 3] for i in ints]).dictionary_encode(),
            "empty": pa.nulls(rows, pa.null()),
        }
    )


def wide_types_table(rows: int = 4) -> pa.Table:
    """One column per type family the wire must carry unchanged."""
    ints = list(range(rows))
    base = dt.datetime(2024, 2, 29, 12, 30, tzinfo=dt.timezone.utc)
    return pa.table(
        {
            "int8": pa.array(ints, pa.int8()),
            "uint64": pa.array(ints, pa.uint64()),
            "f32": pa.array([i / 3 for i in ints], pa.float32()),
            "bool": pa.array([i % 2 == 0 for i in ints]),
            "string": pa.array([f"s{i}" if i % 2 else None for i in ints], pa.string()),
            "large_string": pa.array(["é" * i for i in ints], pa.large_string()),
            "binary": pa.array([bytes([i]) * i for i in ints], pa.binary()),
            "large_binary": pa.array([b"\x00" * i for i in ints], pa.large_binary()),
            "ts_us_utc": pa.array(
                [base + dt.timedelta(seconds=i) for i in ints], pa.timestamp("us", tz="UTC")
            ),
            "ts_ns": pa.array([i * 10**9 for i in ints], pa.timestamp("ns")),
            "date": pa.array([dt.date(2024, 1, 1 + i) for i in ints], pa.date32()),
            "decimal": pa.array([Decimal(i) / 4 for i in ints], pa.decimal128(12, 2)),
            "list_int": pa.array([list(range(i)) for i in ints], pa.list_(pa.int32())),
            "struct": pa.array(
                [{"x": i, "y": {"z": f"z{i}"}} for i in ints],
                pa.struct([("x", pa.int64()), ("y", pa.struct([("z", pa.string())]))]),
            ),
            "map": pa.array([[("k", i)] for i in ints], pa.map_(pa.string(), pa.int64())),
            "dict_int_keys": pa.DictionaryArray.from_arrays(
                pa.array([i % 2 for i in ints], pa.int8()), pa.array(["even", "odd"])
            ),
            "nulls": pa.nulls(rows, pa.null()),
        }
    )


def plain_table() -> pa.Table:
    """Two batches (3 and 2 rows) without dictionary columns.

    pyarrow.flight's GeneratorStream sends no dictionary batches, so streams that a
    GeneratorStream produces on either implementation use this table.
    """
    first = pa.table({"n": pa.array([1, 2, 3]), "s": pa.array(["a", "b", None])})
    second = pa.table({"n": pa.array([4, 5]), "s": pa.array(["d", "e"])})
    return pa.concat_tables([first, second])


def empty_table() -> pa.Table:
    """A table with the sample schema and no rows."""
    return sample_table(0)


def large_table(megabytes: int = 20) -> pa.Table:
    """One record batch of about ``megabytes`` MB: far above gRPC's 4 MiB default."""
    rows = megabytes * 1024 * 1024 // 8
    return pa.table({"v": pa.array(np.arange(rows, dtype=np.int64))})


# ------------------------------------------------------------------------ servers


def server_class(flight: ModuleType, behaviour: type) -> type:
    """``behaviour`` mixed into ``flight.FlightServerBase``; ``self.flight`` is ``flight``."""
    return type(
        f"{behaviour.__name__}On{flight.__name__.replace('.', '_')}",
        (behaviour, flight.FlightServerBase),
        {"flight": flight},
    )


def start_server(flight: ModuleType, behaviour: type, **kwargs: Any) -> Any:
    """Start ``behaviour`` on ``flight`` at a free localhost port; returns the server."""
    cls = server_class(flight, behaviour)
    kwargs.setdefault("location", "grpc://localhost:0")
    return cls(**kwargs)


@contextlib.contextmanager
def running_server(flight: ModuleType, behaviour: type, **kwargs: Any) -> Iterator[Any]:
    """A started server for the duration of the block; always shut down afterwards."""
    server = start_server(flight, behaviour, **kwargs)
    try:
        yield server
    finally:
        server.shutdown()


@contextlib.contextmanager
def connected(flight: ModuleType, server: Any, **kwargs: Any) -> Iterator[Any]:
    """A ``flight`` client connected to ``server``; closed afterwards."""
    client = flight.connect(location_of(server), **kwargs)
    try:
        yield client
    finally:
        client.close()


class DataServer:
    """A behaviour serving every Flight RPC over named tables (mix in with server_class).

    * ListFlights: a FlightInfo per table whose name starts with the criteria.
    * GetFlightInfo / PollFlightInfo / GetSchema: by path or command naming a table;
      an unknown name raises KeyError (NOT_FOUND).
    * DoGet: ticket ``<name>`` streams that table; ``schema-only:<name>`` sends its
      schema and no batch; ``with-metadata:<name>`` pairs batch i with ``meta-<i>``
      (use ``plain``: see :func:`plain_table`).
    * DoPut: stores the upload under the descriptor's name and acks every chunk with
      ``ack:<index>:<rows>:<app_metadata>``.
    * DoExchange: echoes batches (with their metadata) and answers a metadata-only
      message ``m`` with ``echo:m``.
    * DoAction: ``echo`` (body back), ``count`` (body ``n`` -> results 0..n-1),
      ``whoami`` (the peer identity), ``drop`` (forget the table named by the body).
    """

    flight: ModuleType

    ACTIONS = (("echo", "return the body"), ("count", "results 0..n-1"),
               ("whoami", "the caller's identity"), ("drop", "forget a table"))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.tables: dict[str, pa.Table] = {
            "sample": sample_table(),
            "wide": wide_types_table(),
            "empty": empty_table(),
            "chunked": pa.concat_tables([sample_table(3), sample_table(2)]),
            "large": large_table(),
            "plain": plain_table(),
        }
        self.tables_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _table(self, name: str) -> pa.Table:
        with self.tables_lock:
            return self.tables[name]

    @staticmethod
    def _name(descriptor: Any) -> str:
        if descriptor.path:
            return b"/".join(descriptor.path).decode()
        return bytes(descriptor.command).decode()

    def _info(self, name: str, descriptor: Any = None) -> Any:
        flight = self.flight
        table = self._table(name)
        endpoint = flight.FlightEndpoint(
            name.encode(), [flight.Location(f"grpc+tcp://localhost:{self.port}")]
        )
        return flight.FlightInfo(
            table.schema,
            descriptor or flight.FlightDescriptor.for_path(name),
            [endpoint],
            table.num_rows,
            table.nbytes,
        )

    def list_flights(self, context: Any, criteria: bytes) -> Iterator[Any]:
        prefix = bytes(criteria).decode()
        with self.tables_lock:
            names = sorted(n for n in self.tables if n.startswith(prefix))
        for name in names:
            yield self._info(name)

    def get_flight_info(self, context: Any, descriptor: Any) -> Any:
        return self._info(self._name(descriptor), descriptor)

    def poll_flight_info(self, context: Any, descriptor: Any) -> Any:
        return self.flight.PollInfo(self._info(self._name(descriptor), descriptor), None, 1.0)

    def get_schema(self, context: Any, descriptor: Any) -> Any:
        return self.flight.SchemaResult(self._table(self._name(descriptor)).schema)

    def do_get(self, context: Any, ticket: Any) -> Any:
        name = bytes(ticket.ticket).decode()
        mode, _, rest = name.partition(":")
        if mode == "schema-only":
            return self.flight.GeneratorStream(self._table(rest).schema, iter(()))
        if mode == "with-metadata":
            batches = self._table(rest).to_batches()
            pairs = ((b, f"meta-{i}".encode()) for i, b in enumerate(batches))
            return self.flight.GeneratorStream(self._table(rest).schema, pairs)
        return self.flight.RecordBatchStream(self._table(name))

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        batches = []
        for index, chunk in enumerate(reader):
            rows = chunk.data.num_rows if chunk.data is not None else -1
            meta = chunk.app_metadata.to_pybytes() if chunk.app_metadata is not None else b""
            writer.write(f"ack:{index}:{rows}:".encode() + meta)
            if chunk.data is not None:
                batches.append(chunk.data)
        table = pa.Table.from_batches(batches, schema=reader.schema)
        with self.tables_lock:
            self.tables[self._name(descriptor)] = table

    def do_exchange(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        begun = False
        for chunk in reader:
            if chunk.data is None:
                writer.write_metadata(b"echo:" + chunk.app_metadata.to_pybytes())
                continue
            if not begun:
                writer.begin(reader.schema)
                begun = True
            if chunk.app_metadata is not None:
                writer.write_with_metadata(chunk.data, chunk.app_metadata)
            else:
                writer.write_batch(chunk.data)

    def do_action(self, context: Any, action: Any) -> Iterator[Any]:
        body = action.body.to_pybytes()
        if action.type == "echo":
            yield self.flight.Result(body)
        elif action.type == "count":
            for i in range(int(body)):
                yield self.flight.Result(str(i).encode())
        elif action.type == "whoami":
            yield self.flight.Result(context.peer_identity())
        elif action.type == "drop":
            with self.tables_lock:
                del self.tables[body.decode()]
        else:
            raise NotImplementedError(f"unknown action {action.type!r}")

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        return list(self.ACTIONS)


@dataclass(frozen=True)
class Engine:
    """A server engine secured servers run on in tests.

    ``flight`` is the module whose ``FlightServerBase`` and value types the
    server uses; ``knows_peers`` says whether the audit log and the login throttle
    see the client's address, ``sees_certificates`` whether handlers see the client
    certificate (pyarrow's engine shows Python neither).
    """

    name: str
    flight: ModuleType
    knows_peers: bool
    sees_certificates: bool

    def start(self, behaviour: type, *, auth_handler: Any = None, authorizer: Any = None,
              **options: Any) -> Any:
        """Start ``behaviour`` secured by ``auth_handler`` and ``authorizer``.

        ``options`` are FlightServerBase keywords both engines take (location,
        tls_certificates, verify_client, root_certificates, middleware).
        """
        options.setdefault("location", "grpc://localhost:0")
        cls = server_class(self.flight, behaviour)
        if self.flight is flight_secure:
            return cls(auth_handler=auth_handler, authorizer=authorizer, **options)
        return cls(**flight_secure.arrow.server_options(auth_handler, authorizer, **options))

    @contextlib.contextmanager
    def running(self, behaviour: type, **kwargs: Any) -> Iterator[Any]:
        """:meth:`start`, for the duration of the block; always shut down afterwards."""
        server = self.start(behaviour, **kwargs)
        try:
            yield server
        finally:
            server.shutdown()


#: The engines, by the name tests use in ids.
ENGINES: dict[str, Engine] = {
    "python": Engine("python", flight_secure, knows_peers=True, sees_certificates=True),
    "arrow": Engine("arrow", pa_flight, knows_peers=False, sees_certificates=False),
}


@pytest.fixture(scope="module", params=list(ENGINES))
def engine(request: pytest.FixtureRequest) -> Engine:
    """Each engine in turn (module scope, so module fixtures may start servers on it)."""
    return ENGINES[request.param]


@pytest.fixture(scope="session")
def fs_data_server() -> Iterator[Any]:
    """A flight_secure DataServer shared by the session (tests use their own table names)."""
    with running_server(flight_secure, DataServer) as server:
        yield server


@pytest.fixture(scope="session")
def pa_data_server() -> Iterator[Any]:
    """A pyarrow.flight DataServer shared by the session."""
    with running_server(pa_flight, DataServer) as server:
        yield server


@pytest.fixture
def table() -> pa.Table:
    return sample_table()
