"""Flight SQL on the wire with pyarrow.flight as a raw client: messages, tickets, refusals,
cancellation and the audit, where a driver would hide what is sent."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import wait_until

pytest.importorskip("duckdb")

from flightsql_site import PASSWORDS, SALES, Site, running_site

from flight_secure._generated import FlightSql_pb2 as sql_pb
from flight_secure._generated import flight_pb2
from flight_secure.sql import SqlLimits
from flight_secure.sql.protocol import MAX_SQL_BYTES, Statement, pack, unpack

ENDLESS = "SELECT sum(a.range * b.range) FROM range(1000000000) a, range(1000) b"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("wire"), limits=SqlLimits(time_limit=30)) as s:
        yield s


class Client:
    """A pyarrow.flight client logged in as ``user``."""

    def __init__(self, site: Site, user: str) -> None:
        self.flight = flight.connect(site.uri, tls_root_certs=site.certs.ca_cert_pem())
        token = self.flight.authenticate_basic_token(user, PASSWORDS[user])
        self.options = flight.FlightCallOptions(headers=[token])

    def info(self, message: Any, **kw: Any) -> flight.FlightInfo:
        descriptor = flight.FlightDescriptor.for_command(pack(message))
        return self.flight.get_flight_info(descriptor, self.call_options(**kw))

    def fetch(self, ticket: bytes, **kw: Any) -> pa.Table:
        return self.flight.do_get(flight.Ticket(ticket), self.call_options(**kw)).read_all()

    def query(self, sql: str) -> pa.Table:
        return self.fetch(self.info(sql_pb.CommandStatementQuery(query=sql)).endpoints[0]
                          .ticket.ticket)

    def action(self, kind: str, body: bytes) -> list[bytes]:
        results = self.flight.do_action(flight.Action(kind, body), self.options)
        return [r.body.to_pybytes() for r in results]

    def call_options(self, timeout: float | None = None) -> flight.FlightCallOptions:
        if timeout is None:
            return self.options
        return flight.FlightCallOptions(headers=self.options.headers, timeout=timeout)


@pytest.fixture(scope="module")
def alice(site: Site) -> Iterator[Client]:
    client = Client(site, "alice")
    yield client
    client.flight.close()


@pytest.fixture(scope="module")
def bob(site: Site) -> Iterator[Client]:
    client = Client(site, "bob")
    yield client
    client.flight.close()


def statement_ticket(sql: str) -> bytes:
    handle = Statement(sql).with_query_id().encode()
    return pack(sql_pb.TicketStatementQuery(statement_handle=handle))


def running(site: Site) -> int:
    return site.server.sql.runner.running.count()


# ----------------------------------------------------------------- statements


def test_statement_flight_info_schema_matches_the_stream(alice: Client) -> None:
    info = alice.info(sql_pb.CommandStatementQuery(query="SELECT * FROM sales ORDER BY id"))
    table = alice.fetch(info.endpoints[0].ticket.ticket)
    assert info.schema == table.schema
    assert table.column("amount").to_pylist() == [10.0, 5.0, 7.5, 1.25]


def test_get_schema_runs_nothing(alice: Client) -> None:
    descriptor = flight.FlightDescriptor.for_command(
        pack(sql_pb.CommandStatementQuery(query="SELECT id, amount * 2 AS twice FROM sales")))
    schema = alice.flight.get_schema(descriptor, alice.options).schema
    assert schema.names == ["id", "twice"]


def test_raw_flight_datasets_still_work_beside_sql(alice: Client) -> None:
    names = {info.descriptor.path[0].decode() for info in alice.flight.list_flights(
        options=alice.options)}
    assert {"sales", "people", "payroll"} <= names
    assert alice.fetch(b"sales").num_rows == SALES.num_rows


def test_a_forged_ticket_is_checked_against_the_bearers_rights(bob: Client) -> None:
    with pytest.raises(flight.FlightUnauthorizedError, match="payroll"):
        bob.fetch(statement_ticket("SELECT * FROM payroll"))


def test_a_ticket_passed_to_another_user_runs_with_that_users_rights(
        alice: Client, bob: Client) -> None:
    info = alice.info(sql_pb.CommandStatementQuery(query="SELECT * FROM payroll"))
    with pytest.raises(flight.FlightUnauthorizedError):
        bob.fetch(info.endpoints[0].ticket.ticket)


@pytest.mark.parametrize("command", [
    b"\x0a\x05junk!",
    pack(sql_pb.TicketStatementQuery(statement_handle=b"not json")),
    pack(sql_pb.CommandPreparedStatementQuery(prepared_statement_handle=b'{"sql": 5}')),
    pack(sql_pb.CommandStatementQuery(query="")),
    pack(sql_pb.CommandStatementQuery(query="SELECT '" + "x" * MAX_SQL_BYTES + "'")),
    pack(sql_pb.CommandStatementQuery(query="SELEKT 1")),
])
def test_malformed_commands_are_invalid_arguments(site: Site, bob: Client,
                                                  command: bytes) -> None:
    descriptor = flight.FlightDescriptor.for_command(command)
    with pytest.raises(pa.ArrowInvalid) as refused:  # INVALID_ARGUMENT
        bob.flight.get_flight_info(descriptor, bob.options)
    assert str(site.root) not in str(refused.value)
    assert bob.query("SELECT count(*) AS n FROM sales").column("n").to_pylist() == [4]


@pytest.mark.parametrize(("kind", "message"), [
    ("BeginTransaction", sql_pb.ActionBeginTransactionRequest()),
    ("CreatePreparedSubstraitPlan", sql_pb.ActionCreatePreparedSubstraitPlanRequest()),
])
def test_transactions_and_substrait_actions_are_unimplemented(bob: Client, kind: str,
                                                             message: Any) -> None:
    with pytest.raises(pa.ArrowNotImplementedError, match="not supported"):
        bob.action(kind, pack(message))


@pytest.mark.parametrize("message", [
    sql_pb.CommandStatementSubstraitPlan(),
    sql_pb.CommandStatementQuery(query="SELECT 1", transaction_id=b"t"),
    sql_pb.CommandGetXdbcTypeInfo(),
])
def test_unsupported_commands_are_unimplemented(bob: Client, message: Any) -> None:
    with pytest.raises(pa.ArrowNotImplementedError):
        bob.info(message)


def test_sql_updates_are_unimplemented_with_a_pointer_to_ingestion(bob: Client) -> None:
    descriptor = flight.FlightDescriptor.for_command(
        pack(sql_pb.CommandStatementUpdate(query="DELETE FROM sales")))
    writer, _ = bob.flight.do_put(descriptor, pa.schema([]), bob.options)
    with pytest.raises(pa.ArrowNotImplementedError, match="ingestion"):
        writer.close()


# ------------------------------------------------------------------- metadata


def test_sql_info_answers_in_the_protocols_schema(bob: Client) -> None:
    info = bob.info(sql_pb.CommandGetSqlInfo(info=[0, 4, 504, 99999]))
    table = bob.fetch(info.endpoints[0].ticket.ticket)
    assert table.schema.field("value").type.mode == "dense"
    answers = dict(zip(table.column("info_name").to_pylist(),
                       table.column("value").to_pylist(), strict=True))
    assert answers == {0: "flight_secure", 4: True, 504: '"'}


def test_get_tables_lists_readable_datasets_with_their_schemas(bob: Client) -> None:
    command = sql_pb.CommandGetTables(include_schema=True, table_name_filter_pattern="%a%")
    table = bob.fetch(bob.info(command).endpoints[0].ticket.ticket)
    assert table.column("table_name").to_pylist() == ["sales"]
    schema = pa.ipc.read_schema(pa.py_buffer(table.column("table_schema")[0].as_py()))
    assert schema.names == ["id", "amount"]


def test_catalogs_schemas_and_table_types(bob: Client) -> None:
    def rows(message: Any) -> list[dict]:
        return bob.fetch(bob.info(message).endpoints[0].ticket.ticket).to_pylist()

    assert rows(sql_pb.CommandGetCatalogs()) == []
    assert rows(sql_pb.CommandGetDbSchemas()) == [{"catalog_name": None,
                                                  "db_schema_name": "main"}]
    assert rows(sql_pb.CommandGetDbSchemas(catalog="elsewhere")) == []
    assert rows(sql_pb.CommandGetTableTypes()) == [{"table_type": "TABLE"}]
    assert rows(sql_pb.CommandGetPrimaryKeys(table="sales")) == []


# -------------------------------------------------------------- cancellation


def test_a_large_result_streams_before_it_is_complete(site: Site, alice: Client) -> None:
    ticket = statement_ticket("SELECT range AS n FROM range(10000000000)")  # ~80 GB
    reader = alice.flight.do_get(flight.Ticket(ticket), alice.options)
    assert reader.read_chunk().data.num_rows > 0
    reader.cancel()
    wait_until(lambda: running(site) == 0, timeout=10)


def test_a_client_deadline_stops_the_query(site: Site, alice: Client) -> None:
    with pytest.raises(flight.FlightTimedOutError):
        alice.fetch(statement_ticket(ENDLESS), timeout=0.5)
    wait_until(lambda: running(site) == 0, timeout=10)


def test_cancel_flight_info_stops_the_query(site: Site, alice: Client) -> None:
    info = alice.info(sql_pb.CommandStatementQuery(query=ENDLESS))
    outcome: list[BaseException] = []

    def fetch() -> None:
        try:
            alice.fetch(info.endpoints[0].ticket.ticket)
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=fetch)
    reader.start()
    wait_until(lambda: running(site) == 1, timeout=10)
    request = flight_pb2.CancelFlightInfoRequest(info=flight_pb2.FlightInfo.FromString(
        info.serialize()))
    [result] = alice.action("CancelFlightInfo", request.SerializeToString())
    assert flight_pb2.CancelFlightInfoResult.FromString(result).status == \
        flight_pb2.CANCEL_STATUS_CANCELLED
    reader.join(timeout=10)
    assert isinstance(outcome[0], flight.FlightCancelledError)
    assert running(site) == 0


def test_another_user_cannot_cancel_a_query(site: Site, alice: Client, bob: Client) -> None:
    info = alice.info(sql_pb.CommandStatementQuery(query="SELECT 42 AS x"))
    request = flight_pb2.CancelFlightInfoRequest(info=flight_pb2.FlightInfo.FromString(
        info.serialize()))
    bob.action("CancelFlightInfo", request.SerializeToString())
    assert alice.fetch(info.endpoints[0].ticket.ticket).column("x").to_pylist() == [42]


def test_the_time_limit_stops_a_query(tmp_path: Any) -> None:
    with running_site(tmp_path, limits=SqlLimits(time_limit=0.5)) as short:
        client = Client(short, "alice")
        try:
            with pytest.raises(flight.FlightTimedOutError, match=r"longer than 0\.5 s"):
                client.fetch(statement_ticket(ENDLESS))
        finally:
            client.flight.close()


# ---------------------------------------------------------------------- audit


def sql_audits(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    """The Flight SQL audit records captured, as their structured fields."""
    return [r.audit for r in caplog.records
            if r.name == "flight_secure.audit" and r.audit["event"].startswith("sql ")]


def test_every_statement_is_audited_with_the_sql_only_at_debug(
        alice: Client, bob: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="flight_secure.audit"):
        alice.query("SELECT * FROM sales JOIN people USING (id)\n-- forged line")
        with pytest.raises(flight.FlightUnauthorizedError):
            bob.query("SELECT * FROM payroll")
    records = sql_audits(caplog)
    done = next(r for r in records if r["who"] == "alice" and r["event"] == "sql query ok")
    assert (done["scheme"], done["dataset"], done["rows"]) == ("basic", "people,sales", "4")
    refused = next(r for r in records if r["who"] == "bob")
    assert (refused["event"], refused["dataset"]) == ("sql plan refused", "payroll")
    assert all("sql" not in r for r in records)
    assert all("SELECT" not in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="flight_secure.audit"):
        alice.query("SELECT 1 AS x\n-- forged line")
    texts = [r.getMessage() for r in caplog.records if r.name == "flight_secure.audit"]
    assert 'sql text: who=alice sql="SELECT 1 AS x\\n-- forged line"' in texts
    assert all("\n" not in t for t in texts)


def test_unpack_refuses_other_messages() -> None:
    with pytest.raises(pa.ArrowInvalid):
        unpack(b"")


def prepare_and_bind(client: Client, sql: str, parameters: pa.Table) -> bytes:
    """CreatePreparedStatement, then DoPut the parameters; the handle DoPut returns."""
    request = sql_pb.ActionCreatePreparedStatementRequest(query=sql)
    [created] = client.action("CreatePreparedStatement", pack(request))
    handle = unpack(created).prepared_statement_handle
    descriptor = flight.FlightDescriptor.for_command(
        pack(sql_pb.CommandPreparedStatementQuery(prepared_statement_handle=handle)))
    writer, metadata = client.flight.do_put(descriptor, parameters.schema, client.options)
    writer.write_table(parameters)
    writer.done_writing()
    answer = metadata.read()
    writer.close()
    return sql_pb.DoPutPreparedStatementResult.FromString(
        answer.to_pybytes()).prepared_statement_handle


@pytest.mark.parametrize("column", ["1", "anything"])
def test_positional_parameters_bind_by_column_order_whatever_the_names(
        alice: Client, column: str) -> None:
    handle = prepare_and_bind(alice, "SELECT count(*) AS n FROM sales WHERE id = ?",
                              pa.table({column: [1]}))
    info = alice.info(sql_pb.CommandPreparedStatementQuery(prepared_statement_handle=handle))
    assert alice.fetch(info.endpoints[0].ticket.ticket).column("n").to_pylist() == [2]


def test_binding_more_than_one_row_is_refused(alice: Client) -> None:
    with pytest.raises(pa.ArrowInvalid, match="one row"):
        prepare_and_bind(alice, "SELECT ? AS x", pa.table({"1": [1, 2]}))


def test_an_ingest_cut_off_midway_leaves_no_dataset(
        site: Site, caplog: pytest.LogCaptureFixture) -> None:
    client = Client(site, "alice")
    command = sql_pb.CommandStatementIngest(table="cut_off")
    command.table_definition_options.if_not_exist = \
        sql_pb.CommandStatementIngest.TableDefinitionOptions.TABLE_NOT_EXIST_OPTION_CREATE
    descriptor = flight.FlightDescriptor.for_command(pack(command))
    batch = pa.record_batch({"v": pa.array(range(100_000))})
    with caplog.at_level(logging.INFO, logger="flight_secure.audit"):
        writer, _ = client.flight.do_put(descriptor, batch.schema, client.call_options(timeout=1))
        writer.write_batch(batch)  # and no end of stream: the deadline cuts the upload off
        wait_until(lambda: any(r["event"].startswith("sql ingest") for r in sql_audits(caplog)),
                   timeout=10)
    [ended] = [r for r in sql_audits(caplog) if r["event"].startswith("sql ingest")]
    assert (ended["event"], ended["dataset"]) == ("sql ingest failed", "cut_off")
    assert sorted(p.name for p in site.data.iterdir() if "cut_off" in p.name) == []
    client.flight.close()


# ------------------------------------------------------- what exists, unseen


def ingest_refusal(client: Client, name: str, if_exists: int) -> str:
    """The error text of ``client`` uploading one row as dataset ``name``."""
    command = sql_pb.CommandStatementIngest(table=name)
    command.table_definition_options.if_exists = if_exists
    descriptor = flight.FlightDescriptor.for_command(pack(command))
    table = pa.table({"v": [1]})
    writer, _ = client.flight.do_put(descriptor, table.schema, client.options)
    with pytest.raises(flight.FlightUnauthorizedError) as refused:
        writer.write_table(table)
        writer.close()
    return str(refused.value).split(". Detail:")[0]


@pytest.mark.parametrize("if_exists", [
    sql_pb.CommandStatementIngest.TableDefinitionOptions.TABLE_EXISTS_OPTION_REPLACE,
    sql_pb.CommandStatementIngest.TableDefinitionOptions.TABLE_EXISTS_OPTION_FAIL,
])
def test_an_ingest_refusal_does_not_tell_whether_the_dataset_exists(
        site: Site, bob: Client, if_exists: int) -> None:
    existing = ingest_refusal(bob, "people", if_exists)  # bob may not even read it
    absent = ingest_refusal(bob, "no_such_dataset", if_exists)
    assert existing == absent.replace("no_such_dataset", "people")
    assert "may not write" in existing
    assert not any("no_such_dataset" in p.name for p in site.data.iterdir())


def outcome(call: Any) -> tuple[str, str]:
    """What ``call()`` answers: the error class and first line of its message, or ok."""
    try:
        call()
    except (flight.FlightError, pa.ArrowException, OSError) as exc:
        return type(exc).__name__, str(exc).splitlines()[0].split(". Detail:")[0]
    return "ok", ""


@pytest.mark.parametrize("rpc", ["GetFlightInfo", "GetSchema", "CreatePreparedStatement"])
def test_a_query_refusal_does_not_tell_whether_an_unreadable_dataset_exists(
        bob: Client, rpc: str) -> None:
    def attempt(table: str) -> Any:
        sql = f"SELECT * FROM {table}"  # noqa: S608 (the test names the table)
        command = sql_pb.CommandStatementQuery(query=sql)
        descriptor = flight.FlightDescriptor.for_command(pack(command))
        if rpc == "GetFlightInfo":
            return lambda: bob.flight.get_flight_info(descriptor, bob.options)
        if rpc == "GetSchema":
            return lambda: bob.flight.get_schema(descriptor, bob.options)
        request = sql_pb.ActionCreatePreparedStatementRequest(query=sql)
        return lambda: bob.action("CreatePreparedStatement", pack(request))

    # bob may not read payroll; PAYROLL names it too, as DuckDB ignores case
    kind, message = outcome(attempt("PAYROLL"))
    absent_kind, absent_message = outcome(attempt("NOPAYROLL"))
    assert (kind, message) == (absent_kind, absent_message.replace("NOPAYROLL", "PAYROLL"))
    assert "payroll" not in message
