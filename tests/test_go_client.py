"""Arrow Go's Flight client logs in and reads, over TLS and mTLS with bound tokens.

The Go client is the one inside the ADBC Flight SQL driver (``adbc-driver-flightsql``,
written by the Arrow project, not here). With ``username``/``password`` it runs
Arrow's Basic->Bearer Handshake (``authorization: Basic`` without base64 ``=``
padding), then sends ``authorization: Bearer <token>`` on every call. An ADBC
partition is a serialized FlightInfo: ``cursor.adbc_read_partition`` makes it do a
plain DoGet of the endpoint's ticket on the server it is connected to.

The credentials below need 0, 1 and 2 ``=`` of padding. Tests that need the driver
are skipped, saying so, where it cannot be installed; the raw-header tests always run.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.flight as pa_flight
import pyarrow.parquet as pq
import pytest
from serving import Served

import flight_secure
from flight_secure.auth.basic import BasicServerAuthHandler
from flight_secure.auth.mtls import MutualTLSServerAuthHandler
from flight_secure.auth.passwords import PasswordStore
from flight_secure.certs import DevCertificates, generate_dev_certificates
from flight_secure.cli.dataserver import DatasetServer
from flight_secure.cli.datasets import DatasetFolder
from flight_secure.cli.permissions import default_permissions
from flight_secure.types import CertKeyPair, Location

#: user -> password; "user:password" in base64 needs 0, 1 and 2 "=" of padding.
PASSWORDS = {"bob": "bobpw-12", "alice": "alicepw-123", "carl": "carlpw-1"}
PADDING = {"bob": 0, "alice": 1, "carl": 2}
TABLE = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "city": ["Oslo", "Lima", "Pune"]})
HANDSHAKE = "/arrow.flight.protocol.FlightService/Handshake"
TIMEOUT = 20.0
NO_DRIVER = ("adbc-driver-flightsql (Arrow Go's Flight client) cannot be installed here; "
             "pip install adbc-driver-flightsql")


def basic(user: str, password: str, *, padded: bool) -> str:
    """``user:password`` in standard base64, with or without its ``=`` padding."""
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return encoded if padded else encoded.rstrip("=")


def test_the_credentials_cover_every_padding_length() -> None:
    for user, password in PASSWORDS.items():
        assert basic(user, password, padded=True).count("=") == PADDING[user]


@dataclass
class Pki:
    """A development CA, its server certificate, and client certificates for
    alice and mallory."""

    certs: DevCertificates

    @property
    def ca(self) -> bytes:
        return self.certs.ca_cert_pem()

    def client(self, name: str) -> tuple[bytes, bytes]:
        return self.certs.client_pems(name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(generate_dev_certificates(tmp_path_factory.mktemp("pki"),
                                         clients=["alice", "mallory"]))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    pq.write_table(TABLE, folder / "sales.parquet")
    return folder


def password_store() -> PasswordStore:
    store = PasswordStore(rounds=4)
    for user, password in PASSWORDS.items():
        store.add(user, password)
    return store


def dataset_server(data: Path, pki: Pki, *, mtls: bool) -> DatasetServer:
    """A DatasetServer over ``data`` as ``serve`` builds it: Basic logins, and with ``mtls``
    client certificates too, the session tokens bound to them."""
    handler: Any = BasicServerAuthHandler(password_store())
    options: dict[str, Any] = {
        "location": Location.for_grpc_tls("127.0.0.1", 0),
        "tls_certificates": [CertKeyPair(*pki.certs.server_pems())]}
    if mtls:
        handler = MutualTLSServerAuthHandler(inner=handler, bind_tokens=True)
        options.update(verify_client=True, root_certificates=pki.ca)
    return DatasetServer(DatasetFolder(data), default_permissions("admin"),
                         auth_handler=handler, **options)


@pytest.fixture(scope="module", params=["tls", "mtls"])
def mode(request: pytest.FixtureRequest) -> str:
    """How the Go client connects: TLS alone, or TLS with alice's client certificate."""
    return request.param


@pytest.fixture(scope="module")
def server(mode: str, data: Path, pki: Pki) -> Iterator[DatasetServer]:
    running = dataset_server(data, pki, mtls=mode == "mtls")
    yield running
    running.shutdown()


# ------------------------------------------------------------ the header Arrow Go sends


def header_login(port: int, ca: bytes, credentials: str) -> str:
    """Run the Handshake with ``authorization: Basic <credentials>`` on a raw gRPC
    channel, as Arrow Go does; the ``authorization`` header the server answers with.

    Raises grpc.RpcError when the login is refused.
    """
    channel = grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(ca))
    with channel:
        handshake = channel.stream_stream(HANDSHAKE)
        call = handshake(iter(()), metadata=[("authorization", f"Basic {credentials}")],
                         timeout=TIMEOUT)
        list(call)
        return dict(call.initial_metadata())["authorization"]


@pytest.fixture(scope="module")
def tls_server(data: Path, pki: Pki) -> Iterator[DatasetServer]:
    running = dataset_server(data, pki, mtls=False)
    yield running
    running.shutdown()


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
@pytest.mark.parametrize("user", PASSWORDS)
def test_a_basic_header_with_or_without_padding_logs_in(tls_server: DatasetServer, pki: Pki,
                                                        user: str, padded: bool) -> None:
    answer = header_login(tls_server.port, pki.ca, basic(user, PASSWORDS[user], padded=padded))
    token = answer.removeprefix("Bearer ")
    client = flight_secure.connect(f"grpc+tls://localhost:{tls_server.port}",
                                   tls_root_certs=pki.ca)
    options = flight_secure.FlightCallOptions(headers=[(b"authorization", answer.encode())],
                                              timeout=TIMEOUT)
    assert token != answer
    assert client.do_get(flight_secure.Ticket(b"sales"), options).read_all().equals(TABLE)


@pytest.mark.parametrize("credentials", [
    "!!!!", "Ym9i OmJvYnB3LTEy", "Ym9iO", "Ym9iOmJvYnB3LTEy=", "YWxp=Y2U6", "Ym9iOmJvYnB3LTEy==",
    base64.b64encode(b"\xff\xfe:pw").decode().rstrip("="), "Ym9iOmJv*nB3LTEy",
    "Y2FybDpjYXJscHctMR", "Y2FybDpjYXJscHctMR==",
], ids=["not-base64", "space", "one-char-too-many", "stray-pad", "pad-inside", "extra-pad",
        "not-utf8", "bad-char", "stray-bits", "stray-bits-padded"])
def test_a_basic_header_that_is_not_base64_is_refused(tls_server: DatasetServer, pki: Pki,
                                                      credentials: str) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        header_login(tls_server.port, pki.ca, credentials)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "base64" in refused.value.details()


def test_the_right_user_with_a_wrong_password_unpadded_is_refused(tls_server: DatasetServer,
                                                                  pki: Pki) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        header_login(tls_server.port, pki.ca, basic("alice", "alicepw-124", padded=False))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "invalid username or password" in refused.value.details()


# --------------------------------------------------------------------- the Go client


@pytest.fixture(scope="module")
def adbc() -> ModuleType:
    return pytest.importorskip("adbc_driver_flightsql.dbapi", reason=NO_DRIVER)


def go_options(pki: Pki, *, certificate: str | None = None, user: str | None = None,
               password: str | None = None, token: str | None = None) -> dict[str, str]:
    """The driver's db_kwargs: the CA to trust, a client certificate, and a login
    (``username``/``password``) or a ready ``authorization`` header value."""
    from adbc_driver_flightsql import DatabaseOptions

    options = {DatabaseOptions.TLS_ROOT_CERTS.value: pki.ca.decode()}
    if certificate is not None:
        cert, key = pki.client(certificate)
        options[DatabaseOptions.MTLS_CERT_CHAIN.value] = cert.decode()
        options[DatabaseOptions.MTLS_PRIVATE_KEY.value] = key.decode()
    if user is not None and password is not None:
        options.update(username=user, password=password)
    if token is not None:
        options[DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
    return options


def partition(name: str) -> bytes:
    """An ADBC partition that reads dataset ``name``: a FlightInfo whose one endpoint
    has the ticket ``name`` and no location (read it from the same server)."""
    info = pa_flight.FlightInfo(TABLE.schema, pa_flight.FlightDescriptor.for_path(name),
                                [pa_flight.FlightEndpoint(name.encode(), [])], -1, -1)
    return info.serialize()


def go_read(adbc: ModuleType, port: int, options: dict[str, str], name: str = "sales"
            ) -> pa.Table:
    """Connect the Go client (logging in as ``options`` say) and DoGet dataset ``name``."""
    from adbc_driver_flightsql import ConnectionOptions

    timeouts = {ConnectionOptions.TIMEOUT_FETCH.value: str(TIMEOUT)}
    with adbc.connect(f"grpc+tls://localhost:{port}", db_kwargs=options,
                      conn_kwargs=timeouts, autocommit=True) as connection, \
            connection.cursor() as cursor:
        cursor.adbc_read_partition(partition(name))
        return cursor.fetch_arrow_table()


@pytest.mark.parametrize("user", PASSWORDS, ids=[f"{n}-pad" for n in PADDING.values()])
def test_the_go_client_logs_in_and_reads(adbc: ModuleType, mode: str, server: DatasetServer,
                                         pki: Pki, user: str) -> None:
    certificate = "alice" if mode == "mtls" else None
    options = go_options(pki, certificate=certificate, user=user, password=PASSWORDS[user])
    assert go_read(adbc, server.port, options).equals(TABLE)


def test_the_go_client_with_a_wrong_password_is_refused(adbc: ModuleType, mode: str,
                                                        server: DatasetServer, pki: Pki) -> None:
    certificate = "alice" if mode == "mtls" else None
    options = go_options(pki, certificate=certificate, user="alice", password="alicepw-124")
    with pytest.raises(adbc.Error, match="invalid username or password"):
        go_read(adbc, server.port, options)


def test_the_go_client_without_a_certificate_is_refused_by_mtls(adbc: ModuleType, data: Path,
                                                                pki: Pki) -> None:
    server = dataset_server(data, pki, mtls=True)
    try:
        with pytest.raises(adbc.Error):
            go_read(adbc, server.port, go_options(pki, user="alice", password="alicepw-123"))
    finally:
        server.shutdown()


def test_a_token_bound_to_alice_is_refused_from_mallorys_certificate(
        adbc: ModuleType, data: Path, pki: Pki) -> None:
    server = dataset_server(data, pki, mtls=True)
    try:
        cert, key = pki.client("alice")
        alice = pa_flight.connect(f"grpc+tls://localhost:{server.port}", tls_root_certs=pki.ca,
                                  cert_chain=cert, private_key=key)
        _, bearer = alice.authenticate_basic_token("alice", PASSWORDS["alice"])
        token = bearer.decode().removeprefix("Bearer ")
        assert go_read(adbc, server.port, go_options(pki, certificate="alice", token=token)
                       ).equals(TABLE)
        with pytest.raises(adbc.Error, match="another client"):
            go_read(adbc, server.port, go_options(pki, certificate="mallory", token=token))
        alice.close()
    finally:
        server.shutdown()


# ----------------------------------------------------------------- flight-secure serve


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("served")
    (base / "data").mkdir()
    pq.write_table(TABLE, base / "data" / "sales.parquet")
    password_store().save(base / "users.htpasswd")
    (base / "ca.pem").write_bytes(pki.ca)
    server = Served(["--data", "data", "--users", "users.htpasswd", "--ca", "ca.pem",
                     "--tls-cert", str(pki.certs.server_cert), "--tls-key",
                     str(pki.certs.server_key)], cwd=base)
    yield server
    assert server.stop() == 0


@pytest.mark.parametrize("user", PASSWORDS, ids=[f"{n}-pad" for n in PADDING.values()])
def test_the_go_client_reads_from_flight_secure_serve(adbc: ModuleType, served: Served, pki: Pki,
                                                      user: str) -> None:
    options = go_options(pki, certificate="alice", user=user, password=PASSWORDS[user])
    assert go_read(adbc, served.port, options).equals(TABLE)
    served.err.wait_for(f"who={user} scheme=basic+mtls rpc=DoGet dataset=sales")


def test_flight_secure_serve_refuses_the_go_client_with_a_wrong_password(
        adbc: ModuleType, served: Served, pki: Pki) -> None:
    options = go_options(pki, certificate="alice", user="carl", password="carlpw-2")
    with pytest.raises(adbc.Error, match="invalid username or password"):
        go_read(adbc, served.port, options)
