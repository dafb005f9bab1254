"""FrameEncoder: each batch's FlightData is its IPC message, byte for byte, and reads back.

The reference is Arrow's own stream writer: each IPC message it writes, laid out
as a FlightData (header, body), is what the encoder must send, whichever way it
serializes the batch.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from flight_secure.errors import FlightInvalidArgumentError
from flight_secure.framing import FrameDecoder, FrameEncoder
from flight_secure.wire import decode_flight_data, encode_flight_data

FIXED = pa.record_batch(
    {
        "i": pa.array([1, None, 3], pa.int64()),
        "f": pa.array([0.5, 1.5, None], pa.float32()),
        "b": pa.array([True, False, None]),
        "t": pa.array([1, 2, 3], pa.timestamp("us")),
    }
)
VARIABLE = pa.record_batch({"s": ["a", None, "ccc"], "l": [[1], [], None]})
BIG = pa.record_batch({"i": pa.array(range(100_000), pa.int64())})


def frames_of(encoder: FrameEncoder, batches: list[pa.RecordBatch]) -> list[bytes]:
    frames = [encoder.schema_frame()]
    for batch in batches:
        frames += encoder.batch_frames(batch, app_metadata=b"m")
    return frames


def arrows_frames(batches: list[pa.RecordBatch],
                  options: pa.ipc.IpcWriteOptions | None = None) -> list[bytes]:
    """The same stream as Arrow writes it, each message laid out as a FlightData."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batches[0].schema, options=options) as writer:
        for batch in batches:
            writer.write_batch(batch)
    frames = []
    for message in pa.ipc.MessageReader.open_stream(sink.getvalue()):
        body = message.body.to_pybytes() if message.body is not None else b""
        metadata = b"m" if message.type == "record batch" else None
        frames.append(encode_flight_data(message.metadata.to_pybytes(), (body,), len(body),
                                         metadata))
    return frames


def read_back(frames: list[bytes]) -> list[tuple[pa.RecordBatch, bytes | None]]:
    decoder = FrameDecoder(iter([decode_flight_data(frame) for frame in frames]))
    chunks = []
    while True:
        try:
            chunks.append(decoder.next_chunk())
        except StopIteration:
            return chunks


BATCHES = {
    "fixed": [FIXED],
    "fixed-slices": [FIXED.slice(1, 2), FIXED.slice(0, 1)],
    "variable": [VARIABLE],
    "variable-slice": [VARIABLE.slice(1)],
    "big": [BIG],
}


@pytest.mark.parametrize("case", sorted(BATCHES))
def test_batches_and_metadata_read_back_exactly(case: str) -> None:
    batches = BATCHES[case]
    chunks = read_back(frames_of(FrameEncoder(batches[0].schema), batches))
    assert [batch for batch, _ in chunks] == batches
    assert [bytes(metadata) for _, metadata in chunks] == [b"m"] * len(batches)


@pytest.mark.parametrize("case", sorted(BATCHES))
def test_frames_are_the_ipc_messages_arrow_writes(case: str) -> None:
    batches = BATCHES[case]
    assert frames_of(FrameEncoder(batches[0].schema), batches) == arrows_frames(batches)


def test_write_options_are_honoured() -> None:
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    frames = frames_of(FrameEncoder(FIXED.schema, options), [FIXED])
    assert frames == arrows_frames([FIXED], options)
    assert frames != arrows_frames([FIXED])
    assert read_back(frames)[0][0] == FIXED


def test_a_batch_of_another_schema_is_refused() -> None:
    with pytest.raises(FlightInvalidArgumentError, match="does not match the stream's schema"):
        FrameEncoder(FIXED.schema).batch_frames(VARIABLE)


class DictionaryBacked(pa.ExtensionType):
    """An extension type whose storage is dictionary-encoded (needs a dictionary batch)."""

    def __init__(self) -> None:
        super().__init__(pa.dictionary(pa.int8(), pa.string()), "test.dictionary_backed")

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):
        return cls()


def test_extension_types_over_dictionaries_keep_their_dictionary() -> None:
    storage = pa.array(["x", "y", "x"]).dictionary_encode().cast(
        pa.dictionary(pa.int8(), pa.string())
    )
    batch = pa.record_batch({"e": pa.ExtensionArray.from_storage(DictionaryBacked(), storage)})
    frames = frames_of(FrameEncoder(batch.schema), [batch])
    assert len(frames) == 3  # schema, dictionary, batch
    column = read_back(frames)[0][0].column(0)  # the type is not registered: its storage
    assert column.to_pylist() == ["x", "y", "x"]
