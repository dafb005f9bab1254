"""DatasetServer: a Flight server over a :class:`DatasetFolder`, with per-dataset rights.

* ListFlights: one FlightInfo per dataset the caller may read (criteria: a name prefix).
* GetFlightInfo / GetSchema: a descriptor for path ``[name]``: schema, rows, bytes and
  one endpoint whose ticket is the name (no location: read it from this server).
* DoGet: ticket ``name``; the file is streamed in batches.
* DoPut: descriptor path ``[name]``; the upload becomes ``name.parquet``, atomically.
  Creating a dataset needs the ``write`` right, replacing one ``overwrite``. Without
  ``write`` the refusal is the same whether or not the dataset exists.

Authentication happens before any of this (the server's auth handler); here the
caller is ``context.peer_identity()`` ("anonymous" when the server has none), and
every call is logged to ``flight_secure.serve`` as ``"<who> <RPC> <dataset>"``, with
``who``, ``scheme``, ``rpc``, ``dataset`` and ``outcome`` (ok, refused, aborted) attached
to the record; a refusal or an upload that did not finish adds ``" <outcome>: <why>"``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from flight_secure.cli.datasets import DatasetFolder, check_name, for_log
from flight_secure.cli.permissions import Permissions
from flight_secure.context import ServerCallContext
from flight_secure.errors import (
    FlightError,
    FlightInvalidArgumentError,
    FlightUnauthorizedError,
)
from flight_secure.server import FlightServerBase
from flight_secure.streams import MetadataRecordBatchReader, RecordBatchStream
from flight_secure.types import (
    DescriptorType,
    FlightDescriptor,
    FlightEndpoint,
    FlightInfo,
    SchemaResult,
    Ticket,
)

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


def _log_call(who: str, scheme: str, rpc: str, dataset: str, outcome: str = "ok",
              detail: str = "") -> None:
    """Log ``"<who> <rpc> <dataset>"``, plus ``" <outcome>: <detail>"`` unless the outcome
    is "ok" (then at INFO, else WARNING), with the fields attached; names are escaped."""
    fields = {"who": who, "scheme": scheme, "rpc": rpc, "dataset": dataset, "outcome": outcome}
    if outcome == "ok":
        log.info("%s %s %s", for_log(who), rpc, for_log(dataset), extra=fields)
    else:
        log.warning("%s %s %s %s: %s", for_log(who), rpc, for_log(dataset), outcome,
                    for_log(detail), extra=fields)


def dataset_of(descriptor: FlightDescriptor) -> str:
    """The dataset a descriptor names: a PATH of exactly one checked name."""
    if descriptor.descriptor_type != DescriptorType.PATH or len(descriptor.path or ()) != 1:
        raise FlightInvalidArgumentError("name a dataset with a one-element path descriptor, "
                                         "e.g. FlightDescriptor.for_path('sales')")
    return check_name(descriptor.path[0])


class DatasetServer(FlightServerBase):
    """Serves ``folder`` to authenticated callers, as ``permissions`` allow.

    ``server_options`` are FlightServerBase's (location, auth_handler,
    tls_certificates, ...); giving any starts the server at once.
    """

    def __init__(self, folder: DatasetFolder, permissions: Permissions,
                 **server_options: Any) -> None:
        self.folder = folder
        self.permissions = permissions
        super().__init__(**server_options)

    # ------------------------------------------------------------------ helpers

    def _allow(self, context: ServerCallContext, rpc: str, name: str, right: str) -> str:
        """Log the call and return the caller's name; PERMISSION_DENIED without ``right``."""
        who, scheme = caller(context)
        allowed = self.permissions.allows(who, name, right)
        if allowed:
            _log_call(who, scheme, rpc, name)
        else:
            _log_call(who, scheme, rpc, name, "refused", f"no {right} right")
        if not allowed:
            raise FlightUnauthorizedError(f"{who} may not {right} dataset {name!r}")
        return who

    def _info(self, name: str, descriptor: FlightDescriptor | None = None) -> FlightInfo:
        described = self.folder.describe(name)
        return FlightInfo(described.schema, descriptor or FlightDescriptor.for_path(name),
                          [FlightEndpoint(name.encode(), [])], described.rows, described.bytes)

    # ---------------------------------------------------------------------- RPCs

    def list_flights(self, context: ServerCallContext, criteria: bytes) -> Iterator[FlightInfo]:
        prefix = bytes(criteria or b"").decode("utf-8", "replace")
        who, scheme = caller(context)
        _log_call(who, scheme, "ListFlights", prefix or "*")
        for name in self.folder.names():
            if not name.startswith(prefix) or not self.permissions.allows(who, name, "read"):
                continue
            try:
                yield self._info(name)
            except FlightError as exc:  # an unreadable file hides only itself
                log.warning("skipping dataset %s: %s", name, exc)

    def get_flight_info(self, context: ServerCallContext,
                        descriptor: FlightDescriptor) -> FlightInfo:
        name = dataset_of(descriptor)
        self._allow(context, "GetFlightInfo", name, "read")
        return self._info(name, descriptor)

    def get_schema(self, context: ServerCallContext,
                   descriptor: FlightDescriptor) -> SchemaResult:
        name = dataset_of(descriptor)
        self._allow(context, "GetSchema", name, "read")
        return SchemaResult(self.folder.describe(name).schema)

    def do_get(self, context: ServerCallContext, ticket: Ticket) -> RecordBatchStream:
        name = check_name(ticket.ticket)
        self._allow(context, "DoGet", name, "read")
        return RecordBatchStream(self.folder.reader(name))

    def do_put(self, context: ServerCallContext, descriptor: FlightDescriptor,
               reader: MetadataRecordBatchReader, writer: Any) -> None:
        name = dataset_of(descriptor)
        # Rights before existence: a caller who may not write learns nothing of what exists.
        may_write = self.permissions.allows(caller(context)[0], name, "write")
        exists = may_write and self.folder.exists(name)
        who = self._allow(context, "DoPut", name, "overwrite" if exists else "write")
        batches = (chunk.data for chunk in reader if chunk.data is not None)
        try:
            rows = self.folder.write(name, reader.schema, batches, overwrite=exists,
                                     cancelled=context.is_cancelled)
        except FlightError as exc:  # cut off, refused midway, or the server stopping
            _log_call(who, caller(context)[1], "DoPut", name, "aborted", str(exc))
            raise
        log.info("%s stored %s (%d rows)", for_log(who), for_log(name), rows)
        writer.write(json.dumps({"dataset": name, "rows": rows}).encode())
