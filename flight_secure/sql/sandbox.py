"""The DuckDB a statement runs in: its own in-memory database, locked before any user SQL.

:func:`locked_connection` opens a fresh in-memory DuckDB database configured so that
SQL cannot reach outside it: no file system (``enable_external_access`` off: no
``read_csv('/etc/passwd')``, ``COPY ... TO``, ``ATTACH``, ``INSTALL``), no extension
loading or auto-loading, no Python replacement scans (a query cannot read the server's
Python variables), no spilling to disk, neutral home/extension/secret directories (so
no setting or error names a server path), a memory limit and a thread count; then
``lock_configuration`` so no ``SET`` or ``PRAGMA`` can loosen any of it.

:func:`open_sandbox` does that for one call, with ``datasets`` (name -> pyarrow
dataset) registered as views *before* the lock: the caller's readable datasets and
nothing else. Datasets are scanned through Arrow, so DuckDB itself never opens a file.
One database per call: one user's statements never see another's state.
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
#: Applied in this order after the datasets are registered; the last one locks them all.
_LOCKDOWN = (
    "SET enable_external_access = false",
    "SET lock_configuration = true",
)


def locked_connection(*, memory_limit: str, threads: int,
                      datasets: Mapping[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
    """A fresh locked-down in-memory DuckDB with ``datasets`` registered as views.

    ``memory_limit`` is DuckDB's (e.g. ``"1GB"``); ``threads`` its worker count.
    """
    options = dict(_CONNECT_OPTIONS, memory_limit=memory_limit, threads=threads)
    connection = duckdb.connect(":memory:", config=options)
    try:
        for name, dataset in (datasets or {}).items():
            connection.register(name, dataset)
        for statement in _LOCKDOWN:
            connection.execute(statement)
    except BaseException:
        connection.close()
        raise
    return connection


def open_sandbox(datasets: Mapping[str, Any], *, memory_limit: str,
                 threads: int) -> duckdb.DuckDBPyConnection:
    """A locked database holding exactly ``datasets``; names equal but for case are
    registered once (the first in sorted order), as DuckDB's catalog ignores case."""
    chosen: dict[str, Any] = {}
    seen: set[str] = set()
    for name in sorted(datasets):
        if name.lower() in seen:
            log.warning("dataset %r is not available in SQL: its name differs from "
                        "another's only by case", name)
            continue
        seen.add(name.lower())
        chosen[name] = datasets[name]
    return locked_connection(memory_limit=memory_limit, threads=threads, datasets=chosen)
