"""Flight errors and their one mapping to and from gRPC status codes.

The tables :data:`_CODE_FOR_ERROR` / :data:`_ERROR_FOR_CODE` are the only place where
Flight error classes and gRPC status codes meet; :func:`server_status` says how a
server reports any exception, as Arrow's servers do. The classes mirror
``pyarrow.flight``'s names and, where pyarrow raises a plain Arrow error for a status
(``INVALID_ARGUMENT`` -> ``ArrowInvalid``, ``NOT_FOUND`` -> ``ArrowKeyError``,
``UNIMPLEMENTED`` -> ``ArrowNotImplementedError``), our class inherits from that
Arrow error too, so ``except`` clauses written for pyarrow keep working.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import grpc
import pyarrow as pa

#: Trailer that carries :attr:`FlightError.extra_info`, as Arrow's implementations use it.
EXTRA_INFO_TRAILER = "grpc-status-details-bin"
#: Trailers in which Arrow's servers send the original Arrow status code and message;
#: Arrow's clients rebuild the exact error (and its extra_info) from them.
ARROW_STATUS_TRAILER = "x-arrow-status"
ARROW_MESSAGE_TRAILER = "x-arrow-status-message-bin"
ARROW_DETAIL_TRAILER = "x-arrow-status-detail-bin"


class FlightError(pa.ArrowException):
    """Base of every Flight error; ``extra_info`` is opaque bytes sent with the status."""

    def __init__(self, message: str = "", extra_info: bytes = b"") -> None:
        super().__init__(message)
        self.extra_info = bytes(extra_info or b"")

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class FlightInternalError(FlightError):
    """The server or transport failed internally (INTERNAL, ABORTED, DATA_LOSS)."""


class FlightTimedOutError(FlightError):
    """The call's deadline passed (DEADLINE_EXCEEDED)."""


class FlightCancelledError(FlightError, pa.ArrowCancelled):
    """The call was cancelled (CANCELLED)."""


class FlightUnauthenticatedError(FlightError):
    """No valid credentials were presented (UNAUTHENTICATED)."""


class FlightUnauthorizedError(FlightError):
    """The caller is known but not allowed to do this (PERMISSION_DENIED)."""


class FlightUnavailableError(FlightError):
    """The server could not be reached or is going away (UNAVAILABLE)."""


class FlightServerError(FlightError):
    """The server's handler failed with an error of no more specific kind (UNKNOWN)."""


class FlightWriteSizeExceededError(FlightError, pa.ArrowInvalid):
    """A client write was larger than the client's ``write_size_limit_bytes``.

    An ``ArrowInvalid``, as pyarrow's is; ``limit`` and ``actual`` are byte counts.
    """

    def __init__(self, message: str, limit: int, actual: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.actual = actual


class FlightInvalidArgumentError(FlightError, pa.ArrowInvalid):
    """The request was malformed (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE)."""


class FlightResourceExhaustedError(FlightInvalidArgumentError):
    """A size or rate limit was hit (RESOURCE_EXHAUSTED)."""


class FlightNotFoundError(FlightError, pa.ArrowKeyError):
    """The ticket, descriptor or action is not known (NOT_FOUND)."""


class FlightAlreadyExistsError(FlightError):
    """The thing to be created exists already (ALREADY_EXISTS)."""


class FlightUnimplementedError(FlightError, pa.ArrowNotImplementedError):
    """The server does not implement this RPC or action (UNIMPLEMENTED)."""


_C = grpc.StatusCode

#: Flight error class -> the status a server sends for it. Subclasses resolve through
#: the MRO; other exceptions get the status of their Arrow code (:func:`server_status`).
_CODE_FOR_ERROR: dict[type[BaseException], grpc.StatusCode] = {
    FlightResourceExhaustedError: _C.RESOURCE_EXHAUSTED,
    FlightInvalidArgumentError: _C.INVALID_ARGUMENT,
    FlightNotFoundError: _C.NOT_FOUND,
    FlightAlreadyExistsError: _C.ALREADY_EXISTS,
    FlightUnimplementedError: _C.UNIMPLEMENTED,
    FlightInternalError: _C.INTERNAL,
    FlightTimedOutError: _C.DEADLINE_EXCEEDED,
    FlightCancelledError: _C.CANCELLED,
    FlightUnauthenticatedError: _C.UNAUTHENTICATED,
    FlightUnauthorizedError: _C.PERMISSION_DENIED,
    FlightUnavailableError: _C.UNAVAILABLE,
    FlightServerError: _C.UNKNOWN,
    FlightWriteSizeExceededError: _C.RESOURCE_EXHAUSTED,
    FlightError: _C.UNKNOWN,
}

#: Flight error class -> the status detail Arrow's servers send with it (the name of
#: Arrow's Flight status code); classes Arrow has no Flight status for send none.
_DETAIL_FOR_ERROR: dict[type[BaseException], str] = {
    FlightInternalError: "Internal",
    FlightTimedOutError: "TimedOut",
    FlightCancelledError: "Cancelled",
    FlightUnauthenticatedError: "Unauthenticated",
    FlightUnauthorizedError: "Unauthorized",
    FlightUnavailableError: "Unavailable",
    FlightServerError: "Failed",
}

#: gRPC status -> the error class a client raises for it.
_ERROR_FOR_CODE: dict[grpc.StatusCode, type[FlightError]] = {
    _C.CANCELLED: FlightCancelledError,
    _C.UNKNOWN: FlightServerError,
    _C.INVALID_ARGUMENT: FlightInvalidArgumentError,
    _C.DEADLINE_EXCEEDED: FlightTimedOutError,
    _C.NOT_FOUND: FlightNotFoundError,
    _C.ALREADY_EXISTS: FlightAlreadyExistsError,
    _C.PERMISSION_DENIED: FlightUnauthorizedError,
    _C.RESOURCE_EXHAUSTED: FlightResourceExhaustedError,
    _C.FAILED_PRECONDITION: FlightInvalidArgumentError,
    _C.ABORTED: FlightInternalError,
    _C.OUT_OF_RANGE: FlightInvalidArgumentError,
    _C.UNIMPLEMENTED: FlightUnimplementedError,
    _C.INTERNAL: FlightInternalError,
    _C.UNAVAILABLE: FlightUnavailableError,
    _C.DATA_LOSS: FlightInternalError,
    _C.UNAUTHENTICATED: FlightUnauthenticatedError,
}


#: gRPC status -> how Arrow's clients word a failed call whose server sent no Arrow
#: status (a non-Arrow server, or gRPC itself: deadline, unreachable server); programs
#: match on these words. Arrow's gRPC transport table, word for word.
_ARROW_WORDING: dict[grpc.StatusCode, str] = {
    _C.CANCELLED: "Flight cancelled call, with message: ",
    _C.UNKNOWN: "Flight RPC failed with message: ",
    _C.INVALID_ARGUMENT: "Flight returned invalid argument error, with message: ",
    _C.DEADLINE_EXCEEDED: "Flight returned timeout error, with message: ",
    _C.NOT_FOUND: "Flight returned not found error, with message: ",
    _C.ALREADY_EXISTS: "Flight returned already exists error, with message: ",
    _C.PERMISSION_DENIED: "Flight returned unauthorized error, with message: ",
    _C.RESOURCE_EXHAUSTED: "gRPC returned resource exhausted error, with message: ",
    _C.FAILED_PRECONDITION: "gRPC returned precondition failed error, with message: ",
    _C.ABORTED: "gRPC returned aborted error, with message: ",
    _C.OUT_OF_RANGE: "gRPC returned out-of-range error, with message: ",
    _C.UNIMPLEMENTED: "Flight returned unimplemented error, with message: ",
    _C.INTERNAL: "Flight returned internal error, with message: ",
    _C.UNAVAILABLE: "Flight returned unavailable error, with message: ",
    _C.DATA_LOSS: "gRPC returned data loss error, with message: ",
    _C.UNAUTHENTICATED: "Flight returned unauthenticated error, with message: ",
}


class ArrowStatusCode(enum.IntEnum):
    """Arrow C++'s ``StatusCode`` values (arrow/status.h), as sent in ``x-arrow-status``."""

    OUT_OF_MEMORY = 1
    KEY_ERROR = 2
    TYPE_ERROR = 3
    INVALID = 4
    IO_ERROR = 5
    INDEX_ERROR = 7
    UNKNOWN_ERROR = 9
    NOT_IMPLEMENTED = 10
    ALREADY_EXISTS = 45


_A = ArrowStatusCode

#: Error class -> the Arrow status code Arrow's servers send for it: Flight errors
#: travel as IOError (the Flight detail carried by the gRPC code and the status
#: detail), other exceptions as pyarrow's server converts a Python exception.
_ARROW_CODE_FOR_ERROR: dict[type[BaseException], ArrowStatusCode] = {
    FlightInvalidArgumentError: _A.INVALID,
    FlightNotFoundError: _A.KEY_ERROR,
    FlightAlreadyExistsError: _A.ALREADY_EXISTS,
    FlightUnimplementedError: _A.NOT_IMPLEMENTED,
    FlightError: _A.IO_ERROR,
    MemoryError: _A.OUT_OF_MEMORY,
    IndexError: _A.INDEX_ERROR,
    KeyError: _A.KEY_ERROR,
    TypeError: _A.TYPE_ERROR,
    ValueError: _A.INVALID,
    OverflowError: _A.INVALID,
    OSError: _A.IO_ERROR,
    NotImplementedError: _A.NOT_IMPLEMENTED,
}

#: Arrow status code -> the gRPC status Arrow's servers send for an error without a
#: Flight status; every other code is sent as UNKNOWN.
_CODE_FOR_ARROW_CODE: dict[ArrowStatusCode, grpc.StatusCode] = {
    _A.NOT_IMPLEMENTED: _C.UNIMPLEMENTED,
    _A.INVALID: _C.INVALID_ARGUMENT,
    _A.KEY_ERROR: _C.NOT_FOUND,
    _A.ALREADY_EXISTS: _C.ALREADY_EXISTS,
}

#: The status detail sent for an exception that is no Flight error: pyarrow's server
#: sends "Python exception: " and the traceback; this one names the type only.
PYTHON_DETAIL = "Python exception: {}"


def _by_class(table: dict[type[BaseException], Any], exc: BaseException, default: Any) -> Any:
    """What ``table`` gives the nearest of ``exc``'s classes (through its MRO), or ``default``."""
    return next((table[klass] for klass in type(exc).__mro__ if klass in table), default)


class ServerStatus(NamedTuple):
    """How a server reports an exception, as Arrow's servers report it.

    ``code`` is the gRPC status; ``message`` the exception's own text; ``detail``
    the status detail (a Flight error's Arrow status name such as
    ``"Unauthenticated"``, ``"Python exception: TypeError"`` for other exceptions,
    or None); ``arrow_code`` the Arrow status code; ``extra_info`` a Flight
    error's bytes. No traceback is ever part of it (the server logs that instead:
    at ERROR for UNKNOWN and INTERNAL, at DEBUG for the others).
    """

    code: grpc.StatusCode
    message: str
    detail: str | None
    arrow_code: ArrowStatusCode
    extra_info: bytes

    @property
    def text(self) -> str:
        """The gRPC status message: ``message``, then ``". Detail: <detail>"``."""
        return self.message if self.detail is None else f"{self.message}. Detail: {self.detail}"

    def trailers(self) -> list[tuple[str, str | bytes]]:
        """Trailers that let Arrow's own clients rebuild the error as their servers send it."""
        trailers: list[tuple[str, str | bytes]] = [
            (ARROW_STATUS_TRAILER, str(int(self.arrow_code))),
            (ARROW_MESSAGE_TRAILER, self.message.encode()),
        ]
        if self.detail is not None:
            trailers.append((ARROW_DETAIL_TRAILER, self.detail.encode()))
        if self.extra_info:
            trailers.append((EXTRA_INFO_TRAILER, self.extra_info))
        return trailers


def server_status(exc: BaseException) -> ServerStatus:
    """The status a server sends for an exception its handler raised.

    A Flight error keeps its class's status (:data:`_CODE_FOR_ERROR`), message and
    ``extra_info``. Any other exception is sent as pyarrow's server sends it: the
    gRPC status of its Arrow code (a TypeError is UNKNOWN, which clients raise as
    FlightServerError; a ValueError INVALID_ARGUMENT), its text as the message, and
    its type's name as the detail.
    """
    arrow_code = _by_class(_ARROW_CODE_FOR_ERROR, exc, _A.UNKNOWN_ERROR)
    if isinstance(exc, FlightError):
        return ServerStatus(_by_class(_CODE_FOR_ERROR, exc, _C.UNKNOWN), str(exc),
                            _by_class(_DETAIL_FOR_ERROR, exc, None), arrow_code,
                            exc.extra_info)
    return ServerStatus(_CODE_FOR_ARROW_CODE.get(arrow_code, _C.UNKNOWN), str(exc),
                        PYTHON_DETAIL.format(type(exc).__name__), arrow_code, b"")


def error_for_status(
    code: grpc.StatusCode, message: str, extra_info: bytes = b""
) -> FlightError:
    """The client-side exception for a failed call's status, message and extra info."""
    return _ERROR_FOR_CODE.get(code, FlightError)(message, extra_info)


def error_from_rpc(err: grpc.RpcError) -> FlightError:
    """Translate a grpcio ``RpcError`` raised on the client into a Flight error.

    Its message is what Arrow's clients say: the server's own Arrow status message
    (with ``. Detail: ...`` when it sent one) if an Arrow server sent it in trailers,
    else gRPC's message after Arrow's words for the code (:data:`_ARROW_WORDING`).
    """
    code = (err.code() if hasattr(err, "code") else None) or _C.UNKNOWN
    details = (err.details() if hasattr(err, "details") else str(err)) or ""
    trailers = dict(err.trailing_metadata() or ()) if hasattr(err, "trailing_metadata") else {}
    extra = trailers.get(EXTRA_INFO_TRAILER, b"")
    message = trailers.get(ARROW_MESSAGE_TRAILER)
    if ARROW_STATUS_TRAILER in trailers and message is not None:
        text = _trailer_text(message)
        detail = trailers.get(ARROW_DETAIL_TRAILER)
        if detail is not None:
            text += f". Detail: {_trailer_text(detail)}"
    else:
        if code == _C.UNAVAILABLE:
            details = describe_unavailable(details)
        wording = _ARROW_WORDING.get(code, f"Flight failed with error code {code.value[0]} "
                                           "and message: ")
        text = wording + details
    return error_for_status(code, text, extra if isinstance(extra, bytes) else b"")


def _trailer_text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def describe_unavailable(details: str) -> str:
    """gRPC's connection-failure detail followed by a sentence that says what failed.

    The first row of :data:`_UNAVAILABLE_HINTS` whose substrings all occur in
    ``details`` (ignoring case, with "_" read as " ") gives the sentence, in
    parentheses after gRPC's text (which stays first, as Arrow's clients show it).
    """
    lowered = details.lower().replace("_", " ")
    for needles, hint in _UNAVAILABLE_HINTS:
        if all(needle in lowered for needle in needles):
            return f"{details} ({hint})"
    return details


_WRONG_HOST = (
    "the server's TLS certificate is not valid for the host name dialled "
    "(see the location's host and override_hostname)"
)
_SERVER_CLOSED_SETUP = (
    "the server closed the connection while it was being set up: a TLS server does this "
    "to a plaintext client (use grpc+tls://), and a mutual-TLS server to a client that "
    "presented no client certificate or one from a CA the server does not trust"
)

#: (substrings that must all occur in gRPC's detail, what they mean), first match wins.
_UNAVAILABLE_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("wrong version number",), "the server does not speak TLS: it is a plaintext "
     "server (use grpc:// to reach it), or the client does not speak TLS to it"),
    (("certificate has expired",), "the server's TLS certificate has expired"),
    (("certificate is not yet valid",), "the server's TLS certificate is not yet valid"),
    (("unable to get local issuer certificate",), "the server's TLS certificate is not "
     "issued by a CA this client trusts (see tls_root_certs)"),
    (("self signed certificate",), "the server's TLS certificate is self-signed and not "
     "trusted by this client (see tls_root_certs)"),
    (("certificate verify failed",), "the server's TLS certificate was not trusted"),
    (("hostname",), _WRONG_HOST),
    (("is not in peer certificate",), _WRONG_HOST),
    (("failed to connect", "socket closed"), _SERVER_CLOSED_SETUP),
    (("connection refused",), "nothing is listening at that address"),
    (("handshake failed",), "the TLS handshake failed"),
    (("failed to connect",), "could not connect to the server"),
    (("socket closed",), "the server closed the connection"),
)
