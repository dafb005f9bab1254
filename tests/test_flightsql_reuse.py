"""What Flight SQL statements reuse, and what they never share.

A statement borrows a locked database lent per caller and per set of readable file
versions, one statement at a time, and gives it back only when it ended normally; the
Arrow dataset of an unchanged file is opened once. Together with the cursor tests of
``test_flightsql_sandbox.py`` this is what lets statements skip opening a database
without one caller's statement ever meeting another's state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

duckdb = pytest.importorskip("duckdb")

from flightsql_site import PASSWORDS, running_site  # noqa: E402

from flight_secure.cli.datasets import DatasetFolder  # noqa: E402
from flight_secure.errors import FlightTimedOutError, FlightUnauthorizedError  # noqa: E402
from flight_secure.sql import Caller, SqlLimits  # noqa: E402
from flight_secure.sql.pool import DatabasePool, DatasetCache  # noqa: E402
from flight_secure.sql.protocol import Statement  # noqa: E402
from flight_secure.sql.sandbox import locked_database  # noqa: E402
from flight_secure.sql.statements import StatementRunner  # noqa: E402

ENDLESS = "SELECT sum(a.range * b.range) FROM range(1000000000) a, range(1000) b"


def small_database() -> duckdb.DuckDBPyConnection:
    return locked_database(memory_limit="64MB", threads=1)


@pytest.fixture
def pool() -> Iterator[DatabasePool]:
    databases = DatabasePool(small_database, max_idle=2)
    yield databases
    databases.close()


def is_closed(database: duckdb.DuckDBPyConnection) -> bool:
    try:
        database.execute("SELECT 1")
    except duckdb.ConnectionException:
        return True
    return False


# ------------------------------------------------------------------ the pool


def test_a_database_comes_back_to_the_key_it_served(pool: DatabasePool) -> None:
    with pool.lend("alice") as first:
        pass
    with pool.lend("alice") as again:
        assert again is first


def test_a_database_never_serves_another_key(pool: DatabasePool) -> None:
    with pool.lend("alice") as alices:
        pass
    with pool.lend("bob") as bobs:
        assert bobs is not alices
    assert pool.idle() == 2


def test_a_database_serves_one_statement_at_a_time(pool: DatabasePool) -> None:
    with pool.lend("alice") as one, pool.lend("alice") as two:
        assert one is not two


def test_a_database_whose_statement_failed_is_closed_not_kept(pool: DatabasePool) -> None:
    with pytest.raises(RuntimeError), pool.lend("alice") as failed:
        raise RuntimeError("the statement failed")
    assert is_closed(failed)
    assert pool.idle() == 0


def test_at_most_max_idle_wait_and_the_oldest_is_closed_first(pool: DatabasePool) -> None:
    lent = {}
    for key in ("a", "b", "c"):
        with pool.lend(key) as database:
            lent[key] = database
    assert pool.idle() == 2
    assert is_closed(lent["a"]) and not is_closed(lent["c"])


def test_close_closes_the_waiting_and_the_lent_when_they_come_back(pool: DatabasePool) -> None:
    with pool.lend("alice") as waiting:
        pass
    with pool.lend("bob") as lent:
        pool.close()
        assert is_closed(waiting) and not is_closed(lent)
    assert is_closed(lent) and pool.idle() == 0


# ---------------------------------------------------------- the dataset cache


def replace_file(path: Path, table: pa.Table) -> None:
    """Write ``table`` to ``path`` the way uploads do: a new file renamed over the old."""
    pq.write_table(table, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)


def test_an_unchanged_file_is_opened_once_and_a_changed_one_again(tmp_path: Path) -> None:
    path = tmp_path / "sales.parquet"
    replace_file(path, pa.table({"v": [1]}))
    opened: list[Path] = []
    cache = DatasetCache(lambda p: opened.append(p) or pq.ParquetDataset(p))
    first_version, first = cache.get(path)
    assert cache.get(path) == (first_version, first)
    replace_file(path, pa.table({"v": [1, 2]}))
    version, dataset = cache.get(path)
    assert version != first_version and dataset is not first
    assert dataset.read().num_rows == 2 and opened == [path, path]


def test_the_cache_keeps_at_most_its_size_the_least_recently_used_leaving(
        tmp_path: Path) -> None:
    opened: list[str] = []
    cache = DatasetCache(lambda p: opened.append(p.stem) or pq.ParquetDataset(p), size=2)
    for name in ("a", "b", "c"):
        replace_file(tmp_path / f"{name}.parquet", pa.table({"v": [1]}))
    for name in ("a", "b", "c", "a", "c"):
        cache.get(tmp_path / f"{name}.parquet")
    assert opened == ["a", "b", "c", "a"]  # a had left for c; c was still there


# ------------------------------------------------------------ the statements


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[StatementRunner]:
    for name in ("sales", "payroll"):
        replace_file(tmp_path / f"{name}.parquet", pa.table({"v": [1, 2, 3]}))
    statements = StatementRunner(DatasetFolder(tmp_path),
                                 SqlLimits(memory_limit="128MB", threads=1, time_limit=1.0))
    yield statements
    statements.close()


def reader(name: str, readable: set[str]) -> Caller:
    return Caller(name, lambda dataset, right: right == "read" and dataset in readable)


def run(runner: StatementRunner, caller: Caller, sql: str) -> list[dict]:
    return runner.stream(caller, Statement(sql)).read_all().to_pylist()


def test_the_statements_of_one_caller_reuse_one_database(runner: StatementRunner) -> None:
    alice = reader("alice", {"sales", "payroll"})
    for _ in range(5):
        runner.schema(alice, Statement("SELECT count(*) AS n FROM sales"), "plan")
        assert run(runner, alice, "SELECT count(*) AS n FROM sales") == [{"n": 3}]
    assert runner.databases.idle() == 1


def test_other_callers_and_other_rights_get_databases_of_their_own(
        runner: StatementRunner) -> None:
    run(runner, reader("alice", {"sales", "payroll"}), "SELECT 1 AS x")
    run(runner, reader("bob", {"sales", "payroll"}), "SELECT 1 AS x")
    run(runner, reader("alice", {"sales"}), "SELECT 1 AS x")
    assert runner.databases.idle() == 3


def test_a_replaced_file_gets_its_readers_a_new_database(runner: StatementRunner,
                                                         tmp_path: Path) -> None:
    alice = reader("alice", {"sales"})
    assert run(runner, alice, "SELECT count(*) AS n FROM sales") == [{"n": 3}]
    replace_file(tmp_path / "sales.parquet", pa.table({"v": [1]}))
    assert run(runner, alice, "SELECT count(*) AS n FROM sales") == [{"n": 1}]
    assert runner.databases.idle() == 2


def test_a_database_whose_statement_timed_out_is_not_reused(runner: StatementRunner) -> None:
    alice = reader("alice", {"sales"})
    with pytest.raises(FlightTimedOutError):
        run(runner, alice, ENDLESS)
    assert runner.databases.idle() == 0
    assert run(runner, alice, "SELECT 1 AS x") == [{"x": 1}]


@pytest.mark.parametrize("sql", [
    "CREATE TABLE main.kept AS SELECT * FROM payroll",
    "CREATE TYPE kept AS ENUM ('x')",
    "ATTACH ':memory:' AS kept",
    "SET VARIABLE kept = (SELECT max(v) FROM payroll)",
    "CREATE MACRO kept() AS TABLE SELECT * FROM payroll",
    "PREPARE kept AS SELECT * FROM payroll",
])
def test_a_statement_that_would_add_to_its_database_never_runs(
        runner: StatementRunner, sql: str) -> None:
    with pytest.raises(FlightUnauthorizedError, match="only SELECT"):
        run(runner, reader("alice", {"sales", "payroll"}), sql)
    assert runner.databases.idle() == 0


def test_an_adbc_execute_reuses_one_database(tmp_path: Path) -> None:
    with running_site(tmp_path) as site, site.connect("alice", PASSWORDS["alice"]) as \
            connection, connection.cursor() as cursor:
        for parameter in range(10):
            cursor.execute("SELECT count(*) FROM sales WHERE id >= ?", (parameter,))
            cursor.fetchall()
        assert site.server.sql.runner.databases.idle() == 1
