"""DatasetServer: a Flight server over a :class:`DatasetFolder`, with per-dataset rights.

* ListFlights: one FlightInfo per dataset the caller may read (criteria: a name prefix).
* GetFlightInfo / GetSchema: a descriptor for path ``[name]``: schema, rows, bytes and
  one endpoint whose ticket is the name (no location: read it from this server), or,
  with peers, one endpoint per peer for a share of the rows (:mod:`~flight_secure.cli.spread`).
* DoGet: ticket ``name`` (or a part's ticket); the file is streamed in batches.
* DoPut: descriptor path ``[name]``; the upload becomes ``name.parquet``, atomically.
  Creating a dataset needs the ``write`` right, replacing one ``overwrite``. Without
  ``write`` the refusal is the same whether or not the dataset exists.

With a Flight SQL service (``sql``), CMD descriptors, tickets and actions that carry
Flight SQL messages go to it instead (:mod:`flight_secure.sql`), under the same rights.

Authentication happens before any of this (the server's auth handler); here the
caller is ``context.peer_identity()`` ("anonymous" when the server has none). Every
dataset call is an audit record (:func:`~flight_secure.auth.audit.audit_event`) with
``who``, ``scheme``, ``rpc``, ``dataset`` and ``peer``: ``call allowed`` (INFO) or
``call refused`` (WARNING, with the ``reason``) when the rights are checked, then for
an upload ``upload stored`` (INFO, with ``rows``) or ``upload aborted`` (WARNING, with
the ``reason``). Flight SQL calls are audited by :mod:`flight_secure.sql`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from flight_secure.auth.audit import audit_event
from flight_secure.cli.datasets import DatasetFolder, check_name
from flight_secure.cli.permissions import Permissions
from flight_secure.cli.spread import Part, Spread, rows_of
from flight_secure.context import ServerCallContext
from flight_secure.errors import (
    FlightCancelledError,
    FlightError,
    FlightInvalidArgumentError,
    FlightUnauthorizedError,
    FlightUnimplementedError,
)
from flight_secure.server import FlightServerBase
from flight_secure.streams import MetadataRecordBatchReader, RecordBatchStream
from flight_secure.types import (
    Action,
    DescriptorType,
    FlightDescriptor,
    FlightEndpoint,
    FlightInfo,
    Result,
    SchemaResult,
    Ticket,
)

if TYPE_CHECKING:
    from flight_secure.sql import Caller, FlightSqlService

log = logging.getLogger("flight_secure.serve")

ANONYMOUS = "anonymous"


def caller(context: ServerCallContext) -> tuple[str, str]:
    """(who, scheme) of a call: the principal's name and how it was authenticated."""
    principal = context.principal
    if principal is None:
        return ANONYMOUS, "none"
    scheme = principal.method
    if principal.certificate is not None and "mtls" not in scheme:
        scheme += "+mtls"
    return principal.name, scheme


#: The audit events of a dataset call, and the level each is logged at.
CALL_EVENTS = {
    "call allowed": logging.INFO,
    "call refused": logging.WARNING,
    "upload stored": logging.INFO,
    "upload aborted": logging.WARNING,
}


def _log_call(context: ServerCallContext, event: str, rpc: str, dataset: str, *,
              rows: int | None = None, reason: str | None = None) -> None:
    """The one place a dataset call is logged: audit record ``event`` (a key of
    :data:`CALL_EVENTS`) for the caller of ``context``."""
    who, scheme = caller(context)
    audit_event(CALL_EVENTS[event], event, who=who, scheme=scheme, rpc=rpc, dataset=dataset,
                rows=rows, peer=context.peer(), reason=reason)


def _uploaded(reader: MetadataRecordBatchReader,
              context: ServerCallContext) -> Iterator[pa.RecordBatch]:
    """The batches of an upload; FlightCancelledError as soon as the call is cancelled.

    Checked before each batch, for an engine that cannot end a call by itself
    (pyarrow's tells the handler through ``is_cancelled()`` when its server stops).
    """
    for chunk in reader:
        if context.is_cancelled():
            raise FlightCancelledError("the upload was cancelled before it finished")
        if chunk.data is not None:
            yield chunk.data


def dataset_of(descriptor: FlightDescriptor) -> str:
    """The dataset a descriptor names: a PATH of exactly one checked name."""
    if descriptor.descriptor_type != DescriptorType.PATH or len(descriptor.path or ()) != 1:
        raise FlightInvalidArgumentError("name a dataset with a one-element path descriptor, "
                                         "e.g. FlightDescriptor.for_path('sales')")
    return check_name(descriptor.path[0])


class DatasetServer(FlightServerBase):
    """Serves ``folder`` to authenticated callers, as ``permissions`` allow.

    ``server_options`` are FlightServerBase's (location, auth_handler,
    tls_certificates, ...); giving any starts the server at once. ``sql`` serves
    Flight SQL beside the datasets (None: Flight SQL commands are UNIMPLEMENTED).
    ``spread`` says which nodes serve the reads (default: this one).
    """

    def __init__(self, folder: DatasetFolder, permissions: Permissions,
                 sql: FlightSqlService | None = None, spread: Spread | None = None,
                 **server_options: Any) -> None:
        self.folder = folder
        self.permissions = permissions
        self.sql = sql
        self.spread = Spread([]) if spread is None else spread
        super().__init__(**server_options)

    # ------------------------------------------------------------------ helpers

    def _allow(self, context: ServerCallContext, rpc: str, name: str, right: str) -> None:
        """Log the call; PERMISSION_DENIED when the caller lacks ``right`` on ``name``."""
        who, _ = caller(context)
        if not self.permissions.allows(who, name, right):
            _log_call(context, "call refused", rpc, name, reason=f"no {right} right")
            raise FlightUnauthorizedError(f"{who} may not {right} dataset {name!r}")
        _log_call(context, "call allowed", rpc, name)

    def _sql_caller(self, context: ServerCallContext) -> Caller:
        from flight_secure.sql import Caller

        who, scheme = caller(context)
        return Caller(who, lambda name, right: self.permissions.allows(who, name, right),
                      context.is_cancelled, scheme)

    def _sql_command(self, descriptor: FlightDescriptor) -> bytes | None:
        """The Flight SQL command a CMD descriptor carries (None for a dataset path)."""
        if descriptor.descriptor_type != DescriptorType.CMD:
            return None
        if self.sql is None:
            raise FlightUnimplementedError("Flight SQL is off on this server")
        return descriptor.command if self.sql.handles_command(descriptor.command) else None

    def _info(self, name: str, descriptor: FlightDescriptor | None = None) -> FlightInfo:
        described = self.folder.describe(name)
        return FlightInfo(described.schema, descriptor or FlightDescriptor.for_path(name),
                          self.spread.endpoints(name, described.rows), described.rows,
                          described.bytes)

    # ---------------------------------------------------------------------- RPCs

    def list_flights(self, context: ServerCallContext, criteria: bytes) -> Iterator[FlightInfo]:
        prefix = bytes(criteria or b"").decode("utf-8", "replace")
        who, _ = caller(context)
        _log_call(context, "call allowed", "ListFlights", prefix or "*")
        for name in self.folder.names():
            if not name.startswith(prefix) or not self.permissions.allows(who, name, "read"):
                continue
            try:
                yield self._info(name)
            except FlightError as exc:  # an unreadable file hides only itself
                log.warning("skipping dataset %s: %s", name, exc)

    def get_flight_info(self, context: ServerCallContext,
                        descriptor: FlightDescriptor) -> FlightInfo:
        command = self._sql_command(descriptor)
        if command is not None:
            schema, ticket = self.sql.flight_info(self._sql_caller(context), command)
            return FlightInfo(schema, descriptor, [FlightEndpoint(ticket, [])], -1, -1)
        name = dataset_of(descriptor)
        self._allow(context, "GetFlightInfo", name, "read")
        return self._info(name, descriptor)

    def get_schema(self, context: ServerCallContext,
                   descriptor: FlightDescriptor) -> SchemaResult:
        command = self._sql_command(descriptor)
        if command is not None:
            return SchemaResult(self.sql.schema(self._sql_caller(context), command))
        name = dataset_of(descriptor)
        self._allow(context, "GetSchema", name, "read")
        return SchemaResult(self.folder.describe(name).schema)

    def do_get(self, context: ServerCallContext, ticket: Ticket) -> RecordBatchStream:
        if self.sql is not None and self.sql.handles_ticket(ticket.ticket):
            return RecordBatchStream(self.sql.stream(self._sql_caller(context), ticket.ticket))
        part = Part.from_ticket(ticket.ticket)
        name = check_name(ticket.ticket) if part is None else part.dataset
        self._allow(context, "DoGet", name, "read")
        if part is None:
            return RecordBatchStream(self.folder.reader(name))
        rows = self.folder.describe(name).rows
        return RecordBatchStream(rows_of(self.folder.reader(name), part, rows))

    def do_put(self, context: ServerCallContext, descriptor: FlightDescriptor,
               reader: MetadataRecordBatchReader, writer: Any) -> None:
        command = self._sql_command(descriptor)
        if command is not None:
            writer.write(self.sql.put(self._sql_caller(context), command, reader.schema,
                                      _uploaded(reader, context)))
            return
        name = dataset_of(descriptor)
        # Rights before existence: a caller who may not write learns nothing of what exists.
        may_write = self.permissions.allows(caller(context)[0], name, "write")
        exists = may_write and self.folder.exists(name)
        self._allow(context, "DoPut", name, "overwrite" if exists else "write")
        try:
            rows = self.folder.write(name, reader.schema, _uploaded(reader, context),
                                     overwrite=exists, cancelled=context.is_cancelled)
        except FlightError as exc:  # cut off, refused midway, or the server stopping
            _log_call(context, "upload aborted", "DoPut", name, reason=str(exc))
            raise
        _log_call(context, "upload stored", "DoPut", name, rows=rows)
        writer.write(json.dumps({"dataset": name, "rows": rows}).encode())

    def list_actions(self, context: ServerCallContext) -> list[tuple[str, str]]:
        return self.sql.action_types() if self.sql is not None else []

    def do_action(self, context: ServerCallContext, action: Action) -> Iterator[Result]:
        if self.sql is None or not self.sql.handles_action(action.type):
            raise FlightUnimplementedError(f"unknown action {action.type!r}")
        body = action.body.to_pybytes() if action.body is not None else b""
        for result in self.sql.action(self._sql_caller(context), action.type, body):
            yield Result(result)
