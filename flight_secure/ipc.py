"""A peek into Arrow IPC messages: what the framing needs from a message's header.

An encapsulated IPC message is a continuation marker, the header's length, the
header (a ``Message`` flatbuffer, format/Message.fbs) and the body. The framing
reads a few fields of each header, once per message, without building the
flatbuffer in full: Arrow verifies it in full when it reads the message.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

import pyarrow as pa

from flight_secure.errors import FlightInvalidArgumentError

CONTINUATION = b"\xff\xff\xff\xff"
#: Continuation marker and header length: what precedes every header in a stream.
PREFIX_SIZE = 8
_PREFIX = struct.Struct("<Ii")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")
_I64 = struct.Struct("<q")
_BUFFER = struct.Struct("<qq")  # a Buffer struct of format/Schema.fbs: offset, length

# Field indices of the flatbuffer tables read here (format/Message.fbs).
_MESSAGE_HEADER_TYPE = 1
_MESSAGE_HEADER = 2
_MESSAGE_BODY_LENGTH = 3
_RECORD_BATCH_BUFFERS = 2
_RECORD_BATCH_COMPRESSION = 3
_DICTIONARY_BATCH_DATA = 1


class MessageType(enum.IntEnum):
    """The ``MessageHeader`` union's values that a Flight stream carries."""

    SCHEMA = 1
    DICTIONARY_BATCH = 2
    RECORD_BATCH = 3


def prefix(header_length: int) -> bytes:
    """The 8 bytes that precede a header of ``header_length`` bytes in a stream."""
    return _PREFIX.pack(0xFFFFFFFF, header_length)


def prefixed_length(prefix_bytes: bytes | bytearray) -> int:
    """The header length an 8-byte prefix announces (0: the end of the stream)."""
    return _PREFIX.unpack(prefix_bytes)[1]


def without_prefix(header: memoryview | bytes) -> memoryview | bytes:
    """``header`` without a leading continuation prefix, if it has one."""
    if len(header) >= PREFIX_SIZE and bytes(header[:4]) == CONTINUATION:
        return header[PREFIX_SIZE:]
    return header


def split_ipc_message(message: pa.Buffer | bytes) -> tuple[memoryview, memoryview]:
    """(header flatbuffer, body) of one encapsulated IPC message, as views.

    ``message`` is what ``RecordBatch.serialize()`` returns: the prefix, the header
    (padded) and the body.
    """
    view = memoryview(message)
    header_length = prefixed_length(view[:PREFIX_SIZE])
    return view[PREFIX_SIZE : PREFIX_SIZE + header_length], view[PREFIX_SIZE + header_length :]


class MessageHeader(NamedTuple):
    """What one read of a ``Message`` flatbuffer found.

    ``flatbuffer`` is the header without its prefix; ``batch`` is where its
    RecordBatch table is (the batch of a dictionary batch), 0 for a schema.
    """

    kind: MessageType
    body_length: int
    flatbuffer: memoryview | bytes
    batch: int


def _field(buffer: memoryview | bytes, table: int, index: int) -> int:
    """Where field ``index`` of the flatbuffer table at ``table`` is stored; 0 if absent."""
    vtable = table - _I32.unpack_from(buffer, table)[0]
    slot = 4 + 2 * index
    if slot + 2 > _U16.unpack_from(buffer, vtable)[0]:
        return 0
    offset = _U16.unpack_from(buffer, vtable + slot)[0]
    return table + offset if offset else 0


def _target(buffer: memoryview | bytes, position: int) -> int:
    """The table or vector that the offset stored at ``position`` points to."""
    return position + _U32.unpack_from(buffer, position)[0]


def read_header(header: memoryview | bytes) -> MessageHeader:
    """Read a ``Message`` flatbuffer (with or without its prefix).

    Raises FlightInvalidArgumentError when the bytes are not a plausible schema,
    dictionary batch or record batch message.
    """
    flatbuffer = without_prefix(header)
    try:
        table = _U32.unpack_from(flatbuffer, 0)[0]
        type_pos = _field(flatbuffer, table, _MESSAGE_HEADER_TYPE)
        kind = flatbuffer[type_pos] if type_pos else 0
        length_pos = _field(flatbuffer, table, _MESSAGE_BODY_LENGTH)
        body_length = _I64.unpack_from(flatbuffer, length_pos)[0] if length_pos else 0
        batch = 0
        header_pos = _field(flatbuffer, table, _MESSAGE_HEADER)
        if kind in (MessageType.RECORD_BATCH, MessageType.DICTIONARY_BATCH) and header_pos:
            batch = _target(flatbuffer, header_pos)
            if kind == MessageType.DICTIONARY_BATCH:
                data_pos = _field(flatbuffer, batch, _DICTIONARY_BATCH_DATA)
                batch = _target(flatbuffer, data_pos) if data_pos else 0
    except (struct.error, IndexError, ValueError):
        raise FlightInvalidArgumentError(
            "FlightData data_header is not an Arrow IPC message"
        ) from None
    if body_length < 0 or kind not in (
        MessageType.SCHEMA, MessageType.DICTIONARY_BATCH, MessageType.RECORD_BATCH
    ):
        raise FlightInvalidArgumentError(
            f"FlightData data_header is not a schema, dictionary or record batch "
            f"message (type {kind})"
        )
    return MessageHeader(MessageType(kind), body_length, flatbuffer, batch)


def decompressed_size(message: MessageHeader, body: memoryview | bytes) -> int | None:
    """The bytes the buffers of a compressed batch take once decompressed.

    None when the message is not a compressed batch. Each compressed body buffer
    starts with its uncompressed length, a little-endian int64 (-1: the buffer is
    stored uncompressed); Arrow allocates that much before it decompresses, so this
    is read before the message reaches Arrow. Raises FlightInvalidArgumentError
    when a buffer lies outside ``body`` or declares a negative length.
    """
    flatbuffer, batch = message.flatbuffer, message.batch
    if not batch:
        return None
    try:
        if not _field(flatbuffer, batch, _RECORD_BATCH_COMPRESSION):
            return None
        buffers_pos = _field(flatbuffer, batch, _RECORD_BATCH_BUFFERS)
        if not buffers_pos:
            return None
        vector = _target(flatbuffer, buffers_pos)
        count = _U32.unpack_from(flatbuffer, vector)[0]
        spans = [_BUFFER.unpack_from(flatbuffer, vector + 4 + _BUFFER.size * index)
                 for index in range(count)]
    except (struct.error, IndexError):
        raise FlightInvalidArgumentError(
            "FlightData data_header is not an Arrow IPC message"
        ) from None
    total = 0
    for offset, length in spans:
        if offset < 0 or length < 0 or offset + length > len(body):
            raise FlightInvalidArgumentError(
                f"a compressed buffer ({length} bytes at {offset}) lies outside the "
                f"{len(body)}-byte message body"
            )
        if length == 0:
            continue
        if length < 8:
            raise FlightInvalidArgumentError(
                f"a compressed buffer of {length} bytes has no 8-byte length prefix"
            )
        declared = _I64.unpack_from(body, offset)[0]
        if declared < -1:
            raise FlightInvalidArgumentError(
                f"a compressed buffer declares a negative length ({declared})"
            )
        total += length - 8 if declared == -1 else declared
    return total
