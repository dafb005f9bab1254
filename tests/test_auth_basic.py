"""Specification of BasicServerAuthHandler / BasicClientAuthHandler over real gRPC."""

from __future__ import annotations

import json
import logging
import os
import statistics
import threading
import time
from collections.abc import Iterator

import jwt
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import flight_secure as flight
from flight_secure.auth import (
    BasicClientAuthHandler,
    BasicServerAuthHandler,
    JWTIssuer,
    JWTVerifier,
    LoginGuard,
    PasswordStore,
)
from flight_secure.auth.base import CallCredentials
from flight_secure.types import FlightMethod

PASSWORDS = {"alice": "correct horse battery", "bob": "Tr0ub4dor&3"}
ROLES = {"alice": ["reader", "writer"]}
ISS = "https://login.test"
RPCS = ("ListFlights", "GetFlightInfo", "DoGet", "DoPut", "DoExchange", "DoAction")


class IdentityServer(flight.FlightServerBase):
    """Every RPC answers with the caller's ``context.peer_identity()``."""

    def list_flights(self, context, criteria):
        descriptor = flight.FlightDescriptor.for_command(context.peer_identity())
        yield flight.FlightInfo(None, descriptor, [])

    def get_flight_info(self, context, descriptor):
        return flight.FlightInfo(
            None, flight.FlightDescriptor.for_command(context.peer_identity()), []
        )

    def do_get(self, context, ticket):
        return flight.RecordBatchStream(pa.table({"who": [context.peer_identity()]}))

    def do_put(self, context, descriptor, reader, writer):
        reader.read_all()
        writer.write(pa.py_buffer(context.peer_identity()))

    def do_exchange(self, context, descriptor, reader, writer):
        reader.read_all()
        writer.begin(pa.schema([("who", pa.binary())]))
        writer.write_table(pa.table({"who": [context.peer_identity()]}))

    def do_action(self, context, action):
        principal = context.principal
        if action.type == "principal":
            yield json.dumps({"name": principal.name, "method": principal.method,
                              "roles": sorted(principal.roles),
                              "sub": principal.claims.get("sub")}).encode()
        else:
            yield context.peer_identity()


def seen_identity(client: flight.FlightClient, rpc: str,
                  options: flight.FlightCallOptions | None = None) -> bytes:
    """Call ``rpc`` and return the identity the server's handler saw."""
    descriptor = flight.FlightDescriptor.for_path("x")
    if rpc == "ListFlights":
        return next(iter(client.list_flights(options=options))).descriptor.command
    if rpc == "GetFlightInfo":
        return client.get_flight_info(descriptor, options).descriptor.command
    if rpc == "DoGet":
        return client.do_get(flight.Ticket(b"t"), options).read_all()["who"][0].as_py()
    if rpc == "DoPut":
        schema = pa.schema([("n", pa.int64())])
        writer, reader = client.do_put(descriptor, schema, options)
        writer.write_table(pa.table({"n": [1]}))
        writer.done_writing()
        answer = reader.read().to_pybytes()
        writer.close()
        return answer
    if rpc == "DoExchange":
        writer, reader = client.do_exchange(descriptor, options)
        writer.begin(pa.schema([("n", pa.int64())]))
        writer.write_table(pa.table({"n": [1]}))
        writer.done_writing()
        answer = reader.read_all()["who"][0].as_py()
        writer.close()
        return answer
    assert rpc == "DoAction"
    return next(iter(client.do_action("whoami", options))).body.to_pybytes()


class RawPayload(flight.ClientAuthHandler):
    """Sends whatever bytes it is given as the handshake payload."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def authenticate(self, outgoing, incoming):
        outgoing.write(self.payload)
        incoming.read()

    def get_token(self):
        return b""


@pytest.fixture(scope="module")
def store() -> PasswordStore:
    result = PasswordStore(rounds=4)
    for user, password in PASSWORDS.items():
        result.add(user, password)
    return result


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def handler(store, key) -> Iterator[BasicServerAuthHandler]:
    """A handler whose signing key the test knows, so it can make tokens of its own."""
    issuer = JWTIssuer(key, "EdDSA", issuer=ISS)
    verifier = JWTVerifier(key.public_key(), ["EdDSA"], issuer=ISS, leeway=0)
    made = BasicServerAuthHandler(store, issuer, verifier, roles=ROLES)
    yield made
    made.close()


@pytest.fixture
def server(handler) -> Iterator[IdentityServer]:
    with IdentityServer(auth_handler=handler) as running:
        yield running


def connect(server: flight.FlightServerBase) -> flight.FlightClient:
    return flight.connect(f"grpc://localhost:{server.port}")


def bearer(token: str) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


@pytest.mark.parametrize("rpc", RPCS)
def test_message_handshake_identity_reaches_every_rpc(server, rpc):
    with connect(server) as client:
        client.authenticate(BasicClientAuthHandler("alice", PASSWORDS["alice"]))
        assert seen_identity(client, rpc) == b"alice"


@pytest.mark.parametrize("rpc", RPCS)
def test_header_login_identity_reaches_every_rpc(server, rpc):
    with connect(server) as client:
        key, value = client.authenticate_basic_token("bob", PASSWORDS["bob"])
        assert key == b"authorization" and value.startswith(b"Bearer ")
        options = flight.FlightCallOptions(headers=[(key, value)])
        assert seen_identity(client, rpc, options) == b"bob"


def test_principal_carries_scheme_roles_and_claims(server):
    with connect(server) as client:
        client.authenticate(BasicClientAuthHandler("alice", PASSWORDS["alice"]))
        result = next(iter(client.do_action("principal")))
    assert json.loads(result.body.to_pybytes()) == {
        "name": "alice", "method": "basic", "roles": ["reader", "writer"], "sub": "alice"}


def test_ephemeral_issuer_tokens_expire_after_token_ttl(store):
    handler = BasicServerAuthHandler(store, token_ttl=120)
    try:
        with IdentityServer(auth_handler=handler) as server, connect(server) as client:
            login = BasicClientAuthHandler("bob", PASSWORDS["bob"])
            client.authenticate(login)
            assert seen_identity(client, "DoAction") == b"bob"
    finally:
        handler.close()
    claims = jwt.decode(login.get_token(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120
    assert claims["iss"] == "flight-secure-basic"


def test_issuer_without_verifier_is_refused(store, key):
    with pytest.raises(ValueError, match="both issuer and verifier"):
        BasicServerAuthHandler(store, JWTIssuer(key, "EdDSA"))


def _refused_tokens(key: Ed25519PrivateKey) -> dict[str, str | None]:
    now = int(time.time())
    claims = {"sub": "alice", "iss": ISS, "iat": now, "nbf": now, "exp": now + 600}
    valid = jwt.encode(claims, key, algorithm="EdDSA")
    return {
        "missing": None,
        "malformed": "this is not a token",
        "invalid": valid.rsplit(".", 1)[0] + "." + "A" * 86,
        "forged": jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA"),
        "expired": jwt.encode({**claims, "exp": now - 5}, key, algorithm="EdDSA"),
    }


@pytest.mark.parametrize("header", ["auth-token-bin", "authorization"])
@pytest.mark.parametrize("kind", ["missing", "malformed", "invalid", "forged", "expired"])
def test_bad_tokens_are_unauthenticated(server, key, kind, header):
    token = _refused_tokens(key)[kind]
    headers = []
    if token is not None:
        value = token if header == "auth-token-bin" else f"Bearer {token}"
        headers.append((header.encode(), value.encode()))
    with connect(server) as client:
        for rpc in ("GetFlightInfo", "DoGet"):
            with pytest.raises(flight.FlightUnauthenticatedError) as caught:
                seen_identity(client, rpc, flight.FlightCallOptions(headers=headers))
            assert token is None or token not in str(caught.value)
        if kind == "expired":
            assert "expired" in str(caught.value)


def test_wrong_password_and_unknown_user_get_the_same_message(server):
    messages = []
    with connect(server) as client:
        for user, password in (("alice", "wrong"), ("mallory", "wrong")):
            with pytest.raises(flight.FlightUnauthenticatedError) as caught:
                client.authenticate(BasicClientAuthHandler(user, password))
            messages.append(str(caught.value))
            with pytest.raises(flight.FlightUnauthenticatedError) as caught:
                client.authenticate_basic_token(user, password)
            messages.append(str(caught.value))
    assert len(set(messages)) == 1
    assert "invalid username or password" in messages[0]


def test_failures_lock_the_user_out_and_are_audited(store, caplog):
    guard = LoginGuard(max_failures_per_user=3, max_failures_per_network=100, lockout=600)
    handler = BasicServerAuthHandler(store, guard=guard)
    caplog.set_level(logging.INFO, logger="flight_secure.audit")
    try:
        with IdentityServer(auth_handler=handler) as server, connect(server) as client:
            for _ in range(3):
                with pytest.raises(flight.FlightUnauthenticatedError, match="invalid username"):
                    client.authenticate(BasicClientAuthHandler("alice", "guess"))
            with pytest.raises(flight.FlightUnauthenticatedError, match="too many failed"):
                client.authenticate(BasicClientAuthHandler("alice", PASSWORDS["alice"]))
            with pytest.raises(flight.FlightUnauthenticatedError, match="too many failed"):
                client.authenticate_basic_token("alice", PASSWORDS["alice"])
            client.authenticate(BasicClientAuthHandler("bob", PASSWORDS["bob"]))
    finally:
        guard.close()
    logins = [r for r in caplog.records if r.audit["event"].startswith("login")]
    events = [(r.audit["event"], r.audit["who"], r.audit["reason"]) for r in logins]
    assert events == [
        *[("login refused", "alice", "bad_credentials")] * 3,
        *[("login refused", "alice", "throttled")] * 2,
        ("login ok", "bob", "password verified"),
    ]
    assert all(r.audit["scheme"] == "basic" and r.audit["peer"].startswith("ip")
               for r in logins)


@pytest.mark.parametrize("payload, message", [
    (b"", "invalid username or password"),
    (b"\xff\xff\xff\xff\xff", "not a serialized BasicAuth"),
    (os.urandom(777), None),
    (b"\x0a" * (2 << 20), "too large"),
])
def test_garbage_handshake_payloads_are_refused_and_server_keeps_serving(server, payload,
                                                                         message):
    with connect(server) as client:
        with pytest.raises(flight.FlightUnauthenticatedError, match=message):
            client.authenticate(RawPayload(payload))
        client.authenticate(BasicClientAuthHandler("alice", PASSWORDS["alice"]))
        assert seen_identity(client, "DoAction") == b"alice"


def test_malformed_basic_header_is_unauthenticated(server):
    options = flight.FlightCallOptions(headers=[(b"authorization", b"Basic %%%not-base64")])
    with connect(server) as client, pytest.raises(flight.FlightUnauthenticatedError,
                                                  match="Basic header"):
        client.authenticate(BasicClientAuthHandler("alice", PASSWORDS["alice"]), options)


def test_passwords_and_tokens_never_reach_logs_errors_or_reprs(server, handler, caplog):
    caplog.set_level(logging.DEBUG)
    guess = "hunter2-do-not-log"
    errors = []
    with connect(server) as client:
        for attempt in (lambda: client.authenticate(BasicClientAuthHandler("alice", guess)),
                        lambda: client.authenticate_basic_token("alice", guess)):
            with pytest.raises(flight.FlightUnauthenticatedError) as caught:
                attempt()
            errors.append(str(caught.value))
        login = BasicClientAuthHandler("alice", PASSWORDS["alice"])
        client.authenticate(login)
        token = login.get_token().decode()
        _, bearer_value = client.authenticate_basic_token("bob", PASSWORDS["bob"])
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with connect(server) as client, pytest.raises(flight.FlightUnauthenticatedError) as caught:
        seen_identity(client, "DoAction", bearer(tampered))
    errors.append(str(caught.value))
    secrets = [guess, PASSWORDS["alice"], PASSWORDS["bob"], token, tampered,
               bearer_value.decode().split()[1]]
    shown = caplog.text + "".join(errors) + repr(handler) + repr(login)
    assert "login refused" in caplog.text and "token refused" in caplog.text
    for secret in secrets:
        for part in secret.split("."):
            assert part not in shown


def test_authenticated_calls_succeed_during_a_bcrypt_flood(capsys):
    """8 threads guess passwords at real bcrypt cost while a logged-in client works."""
    store = PasswordStore(rounds=10)
    store.add("carol", "s3cret-carol")
    guard = LoginGuard(max_concurrent_checks=2, max_failures_per_user=10**6,
                       max_failures_per_network=10**6)
    handler = BasicServerAuthHandler(store, guard=guard)
    stop = threading.Event()
    attempts = []

    def flood() -> None:
        with connect(server) as attacker:
            while not stop.is_set():
                with pytest.raises(flight.FlightUnauthenticatedError):
                    attacker.authenticate(BasicClientAuthHandler("carol", "guess"))
                attempts.append(1)

    def timed_calls(count: int) -> list[float]:
        latencies = []
        for _ in range(count):
            start = time.perf_counter()
            assert seen_identity(client, "DoAction") == b"carol"
            latencies.append(time.perf_counter() - start)
        return latencies

    try:
        with IdentityServer(auth_handler=handler) as server, connect(server) as client:
            client.authenticate(BasicClientAuthHandler("carol", "s3cret-carol"))
            quiet = timed_calls(50)
            threads = [threading.Thread(target=flood) for _ in range(8)]
            for thread in threads:
                thread.start()
            try:
                while len(attempts) < 4:  # the flood is under way; bounded by the test timeout
                    timed_calls(1)
                loaded = []
                while len(attempts) < 28 or len(loaded) < 50:
                    loaded += timed_calls(1)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(30)
    finally:
        guard.close()
    assert len(attempts) >= 28 and not any(t.is_alive() for t in threads)
    factor = statistics.median(loaded) / statistics.median(quiet)
    with capsys.disabled():
        print(f"\nbcrypt flood: median call {statistics.median(quiet) * 1e3:.2f} ms quiet, "
              f"{statistics.median(loaded) * 1e3:.2f} ms under flood (x{factor:.1f}); "
              f"{len(attempts)} guesses")


def test_is_valid_gives_pyarrow_servers_the_identity_of_a_session_token(handler, key):
    tokens = _refused_tokens(key)
    login = CallCredentials.from_values(FlightMethod.HANDSHAKE)
    session = handler.issue_token("alice", PASSWORDS["alice"], login)
    assert handler.is_valid(session.encode()) == "alice"
    with pytest.raises(flight.FlightUnauthenticatedError):  # signed, but no login's token
        handler.is_valid(handler.issuer.issue("alice").encode())
    for kind in ("malformed", "forged", "expired"):
        with pytest.raises(flight.FlightUnauthenticatedError):
            handler.is_valid(tokens[kind].encode())
    with pytest.raises(flight.FlightUnauthenticatedError):
        handler.is_valid(b"")
