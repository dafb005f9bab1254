"""Hostile SQL from a logged-in low-privilege user (bob, through the Go ADBC driver).

bob may read ``sales`` but not ``payroll`` or ``people``. Every attempt below must be
refused with nothing leaked (no secret value, no server path, no name of a dataset the
query did not itself write) and the server must keep serving afterwards. The queries
that are allowed must see only what bob may read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

pytest.importorskip("duckdb")
adbc = pytest.importorskip("adbc_driver_flightsql.dbapi")

from flightsql_site import PASSWORDS, SECRET, Site, running_site  # noqa: E402

FORBIDDEN = ("payroll", "people")

#: Attempts that must be refused. {root} and {data} are the site's folders.
HOSTILE = [
    # the file system, outside and inside the data folder
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('{root}/secret.txt')",
    "SELECT * FROM read_csv_auto('{root}/secret.txt')",
    "SELECT * FROM '{root}/secret.txt'",
    "SELECT * FROM '{data}/payroll.feather'",
    "SELECT * FROM read_parquet('{data}/people.parquet')",
    "SELECT * FROM glob('{data}/*')",
    "COPY (SELECT * FROM sales) TO '{root}/out.csv'",
    "COPY sales FROM '{root}/secret.txt'",
    "ATTACH '{root}/x.db' AS x",
    "EXPORT DATABASE '{root}/dump'",
    # extensions, configuration, environment
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET memory_limit = '100GB'",
    "RESET lock_configuration",
    "PRAGMA enable_profiling",
    "SELECT current_setting('home_directory')",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM duckdb_extensions()",
    "SELECT getenv('HOME')",
    "SELECT * FROM read_json('https://example.invalid/x.json')",
    # table functions that run SQL built at run time or act on the database itself
    "SELECT * FROM destroy_external_resource('query', 'SELECT * FROM sales')",
    "SELECT * FROM checkpoint()",
    "SELECT * FROM truncate_duckdb_logs()",
    "SELECT * FROM duckdb_logs()",
    "SELECT * FROM duckdb_live_query_metrics()",
    "SELECT * FROM histogram(payroll, salary)",
    # the forbidden dataset, in every form of query
    "SELECT * FROM payroll",
    'SELECT * FROM "payroll"',
    "SELECT * FROM PAYROLL",
    'SELECT * FROM "PayRoll"',
    "SELECT * FROM main.payroll",
    "SELECT * FROM temp.main.payroll",
    "FROM payroll",
    "SELECT * FROM sales JOIN payroll USING (id)",
    "SELECT * FROM sales WHERE id IN (SELECT id FROM payroll)",
    "SELECT (SELECT max(salary) FROM payroll) AS s",
    "SELECT * FROM sales, LATERAL (SELECT salary FROM payroll WHERE payroll.id = sales.id)",
    "WITH x AS (SELECT * FROM payroll) SELECT * FROM x",
    "WITH RECURSIVE r AS (SELECT * FROM payroll UNION ALL SELECT * FROM r) SELECT * FROM r",
    "SELECT 'x' UNION ALL SELECT salary FROM payroll",
    "SELECT * FROM sales WHERE EXISTS (SELECT 1 FROM people)",
    "SELECT * FROM query_table('payroll')",
    "SELECT * FROM query('SELECT * FROM pay' || 'roll')",
    "SUMMARIZE payroll",
    "DESCRIBE payroll",
    "PIVOT payroll ON id USING first(salary)",
    "EXPLAIN SELECT * FROM payroll",
    # stacked statements, comments, quoting tricks
    "SELECT 1; SELECT * FROM payroll",
    "SELECT * FROM sales; DROP VIEW sales",
    "SELECT * FROM sales /* ; */ ; SELECT 1",
    "SELECT * FROM sales -- harmless?\n; SELECT * FROM payroll",
    'SELECT * FROM "pay""roll"',
    "SELECT * FROM payroll\u0000",
    # writes and definitions
    "CREATE VIEW v AS SELECT * FROM payroll",
    "CREATE TABLE t AS SELECT 1",
    "INSERT INTO sales VALUES (9, 9.0)",
    "DROP VIEW sales",
    "CREATE MACRO m() AS TABLE SELECT * FROM payroll",
    "SET VARIABLE x = 1",
    "CALL pragma_database_list()",
    "USE memory",
    "CHECKPOINT",
    "DETACH memory",
]

#: Allowed queries whose answers must hold nothing bob may not read.
ALLOWED = [
    ("SELECT table_name FROM information_schema.tables ORDER BY 1", [("sales",)]),
    ("SELECT table_name FROM information_schema.columns WHERE table_name <> 'sales'", []),
    ("SELECT view_name FROM duckdb_views() WHERE NOT internal", [("sales",)]),
    ("SELECT count(*) FROM duckdb_tables()", [(0,)]),
    ("SELECT tablename FROM pg_catalog.pg_tables", []),
    ("SELECT name FROM (SHOW TABLES)", [("sales",)]),
    ("WITH payroll AS (SELECT 1 AS x) SELECT * FROM payroll", [(1,)]),
    ("SELECT count(*) FROM sales /* ; SELECT * FROM payroll */ -- ;", [(4,)]),
    ("SELECT 'payroll; DROP' AS s", [("payroll; DROP",)]),
    ("SELECT count(*) FROM range(3) JOIN unnest([0, 1]) u(x) ON range = x", [(2,)]),
    ("WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) "
     "SELECT count(*) FROM r", [(3,)]),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("hostile")) as running:
        yield running


@pytest.fixture(scope="module")
def bob(site: Site) -> Iterator[object]:
    with site.connect("bob", PASSWORDS["bob"]) as connection:
        yield connection


def leaked(message: str, sql: str, site: Site) -> list[str]:
    """What ``message`` reveals that the query did not write itself."""
    found = [SECRET] if SECRET in message else []
    found += [path for path in (str(site.root), "/root", "/home", "root:x:0")
              if path in message and path not in sql]
    found += [name for name in FORBIDDEN
              if re.search(name, message, re.IGNORECASE)
              and not re.search(name, sql, re.IGNORECASE)]
    return found


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_sql_is_refused_without_leaking(site: Site, bob: object,
                                                template: str) -> None:
    sql = template.format(root=site.root, data=site.data)
    with bob.cursor() as cursor:
        with pytest.raises(adbc.Error) as refused:
            cursor.execute(sql)
            cursor.fetchall()
        assert leaked(str(refused.value), sql, site) == []
        cursor.execute("SELECT count(*) FROM sales")
        assert cursor.fetchall() == [(4,)]
    assert not (site.root / "out.csv").exists()
    assert not (site.root / "x.db").exists()


@pytest.mark.parametrize(("sql", "expected"), ALLOWED)
def test_allowed_sql_sees_only_readable_datasets(bob: object, sql: str,
                                                 expected: list[tuple]) -> None:
    with bob.cursor() as cursor:
        cursor.execute(sql)
        assert cursor.fetchall() == expected


def test_error_for_an_unknown_table_names_only_readable_ones(site: Site, bob: object) -> None:
    with bob.cursor() as cursor, pytest.raises(adbc.Error) as refused:
        cursor.execute("SELECT * FROM payrol")  # one letter off a forbidden name
    assert leaked(str(refused.value), "SELECT * FROM payrol", site) == []
