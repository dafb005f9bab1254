"""Authentication between flight_secure and real pyarrow.flight peers, and real htpasswd files.

flight_secure's server handlers run on both engines (the ``engine`` fixture):
flight_secure's own, and pyarrow.flight's with ``flight_secure.arrow``.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as pf
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from identity_server import identity

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

USERS = {"pat": "pat's password", "quinn": "quinn-pw-9"}


def whoami_server(library) -> type:
    """A server class of ``library`` (flight_secure or pyarrow.flight) whose DoAction
    and DoGet answer with the caller's peer identity."""

    class WhoServer(library.FlightServerBase):
        def do_action(self, context, action):
            yield library.Result(pa.py_buffer(context.peer_identity()))

        def do_get(self, context, ticket):
            return library.RecordBatchStream(pa.table({"who": [context.peer_identity()]}))

    return WhoServer


class SecuredWhoServer:
    """A behaviour (either engine) whose DoAction and DoGet answer with the caller."""

    def do_action(self, context, action):
        yield self.flight.Result(pa.py_buffer(identity(context)))

    def do_get(self, context, ticket):
        return self.flight.RecordBatchStream(pa.table({"who": [identity(context)]}))


def identities(client, options=None) -> tuple[bytes, bytes]:
    """What DoAction and DoGet saw as the caller's identity (either client library)."""
    action = next(iter(client.do_action(("whoami", b""), options))).body.to_pybytes()
    table = client.do_get(pf.Ticket(b"t"), options).read_all()
    return action, table["who"][0].as_py()


@pytest.fixture(scope="module")
def store() -> PasswordStore:
    result = PasswordStore(rounds=4)
    for user, password in USERS.items():
        result.add(user, password)
    return result


@pytest.fixture(scope="module")
def basic_server(engine, store) -> Iterator[object]:
    handler = BasicServerAuthHandler(store)
    with engine.running(SecuredWhoServer, auth_handler=handler) as server:
        yield server
    handler.close()


def test_pyarrow_basic_token_login_against_our_server(basic_server):
    client = pf.connect(f"grpc://localhost:{basic_server.port}")
    try:
        pair = client.authenticate_basic_token("pat", USERS["pat"])
        assert pair[0] == b"authorization" and pair[1].startswith(b"Bearer ")
        options = pf.FlightCallOptions(headers=[pair])
        assert identities(client, options) == (b"pat", b"pat")
        with pytest.raises(pf.FlightUnauthenticatedError):
            client.authenticate_basic_token("pat", "wrong")
        with pytest.raises(pf.FlightUnauthenticatedError):
            identities(client)
    finally:
        client.close()


class PyarrowBasicClient(pf.ClientAuthHandler):
    """A client auth handler as pyarrow users write them: BasicAuth out, token in."""

    def __init__(self, username: str, password: str) -> None:
        super().__init__()
        self.basic = pf.BasicAuth(username, password)
        self.token = b""

    def authenticate(self, outgoing, incoming):
        outgoing.write(self.basic.serialize())
        self.token = incoming.read()

    def get_token(self):
        return self.token


def session_auth(library) -> object:
    """A server auth handler written pyarrow's way, on ``library``'s ServerAuthHandler:
    BasicAuth in, a random session token out, the token's user as identity."""

    class SessionAuth(library.ServerAuthHandler):
        def __init__(self) -> None:
            super().__init__()
            self.sessions: dict[bytes, bytes] = {}

        def authenticate(self, outgoing, incoming):
            auth = library.BasicAuth.deserialize(incoming.read())
            if USERS.get(auth.username.decode()) != auth.password.decode():
                raise library.FlightUnauthenticatedError("invalid username or password")
            token = secrets.token_bytes(16)
            self.sessions[token] = auth.username
            outgoing.write(token)

        def is_valid(self, token):
            if token not in self.sessions:
                raise library.FlightUnauthenticatedError("invalid session token")
            return self.sessions[token]

    return SessionAuth()


def test_pyarrow_client_handler_against_our_server_with_a_pyarrow_style_handler(engine):
    """The handler is written on the server engine's own ServerAuthHandler class."""
    with engine.running(SecuredWhoServer, auth_handler=session_auth(engine.flight)) as server:
        client = pf.connect(f"grpc://localhost:{server.port}")
        try:
            client.authenticate(PyarrowBasicClient("quinn", USERS["quinn"]))
            assert identities(client) == (b"quinn", b"quinn")
            with pytest.raises(pf.FlightUnauthenticatedError):
                client.authenticate(PyarrowBasicClient("quinn", "nope"))
        finally:
            client.close()


def test_pyarrow_client_handler_against_our_basic_handler(basic_server):
    client = pf.connect(f"grpc://localhost:{basic_server.port}")
    try:
        client.authenticate(PyarrowBasicClient("pat", USERS["pat"]))
        assert identities(client) == (b"pat", b"pat")
    finally:
        client.close()


class PyarrowJWTServerAuth(pf.ServerAuthHandler):
    """pyarrow's server handler checking a JWT payload, then the JWT in auth-token-bin."""

    def __init__(self, verifier: JWTVerifier) -> None:
        super().__init__()
        self.verifier = verifier

    def authenticate(self, outgoing, incoming):
        self.is_valid(incoming.read())
        outgoing.write(b"")

    def is_valid(self, token):
        try:
            return self.verifier.verify(token)["sub"].encode()
        except Exception:
            raise pf.FlightUnauthenticatedError("invalid token") from None


def pyarrow_server(handler: pf.ServerAuthHandler):
    return whoami_server(pf)("grpc://localhost:0", auth_handler=handler)


def test_our_basic_client_handler_against_a_pyarrow_server():
    with pyarrow_server(session_auth(pf)) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client:
        client.authenticate(BasicClientAuthHandler("quinn", USERS["quinn"]))
        assert identities(client) == (b"quinn", b"quinn")
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.authenticate(BasicClientAuthHandler("quinn", "nope"))


def test_our_jwt_client_handler_against_a_pyarrow_server():
    key = Ed25519PrivateKey.generate()
    issuer = JWTIssuer(key, issuer="https://idp.test")
    verifier = JWTVerifier(key.public_key(), ["EdDSA"], issuer="https://idp.test")
    with pyarrow_server(PyarrowJWTServerAuth(verifier)) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client:
        client.authenticate(JWTClientAuthHandler(lambda: issuer.issue("rae")))
        assert identities(client) == (b"rae", b"rae")
        forged = JWTIssuer(Ed25519PrivateKey.generate(), issuer="https://idp.test")
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.authenticate(JWTClientAuthHandler(forged.issue("rae")))


def test_pyarrow_client_sends_bearer_tokens_to_our_jwt_handler(engine):
    key = Ed25519PrivateKey.generate()
    handler = JWTServerAuthHandler(JWTVerifier(key.public_key(), ["EdDSA"]))
    token = JWTIssuer(key).issue("sol")
    with engine.running(SecuredWhoServer, auth_handler=handler) as server:
        client = pf.connect(f"grpc://localhost:{server.port}")
        try:
            options = pf.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])
            assert identities(client, options) == (b"sol", b"sol")
            with pytest.raises(pf.FlightUnauthenticatedError):
                identities(client)
        finally:
            client.close()


def _htpasswd(path: Path, user: str, password: str, create: bool) -> None:
    """Add ``user`` with the real ``htpasswd -B`` tool (password on stdin, not argv)."""
    flags = ["-B", "-C", "5", "-i"] + (["-c"] if create else [])
    subprocess.run(["htpasswd", *flags, str(path), user], input=password.encode(),
                   check=True, capture_output=True, timeout=30)


@pytest.mark.skipif(shutil.which("htpasswd") is None,
                    reason="htpasswd missing: apt-get install -y apache2-utils")
def test_users_added_by_htpasswd_log_in_over_flight(engine, tmp_path):
    path = tmp_path / "users.htpasswd"
    _htpasswd(path, "tess", "tess: a passphrase", create=True)
    _htpasswd(path, "uma", "Ümläut-pässwörd", create=False)
    assert path.read_text().startswith("tess:$2y$05$")
    handler = BasicServerAuthHandler(PasswordStore.load(path))
    try:
        with engine.running(SecuredWhoServer, auth_handler=handler) as server, \
                flight.connect(f"grpc://localhost:{server.port}") as client:
            client.authenticate(BasicClientAuthHandler("tess", "tess: a passphrase"))
            assert identities(client) == (b"tess", b"tess")
            pair = client.authenticate_basic_token("uma", "Ümläut-pässwörd")
            with flight.connect(f"grpc://localhost:{server.port}") as fresh:
                options = flight.FlightCallOptions(headers=[pair])
                assert identities(fresh, options) == (b"uma", b"uma")
            with pytest.raises(flight.FlightUnauthenticatedError,
                               match="invalid username or password"):
                client.authenticate(BasicClientAuthHandler("tess", "tess: a passphrasE"))
    finally:
        handler.close()


class OneShotBasicClient(PyarrowBasicClient):
    """PyarrowBasicClient declaring ``writes_once``: its Handshake is a single request."""

    writes_once = True


def count_handshake_calls(client) -> dict[str, int]:
    """Count the client's Handshake calls by kind (stream or single request)."""
    counts = {"Handshake": 0, "HandshakeOnce": 0}
    for name in counts:
        original = client._session.stubs[name]

        def counted(*args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        client._session.stubs[name] = counted
    return counts


@pytest.mark.parametrize("server_library", [flight, pf], ids=["flight_secure", "pyarrow"])
def test_writes_once_handlers_log_in_with_a_single_request(server_library) -> None:
    server = whoami_server(server_library)("grpc://localhost:0",
                                           auth_handler=session_auth(server_library))
    with server, flight.connect(f"grpc://localhost:{server.port}") as client:
        counts = count_handshake_calls(client)
        client.authenticate(OneShotBasicClient("pat", USERS["pat"]))
        assert counts == {"Handshake": 0, "HandshakeOnce": 1}
        assert identities(client) == (b"pat", b"pat")
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.authenticate(OneShotBasicClient("pat", "wrong"))


class WritesTwice(OneShotBasicClient):
    writes_once = True  # declared, then broken

    def authenticate(self, outgoing, incoming):
        outgoing.write(self.basic.serialize())
        self.token = incoming.read()
        outgoing.write(b"more")


class ReadsFirst(OneShotBasicClient):
    writes_once = True  # declared, then broken

    def authenticate(self, outgoing, incoming):
        self.token = incoming.read()


@pytest.mark.parametrize(
    ("handler", "complaint"),
    [(WritesTwice, "wrote a second message"), (ReadsFirst, "must write its message")],
)
def test_a_handler_breaking_writes_once_gets_a_clear_error(basic_server, handler, complaint):
    with flight.connect(f"grpc://localhost:{basic_server.port}") as client:
        with pytest.raises(flight.FlightError, match=complaint):
            client.authenticate(handler("pat", USERS["pat"]))
        client.authenticate(BasicClientAuthHandler("pat", USERS["pat"]))
        assert identities(client) == (b"pat", b"pat")


class TwoRoundBasicClient(BasicClientAuthHandler):
    """A subclass that overrides authenticate with two messages: not writes_once any more."""

    def authenticate(self, outgoing, incoming):
        outgoing.write(self._auth.serialize())
        self._token = bytes(incoming.read())
        outgoing.write(b"and one more")


def test_a_subclass_overriding_authenticate_runs_as_a_stream(basic_server) -> None:
    with flight.connect(f"grpc://localhost:{basic_server.port}") as client:
        counts = count_handshake_calls(client)
        client.authenticate(TwoRoundBasicClient("pat", USERS["pat"]))
        assert counts == {"Handshake": 1, "HandshakeOnce": 0}
        assert identities(client) == (b"pat", b"pat")
