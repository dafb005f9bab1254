"""Running a caller's SELECT: the rights check, the sandbox, the streamed result, the audit.

:class:`StatementRunner` is the one path every statement takes:

1. :func:`~flight_secure.sql.references.analyse` parses it (one SELECT only) and names
   the tables it touches; a table the caller may not read is refused with
   FlightUnauthorizedError (PERMISSION_DENIED) whether or not it exists, as the raw
   Flight RPCs do, so a refusal never tells whether a dataset exists (a table the
   rights allow but the caller cannot read, e.g. another's dataset under another
   case, is "not found" by the sandbox, as any missing table);
2. a sandbox is opened: a cursor (:func:`~flight_secure.sql.sandbox.sandbox_cursor`)
   holding the caller's readable datasets only, on a locked database borrowed from
   :class:`~flight_secure.sql.pool.DatabasePool` for this caller and these rights;
3. the result streams out of DuckDB batch by batch (never materialised), watched by
   :class:`~flight_secure.sql.running.RunningStatements` for cancellation and time;
4. :func:`~flight_secure.sql.audit.record` logs who, which datasets, rows, duration and
   outcome.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from flight_secure.cli.datasets import DatasetFolder, open_dataset
from flight_secure.errors import (
    FlightCancelledError,
    FlightError,
    FlightInternalError,
    FlightInvalidArgumentError,
    FlightResourceExhaustedError,
    FlightTimedOutError,
    FlightUnauthorizedError,
)
from flight_secure.files import Stamp
from flight_secure.sql import audit
from flight_secure.sql.pool import DatabasePool, DatasetCache, pool_key
from flight_secure.sql.protocol import Statement
from flight_secure.sql.references import Analysis, analyse, first_line
from flight_secure.sql.running import TIMED_OUT, RunningStatements
from flight_secure.sql.sandbox import locked_database, sandbox_cursor

log = logging.getLogger("flight_secure.sql")


@dataclass(frozen=True)
class Caller:
    """Who is calling and what they may do, independent of the Flight engine.

    ``may(dataset, right)`` answers with the rights in force for this call;
    ``is_cancelled()`` turns true when the call ends early; ``scheme`` says how the
    caller was authenticated (for the audit).
    """

    name: str
    may: Callable[[str, str], bool]
    is_cancelled: Callable[[], bool] = lambda: False
    scheme: str = ""


@dataclass(frozen=True)
class SqlLimits:
    """Per-statement bounds: DuckDB memory, worker threads, wall time, rows per batch."""

    memory_limit: str = "1GB"
    threads: int = 2
    time_limit: float = 600.0
    batch_rows: int = 128 * 1024


#: DuckDB errors that describe the statement, passed to the client as INVALID_ARGUMENT.
_STATEMENT_ERRORS = (duckdb.ParserException, duckdb.BinderException,
                     duckdb.CatalogException, duckdb.ConversionException,
                     duckdb.InvalidInputException, duckdb.OutOfRangeException,
                     duckdb.NotImplementedException, duckdb.TypeMismatchException,
                     duckdb.PermissionException, duckdb.SyntaxException)
_FORGOTTEN_CANCELS = 1024


class StatementRunner:
    """Checks and runs statements over ``folder`` within ``limits``. Thread-safe.

    :meth:`close` releases the databases kept for reuse.
    """

    def __init__(self, folder: DatasetFolder, limits: SqlLimits) -> None:
        """Raises ValueError when DuckDB refuses ``limits`` (e.g. a malformed memory size)."""
        try:
            first = self._open_database(limits)
        except duckdb.Error as exc:
            raise ValueError(f"SQL limits {limits.memory_limit!r}, {limits.threads} threads: "
                             f"{first_line(exc)}") from None
        first.close()
        self.folder = folder
        self.limits = limits
        self.running = RunningStatements(limits.time_limit)
        self.databases = DatabasePool(lambda: self._open_database(limits))
        self.datasets = DatasetCache(open_dataset)
        self._cancelled: deque[tuple[str, str]] = deque(maxlen=_FORGOTTEN_CANCELS)

    @staticmethod
    def _open_database(limits: SqlLimits) -> duckdb.DuckDBPyConnection:
        return locked_database(memory_limit=limits.memory_limit, threads=limits.threads)

    def close(self) -> None:
        """Close the databases kept for reuse (statements running now finish first)."""
        self.databases.close()

    # ------------------------------------------------------------------ checks

    def check(self, caller: Caller, sql: str, what: str) -> Analysis:
        """The statement's Analysis; refused statements are audited and raise."""
        try:
            analysis = analyse(sql)
            denied = self._denied(caller, analysis)
        except FlightError:
            audit.record(caller.name, caller.scheme, what, (), rows=None, seconds=0.0,
                         outcome="refused", sql=sql)
            raise
        if denied:
            audit.record(caller.name, caller.scheme, what, [denied], rows=None, seconds=0.0,
                         outcome="refused", sql=sql)
            raise FlightUnauthorizedError(f"{caller.name} may not read dataset {denied!r}")
        return analysis

    @staticmethod
    def _denied(caller: Caller, analysis: Analysis) -> str | None:
        """The first referenced name the caller may not read, or None.

        Decided by the name as written and the rights alone, never by what exists: a
        name that differs only in case from a dataset the caller may not read is left
        to the sandbox, where no such table is (the same answer as for a name that
        exists nowhere).
        """
        for name in sorted(analysis.dataset_names()):
            if not caller.may(name, "read"):
                return name
        return None

    def datasets_of(self, caller: Caller, analysis: Analysis) -> list[str]:
        """The datasets a statement of ``caller``'s names and may read (for the audit)."""
        wanted = {name.lower() for name in analysis.dataset_names()}
        return [name for name in self.folder.names()
                if name.lower() in wanted and caller.may(name, "read")]

    def readable(self, caller: Caller) -> dict[str, tuple[Stamp, Any]]:
        """name -> (file version, pyarrow dataset), for every dataset ``caller`` may read."""
        found = {}
        for name in self.folder.names():
            path = self.folder.path_of(name) if caller.may(name, "read") else None
            if path is None:
                continue
            try:
                found[name] = self.datasets.get(path)
            except (pa.ArrowException, OSError) as exc:  # an unreadable file hides itself
                log.warning("dataset %s left out of SQL: %s", name, exc)
        return found

    # --------------------------------------------------------------- execution

    def schema(self, caller: Caller, statement: Statement, what: str,
               analysis: Analysis | None = None) -> pa.Schema:
        """The result schema of ``statement`` (planned with LIMIT 0, checked as any run;
        ``analysis``: what :meth:`check` already returned for its SQL)."""
        if analysis is None:
            analysis = self.check(caller, statement.sql, what)
        with self._sandbox(caller) as cursor, \
                self.running.track("", caller.name, cursor, caller.is_cancelled) as entry:
            try:
                relation = cursor.sql(statement.sql, params=_params(statement, analysis))
                return relation.limit(0).to_arrow_table().schema
            except duckdb.Error as exc:
                raise _flight_error(exc, entry.stop_reason, self.limits) from None

    def cancel(self, caller: Caller, query_id: str) -> None:
        """Stop ``caller``'s statement ``query_id`` if it runs, and refuse it if it is yet to."""
        self._cancelled.append((caller.name, query_id))
        self.running.cancel(query_id, caller.name)

    def stream(self, caller: Caller, statement: Statement) -> pa.RecordBatchReader:
        """Run ``statement`` for ``caller``; its result as a lazily read stream."""
        analysis = self.check(caller, statement.sql, "query")
        if statement.query_id and (caller.name, statement.query_id) in self._cancelled:
            raise FlightCancelledError("this query was cancelled")
        batches = self._batches(caller, statement, analysis)
        schema = next(batches)
        return pa.RecordBatchReader.from_batches(schema, batches)

    @contextmanager
    def _sandbox(self, caller: Caller) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor holding ``caller``'s readable datasets, on a database lent for
        this caller and these rights; closed (and the database given back) after."""
        readable = self.readable(caller)
        key = pool_key(caller.name, {name: stamp for name, (stamp, _) in readable.items()})
        with self.databases.lend(key) as database:
            cursor = sandbox_cursor(database, {name: dataset
                                               for name, (_, dataset) in readable.items()})
            try:
                yield cursor
            finally:
                cursor.close()

    def _batches(self, caller: Caller, statement: Statement,
                 analysis: Analysis) -> Iterator[Any]:
        """Yields the result's schema first, then its batches; audits at the end."""
        started = time.monotonic()
        rows, outcome = 0, "failed"
        try:
            with self._sandbox(caller) as cursor, \
                    self.running.track(statement.query_id, caller.name, cursor,
                                       caller.is_cancelled) as entry:
                try:
                    relation = cursor.sql(statement.sql, params=_params(statement, analysis))
                    reader = relation.to_arrow_reader(self.limits.batch_rows)
                    yield reader.schema
                    for batch in reader:
                        rows += batch.num_rows
                        yield batch
                    outcome = "ok"
                except duckdb.Error as exc:
                    error = _flight_error(exc, entry.stop_reason, self.limits)
                    outcome = "cancelled" if isinstance(error, FlightCancelledError) else outcome
                    raise error from None
                except GeneratorExit:
                    outcome = "cancelled"
                    raise
        finally:
            audit.record(caller.name, caller.scheme, "query", self.datasets_of(caller, analysis),
                         rows=rows, seconds=time.monotonic() - started, outcome=outcome,
                         sql=statement.sql)


def _params(statement: Statement, analysis: Analysis) -> list[Any] | dict[str, Any] | None:
    """The bound row as DuckDB parameters: by column order when the SQL's parameters
    are positional (``?``, ``$1``), else by column name (``$name``)."""
    if statement.parameters is None:
        return None
    row = statement.parameters.to_pylist()[0]
    if all(name.isdigit() for name in analysis.parameters):
        return list(row.values())
    return row


def _flight_error(exc: duckdb.Error, stop_reason: str | None, limits: SqlLimits) -> FlightError:
    """The Flight error for a DuckDB error (its first line, never a server path)."""
    message = first_line(exc)
    if isinstance(exc, duckdb.InterruptException) or stop_reason is not None:
        if stop_reason == TIMED_OUT:
            return FlightTimedOutError(f"the query ran longer than {limits.time_limit:g} s")
        return FlightCancelledError("the query was cancelled")
    if isinstance(exc, duckdb.OutOfMemoryException):
        return FlightResourceExhaustedError(
            f"the query needs more than its memory limit of {limits.memory_limit}")
    if isinstance(exc, _STATEMENT_ERRORS):
        return FlightInvalidArgumentError(message)
    log.warning("query failed: %s", message)
    return FlightInternalError("the query failed")
