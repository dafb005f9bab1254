"""Flight's value types: descriptors, tickets, endpoints, flight infos, actions.

Each class mirrors its ``pyarrow.flight`` namesake (constructor, attributes,
``serialize``/``deserialize``) and converts to and from the protocol messages of
``protos/flight.proto`` through ``_to_proto`` / ``_from_proto``. Constructors refuse
the argument types pyarrow refuses with TypeError; values compare equal field by
field, and reprs follow pyarrow's. ``Location`` lives in :mod:`flight_secure.location`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import pyarrow as pa

from flight_secure._generated import flight_pb2 as pb
from flight_secure.errors import FlightInvalidArgumentError
from flight_secure.location import Location
from flight_secure.wire import parse_message

BytesLike = bytes | bytearray | memoryview | str | pa.Buffer

def to_bytes(value: BytesLike | None) -> bytes:
    """Bytes from ``str`` (UTF-8), any buffer, or ``None`` (empty)."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, pa.Buffer):
        return value.to_pybytes()
    return bytes(value)


def _text_bytes(value: object, name: str) -> bytes:
    """``value`` as bytes when it is str (UTF-8), bytes or bytearray; else TypeError."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise TypeError(f"{name} must be str or bytes, not {type(value).__name__}")


def _buffer_bytes(value: object, name: str) -> bytes:
    """``value`` as bytes when it is bytes-like (bytes, bytearray, memoryview,
    pyarrow.Buffer); TypeError for str and everything else."""
    if isinstance(value, pa.Buffer):
        return value.to_pybytes()
    if not isinstance(value, str):
        try:
            return bytes(memoryview(value))  # type: ignore[arg-type]
        except TypeError:
            pass
    raise TypeError(f"{name} must be a bytes-like object, not {type(value).__name__}")


def _count(value: object, name: str) -> int:
    """A record or byte count: an int (or a float, truncated), -1 for None."""
    if value is None:
        return -1
    if isinstance(value, int | float):
        return int(value)
    raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")


class DescriptorType(enum.Enum):
    """What a :class:`FlightDescriptor` holds."""

    UNKNOWN = 0
    PATH = 1
    CMD = 2


class FlightDescriptor:
    """Names a flight: a path of strings, or an opaque command.

    Made with :meth:`for_path` (str or bytes elements) or :meth:`for_command` (str or
    bytes); other types raise TypeError.
    """

    __slots__ = ("_command", "_path", "_type")

    def __init__(self) -> None:
        self._type = DescriptorType.UNKNOWN
        self._command: bytes | None = None
        self._path: list[bytes] | None = None

    @staticmethod
    def for_path(*path: str | bytes) -> FlightDescriptor:
        descriptor = FlightDescriptor()
        descriptor._type = DescriptorType.PATH
        descriptor._path = [_text_bytes(p, "path element") for p in path]
        return descriptor

    @staticmethod
    def for_command(command: str | bytes) -> FlightDescriptor:
        descriptor = FlightDescriptor()
        descriptor._type = DescriptorType.CMD
        descriptor._command = _text_bytes(command, "command")
        return descriptor

    @property
    def descriptor_type(self) -> DescriptorType:
        return self._type

    @property
    def path(self) -> list[bytes] | None:
        """The path elements (bytes), or ``None`` for a command descriptor."""
        return None if self._path is None else list(self._path)

    @property
    def command(self) -> bytes | None:
        return self._command

    def _to_proto(self) -> pb.FlightDescriptor:
        if self._type is DescriptorType.PATH:
            return pb.FlightDescriptor(
                type=pb.FlightDescriptor.PATH,
                path=[p.decode("utf-8", "surrogateescape") for p in self._path or []],
            )
        if self._type is DescriptorType.CMD:
            return pb.FlightDescriptor(type=pb.FlightDescriptor.CMD, cmd=self._command or b"")
        return pb.FlightDescriptor()

    @staticmethod
    def _from_proto(message: pb.FlightDescriptor) -> FlightDescriptor:
        if message.type == pb.FlightDescriptor.PATH:
            return FlightDescriptor.for_path(*[p.encode() for p in message.path])
        if message.type == pb.FlightDescriptor.CMD:
            return FlightDescriptor.for_command(message.cmd)
        raise FlightInvalidArgumentError(
            f"FlightDescriptor has unknown type {message.type}: expected PATH (1) or CMD (2)"
        )

    def serialize(self) -> bytes:
        return self._to_proto().SerializeToString()

    @classmethod
    def deserialize(cls, serialized: BytesLike) -> FlightDescriptor:
        return cls._from_proto(_parse(pb.FlightDescriptor, serialized))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlightDescriptor):
            return NotImplemented
        return (other._type, other._path, other._command) == (
            self._type,
            self._path,
            self._command,
        )

    def __hash__(self) -> int:
        return hash((self._type, tuple(self._path or ()), self._command))

    def __repr__(self) -> str:
        if self._type is DescriptorType.PATH:
            return f"<flight_secure.FlightDescriptor path={self._path!r}>"
        if self._type is DescriptorType.CMD:
            return f"<flight_secure.FlightDescriptor cmd={self._command!r}>"
        return "<flight_secure.FlightDescriptor UNKNOWN>"


class Ticket:
    """An opaque token that redeems a stream with DoGet: str or bytes (else TypeError)."""

    __slots__ = ("_ticket",)

    def __init__(self, ticket: str | bytes) -> None:
        self._ticket = _text_bytes(ticket, "ticket")

    @property
    def ticket(self) -> bytes:
        return self._ticket

    def serialize(self) -> bytes:
        return pb.Ticket(ticket=self._ticket).SerializeToString()

    @classmethod
    def deserialize(cls, serialized: BytesLike) -> Ticket:
        return cls(_parse(pb.Ticket, serialized).ticket)

    def equals(self, other: Ticket) -> bool:
        return self == other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ticket):
            return NotImplemented
        return other._ticket == self._ticket

    def __hash__(self) -> int:
        return hash(self._ticket)

    def __repr__(self) -> str:
        return f"<flight_secure.Ticket ticket={self._ticket!r}>"


_NS_PER_SECOND = 1_000_000_000
_UTC_NS = pa.timestamp("ns", tz="UTC")


def _expiration_time(value: object) -> pa.TimestampScalar | None:
    """An expiration time as a UTC nanosecond timestamp scalar, or None.

    Takes a ``pyarrow.TimestampScalar`` of any unit (a zone-less one is read as UTC);
    raises TypeError for other types and for a null scalar.
    """
    if value is None:
        return None
    if not isinstance(value, pa.TimestampScalar):
        raise TypeError(
            f"expiration_time must be a pyarrow TimestampScalar, not {type(value).__name__}"
        )
    nanos = value.cast(pa.timestamp("ns")).value
    if nanos is None:
        raise TypeError("expiration_time must be a timestamp, not a null scalar")
    return pa.scalar(nanos, type=_UTC_NS)


def _timestamp_to_proto(value: pa.TimestampScalar | None, target: Any) -> None:
    if value is not None:
        target.seconds, target.nanos = divmod(value.value, _NS_PER_SECOND)


def _timestamp_from_proto(message: Any, field: str) -> pa.TimestampScalar | None:
    if not message.HasField(field):
        return None
    ts = getattr(message, field)
    return pa.scalar(ts.seconds * _NS_PER_SECOND + ts.nanos, type=_UTC_NS)


class FlightEndpoint:
    """A ticket and the locations where it can be redeemed (read-only, as in pyarrow).

    ``ticket`` is a Ticket, str or bytes; ``locations`` an iterable of Location, str or
    bytes (any URI scheme); ``expiration_time`` a ``pyarrow.TimestampScalar`` or None,
    kept to the nanosecond as a UTC timestamp; ``app_metadata`` str or bytes. Other
    types raise TypeError, a string that is not a URI FlightInvalidArgumentError.
    Two endpoints are equal when all four are.
    """

    def __init__(
        self,
        ticket: Ticket | str | bytes,
        locations: Iterable[Location | str | bytes],
        expiration_time: pa.TimestampScalar | None = None,
        app_metadata: str | bytes = b"",
    ) -> None:
        if isinstance(ticket, Ticket):
            self._ticket = ticket
        elif isinstance(ticket, str | bytes):
            self._ticket = Ticket(ticket)
        else:
            raise TypeError(f"ticket must be a Ticket, str or bytes, not {type(ticket).__name__}")
        self._locations = [_endpoint_location(location) for location in locations]
        self._expiration_time = _expiration_time(expiration_time)
        if not isinstance(app_metadata, str | bytes):
            raise TypeError(
                f"app_metadata must be str or bytes, not {type(app_metadata).__name__}"
            )
        self._app_metadata = to_bytes(app_metadata)

    @property
    def ticket(self) -> Ticket:
        return self._ticket

    @property
    def locations(self) -> list[Location]:
        return list(self._locations)

    @property
    def expiration_time(self) -> pa.TimestampScalar | None:
        """When the ticket expires (UTC, nanoseconds), or None."""
        return self._expiration_time

    @property
    def app_metadata(self) -> bytes:
        return self._app_metadata

    def _to_proto(self) -> pb.FlightEndpoint:
        message = pb.FlightEndpoint(
            ticket=pb.Ticket(ticket=self.ticket.ticket),
            location=[pb.Location(uri=str(loc)) for loc in self.locations],
            app_metadata=self.app_metadata,
        )
        _timestamp_to_proto(self.expiration_time, message.expiration_time)
        return message

    @staticmethod
    def _from_proto(message: pb.FlightEndpoint) -> FlightEndpoint:
        return FlightEndpoint(
            Ticket(message.ticket.ticket),
            [Location(loc.uri) for loc in message.location],
            _timestamp_from_proto(message, "expiration_time"),
            message.app_metadata,
        )

    def serialize(self) -> bytes:
        return self._to_proto().SerializeToString()

    @classmethod
    def deserialize(cls, serialized: BytesLike) -> FlightEndpoint:
        return cls._from_proto(_parse(pb.FlightEndpoint, serialized))

    def _key(self) -> tuple:
        expires = None if self.expiration_time is None else self.expiration_time.value
        return (self.ticket, self.locations, expires, self.app_metadata)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlightEndpoint):
            return NotImplemented
        return other._key() == self._key()

    def __repr__(self) -> str:
        return (
            f"<flight_secure.FlightEndpoint ticket={self.ticket!r} "
            f"locations={self.locations!r} "
            f"expiration_time={self.expiration_time} "
            f"app_metadata={self.app_metadata}>"
        )


def _endpoint_location(location: object) -> Location:
    if isinstance(location, Location):
        return location
    if isinstance(location, str | bytes):
        return Location(location)
    raise TypeError(
        f"locations must hold Location, str or bytes items, not {type(location).__name__}"
    )


def serialize_schema(schema: pa.Schema) -> bytes:
    """A schema in its IPC message form, as FlightInfo and SchemaResult carry it."""
    return schema.serialize().to_pybytes()


def deserialize_schema(data: bytes) -> pa.Schema:
    """The schema in an IPC schema message (with or without the continuation prefix)."""
    if not data:
        return pa.schema([])
    try:
        return pa.ipc.read_schema(pa.py_buffer(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise FlightInvalidArgumentError(f"malformed IPC schema message: {exc}") from None


def _schema_argument(schema: object) -> pa.Schema:
    if isinstance(schema, pa.Schema):
        return schema
    raise TypeError(f"schema must be a pyarrow.Schema, not {type(schema).__name__}")


class FlightInfo:
    """How to fetch a flight: its schema, descriptor, endpoints and size (read-only).

    ``schema`` is a ``pyarrow.Schema`` or None (the info then carries no schema, and
    ``schema`` reads None on both sides of the wire); ``descriptor`` a FlightDescriptor;
    ``endpoints`` FlightEndpoints; the counts ints, or None for unknown (-1); other
    types raise TypeError. Two infos are equal when they serialize to the same fields
    (the schema compared in its IPC form, as Arrow compares it).
    """

    def __init__(
        self,
        schema: pa.Schema | None,
        descriptor: FlightDescriptor,
        endpoints: Sequence[FlightEndpoint],
        total_records: int | None = None,
        total_bytes: int | None = None,
        ordered: bool = False,
        app_metadata: str | bytes = b"",
    ) -> None:
        if schema is not None:
            schema = _schema_argument(schema)
        self._schema: pa.Schema | None = schema
        self._schema_parsed = True
        self._schema_bytes = b"" if schema is None else serialize_schema(schema)
        if not isinstance(descriptor, FlightDescriptor):
            raise TypeError(
                f"descriptor must be a FlightDescriptor, not {type(descriptor).__name__}"
            )
        self._descriptor = descriptor
        self._endpoints = list(endpoints)
        for endpoint in self._endpoints:
            if not isinstance(endpoint, FlightEndpoint):
                raise TypeError(f"endpoints must be FlightEndpoints, not {endpoint!r}")
        self._total_records = _count(total_records, "total_records")
        self._total_bytes = _count(total_bytes, "total_bytes")
        self._ordered = bool(ordered)
        self._app_metadata = _text_bytes(app_metadata, "app_metadata")

    @property
    def descriptor(self) -> FlightDescriptor:
        return self._descriptor

    @property
    def endpoints(self) -> list[FlightEndpoint]:
        return list(self._endpoints)

    @property
    def total_records(self) -> int:
        """The record count, or -1 if unknown."""
        return self._total_records

    @property
    def total_bytes(self) -> int:
        """The size in bytes, or -1 if unknown."""
        return self._total_bytes

    @property
    def ordered(self) -> bool:
        """Whether the endpoints are in the order of the data."""
        return self._ordered

    @property
    def app_metadata(self) -> bytes:
        return self._app_metadata

    @property
    def schema(self) -> pa.Schema | None:
        """The flight's schema, or None when the info carries none."""
        if not self._schema_parsed:
            self._schema = deserialize_schema(self._schema_bytes) if self._schema_bytes else None
            self._schema_parsed = True
        return self._schema

    def _to_proto(self) -> pb.FlightInfo:
        return pb.FlightInfo(
            schema=self._schema_bytes,
            flight_descriptor=self.descriptor._to_proto(),
            endpoint=[e._to_proto() for e in self.endpoints],
            total_records=self.total_records,
            total_bytes=self.total_bytes,
            ordered=self.ordered,
            app_metadata=self.app_metadata,
        )

    @staticmethod
    def _from_proto(message: pb.FlightInfo) -> FlightInfo:
        descriptor = (
            FlightDescriptor._from_proto(message.flight_descriptor)
            if message.flight_descriptor.type
            else FlightDescriptor()
        )
        info = FlightInfo(
            None,
            descriptor,
            [FlightEndpoint._from_proto(e) for e in message.endpoint],
            message.total_records,
            message.total_bytes,
            message.ordered,
            message.app_metadata,
        )
        info._schema_bytes = message.schema
        info._schema_parsed = False
        return info

    def serialize(self) -> bytes:
        return self._to_proto().SerializeToString()

    @classmethod
    def deserialize(cls, serialized: BytesLike) -> FlightInfo:
        return cls._from_proto(_parse(pb.FlightInfo, serialized))

    def _key(self) -> tuple:
        return (
            self._schema_bytes,
            self.descriptor,
            self.endpoints,
            self.total_records,
            self.total_bytes,
            self.ordered,
            self.app_metadata,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlightInfo):
            return NotImplemented
        return other._key() == self._key()

    def __repr__(self) -> str:
        return (
            f"<flight_secure.FlightInfo schema={self.schema} "
            f"descriptor={self.descriptor} "
            f"endpoints={self.endpoints} "
            f"total_records={self.total_records} "
            f"total_bytes={self.total_bytes} "
            f"ordered={self.ordered} "
            f"app_metadata={self.app_metadata}>"
        )


class PollInfo:
    """Progress of a long-running query, as returned by PollFlightInfo.

    ``expiration_time`` follows FlightEndpoint's rule (a ``pyarrow.TimestampScalar``
    or None, kept to the nanosecond in UTC).
    """

    def __init__(
        self,
        info: FlightInfo | None,
        descriptor: FlightDescriptor | None = None,
        progress: float | None = None,
        expiration_time: pa.TimestampScalar | None = None,
    ) -> None:
        if progress is not None and not 0.0 <= progress <= 1.0:
            raise ValueError("PollInfo progress must be within [0.0, 1.0]")
        self.info = info
        self.descriptor = descriptor
        self.progress = progress
        self.expiration_time = _expiration_time(expiration_time)

    def _to_proto(self) -> pb.PollInfo:
        message = pb.PollInfo()
        if self.info is not None:
            message.info.CopyFrom(self.info._to_proto())
        if self.descriptor is not None:
            message.flight_descriptor.CopyFrom(self.descriptor._to_proto())
        if self.progress is not None:
            message.progress = self.progress
        _timestamp_to_proto(self.expiration_time, message.expiration_time)
        return message

    @staticmethod
    def _from_proto(message: pb.PollInfo) -> PollInfo:
        return PollInfo(
            FlightInfo._from_proto(message.info) if message.HasField("info") else None,
            FlightDescriptor._from_proto(message.flight_descriptor)
            if message.HasField("flight_descriptor")
            else None,
            message.progress if message.HasField("progress") else None,
            _timestamp_from_proto(message, "expiration_time"),
        )

    def serialize(self) -> bytes:
        return self._to_proto().SerializeToString()

    @classmethod
    def deserialize(cls, serialized: BytesLike) -> PollInfo:
        return cls._from_proto(_parse(pb.PollInfo, serialized))


class SchemaResult:
    """The answer to GetSchema: a ``pyarrow.Schema`` (else TypeError).

    Two results are equal when their schemas serialize alike (metadata included).
    """

    def __init__(self, schema: pa.Schema) -> None:
        self._schema = _schema_argument(schema)

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def serialize(self) -> bytes:
        return pb.SchemaResult(schema=serialize_schema(self.schema)).SerializeToString()

    @classmethod
    def deserialize(cls, serialized: BytesLike) -> SchemaResult:
        return cls(deserialize_schema(_parse(pb.SchemaResult, serialized).schema))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SchemaResult):
            return NotImplemented
        return serialize_schema(other.schema) == serialize_schema(self.schema)

    def __repr__(self) -> str:
        return f"<flight_secure.SchemaResult schema=({self.schema})>"


class Action:
    """A named request to the server's DoAction, with an opaque body.

    ``action_type`` is str or bytes, ``buf`` bytes-like (bytes, bytearray, memoryview,
    pyarrow.Buffer); other types, str bodies included, raise TypeError.
    """

    __slots__ = ("_body", "_type")

    def __init__(self, action_type: str | bytes, buf: bytes | pa.Buffer) -> None:
        self._type = _text_bytes(action_type, "action_type").decode()
        self._body = _buffer_bytes(buf, "buf")

    @property
    def type(self) -> str:
        return self._type

    @property
    def body(self) -> pa.Buffer:
        return pa.py_buffer(self._body)

    def serialize(self) -> bytes:
        return pb.Action(type=self._type, body=self._body).SerializeToString()

    @classmethod
    def deserialize(cls, serialized: BytesLike) -> Action:
        message = _parse(pb.Action, serialized)
        return cls(message.type, message.body)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Action):
            return NotImplemented
        return (other._type, other._body) == (self._type, self._body)

    def __repr__(self) -> str:
        return f"<flight_secure.Action type={self._type!r} body=({len(self._body)} bytes)>"


class ActionType(NamedTuple):
    """An action the server offers, with a description."""

    type: str
    description: str

    def make_action(self, buf: bytes | pa.Buffer) -> Action:
        return Action(self.type, buf)


class Result:
    """One result of DoAction: a bytes-like body (str and other types raise TypeError)."""

    __slots__ = ("_body",)

    def __init__(self, buf: bytes | pa.Buffer) -> None:
        self._body = _buffer_bytes(buf, "buf")

    @property
    def body(self) -> pa.Buffer:
        return pa.py_buffer(self._body)

    def serialize(self) -> bytes:
        return pb.Result(body=self._body).SerializeToString()

    @classmethod
    def deserialize(cls, serialized: BytesLike) -> Result:
        return cls(_parse(pb.Result, serialized).body)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return NotImplemented
        return other._body == self._body

    def __repr__(self) -> str:
        return f"<flight_secure.Result body=({len(self._body)} bytes)>"


class BasicAuth:
    """Username and password as the BasicAuth handshake payload. Never printed.

    Each is str, bytes or None (empty); other types raise TypeError.
    """

    __slots__ = ("_password", "_username")

    def __init__(self, username: str | bytes | None = None, password: str | bytes | None = None):
        self._username = b"" if username is None else _text_bytes(username, "username")
        self._password = b"" if password is None else _text_bytes(password, "password")

    @property
    def username(self) -> bytes:
        return self._username

    @property
    def password(self) -> bytes:
        return self._password

    def serialize(self) -> bytes:
        return pb.BasicAuth(
            username=self._username.decode(), password=self._password.decode()
        ).SerializeToString()

    @staticmethod
    def deserialize(serialized: BytesLike) -> BasicAuth:
        message = _parse(pb.BasicAuth, serialized)
        return BasicAuth(message.username, message.password)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BasicAuth):
            return NotImplemented
        return (other._username, other._password) == (self._username, self._password)

    def __repr__(self) -> str:
        return f"<flight_secure.BasicAuth username={self._username!r} password=(redacted)>"


class CertKeyPair(NamedTuple):
    """A PEM certificate chain and its PEM private key."""

    cert: bytes | str
    key: bytes | str

    def __repr__(self) -> str:
        return "CertKeyPair(cert=<PEM>, key=<redacted>)"


class FlightMethod(enum.Enum):
    """The Flight RPCs, as seen by middleware (``CallInfo.method``)."""

    INVALID = 0
    HANDSHAKE = 1
    LIST_FLIGHTS = 2
    GET_FLIGHT_INFO = 3
    GET_SCHEMA = 4
    DO_GET = 5
    DO_PUT = 6
    DO_ACTION = 7
    LIST_ACTIONS = 8
    DO_EXCHANGE = 9
    POLL_FLIGHT_INFO = 10


class CallInfo(NamedTuple):
    """What middleware is told about a call."""

    method: FlightMethod


def _parse(message_type: Any, serialized: BytesLike) -> Any:
    return parse_message(message_type, to_bytes(serialized))
