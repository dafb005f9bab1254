"""The DuckDB a statement runs in: a database locked before any user SQL, and a cursor
on it holding the caller's readable datasets and nothing else.

:func:`locked_database` opens an in-memory DuckDB database configured so that SQL
cannot reach outside it: no file system (``enable_external_access`` off: no
``read_csv('/etc/passwd')``, ``COPY ... TO``, ``ATTACH`` of a file, ``INSTALL``), no
extension loading or auto-loading, no Python replacement scans (a query cannot read
the server's Python variables), no spilling to disk, neutral home/extension/secret
directories (so no setting or error names a server path), a memory limit and a
thread count; then ``lock_configuration`` so no ``SET`` or ``PRAGMA`` can loosen any
of it. The database itself holds no data.

:func:`sandbox_cursor` opens a cursor (a DuckDB connection of its own) on such a
database with ``datasets`` (name -> pyarrow dataset) registered as views: temporary
views, which only that cursor sees and which go when it is closed. Datasets are
scanned through Arrow, so DuckDB itself never opens a file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import duckdb

log = logging.getLogger("flight_secure.sql")

NEUTRAL_DIRECTORY = "/nonexistent"

#: Options fixed at connect time (they cannot be changed once the database runs SQL).
_CONNECT_OPTIONS: dict[str, Any] = {
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_persistent_secrets": False,
    "python_enable_replacements": False,
    "temp_directory": "",
    "home_directory": NEUTRAL_DIRECTORY,
    "extension_directory": NEUTRAL_DIRECTORY,
    "secret_directory": NEUTRAL_DIRECTORY,
}
#: Applied in this order when the database is opened; the last one locks them all.
_LOCKDOWN = (
    "SET enable_external_access = false",
    "SET lock_configuration = true",
)


def locked_database(*, memory_limit: str, threads: int) -> duckdb.DuckDBPyConnection:
    """A new locked-down in-memory DuckDB database (its first connection).

    ``memory_limit`` is DuckDB's (e.g. ``"1GB"``); ``threads`` its worker count.
    Raises ``duckdb.Error`` when DuckDB refuses either.
    """
    options = dict(_CONNECT_OPTIONS, memory_limit=memory_limit, threads=threads)
    connection = duckdb.connect(":memory:", config=options)
    try:
        for statement in _LOCKDOWN:
            connection.execute(statement)
    except BaseException:
        connection.close()
        raise
    return connection


def sandbox_cursor(database: duckdb.DuckDBPyConnection,
                   datasets: Mapping[str, Any]) -> duckdb.DuckDBPyConnection:
    """A new cursor on ``database`` (from :func:`locked_database`) holding exactly
    ``datasets``; names equal but for case are registered once (the first in sorted
    order), as DuckDB's catalog ignores case. The caller closes it."""
    cursor = database.cursor()
    try:
        seen: set[str] = set()
        for name in sorted(datasets):
            if name.lower() in seen:
                log.warning("dataset %r is not available in SQL: its name differs from "
                            "another's only by case", name)
                continue
            seen.add(name.lower())
            cursor.register(name, datasets[name])
    except BaseException:
        cursor.close()
        raise
    return cursor
