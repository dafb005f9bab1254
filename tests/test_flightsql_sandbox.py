"""The DuckDB sandbox on its own: each lockdown, tried directly, without the parser check."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

duckdb = pytest.importorskip("duckdb")

from flight_secure.sql.sandbox import open_sandbox  # noqa: E402


@pytest.fixture
def sandbox(tmp_path: Path):
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "sales.parquet")
    pq.write_table(pa.table({"secret": ["s3cr3t"]}), tmp_path / "payroll.parquet")
    connection = open_sandbox({"sales": ds.dataset(tmp_path / "sales.parquet")},
                              memory_limit="128MB", threads=1)
    yield connection
    connection.close()


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
    connection = open_sandbox(datasets, memory_limit="64MB", threads=1)
    try:
        assert connection.sql("SELECT v FROM sales").fetchall() == [(1,)]
    finally:
        connection.close()
