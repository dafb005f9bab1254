"""Stream readers and writers on both ends of a call.

Client-side readers and writers of flight_secure are exercised against servers of
both implementations; flight_secure's server-side streams (GeneratorStream,
RecordBatchStream, the DoPut reader, the DoExchange writer) against clients of both.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from conftest import IMPLEMENTATIONS, DataServer, connected, plain_table, running_server
from raw_wire import rpc_path

import flight_secure
from flight_secure._generated import flight_pb2 as pb
from flight_secure.framing import FrameDecoder

PLAIN = plain_table()
BATCHES = PLAIN.to_batches()


class StreamServer(DataServer):
    """DataServer plus one mode per server-side stream feature.

    DoGet tickets ``gen:<kind>`` return a GeneratorStream over ``plain_table()``
    yielding tables, readers, batches or (batch, metadata) tuples;
    ``reader-stream`` a RecordBatchStream over a reader; ``endless`` a stream that
    sets its call's ``closed`` event (in ``endless_calls``) when the server
    abandons it. DoPut paths ``read_all``,
    ``to_reader`` and ``read_chunk`` store the upload (under the same name) read
    that way. DoExchange command ``write_table`` answers with ``plain_table()`` in
    batches of 2 rows, preceded by a metadata-only message.
    """

    endless_calls: list[tuple[Any, threading.Event]] = []

    def do_get(self, context: Any, ticket: Any) -> Any:
        name = bytes(ticket.ticket).decode()
        flight = self.flight
        if name == "gen:tables":
            return flight.GeneratorStream(PLAIN.schema, iter([PLAIN.slice(0, 3), PLAIN.slice(3)]))
        if name == "gen:readers":
            reader = pa.RecordBatchReader.from_batches(PLAIN.schema, iter(BATCHES))
            return flight.GeneratorStream(PLAIN.schema, iter([reader]))
        if name == "gen:batches":
            return flight.GeneratorStream(PLAIN.schema, iter(BATCHES))
        if name == "gen:tuples":
            pairs = [(b, f"tuple-{i}".encode()) for i, b in enumerate(BATCHES)]
            return flight.GeneratorStream(PLAIN.schema, iter(pairs))
        if name == "reader-stream":
            return flight.RecordBatchStream(
                pa.RecordBatchReader.from_batches(PLAIN.schema, iter(BATCHES))
            )
        if name == "endless":
            closed = threading.Event()
            self.endless_calls.append((context, closed))
            return flight.GeneratorStream(PLAIN.schema, self._endless(closed))
        return super().do_get(context, ticket)

    def _endless(self, closed: threading.Event) -> Iterator[pa.RecordBatch]:
        try:
            for _ in range(1_000_000):
                yield BATCHES[0]
        finally:
            closed.set()

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        mode = self._name(descriptor)
        if mode == "read_all":
            table = reader.read_all()
        elif mode == "to_reader":
            table = reader.to_reader().read_all()
        elif mode == "read_chunk":
            batches = []
            for _ in range(1000):
                try:
                    batches.append(reader.read_chunk().data)
                except StopIteration:
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema)
        else:
            super().do_put(context, descriptor, reader, writer)
            return
        with self.tables_lock:
            self.tables[mode] = table

    def do_exchange(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        if bytes(descriptor.command) == b"write_table":
            writer.write_metadata(b"before-data")
            writer.begin(PLAIN.schema)
            writer.write_table(PLAIN, max_chunksize=2)
            return
        super().do_exchange(context, descriptor, reader, writer)


@pytest.fixture(scope="module")
def stream_server() -> Iterator[Any]:
    with running_server(flight_secure, StreamServer) as server:
        yield server


@pytest.fixture(scope="module", params=["flight_secure", "pyarrow"])
def any_client(request: pytest.FixtureRequest, stream_server: Any) -> Iterator[tuple]:
    """(module, client) of either implementation, connected to the flight_secure server."""
    flight = flight_secure if request.param == "flight_secure" else pa_flight
    with connected(flight, stream_server) as client:
        yield flight, client


@pytest.fixture(scope="module", params=["fs_data_server", "pa_data_server"])
def fs_client(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A flight_secure client, connected to a DataServer of either implementation."""
    with connected(flight_secure, request.getfixturevalue(request.param)) as client:
        yield client


def _ticket(name: str) -> Any:
    return flight_secure.Ticket(name.encode())


# ------------------------------------------------------------ client-side reading


def test_read_chunk_returns_data_and_app_metadata(fs_client: Any) -> None:
    chunk = fs_client.do_get(_ticket("with-metadata:plain")).read_chunk()
    assert chunk.data.equals(BATCHES[0])
    assert chunk.app_metadata.to_pybytes() == b"meta-0"


def test_read_chunk_without_metadata_has_none(fs_client: Any) -> None:
    chunk = fs_client.do_get(_ticket("plain")).read_chunk()
    assert chunk.app_metadata is None


def test_read_chunk_raises_stop_iteration_at_the_end(fs_client: Any) -> None:
    reader = fs_client.do_get(_ticket("plain"))
    reader.read_chunk()
    reader.read_chunk()
    with pytest.raises(StopIteration):
        reader.read_chunk()


def test_iteration_yields_chunks_with_data_and_metadata(fs_client: Any) -> None:
    chunks = list(fs_client.do_get(_ticket("with-metadata:plain")))
    assert [(c.data.num_rows, c.app_metadata.to_pybytes()) for c in chunks] == [
        (3, b"meta-0"),
        (2, b"meta-1"),
    ]


def test_schema_is_known_before_reading_batches(fs_client: Any) -> None:
    assert fs_client.do_get(_ticket("plain")).schema.equals(PLAIN.schema)


def test_read_all_returns_the_table(fs_client: Any) -> None:
    assert fs_client.do_get(_ticket("plain")).read_all().equals(PLAIN)


def test_read_all_after_read_chunk_returns_the_rest(fs_client: Any) -> None:
    reader = fs_client.do_get(_ticket("plain"))
    reader.read_chunk()
    assert reader.read_all().equals(PLAIN.slice(3))


def test_read_pandas_returns_a_data_frame(fs_client: Any) -> None:
    frame = fs_client.do_get(_ticket("plain")).read_pandas()
    assert frame.equals(PLAIN.to_pandas())


def test_to_reader_returns_a_record_batch_reader(fs_client: Any) -> None:
    reader = fs_client.do_get(_ticket("plain")).to_reader()
    assert isinstance(reader, pa.RecordBatchReader)
    assert reader.read_all().equals(PLAIN)


def test_cancel_ends_the_stream_with_cancelled_error(stream_server: Any) -> None:
    with connected(flight_secure, stream_server) as client:
        reader = client.do_get(_ticket("endless"))
        reader.read_chunk()
        reader.cancel()
        with pytest.raises(flight_secure.FlightCancelledError):
            for _ in range(1_000_000):
                reader.read_chunk()


def test_cancel_closes_the_servers_generator(stream_server: Any) -> None:
    with connected(flight_secure, stream_server) as client:
        reader = client.do_get(_ticket("endless"))
        reader.read_chunk()
        context, closed = StreamServer.endless_calls[-1]
        reader.cancel()
        assert closed.wait(10)
    assert context.is_cancelled()


# ------------------------------------------------------------ client-side writing


def _acks(client: Any, name: str, write: Any) -> list[bytes]:
    writer, reader = client.do_put(flight_secure.FlightDescriptor.for_path(name), PLAIN.schema)
    write(writer)
    writer.done_writing()
    acks = []
    for _ in range(100):
        ack = reader.read()
        if ack is None:
            break
        acks.append(ack.to_pybytes())
    writer.close()
    list(client.do_action(flight_secure.Action("drop", name.encode())))
    return acks


def test_write_table_splits_by_max_chunksize(fs_client: Any) -> None:
    acks = _acks(fs_client, "w-chunks", lambda w: w.write_table(PLAIN, max_chunksize=2))
    assert acks == [b"ack:0:2:", b"ack:1:1:", b"ack:2:2:"]


def test_write_accepts_tables_and_batches(fs_client: Any) -> None:
    def write(writer: Any) -> None:
        writer.write(PLAIN)
        writer.write(BATCHES[1])

    assert _acks(fs_client, "w-write", write) == [b"ack:0:3:", b"ack:1:2:", b"ack:2:2:"]


def test_write_with_metadata_sends_metadata_with_the_batch(fs_client: Any) -> None:
    acks = _acks(fs_client, "w-meta", lambda w: w.write_with_metadata(BATCHES[0], b"m0"))
    assert acks == [b"ack:0:3:m0"]


def test_write_metadata_sends_a_metadata_only_message(fs_client: Any) -> None:
    assert _acks(fs_client, "w-meta-only", lambda w: w.write_metadata(b"alone")) == [
        b"ack:0:-1:alone"
    ]


def test_metadata_reader_returns_none_after_the_last_ack(fs_client: Any) -> None:
    writer, reader = fs_client.do_put(
        flight_secure.FlightDescriptor.for_path("w-none"), PLAIN.schema
    )
    writer.write_table(PLAIN)
    writer.done_writing()
    reader.read()
    reader.read()
    assert reader.read() is None
    writer.close()


def test_writer_as_context_manager_completes_the_upload(fs_client: Any) -> None:
    descriptor = flight_secure.FlightDescriptor.for_path("w-with")
    writer, _ = fs_client.do_put(descriptor, PLAIN.schema)
    with writer:
        writer.write_table(PLAIN)
    stored = fs_client.do_get(_ticket("w-with")).read_all()
    list(fs_client.do_action(flight_secure.Action("drop", b"w-with")))
    assert stored.equals(PLAIN)


def test_write_size_limit_raises_write_size_exceeded(fs_data_server: Any) -> None:
    big = pa.record_batch({"n": pa.array(range(100), pa.int64()), "s": pa.array(["x"] * 100)})
    with connected(flight_secure, fs_data_server, write_size_limit_bytes=400) as client:
        writer, _ = client.do_put(flight_secure.FlightDescriptor.for_path("w-limit"), big.schema)
        with pytest.raises(flight_secure.FlightWriteSizeExceededError) as caught:
            writer.write_batch(big)
        writer.close()
    assert caught.value.limit == 400
    assert caught.value.actual > 400


def test_stream_stays_usable_after_write_size_exceeded(fs_client: Any) -> None:
    big = pa.table({"n": pa.array(range(100), pa.int64()), "s": pa.array(["x"] * 100)})
    client = flight_secure.connect(fs_client.location, write_size_limit_bytes=400)
    writer, _ = client.do_put(flight_secure.FlightDescriptor.for_path("w-after"), big.schema)
    with pytest.raises(flight_secure.FlightWriteSizeExceededError):
        writer.write_table(big)
    writer.write_table(big.slice(0, 2))
    writer.close()
    stored = client.do_get(_ticket("w-after")).read_all()
    list(client.do_action(flight_secure.Action("drop", b"w-after")))
    client.close()
    assert stored.equals(big.slice(0, 2))


def test_exchange_begin_then_write_then_read_back(fs_client: Any) -> None:
    writer, reader = fs_client.do_exchange(flight_secure.FlightDescriptor.for_command(b"echo"))
    writer.begin(PLAIN.schema)
    writer.write_table(PLAIN)
    writer.done_writing()
    echoed = reader.read_all()
    writer.close()
    assert echoed.equals(PLAIN)


# ------------------------------------------------------------ server-side streams

GENERATED = ["gen:tables", "gen:readers", "gen:batches", "gen:tuples", "reader-stream"]


@pytest.mark.parametrize("ticket", GENERATED)
def test_server_stream_delivers_the_table(any_client: tuple, ticket: str) -> None:
    flight, client = any_client
    assert client.do_get(flight.Ticket(ticket.encode())).read_all().equals(PLAIN)


def test_generator_stream_of_tuples_sends_metadata(any_client: tuple) -> None:
    flight, client = any_client
    chunks = list(client.do_get(flight.Ticket(b"gen:tuples")))
    assert [c.app_metadata.to_pybytes() for c in chunks] == [b"tuple-0", b"tuple-1"]


def test_generator_stream_of_tables_keeps_table_boundaries(any_client: tuple) -> None:
    flight, client = any_client
    chunks = list(client.do_get(flight.Ticket(b"gen:tables")))
    assert [c.data.num_rows for c in chunks] == [3, 2]


@pytest.mark.parametrize("mode", ["read_all", "to_reader", "read_chunk"])
def test_server_put_reader_reads_the_upload(any_client: tuple, mode: str) -> None:
    flight, client = any_client
    writer, _ = client.do_put(flight.FlightDescriptor.for_path(mode), PLAIN.schema)
    writer.write_table(PLAIN)
    writer.close()
    stored = client.do_get(flight.Ticket(mode.encode())).read_all()
    list(client.do_action(flight.Action("drop", mode.encode())))
    assert stored.equals(PLAIN)


def _server_exchange(flight: ModuleType, client: Any) -> list[tuple]:
    writer, reader = client.do_exchange(flight.FlightDescriptor.for_command(b"write_table"))
    writer.done_writing()
    chunks = [
        (
            c.data.num_rows if c.data is not None else None,
            c.app_metadata.to_pybytes() if c.app_metadata is not None else None,
        )
        for c in reader
    ]
    writer.close()
    return chunks


def test_server_exchange_writer_sends_metadata_then_chunked_table(any_client: tuple) -> None:
    flight, client = any_client
    assert _server_exchange(flight, client) == [
        (None, b"before-data"),
        (2, None),
        (1, None),
        (2, None),
    ]


class WritesAfterClose:
    """DoExchange sends PLAIN, closes its writer, then tries to write again; what that
    write raised (or None) goes to ``after_close``."""

    flight: ModuleType

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.after_close: queue.Queue = queue.Queue()
        super().__init__(*args, **kwargs)

    def do_exchange(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        writer.begin(PLAIN.schema)
        writer.write_table(PLAIN)
        writer.close()
        try:
            writer.write_table(PLAIN)
        except Exception as exc:
            self.after_close.put(exc)
        else:
            self.after_close.put(None)


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_server_exchange_writer_refuses_writes_after_close(implementation: str) -> None:
    with running_server(IMPLEMENTATIONS[implementation], WritesAfterClose) as server, \
            connected(flight_secure, server) as client:
        writer, reader = client.do_exchange(flight_secure.FlightDescriptor.for_command(b"x"))
        writer.done_writing()
        assert reader.read_all().equals(PLAIN)
        writer.close()
        assert isinstance(server.after_close.get(timeout=10), pa.ArrowInvalid)


class UploadWatcher:
    """DoPut reports how its reader ended: ("ended", chunks) or ("raised", error)."""

    flight: ModuleType
    first_chunk = threading.Event()
    outcome: queue.Queue = queue.Queue()

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        chunks = 0
        try:
            for _ in reader:
                chunks += 1
                self.first_chunk.set()
        except Exception as exc:
            self.outcome.put(("raised", exc))
            raise
        self.outcome.put(("ended", chunks))


def _upload_frames() -> list[bytes]:
    """A DoPut request (descriptor + schema, one batch) as raw FlightData bytes."""
    messages = []
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, PLAIN.schema) as ipc:
        ipc.write_batch(BATCHES[0])
    for message in pa.ipc.MessageReader.open_stream(sink.getvalue()):
        body = message.body.to_pybytes() if message.body is not None else b""
        messages.append(pb.FlightData(data_header=message.metadata.to_pybytes(), data_body=body))
    messages[0].flight_descriptor.CopyFrom(
        pb.FlightDescriptor(type=pb.FlightDescriptor.PATH, path=["cancelled-upload"])
    )
    return [m.SerializeToString() for m in messages]


def test_server_put_reader_raises_cancelled_when_client_cancels_upload() -> None:
    release = threading.Event()

    def requests() -> Iterator[bytes]:
        yield from _upload_frames()
        release.wait(10)

    with running_server(flight_secure, UploadWatcher) as server, grpc.insecure_channel(
        f"localhost:{server.port}"
    ) as channel:
        call = channel.stream_stream(rpc_path("DoPut"))(requests())
        assert UploadWatcher.first_chunk.wait(10)
        call.cancel()
        kind, detail = UploadWatcher.outcome.get(timeout=10)
        release.set()
    assert kind == "raised"
    assert isinstance(detail, flight_secure.FlightCancelledError)


def test_an_exception_that_is_no_flight_error_reaches_the_reader_as_it_is() -> None:
    """Not a FlightError with an empty message: what failed stays visible."""
    def frames() -> Iterator[Any]:
        raise MemoryError()
        yield

    reader = flight_secure.FlightStreamReader(FrameDecoder(frames()), call=None)
    with pytest.raises(MemoryError):
        reader.read_chunk()
