"""The protobuf wire format of Flight's messages, by hand where it is the hot path.

``FlightData`` carries every batch, so it is laid out and sliced here without
protobuf's runtime: :func:`encode_flight_data` joins a message's parts once (the
only copy of the data on the way out) and :func:`decode_flight_data` slices a
received message into memoryviews (no copy). Other messages go through the
generated protobuf classes; :func:`parse_message` turns their decoding errors into
Flight errors.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pyarrow as pa

from flight_secure.errors import FlightInvalidArgumentError

#: The largest message a server reads, and the most a compressed batch may take once
#: decompressed, unless told otherwise: 64 MiB (see FlightServerOptions).
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024

# Field numbers of FlightData (Flight.proto).
FIELD_DESCRIPTOR = 1
FIELD_DATA_HEADER = 2
FIELD_APP_METADATA = 3
FIELD_DATA_BODY = 1000

# Protobuf wire types.
_VARINT = 0
_FIXED64 = 1
_LENGTH_DELIMITED = 2
_FIXED32 = 5


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int) -> bytes:
    """The encoded key of a length-delimited field."""
    return _varint(field << 3 | _LENGTH_DELIMITED)


_TAG_DESCRIPTOR = _tag(FIELD_DESCRIPTOR)
_TAG_HEADER = _tag(FIELD_DATA_HEADER)
_TAG_APP_METADATA = _tag(FIELD_APP_METADATA)
_TAG_BODY = _tag(FIELD_DATA_BODY)
_TAG_FIELD_ONE = _tag(1)

#: The largest field protobuf can carry: Arrow's implementations refuse bigger ones.
_MAX_FIELD_BYTES = 2**31 - 1


def encode_flight_data(
    header: bytes | memoryview | None,
    body: list | tuple = (),
    body_length: int = 0,
    app_metadata: bytes | None = None,
    descriptor: bytes | None = None,
) -> bytes:
    """The wire bytes of one ``FlightData`` message.

    ``body`` is a sequence of buffer-like pieces whose sizes add up to
    ``body_length``; they are written back to back as ``data_body``. ``descriptor``
    is a serialized FlightDescriptor. Empty parts are left out. Raises
    ``pyarrow.ArrowCapacityError`` for ``app_metadata`` of 2 GiB or more, as Arrow
    does: no other Flight implementation could read that message.
    """
    if app_metadata and len(app_metadata) > _MAX_FIELD_BYTES:
        raise pa.ArrowCapacityError("app_metadata size overflow (>= 2**31)")
    parts: list = []
    if descriptor:
        parts += (_TAG_DESCRIPTOR, _varint(len(descriptor)), descriptor)
    if header:
        parts += (_TAG_HEADER, _varint(len(header)), header)
    if app_metadata:
        parts += (_TAG_APP_METADATA, _varint(len(app_metadata)), app_metadata)
    if body_length:
        parts += (_TAG_BODY, _varint(body_length))
        parts.extend(body)
    return b"".join(parts)


def encode_bytes_message(payload: bytes) -> bytes:
    """A message whose only field is bytes field 1 (PutResult, Result, Ticket...).

    Raises ``pyarrow.ArrowCapacityError`` for a payload of 2 GiB or more.
    """
    if len(payload) > _MAX_FIELD_BYTES:
        raise pa.ArrowCapacityError("field size overflow (>= 2**31)")
    if not payload:
        return b""
    return b"".join((_TAG_FIELD_ONE, _varint(len(payload)), payload))


class Frame(NamedTuple):
    """One received ``FlightData``, as views into the received bytes.

    ``error`` is set (and the rest empty) when the bytes were not a valid FlightData.
    """

    descriptor: memoryview | None
    header: memoryview | None
    app_metadata: bytes | None
    body: memoryview | None
    error: str | None = None


def _read_varint(data: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 64 bits")


def decode_flight_data(raw: bytes) -> Frame:
    """Slice a received ``FlightData`` into a :class:`Frame` without copying data.

    Unknown fields are skipped as protobuf requires. Never raises (it runs inside
    gRPC's deserializer hook): a malformed message yields a Frame whose ``error``
    says what was wrong.
    """
    view = memoryview(raw)
    end = len(view)
    pos = 0
    descriptor = header = body = None
    app_metadata: bytes | None = None
    try:
        while pos < end:
            key, pos = _read_varint(view, pos, end)
            field, wire = key >> 3, key & 7
            if wire == _LENGTH_DELIMITED:
                length, pos = _read_varint(view, pos, end)
                stop = pos + length
                if stop > end:
                    raise ValueError(f"field {field} runs past the end of the message")
                chunk = view[pos:stop]
                pos = stop
                if field == FIELD_DATA_BODY:
                    body = chunk
                elif field == FIELD_DATA_HEADER:
                    header = chunk
                elif field == FIELD_APP_METADATA:
                    app_metadata = bytes(chunk)
                elif field == FIELD_DESCRIPTOR:
                    descriptor = chunk
            elif wire == _VARINT:
                _, pos = _read_varint(view, pos, end)
            elif wire == _FIXED64:
                pos += 8
            elif wire == _FIXED32:
                pos += 4
            else:
                raise ValueError(f"unsupported protobuf wire type {wire} (field {field})")
            if pos > end:
                raise ValueError("truncated field")
    except ValueError as exc:
        return Frame(None, None, None, None, f"malformed FlightData message: {exc}")
    return Frame(descriptor, header, app_metadata, body)


def parse_message(message_type: Any, serialized: bytes) -> Any:
    """``message_type`` (a generated protobuf class) read from ``serialized``.

    Raises FlightInvalidArgumentError naming the message when the bytes are not one.
    """
    try:
        return message_type.FromString(serialized)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise FlightInvalidArgumentError(
            f"malformed {message_type.DESCRIPTOR.name} message: {exc}"
        ) from None
