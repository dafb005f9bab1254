"""Faults: restarts, expiring tokens, vanishing clients, failing handlers, rotating certificates.

Each fault ends the affected call with a clear error and nothing else: the server
keeps serving, handler threads return, no half-written dataset appears, and a
client that authenticates again carries on.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import IMPLEMENTATIONS
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from raw_wire import flight_data, ipc_messages, raw_call, raw_channel, rpc_path

import flight_secure as flight
from flight_secure.auth import (
    BasicClientAuthHandler,
    BasicServerAuthHandler,
    JWTClientAuthHandler,
    JWTIssuer,
    JWTServerAuthHandler,
    JWTVerifier,
    PasswordStore,
)
from flight_secure.auth.mtls import MutualTLSServerAuthHandler
from flight_secure.certs import CertificateAuthority, DevCertificates
from flight_secure.tls import reloading_server_credentials

from .conftest import (
    CALL_TIMEOUT,
    ECHO_RPCS,
    Child,
    EchoServer,
    assert_refused_cleanly,
    bounded,
    crafted_string_offsets,
    echo_call,
    expected_answer,
    mtls_client,
    report,
    upload,
)

USER, PASSWORD = "carol", "carol's password"
OPTIONS = flight.FlightCallOptions(timeout=CALL_TIMEOUT)


@pytest.fixture(scope="module")
def store() -> PasswordStore:
    made = PasswordStore(rounds=4)
    made.add(USER, PASSWORD)
    return made


def whoami(client: flight.FlightClient, options: flight.FlightCallOptions = OPTIONS) -> bytes:
    return echo_call(client, "DoAction", b"who", options)


# ------------------------------------------------------------------- restarts


def test_server_restart_mid_session_is_unavailable_then_works_after_a_new_login(
        store: PasswordStore) -> None:
    handlers = [BasicServerAuthHandler(store), BasicServerAuthHandler(store)]
    first = EchoServer(location="grpc://localhost:0", auth_handler=handlers[0])
    port, second = first.port, None
    try:
        with flight.connect(f"grpc://localhost:{port}") as client:
            client.authenticate(BasicClientAuthHandler(USER, PASSWORD), OPTIONS)
            assert whoami(client) == b"carol|basic|who"
            first.shutdown()
            with pytest.raises(flight.FlightUnavailableError) as down:
                whoami(client)
            assert "nothing is listening at that address" in str(down.value)
            assert "Traceback" not in str(down.value)

            for _ in bounded("the port is free again", seconds=CALL_TIMEOUT, attempts=100,
                             pause=0.1):
                try:
                    second = EchoServer(location=f"grpc://localhost:{port}",
                                        auth_handler=handlers[1])
                    break
                except flight.FlightError:
                    continue
            client.wait_for_available(CALL_TIMEOUT)
            # The new server signs with a key of its own: the old session is gone.
            with pytest.raises(flight.FlightUnauthenticatedError, match="invalid token"):
                whoami(client)
            client.authenticate(BasicClientAuthHandler(USER, PASSWORD), OPTIONS)
            for rpc in ECHO_RPCS:
                assert echo_call(client, rpc, b"n", OPTIONS) == expected_answer(
                    USER, "basic", rpc, b"n")
    finally:
        for server in (first, second):
            if server is not None:
                server.shutdown()
        for handler in handlers:
            handler.close()


class SlowStream(EchoServer):
    """DoGet sends one batch, then waits for ``release`` before the next."""

    def __init__(self, **options: object) -> None:
        self.release = threading.Event()
        super().__init__(**options)

    def do_get(self, context: object, ticket: object) -> flight.GeneratorStream:
        def batches() -> Iterator[pa.Table]:
            yield upload(1)
            self.release.wait(CALL_TIMEOUT)
            yield upload(2)

        return flight.GeneratorStream(upload(0).schema, batches())


def test_stream_in_flight_when_the_server_stops_fails_with_unavailable() -> None:
    server = SlowStream(location="grpc://localhost:0")
    try:
        with flight.connect(f"grpc://localhost:{server.port}") as client:
            reader = client.do_get(flight.Ticket(b"t"), OPTIONS)
            assert reader.read_chunk().data.num_rows == 1
            server.shutdown(grace=0.2)
            with pytest.raises(flight.FlightUnavailableError) as stopped:
                reader.read_chunk()
            assert "Traceback" not in str(stopped.value)
    finally:
        server.release.set()
        server.shutdown()


# ------------------------------------------------------------------- expiry


@pytest.fixture
def short_lived(store: PasswordStore) -> Iterator[Callable[[float], BasicServerAuthHandler]]:
    """Makes Basic handlers whose session tokens live ``ttl`` seconds (closed afterwards)."""
    made: list[BasicServerAuthHandler] = []

    def make(ttl: float) -> BasicServerAuthHandler:
        key = Ed25519PrivateKey.generate()
        made.append(BasicServerAuthHandler(
            store, JWTIssuer(key, "EdDSA", issuer="short", ttl=ttl),
            JWTVerifier(key.public_key(), ["EdDSA"], issuer="short", leeway=0)))
        return made[-1]

    yield make
    for handler in made:
        handler.close()


def test_expired_session_token_is_refused_cleanly_and_a_new_login_works(
        short_lived: Callable[[float], BasicServerAuthHandler]) -> None:
    with EchoServer(auth_handler=short_lived(1)) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client:
        pair = client.authenticate_basic_token(USER, PASSWORD, OPTIONS)
        options = flight.FlightCallOptions(timeout=CALL_TIMEOUT, headers=[pair])
        for _ in bounded("the token expired", seconds=5, attempts=200, pause=0.05):
            try:
                assert whoami(client, options) == b"carol|basic|who"
            except flight.FlightUnauthenticatedError as refused:
                assert "token has expired; authenticate again" in str(refused)
                break
        pair = client.authenticate_basic_token(USER, PASSWORD, OPTIONS)
        fresh = flight.FlightCallOptions(timeout=CALL_TIMEOUT, headers=[pair])
        assert whoami(client, fresh) == b"carol|basic|who"


def keep_calling_past(client: flight.FlightClient, moment: float, expected: bytes) -> int:
    """Call until wall-clock ``moment`` has passed by a second; every call must succeed."""
    calls = 0
    for _ in bounded("calls past the token's expiry", seconds=10, attempts=500_000):
        assert whoami(client) == expected
        calls += 1
        if time.time() > moment + 1:
            return calls
    return calls


def test_client_renews_an_expiring_session_by_itself(
        short_lived: Callable[[float], BasicServerAuthHandler]) -> None:
    """FlightClient.authenticate re-runs the Basic handshake before the token expires."""
    with EchoServer(auth_handler=short_lived(2)) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client:
        login = BasicClientAuthHandler(USER, PASSWORD)
        client.authenticate(login, OPTIONS)
        first_expiry = expiry_of(login.get_token())
        assert keep_calling_past(client, first_expiry, b"carol|basic|who") > 0
        assert expiry_of(login.get_token()) > first_expiry


def test_client_renews_a_short_session_only_as_it_nears_expiry(
        short_lived: Callable[[float], BasicServerAuthHandler],
        caplog: pytest.LogCaptureFixture) -> None:
    """A 10 s session used for 20 quick calls needs one login, not one per call (each
    login is a bcrypt check through the LoginGuard)."""
    caplog.set_level(logging.INFO, logger="flight_secure.audit")
    with EchoServer(auth_handler=short_lived(10)) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client:
        client.authenticate(BasicClientAuthHandler(USER, PASSWORD), OPTIONS)
        for _ in range(20):
            assert whoami(client) == b"carol|basic|who"
    logins = [r for r in caplog.records if r.getMessage().startswith("login ok")]
    assert len(logins) == 1, f"{len(logins)} logins for 20 calls in one 10 s session"


def test_client_renews_an_expiring_identity_provider_token_by_itself() -> None:
    """A JWTClientAuthHandler given a callable presents a fresh token at each renewal."""
    key = Ed25519PrivateKey.generate()
    idp = JWTIssuer(key, "EdDSA", issuer="idp", ttl=2)
    handler = JWTServerAuthHandler(JWTVerifier(key.public_key(), ["EdDSA"], issuer="idp",
                                               leeway=0))
    minted: list[str] = []

    def mint() -> str:
        minted.append(idp.issue("svc"))
        return minted[-1]

    with EchoServer(auth_handler=handler) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client:
        client.authenticate(JWTClientAuthHandler(mint), OPTIONS)
        first_expiry = expiry_of(minted[0].encode())
        keep_calling_past(client, first_expiry, b"svc|jwt|who")
    assert len(minted) > 1


def expiry_of(token: bytes) -> int:
    """The ``exp`` claim of a JWT, read without verifying it."""
    payload = token.split(b".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))["exp"]


# ---------------------------------------------------------- vanishing clients


class RecordsUploads(EchoServer):
    """DoPut reads to the end of the stream and records how each stream ended.

    ``batches_seen`` is released when an upload's third batch arrives and
    ``returned`` when a handler returns; ``endings`` has one entry per upload:
    ``"end of stream"`` or the type of the error the reader raised.
    """

    def __init__(self, **options: object) -> None:
        self.batches_seen = threading.Semaphore(0)
        self.returned = threading.Semaphore(0)
        self.endings: list[str] = []
        super().__init__(**options)

    def do_put(self, context: object, descriptor: object, reader: object,
               writer: object) -> None:
        count = 0
        try:
            for _ in reader:
                count += 1
                if count == 3:
                    self.batches_seen.release()
            self.endings.append("end of stream")
        except Exception as exc:
            self.endings.append(type(exc).__name__)
            raise
        finally:
            self.returned.release()


def test_client_killed_mid_doput_frees_the_call(tmp_path: Path) -> None:
    """The handler returns and the server serves on. (Whether the handler saw an error
    is checked over many uploads by the next test: one kill shows it only by chance.)"""
    with RecordsUploads(location="grpc://localhost:0") as server:
        config = {"location": f"grpc://localhost:{server.port}", "name": "half",
                  "batches": 5, "rows": 1000}
        with Child.python("upload-then-hang", json.dumps(config),
                          log=tmp_path / "uploader.log") as uploader:
            uploader.expect("written")
            assert server.batches_seen.acquire(timeout=CALL_TIMEOUT)
            uploader.kill()
        assert server.returned.acquire(timeout=CALL_TIMEOUT), "the DoPut handler never returned"
        with flight.connect(f"grpc://localhost:{server.port}") as client:
            assert whoami(client) == b"|none|who"
            writer, _ = client.do_put(flight.FlightDescriptor.for_path("whole"),
                                      upload(1).schema, OPTIONS)
            writer.write_table(upload(10))
            writer.close()
            assert server.endings[-1] == "end of stream"
            assert echo_call(client, "DoExchange", b"n", OPTIONS) == b"|none|n|3"


def held_upload(name: str, release: threading.Event) -> Iterator[bytes]:
    """A DoPut request stream: a schema and five batches, then nothing until ``release``
    (the client has not finished writing: it never half-closes)."""
    messages = ipc_messages(upload(1000))
    yield flight_data(*messages[0], name)
    for _ in range(5):
        yield flight_data(*messages[1])
    release.wait(CALL_TIMEOUT)


def test_an_upload_cut_off_midway_never_looks_finished() -> None:
    """400 uploads cancelled after their third batch, before the client finished writing:
    every handler's reader must end with an error, never a clean end of stream (from
    which a handler would store the partial upload as if it were whole)."""
    uploads = 400
    with RecordsUploads(location="grpc://localhost:0") as server, \
            raw_channel(server.port) as channel:
        do_put = channel.stream_stream(rpc_path("DoPut"))
        for _ in range(uploads):
            release = threading.Event()
            call = do_put(held_upload("cut", release), timeout=CALL_TIMEOUT)
            assert server.batches_seen.acquire(timeout=CALL_TIMEOUT)
            call.cancel()  # what gRPC does for a client that goes away
            release.set()
            assert server.returned.acquire(timeout=CALL_TIMEOUT)
    clean = server.endings.count("end of stream")
    assert clean == 0, f"{clean} of {uploads} cut-off uploads ended like finished ones"


@pytest.mark.parametrize("peer", sorted(IMPLEMENTATIONS))
def test_a_finished_upload_is_confirmed_without_waiting_out_the_grace(peer: str) -> None:
    """The end of an upload is confirmed by one more read through gRPC, not by
    waiting: with a grace period far longer than the call's deadline, finished
    uploads still complete and their handlers see a clean end of stream."""
    peer_flight = IMPLEMENTATIONS[peer]
    deadline = peer_flight.FlightCallOptions(timeout=CALL_TIMEOUT)
    with RecordsUploads(location="grpc://localhost:0",
                        end_of_stream_grace=6 * CALL_TIMEOUT) as server, \
            peer_flight.connect(f"grpc://localhost:{server.port}") as client:
        for index in range(3):
            writer, _ = client.do_put(peer_flight.FlightDescriptor.for_path(f"whole-{index}"),
                                      upload(1).schema, deadline)
            writer.write_table(upload(10))
            writer.close()
            assert server.returned.acquire(timeout=CALL_TIMEOUT)
    assert server.endings == ["end of stream"] * 3


@pytest.fixture
def writer_server(tmp_path: Path) -> Iterator[tuple[Child, int]]:
    """A child server whose handlers write until their call ends (2 worker threads)."""
    with Child.python("serve", "writes-until-cancelled", json.dumps({"max_workers": 2}),
                      log=tmp_path / "server.log") as child:
        yield child, int(child.expect("ready").split()[1])


def test_exchange_handler_blocked_writing_returns_when_the_client_cancels(
        writer_server: tuple[Child, int]) -> None:
    child, port = writer_server
    with flight.connect(f"grpc://localhost:{port}") as client:
        _, reader = client.do_exchange(flight.FlightDescriptor.for_path("flood"), OPTIONS)
        assert reader.read_chunk().data.num_rows == 1024
        child.expect("event entered DoExchange")
        reader.cancel()
        child.expect("event returned DoExchange", timeout=5)


def test_put_handler_blocked_writing_returns_when_the_client_goes_away(
        writer_server: tuple[Child, int]) -> None:
    child, port = writer_server
    client = flight.connect(f"grpc://localhost:{port}")
    client.do_put(flight.FlightDescriptor.for_path("flood"), upload(1).schema, OPTIONS)
    child.expect("event entered DoPut")
    client.close()
    child.expect("event returned DoPut", timeout=5)


def test_cancelled_writers_do_not_use_up_the_server(writer_server: tuple[Child, int]) -> None:
    """Two calls cancelled while their handlers write, on a server with 2 workers: a
    third call that needs a handler thread must still be served."""
    child, port = writer_server
    with flight.connect(f"grpc://localhost:{port}") as client:
        for _ in range(2):
            _, reader = client.do_exchange(flight.FlightDescriptor.for_path("flood"), OPTIONS)
            reader.read_chunk()
            child.expect("event entered DoExchange")
            reader.cancel()
        writer, reader = client.do_exchange(flight.FlightDescriptor.for_path("echo"),
                                            flight.FlightCallOptions(timeout=5))
        writer.begin(upload(5).schema)
        writer.write_table(upload(5))
        writer.done_writing()
        try:
            assert reader.read_all().num_rows == 5
        except flight.FlightTimedOutError:
            pytest.fail("the server had no thread left for a new DoExchange")


# ------------------------------------------------------------- failing handlers


class FailsMidStream(EchoServer):
    def do_get(self, context: object, ticket: object) -> flight.GeneratorStream:
        def batches() -> Iterator[pa.Table]:
            yield upload(1)
            raise OSError("disk /data/7 went away")

        return flight.GeneratorStream(upload(0).schema, batches())


def test_handler_errors_reach_the_client_and_the_server_keeps_serving() -> None:
    with FailsMidStream() as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client:
        with pytest.raises(flight.FlightServerError, match="quota of team-7 exceeded") as error:
            list(client.do_action(flight.Action("fail", b"quota of team-7 exceeded"), OPTIONS))
        assert "Traceback" not in str(error.value)
        reader = client.do_get(flight.Ticket(b"t"), OPTIONS)
        with pytest.raises(flight.FlightError, match="disk /data/7 went away") as error:
            reader.read_all()
        assert "Traceback" not in str(error.value)
        for rpc in ECHO_RPCS[:2]:
            assert echo_call(client, rpc, b"n", OPTIONS) == expected_answer("", "none", rpc,
                                                                            b"n")


# -------------------------------------------------------- certificate rotation


def presented_certificate(port: int, pki: DevCertificates) -> bytes:
    """The DER certificate a new TLS connection to ``port`` is shown."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(*pki.clients["alice"])
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("localhost", port), timeout=CALL_TIMEOUT) as sock, \
            context.wrap_socket(sock, server_hostname="localhost") as connection:
        return connection.getpeercert(binary_form=True)


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def check_rotation(pki: DevCertificates, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   rotations: int, calls_between: int) -> None:
    """Replace the server's certificate files ``rotations`` times while 4 threads open
    new connections and 2 keep theirs, ``calls_between`` calls at least between rotations;
    each new certificate must be served, and no call may fail."""
    cert_path, key_path = tmp_path / "server.pem", tmp_path / "server.key"
    cert, key = pki.server_pems()
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    credentials = reloading_server_credentials(cert_path, key_path, pki.ca_cert,
                                               require_client_auth=True, check_interval=0.05)
    server = EchoServer(location="grpc+tls://localhost:0", tls_credentials=credentials,
                        verify_client=True, auth_handler=MutualTLSServerAuthHandler())
    authority = CertificateAuthority.load(pki.ca_cert, pki.ca_key)
    stop = threading.Event()
    calls: list[bool] = []
    failures: list[str] = []

    def call(client: flight.FlightClient, name: str, number: int) -> None:
        rpc = ECHO_RPCS[number % len(ECHO_RPCS)]
        try:
            assert echo_call(client, rpc, b"r", OPTIONS) == expected_answer(name, "mtls", rpc,
                                                                             b"r")
            calls.append(True)
        except (flight.FlightError, AssertionError) as exc:
            failures.append(f"{name} {rpc}: {type(exc).__name__}: {exc}")

    def new_connections(name: str) -> None:
        for number in range(100_000):
            if stop.is_set():
                return
            with mtls_client(pki, server.port, name) as client:
                call(client, name, number)

    def one_connection(name: str) -> None:
        with mtls_client(pki, server.port, name) as client:
            for number in range(100_000):
                if stop.is_set():
                    return
                call(client, name, number)

    workers = [threading.Thread(target=new_connections, args=(f"client-{i:02d}",))
               for i in range(4)]
    workers += [threading.Thread(target=one_connection, args=(f"client-{i:02d}",))
                for i in range(4, 6)]
    try:
        for worker in workers:
            worker.start()
        for rotation in range(rotations + 1):
            goal = len(calls) + calls_between
            for _ in bounded("calls between rotations", seconds=60, attempts=100_000,
                             pause=0.02):
                if len(calls) >= goal or failures:
                    break
            if rotation == rotations or failures:
                break
            renewed = authority.issue_server(("localhost", "127.0.0.1"))
            renewed.write(cert_path, key_path)  # each file replaced atomically, in turn
            for _ in bounded("the new certificate is served", seconds=CALL_TIMEOUT,
                             attempts=1000, pause=0.02):
                if presented_certificate(server.port, pki) == der(renewed.cert_pem):
                    break
    finally:
        stop.set()
        for worker in workers:
            worker.join(CALL_TIMEOUT)
        server.shutdown()
    report(capsys, f"certificate rotation: {rotations} rotations under load, {len(calls)} "
                   f"calls, {len(failures)} failed")
    assert failures == []
    assert not any(worker.is_alive() for worker in workers)


def test_certificate_rotation_under_load_fails_no_call(
        pki: DevCertificates, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_rotation(pki, tmp_path, capsys, rotations=1, calls_between=25)


@pytest.mark.slow
def test_repeated_certificate_rotations_under_load_fail_no_call(
        pki: DevCertificates, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_rotation(pki, tmp_path, capsys, rotations=10, calls_between=300)


# ------------------------------------------------------- the flight-secure CLI

ADMIN_PASSWORD = "admin's password"


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[tuple[Child, int, Path, Path]]:
    """``flight-secure serve`` over a folder with one dataset; (child, port, data, ca)."""
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"n": [1, 2, 3]}), data / "existing.parquet")
    users = PasswordStore(rounds=4)
    users.add("admin", ADMIN_PASSWORD)
    users.save(tmp_path / "users.htpasswd")
    argv = [sys.executable, "-m", "flight_secure", "serve", "--data", str(data), "--port", "0",
            "--host", "127.0.0.1", "--auth", "basic", "--users", str(tmp_path / "users.htpasswd"),
            "--certs-dir", str(tmp_path / "certs"), "--quiet"]
    with Child(argv, log=tmp_path / "serve.log", cwd=tmp_path) as child:
        port = int(child.expect("listening on").rpartition(":")[2])
        yield child, port, data, tmp_path / "certs" / "ca.pem"


def cli_client(port: int, ca: Path) -> tuple[flight.FlightClient, flight.FlightCallOptions]:
    client = flight.connect(f"grpc+tls://127.0.0.1:{port}", tls_root_certs=ca.read_bytes())
    pair = client.authenticate_basic_token("admin", ADMIN_PASSWORD, OPTIONS)
    return client, flight.FlightCallOptions(timeout=CALL_TIMEOUT, headers=[pair])


@contextlib.contextmanager
def cli_raw_channel(port: int, ca: Path) -> Iterator[tuple[grpc.Channel, str]]:
    """A raw TLS channel to the CLI server, and an admin ``authorization`` header value."""
    client, options = cli_client(port, ca)
    with client:
        token = dict(options.headers)[b"authorization"].decode()
    credentials = grpc.ssl_channel_credentials(ca.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        yield channel, token


def datasets(client: flight.FlightClient, options: flight.FlightCallOptions) -> set[str]:
    return {info.descriptor.path[0].decode() for info in client.list_flights(options=options)}


def test_cli_upload_cut_off_midway_leaves_no_dataset(
        cli_server: tuple[Child, int, Path, Path], tmp_path: Path) -> None:
    server, port, data, ca = cli_server
    config = {"location": f"grpc+tls://127.0.0.1:{port}", "ca": str(ca), "user": "admin",
              "password": ADMIN_PASSWORD, "name": "half", "batches": 8, "rows": 50_000}
    with Child.python("upload-then-hang", json.dumps(config),
                      log=tmp_path / "uploader.log") as uploader:
        uploader.expect("written")
        for _ in bounded("the upload is being written", seconds=CALL_TIMEOUT, attempts=400,
                         pause=0.05):
            if any(path.name.startswith(".half.") for path in data.iterdir()):
                break
        uploader.kill()
    for _ in bounded("the partial upload is removed", seconds=CALL_TIMEOUT, attempts=400,
                     pause=0.05):
        if not any(path.name.startswith(".half.") for path in data.iterdir()):
            break
    assert sorted(os.listdir(data)) == ["existing.parquet"]
    assert server.alive()
    client, options = cli_client(port, ca)
    with client:
        assert datasets(client, options) == {"existing"}
        writer, _ = client.do_put(flight.FlightDescriptor.for_path("whole"), upload(1).schema,
                                  options)
        writer.write_table(upload(10))
        writer.close()
        assert datasets(client, options) == {"existing", "whole"}


@pytest.mark.slow
def test_cli_many_uploads_cut_off_midway_leave_no_dataset(
        cli_server: tuple[Child, int, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """300 uploads cancelled while ``flight-secure serve`` writes them: none may appear."""
    uploads = 300
    server, port, data, ca = cli_server
    with cli_raw_channel(port, ca) as (channel, token):
        do_put = channel.stream_stream(rpc_path("DoPut"))
        for number in range(uploads):
            release = threading.Event()
            call = do_put(held_upload(f"cut-{number}", release),
                          metadata=[("authorization", token)], timeout=CALL_TIMEOUT)
            for _ in bounded("the upload is being written", seconds=CALL_TIMEOUT,
                             attempts=10_000, pause=0.002):
                if any(path.name.startswith(f".cut-{number}.") for path in data.iterdir()):
                    break
            time.sleep(0.02)  # let the server read all that was sent and wait for more
            call.cancel()
            release.set()
    for _ in bounded("the partial uploads are removed", seconds=CALL_TIMEOUT, attempts=1000,
                     pause=0.02):
        if sorted(os.listdir(data)) == ["existing.parquet"]:
            break
    report(capsys, f"flight-secure serve: {uploads} uploads cut off midway, "
                   f"{len(os.listdir(data)) - 1} left a file")
    assert server.alive()


def test_cli_server_survives_an_upload_with_lying_offsets(
        cli_server: tuple[Child, int, Path, Path]) -> None:
    server, port, data, ca = cli_server
    with cli_raw_channel(port, ca) as (channel, token):
        outcome = raw_call(channel, "DoPut", crafted_string_offsets(100_000_000),
                           [("authorization", token)])
        if outcome.code == grpc.StatusCode.UNAVAILABLE:  # the connection dropped: why?
            for _ in bounded("the server exits", seconds=5, attempts=100, pause=0.05):
                if not server.alive():
                    break
        assert server.alive(), f"flight-secure serve died: {server.describe_exit()}"
        assert_refused_cleanly(outcome)
    assert sorted(os.listdir(data)) == ["existing.parquet"]
