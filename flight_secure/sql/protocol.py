"""Flight SQL messages on the wire: ``google.protobuf.Any``-packed commands, tickets, handles.

Flight SQL puts a serialized ``Any`` in a CMD descriptor's ``cmd``, in a ticket and in an
action's body; its ``type_url`` names the message (``type.googleapis.com/`` + full name).
:func:`unpack` turns such bytes into the message :data:`MESSAGES` knows, or raises
FlightInvalidArgumentError; :func:`pack` does the reverse.

Statement and prepared-statement handles are this server's own: a small JSON object
holding the SQL text, the bound parameters (Arrow IPC, base64) and, in tickets, a query
id for cancellation. They carry no authority: every use re-checks the caller's rights,
so a handle forged or passed to another user can do nothing its bearer could not do
with a query of their own. Both are bounded (:data:`MAX_SQL_BYTES`,
:data:`MAX_PARAMETER_BYTES`).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass, replace

import pyarrow as pa
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from flight_secure._generated import FlightSql_pb2 as sql_pb
from flight_secure.errors import FlightInvalidArgumentError

TYPE_URL_PREFIX = "type.googleapis.com/"
MAX_SQL_BYTES = 1024 * 1024
MAX_PARAMETER_BYTES = 1024 * 1024

#: Every Flight SQL message a client may send, by full protobuf name.
MESSAGES: dict[str, type[Message]] = {
    descriptor.full_name: getattr(sql_pb, name)
    for name, descriptor in sql_pb.DESCRIPTOR.message_types_by_name.items()
}


def pack(message: Message) -> bytes:
    """``message`` as serialized ``Any`` bytes, the way Flight SQL carries it."""
    wrapper = any_pb2.Any()
    wrapper.Pack(message, type_url_prefix=TYPE_URL_PREFIX)
    return wrapper.SerializeToString()


def _any(data: bytes) -> tuple[any_pb2.Any, str] | None:
    """The ``Any`` in serialized bytes and the message name it names, or None when the
    bytes are no ``Any`` of a Flight SQL type URL."""
    try:
        wrapper = any_pb2.Any.FromString(bytes(data))
    except DecodeError:
        return None
    if not wrapper.type_url.startswith(TYPE_URL_PREFIX):
        return None
    return wrapper, wrapper.type_url[len(TYPE_URL_PREFIX):]


def type_name(data: bytes) -> str | None:
    """The full message name inside serialized ``Any`` bytes, or None if they are not one."""
    found = _any(data)
    return None if found is None else found[1]


def is_flight_sql(data: bytes) -> bool:
    """True when ``data`` is an ``Any`` holding a Flight SQL message."""
    return type_name(data) in MESSAGES


def unpack(data: bytes) -> Message:
    """The Flight SQL message in serialized ``Any`` bytes; FlightInvalidArgumentError if none."""
    found = _any(data)
    cls = None if found is None else MESSAGES.get(found[1])
    if cls is None:
        raise FlightInvalidArgumentError("not a Flight SQL command")
    message = cls()
    try:
        found[0].Unpack(message)
    except DecodeError:
        raise FlightInvalidArgumentError(f"malformed {cls.__name__} message") from None
    return message


@dataclass(frozen=True)
class Statement:
    """A SELECT to run: its text, bound parameters (one row, or None) and a query id."""

    sql: str
    parameters: pa.RecordBatch | None = None
    query_id: str = ""

    def with_query_id(self) -> Statement:
        """This statement under a fresh random query id (one per GetFlightInfo)."""
        return replace(self, query_id=secrets.token_hex(16))

    def encode(self) -> bytes:
        """The opaque handle bytes for this statement."""
        fields: dict[str, str] = {"sql": self.sql}
        if self.parameters is not None:
            fields["parameters"] = base64.b64encode(_ipc(self.parameters)).decode()
        if self.query_id:
            fields["id"] = self.query_id
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, handle: bytes) -> Statement:
        """The statement in a handle from :meth:`encode`; FlightInvalidArgumentError if not one."""
        if len(handle) > 2 * (MAX_SQL_BYTES + MAX_PARAMETER_BYTES):
            raise FlightInvalidArgumentError("statement handle too large")
        try:
            fields = json.loads(bytes(handle))
            sql = fields["sql"]
            raw = fields.get("parameters")
            parameters = _batch(base64.b64decode(raw, validate=True)) if raw else None
            query_id = str(fields.get("id", ""))
        except (ValueError, KeyError, TypeError, binascii.Error, pa.ArrowException):
            raise FlightInvalidArgumentError("invalid statement handle") from None
        if not isinstance(sql, str):
            raise FlightInvalidArgumentError("invalid statement handle")
        return cls(check_sql(sql), parameters, query_id)


def check_sql(sql: str) -> str:
    """``sql`` when non-empty and within :data:`MAX_SQL_BYTES`, else FlightInvalidArgumentError."""
    if not sql.strip():
        raise FlightInvalidArgumentError("the SQL text is empty")
    if len(sql.encode("utf-8", "surrogatepass")) > MAX_SQL_BYTES:
        raise FlightInvalidArgumentError(f"SQL text longer than {MAX_SQL_BYTES} bytes")
    return sql


def parameter_row(schema: pa.Schema, batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """The one row of parameters a client bound with DoPut, checked for size."""
    rows = sum(batch.num_rows for batch in batches)
    if rows != 1:
        raise FlightInvalidArgumentError(
            f"bind exactly one row of parameters per execution, not {rows}")
    table = pa.Table.from_batches(batches, schema=schema).combine_chunks()
    batch = table.to_batches()[0]
    if len(_ipc(batch)) > MAX_PARAMETER_BYTES:
        raise FlightInvalidArgumentError(f"parameters larger than {MAX_PARAMETER_BYTES} bytes")
    return batch


def _ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _batch(data: bytes) -> pa.RecordBatch:
    if len(data) > MAX_PARAMETER_BYTES:
        raise ValueError("parameters too large")
    table = pa.ipc.open_stream(data).read_all()
    if table.num_rows != 1:
        raise ValueError("one parameter row expected")
    return table.combine_chunks().to_batches()[0]
