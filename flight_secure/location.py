"""Flight locations: URIs of any scheme, parsed as RFC 3986 and Arrow's ``Location`` parse them.

A :class:`Location` holds any absolute URI, as Arrow's do: a ``FlightEndpoint`` may name
``https://...`` (data served over HTTP) or ``arrow-flight-reuse-connection://?`` next to
gRPC servers. Only dialling or binding needs a gRPC scheme (:meth:`Location.grpc_target`).

A string that is not a URI is refused with :class:`FlightInvalidArgumentError` (an
``ArrowInvalid``) in Arrow's words, which programs match on:

* ``Cannot parse URI: '<uri>' due to syntax error at ...`` (RFC 3986 grammar),
* ``URI has empty scheme: '<uri>'`` (a relative reference such as ``/path``),
* ``Invalid port number '<port>' in URI '<uri>'`` (above 65535).
"""

from __future__ import annotations

import ipaddress
import string
from typing import NamedTuple

from flight_secure.errors import FlightInvalidArgumentError, FlightNotFoundError

#: Schemes a location can be dialled or served at, through gRPC.
GRPC_SCHEMES = ("grpc", "grpc+tcp", "grpc+tls", "grpc+unix")
#: The port gRPC (and so Arrow's clients) dial when a TCP location names none.
GRPC_DEFAULT_PORT = 443
#: The Flight spec's URI for "redeem this ticket where the FlightInfo came from".
REUSE_CONNECTION_URI = "arrow-flight-reuse-connection://?"

_ALPHA = frozenset(string.ascii_letters)
_DIGIT = frozenset(string.digits)
_HEX = frozenset(string.hexdigits)
_SCHEME_CHARS = _ALPHA | _DIGIT | frozenset("+-.")
_UNRESERVED = _ALPHA | _DIGIT | frozenset("-._~")
_SUB_DELIMS = frozenset("!$&'()*+,;=")
_USERINFO = _UNRESERVED | _SUB_DELIMS | frozenset(":")
_REG_NAME = _UNRESERVED | _SUB_DELIMS
_PCHAR = _UNRESERVED | _SUB_DELIMS | frozenset(":@")
_PATH = _PCHAR | frozenset("/")
_QUERY = _PCHAR | frozenset("/?")
_IP_FUTURE = _UNRESERVED | _SUB_DELIMS | frozenset(":")


class UriParts(NamedTuple):
    """The pieces of a URI that Flight uses; ``host`` is without IPv6 brackets."""

    scheme: str
    host: str | None
    port: int | None


class _SyntaxError(Exception):
    """The URI breaks RFC 3986 at ``position`` (``len(text)``: it ended too early)."""

    def __init__(self, position: int) -> None:
        super().__init__(position)
        self.position = position


def parse_uri(text: str) -> UriParts:
    """The scheme, host and port of the absolute URI ``text``.

    Raises :class:`FlightInvalidArgumentError` with Arrow's message for a string that
    is not a URI, a relative reference, or a port above 65535.
    """
    try:
        scheme, host, port_text = _Scanner(text).uri()
    except _SyntaxError as err:
        if err.position < len(text):
            where = f"character {text[err.position]!r} (position {err.position})"
        else:
            where = f"the end (position {err.position})"
        raise FlightInvalidArgumentError(
            f"Cannot parse URI: '{text}' due to syntax error at {where}"
        ) from None
    if not scheme:
        raise FlightInvalidArgumentError(f"URI has empty scheme: '{text}'")
    port = int(port_text) if port_text else None
    if port is not None and port > 65535:
        raise FlightInvalidArgumentError(f"Invalid port number '{port_text}' in URI '{text}'")
    return UriParts(scheme, host, port)


class _Scanner:
    """One left-to-right pass over a URI reference (RFC 3986, section 4.1)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.end = len(text)

    def uri(self) -> tuple[str, str | None, str | None]:
        """(scheme, host, port digits); scheme is "" for a relative reference."""
        scheme, pos = self._scheme()
        host = port = None
        if self.text.startswith("//", pos):
            stop = self._find_any("/?#", pos + 2)
            host, port = self._authority(pos + 2, stop)
            pos = stop
        pos = self._path(pos, first_segment_colon=bool(scheme))
        if pos < self.end and self.text[pos] == "?":
            pos = self._run(pos + 1, _QUERY, stop_at="#")
        if pos < self.end and self.text[pos] == "#":
            pos = self._run(pos + 1, _QUERY, stop_at="")
        if pos < self.end:
            raise _SyntaxError(pos)
        return scheme, host, port

    def _scheme(self) -> tuple[str, int]:
        text = self.text
        if not text or text[0] not in _ALPHA:
            return "", 0
        pos = 1
        while pos < self.end and text[pos] in _SCHEME_CHARS:
            pos += 1
        if pos < self.end and text[pos] == ":":
            return text[:pos], pos + 1
        return "", 0

    def _find_any(self, chars: str, start: int) -> int:
        return min((i for c in chars if (i := self.text.find(c, start)) != -1), default=self.end)

    def _authority(self, start: int, stop: int) -> tuple[str, str | None]:
        text = self.text
        at = text.find("@", start, stop)
        if at != -1:
            self._run(start, _USERINFO, stop_at="@", limit=at)
            start = at + 1
        if start < stop and text[start] == "[":
            close = text.find("]", start, stop)
            if close == -1:
                raise _SyntaxError(stop)
            self._ip_literal(start + 1, close)
            host, pos = text[start + 1 : close], close + 1
        else:
            pos = self._run(start, _REG_NAME, stop_at=":", limit=stop)
            host = text[start:pos]
        port = ""
        if pos < stop:
            if text[pos] != ":":
                raise _SyntaxError(pos)
            for index in range(pos + 1, stop):
                if text[index] not in _DIGIT:
                    raise _SyntaxError(index)
            port = text[pos + 1 : stop]
        return host, port

    def _ip_literal(self, start: int, stop: int) -> None:
        literal = self.text[start:stop]
        if literal[:1] in ("v", "V"):
            version, dot, rest = literal[1:].partition(".")
            valid = bool(version) and set(version) <= _HEX and bool(dot) and bool(rest)
            valid = valid and set(rest) <= _IP_FUTURE
        else:
            try:
                valid = "%" not in literal and bool(ipaddress.IPv6Address(literal))
            except ValueError:
                valid = False
        if not valid:
            raise _SyntaxError(start)

    def _path(self, pos: int, first_segment_colon: bool) -> int:
        """A path; in a relative reference its first segment may not hold a ':'."""
        if not first_segment_colon:
            segment_end = self._find_any("/?#", pos)
            colon = self.text.find(":", pos, segment_end)
            if colon != -1:
                self._run(pos, _PATH, stop_at="?#", limit=colon)
                raise _SyntaxError(colon)
        return self._run(pos, _PATH, stop_at="?#")

    def _run(self, pos: int, allowed: frozenset[str], stop_at: str, limit: int = -1) -> int:
        """Where the run of ``allowed`` characters (or %XX escapes) from ``pos`` stops:
        at one of ``stop_at``, at ``limit`` or at the end; anything else is an error."""
        text = self.text
        limit = self.end if limit == -1 else limit
        while pos < limit:
            char = text[pos]
            if char in stop_at:
                return pos
            if char == "%":
                for index in (pos + 1, pos + 2):
                    if index >= self.end or text[index] not in _HEX:
                        raise _SyntaxError(index)
                pos += 3
            elif char in allowed:
                pos += 1
            else:
                raise _SyntaxError(pos)
        return pos


def _text(value: object, name: str) -> str:
    """``value`` (str, or UTF-8 bytes / bytearray) as str; TypeError for other types."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "surrogateescape")
    raise TypeError(f"{name} must be str or bytes, not {type(value).__name__}")


class Location:
    """Where a flight can be fetched: any absolute URI.

    ``Location(uri)`` takes str or bytes (or a Location) and raises
    FlightInvalidArgumentError if it is not a URI with a scheme, TypeError for other
    types. Flight servers are reached at ``grpc[+tcp|+tls]://host:port`` and
    ``grpc+unix://path``; :meth:`reuse_connection` is the Flight spec's
    ``arrow-flight-reuse-connection://?`` ("redeem the ticket on the connection that
    returned the FlightInfo").
    """

    __slots__ = ("_parts", "_uri")

    def __init__(self, uri: str | bytes | Location) -> None:
        if isinstance(uri, Location):
            self._uri, self._parts = uri._uri, uri._parts
            return
        self._uri = _text(uri, "uri")
        self._parts = parse_uri(self._uri)

    @property
    def uri(self) -> bytes:
        """The URI, as bytes (pyarrow's type)."""
        return self._uri.encode("utf-8", "surrogateescape")

    @property
    def scheme(self) -> str:
        """The scheme, in lower case (schemes are case-insensitive)."""
        return self._parts.scheme.lower()

    @property
    def is_tls(self) -> bool:
        return self.scheme == "grpc+tls"

    @property
    def host(self) -> str | None:
        return self._parts.host

    @property
    def port(self) -> int | None:
        return self._parts.port

    @property
    def path(self) -> str:
        """For ``grpc+unix`` locations: the socket path (what follows ``://``)."""
        return self._uri.split("://", 1)[-1]

    def grpc_target(self, default_port: int | None = None) -> str:
        """The target string grpcio dials or binds for this location.

        A TCP location without a port gets ``default_port``. Raises
        FlightNotFoundError (an ``ArrowKeyError``, as pyarrow raises) for a scheme
        gRPC cannot serve, and FlightInvalidArgumentError for a TCP location
        without a port when ``default_port`` is None.
        """
        scheme = self.scheme
        if scheme == "grpc+unix":
            return f"unix:{self.path}"
        if scheme not in GRPC_SCHEMES:
            raise FlightNotFoundError(_no_transport(scheme))
        port = self.port if self.port is not None else default_port
        if port is None:
            raise FlightInvalidArgumentError(f"location {self._uri!r} has no port")
        return f"{_host_text(self.host or 'localhost')}:{port}"

    @staticmethod
    def for_grpc_tcp(host: str | bytes, port: int) -> Location:
        return Location(f"grpc+tcp://{_host_text(host)}:{_port(port)}")

    @staticmethod
    def for_grpc_tls(host: str | bytes, port: int) -> Location:
        return Location(f"grpc+tls://{_host_text(host)}:{_port(port)}")

    @staticmethod
    def for_grpc_unix(path: str | bytes) -> Location:
        return Location(f"grpc+unix://{_text(path, 'path')}")

    @staticmethod
    def reuse_connection() -> Location:
        """``arrow-flight-reuse-connection://?``: the ticket may be redeemed on the
        connection that returned the FlightInfo (no new connection is needed)."""
        return Location(REUSE_CONNECTION_URI)

    def equals(self, other: Location) -> bool:
        return self == other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Location):
            return NotImplemented
        return other._uri == self._uri

    def __hash__(self) -> int:
        return hash(self._uri)

    def __repr__(self) -> str:
        return f"<flight_secure.Location {self.uri!r}>"

    def __str__(self) -> str:
        return self._uri


def _no_transport(scheme: str) -> str:
    if scheme == REUSE_CONNECTION_URI.split(":", 1)[0]:
        return (
            f"No transport implementation for {scheme}: {REUSE_CONNECTION_URI} names no "
            "server; redeem the ticket with the client that returned the FlightInfo"
        )
    return (
        f"No transport implementation for {scheme}: only "
        + ", ".join(f"{s}://" for s in GRPC_SCHEMES)
        + " locations can be dialled or served"
    )


def _host_text(host: str | bytes) -> str:
    text = _text(host, "host")
    return f"[{text}]" if ":" in text and not text.startswith("[") else text


def _port(port: int) -> int:
    if isinstance(port, int | float):
        return int(port)
    raise TypeError(f"port must be an int, not {type(port).__name__}")
