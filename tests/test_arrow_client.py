"""Specification of flight_secure's client handlers on pyarrow.flight's client.

``flight_secure.arrow.connect`` and ``ClientAuth`` log a ``pyarrow.flight.FlightClient``
in with ``BasicClientAuthHandler`` or ``JWTClientAuthHandler`` and renew its JWT
before it expires, against servers on both engines (the ``engine`` fixture).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pyarrow.flight as pa_flight
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import flight_secure.session
from flight_secure.arrow import ClientAuth, connect, principal
from flight_secure.auth import (
    BasicClientAuthHandler,
    BasicServerAuthHandler,
    JWTClientAuthHandler,
    JWTIssuer,
    JWTServerAuthHandler,
    JWTVerifier,
    PasswordStore,
)

ISS = "https://idp.test"
PASSWORD = "kim's password"
TIMEOUT = pa_flight.FlightCallOptions(timeout=10)


class WhoServer:
    """DoAction answers with the caller's identity, then the token id it presented."""

    def do_action(self, context, action):
        caller = principal(context)
        yield caller.identity
        yield str(caller.claims.get("jti", "")).encode()


def whoami(client: pa_flight.FlightClient) -> tuple[bytes, str]:
    who, jti = (r.body.to_pybytes() for r in client.do_action("whoami", TIMEOUT))
    return who, jti.decode()


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def store() -> PasswordStore:
    made = PasswordStore(rounds=4)
    made.add("kim", PASSWORD)
    return made


@pytest.fixture
def basic(engine, store) -> Iterator[Any]:
    handler = BasicServerAuthHandler(store, token_ttl=3)
    with engine.running(WhoServer, auth_handler=handler) as server:
        yield server
    handler.close()


def location(server: Any) -> str:
    return f"grpc://localhost:{server.port}"


def test_connect_logs_a_pyarrow_client_in_with_our_basic_handler(basic):
    with connect(location(basic), BasicClientAuthHandler("kim", PASSWORD)) as client:
        assert isinstance(client, pa_flight.FlightClient)
        assert whoami(client)[0] == b"kim"
    with pytest.raises(pa_flight.FlightUnauthenticatedError, match="invalid username"):
        connect(location(basic), BasicClientAuthHandler("kim", "wrong"))


def test_client_auth_wraps_our_jwt_handler_for_a_client_made_elsewhere(engine, key):
    handler = JWTServerAuthHandler(JWTVerifier(key.public_key(), ["EdDSA"], issuer=ISS))
    token = JWTIssuer(key, issuer=ISS).issue("lee")
    with engine.running(WhoServer, auth_handler=handler) as server, \
            pa_flight.connect(location(server)) as client:
        auth = ClientAuth(JWTClientAuthHandler(token))
        client.authenticate(auth, TIMEOUT)
        assert whoami(client) == (b"lee", jwt.decode(token, options={"verify_signature": False})
                                  ["jti"])
        assert token not in repr(auth)
        forged = JWTIssuer(Ed25519PrivateKey.generate(), issuer=ISS).issue("lee")
        with pytest.raises(pa_flight.FlightUnauthenticatedError):
            client.authenticate(ClientAuth(JWTClientAuthHandler(forged)), TIMEOUT)


def calls_past(client: pa_flight.FlightClient, deadline_epoch: float) -> list[tuple[bytes, str]]:
    """Call until half a second after ``deadline_epoch``; every answer seen."""
    answers = []
    pace = threading.Event()
    limit = time.monotonic() + 20
    while time.time() < deadline_epoch + 0.5:
        assert time.monotonic() < limit
        answers.append(whoami(client))
        pace.wait(0.05)
    return answers


def strict_jwt(key: Ed25519PrivateKey) -> JWTServerAuthHandler:
    """A handler for ``key``'s EdDSA tokens that allows no leeway past their expiry."""
    return JWTServerAuthHandler(JWTVerifier(key.public_key(), ["EdDSA"], issuer=ISS, leeway=0))


def short_lived_tokens(key: Ed25519PrivateKey,
                       subject: str) -> tuple[list[str], Callable[[], str]]:
    """A token source minting 3-second tokens for ``subject``, and the list of those it minted."""
    issuer = JWTIssuer(key, issuer=ISS, ttl=3)
    issued: list[str] = []

    def fresh_token() -> str:
        issued.append(issuer.issue(subject))
        return issued[-1]

    return issued, fresh_token


def test_a_basic_session_is_renewed_before_its_token_expires(basic, monkeypatch):
    monkeypatch.setattr(flight_secure.session, "TOKEN_REFRESH_MARGIN", 2.0)
    login = BasicClientAuthHandler("kim", PASSWORD)
    with connect(location(basic), login) as client:
        first = jwt.decode(login.get_token(), options={"verify_signature": False})
        answers = calls_past(client, first["exp"])
    assert {who for who, _ in answers} == {b"kim"}
    assert answers[0][1] == first["jti"] != answers[-1][1]


def test_a_jwt_is_taken_afresh_from_its_source_before_it_expires(engine, key, monkeypatch):
    monkeypatch.setattr(flight_secure.session, "TOKEN_REFRESH_MARGIN", 2.0)
    issued, fresh_token = short_lived_tokens(key, "mo")
    with engine.running(WhoServer, auth_handler=strict_jwt(key)) as server, \
            connect(location(server), JWTClientAuthHandler(fresh_token)) as client:
        first = jwt.decode(issued[0], options={"verify_signature": False})
        answers = calls_past(client, first["exp"])
    assert {who for who, _ in answers} == {b"mo"}
    assert len(issued) >= 2
    assert answers[-1][1] == jwt.decode(issued[-1], options={"verify_signature": False})["jti"]


def test_a_failed_renewal_reaches_the_call_that_tried_and_the_old_token_goes_on(
        engine, key, monkeypatch):
    monkeypatch.setattr(flight_secure.session, "TOKEN_REFRESH_MARGIN", 2.0)
    monkeypatch.setattr(flight_secure.session, "REFRESH_RETRY", 60.0)
    first_token = JWTIssuer(key, issuer=ISS, ttl=3).issue("nell")
    forged = JWTIssuer(Ed25519PrivateKey.generate(), issuer=ISS).issue("nell")
    tokens = iter([first_token, forged])
    with engine.running(WhoServer, auth_handler=strict_jwt(key)) as server, \
            connect(location(server), JWTClientAuthHandler(lambda: next(tokens))) as client:
        first = whoami(client)
        due = flight_secure.session.refresh_time(first_token.encode(), time.time())
        while time.time() < due:
            threading.Event().wait(0.05)
        with pytest.raises(pa_flight.FlightUnauthenticatedError):
            whoami(client)  # its renewal presented the forged token
        assert whoami(client) == first  # the old token, still valid, until the retry


def test_threads_sharing_a_client_renew_its_token_once(engine, key, monkeypatch):
    monkeypatch.setattr(flight_secure.session, "TOKEN_REFRESH_MARGIN", 2.0)
    issued, fresh_token = short_lived_tokens(key, "ola")
    with engine.running(WhoServer, auth_handler=strict_jwt(key)) as server, \
            connect(location(server), JWTClientAuthHandler(fresh_token)) as client:
        expiry = jwt.decode(issued[0], options={"verify_signature": False})["exp"]
        seen: list[list[tuple[bytes, str]]] = []
        threads = [threading.Thread(target=lambda: seen.append(calls_past(client, expiry)))
                   for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert len(seen) == 6 and all(who == b"ola" for answers in seen for who, _ in answers)
    assert len(issued) == 2  # the first token and one renewal, whichever thread made it
