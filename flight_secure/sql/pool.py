"""What statements reuse: locked databases, and the Arrow datasets of unchanged files.

Opening a DuckDB database costs tens of milliseconds, more than a small query, and a
Flight SQL client runs up to three calls per statement (prepare, GetFlightInfo,
DoGet). So a statement borrows a locked, empty database from :class:`DatabasePool`
and runs in a fresh cursor on it (:func:`~flight_secure.sql.sandbox.sandbox_cursor`),
which holds its caller's readable datasets as temporary views. It stays as isolated
as with a database of its own:

* a database is lent under a key, :func:`pool_key`: the caller's name and the exact
  datasets (file versions) the caller may read. It only ever serves statements with
  that key, one at a time, so whatever a statement could leave in a database meets
  neither another caller nor the same caller with other rights;
* a database holds no data: the datasets are views of the cursor, which no other
  cursor sees and which go when the cursor is closed, as do the cursor's temporary
  objects, prepared statements, variables and random seed; statements are single
  SELECTs (:mod:`~flight_secure.sql.references`), which add nothing to a database,
  and its configuration was locked before it was first lent;
* a database comes back only after a statement that ended normally: after a failed,
  cancelled or timed-out one it is closed.

:class:`DatasetCache` keeps the ``pyarrow.dataset`` of each file version (path,
mtime, size, inode), so a statement does not re-open every readable file.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from flight_secure.files import Stamp, stamp_of

IDLE_DATABASES = 8
CACHED_DATASETS = 256


def pool_key(owner: str, versions: Mapping[str, Stamp]) -> Hashable:
    """The key of the databases that may serve ``owner`` reading dataset name -> version."""
    return owner, frozenset(versions.items())


class DatabasePool:
    """Locked databases made by ``open_database``, lent one statement at a time per key.

    At most ``max_idle`` wait to be lent again, the least recently returned closed
    first. Thread-safe.
    """

    def __init__(self, open_database: Callable[[], duckdb.DuckDBPyConnection],
                 max_idle: int = IDLE_DATABASES) -> None:
        self._open = open_database
        self.max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: OrderedDict[int, tuple[Hashable, duckdb.DuckDBPyConnection]] = OrderedDict()
        self._returned = 0
        self._closed = False

    @contextmanager
    def lend(self, key: Hashable) -> Iterator[duckdb.DuckDBPyConnection]:
        """A database for ``key``'s use alone during the block: one that served ``key``
        before, else a new one. It is kept for ``key`` if the block ends normally and
        closed if it raises."""
        database = self._take(key)
        if database is None:
            database = self._open()
        try:
            yield database
        except BaseException:
            database.close()
            raise
        self._give_back(key, database)

    def idle(self) -> int:
        """How many databases wait to be lent."""
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        """Close the waiting databases; those lent now are closed when they come back."""
        with self._lock:
            self._closed = True
            waiting, self._idle = list(self._idle.values()), OrderedDict()
        for _, database in waiting:
            database.close()

    def _take(self, key: Hashable) -> duckdb.DuckDBPyConnection | None:
        with self._lock:
            for number, (owner, database) in reversed(self._idle.items()):
                if owner == key:
                    del self._idle[number]
                    return database
        return None

    def _give_back(self, key: Hashable, database: duckdb.DuckDBPyConnection) -> None:
        evicted = []
        with self._lock:
            if self._closed:
                evicted.append(database)
            else:
                self._returned += 1
                self._idle[self._returned] = (key, database)
                while len(self._idle) > self.max_idle:
                    evicted.append(self._idle.popitem(last=False)[1][1])
        for old in evicted:
            old.close()


class DatasetCache:
    """``pyarrow.dataset`` objects of single files, by file version; at most ``size``.

    Thread-safe. A dataset scans its file when a query reads it, so one object serves
    any number of statements.
    """

    def __init__(self, open_dataset: Callable[[Path], Any], size: int = CACHED_DATASETS) -> None:
        self._open = open_dataset
        self.size = size
        self._lock = threading.Lock()
        self._found: OrderedDict[tuple[Path, Stamp], Any] = OrderedDict()

    def get(self, path: Path) -> tuple[Stamp, Any]:
        """The version of the file at ``path`` and its dataset.

        Raises OSError or ``pyarrow.ArrowException`` when the file cannot be read.
        """
        info = os.stat(path)
        key = (path, stamp_of(info))
        with self._lock:
            dataset = self._found.get(key)
            if dataset is not None:
                self._found.move_to_end(key)
                return key[1], dataset
        dataset = self._open(path)
        with self._lock:
            self._found[key] = dataset
            while len(self._found) > self.size:
                self._found.popitem(last=False)
        return key[1], dataset
