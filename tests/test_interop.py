"""Every RPC against the real Apache implementation, in both directions:
a pyarrow.flight client calling a flight_secure server, and a flight_secure
client calling a pyarrow.flight server. Both servers run the same DataServer."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from conftest import (
    DataServer,
    empty_table,
    large_table,
    location_of,
    running_server,
    sample_table,
    wide_types_table,
)

import flight_secure


@dataclass
class Peer:
    """A client of one implementation connected to a server of the other."""

    flight: ModuleType  # the client's implementation
    client: Any
    server: Any


DIRECTIONS = {
    "pyarrow-client->flight_secure-server": (pa_flight, "fs_data_server"),
    "flight_secure-client->pyarrow-server": (flight_secure, "pa_data_server"),
}


@pytest.fixture(scope="module", params=sorted(DIRECTIONS))
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    flight, server_fixture = DIRECTIONS[request.param]
    server = request.getfixturevalue(server_fixture)
    client = flight.connect(location_of(server))
    yield Peer(flight, client, server)
    client.close()


def _names(infos: Any) -> list[str]:
    return [b"/".join(info.descriptor.path).decode() for info in infos]


def _drop(peer: Peer, name: str) -> None:
    list(peer.client.do_action(peer.flight.Action("drop", name.encode())))


# ------------------------------------------------------------------ metadata RPCs


def test_list_flights_filters_by_criteria(peer: Peer) -> None:
    assert _names(peer.client.list_flights(b"wi")) == ["wide"]


def test_list_flights_without_criteria_lists_everything(peer: Peer) -> None:
    names = _names(peer.client.list_flights())
    assert {"chunked", "empty", "large", "sample", "wide"} <= set(names)


def test_list_flights_carries_schema_and_counts(peer: Peer) -> None:
    (info,) = peer.client.list_flights(b"sample")
    assert info.schema.equals(sample_table().schema)
    assert (info.total_records, info.total_bytes) == (5, sample_table().nbytes)


def test_get_flight_info_by_path(peer: Peer) -> None:
    info = peer.client.get_flight_info(peer.flight.FlightDescriptor.for_path("wide"))
    assert info.schema.equals(wide_types_table().schema)
    assert info.descriptor.path == [b"wide"]
    assert info.total_records == 4
    (endpoint,) = info.endpoints
    assert endpoint.ticket.ticket == b"wide"
    assert [loc.uri for loc in endpoint.locations] == [
        f"grpc+tcp://localhost:{peer.server.port}".encode()
    ]


def test_get_flight_info_by_command(peer: Peer) -> None:
    info = peer.client.get_flight_info(peer.flight.FlightDescriptor.for_command(b"sample"))
    assert info.descriptor.command == b"sample"
    assert info.total_records == 5


def test_get_flight_info_ticket_redeems_with_do_get(peer: Peer) -> None:
    info = peer.client.get_flight_info(peer.flight.FlightDescriptor.for_path("chunked"))
    table = peer.client.do_get(info.endpoints[0].ticket).read_all()
    assert table.equals(pa.concat_tables([sample_table(3), sample_table(2)]))


def test_get_schema(peer: Peer) -> None:
    result = peer.client.get_schema(peer.flight.FlightDescriptor.for_path("wide"))
    assert result.schema.equals(wide_types_table().schema)


def test_poll_flight_info_with_pyarrow_client(fs_data_server: Any) -> None:
    client = pa_flight.connect(location_of(fs_data_server))
    if not hasattr(client, "poll_flight_info"):
        client.close()
        pytest.skip(f"pyarrow {pa.__version__} has no FlightClient.poll_flight_info")
    poll = client.poll_flight_info(pa_flight.FlightDescriptor.for_path("sample"))
    client.close()
    assert poll.info.total_records == 5


def test_poll_flight_info_between_flight_secure_peers(fs_data_server: Any) -> None:
    with flight_secure.connect(location_of(fs_data_server)) as client:
        poll = client.poll_flight_info(flight_secure.FlightDescriptor.for_path("sample"))
    assert poll.progress == 1.0
    assert poll.descriptor is None
    assert poll.info.schema.equals(sample_table().schema)
    assert poll.info.endpoints[0].ticket.ticket == b"sample"


def test_list_actions(peer: Peer) -> None:
    actions = peer.client.list_actions()
    assert [(a.type, a.description) for a in actions] == list(DataServer.ACTIONS)


def test_do_action_streams_every_result(peer: Peer) -> None:
    results = peer.client.do_action(peer.flight.Action("count", b"4"))
    assert [r.body.to_pybytes() for r in results] == [b"0", b"1", b"2", b"3"]


def test_do_action_with_no_results(peer: Peer) -> None:
    assert list(peer.client.do_action(peer.flight.Action("count", b"0"))) == []


def test_do_action_echoes_binary_body(peer: Peer) -> None:
    (result,) = peer.client.do_action(peer.flight.Action("echo", b"\x00\xff" * 1000))
    assert result.body.to_pybytes() == b"\x00\xff" * 1000


# ------------------------------------------------------------------------- DoGet

GET_CASES = {
    "sample": sample_table(),
    "wide": wide_types_table(),
    "empty": empty_table(),
    "chunked": pa.concat_tables([sample_table(3), sample_table(2)]),
}


@pytest.mark.parametrize("name", sorted(GET_CASES))
def test_do_get_round_trips_table(peer: Peer, name: str) -> None:
    table = peer.client.do_get(peer.flight.Ticket(name.encode())).read_all()
    assert table.equals(GET_CASES[name])


def test_do_get_keeps_batch_boundaries(peer: Peer) -> None:
    reader = peer.client.do_get(peer.flight.Ticket(b"chunked"))
    assert [chunk.data.num_rows for chunk in reader] == [3, 2]


def test_do_get_of_schema_only_stream(peer: Peer) -> None:
    reader = peer.client.do_get(peer.flight.Ticket(b"schema-only:wide"))
    assert reader.schema.equals(wide_types_table().schema)
    table = reader.read_all()
    assert table.num_rows == 0
    assert table.schema.equals(wide_types_table().schema)


def test_do_get_delivers_app_metadata_with_batches(peer: Peer) -> None:
    reader = peer.client.do_get(peer.flight.Ticket(b"with-metadata:plain"))
    chunks = [(c.data.num_rows, c.app_metadata.to_pybytes()) for c in reader]
    assert chunks == [(3, b"meta-0"), (2, b"meta-1")]


def test_do_get_of_batch_larger_than_4mib(peer: Peer) -> None:
    table = peer.client.do_get(peer.flight.Ticket(b"large")).read_all()
    assert table.equals(large_table())


# ------------------------------------------------------------------------- DoPut


def _put(peer: Peer, name: str, table: pa.Table, max_chunksize: int | None = None) -> list:
    descriptor = peer.flight.FlightDescriptor.for_path(name)
    writer, acks = peer.client.do_put(descriptor, table.schema)
    writer.write_table(table, max_chunksize=max_chunksize)
    writer.done_writing()
    received = []
    while (ack := acks.read()) is not None:
        received.append(ack.to_pybytes())
    writer.close()
    return received


def _get(peer: Peer, name: str) -> pa.Table:
    return peer.client.do_get(peer.flight.Ticket(name.encode())).read_all()


@pytest.mark.parametrize(
    "table",
    [sample_table(), wide_types_table(), empty_table()],
    ids=["sample", "wide", "zero-rows"],
)
def test_do_put_stores_table(peer: Peer, table: pa.Table, request: pytest.FixtureRequest) -> None:
    name = f"put-{request.node.callspec.id}"
    _put(peer, name, table)
    try:
        assert _get(peer, name).equals(table)
    finally:
        _drop(peer, name)


def test_do_put_acks_each_batch(peer: Peer) -> None:
    acks = _put(peer, "put-acks", sample_table(5), max_chunksize=2)
    _drop(peer, "put-acks")
    assert acks == [b"ack:0:2:", b"ack:1:2:", b"ack:2:1:"]


def test_do_put_in_lockstep_reads_each_ack_before_next_write(peer: Peer) -> None:
    table = sample_table(6)
    writer, acks = peer.client.do_put(
        peer.flight.FlightDescriptor.for_path("put-lockstep"), table.schema
    )
    seen = []
    for index, batch in enumerate(table.to_batches(max_chunksize=2)):
        writer.write_with_metadata(batch, f"client-{index}".encode())
        seen.append(acks.read().to_pybytes())
    writer.done_writing()
    writer.close()
    _drop(peer, "put-lockstep")
    assert seen == [b"ack:0:2:client-0", b"ack:1:2:client-1", b"ack:2:2:client-2"]


def test_do_put_metadata_only_message_is_acked(peer: Peer) -> None:
    table = sample_table(2)
    writer, acks = peer.client.do_put(
        peer.flight.FlightDescriptor.for_path("put-meta-only"), table.schema
    )
    writer.write_metadata(b"just-metadata")
    first = acks.read().to_pybytes()
    writer.write_table(table)
    second = acks.read().to_pybytes()
    writer.close()
    _drop(peer, "put-meta-only")
    assert (first, second) == (b"ack:0:-1:just-metadata", b"ack:1:2:")


def test_do_put_of_schema_only_stream(peer: Peer) -> None:
    schema = wide_types_table().schema
    writer, _ = peer.client.do_put(peer.flight.FlightDescriptor.for_path("put-schema"), schema)
    writer.close()
    try:
        stored = _get(peer, "put-schema")
        assert (stored.num_rows, stored.schema.equals(schema)) == (0, True)
    finally:
        _drop(peer, "put-schema")


def test_do_put_of_batch_larger_than_4mib(peer: Peer) -> None:
    table = large_table()
    assert _put(peer, "put-large", table) == [f"ack:0:{table.num_rows}:".encode()]
    try:
        assert _get(peer, "put-large").equals(table)
    finally:
        _drop(peer, "put-large")


# -------------------------------------------------------------------- DoExchange


def _exchange(peer: Peer) -> tuple[Any, Any]:
    return peer.client.do_exchange(peer.flight.FlightDescriptor.for_command(b"echo"))


def test_do_exchange_echoes_batches(peer: Peer) -> None:
    table = sample_table(4)
    writer, reader = _exchange(peer)
    writer.begin(table.schema)
    echoed = []
    for batch in table.to_batches(max_chunksize=2):
        writer.write_batch(batch)
        echoed.append(reader.read_chunk().data)
    writer.done_writing()
    writer.close()
    assert pa.Table.from_batches(echoed).equals(table)


def test_do_exchange_carries_app_metadata_both_ways(peer: Peer) -> None:
    table = sample_table(2)
    writer, reader = _exchange(peer)
    writer.begin(table.schema)
    writer.write_with_metadata(table.to_batches()[0], b"with-batch")
    chunk = reader.read_chunk()
    writer.done_writing()
    writer.close()
    assert chunk.data.equals(table.to_batches()[0])
    assert chunk.app_metadata.to_pybytes() == b"with-batch"


def test_do_exchange_of_metadata_only_messages(peer: Peer) -> None:
    writer, reader = _exchange(peer)
    answers = []
    for word in (b"ping", b"pong"):
        writer.write_metadata(word)
        chunk = reader.read_chunk()
        answers.append((chunk.data, chunk.app_metadata.to_pybytes()))
    writer.done_writing()
    writer.close()
    assert answers == [(None, b"echo:ping"), (None, b"echo:pong")]


def test_do_exchange_of_nested_and_dictionary_columns(peer: Peer) -> None:
    table = wide_types_table()
    writer, reader = _exchange(peer)
    writer.begin(table.schema)
    writer.write_table(table)
    writer.done_writing()
    echoed = reader.read_all()
    writer.close()
    assert echoed.equals(table)


def test_do_exchange_of_batch_larger_than_4mib(peer: Peer) -> None:
    table = large_table()
    writer, reader = _exchange(peer)
    writer.begin(table.schema)
    writer.write_table(table)
    writer.done_writing()
    echoed = reader.read_all()
    writer.close()
    assert echoed.equals(table)


# --------------------------------------------------------------------- Handshake


def token_auth(flight: ModuleType) -> tuple[Any, type]:
    """A server handler and a client handler class exchanging a token, pyarrow style."""

    class ServerTokenAuth(flight.ServerAuthHandler):
        def authenticate(self, outgoing: Any, incoming: Any) -> None:
            password = incoming.read()
            if password != b"open sesame":
                raise flight.FlightUnauthenticatedError("wrong password")
            outgoing.write(b"token-of-alice")

        def is_valid(self, token: bytes) -> bytes:
            if token != b"token-of-alice":
                raise flight.FlightUnauthenticatedError("invalid token")
            return b"alice"

    class ClientTokenAuth(flight.ClientAuthHandler):
        def __init__(self, password: bytes) -> None:
            super().__init__()
            self.password = password
            self.token = b""

        def authenticate(self, outgoing: Any, incoming: Any) -> None:
            outgoing.write(self.password)
            self.token = incoming.read()

        def get_token(self) -> bytes:
            return self.token

    return ServerTokenAuth(), ClientTokenAuth


@pytest.fixture(scope="module", params=sorted(DIRECTIONS))
def auth_peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    client_flight = DIRECTIONS[request.param][0]
    server_flight = flight_secure if client_flight is pa_flight else pa_flight
    handler, _ = token_auth(server_flight)
    with running_server(server_flight, DataServer, auth_handler=handler) as server:
        client = client_flight.connect(location_of(server))
        yield Peer(client_flight, client, server)
        client.close()


def _login(peer: Peer, password: bytes) -> Any:
    client = peer.flight.connect(location_of(peer.server))
    client.authenticate(token_auth(peer.flight)[1](password))
    return client


def test_handshake_makes_identity_visible_to_handlers(auth_peer: Peer) -> None:
    client = _login(auth_peer, b"open sesame")
    (result,) = client.do_action(auth_peer.flight.Action("whoami", b""))
    client.close()
    assert result.body.to_pybytes() == b"alice"


def test_handshake_token_admits_data_calls(auth_peer: Peer) -> None:
    client = _login(auth_peer, b"open sesame")
    table = client.do_get(auth_peer.flight.Ticket(b"sample")).read_all()
    client.close()
    assert table.equals(sample_table())


def test_handshake_with_wrong_password_is_refused(auth_peer: Peer) -> None:
    with pytest.raises(auth_peer.flight.FlightUnauthenticatedError):
        _login(auth_peer, b"guess")


def test_call_without_handshake_is_unauthenticated(auth_peer: Peer) -> None:
    with pytest.raises(auth_peer.flight.FlightUnauthenticatedError):
        list(auth_peer.client.do_action(auth_peer.flight.Action("whoami", b"")))


LOGINS_WITHOUT_SERVER_AUTH = {
    "handshake": lambda client, flight, options: client.authenticate(
        token_auth(flight)[1](b"open sesame"), options
    ),
    "basic-token": lambda client, flight, options: client.authenticate_basic_token(
        "alice", "pw", options
    ),
}


@pytest.mark.parametrize("login", sorted(LOGINS_WITHOUT_SERVER_AUTH))
@pytest.mark.parametrize("flight", [pa_flight, flight_secure], ids=["pyarrow", "flight_secure"])
def test_login_to_server_without_auth_is_unimplemented(
    fs_data_server: Any, flight: Any, login: str
) -> None:
    client = flight.connect(location_of(fs_data_server))
    started = time.monotonic()
    try:
        with pytest.raises(pa.ArrowNotImplementedError):
            LOGINS_WITHOUT_SERVER_AUTH[login](client, flight, flight.FlightCallOptions(timeout=3))
    finally:
        client.close()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("way", sorted(DIRECTIONS))
def test_do_get_over_unix_socket(way: str) -> None:
    client_flight = DIRECTIONS[way][0]
    server_flight = flight_secure if client_flight is pa_flight else pa_flight
    with tempfile.TemporaryDirectory() as folder:
        location = f"grpc+unix://{folder}/flight.sock"
        with running_server(server_flight, DataServer, location=location):
            client = client_flight.connect(location)
            try:
                table = client.do_get(client_flight.Ticket(b"sample")).read_all()
            finally:
                client.close()
    assert table.equals(sample_table())
