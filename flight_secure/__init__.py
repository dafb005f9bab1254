"""flight_secure: secure Apache Arrow Flight services in Python.

The public names mirror ``pyarrow.flight``: ``import flight_secure as flight``
runs code written for pyarrow.flight unchanged. Security features live in
:mod:`flight_secure.auth` and :mod:`flight_secure.certs`.
"""

import logging as _logging
import os as _os

# gRPC's C core prints an INFO line to stderr for every failed TLS handshake; keep
# only its errors unless the application chose a verbosity (must precede `import grpc`).
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from flight_secure.auth.base import (
    ClientAuthHandler,
    ClientAuthReader,
    ClientAuthSender,
    ServerAuthHandler,
    ServerAuthReader,
    ServerAuthSender,
)
from flight_secure.client import FlightCallOptions, FlightClient, connect
from flight_secure.context import ServerCallContext
from flight_secure.errors import (
    FlightAlreadyExistsError,
    FlightCancelledError,
    FlightError,
    FlightInternalError,
    FlightInvalidArgumentError,
    FlightNotFoundError,
    FlightResourceExhaustedError,
    FlightServerError,
    FlightTimedOutError,
    FlightUnauthenticatedError,
    FlightUnauthorizedError,
    FlightUnavailableError,
    FlightUnimplementedError,
    FlightWriteSizeExceededError,
)
from flight_secure.middleware import (
    ClientMiddleware,
    ClientMiddlewareFactory,
    ServerMiddleware,
    ServerMiddlewareFactory,
)
from flight_secure.server import FlightServerBase
from flight_secure.server_options import FlightServerOptions
from flight_secure.streams import (
    FlightDataStream,
    FlightMetadataReader,
    FlightMetadataWriter,
    FlightStreamChunk,
    FlightStreamReader,
    FlightStreamWriter,
    GeneratorStream,
    MetadataRecordBatchReader,
    MetadataRecordBatchWriter,
    RecordBatchStream,
)
from flight_secure.tracing import TracingServerMiddlewareFactory
from flight_secure.types import (
    Action,
    ActionType,
    BasicAuth,
    CallInfo,
    CertKeyPair,
    DescriptorType,
    FlightDescriptor,
    FlightEndpoint,
    FlightInfo,
    FlightMethod,
    Location,
    PollInfo,
    Result,
    SchemaResult,
    Ticket,
)

__version__ = "0.1.0"

# A library logs; the application decides where logs go (no stray stderr output).
_logging.getLogger("flight_secure").addHandler(_logging.NullHandler())

__all__ = [
    "Action",
    "ActionType",
    "BasicAuth",
    "CallInfo",
    "CertKeyPair",
    "ClientAuthHandler",
    "ClientAuthReader",
    "ClientAuthSender",
    "ClientMiddleware",
    "ClientMiddlewareFactory",
    "DescriptorType",
    "FlightAlreadyExistsError",
    "FlightCallOptions",
    "FlightCancelledError",
    "FlightClient",
    "FlightDataStream",
    "FlightDescriptor",
    "FlightEndpoint",
    "FlightError",
    "FlightInfo",
    "FlightInternalError",
    "FlightInvalidArgumentError",
    "FlightMetadataReader",
    "FlightMetadataWriter",
    "FlightMethod",
    "FlightNotFoundError",
    "FlightResourceExhaustedError",
    "FlightServerBase",
    "FlightServerError",
    "FlightServerOptions",
    "FlightStreamChunk",
    "FlightStreamReader",
    "FlightStreamWriter",
    "FlightTimedOutError",
    "FlightUnauthenticatedError",
    "FlightUnauthorizedError",
    "FlightUnavailableError",
    "FlightUnimplementedError",
    "FlightWriteSizeExceededError",
    "GeneratorStream",
    "Location",
    "MetadataRecordBatchReader",
    "MetadataRecordBatchWriter",
    "PollInfo",
    "RecordBatchStream",
    "Result",
    "SchemaResult",
    "ServerAuthHandler",
    "ServerAuthReader",
    "ServerAuthSender",
    "ServerCallContext",
    "ServerMiddleware",
    "ServerMiddlewareFactory",
    "Ticket",
    "TracingServerMiddlewareFactory",
    "connect",
]
