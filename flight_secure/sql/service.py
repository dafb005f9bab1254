"""FlightSqlService: every Flight SQL command, in and out as plain values.

A Flight server hands this service the Flight SQL parts of its RPCs (a CMD
descriptor's ``cmd``, a ticket, an action, a DoPut's batches) together with a
:class:`~flight_secure.sql.statements.Caller`, and turns what comes back (a schema and
ticket, a RecordBatchReader, result bytes) into its own Flight types; the service
never sees a Flight server, so it can be mounted on any. :meth:`handles_command`,
:meth:`handles_ticket` and :meth:`handles_action` say which RPCs are its.

Served: statements and prepared statements (stateless handles: bound parameters
travel in the handle returned by DoPut), SqlInfo, catalogs, database schemas, tables
(with schemas), table types, empty primary/foreign key lists (files have no keys),
bulk ingestion with the write rights of DoPut, CancelFlightInfo and CancelQuery.
Refused with UNIMPLEMENTED, saying so: transactions, savepoints, Substrait, updates
through SQL (the datasets are files: upload them with ingestion), XDBC type info.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

from flight_secure._generated import FlightSql_pb2 as sql_pb
from flight_secure._generated import flight_pb2
from flight_secure.cli.datasets import DatasetFolder, check_name
from flight_secure.errors import (
    FlightError,
    FlightInvalidArgumentError,
    FlightNotFoundError,
    FlightUnauthorizedError,
    FlightUnimplementedError,
)
from flight_secure.sql import audit, metadata
from flight_secure.sql.protocol import (
    MAX_SQL_BYTES,
    Statement,
    is_flight_sql,
    pack,
    parameter_row,
    unpack,
)
from flight_secure.sql.sqlinfo import SCHEMA as SQL_INFO_SCHEMA
from flight_secure.sql.sqlinfo import sql_info_table
from flight_secure.sql.statements import Caller, SqlLimits, StatementRunner

ACTIONS = {
    "CreatePreparedStatement": "Prepare a SELECT; returns its handle and schemas",
    "ClosePreparedStatement": "Release a prepared statement (handles hold no server state)",
    "CancelFlightInfo": "Stop the query behind a FlightInfo",
    "CancelQuery": "Stop the query behind a FlightInfo (deprecated Flight SQL form)",
}
UNSUPPORTED_ACTIONS = {
    "BeginTransaction": "transactions are not supported",
    "EndTransaction": "transactions are not supported",
    "BeginSavepoint": "savepoints are not supported",
    "EndSavepoint": "savepoints are not supported",
    "CreatePreparedSubstraitPlan": "Substrait plans are not supported; send SQL",
}
_READ_ONLY = ("SQL here is read-only (SELECT); to add or replace a dataset, upload it "
              "with bulk ingestion (CommandStatementIngest)")
_Ingest = sql_pb.CommandStatementIngest.TableDefinitionOptions


class FlightSqlService:
    """Flight SQL over the datasets of ``folder``, each statement in its own sandbox."""

    def __init__(self, folder: DatasetFolder, limits: SqlLimits | None = None,
                 server_version: str = "") -> None:
        self.folder = folder
        self.limits = limits or SqlLimits()
        self.server_version = server_version
        self.runner = StatementRunner(folder, self.limits)

    def close(self) -> None:
        """Release the databases kept for reuse between statements."""
        self.runner.close()

    # ----------------------------------------------------------- what is ours

    @staticmethod
    def handles_command(command: bytes | None) -> bool:
        return command is not None and is_flight_sql(command)

    @staticmethod
    def handles_ticket(ticket: bytes) -> bool:
        return is_flight_sql(ticket)

    @staticmethod
    def handles_action(action_type: str) -> bool:
        return action_type in ACTIONS or action_type in UNSUPPORTED_ACTIONS

    @staticmethod
    def action_types() -> list[tuple[str, str]]:
        return list(ACTIONS.items())

    # ---------------------------------------------------------------- queries

    def flight_info(self, caller: Caller, command: bytes) -> tuple[pa.Schema, bytes]:
        """GetFlightInfo: the result schema and the ticket that fetches it."""
        message = unpack(command)
        statement = self._statement(message)
        if statement is not None:
            schema = self.runner.schema(caller, statement, "plan")
            ticket = sql_pb.TicketStatementQuery(
                statement_handle=statement.with_query_id().encode())
            return schema, pack(ticket)
        return self._metadata_schema(message), command

    def schema(self, caller: Caller, command: bytes) -> pa.Schema:
        """GetSchema: the schema GetFlightInfo would announce."""
        message = unpack(command)
        statement = self._statement(message)
        if statement is not None:
            return self.runner.schema(caller, statement, "plan")
        return self._metadata_schema(message)

    def stream(self, caller: Caller, ticket: bytes) -> pa.RecordBatchReader:
        """DoGet: the rows behind a ticket from :meth:`flight_info`."""
        message = unpack(ticket)
        if isinstance(message, sql_pb.TicketStatementQuery):
            return self.runner.stream(caller, Statement.decode(message.statement_handle))
        statement = self._statement(message)
        if statement is not None:
            return self.runner.stream(caller, statement.with_query_id())
        self._metadata_schema(message)  # refuses what is not a metadata command
        return self._metadata(caller, message).to_reader()

    def _statement(self, message: Any) -> Statement | None:
        """The statement a query command runs; None for other commands."""
        if isinstance(message, sql_pb.CommandStatementQuery):
            if message.HasField("transaction_id"):
                raise FlightUnimplementedError("transactions are not supported")
            return Statement(message.query)
        if isinstance(message, sql_pb.CommandPreparedStatementQuery):
            return Statement.decode(message.prepared_statement_handle)
        return None

    def _metadata_schema(self, message: Any) -> pa.Schema:
        if isinstance(message, sql_pb.CommandGetSqlInfo):
            return SQL_INFO_SCHEMA
        if isinstance(message, sql_pb.CommandGetCatalogs):
            return metadata.CATALOGS_SCHEMA
        if isinstance(message, sql_pb.CommandGetDbSchemas):
            return metadata.DB_SCHEMAS_SCHEMA
        if isinstance(message, sql_pb.CommandGetTables):
            return metadata.TABLES_WITH_SCHEMA if message.include_schema else \
                metadata.TABLES_SCHEMA
        if isinstance(message, sql_pb.CommandGetTableTypes):
            return metadata.TABLE_TYPES_SCHEMA
        if isinstance(message, sql_pb.CommandGetPrimaryKeys):
            return metadata.PRIMARY_KEYS_SCHEMA
        if isinstance(message, (sql_pb.CommandGetExportedKeys, sql_pb.CommandGetImportedKeys,
                                sql_pb.CommandGetCrossReference)):
            return metadata.FOREIGN_KEYS_SCHEMA
        raise _unsupported(message)

    def _metadata(self, caller: Caller, message: Any) -> pa.Table:
        if isinstance(message, sql_pb.CommandGetSqlInfo):
            return sql_info_table(message.info, self.server_version, MAX_SQL_BYTES)
        if isinstance(message, sql_pb.CommandGetCatalogs):
            return metadata.catalogs()
        if isinstance(message, sql_pb.CommandGetDbSchemas):
            return metadata.db_schemas(message)
        if isinstance(message, sql_pb.CommandGetTables):
            readable = [(name, self._schema_getter(name)) for name in self.folder.names()
                        if caller.may(name, "read")]
            return metadata.tables(message, readable)
        if isinstance(message, sql_pb.CommandGetTableTypes):
            return metadata.table_types()
        return self._metadata_schema(message).empty_table()

    def _schema_getter(self, name: str) -> Callable[[], pa.Schema]:
        return lambda: self.folder.describe(name).schema

    # ------------------------------------------------------------------ DoPut

    def put(self, caller: Caller, command: bytes, schema: pa.Schema,
            batches: Iterable[pa.RecordBatch]) -> bytes:
        """DoPut: bind parameters or ingest a dataset; the PutResult's app_metadata."""
        message = unpack(command)
        if isinstance(message, sql_pb.CommandPreparedStatementQuery):
            statement = Statement.decode(message.prepared_statement_handle)
            bound = Statement(statement.sql, parameter_row(schema, list(batches)))
            result = sql_pb.DoPutPreparedStatementResult(prepared_statement_handle=bound.encode())
            return result.SerializeToString()
        if isinstance(message, sql_pb.CommandStatementIngest):
            rows = self._ingest(caller, message, schema, batches)
            return sql_pb.DoPutUpdateResult(record_count=rows).SerializeToString()
        if isinstance(message, (sql_pb.CommandStatementUpdate,
                                sql_pb.CommandPreparedStatementUpdate)):
            raise FlightUnimplementedError(_READ_ONLY)
        raise _unsupported(message)

    def _ingest(self, caller: Caller, command: Any, schema: pa.Schema,
                batches: Iterable[pa.RecordBatch]) -> int:
        """Store the upload as dataset ``command.table`` (atomically, as DoPut does)."""
        options = command.table_definition_options
        if command.temporary or command.HasField("transaction_id"):
            raise FlightUnimplementedError("temporary tables and transactions are not supported")
        if (command.HasField("catalog") and command.catalog) or (
                command.HasField("schema") and command.schema not in ("", metadata.DB_SCHEMA)):
            raise FlightInvalidArgumentError(
                f"datasets live in schema {metadata.DB_SCHEMA!r} and no catalog")
        if options.if_exists == _Ingest.TABLE_EXISTS_OPTION_APPEND:
            raise FlightUnimplementedError("appending to a dataset is not supported; "
                                           "use mode 'replace' or 'create'")
        name = check_name(command.table)
        # Rights before existence, as DoPut: without the write right the refusal is the
        # same whether or not the dataset exists.
        exists = caller.may(name, "write") and self.folder.exists(name)
        replace = exists and options.if_exists == _Ingest.TABLE_EXISTS_OPTION_REPLACE
        right = "overwrite" if replace else "write"
        started = time.monotonic()
        if not caller.may(name, right):
            audit.record(caller.name, caller.scheme, "ingest", [name], rows=None,
                         seconds=0.0, outcome="refused")
            raise FlightUnauthorizedError(f"{caller.name} may not {right} dataset {name!r}")
        if not exists and options.if_not_exist == _Ingest.TABLE_NOT_EXIST_OPTION_FAIL:
            raise FlightNotFoundError(f"no dataset named {name!r}")
        try:
            rows = self.folder.write(name, schema, batches, overwrite=replace,
                                     cancelled=caller.is_cancelled)
        except FlightError:
            audit.record(caller.name, caller.scheme, "ingest", [name], rows=None,
                         seconds=time.monotonic() - started, outcome="failed")
            raise
        audit.record(caller.name, caller.scheme, "ingest", [name], rows=rows,
                     seconds=time.monotonic() - started, outcome=audit.OK)
        return rows

    # ---------------------------------------------------------------- actions

    def action(self, caller: Caller, action_type: str, body: bytes) -> list[bytes]:
        """DoAction: the results' bodies."""
        if action_type in UNSUPPORTED_ACTIONS:
            raise FlightUnimplementedError(UNSUPPORTED_ACTIONS[action_type])
        if action_type == "CancelFlightInfo":
            request = _parse(flight_pb2.CancelFlightInfoRequest, body)
            self._cancel(caller, request.info)
            status = flight_pb2.CANCEL_STATUS_CANCELLED
            return [flight_pb2.CancelFlightInfoResult(status=status).SerializeToString()]
        message = unpack(body)
        if isinstance(message, sql_pb.ActionCreatePreparedStatementRequest):
            return [pack(self._prepare(caller, message))]
        if isinstance(message, sql_pb.ActionClosePreparedStatementRequest):
            Statement.decode(message.prepared_statement_handle)
            return []
        if isinstance(message, sql_pb.ActionCancelQueryRequest):
            self._cancel(caller, _parse(flight_pb2.FlightInfo, message.info))
            result = sql_pb.ActionCancelQueryResult.CANCEL_RESULT_CANCELLED
            return [pack(sql_pb.ActionCancelQueryResult(result=result))]
        raise FlightInvalidArgumentError(f"action {action_type!r} does not take this body")

    def _prepare(self, caller: Caller, request: Any) -> Any:
        if request.HasField("transaction_id"):
            raise FlightUnimplementedError("transactions are not supported")
        statement = Statement(request.query)
        analysis = self.runner.check(caller, statement.sql, "prepare")
        parameters = pa.schema([pa.field(name, pa.null()) for name in analysis.parameters])
        try:
            nulls = pa.RecordBatch.from_pylist([dict.fromkeys(analysis.parameters)],
                                               schema=parameters) if parameters else None
            dataset = self.runner.schema(caller, Statement(statement.sql, nulls), "prepare",
                                         analysis)
            dataset_bytes = dataset.serialize().to_pybytes()
        except FlightInvalidArgumentError:  # its result type depends on the parameters
            dataset_bytes = b""
        return sql_pb.ActionCreatePreparedStatementResult(
            prepared_statement_handle=statement.encode(), dataset_schema=dataset_bytes,
            parameter_schema=parameters.serialize().to_pybytes() if parameters else b"")

    def _cancel(self, caller: Caller, info: Any) -> None:
        for endpoint in info.endpoint:
            ticket = endpoint.ticket.ticket
            if is_flight_sql(ticket):
                message = unpack(ticket)
                if isinstance(message, sql_pb.TicketStatementQuery):
                    statement = Statement.decode(message.statement_handle)
                    if statement.query_id:
                        self.runner.cancel(caller, statement.query_id)


def _parse(cls: Any, body: bytes) -> Any:
    try:
        return cls.FromString(bytes(body))
    except Exception:
        raise FlightInvalidArgumentError(f"malformed {cls.__name__} message") from None


def _unsupported(message: Any) -> FlightError:
    name = type(message).__name__
    if "Substrait" in name:
        return FlightUnimplementedError("Substrait plans are not supported; send SQL")
    if name == "CommandGetXdbcTypeInfo":
        return FlightUnimplementedError("XDBC type info is not available")
    if name in ("CommandStatementUpdate", "CommandPreparedStatementUpdate"):
        return FlightUnimplementedError(_READ_ONLY)
    return FlightInvalidArgumentError(f"{name} is not valid here")

