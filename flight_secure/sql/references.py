"""What a SQL text would touch, found with DuckDB's own parser, before anything runs.

:func:`analyse` accepts exactly one SELECT statement (stacked statements, and anything
that is not a SELECT, are refused) and returns the tables it names, as DuckDB's parser
sees them through every subquery, join, CTE, set operation and function argument: the
statement's parse tree (``json_serialize_sql``) is walked whole, so no form of the
query can hide a table reference from it. Table functions are allowed by name
(:data:`TABLE_FUNCTIONS`: generators and the catalog's read-only listings); any other
is refused here: the file readers (which the sandbox blocks anyway), SQL built at
run time (``query``, ``query_table``), the server's configuration and memory, and
functions that act on the database itself (checkpoints, logs, external resources).
Scalar functions that reveal the server's configuration are refused by name.

This check gives a clear PERMISSION_DENIED; it is not what keeps data safe. The
sandbox each statement runs in holds only the datasets its caller may read.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb

from flight_secure.errors import FlightInvalidArgumentError, FlightUnauthorizedError
from flight_secure.sql.protocol import check_sql
from flight_secure.sql.sandbox import locked_database

#: The table functions a query may call (lower case): generators, JSON expansion and
#: the catalog's listings of what the query itself can see.
TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "json_each", "json_tree",
    "duckdb_tables", "duckdb_views", "duckdb_columns", "duckdb_schemas", "duckdb_types",
    "duckdb_functions", "duckdb_keywords", "duckdb_constraints", "duckdb_indexes",
    "duckdb_sequences", "duckdb_dependencies", "pragma_table_info", "pragma_show",
    "pragma_version", "pragma_platform", "pg_timezone_names", "icu_calendar_names",
})
#: Scalar functions refused by name (lower case): they reveal the server's configuration.
REFUSED_FUNCTIONS = frozenset({"current_setting", "getenv"})


@dataclass(frozen=True)
class TableRef:
    """A table as written in the query: ``catalog.schema.table`` (missing parts empty)."""

    catalog: str
    schema: str
    table: str

    @property
    def may_be_dataset(self) -> bool:
        """True unless the qualification puts it outside the datasets' schema (e.g.
        ``information_schema.tables``, ``pg_catalog.pg_class``)."""
        return self.catalog.lower() in ("", "temp") and self.schema.lower() in ("", "main")


@dataclass(frozen=True)
class Analysis:
    """One checked SELECT: the tables it names (CTE names left out) and its parameters."""

    tables: frozenset[TableRef]
    parameters: tuple[str, ...]

    def dataset_names(self) -> set[str]:
        """Names that, unqualified or under ``main``, would resolve to a dataset."""
        return {ref.table for ref in self.tables if ref.may_be_dataset}


_parser_lock = threading.Lock()
_parser: duckdb.DuckDBPyConnection | None = None


def _parser_connection() -> duckdb.DuckDBPyConnection:
    global _parser
    if _parser is None:
        _parser = locked_database(memory_limit="64MB", threads=1)
    return _parser


def analyse(sql: str) -> Analysis:
    """Parse ``sql``; its Analysis, or FlightInvalidArgumentError / FlightUnauthorizedError."""
    check_sql(sql)
    with _parser_lock:
        connection = _parser_connection()
        try:
            statements = connection.extract_statements(sql)
        except duckdb.Error as exc:
            raise FlightInvalidArgumentError(first_line(exc)) from None
        if len(statements) != 1:
            raise FlightInvalidArgumentError(
                f"send one SQL statement at a time, not {len(statements)}")
        statement = statements[0]
        if statement.type != duckdb.StatementType.SELECT:
            raise FlightUnauthorizedError(
                f"only SELECT statements run here, not {statement.type.name}")
        rows = connection.sql("SELECT json_serialize_sql(?)", params=[statement.query])
        tree = json.loads(rows.fetchall()[0][0])
    if tree.get("error"):
        raise FlightInvalidArgumentError(str(tree.get("error_message", "invalid SELECT")))
    ctes = {name.lower() for name in _cte_names(tree)}
    tables = frozenset(ref for ref in _tables(tree)
                       if ref.catalog or ref.schema or ref.table.lower() not in ctes)
    table_functions = set(_table_functions(tree))
    for name in table_functions | set(_functions(tree)):
        lowered = name.lower()
        if lowered in REFUSED_FUNCTIONS or (
                name in table_functions and lowered not in TABLE_FUNCTIONS):
            raise FlightUnauthorizedError(
                f"function {name}() is not available here: the datasets are the tables "
                "you can query")
    return Analysis(tables, tuple(sorted(statement.named_parameters, key=_param_order)))


def _param_order(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    pending = [tree]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            yield item
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _tables(tree: Any) -> Iterator[TableRef]:
    for node in _nodes(tree):
        if node.get("type") == "BASE_TABLE":
            yield TableRef(node.get("catalog_name") or "", node.get("schema_name") or "",
                           node.get("table_name") or "")


def _functions(tree: Any) -> Iterator[str]:
    for node in _nodes(tree):
        if node.get("class") == "FUNCTION" and isinstance(node.get("function_name"), str):
            yield node["function_name"]


def _table_functions(tree: Any) -> Iterator[str]:
    for node in _nodes(tree):
        function = node.get("function") if node.get("type") == "TABLE_FUNCTION" else None
        if isinstance(function, dict) and isinstance(function.get("function_name"), str):
            yield function["function_name"]


def _cte_names(tree: Any) -> Iterator[str]:
    for node in _nodes(tree):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            for entry in cte_map.get("map", []):
                if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                    yield entry["key"]


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
