"""The catalog metadata results, in the schemas Flight SQL fixes for them.

The datasets a caller may read are tables in one database schema, :data:`DB_SCHEMA`
(``main``), with no catalog (``catalog_name`` null): the names a client gets here are
the names it can write in SQL (``sales`` or ``main.sales``). Each function takes the
readable datasets already filtered by the caller's rights, so nothing else appears.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

from flight_secure._generated import FlightSql_pb2 as sql_pb

DB_SCHEMA = "main"
TABLE_TYPE = "TABLE"

CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8()),
                               pa.field("db_schema_name", pa.utf8(), nullable=False)])
TABLES_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8()),
                           pa.field("db_schema_name", pa.utf8()),
                           pa.field("table_name", pa.utf8(), nullable=False),
                           pa.field("table_type", pa.utf8(), nullable=False)])
TABLES_WITH_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), nullable=False))
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])
PRIMARY_KEYS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8()),
                                 pa.field("db_schema_name", pa.utf8()),
                                 pa.field("table_name", pa.utf8(), nullable=False),
                                 pa.field("column_name", pa.utf8(), nullable=False),
                                 pa.field("key_name", pa.utf8()),
                                 pa.field("key_sequence", pa.int32(), nullable=False)])
FOREIGN_KEYS_SCHEMA = pa.schema(
    [pa.field(name, pa.utf8(), nullable=name.endswith(("catalog_name", "schema_name")))
     for name in ("pk_catalog_name", "pk_db_schema_name", "pk_table_name", "pk_column_name",
                  "fk_catalog_name", "fk_db_schema_name", "fk_table_name", "fk_column_name")]
    + [pa.field("key_sequence", pa.int32(), nullable=False),
       pa.field("fk_key_name", pa.utf8()), pa.field("pk_key_name", pa.utf8()),
       pa.field("update_rule", pa.uint8(), nullable=False),
       pa.field("delete_rule", pa.uint8(), nullable=False)])


def like(pattern: str | None) -> Callable[[str], bool]:
    """A matcher for a Flight SQL filter pattern (``%`` any run, ``_`` one character,
    ``\\`` escapes either); no pattern matches everything."""
    if pattern is None:
        return lambda _: True
    parts, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    regex = re.compile("".join(parts), re.DOTALL)
    return lambda name: regex.fullmatch(name) is not None


def _no_catalog_wanted(command: Any) -> bool:
    """False when the command names a catalog: this server has none (only "" matches)."""
    return not command.HasField("catalog") or command.catalog == ""


def catalogs() -> pa.Table:
    return CATALOGS_SCHEMA.empty_table()


def db_schemas(command: sql_pb.CommandGetDbSchemas) -> pa.Table:
    keep = _no_catalog_wanted(command) and like(
        command.db_schema_filter_pattern if command.HasField("db_schema_filter_pattern")
        else None)(DB_SCHEMA)
    return pa.table({"catalog_name": [None] * keep, "db_schema_name": [DB_SCHEMA] * keep},
                    schema=DB_SCHEMAS_SCHEMA)


def tables(command: sql_pb.CommandGetTables,
           readable: Iterable[tuple[str, Callable[[], pa.Schema]]]) -> pa.Table:
    """Rows for the readable datasets (name, schema getter) that match ``command``."""
    schema_ok = _no_catalog_wanted(command) and like(
        command.db_schema_filter_pattern if command.HasField("db_schema_filter_pattern")
        else None)(DB_SCHEMA)
    types_ok = not command.table_types or TABLE_TYPE in command.table_types
    name_ok = like(command.table_name_filter_pattern
                   if command.HasField("table_name_filter_pattern") else None)
    rows = sorted((name, get_schema) for name, get_schema in readable
                  if schema_ok and types_ok and name_ok(name))
    names = [name for name, _ in rows]
    columns = {"catalog_name": [None] * len(rows), "db_schema_name": [DB_SCHEMA] * len(rows),
               "table_name": names, "table_type": [TABLE_TYPE] * len(rows)}
    if not command.include_schema:
        return pa.table(columns, schema=TABLES_SCHEMA)
    columns["table_schema"] = [get_schema().serialize().to_pybytes() for _, get_schema in rows]
    return pa.table(columns, schema=TABLES_WITH_SCHEMA)


def table_types() -> pa.Table:
    return pa.table({"table_type": [TABLE_TYPE]}, schema=TABLE_TYPES_SCHEMA)
