"""Properties of the data plane's decoder on arbitrary and on damaged bytes.

* :func:`~flight_secure.wire.decode_flight_data` never raises, whatever the bytes;
  what it reads back from :func:`~flight_secure.wire.encode_flight_data` is exact.
* :class:`~flight_secure.framing.FrameDecoder` raises nothing but
  FlightInvalidArgumentError (and StopIteration at the end), and every batch it
  hands out is valid in full (``RecordBatch.validate(full=True)``): a handler can
  read the values without reading out of bounds.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flight_secure.errors import FlightInvalidArgumentError
from flight_secure.framing import FrameDecoder
from flight_secure.wire import Frame, decode_flight_data, encode_flight_data

from .conftest import (
    QUICK,
    crafted_string_offsets,
    dictionary_id_mismatch,
    mutated_streams,
    quick_and_long,
)

#: Chunks a decoder may hand out before the test stops reading (a bound, not a limit).
MAX_CHUNKS = 64

random_frames = st.lists(st.binary(max_size=512), max_size=5)


def decode_all(frames: list[bytes]) -> list[pa.RecordBatch]:
    """Feed ``frames`` to a FrameDecoder; the batches it yields, or its Flight error."""
    decoder = FrameDecoder(iter([decode_flight_data(frame) for frame in frames]))
    batches = []
    for _ in range(MAX_CHUNKS):
        try:
            batch, _ = decoder.next_chunk()
        except StopIteration:
            break
        if batch is not None:
            batches.append(batch)
    return batches


def check_decode_never_raises(raw: bytes) -> None:
    """decode_flight_data returns a Frame for any bytes; a bad one carries only ``error``."""
    frame = decode_flight_data(raw)
    assert isinstance(frame, Frame)
    if frame.error is not None:
        assert frame.descriptor is frame.header is frame.body is frame.app_metadata is None


def check_decoder_raises_only_flight_errors(frames: list[bytes]) -> None:
    """FrameDecoder raises nothing but FlightInvalidArgumentError (StopIteration at the end)."""
    try:
        decode_all(frames)
    except FlightInvalidArgumentError:
        return


def check_decoder_hands_out_only_valid_batches(frames: list[bytes]) -> None:
    """Every batch FrameDecoder hands out passes ``validate(full=True)``."""
    try:
        batches = decode_all(frames)
    except FlightInvalidArgumentError:
        return
    for batch in batches:
        try:
            batch.validate(full=True)
        except pa.ArrowInvalid as exc:
            pytest.fail(f"FrameDecoder handed out an invalid batch: {exc}")


test_decode_flight_data_never_raises, test_decode_flight_data_never_raises_long = \
    quick_and_long(check_decode_never_raises, raw=st.binary(max_size=2048))
test_decoder_on_random_frames_raises_only_flight_errors, \
    test_decoder_on_random_frames_raises_only_flight_errors_long = quick_and_long(
        check_decoder_raises_only_flight_errors, frames=random_frames)
test_decoder_on_damaged_streams_raises_only_flight_errors, \
    test_decoder_on_damaged_streams_raises_only_flight_errors_long = quick_and_long(
        check_decoder_raises_only_flight_errors, examples=[{"frames": dictionary_id_mismatch()}],
        frames=mutated_streams())
test_decoder_hands_out_only_valid_batches, test_decoder_hands_out_only_valid_batches_long = \
    quick_and_long(check_decoder_hands_out_only_valid_batches,
                   examples=[{"frames": crafted_string_offsets(100_000_000)},
                             {"frames": crafted_string_offsets(-5)}],
                   frames=mutated_streams())


@QUICK
@given(header=st.binary(max_size=300), body=st.binary(max_size=300),
       app_metadata=st.binary(max_size=100), descriptor=st.binary(max_size=100))
def test_decode_reads_back_exactly_what_encode_wrote(header: bytes, body: bytes,
                                                     app_metadata: bytes,
                                                     descriptor: bytes) -> None:
    raw = encode_flight_data(header, [body], len(body), app_metadata, descriptor)
    frame = decode_flight_data(raw)
    assert frame.error is None
    assert bytes(frame.header or b"") == header
    assert bytes(frame.body or b"") == body
    assert (frame.app_metadata or b"") == app_metadata
    assert bytes(frame.descriptor or b"") == descriptor
