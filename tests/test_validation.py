"""validation.validate_batch refuses exactly what Arrow's full validation refuses.

Every received batch is validated before a handler sees it; string columns
without nulls take a faster path (one UTF-8 decode of the column's bytes plus a
check that no string starts inside a character). These tests hold that path to
``RecordBatch.validate(full=True)`` as the oracle, on arbitrary bytes and offsets.
"""

from __future__ import annotations

import struct

import pyarrow as pa
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from flight_secure.validation import validate_batch

TEXT_BYTES = st.sampled_from(
    [b"a", b"z", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xed\xa0\x80",
     b"\xc0\xaf", b"\xff", b"\x80", b"\xc3", b"\xf4\x90\x80\x80", b""]
)


def string_batch(data: bytes, offsets: list[int], large: bool,
                 valid: list[bool] | None = None) -> pa.RecordBatch:
    """A one-column batch built from raw buffers (no checks on the way in)."""
    data_type = pa.large_string() if large else pa.string()
    packed = struct.pack(f"<{len(offsets)}{'q' if large else 'i'}", *offsets)
    bitmap = None
    if valid is not None:
        bits = sum(1 << i for i, ok in enumerate(valid) if ok)
        bitmap = pa.py_buffer(bits.to_bytes((len(valid) + 7) // 8 or 1, "little"))
    array = pa.Array.from_buffers(
        data_type, len(offsets) - 1, [bitmap, pa.py_buffer(packed), pa.py_buffer(data)]
    )
    return pa.record_batch([array], names=["s"])


def verdict(check, batch: pa.RecordBatch) -> bool:
    try:
        check(batch)
    except pa.ArrowInvalid:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(
    pieces=st.lists(TEXT_BYTES, max_size=12),
    cuts=st.lists(st.integers(0, 40), max_size=6),
    large=st.booleans(),
    nulls=st.one_of(st.none(), st.lists(st.booleans(), min_size=7, max_size=7)),
    offset_first=st.integers(0, 3),
)
@example(pieces=[b"a", b"\xc3\xa9"], cuts=[2], large=False, nulls=None, offset_first=0)
def test_agrees_with_arrow_full_validation(pieces, cuts, large, nulls, offset_first) -> None:
    data = b"".join(pieces)
    offsets = sorted({min(offset_first, len(data)), *[min(c, len(data) + 2) for c in cuts],
                      len(data)})
    valid = None if nulls is None else nulls[: len(offsets) - 1]
    try:
        batch = string_batch(data, offsets, large, valid)
    except pa.ArrowInvalid:  # Arrow's cheap checks refuse it already (the IPC reader too)
        assume(False)
    assert verdict(validate_batch, batch) == verdict(lambda b: b.validate(full=True), batch)


@pytest.mark.parametrize("large", [False, True])
def test_refuses_a_string_that_starts_inside_a_character(large: bool) -> None:
    batch = string_batch("abcé".encode(), [0, 4, 5], large)  # 4 is é's second byte
    with pytest.raises(pa.ArrowInvalid, match="inside a UTF-8 character"):
        validate_batch(batch)


@pytest.mark.parametrize("large", [False, True])
def test_refuses_invalid_utf8_and_offsets_past_the_data(large: bool) -> None:
    with pytest.raises(pa.ArrowInvalid, match="UTF-8"):
        validate_batch(string_batch(b"ab\xffc", [0, 2, 4], large))
    with pytest.raises(pa.ArrowInvalid):
        validate_batch(string_batch(b"abc", [0, 2, 9], large))


def test_accepts_sliced_and_nested_columns_arrow_accepts() -> None:
    table = pa.table({"s": ["aé", "bé", None, "c"], "l": [["x"], [], None, ["é", "y"]]})
    for batch in table.to_batches():
        validate_batch(batch.slice(1, 3))
        validate_batch(batch.slice(3))
