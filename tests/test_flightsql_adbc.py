"""Flight SQL against a real client nobody here wrote: Arrow Go's ADBC Flight SQL driver.

The server is the one ``serve`` runs (DatasetServer with FlightSqlService), over TLS
with Basic auth (alice, bob) and, in the mTLS tests, client-certificate identity.
Arrow Go sends Basic credentials as unpadded base64; both users' ``user:password``
need padding, so every Basic login here also checks that such headers are accepted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("duckdb")
adbc = pytest.importorskip("adbc_driver_flightsql.dbapi")

from flightsql_site import PASSWORDS, PEOPLE, SECRET, Site, running_site  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("sql")) as running:
        yield running


@pytest.fixture(scope="module")
def mtls_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("sql-mtls"), mtls=True) as running:
        yield running


def rows(site: Site, user: str, sql: str, parameters: tuple = ()) -> list[tuple]:
    with site.connect(user, PASSWORDS[user]) as connection, connection.cursor() as cursor:
        cursor.execute(sql, parameters or None)
        return cursor.fetchall()


def test_join_and_aggregate_over_parquet_and_csv(site: Site) -> None:
    result = rows(site, "alice", "SELECT p.name, sum(s.amount) AS total, count(*) AS n "
                  "FROM sales s JOIN people p USING (id) GROUP BY p.name ORDER BY p.name")
    assert result == [("ann", 15.0, 2), ("ben", 7.5, 1), ("cy", 1.25, 1)]


def test_results_keep_arrow_types(site: Site) -> None:
    with site.connect("alice", PASSWORDS["alice"]) as connection, \
            connection.cursor() as cursor:
        cursor.execute("SELECT * FROM people ORDER BY id")
        assert cursor.fetch_arrow_table().equals(PEOPLE)


def test_wrong_password_is_refused_and_the_server_keeps_serving(site: Site) -> None:
    with pytest.raises(adbc.Error) as refused:
        site.connect("alice", "not-the-password")
    assert "UNAUTHENTICATED" in str(refused.value)
    assert "not-the-password" not in str(refused.value)
    assert rows(site, "bob", "SELECT count(*) FROM sales") == [(4,)]


def test_a_dataset_without_the_read_right_is_permission_denied(site: Site) -> None:
    with pytest.raises(adbc.Error) as refused:
        rows(site, "bob", "SELECT * FROM payroll")
    assert "UNAUTHORIZED" in str(refused.value) or "PermissionDenied" in str(refused.value)
    assert "payroll" in str(refused.value) and SECRET not in str(refused.value)


def test_get_objects_lists_only_readable_datasets_with_columns(site: Site) -> None:
    with site.connect("bob", PASSWORDS["bob"]) as connection:
        objects = connection.adbc_get_objects(depth="all").read_all().to_pylist()
    tables = {t["table_name"]: [c["column_name"] for c in t["table_columns"]]
              for catalog in objects for schema in catalog["catalog_db_schemas"]
              for t in schema["db_schema_tables"]}
    assert tables == {"sales": ["id", "amount"]}


def test_get_table_schema(site: Site) -> None:
    with site.connect("alice", PASSWORDS["alice"]) as connection:
        assert connection.adbc_get_table_schema("people") == PEOPLE.schema
        with pytest.raises(adbc.Error):
            connection.adbc_get_table_schema("no_such_table")


def test_get_info_names_this_server(site: Site) -> None:
    with site.connect("bob", PASSWORDS["bob"]) as connection:
        info = connection.adbc_get_info()
    assert info["vendor_name"] == "flight_secure"
    assert info["vendor_version"] == "test"


def test_prepared_statement_with_bound_parameters(site: Site) -> None:
    sql = "SELECT name FROM people WHERE id >= ? AND name <> ? ORDER BY id"
    with site.connect("alice", PASSWORDS["alice"]) as connection, \
            connection.cursor() as cursor:
        cursor.execute(sql, (2, "cy"))
        assert cursor.fetchall() == [("ben",)]
        cursor.execute(sql, (1, "ben"))  # the same statement, new parameters
        assert cursor.fetchall() == [("ann",), ("cy",)]


def test_prepared_statement_still_checks_rights(site: Site) -> None:
    with pytest.raises(adbc.Error, match="payroll"):
        rows(site, "bob", "SELECT salary FROM payroll WHERE id = ?", (1,))


def test_ingest_creates_a_dataset_readable_by_sql_and_as_parquet(site: Site) -> None:
    table = pa.table({"k": [1, 2, 3], "v": ["a", "b", "c"]})
    with site.connect("alice", PASSWORDS["alice"]) as connection, \
            connection.cursor() as cursor:
        assert cursor.adbc_ingest("uploaded", table, mode="create") == 3
        connection.commit()
        cursor.execute("SELECT sum(k) FROM uploaded")
        assert cursor.fetchall() == [(6,)]
    assert pq.read_table(site.data / "uploaded.parquet").equals(table)


def test_ingest_replace_needs_the_overwrite_right(site: Site) -> None:
    table = pa.table({"x": [1]})
    with site.connect("alice", PASSWORDS["alice"]) as connection, \
            connection.cursor() as cursor:
        cursor.adbc_ingest("replaced", table, mode="create")
        with pytest.raises(adbc.Error, match="exists"):
            cursor.adbc_ingest("replaced", table, mode="create")
        assert cursor.adbc_ingest("replaced", pa.table({"x": [1, 2]}), mode="replace") == 2
    with site.connect("bob", PASSWORDS["bob"]) as connection, connection.cursor() as cursor:
        # bob may not write at all: told so, not that "replaced" exists
        with pytest.raises(adbc.Error, match="may not write"):
            cursor.adbc_ingest("replaced", table, mode="replace")
        with pytest.raises(adbc.Error, match="may not write"):
            cursor.adbc_ingest("bobs", table, mode="create")
    assert pq.read_table(site.data / "replaced.parquet").num_rows == 2
    assert not (site.data / "bobs.parquet").exists()


def test_ingest_append_is_refused_as_unimplemented(site: Site) -> None:
    with site.connect("alice", PASSWORDS["alice"]) as connection, \
            connection.cursor() as cursor, pytest.raises(adbc.Error, match="append"):
        cursor.adbc_ingest("people", PEOPLE, mode="append")


def test_mtls_identity_reads_its_datasets_only(mtls_site: Site) -> None:
    with mtls_site.connect(client="carol") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sales")
        assert cursor.fetchall() == [(4,)]
        with pytest.raises(adbc.Error, match="people"):
            cursor.execute("SELECT * FROM people")
    with mtls_site.connect(client="mallory") as connection, connection.cursor() as cursor, \
            pytest.raises(adbc.Error, match="sales"):
        cursor.execute("SELECT * FROM sales")


def test_mtls_without_a_client_certificate_is_refused(mtls_site: Site) -> None:
    with pytest.raises(adbc.Error), mtls_site.connect() as connection, \
            connection.cursor() as cursor:
        cursor.execute("SELECT 1")
