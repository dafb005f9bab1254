"""Specification of tokens bound to a client certificate (RFC 8705 ``cnf``), wherever
they are presented.

A bound token is worth something only over a connection with its certificate: a
plain JWT or Basic handler refuses it (UNAUTHENTICATED, saying why) on a connection
without a certificate, on pyarrow's engine (which cannot show Python the
certificate), and over another certificate; over its own certificate, where the
server can see it, it is accepted. Servers run on both engines (``engine``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from conftest import Engine
from cryptography.hazmat.primitives.asymmetric import ed25519
from tls_helpers import TIMEOUT, Pki, who_is

from flight_secure.arrow import principal
from flight_secure.auth import (
    BasicServerAuthHandler,
    JWTIssuer,
    JWTServerAuthHandler,
    JWTVerifier,
    PasswordStore,
)
from flight_secure.auth.basic import CREDENTIAL_CLAIM
from flight_secure.auth.binding import binding_claims

CARRIERS = ("authorization", "auth-token-bin")


class Who:
    """DoGet answers with one row: the caller's name, as either engine's server saw it."""

    flight: Any

    def do_get(self, context: Any, ticket: Any) -> Any:
        return self.flight.RecordBatchStream(pa.table({"who": [principal(context).name]}))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"), clients=("alice", "bob"))


@pytest.fixture(scope="module")
def signing() -> tuple[JWTIssuer, JWTVerifier]:
    key = ed25519.Ed25519PrivateKey.generate()
    return JWTIssuer(key, "EdDSA"), JWTVerifier(key.public_key(), ["EdDSA"])


def headers(token: str, carrier: str) -> list[tuple[bytes, bytes]]:
    if carrier == "authorization":
        return [(b"authorization", f"Bearer {token}".encode())]
    return [(b"auth-token-bin", token.encode())]


@contextlib.contextmanager
def served(engine: Engine, pki: Pki, handler: Any, *, mtls: bool) -> Iterator[Any]:
    """A TLS server on ``engine`` that names its caller; ``mtls``: client certificates
    from ``pki`` are required and verified."""
    options = pki.mtls_server(engine.flight) if mtls else pki.tls_server(engine.flight)
    with engine.running(Who, auth_handler=handler, **options) as server:
        yield server


def refusal(pki: Pki, server: Any, token: str, carrier: str, client: str | None) -> str:
    """The UNAUTHENTICATED message ``token`` gets over a connection presenting ``client``."""
    with pki.connect(pa_flight, server, client) as connection, \
            pytest.raises(pa_flight.FlightUnauthenticatedError) as refused:
        who_is(connection, headers(token, carrier))
    return str(refused.value)


@pytest.mark.parametrize("carrier", CARRIERS)
def test_a_bound_token_is_refused_on_a_connection_without_a_certificate(
        engine: Engine, pki: Pki, signing: tuple[JWTIssuer, JWTVerifier], carrier: str) -> None:
    issuer, verifier = signing
    bound = issuer.issue("alice", **binding_claims(pki.client("alice")["cert_chain"]))
    with served(engine, pki, JWTServerAuthHandler(verifier), mtls=False) as server:
        with pki.connect(pa_flight, server) as connection:
            assert who_is(connection, headers(issuer.issue("alice"), carrier)) == "alice"
        assert "bound to a client certificate" in refusal(pki, server, bound, carrier, None)


def test_a_key_bound_token_is_refused_as_a_binding_that_cannot_be_checked(
        engine: Engine, pki: Pki, signing: tuple[JWTIssuer, JWTVerifier]) -> None:
    issuer, verifier = signing
    bound = issuer.issue("alice", cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
    with served(engine, pki, JWTServerAuthHandler(verifier), mtls=True) as server:
        assert "cannot check" in refusal(pki, server, bound, "authorization", "alice")


def test_over_its_own_certificate_a_bound_token_passes_where_the_server_sees_it(
        engine: Engine, pki: Pki, signing: tuple[JWTIssuer, JWTVerifier]) -> None:
    issuer, verifier = signing
    bound = issuer.issue("alice", **binding_claims(pki.client("alice")["cert_chain"]))
    with served(engine, pki, JWTServerAuthHandler(verifier), mtls=True) as server:
        if engine.sees_certificates:
            with pki.connect(pa_flight, server, "alice") as alice:
                assert who_is(alice, headers(bound, "authorization")) == "alice"
            assert "another client certificate" in refusal(pki, server, bound,
                                                           "authorization", "bob")
        else:  # pyarrow's engine verified alice's certificate, but cannot show it
            assert "cannot see" in refusal(pki, server, bound, "authorization", "alice")


def test_a_bound_token_in_the_handshake_is_refused_without_its_certificate(
        engine: Engine, pki: Pki, signing: tuple[JWTIssuer, JWTVerifier]) -> None:
    issuer, verifier = signing
    bound = issuer.issue("alice", **binding_claims(pki.client("alice")["cert_chain"]))
    with served(engine, pki, JWTServerAuthHandler(verifier), mtls=False) as server, \
            pki.connect(pa_flight, server) as connection, \
            pytest.raises(pa_flight.FlightUnauthenticatedError, match="bound to a client"):
        connection.authenticate(_Token(bound), pa_flight.FlightCallOptions(timeout=TIMEOUT))


class _Token(pa_flight.ClientAuthHandler):
    """Sends a JWT as the Handshake payload."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token.encode()

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        outgoing.write(self.token)
        incoming.read()

    def get_token(self) -> bytes:
        return self.token


def test_a_bound_basic_session_token_is_refused_without_its_certificate(
        engine: Engine, pki: Pki, signing: tuple[JWTIssuer, JWTVerifier]) -> None:
    issuer, verifier = signing
    store = PasswordStore(rounds=4)
    store.add("alice", "alice-pw")
    handler = BasicServerAuthHandler(store, issuer, verifier)
    session = {CREDENTIAL_CLAIM: store.fingerprint("alice")}
    bound = issuer.issue("alice", **binding_claims(pki.client("alice")["cert_chain"]),
                         **session)
    try:
        with served(engine, pki, handler, mtls=False) as server:
            with pki.connect(pa_flight, server) as connection:
                unbound = issuer.issue("alice", **session)
                assert who_is(connection, headers(unbound, "authorization")) == "alice"
            assert "bound to a client certificate" in refusal(pki, server, bound,
                                                              "authorization", None)
    finally:
        handler.close()
