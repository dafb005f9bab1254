"""The DuckDB sandbox on its own: each lockdown, tried directly, without the parser check,
and what a cursor on a shared locked database keeps to itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

duckdb = pytest.importorskip("duckdb")

from flight_secure.sql.sandbox import locked_database, sandbox_cursor  # noqa: E402


@pytest.fixture
def sandbox(tmp_path: Path):
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "sales.parquet")
    pq.write_table(pa.table({"secret": ["s3cr3t"]}), tmp_path / "payroll.parquet")
    database = locked_database(memory_limit="128MB", threads=1)
    cursor = sandbox_cursor(database, {"sales": ds.dataset(tmp_path / "sales.parquet")})
    yield cursor
    cursor.close()
    database.close()


def test_only_the_given_datasets_are_tables(sandbox, tmp_path: Path) -> None:
    assert sandbox.sql("SELECT count(*) FROM sales").fetchall() == [(2,)]
    with pytest.raises(duckdb.CatalogException):
        sandbox.sql("SELECT * FROM payroll")


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_parquet('{tmp}/payroll.parquet')",
    "SELECT * FROM '{tmp}/payroll.parquet'",
    "SELECT * FROM glob('{tmp}/*')",
    "COPY (SELECT 1) TO '{tmp}/out.csv'",
    "ATTACH '{tmp}/x.db'",
])
def test_the_file_system_is_out_of_reach(sandbox, tmp_path: Path, sql: str) -> None:
    with pytest.raises(duckdb.Error, match="disabled by configuration"):
        sandbox.execute(sql.format(tmp=tmp_path)).fetchall()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["payroll.parquet", "sales.parquet"]


@pytest.mark.parametrize("sql", ["INSTALL httpfs", "LOAD httpfs", "LOAD '/tmp/x.duckdb_extension'"])
def test_extensions_cannot_be_installed_or_loaded(sandbox, sql: str) -> None:
    with pytest.raises(duckdb.Error):
        sandbox.execute(sql)


@pytest.mark.parametrize("sql", [
    "SET enable_external_access = true",
    "SET memory_limit = '64GB'",
    "SET autoload_known_extensions = true",
    "SET allowed_directories = ['/']",
    "RESET lock_configuration",
    "PRAGMA threads = 64",
])
def test_the_configuration_is_locked(sandbox, sql: str) -> None:
    with pytest.raises(duckdb.Error, match="locked"):
        sandbox.execute(sql)


def test_python_variables_are_not_tables(sandbox) -> None:
    server_secret = pa.table({"x": ["hidden"]})  # a replacement scan would find it
    assert server_secret.num_rows == 1
    with pytest.raises(duckdb.CatalogException):
        sandbox.sql("SELECT * FROM server_secret").fetchall()


def test_no_setting_names_a_server_path(sandbox) -> None:
    values = " ".join(str(v) for (v,) in sandbox.sql(
        "SELECT value FROM duckdb_settings()").fetchall())
    for path in (str(Path.cwd()), str(Path.home()), "/tmp"):
        assert path not in values


def test_a_query_is_bounded_by_the_memory_limit(sandbox) -> None:
    with pytest.raises(duckdb.OutOfMemoryException):
        sandbox.sql("SELECT list(range) FROM range(100000000)").fetchall()


def test_names_equal_but_for_case_are_registered_once(tmp_path: Path) -> None:
    pq.write_table(pa.table({"v": [1]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"v": [2]}), tmp_path / "b.parquet")
    datasets = {"Sales": ds.dataset(tmp_path / "a.parquet"),
                "sales": ds.dataset(tmp_path / "b.parquet")}
    database = locked_database(memory_limit="64MB", threads=1)
    try:
        assert sandbox_cursor(database, datasets).sql("SELECT v FROM sales").fetchall() == [(1,)]
    finally:
        database.close()


# ------------------------------------------------- one database, many cursors


@pytest.fixture
def database() -> Iterator[duckdb.DuckDBPyConnection]:
    database = locked_database(memory_limit="128MB", threads=1)
    yield database
    database.close()


def test_a_cursor_sees_only_its_own_datasets(database, tmp_path: Path) -> None:
    pq.write_table(pa.table({"secret": ["s3cr3t"]}), tmp_path / "payroll.parquet")
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "sales.parquet")
    alice = sandbox_cursor(database, {"payroll": ds.dataset(tmp_path / "payroll.parquet")})
    bob = sandbox_cursor(database, {"sales": ds.dataset(tmp_path / "sales.parquet")})
    assert alice.sql("SELECT * FROM payroll").fetchall() == [("s3cr3t",)]
    with pytest.raises(duckdb.CatalogException):
        bob.sql("SELECT * FROM payroll").fetchall()
    for listing in ("SELECT table_name FROM information_schema.tables",
                    "SELECT view_name FROM duckdb_views() WHERE NOT internal",
                    "SELECT table_name FROM duckdb_columns() WHERE NOT internal"):
        assert {name for (name,) in bob.sql(listing).fetchall()} == {"sales"}


#: (what a statement leaves behind, a probe, what a later cursor's probe finds).
CONNECTION_STATE = [
    ("SET VARIABLE x = 42", "SELECT getvariable('x')", [(None,)]),
    ("CREATE TEMP TABLE t AS SELECT 1 AS v", "SELECT * FROM t", duckdb.CatalogException),
    ("CREATE TEMP VIEW v AS SELECT 1 AS v", "SELECT * FROM v", duckdb.CatalogException),
    ("CREATE TEMP MACRO m() AS 7", "SELECT m()", duckdb.CatalogException),
    ("CREATE TEMP SEQUENCE s", "SELECT nextval('s')", duckdb.CatalogException),
    ("PREPARE p AS SELECT 5", "EXECUTE p", duckdb.Error),
    ("SET search_path = 'temp'", "SELECT current_setting('search_path')", [("",)]),
]


@pytest.mark.parametrize(("leave", "probe", "found"), CONNECTION_STATE,
                         ids=[leave.split(" AS ")[0] for leave, _, _ in CONNECTION_STATE])
def test_what_a_statement_leaves_in_its_cursor_goes_with_it(
        database, leave: str, probe: str, found: list | type[Exception]) -> None:
    first = sandbox_cursor(database, {})
    first.execute(leave)
    first.close()
    later = sandbox_cursor(database, {})
    if isinstance(found, list):
        assert later.sql(probe).fetchall() == found
    else:
        with pytest.raises(found):
            later.sql(probe).fetchall()


def test_a_random_seed_set_by_a_statement_goes_with_its_cursor(database) -> None:
    def seeded_then_drawn(cursor: duckdb.DuckDBPyConnection) -> float:
        cursor.execute("SELECT setseed(0.25)").fetchall()
        return cursor.sql("SELECT random()").fetchall()[0][0]

    first = sandbox_cursor(database, {})
    seeded = seeded_then_drawn(first)
    assert seeded_then_drawn(first) == seeded  # the seed decides the next draw
    first.execute("SELECT setseed(0.25)").fetchall()
    first.close()
    later = sandbox_cursor(database, {})
    assert later.sql("SELECT random()").fetchall()[0][0] != seeded
