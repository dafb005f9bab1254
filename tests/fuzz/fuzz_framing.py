"""Atheris harness: the FlightData decoder on arbitrary bytes.

Properties (a violation is a crash that atheris reports with the input it saved):

* ``decode_flight_data(raw)`` never raises and returns a ``Frame``;
* ``FrameDecoder`` over such frames raises nothing but ``FlightInvalidArgumentError``
  (and ``StopIteration`` at the end of the stream);
* every batch ``FrameDecoder`` hands out passes ``RecordBatch.validate(full=True)``.

The first input byte picks one of two modes. Even: the rest is a sequence of
frames, each prefixed with its length (2 bytes, little endian); without a corpus
directory argument the harness seeds one with valid uploads in this format. Odd:
the rest drives edits (byte flips, int32/int64 overwrites, truncations, dropped or
repeated frames) of a valid upload with strings, lists, a struct and a dictionary
column, so that damage lands deep inside the Arrow IPC format. Run (see README.md)::

    python tests/fuzz/fuzz_framing.py -runs=100000
"""

from __future__ import annotations

import struct
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["flight_secure"]):
    import pyarrow as pa

    from flight_secure._generated import flight_pb2 as pb
    from flight_secure.errors import FlightInvalidArgumentError
    from flight_secure.framing import FrameDecoder
    from flight_secure.wire import Frame, decode_flight_data

MAX_CHUNKS = 64


def split_frames(data: bytes) -> list[bytes]:
    """Undo the input format: 2-byte little-endian length, then that many bytes."""
    frames, position = [], 0
    while position + 2 <= len(data):
        (length,) = struct.unpack_from("<H", data, position)
        frames.append(data[position + 2:position + 2 + length])
        position += 2 + length
    return frames


def join_frames(frames: list[bytes]) -> bytes:
    return b"".join(struct.pack("<H", len(frame)) + frame for frame in frames)


def edited_upload(data: bytes) -> list[bytes]:
    """A valid upload edited as ``data`` directs."""
    provider = atheris.FuzzedDataProvider(data)
    frames = [bytearray(frame) for frame in UPLOAD]
    for _ in range(provider.ConsumeIntInRange(1, 4)):
        index = provider.ConsumeIntInRange(0, len(frames) - 1)
        frame = frames[index]
        operation = provider.ConsumeIntInRange(0, 5)
        position = int(provider.ConsumeProbability() * max(0, len(frame) - 8))
        if operation == 0 and frame:
            frame[position] = provider.ConsumeInt(1) & 0xFF
        elif operation == 1 and len(frame) >= position + 4:
            struct.pack_into("<i", frame, position, provider.ConsumeInt(4))
        elif operation == 2 and len(frame) >= position + 8:
            struct.pack_into("<q", frame, position, provider.ConsumeInt(8))
        elif operation == 3:
            del frame[position:]
        elif operation == 4 and len(frames) > 1:
            del frames[index]
        elif operation == 5:
            frames.insert(index, bytearray(frame))
    return [bytes(frame) for frame in frames]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    raws = edited_upload(data[1:]) if data[0] % 2 else split_frames(data[1:])
    frames = []
    for raw in raws:
        frame = decode_flight_data(raw)
        if not isinstance(frame, Frame):
            raise AssertionError(f"decode_flight_data returned {type(frame).__name__}")
        frames.append(frame)
    decoder = FrameDecoder(iter(frames))
    try:
        for _ in range(MAX_CHUNKS):
            batch, _ = decoder.next_chunk()
            if batch is not None:
                batch.validate(full=True)  # ArrowInvalid here is a finding: it escapes
    except (StopIteration, FlightInvalidArgumentError):
        return


def upload_frames(table: pa.Table) -> list[bytes]:
    """The FlightData messages of a DoPut of ``table``."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    frames = []
    for index, message in enumerate(pa.ipc.MessageReader.open_stream(sink.getvalue())):
        data = pb.FlightData(data_header=message.metadata.to_pybytes(),
                             data_body=message.body.to_pybytes() if message.body else b"")
        if index == 0:
            data.flight_descriptor.CopyFrom(
                pb.FlightDescriptor(type=pb.FlightDescriptor.PATH, path=["seed"]))
        frames.append(data.SerializeToString())
    return frames


UPLOAD = upload_frames(pa.table({
    "s": ["abc", "de", None, "fghij"],
    "l": pa.array([[1, 2], [3], [], None], pa.list_(pa.int32())),
    "st": pa.array([{"x": 1}, {"x": 2}, None, {"x": 4}], pa.struct([("x", pa.int8())])),
    "d": pa.array(["x", "y", "x", "z"]).dictionary_encode(),
}))


def seed_uploads() -> list[bytes]:
    """Valid DoPut streams in the frame-sequence mode of the input format."""
    tables = [
        pa.table({"s": ["abc", "de", None], "i": pa.array([1, 2, 3], pa.int64())}),
        pa.table({"l": pa.array([[1, 2], [], None], pa.list_(pa.int32())),
                  "d": pa.array(["x", "y", "x"]).dictionary_encode()}),
    ]
    return [b"\x00" + join_frames(upload_frames(table)) for table in tables]


def main() -> None:
    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="fuzz-framing-"))
        for number, seed in enumerate(seed_uploads()):
            (corpus / f"seed-{number}").write_bytes(seed)
        argv.append(str(corpus))
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
