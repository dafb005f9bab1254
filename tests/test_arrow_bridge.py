"""Specification of flight_secure.arrow.ArrowServer: a flight_secure server on pyarrow's engine.

``Shop`` is written for flight_secure's engine only (its types, its context,
no call to authorize_action); ArrowServer serves it unchanged behind
``server_options``, to pyarrow's client and to flight_secure's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import flight_secure as flight
from flight_secure.arrow import ArrowServer, server_options
from flight_secure.auth import AccessPolicy, JWTIssuer, JWTServerAuthHandler, JWTVerifier

TABLE = pa.table({"n": pa.array([1, 2, 3]), "s": pa.array(["a", "b", None])})


class Shop(flight.FlightServerBase):
    """Every RPC, written against flight_secure's API."""

    def __init__(self) -> None:
        self.tables = {"items": TABLE}
        self.lock = threading.Lock()
        super().__init__()

    def _info(self, name: str) -> flight.FlightInfo:
        table = self.tables[name]
        return flight.FlightInfo(table.schema, flight.FlightDescriptor.for_path(name),
                                 [flight.FlightEndpoint(name.encode(), [])],
                                 table.num_rows, table.nbytes)

    def list_flights(self, context, criteria):
        for name in sorted(self.tables):
            yield self._info(name)

    def get_flight_info(self, context, descriptor):
        name = descriptor.path[0].decode()
        if name not in self.tables:
            raise flight.FlightNotFoundError(f"no table {name!r}")
        return self._info(name)

    def get_schema(self, context, descriptor):
        return flight.SchemaResult(self.tables[descriptor.path[0].decode()].schema)

    def do_get(self, context, ticket):
        if ticket.ticket == b"generated":
            batches = TABLE.to_batches()
            return flight.GeneratorStream(TABLE.schema, ((b, b"meta") for b in batches))
        if ticket.ticket == b"table":
            return TABLE
        return flight.RecordBatchStream(self.tables[ticket.ticket.decode()])

    def do_put(self, context, descriptor, reader, writer):
        table = reader.read_all()
        with self.lock:
            self.tables[descriptor.path[0].decode()] = table
        writer.write(f"stored {table.num_rows} for {context.peer_identity().decode()}".encode())

    def do_exchange(self, context, descriptor, reader, writer):
        writer.begin(reader.schema)
        for chunk in reader:
            writer.write_batch(chunk.data)

    def list_actions(self, context):
        return [flight.ActionType("whoami", "the caller"), ("drop", "forget a table")]

    def do_action(self, context, action):
        if action.type == "whoami":
            yield flight.Result(context.peer_identity())
            yield flight.Result(context.principal.method.encode())
            yield b"and bytes"
        elif action.type == "drop":
            with self.lock:
                del self.tables[action.body.to_pybytes().decode()]
        else:
            raise flight.FlightUnimplementedError(f"unknown action {action.type!r}")


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def shop(key) -> Iterator[ArrowServer]:
    handler = JWTServerAuthHandler(JWTVerifier(key.public_key(), ["EdDSA"]))
    policy = AccessPolicy(actions={"drop": ["admin"]})
    server = ArrowServer(Shop(), "grpc://localhost:0", **server_options(handler, policy))
    with server:
        yield server


def options(key: Ed25519PrivateKey, name: str, *roles: str) -> pa_flight.FlightCallOptions:
    token = JWTIssuer(key).issue(name, roles=list(roles))
    return pa_flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())],
                                       timeout=10)


@pytest.fixture
def client(shop) -> Iterator[pa_flight.FlightClient]:
    with pa_flight.connect(f"grpc://localhost:{shop.port}") as connection:
        yield connection


def test_metadata_rpcs(client, key):
    caller = options(key, "ann")
    (info,) = client.list_flights(options=caller)
    assert info.descriptor.path == [b"items"] and info.total_records == 3
    assert info.schema.equals(TABLE.schema)
    info = client.get_flight_info(pa_flight.FlightDescriptor.for_path("items"), caller)
    assert info.endpoints[0].ticket.ticket == b"items"
    schema = client.get_schema(pa_flight.FlightDescriptor.for_path("items"), caller).schema
    assert schema.equals(TABLE.schema)
    assert [(a.type, a.description) for a in client.list_actions(caller)] == [
        ("whoami", "the caller"), ("drop", "forget a table")]


@pytest.mark.parametrize("ticket", ["items", "table", "generated"])
def test_do_get_of_every_kind_of_stream(client, key, ticket):
    reader = client.do_get(pa_flight.Ticket(ticket.encode()), options(key, "ann"))
    assert reader.read_all().equals(TABLE)


def test_do_put_and_do_exchange(client, key):
    caller = options(key, "bea")
    writer, acks = client.do_put(pa_flight.FlightDescriptor.for_path("more"), TABLE.schema,
                                 caller)
    writer.write_table(TABLE)
    writer.done_writing()
    assert acks.read().to_pybytes() == b"stored 3 for bea"
    writer.close()
    assert client.do_get(pa_flight.Ticket(b"more"), caller).read_all().equals(TABLE)
    writer, reader = client.do_exchange(pa_flight.FlightDescriptor.for_path("x"), caller)
    writer.begin(TABLE.schema)
    writer.write_table(TABLE)
    writer.done_writing()
    assert reader.read_all().equals(TABLE)
    writer.close()


def test_handlers_see_the_caller_through_flight_secures_context(client, key):
    results = [r.body.to_pybytes() for r in client.do_action("whoami", options(key, "cy"))]
    assert results == [b"cy", b"jwt", b"and bytes"]


def test_rules_per_action_type_apply_without_the_handlers_help(client, key):
    with pytest.raises(pa_flight.FlightUnauthorizedError, match="'drop' requires role admin"):
        list(client.do_action(("drop", b"items"), options(key, "dee")))
    with pytest.raises(pa_flight.FlightServerError, match="KeyError"):  # let in, then failed
        list(client.do_action(("drop", b"nothing"), options(key, "dee", "admin")))
    with pytest.raises(pa_flight.FlightUnauthenticatedError):
        list(client.do_action("whoami"))


def test_handler_errors_reach_the_client_without_a_traceback(client, key):
    caller = options(key, "eve")
    failing = {
        "no table 'missing'": lambda: client.get_flight_info(
            pa_flight.FlightDescriptor.for_path("missing"), caller),
        "unknown action 'reboot'": lambda: list(client.do_action("reboot", caller)),
        "KeyError: 'missing'": lambda: client.do_get(pa_flight.Ticket(b"missing"),
                                                     caller).read_all(),
    }
    for message, call in failing.items():
        with pytest.raises(pa_flight.FlightServerError) as caught:
            call()
        assert message in str(caught.value)
        assert "Traceback" not in str(caught.value)


def test_flight_secures_client_is_served_too(shop, key):
    token = JWTIssuer(key).issue("fay")
    with flight.connect(f"grpc://localhost:{shop.port}") as client:
        call = flight.FlightCallOptions(headers=[(b"auth-token-bin", token.encode())])
        assert client.do_get(flight.Ticket(b"items"), call).read_all().equals(TABLE)
        assert next(iter(client.do_action("whoami", call))).body.to_pybytes() == b"fay"


class Careless(flight.FlightServerBase):
    """Handlers that return what is no result: checked as flight_secure's engine checks it."""

    listing: object = None

    def list_actions(self, context):
        return self.listing

    def do_action(self, context, action):
        return ["text is not a body"]


@pytest.mark.parametrize("listing", [["echo"], [("echo",)], [(1, "one")], None],
                         ids=["a str", "a short tuple", "a number", "None"])
def test_a_malformed_list_actions_item_is_a_server_error_without_a_traceback(listing):
    handlers = Careless()
    handlers.listing = listing
    with ArrowServer(handlers, "grpc://localhost:0", **server_options()) as server, \
            pa_flight.connect(f"grpc://localhost:{server.port}") as client, \
            pytest.raises(pa_flight.FlightServerError) as caught:
        client.list_actions()
    assert "Traceback" not in str(caught.value)


def test_an_action_result_that_is_no_body_is_a_server_error_without_a_traceback():
    with ArrowServer(Careless(), "grpc://localhost:0", **server_options()) as server, \
            pa_flight.connect(f"grpc://localhost:{server.port}") as client, \
            pytest.raises(pa_flight.FlightServerError, match="bytes-like") as caught:
        list(client.do_action("anything"))
    assert "Traceback" not in str(caught.value)
