"""flight_secure's Flight errors and pyarrow.flight's, in one table each way.

pyarrow's engine turns an exception raised in a Python callback into a gRPC
status only when it is one of *pyarrow's* Flight errors; any other exception
reaches the client as a status whose message carries the Python traceback. So
everything the adapter raises into pyarrow goes through :func:`to_pyarrow`, and
what a pyarrow-style handler raises comes back through :func:`from_pyarrow`.

Arrow's C++ server has no status for RESOURCE_EXHAUSTED: a
:class:`~flight_secure.errors.FlightResourceExhaustedError` ("retry shortly") is
sent as UNAVAILABLE. Flight errors pyarrow has no class for (INVALID_ARGUMENT,
NOT_FOUND, ALREADY_EXISTS, UNIMPLEMENTED) are sent as UNKNOWN with their message:
the only other way pyarrow has to send them attaches the traceback.
"""

from __future__ import annotations

import pyarrow.flight as pa_flight

from flight_secure.errors import (
    FlightCancelledError,
    FlightError,
    FlightInternalError,
    FlightResourceExhaustedError,
    FlightServerError,
    FlightTimedOutError,
    FlightUnauthenticatedError,
    FlightUnauthorizedError,
    FlightUnavailableError,
)

__all__ = ["from_pyarrow", "to_pyarrow"]

#: flight_secure's error class -> pyarrow's; subclasses resolve through the MRO.
_TO_PYARROW: dict[type[BaseException], type[pa_flight.FlightError]] = {
    FlightResourceExhaustedError: pa_flight.FlightUnavailableError,
    FlightUnauthenticatedError: pa_flight.FlightUnauthenticatedError,
    FlightUnauthorizedError: pa_flight.FlightUnauthorizedError,
    FlightUnavailableError: pa_flight.FlightUnavailableError,
    FlightTimedOutError: pa_flight.FlightTimedOutError,
    FlightCancelledError: pa_flight.FlightCancelledError,
    FlightInternalError: pa_flight.FlightInternalError,
    FlightServerError: pa_flight.FlightServerError,
}

#: pyarrow's error class -> flight_secure's; subclasses resolve through the MRO.
_FROM_PYARROW: dict[type[BaseException], type[FlightError]] = {
    pa_flight.FlightUnauthenticatedError: FlightUnauthenticatedError,
    pa_flight.FlightUnauthorizedError: FlightUnauthorizedError,
    pa_flight.FlightUnavailableError: FlightUnavailableError,
    pa_flight.FlightTimedOutError: FlightTimedOutError,
    pa_flight.FlightCancelledError: FlightCancelledError,
    pa_flight.FlightInternalError: FlightInternalError,
    pa_flight.FlightServerError: FlightServerError,
}


def _lookup(table: dict, exc: BaseException, default: type) -> type:
    for klass in type(exc).__mro__:
        found = table.get(klass)
        if found is not None:
            return found
    return default


def to_pyarrow(exc: BaseException) -> pa_flight.FlightError:
    """The pyarrow Flight error to raise into pyarrow's engine for ``exc``.

    A pyarrow Flight error is returned as it is. flight_secure's keep their
    message and ``extra_info`` under pyarrow's class for the same status (see the
    module docstring for the statuses pyarrow cannot send). Any other exception
    becomes UNKNOWN with ``"<ExceptionType>: <message>"``, never a traceback.
    """
    if isinstance(exc, pa_flight.FlightError):
        return exc
    if isinstance(exc, FlightError):
        klass = _lookup(_TO_PYARROW, exc, pa_flight.FlightServerError)
        return klass(str(exc), exc.extra_info)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return pa_flight.FlightServerError(text)


def from_pyarrow(exc: pa_flight.FlightError) -> FlightError:
    """flight_secure's error for a pyarrow Flight error (same status, message, extra_info)."""
    klass = _lookup(_FROM_PYARROW, exc, FlightServerError)
    return klass(str(exc), getattr(exc, "extra_info", b"") or b"")
