"""Flight's value types: locations, descriptors, tickets, flight infos, actions.

Each class mirrors its ``pyarrow.flight`` namesake (constructor, attributes,
``serialize``/``deserialize``) and converts to and from the protocol messages of
``protos/flight.proto`` through ``_to_proto`` / ``_from_proto``.
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pyarrow as pa

from flight_secure._generated import flight_pb2 as pb
from flight_secure.errors import FlightInvalidArgumentError

BytesLike = bytes | bytearray | memoryview | str | pa.Buffer

_SCHEMES = ("grpc", "grpc+tcp", "grpc+tls", "grpc+unix", "arrow-flight-reuse-connection")


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


class Location:
    """Where a Flight service listens: ``grpc[+tcp|+tls]://host:port`` or ``grpc+unix://path``."""

    __slots__ = ("_uri",)

    def __init__(self, uri: str | bytes | Location) -> None:
        if isinstance(uri, Location):
            uri = uri.uri
        text = uri.decode() if isinstance(uri, bytes) else str(uri)
        scheme = text.split("://", 1)[0] if "://" in text else ""
        if scheme not in _SCHEMES:
            raise FlightInvalidArgumentError(
                f"unsupported location {text!r}: expected one of "
                + ", ".join(f"{s}://" for s in _SCHEMES[:4])
            )
        self._uri = text

    @property
    def uri(self) -> bytes:
        """The URI, as bytes (pyarrow's type)."""
        return self._uri.encode()

    @property
    def scheme(self) -> str:
        return self._uri.split("://", 1)[0]

    @property
    def is_tls(self) -> bool:
        return self.scheme == "grpc+tls"

    @property
    def host(self) -> str | None:
        return urlsplit(self._uri).hostname

    @property
    def port(self) -> int | None:
        return urlsplit(self._uri).port

    @property
    def path(self) -> str:
        """For ``grpc+unix`` locations: the socket path."""
        return self._uri.split("://", 1)[1]

    def grpc_target(self) -> str:
        """The target string grpcio dials or binds for this location."""
        if self.scheme == "grpc+unix":
            return f"unix:{self.path}"
        parts = urlsplit(self._uri)
        if parts.port is None:
            raise FlightInvalidArgumentError(f"location {self._uri!r} has no port")
        return f"{_host_text(parts.hostname or 'localhost')}:{parts.port}"

    @staticmethod
    def for_grpc_tcp(host: str | bytes, port: int) -> Location:
        return Location(f"grpc+tcp://{_host_text(host)}:{int(port)}")

    @staticmethod
    def for_grpc_tls(host: str | bytes, port: int) -> Location:
        return Location(f"grpc+tls://{_host_text(host)}:{int(port)}")

    @staticmethod
    def for_grpc_unix(path: str | bytes) -> Location:
        text = path.decode() if isinstance(path, bytes) else str(path)
        return Location(f"grpc+unix://{text}")

    def equals(self, other: Location) -> bool:
        return isinstance(other, Location) and other._uri == self._uri

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and other._uri == self._uri

    def __hash__(self) -> int:
        return hash(self._uri)

    def __repr__(self) -> str:
        return f"<flight_secure.Location {self._uri}>"

    def __str__(self) -> str:
        return self._uri


def _host_text(host: str | bytes) -> str:
    text = host.decode() if isinstance(host, bytes) else str(host)
    return f"[{text}]" if ":" in text and not text.startswith("[") else text


class DescriptorType(enum.Enum):
    """What a :class:`FlightDescriptor` holds."""

    UNKNOWN = 0
    PATH = 1
    CMD = 2


class FlightDescriptor:
    """Names a flight: a path of strings, or an opaque command."""

    __slots__ = ("_command", "_path", "_type")

    def __init__(self) -> None:
        self._type = DescriptorType.UNKNOWN
        self._command: bytes | None = None
        self._path: list[bytes] | None = None

    @staticmethod
    def for_path(*path: str | bytes) -> FlightDescriptor:
        if len(path) == 1 and isinstance(path[0], list | tuple):
            path = tuple(path[0])
        descriptor = FlightDescriptor()
        descriptor._type = DescriptorType.PATH
        descriptor._path = [to_bytes(p) for p in path]
        return descriptor

    @staticmethod
    def for_command(command: BytesLike) -> FlightDescriptor:
        descriptor = FlightDescriptor()
        descriptor._type = DescriptorType.CMD
        descriptor._command = to_bytes(command)
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
        return (
            isinstance(other, FlightDescriptor)
            and other._type == self._type
            and other._path == self._path
            and other._command == self._command
        )

    def __hash__(self) -> int:
        return hash((self._type, tuple(self._path or ()), self._command))

    def __repr__(self) -> str:
        if self._type is DescriptorType.PATH:
            return f"<flight_secure.FlightDescriptor path: {self._path!r}>"
        return f"<flight_secure.FlightDescriptor command: {self._command!r}>"


class Ticket:
    """An opaque token that redeems a stream with DoGet."""

    __slots__ = ("_ticket",)

    def __init__(self, ticket: BytesLike) -> None:
        self._ticket = to_bytes(ticket)

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
        return isinstance(other, Ticket) and other._ticket == self._ticket

    def __hash__(self) -> int:
        return hash(self._ticket)

    def __repr__(self) -> str:
        return f"<flight_secure.Ticket ticket={self._ticket!r}>"


def _timestamp_to_proto(value: Any, target: Any) -> None:
    if value is None:
        return
    if isinstance(value, pa.TimestampScalar):
        value = value.as_py()
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        target.FromDatetime(value)
    else:
        raise TypeError("expiration_time must be a datetime or pyarrow timestamp scalar")


def _timestamp_from_proto(message: Any, field: str) -> pa.TimestampScalar | None:
    if not message.HasField(field):
        return None
    ts = getattr(message, field)
    nanos = ts.seconds * 1_000_000_000 + ts.nanos
    return pa.scalar(nanos, type=pa.timestamp("ns", tz="UTC"))


class FlightEndpoint:
    """A ticket and the locations where it can be redeemed."""

    def __init__(
        self,
        ticket: Ticket | BytesLike,
        locations: Iterable[Location | str | bytes],
        expiration_time: Any = None,
        app_metadata: BytesLike = b"",
    ) -> None:
        self.ticket = ticket if isinstance(ticket, Ticket) else Ticket(ticket)
        self.locations = [loc if isinstance(loc, Location) else Location(loc) for loc in locations]
        self.expiration_time = expiration_time
        self.app_metadata = to_bytes(app_metadata)

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

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FlightEndpoint)
            and other.ticket == self.ticket
            and other.locations == self.locations
            and other.app_metadata == self.app_metadata
        )

    def __repr__(self) -> str:
        return f"<flight_secure.FlightEndpoint ticket={self.ticket!r} locations={self.locations!r}>"


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


class FlightInfo:
    """How to fetch a flight: its schema, descriptor, endpoints and size."""

    def __init__(
        self,
        schema: pa.Schema | None,
        descriptor: FlightDescriptor,
        endpoints: Sequence[FlightEndpoint],
        total_records: int | None = None,
        total_bytes: int | None = None,
        ordered: bool = False,
        app_metadata: BytesLike = b"",
    ) -> None:
        self._schema = schema if schema is not None else pa.schema([])
        self._schema_bytes: bytes | None = None
        self.descriptor = descriptor
        self.endpoints = list(endpoints)
        self.total_records = -1 if total_records is None else int(total_records)
        self.total_bytes = -1 if total_bytes is None else int(total_bytes)
        self.ordered = bool(ordered)
        self.app_metadata = to_bytes(app_metadata)

    @property
    def schema(self) -> pa.Schema:
        if self._schema is None:
            self._schema = deserialize_schema(self._schema_bytes or b"")
        return self._schema

    def _to_proto(self) -> pb.FlightInfo:
        return pb.FlightInfo(
            schema=self._schema_bytes
            if self._schema_bytes is not None
            else serialize_schema(self._schema),
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
        info._schema = None
        info._schema_bytes = message.schema
        return info

    def serialize(self) -> bytes:
        return self._to_proto().SerializeToString()

    @classmethod
    def deserialize(cls, serialized: BytesLike) -> FlightInfo:
        return cls._from_proto(_parse(pb.FlightInfo, serialized))

    def __repr__(self) -> str:
        return (
            f"<flight_secure.FlightInfo descriptor={self.descriptor!r} "
            f"endpoints={len(self.endpoints)} total_records={self.total_records}>"
        )


class PollInfo:
    """Progress of a long-running query, as returned by PollFlightInfo."""

    def __init__(
        self,
        info: FlightInfo | None,
        descriptor: FlightDescriptor | None = None,
        progress: float | None = None,
        expiration_time: Any = None,
    ) -> None:
        if progress is not None and not 0.0 <= progress <= 1.0:
            raise ValueError("PollInfo progress must be within [0.0, 1.0]")
        self.info = info
        self.descriptor = descriptor
        self.progress = progress
        self.expiration_time = expiration_time

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
    """The answer to GetSchema."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema

    def serialize(self) -> bytes:
        return pb.SchemaResult(schema=serialize_schema(self.schema)).SerializeToString()

    @classmethod
    def deserialize(cls, serialized: BytesLike) -> SchemaResult:
        return cls(deserialize_schema(_parse(pb.SchemaResult, serialized).schema))


class Action:
    """A named request to the server's DoAction, with an opaque body."""

    __slots__ = ("_body", "_type")

    def __init__(self, action_type: str | bytes, buf: BytesLike | None = None) -> None:
        self._type = action_type.decode() if isinstance(action_type, bytes) else str(action_type)
        self._body = to_bytes(buf)

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

    def __repr__(self) -> str:
        return f"<flight_secure.Action type={self._type!r} body=({len(self._body)} bytes)>"


class ActionType(NamedTuple):
    """An action the server offers, with a description."""

    type: str
    description: str

    def make_action(self, buf: BytesLike | None = None) -> Action:
        return Action(self.type, buf)


class Result:
    """One result of DoAction: an opaque body."""

    __slots__ = ("_body",)

    def __init__(self, buf: BytesLike) -> None:
        self._body = to_bytes(buf)

    @property
    def body(self) -> pa.Buffer:
        return pa.py_buffer(self._body)

    def serialize(self) -> bytes:
        return pb.Result(body=self._body).SerializeToString()

    @classmethod
    def deserialize(cls, serialized: BytesLike) -> Result:
        return cls(_parse(pb.Result, serialized).body)

    def __repr__(self) -> str:
        return f"<flight_secure.Result body=({len(self._body)} bytes)>"


class BasicAuth:
    """Username and password as the BasicAuth handshake payload. Never printed."""

    __slots__ = ("_password", "_username")

    def __init__(self, username: str | bytes | None = None, password: str | bytes | None = None):
        self._username = to_bytes(username)
        self._password = to_bytes(password)

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

    def __repr__(self) -> str:
        return f"<flight_secure.BasicAuth username={self._username!r} password=***>"


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
    try:
        return message_type.FromString(to_bytes(serialized))
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise FlightInvalidArgumentError(
            f"malformed {message_type.DESCRIPTOR.name} message: {exc}"
        ) from None
