"""``flight-secure serve`` as one of several nodes: the options that share a signing
key, Redis, a revocation list URL and a JWKS URL, and reads spread over peers; each
refused when unsafe or when it cannot apply, with one line naming the option.

Servers run in this process (``build_server``); ``tests/test_multi_node.py`` runs
them as separate processes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import wait_until
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
)
from redis_server import RedisServer, redis_or_skip
from serving import write_site

import flight_secure
from flight_secure.auth.tokens import JWTIssuer
from flight_secure.certs import CertificateAuthority
from flight_secure.cli import build_parser, main
from flight_secure.cli.serve import Running, build_server

PASSWORDS = {"alice": "alice's password", "bob": "bob's password"}
TABLE = pa.table({"n": pa.array(range(10), pa.int64()),
                  "s": pa.array([f"row {i}" for i in range(10)])})
TIMEOUT = flight.FlightCallOptions(timeout=10)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """Users, data (``trips``: 10 rows), development certificates and a signing key."""
    return write_site(tmp_path, PASSWORDS, TABLE, row_group_size=3)


def serve_args(site: Path, *extra: str, users: bool = True) -> argparse.Namespace:
    """``serve``'s arguments for ``site`` (with its password file unless ``users`` is
    False) and ``extra``."""
    password_file = ["--users", str(site / "users.htpasswd")] if users else []
    return build_parser().parse_args([
        "serve", "--data", str(site / "data"), "--port", "0", *password_file,
        "--certs-dir", str(site / "certs"), *extra])


def refusal(site: Path, *extra: str) -> str:
    """The one-line error ``serve`` ends with for these options."""
    with pytest.raises(Exception) as refused:
        build_server(serve_args(site, *extra)).close()
    return str(refused.value)


def connect(running: Running, site: Path) -> flight.FlightClient:
    return flight.connect(f"grpc+tls://localhost:{running.connection.port}",
                          tls_root_certs=(site / "certs" / "ca.pem").read_bytes())


def login(running: Running, site: Path, user: str = "alice") -> tuple[bytes, bytes]:
    with connect(running, site) as client:
        return client.authenticate_basic_token(user, PASSWORDS[user], TIMEOUT)


def listed(running: Running, site: Path, header: tuple[bytes, bytes]) -> list[str]:
    with connect(running, site) as client:
        options = flight.FlightCallOptions(headers=[header], timeout=10)
        return [info.descriptor.path[0].decode() for info in client.list_flights(options=options)]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = redis_or_skip(tmp_path)
    yield server
    server.stop()


# ------------------------------------------------------------------ the signing key


def test_keygen_makes_a_key_for_its_owner_alone_and_never_overwrites(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    old = os.umask(0)
    try:
        assert main(["token", "keygen", "--out", str(key)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    assert main(["token", "keygen", "--out", str(key)]) == 1
    assert key.read_bytes() == before


def test_nodes_with_one_signing_key_accept_each_others_session_tokens(site: Path) -> None:
    nodes = [build_server(serve_args(site, "--signing-key", str(site / "session.key")))
             for _ in range(2)]
    alone = build_server(serve_args(site))
    try:
        token = login(nodes[0], site)
        assert listed(nodes[1], site, token) == ["trips"]
        with pytest.raises(flight.FlightUnauthenticatedError, match="invalid token"):
            listed(alone, site, token)
    finally:
        for running in (*nodes, alone):
            running.close()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o660, 0o602])
def test_a_signing_key_other_accounts_may_read_or_write_is_refused(site: Path,
                                                                     mode: int) -> None:
    key = site / "session.key"
    key.chmod(mode)
    message = refusal(site, "--signing-key", str(key))
    assert "--signing-key" in message and ("readable" in message or "writable" in message)


def test_a_signing_key_that_is_not_an_unencrypted_ed25519_key_is_refused(site: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bad = {
        "rsa.pem": (rsa_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                          BestAvailableEncryption(b"x" * 8)), "encrypted"),
        "plain-rsa.pem": (rsa_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                _no_encryption()), "not an Ed25519 key"),
        "cert.pem": ((site / "certs" / "ca.pem").read_bytes(), "holds no PEM private key"),
    }
    for name, (data, expected) in bad.items():
        path = site / name
        path.write_bytes(data)
        path.chmod(0o600)
        assert expected in refusal(site, "--signing-key", str(path))
    assert "no such file" in refusal(site, "--signing-key", str(site / "missing.key"))


def _no_encryption() -> Any:
    from cryptography.hazmat.primitives.serialization import NoEncryption

    return NoEncryption()


@pytest.mark.parametrize("extra, message", [
    (["--auth", "jwt", "--jwt-key", "k.pub", "--signing-key", "s.key"], "--signing-key needs"),
    (["--auth", "mtls", "--redis", "redis://127.0.0.1:1"], "--redis needs"),
    (["--redis", "redis://:secret@127.0.0.1:1/0"], "--redis-password-file, not in the URL"),
    (["--redis-password-file", "pw"], "--redis-password-file needs --redis"),
    (["--revocations", "r.jsonl", "--redis", "redis://127.0.0.1:1"], "one place for"),
    (["--revocations", "r.jsonl", "--revocations-url", "https://x/r"], "one place for"),
    (["--peer", "a=grpc+tls://localhost:1"], "--peer with --auth basic needs --signing-key"),
    (["--peer", "a b=grpc+tls://localhost:1"], "expected NAME=URI"),
    (["--peer", "a=grpc+tls://localhost"], "grpc+tls://HOST:PORT"),
    (["--peer", "a=http://localhost:80"], "grpc+tls://HOST:PORT"),
    (["--revocations-url", "file:///etc/passwd"], "http:// or https://"),
    (["--auth", "jwt", "--jwks-url", "http://x", "--jwks", "j.json"], "not allowed with"),
])
def test_node_options_that_cannot_apply_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
        message: str) -> None:
    (tmp_path / "data").mkdir()
    code = main(["serve", "--data", str(tmp_path / "data"), "--port", "0",
                 "--certs-dir", str(tmp_path / "certs"), *extra])
    error = capsys.readouterr().err
    assert code in (1, 2) and message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "certs").exists()


def test_the_redis_password_is_never_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    (tmp_path / "data").mkdir()
    code = main(["serve", "--data", str(tmp_path / "data"), "--redis",
                 "redis://:hunter2-secret@127.0.0.1:1/0"])
    assert code == 1 and "hunter2-secret" not in capsys.readouterr().err


# --------------------------------------------------------------------------- Redis


def test_redis_that_does_not_answer_at_start_is_named(site: Path, tmp_path: Path) -> None:
    server = redis_or_skip(tmp_path)
    server.stop()
    message = refusal(site, "--redis", server.url)
    assert "--redis" in message and "does not answer" in message


def test_a_redis_password_comes_from_a_file_of_its_owners(site: Path, tmp_path: Path) -> None:
    server = redis_or_skip(tmp_path, password="redis-secret-pw")
    try:
        secret = site / "redis.pw"
        secret.write_text("wrong-password\n")
        secret.chmod(0o600)
        args = ("--redis", server.url, "--redis-password-file", str(secret))
        message = refusal(site, *args)
        assert "does not answer" in message and "wrong-password" not in message
        secret.write_text("redis-secret-pw\n")
        secret.chmod(0o640)
        assert "readable by other accounts" in refusal(site, *args)
        secret.chmod(0o600)
        running = build_server(serve_args(site, *args))
        try:
            assert listed(running, site, login(running, site)) == ["trips"]
        finally:
            running.close()
    finally:
        server.stop()


def test_revoke_in_redis_ends_the_session_on_every_node(
        site: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    options = ("--signing-key", str(site / "session.key"), "--redis", redis_server.url)
    nodes = [build_server(serve_args(site, *options)) for _ in range(2)]
    try:
        alice, bob = login(nodes[0], site), login(nodes[1], site, "bob")
        monkeypatch.setattr("sys.stdin", io.StringIO(alice[1].decode().split()[-1] + "\n"))
        assert main(["revoke", "--redis", redis_server.url, "--token-stdin"]) == 0
        for running in nodes:
            wait_until(lambda r=running: _refused(r, site, alice), 5)
            assert listed(running, site, bob) == ["trips"]
        assert main(["revoke", "--redis", redis_server.url, "--user", "bob"]) == 0
        for running in nodes:
            wait_until(lambda r=running: _refused(r, site, bob), 5)
    finally:
        for running in nodes:
            running.close()


def _refused(running: Running, site: Path, header: tuple[bytes, bytes]) -> bool:
    try:
        listed(running, site, header)
    except flight.FlightUnauthenticatedError:
        return True
    return False


# -------------------------------------------------------------------------- URLs


class Site:
    """An HTTP server on loopback serving documents by path."""

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}
        documents = self.documents

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = documents.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.http.server_address[1]}"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def web() -> Iterator[Site]:
    made = Site()
    yield made
    made.close()


def test_revocations_from_a_url_end_sessions(site: Path, web: Site) -> None:
    web.documents["/revoked.jsonl"] = b""
    running = build_server(serve_args(site, "--revocations-url",
                                      f"{web.base}/revoked.jsonl"))
    try:
        alice = login(running, site)
        assert listed(running, site, alice) == ["trips"]
        entry = {"sub": "alice", "revoked_at": time.time() + 1, "until": None}
        web.documents["/revoked.jsonl"] = json.dumps(entry).encode() + b"\n"
        running.shared.revocations.refresh()  # the 30 s schedule, run now
        assert _refused(running, site, alice)
    finally:
        running.close()


def test_a_revocations_url_that_cannot_be_read_at_start_is_named(site: Path, web: Site
                                                                 ) -> None:
    message = refusal(site, "--revocations-url", f"{web.base}/missing.jsonl")
    assert "--revocations-url" in message and "could not be read" in message


def test_jwt_nodes_take_their_keys_from_an_identity_providers_jwks_url(site: Path,
                                                                       web: Site) -> None:
    key = Ed25519PrivateKey.generate()
    issuer = JWTIssuer(key, "EdDSA", issuer="https://idp.example", key_id="k1", ttl=300)
    web.documents["/jwks.json"] = json.dumps({"keys": [issuer.public_jwk()]}).encode()
    args = serve_args(site, "--auth", "jwt", "--jwks-url", f"{web.base}/jwks.json",
                      "--jwt-issuer", "https://idp.example", users=False)
    nodes = [build_server(args) for _ in range(2)]
    try:
        token = issuer.issue("admin")
        for running in nodes:
            assert listed(running, site, (b"authorization", f"Bearer {token}".encode())) \
                == ["trips"]
    finally:
        for running in nodes:
            running.close()


# -------------------------------------------------------------------- spread reads


@pytest.mark.parametrize("engine", ["python", "arrow"])
def test_get_flight_info_spreads_the_rows_over_the_peers(site: Path, engine: str) -> None:
    key = ("--signing-key", str(site / "session.key"))
    data = [build_server(serve_args(site, *key, "--engine", engine)) for _ in range(3)]
    peers = [f"--peer=node{i}=grpc+tls://localhost:{r.connection.port}"
             for i, r in enumerate(data)]
    front = build_server(serve_args(site, *key, *peers))
    try:
        token = login(front, site)
        options = flight.FlightCallOptions(headers=[token], timeout=10)
        with connect(front, site) as client:
            info = client.get_flight_info(flight.FlightDescriptor.for_path("trips"), options)
        assert info.total_records == 10
        assert [e.locations[0].uri.decode() for e in info.endpoints] == [
            f"grpc+tls://localhost:{r.connection.port}" for r in data]
        parts = []
        for endpoint in info.endpoints:
            with flight.connect(endpoint.locations[0],
                                tls_root_certs=(site / "certs/ca.pem").read_bytes()) as node:
                parts.append(node.do_get(endpoint.ticket, options).read_all())
        assert [part.num_rows for part in parts] == [3, 3, 4]
        assert pa.concat_tables(parts).equals(TABLE)
    finally:
        for running in (front, *data):
            running.close()


@pytest.mark.parametrize("ticket, error, message", [
    (b"trips/0/2/11", flight_secure.FlightUnavailableError, "has 10 rows here, not 11"),
    (b"trips/2/2/10", flight_secure.FlightInvalidArgumentError, "no such part"),
    (b"trips/x/2/10", flight_secure.FlightInvalidArgumentError, "invalid dataset name"),
    (b"../trips/0/1/10", flight_secure.FlightInvalidArgumentError, "invalid dataset name"),
    (b"missing/0/1/10", flight_secure.FlightNotFoundError, "no dataset named"),
])
def test_part_tickets_that_do_not_fit_are_refused(site: Path, ticket: bytes,
                                                  error: type[Exception], message: str) -> None:
    running = build_server(serve_args(site))
    try:
        with flight_secure.connect(f"grpc+tls://localhost:{running.connection.port}",
                                   tls_root_certs=(site / "certs/ca.pem").read_bytes()
                                   ) as client:
            header = client.authenticate_basic_token("alice", PASSWORDS["alice"])
            options = flight_secure.FlightCallOptions(headers=[header], timeout=10)
            with pytest.raises(error, match=message):
                client.do_get(flight_secure.Ticket(ticket), options).read_all()
    finally:
        running.close()


# ---------------------------------------------------------- certificate rotation


def test_a_replaced_certificate_is_served_to_new_connections_without_a_restart(
        site: Path) -> None:
    """An external issuer replaces the node's pair (write aside, rename over): new
    connections get the new certificate; the node is not restarted."""
    old, new = CertificateAuthority.create(), CertificateAuthority.create()
    cert, key = site / "tls.crt", site / "tls.key"
    old.issue_server().write(cert, key)
    running = build_server(serve_args(site, "--tls-cert", str(cert), "--tls-key", str(key)))
    try:
        def reads(ca: CertificateAuthority) -> bool:
            try:
                with flight.connect(f"grpc+tls://localhost:{running.connection.port}",
                                    tls_root_certs=ca.cert_pem) as client:
                    client.authenticate_basic_token("alice", PASSWORDS["alice"], TIMEOUT)
            except flight.FlightError:  # the TLS handshake failed: another certificate
                return False
            return True

        assert reads(old) and not reads(new)
        new.issue_server().write(cert, key)
        wait_until(lambda: reads(new), 10)
        assert not reads(old)
    finally:
        running.close()
