"""Specification of how sessions end: with the user, with the password, on revocation;
in the library and in ``flight-secure serve``."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import flight_secure as flight
from flight_secure.auth import (
    BasicServerAuthHandler,
    JWTIssuer,
    JWTServerAuthHandler,
    JWTVerifier,
    PasswordStore,
    RevocationFile,
    RevocationList,
)
from flight_secure.certs import generate_dev_certificates
from flight_secure.cli import build_parser, main
from flight_secure.cli.serve import Running, build_server

PASSWORDS = {"alice": "alice's password", "bob": "bob's password"}
TIMEOUT = flight.FlightCallOptions(timeout=10)


class Whoami(flight.FlightServerBase):
    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        yield context.peer_identity()


def whoami(client: flight.FlightClient, header: tuple[bytes, bytes]) -> bytes:
    options = flight.FlightCallOptions(headers=[header], timeout=10)
    return next(iter(client.do_action("whoami", options))).body.to_pybytes()


def bearer_token(header: tuple[bytes, bytes]) -> str:
    return header[1].decode().removeprefix("Bearer ")


def eventually(attempt: Callable[[], Any], seconds: float = 5.0) -> Any:
    """``attempt()`` retried until it stops raising a Flight error, within ``seconds``
    (a token issued in the very second of a user's revocation is refused too)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return attempt()
        except flight.FlightError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def store() -> PasswordStore:
    made = PasswordStore(rounds=4)
    for user, password in PASSWORDS.items():
        made.add(user, password)
    return made


@pytest.fixture
def served(store: PasswordStore) -> Iterator[tuple[Whoami, BasicServerAuthHandler]]:
    handler = BasicServerAuthHandler(store)
    with Whoami(location="grpc://localhost:0", auth_handler=handler) as server:
        yield server, handler
    handler.close()


@pytest.fixture
def client(served: tuple[Whoami, BasicServerAuthHandler]) -> Iterator[flight.FlightClient]:
    with flight.connect(f"grpc://localhost:{served[0].port}") as made:
        yield made


# ---------------------------------------------------------------- the library


def test_removing_a_user_ends_their_sessions_at_the_next_call(
        store: PasswordStore, client: flight.FlightClient) -> None:
    bob = client.authenticate_basic_token("bob", PASSWORDS["bob"], TIMEOUT)
    alice = client.authenticate_basic_token("alice", PASSWORDS["alice"], TIMEOUT)
    assert whoami(client, bob) == b"bob"
    store.remove("bob")
    with pytest.raises(flight.FlightUnauthenticatedError, match="session ended"):
        whoami(client, bob)
    assert whoami(client, alice) == b"alice"


def test_changing_a_password_ends_the_sessions_of_the_old_one(
        store: PasswordStore, client: flight.FlightClient) -> None:
    old = client.authenticate_basic_token("bob", PASSWORDS["bob"], TIMEOUT)
    assert whoami(client, old) == b"bob"
    store.add("bob", "bob's new password")
    with pytest.raises(flight.FlightUnauthenticatedError, match="session ended"):
        whoami(client, old)
    new = client.authenticate_basic_token("bob", "bob's new password", TIMEOUT)
    assert whoami(client, new) == b"bob"


def test_an_edited_password_file_ends_sessions_once_reloaded(
        tmp_path: Path, store: PasswordStore) -> None:
    store.save(tmp_path / "users.htpasswd")
    loaded = PasswordStore.load(tmp_path / "users.htpasswd")
    handler = BasicServerAuthHandler(loaded)
    try:
        with Whoami(location="grpc://localhost:0", auth_handler=handler) as server, \
                flight.connect(f"grpc://localhost:{server.port}") as client:
            bob = client.authenticate_basic_token("bob", PASSWORDS["bob"], TIMEOUT)
            assert main(["users", "remove", "--file", str(tmp_path / "users.htpasswd"),
                         "--user", "bob"]) == 0
            assert whoami(client, bob) == b"bob"  # not reloaded yet
            assert loaded.reload()
            with pytest.raises(flight.FlightUnauthenticatedError, match="session ended"):
                whoami(client, bob)
    finally:
        handler.close()


def test_revoke_token_ends_that_session_only(
        served: tuple[Whoami, BasicServerAuthHandler], client: flight.FlightClient) -> None:
    _, handler = served
    first = client.authenticate_basic_token("bob", PASSWORDS["bob"], TIMEOUT)
    second = client.authenticate_basic_token("bob", PASSWORDS["bob"], TIMEOUT)
    assert whoami(client, first) == whoami(client, second) == b"bob"
    handler.revoke_token(bearer_token(first))
    with pytest.raises(flight.FlightUnauthenticatedError, match="invalid token"):
        whoami(client, first)
    assert whoami(client, second) == b"bob"


def test_revoke_user_ends_every_session_they_have_now(
        served: tuple[Whoami, BasicServerAuthHandler], client: flight.FlightClient) -> None:
    _, handler = served
    sessions = [client.authenticate_basic_token("bob", PASSWORDS["bob"], TIMEOUT)
                for _ in range(2)]
    alice = client.authenticate_basic_token("alice", PASSWORDS["alice"], TIMEOUT)
    handler.revoke_user("bob")
    for session in sessions:
        with pytest.raises(flight.FlightUnauthenticatedError):
            whoami(client, session)
    assert whoami(client, alice) == b"alice"
    assert eventually(lambda: whoami(client, client.authenticate_basic_token(
        "bob", PASSWORDS["bob"], TIMEOUT))) == b"bob"


def test_an_identity_providers_tokens_are_revoked_by_id_or_by_subject() -> None:
    key = Ed25519PrivateKey.generate()
    handler = JWTServerAuthHandler(JWTVerifier(key.public_key(), ["EdDSA"],
                                               revoked=RevocationList()))
    issuer = JWTIssuer(key, "EdDSA")
    carol, dave, dave_again = issuer.issue("carol"), issuer.issue("dave"), issuer.issue("dave")
    with Whoami(location="grpc://localhost:0", auth_handler=handler) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client:
        def call(token: str) -> bytes:
            return whoami(client, (b"authorization", f"Bearer {token}".encode()))

        assert [call(t) for t in (carol, dave, dave_again)] == [b"carol", b"dave", b"dave"]
        handler.revoke_token(carol)
        handler.revoke_user("dave")
        for token in (carol, dave, dave_again):
            with pytest.raises(flight.FlightUnauthenticatedError, match="invalid token"):
                call(token)
        assert eventually(lambda: call(issuer.issue("dave"))) == b"dave"


def test_revoking_needs_a_revocation_list() -> None:
    key = Ed25519PrivateKey.generate()
    handler = JWTServerAuthHandler(JWTVerifier(key.public_key(), ["EdDSA"]))
    with pytest.raises(ValueError, match="no revocation list"):
        handler.revoke_user("dave")


def test_a_session_token_names_the_password_it_was_issued_for(
        store: PasswordStore, client: flight.FlightClient) -> None:
    token = bearer_token(client.authenticate_basic_token("bob", PASSWORDS["bob"], TIMEOUT))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["credential"] == store.fingerprint("bob")
    assert PASSWORDS["bob"] not in json.dumps(claims)
    store.add("bob", PASSWORDS["bob"])  # the same password, set again: a new salt
    assert store.fingerprint("bob") != claims["credential"]


# ----------------------------------------------------------- revocation files


def test_a_revocation_file_is_shared_through_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "revoked.jsonl"
    writer, reader = RevocationFile(path), RevocationFile(path)
    writer.revoke("jti-1", until=time.time() + 60)
    writer.revoke_subject("bob", until=time.time() + 60)
    assert not reader.is_revoked("jti-1")
    assert reader.reload() and not reader.reload()
    assert reader.is_revoked("jti-1")
    assert reader.rejects({"sub": "bob", "iat": int(time.time()) - 5, "jti": "x"})
    assert not reader.rejects({"sub": "bob", "iat": math.ceil(time.time()) + 1, "jti": "y"})
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_malformed_revocation_file_is_refused_and_the_entries_in_force_kept(
        tmp_path: Path) -> None:
    path = tmp_path / "revoked.jsonl"
    revocations = RevocationFile(path)
    revocations.revoke("jti-1")
    path.write_text('{"jti": "jti-1", "until": null}\nnot json\n')
    with pytest.raises(ValueError, match=r"revoked.jsonl: line 2"):
        revocations.reload()
    assert revocations.is_revoked("jti-1")
    path.write_text('{"sub": "bob", "until": null}\n')
    with pytest.raises(ValueError, match="line 1: expected"):
        RevocationFile(path)


def test_lapsed_entries_are_not_kept() -> None:
    now = [1000.0]
    revocations = RevocationList(clock=lambda: now[0])
    revocations.revoke("a", until=1010)
    revocations.revoke_subject("bob", until=1010)
    assert revocations.is_revoked("a") and len(revocations) == 2
    now[0] = 1010
    assert not revocations.is_revoked("a")
    assert not revocations.rejects({"sub": "bob", "iat": 900})
    assert revocations.entries() == []


# ------------------------------------------------------ flight-secure serve


def serve_args(tmp_path: Path, *extra: str) -> argparse.Namespace:
    (tmp_path / "data").mkdir(exist_ok=True)
    return build_parser().parse_args([
        "serve", "--data", str(tmp_path / "data"), "--port", "0", "--users",
        str(tmp_path / "users.htpasswd"), "--certs-dir", str(tmp_path / "certs"), *extra])


@pytest.fixture
def serve_site(tmp_path: Path, store: PasswordStore) -> Path:
    store.save(tmp_path / "users.htpasswd")
    generate_dev_certificates(tmp_path / "certs")
    return tmp_path


def serve_login(running: Running, site: Path, user: str, password: str
                ) -> tuple[flight.FlightClient, flight.FlightCallOptions]:
    client = flight.connect(f"grpc+tls://localhost:{running.connection.port}",
                            tls_root_certs=(site / "certs/ca.pem").read_bytes())
    header = client.authenticate_basic_token(user, password, TIMEOUT)
    return client, flight.FlightCallOptions(headers=[header], timeout=10)


def listing(running: Running, site: Path, user: str, password: str) -> list[Any]:
    """A fresh login of ``user`` and the datasets it lists."""
    client, options = serve_login(running, site, user, password)
    with client:
        return list(client.list_flights(options=options))


def test_serve_ends_the_sessions_of_removed_users_and_changed_passwords(
        serve_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``users remove`` and ``users add`` (a new password), picked up by serve's reload:
    the existing sessions end at their next call."""
    running = build_server(serve_args(serve_site))
    users = str(serve_site / "users.htpasswd")
    bob, bob_options = serve_login(running, serve_site, "bob", PASSWORDS["bob"])
    alice, alice_options = serve_login(running, serve_site, "alice", PASSWORDS["alice"])
    try:
        assert list(bob.list_flights(options=bob_options)) == []
        assert main(["users", "remove", "--file", users, "--user", "bob"]) == 0
        monkeypatch.setattr("sys.stdin", io.StringIO("alice's new password\n"))
        assert main(["users", "add", "--file", users, "--user", "alice",
                     "--password-stdin"]) == 0
        running.reload_changed_files()
        for client, options in ((bob, bob_options), (alice, alice_options)):
            with pytest.raises(flight.FlightUnauthenticatedError, match="session ended"):
                list(client.list_flights(options=options))
        assert listing(running, serve_site, "alice", "alice's new password") == []
    finally:
        bob.close()
        alice.close()
        running.close()


def test_serve_session_ttl_sets_the_lifetime_of_session_tokens(serve_site: Path) -> None:
    running = build_server(serve_args(serve_site, "--session-ttl", "120"))
    try:
        client, options = serve_login(running, serve_site, "bob", PASSWORDS["bob"])
        client.close()
        token = bearer_token(options.headers[0])
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 120
    finally:
        running.close()


def test_flight_secure_revoke_ends_sessions_in_serve(serve_site: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    revoked = str(serve_site / "revoked.jsonl")
    running = build_server(serve_args(serve_site, "--revocations", revoked))
    client, bob = serve_login(running, serve_site, "bob", PASSWORDS["bob"])
    one = serve_login(running, serve_site, "alice", PASSWORDS["alice"])[1]
    other = serve_login(running, serve_site, "alice", PASSWORDS["alice"])[1]
    try:
        assert main(["revoke", "--file", revoked, "--user", "bob"]) == 0
        monkeypatch.setattr("sys.stdin", io.StringIO(bearer_token(one.headers[0]) + "\n"))
        assert main(["revoke", "--file", revoked, "--token-stdin"]) == 0
        running.reload_changed_files()
        for options in (bob, one):
            with pytest.raises(flight.FlightUnauthenticatedError, match="invalid token"):
                list(client.list_flights(options=options))
        assert list(client.list_flights(options=other)) == []
        assert eventually(lambda: listing(running, serve_site, "bob", PASSWORDS["bob"])) == []
    finally:
        client.close()
        running.close()


@pytest.mark.parametrize("extra, message", [
    (["--session-ttl", "0"], "--session-ttl needs"),
    (["--auth", "none", "--revocations", "r.jsonl"], "--revocations needs"),
])
def test_serve_refuses_session_options_that_cannot_apply(tmp_path: Path, extra: list[str],
                                                         message: str) -> None:
    args = build_parser().parse_args(["serve", "--data", str(tmp_path), *extra])
    with pytest.raises(Exception, match=message):
        build_server(args)
