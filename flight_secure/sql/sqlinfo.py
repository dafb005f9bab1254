"""CommandGetSqlInfo: what this server tells a JDBC/ADBC client about itself on connect.

:data:`SQL_INFO` is the one table of answers, keyed by Flight SQL's ``SqlInfo`` ids;
:func:`sql_info_table` encodes the requested ones in the schema the protocol fixes
(``info_name: uint32 not null, value: dense_union<...>``).
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from flight_secure._generated import FlightSql_pb2 as sql_pb

#: The dense union's members, in type-code order (0..5), as Flight SQL defines them.
VALUE_TYPE = pa.dense_union([
    pa.field("string_value", pa.utf8()),
    pa.field("bool_value", pa.bool_()),
    pa.field("bigint_value", pa.int64()),
    pa.field("int32_bitmask", pa.int32()),
    pa.field("string_list", pa.list_(pa.field("item", pa.utf8()))),
    pa.field("int32_to_int32_list_map",
             pa.map_(pa.int32(), pa.list_(pa.field("item", pa.int32())))),
])
SCHEMA = pa.schema([pa.field("info_name", pa.uint32(), nullable=False),
                    pa.field("value", VALUE_TYPE, nullable=False)])


class Bitmask(int):
    """An int32 bitmask answer (type code 3), as opposed to a plain int64 (code 2)."""


_I = sql_pb.SqlInfo
_CASE_INSENSITIVE = sql_pb.SQL_CASE_SENSITIVITY_CASE_INSENSITIVE

#: id -> answer: str, bool, int (int64), Bitmask (int32) or list[str].
SQL_INFO: dict[int, str | bool | int | list[str]] = {
    _I.FLIGHT_SQL_SERVER_NAME: "flight_secure",
    _I.FLIGHT_SQL_SERVER_ARROW_VERSION: pa.__version__,
    _I.FLIGHT_SQL_SERVER_READ_ONLY: False,
    _I.FLIGHT_SQL_SERVER_SQL: True,
    _I.FLIGHT_SQL_SERVER_SUBSTRAIT: False,
    _I.FLIGHT_SQL_SERVER_TRANSACTION: Bitmask(sql_pb.SQL_SUPPORTED_TRANSACTION_NONE),
    _I.FLIGHT_SQL_SERVER_CANCEL: True,
    _I.FLIGHT_SQL_SERVER_BULK_INGESTION: True,
    _I.FLIGHT_SQL_SERVER_INGEST_TRANSACTIONS_SUPPORTED: False,
    _I.FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT: Bitmask(0),
    _I.FLIGHT_SQL_SERVER_TRANSACTION_TIMEOUT: Bitmask(0),
    _I.SQL_DDL_CATALOG: False,
    _I.SQL_DDL_SCHEMA: False,
    _I.SQL_DDL_TABLE: False,
    _I.SQL_IDENTIFIER_CASE: Bitmask(_CASE_INSENSITIVE),
    _I.SQL_IDENTIFIER_QUOTE_CHAR: '"',
    _I.SQL_QUOTED_IDENTIFIER_CASE: Bitmask(_CASE_INSENSITIVE),
    _I.SQL_ALL_TABLES_ARE_SELECTABLE: True,
    _I.SQL_NULL_ORDERING: Bitmask(sql_pb.SQL_NULLS_SORTED_AT_END),
    _I.SQL_SEARCH_STRING_ESCAPE: "\\",
    _I.SQL_EXTRA_NAME_CHARACTERS: "",
    _I.SQL_SUPPORTS_COLUMN_ALIASING: True,
    _I.SQL_NULL_PLUS_NULL_IS_NULL: True,
    _I.SQL_SUPPORTS_TABLE_CORRELATION_NAMES: True,
    _I.SQL_SUPPORTS_DIFFERENT_TABLE_CORRELATION_NAMES: False,
    _I.SQL_SUPPORTS_EXPRESSIONS_IN_ORDER_BY: True,
    _I.SQL_SUPPORTS_ORDER_BY_UNRELATED: True,
    _I.SQL_SUPPORTED_GROUP_BY: Bitmask(0b11),
    _I.SQL_SUPPORTS_LIKE_ESCAPE_CLAUSE: True,
    _I.SQL_SUPPORTS_NON_NULLABLE_COLUMNS: True,
    _I.SQL_SUPPORTED_GRAMMAR: Bitmask(0b111),
    _I.SQL_ANSI92_SUPPORTED_LEVEL: Bitmask(0b11),
    _I.SQL_SUPPORTS_INTEGRITY_ENHANCEMENT_FACILITY: False,
    _I.SQL_OUTER_JOINS_SUPPORT_LEVEL: Bitmask(sql_pb.SQL_FULL_OUTER_JOINS),
    _I.SQL_SCHEMA_TERM: "schema",
    _I.SQL_PROCEDURE_TERM: "",
    _I.SQL_CATALOG_TERM: "",
    _I.SQL_CATALOG_AT_START: False,
    _I.SQL_SCHEMAS_SUPPORTED_ACTIONS: Bitmask(0),
    _I.SQL_CATALOGS_SUPPORTED_ACTIONS: Bitmask(0),
    _I.SQL_SUPPORTED_POSITIONED_COMMANDS: Bitmask(0),
    _I.SQL_SELECT_FOR_UPDATE_SUPPORTED: False,
    _I.SQL_STORED_PROCEDURES_SUPPORTED: False,
    _I.SQL_SUPPORTED_SUBQUERIES: Bitmask(0b1111),
    _I.SQL_CORRELATED_SUBQUERIES_SUPPORTED: True,
    _I.SQL_SUPPORTED_UNIONS: Bitmask(0b11),
    _I.SQL_MAX_STATEMENTS: 0,
    _I.SQL_MAX_TABLE_NAME_LENGTH: 200,
    _I.SQL_DEFAULT_TRANSACTION_ISOLATION: Bitmask(sql_pb.SQL_TRANSACTION_NONE),
    _I.SQL_TRANSACTIONS_SUPPORTED: False,
    _I.SQL_SUPPORTED_TRANSACTIONS_ISOLATION_LEVELS: Bitmask(0),
    _I.SQL_DATA_DEFINITION_CAUSES_TRANSACTION_COMMIT: False,
    _I.SQL_DATA_DEFINITIONS_IN_TRANSACTIONS_IGNORED: False,
    _I.SQL_SUPPORTED_RESULT_SET_TYPES: Bitmask(1 << sql_pb.SQL_RESULT_SET_TYPE_FORWARD_ONLY),
    _I.SQL_BATCH_UPDATES_SUPPORTED: False,
    _I.SQL_SAVEPOINTS_SUPPORTED: False,
    _I.SQL_NAMED_PARAMETERS_SUPPORTED: False,
    _I.SQL_LOCATORS_UPDATE_COPY: False,
    _I.SQL_STORED_FUNCTIONS_USING_CALL_SYNTAX_SUPPORTED: False,
}


def sql_info_table(requested: Iterable[int], server_version: str,
                   max_statement_length: int) -> pa.Table:
    """The answers to ``requested`` ids (all known ones when empty), in request order;
    ids this server does not know are left out, as the protocol allows."""
    answers = dict(SQL_INFO)
    answers[_I.FLIGHT_SQL_SERVER_VERSION] = server_version
    answers[_I.SQL_MAX_STATEMENT_LENGTH] = max_statement_length
    ids = [i for i in (list(requested) or sorted(answers)) if i in answers]
    codes, offsets = [], []
    children: list[list] = [[] for _ in range(6)]
    for info in ids:
        code, value = _coded(answers[info])
        codes.append(code)
        offsets.append(len(children[code]))
        children[code].append(value)
    arrays = [pa.array(values, type=VALUE_TYPE.field(code).type)
              for code, values in enumerate(children)]
    union = pa.UnionArray.from_dense(pa.array(codes, pa.int8()), pa.array(offsets, pa.int32()),
                                     arrays, [f.name for f in VALUE_TYPE], list(range(6)))
    return pa.Table.from_arrays([pa.array(ids, pa.uint32()), union], schema=SCHEMA)


def _coded(value: object) -> tuple[int, object]:
    if isinstance(value, bool):
        return 1, value
    if isinstance(value, Bitmask):
        return 3, int(value)
    if isinstance(value, int):
        return 2, value
    if isinstance(value, list):
        return 4, value
    return 0, value
