"""FrameEncoder: each batch's FlightData, by Arrow's one-call serialization for small
fixed-width batches and by the streaming writer otherwise, reads back exactly."""

from __future__ import annotations

import pyarrow as pa
import pytest

from flight_secure.framing import FrameDecoder, decode_flight_data
from flight_secure.streams import FrameEncoder

FIXED = pa.record_batch(
    {
        "i": pa.array([1, None, 3], pa.int64()),
        "f": pa.array([0.5, 1.5, None], pa.float32()),
        "b": pa.array([True, False, None]),
        "t": pa.array([1, 2, 3], pa.timestamp("us")),
    }
)
VARIABLE = pa.record_batch({"s": ["a", None, "ccc"], "l": [[1], [], None]})


def frames_of(encoder: FrameEncoder, batches: list[pa.RecordBatch]) -> list[bytes]:
    frames = [encoder.schema_frame()]
    for batch in batches:
        frames += encoder.batch_frames(batch, app_metadata=b"m")
    return frames


def read_back(frames: list[bytes]) -> list[tuple[pa.RecordBatch, bytes | None]]:
    decoder = FrameDecoder(iter([decode_flight_data(frame) for frame in frames]))
    chunks = []
    while True:
        try:
            chunks.append(decoder.next_chunk())
        except StopIteration:
            return chunks


def writer_frames(batch: pa.RecordBatch) -> list[bytes]:
    """The same batch through the streaming writer only (the path for big batches)."""
    encoder = FrameEncoder(batch.schema)
    encoder._row_bytes = None
    return frames_of(encoder, [batch])


@pytest.mark.parametrize(
    "batches",
    [[FIXED], [FIXED.slice(1, 2), FIXED.slice(0, 1)], [VARIABLE], [VARIABLE.slice(1)]],
    ids=["fixed", "fixed-slices", "variable", "variable-slice"],
)
def test_batches_and_metadata_read_back_exactly(batches: list[pa.RecordBatch]) -> None:
    chunks = read_back(frames_of(FrameEncoder(batches[0].schema), batches))
    assert [batch for batch, _ in chunks] == batches
    assert [bytes(metadata) for _, metadata in chunks] == [b"m"] * len(batches)


def test_small_fixed_width_frames_are_the_bytes_the_streaming_writer_makes() -> None:
    encoder = FrameEncoder(FIXED.schema)
    assert encoder._row_bytes is not None
    assert frames_of(encoder, [FIXED]) == writer_frames(FIXED)


def test_big_batches_and_variable_width_columns_use_the_streaming_writer() -> None:
    assert FrameEncoder(VARIABLE.schema)._row_bytes is None
    big = pa.record_batch({"i": pa.array(range(100_000), pa.int64())})
    frames = frames_of(FrameEncoder(big.schema), [big])
    assert frames == writer_frames(big)
    assert read_back(frames)[0][0] == big


def test_write_options_are_honoured() -> None:
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    encoder = FrameEncoder(FIXED.schema, options)
    assert encoder._row_bytes is None
    frames = frames_of(encoder, [FIXED])
    assert frames != writer_frames(FIXED)
    assert read_back(frames)[0][0] == FIXED


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
    assert FrameEncoder(batch.schema)._row_bytes is None
    frames = frames_of(FrameEncoder(batch.schema), [batch])
    assert len(frames) == 3  # schema, dictionary, batch
    column = read_back(frames)[0][0].column(0)  # the type is not registered: its storage
    assert column.to_pylist() == ["x", "y", "x"]


def test_big_batches_do_not_take_the_one_call_path(monkeypatch) -> None:
    def refuse(*args):
        raise AssertionError("a big batch went through RecordBatch.serialize")

    monkeypatch.setattr("flight_secure.streams._serialized_frame", refuse)
    big = pa.record_batch({"i": pa.array(range(100_000), pa.int64())})
    assert read_back(frames_of(FrameEncoder(big.schema), [big]))[0][0] == big
