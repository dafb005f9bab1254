"""Arrow streams over Flight: what DoGet handlers return, and the readers and writers.

A DoGet handler returns a :class:`FlightDataStream` (or a Table, batch or reader);
:func:`flight_data_frames` encodes it. Readers (:class:`MetadataRecordBatchReader`,
the client's :class:`FlightStreamReader` and :class:`FlightMetadataReader`) turn
received frames into batches with :class:`~flight_secure.framing.FrameDecoder`;
writers (the server's :class:`MetadataRecordBatchWriter` and
:class:`FlightMetadataWriter`, the client's :class:`FlightStreamWriter`) encode
with :class:`~flight_secure.framing.FrameEncoder` into an
:class:`~flight_secure.outbox.Outbox`, which gives them backpressure.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import grpc
import pyarrow as pa

from flight_secure._generated import flight_pb2 as pb
from flight_secure.errors import (
    FlightCancelledError,
    FlightError,
    FlightInvalidArgumentError,
    FlightWriteSizeExceededError,
    error_from_rpc,
)
from flight_secure.framing import INTERRUPTED, FrameDecoder, FrameEncoder
from flight_secure.outbox import Outbox
from flight_secure.types import to_bytes
from flight_secure.wire import encode_bytes_message, encode_flight_data

# ------------------------------------------------------- what DoGet handlers return


def _batches_of(item: Any, max_chunksize: int | None = None) -> Iterator[pa.RecordBatch]:
    if isinstance(item, pa.RecordBatch):
        yield item
    elif isinstance(item, pa.Table):
        yield from item.to_batches(max_chunksize=max_chunksize)
    elif isinstance(item, pa.RecordBatchReader):
        yield from item
    else:
        raise TypeError(
            f"expected a RecordBatch, Table or RecordBatchReader, not {type(item).__name__}"
        )


class FlightDataStream:
    """What a DoGet handler returns: a schema and a way to produce frames."""

    def schema(self) -> pa.Schema:
        raise NotImplementedError

    def _frames(self) -> Iterator[bytes]:
        raise NotImplementedError


class RecordBatchStream(FlightDataStream):
    """A stream over a Table or RecordBatchReader."""

    def __init__(
        self,
        data_source: pa.Table | pa.RecordBatchReader | pa.RecordBatch,
        options: pa.ipc.IpcWriteOptions | None = None,
    ) -> None:
        if not isinstance(data_source, pa.Table | pa.RecordBatchReader | pa.RecordBatch):
            raise TypeError("RecordBatchStream needs a Table or RecordBatchReader")
        self.data_source = data_source
        self.options = options

    def schema(self) -> pa.Schema:
        return self.data_source.schema

    def _frames(self) -> Iterator[bytes]:
        encoder = FrameEncoder(self.data_source.schema, self.options)
        yield encoder.schema_frame()
        for batch in _batches_of(self.data_source):
            yield from encoder.batch_frames(batch)


#: Items in a row a GeneratorStream's generator may yield that send nothing (empty
#: tables, readers or streams) before the call ends with an error, as in pyarrow.
MAX_EMPTY_ITEMS = 128


class GeneratorStream(FlightDataStream):
    """A stream whose batches come from a generator.

    The generator may yield record batches, tables, readers, other
    ``FlightDataStream`` s, or ``(batch, app_metadata)`` pairs. After
    :data:`MAX_EMPTY_ITEMS` items in a row that send nothing, the call ends with
    RuntimeError (pyarrow's message; the client sees FlightServerError) instead of
    spinning for as long as the generator goes on.
    """

    def __init__(
        self,
        schema: pa.Schema,
        generator: Iterable[Any],
        options: pa.ipc.IpcWriteOptions | None = None,
    ) -> None:
        self._schema = schema
        self.generator = generator
        self.options = options

    def schema(self) -> pa.Schema:
        return self._schema

    def _frames(self) -> Iterator[bytes]:
        encoder = FrameEncoder(self._schema, self.options)
        yield encoder.schema_frame()
        empty_in_a_row = 0
        for item in self.generator:
            metadata = None
            if isinstance(item, tuple | list):
                item, metadata = item
                metadata = to_bytes(metadata) if metadata is not None else None
            if isinstance(item, FlightDataStream):
                item = _stream_source(item)
            if item is None and metadata:
                yield encoder.metadata_frame(metadata)
                empty_in_a_row = 0
                continue
            sent = False
            for batch in _batches_of(item):
                yield from encoder.batch_frames(batch, metadata)
                metadata = None
                sent = True
            empty_in_a_row = 0 if sent else empty_in_a_row + 1
            if empty_in_a_row >= MAX_EMPTY_ITEMS:
                raise RuntimeError(
                    "While getting next payload, ran out of attempts to get something to "
                    "send (application server implementation error)"
                )


def _stream_source(stream: FlightDataStream) -> Any:
    if isinstance(stream, RecordBatchStream):
        return stream.data_source
    if isinstance(stream, GeneratorStream):
        return pa.RecordBatchReader.from_batches(
            stream.schema(), (b for item in stream.generator for b in _batches_of(item))
        )
    raise TypeError(f"cannot nest a {type(stream).__name__} in a GeneratorStream")


def flight_data_frames(value: Any) -> Iterator[bytes]:
    """The FlightData frames of what a DoGet handler returned: a FlightDataStream,
    Table, RecordBatch or RecordBatchReader (TypeError for anything else)."""
    if isinstance(value, pa.Table | pa.RecordBatchReader | pa.RecordBatch):
        value = RecordBatchStream(value)
    if not isinstance(value, FlightDataStream):
        raise TypeError(
            f"do_get must return a FlightDataStream (RecordBatchStream, GeneratorStream), "
            f"not {type(value).__name__}"
        )
    return value._frames()


# -------------------------------------------------------------------- readers


class FlightStreamChunk(NamedTuple):
    """One item of a Flight stream: a batch, its app metadata, or both."""

    data: pa.RecordBatch | None
    app_metadata: pa.Buffer | None


class MetadataRecordBatchReader:
    """Reads a Flight stream: batches with optional app metadata."""

    def __init__(self, decoder: FrameDecoder) -> None:
        self._decoder = decoder

    @property
    def schema(self) -> pa.Schema:
        schema = self._decoder.wait_for_schema()
        if schema is None:
            raise FlightInvalidArgumentError("the stream ended before its schema was sent")
        return schema

    @property
    def stats(self) -> pa.ipc.ReadStats:
        """The IPC read statistics so far (messages, record batches, dictionary
        batches, deltas, replaced dictionaries), as pyarrow's readers report them."""
        return self._decoder.stats

    def read_chunk(self) -> FlightStreamChunk:
        """The next chunk; raises ``StopIteration`` at the end of the stream.

        A failed call raises its Flight error; any other exception is raised as it is.
        """
        batch, metadata = self._decoder.next_chunk()
        return FlightStreamChunk(batch, pa.py_buffer(metadata) if metadata is not None else None)

    def __iter__(self) -> Iterator[FlightStreamChunk]:
        while True:
            try:
                yield self.read_chunk()
            except StopIteration:
                return

    def _batches(self) -> Iterator[pa.RecordBatch]:
        for chunk in self:
            if chunk.data is not None:
                yield chunk.data

    def read_all(self) -> pa.Table:
        """All remaining batches as a Table (metadata-only messages are skipped)."""
        schema = self.schema
        return pa.Table.from_batches(list(self._batches()), schema=schema)

    def read_pandas(self, **options: Any) -> Any:
        return self.read_all().to_pandas(**options)

    def to_reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self._batches())


class FlightStreamReader(MetadataRecordBatchReader):
    """The client's reader for DoGet and DoExchange; ``cancel()`` ends the call."""

    def __init__(self, decoder: FrameDecoder, call: Any) -> None:
        super().__init__(decoder)
        self._call_handle = call

    def cancel(self) -> None:
        """Cancel the call; the server's handler sees it cancelled."""
        self._call_handle.cancel()


class FlightMetadataReader:
    """Reads the server's PutResult metadata during DoPut.

    ``read()`` is None once the call ended, whether it succeeded or failed: as in
    pyarrow, the server's error is raised by the writer's ``close()``, whichever
    thread read the end.
    """

    def __init__(self, responses: Iterator[bytes],
                 on_interrupt: Callable[[], None] | None = None) -> None:
        self._responses = responses
        self._on_interrupt = on_interrupt  # the call's cancel: an interrupted read ends it
        self._buffered: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._done = False
        self._error: FlightError | None = None

    def read(self) -> pa.Buffer | None:
        """The next metadata message; None once the server ended the call."""
        with self._lock:
            raw = self._buffered.popleft() if self._buffered else self._next()
        if raw is None:
            return None
        return pa.py_buffer(pb.PutResult.FromString(raw).app_metadata)

    def _next(self) -> bytes | None:
        """The call's next message (lock held); None at its end, its error kept."""
        if self._done:
            return None
        try:
            return next(self._responses)
        except StopIteration:
            pass
        except FlightError as exc:
            self._error = exc
        except (KeyboardInterrupt, SystemExit):
            # The writer's close() then reports the upload cancelled, never stored.
            self._error = FlightCancelledError(INTERRUPTED)
            self._done = True
            if self._on_interrupt is not None:
                self._on_interrupt()
            raise
        self._done = True
        return None

    def _drain(self) -> None:
        """Read the rest of the call (buffering results); raises the call's error."""
        with self._lock:
            while not self._done:
                raw = self._next()
                if raw is not None:
                    self._buffered.append(raw)
            if self._error is not None:
                raise self._error


# -------------------------------------------------------------------- writers


class _BatchWriter:
    """The write methods of the batch writers (server DoExchange, client DoPut and
    DoExchange); once closed, writing raises FlightInvalidArgumentError."""

    def __init__(self, outbox: Outbox, write_options: pa.ipc.IpcWriteOptions | None) -> None:
        self._outbox = outbox
        self._write_options = write_options
        self._encoder: FrameEncoder | None = None
        self._closed = False

    def _send(self, frame: bytes) -> None:
        if self._closed:
            raise FlightInvalidArgumentError("cannot write: the writer was already closed")
        self._outbox.put(frame)

    def _start(self, schema: pa.Schema, descriptor: bytes | None = None) -> None:
        if self._encoder is not None:
            raise FlightError("the stream was already started with a schema")
        self._encoder = FrameEncoder(schema, self._write_options)
        self._send(self._encoder.schema_frame(descriptor))

    def begin(self, schema: pa.Schema, options: pa.ipc.IpcWriteOptions | None = None) -> None:
        """Start the data stream with ``schema`` (DoExchange)."""
        if options is not None:
            self._write_options = options
        self._start(schema)

    def _require_encoder(self) -> FrameEncoder:
        if self._encoder is None:
            raise FlightError("call begin(schema) before writing batches")
        return self._encoder

    def write_batch(self, batch: pa.RecordBatch) -> None:
        for frame in self._require_encoder().batch_frames(batch):
            self._send(frame)

    def write_table(self, table: pa.Table, max_chunksize: int | None = None) -> None:
        for batch in table.to_batches(max_chunksize=max_chunksize):
            self.write_batch(batch)

    def write(self, table_or_batch: pa.Table | pa.RecordBatch) -> None:
        if isinstance(table_or_batch, pa.Table):
            self.write_table(table_or_batch)
        else:
            self.write_batch(table_or_batch)

    def write_with_metadata(self, batch: pa.RecordBatch, buf: Any) -> None:
        for frame in self._require_encoder().batch_frames(batch, to_bytes(buf)):
            self._send(frame)

    def write_metadata(self, buf: Any) -> None:
        self._send(FrameEncoder.metadata_frame(to_bytes(buf)))


class MetadataRecordBatchWriter(_BatchWriter):
    """The server's writer in DoExchange."""

    def close(self) -> None:
        """Write no more; later writes raise. The stream ends when the handler returns."""
        self._closed = True


class FlightMetadataWriter:
    """The server's writer of PutResult metadata in DoPut."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def write(self, message: Any) -> None:
        """Send one PutResult carrying ``message`` as its app metadata."""
        self._outbox.put(encode_bytes_message(to_bytes(message)))


class FlightStreamWriter(_BatchWriter):
    """The client's writer for DoPut and DoExchange.

    Its first frame carries the call's descriptor: with the schema for DoPut
    (``schema`` given), alone for DoExchange, whose schema comes with ``begin``.
    A frame over ``size_limit`` bytes raises FlightWriteSizeExceededError; once
    the server ends the call, writing raises its error.
    """

    def __init__(
        self,
        outbox: Outbox,
        call: Any,
        write_options: pa.ipc.IpcWriteOptions | None,
        size_limit: int | None,
        descriptor: bytes,
        schema: pa.Schema | None = None,
        put_reader: FlightMetadataReader | None = None,
    ) -> None:
        super().__init__(outbox, write_options)
        self._call = call
        self._size_limit = size_limit
        self._put_reader = put_reader
        self._done_writing = False
        call.add_done_callback(self._on_call_done)
        if schema is None:
            self._send(encode_flight_data(None, descriptor=descriptor))
        else:
            self._start(schema, descriptor)

    def _on_call_done(self, call: Any) -> None:
        if call.code() == grpc.StatusCode.OK:
            self._outbox.fail(FlightError("the server already finished the call"))
        else:
            self._outbox.fail(error_from_rpc(call))

    def _send(self, frame: bytes) -> None:
        limit = self._size_limit
        if limit is not None and len(frame) > limit:
            raise FlightWriteSizeExceededError(
                "IPC payload size exceeded soft limit", limit, len(frame)
            )
        super()._send(frame)

    def done_writing(self) -> None:
        """Tell the server the client has nothing more to send."""
        if not self._done_writing:
            self._done_writing = True
            self._outbox.close()

    def close(self) -> None:
        """Finish writing and wait for the server to end the call; raises its error."""
        self.done_writing()
        self._closed = True
        if self._put_reader is not None:
            self._put_reader._drain()
            return
        try:
            self._call.result()
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        except grpc.FutureCancelledError:
            return
        except (KeyboardInterrupt, SystemExit):
            self._call.cancel()
            raise

    def __enter__(self) -> FlightStreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
