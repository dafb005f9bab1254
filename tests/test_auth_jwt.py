"""Specification of JWTServerAuthHandler / JWTClientAuthHandler over real gRPC.

Servers run on both engines (the ``engine`` fixture); clients are flight_secure's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

import flight_secure as flight
import flight_secure.session
from flight_secure.arrow import principal
from flight_secure.auth import (
    JWTClientAuthHandler,
    JWTIssuer,
    JWTServerAuthHandler,
    JWTVerifier,
    RevocationList,
)

ISS = "https://idp.test"
AUD = "flight"
CARRIERS = ("handshake", "auth-token-bin", "bearer")


class WhoServer:
    """DoAction answers with the caller's identity, then the token id it presented."""

    def do_action(self, context, action):
        caller = principal(context)
        yield caller.identity
        yield str(caller.claims.get("jti", "")).encode()


def whoami(client: flight.FlightClient,
           options: flight.FlightCallOptions | None = None) -> tuple[bytes, str]:
    who, jti = (r.body.to_pybytes() for r in client.do_action("whoami", options))
    return who, jti.decode()


def call_with(client: flight.FlightClient, carrier: str, token: str) -> bytes:
    """Present ``token`` the way ``carrier`` says and return the identity the server saw."""
    if carrier == "handshake":
        client.authenticate(JWTClientAuthHandler(token))
        return whoami(client)[0]
    header = (b"auth-token-bin", token.encode()) if carrier == "auth-token-bin" \
        else (b"authorization", f"Bearer {token}".encode())
    return whoami(client, flight.FlightCallOptions(headers=[header]))[0]


@dataclass
class Provider:
    """An identity provider (signing key) and a Flight server that trusts it."""

    algorithm: str
    key: Any
    issuer: JWTIssuer
    revoked: RevocationList
    server: Any

    def sign(self, **changes: Any) -> str:
        """A token signed with the provider's key, with ``changes`` to its claims."""
        now = int(time.time())
        claims = {"sub": "erin", "iss": ISS, "aud": AUD, "iat": now, "nbf": now,
                  "exp": now + 300, **changes}
        return jwt.encode(claims, self.key, algorithm=self.algorithm)

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _new_key(algorithm: str) -> Any:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module", params=["EdDSA", "RS256"])
def provider(request, engine) -> Iterator[Provider]:
    key = _new_key(request.param)
    revoked = RevocationList()
    verifier = JWTVerifier(key.public_key(), [request.param], issuer=ISS, audience=AUD,
                           leeway=5, revoked=revoked)
    issuer = JWTIssuer(key, request.param, issuer=ISS, audience=AUD)
    with engine.running(WhoServer, auth_handler=JWTServerAuthHandler(verifier)) as server:
        yield Provider(request.param, key, issuer, revoked, server)


def connect(server) -> flight.FlightClient:
    return flight.connect(f"grpc://localhost:{server.port}")


def _hmac_token(secret: bytes, claims: dict[str, Any]) -> str:
    """An HS256 token made by hand: PyJWT itself refuses a PEM key as HMAC secret."""
    def part(data: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

    signing_input = part({"alg": "HS256", "typ": "JWT"}) + b"." + part(claims)
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def _tampered(token: str) -> str:
    head, body, signature = token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return f"{head}.{body}.{signature[:middle]}{flipped}{signature[middle + 1:]}"


ATTACKS: dict[str, Callable[[Provider], str]] = {
    "alg none": lambda p: jwt.encode(jwt.decode(p.sign(), options={"verify_signature": False}),
                                     None, algorithm="none"),
    "public key as HMAC secret": lambda p: _hmac_token(
        p.public_pem(), jwt.decode(p.sign(), options={"verify_signature": False})),
    "bad signature": lambda p: _tampered(p.sign()),
    "foreign key": lambda p: jwt.encode(
        jwt.decode(p.sign(), options={"verify_signature": False}),
        _new_key(p.algorithm), algorithm=p.algorithm),
    "expired": lambda p: p.sign(exp=int(time.time()) - 120),
    "nbf in future": lambda p: p.sign(nbf=int(time.time()) + 3600),
    "wrong aud": lambda p: p.sign(aud="someone-else"),
    "wrong iss": lambda p: p.sign(iss="https://evil.test"),
    "no sub": lambda p: jwt.encode(
        {k: v for k, v in jwt.decode(p.sign(), options={"verify_signature": False}).items()
         if k != "sub"}, p.key, algorithm=p.algorithm),
}


@pytest.mark.parametrize("carrier", CARRIERS)
def test_valid_token_identifies_the_caller(provider, carrier):
    with connect(provider.server) as client:
        assert call_with(client, carrier, provider.issuer.issue("erin")) == b"erin"


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_is_unauthenticated(provider, attack, carrier):
    token = ATTACKS[attack](provider)
    with connect(provider.server) as client:
        with pytest.raises(flight.FlightUnauthenticatedError) as caught:
            call_with(client, carrier, token)
        assert token.split(".")[1] not in str(caught.value)
        if carrier == "handshake":  # the refused handshake left no usable session behind
            with pytest.raises(flight.FlightUnauthenticatedError):
                whoami(client)


def test_revoked_token_is_refused_even_after_it_was_accepted(provider):
    token = provider.issuer.issue("erin")
    options = flight.FlightCallOptions(headers=[(b"auth-token-bin", token.encode())])
    with connect(provider.server) as client:
        assert whoami(client, options)[0] == b"erin"
        provider.revoked.revoke(jwt.decode(token, options={"verify_signature": False})["jti"])
        with pytest.raises(flight.FlightUnauthenticatedError):
            whoami(client, options)


def test_handshake_reply_echoes_the_token(provider):
    token = provider.issuer.issue("erin")
    handler = JWTClientAuthHandler(token)
    with connect(provider.server) as client:
        client.authenticate(handler)
    assert handler.get_token() == token.encode()
    assert token not in repr(handler)


def test_identity_claim_is_configurable(engine):
    key = ed25519.Ed25519PrivateKey.generate()
    verifier = JWTVerifier(key.public_key(), ["EdDSA"])
    handler = JWTServerAuthHandler(verifier, identity_claim="email")
    token = JWTIssuer(key).issue("user-123", email="frank@example.test")
    with engine.running(WhoServer, auth_handler=handler) as server, connect(server) as client:
        assert call_with(client, "bearer", token) == b"frank@example.test"
        with pytest.raises(flight.FlightUnauthenticatedError):
            call_with(client, "bearer", JWTIssuer(key).issue("user-456"))


class JWKSEndpoint:
    """A JWKS document served over real HTTP on 127.0.0.1, replaceable at run time."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.document = {"keys": keys}
        self.fetches = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(endpoint.document).encode()
                endpoint.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def test_jwks_key_rotation_under_a_running_server(engine):
    old = JWTIssuer(ed25519.Ed25519PrivateKey.generate(), issuer=ISS, key_id="k1")
    new = JWTIssuer(ed25519.Ed25519PrivateKey.generate(), issuer=ISS, key_id="k2")
    endpoint = JWKSEndpoint([old.public_jwk()])
    try:
        verifier = JWTVerifier.from_jwks_url(endpoint.url, ["EdDSA"], issuer=ISS,
                                             min_refresh_interval=0)
        with engine.running(WhoServer, auth_handler=JWTServerAuthHandler(verifier)) as server, \
                connect(server) as client:
            assert call_with(client, "bearer", old.issue("gina")) == b"gina"
            with pytest.raises(flight.FlightUnauthenticatedError):
                call_with(client, "bearer", new.issue("gina"))
            endpoint.document = {"keys": [new.public_jwk()]}
            fetches = endpoint.fetches
            assert call_with(client, "bearer", new.issue("hank")) == b"hank"
            assert endpoint.fetches > fetches
            with pytest.raises(flight.FlightUnauthenticatedError):
                call_with(client, "bearer", old.issue("gina"))
    finally:
        endpoint.close()


def test_client_handshakes_again_before_the_token_expires(engine, monkeypatch):
    monkeypatch.setattr(flight_secure.session, "TOKEN_REFRESH_MARGIN", 2.0)
    key = ed25519.Ed25519PrivateKey.generate()
    short = JWTIssuer(key, issuer=ISS, ttl=3)
    issued: list[str] = []

    def fresh_token() -> str:
        issued.append(short.issue("ivy"))
        return issued[-1]

    verifier = JWTVerifier(key.public_key(), ["EdDSA"], issuer=ISS, leeway=0)
    with engine.running(WhoServer, auth_handler=JWTServerAuthHandler(verifier)) as server, \
            connect(server) as client:
        client.authenticate(JWTClientAuthHandler(fresh_token))
        first = jwt.decode(issued[0], options={"verify_signature": False})
        pace = threading.Event()
        deadline = time.monotonic() + 15
        while time.time() < first["exp"] + 0.5:  # calls go on past the first token's expiry
            assert time.monotonic() < deadline
            who, jti = whoami(client)
            assert who == b"ivy"
            pace.wait(0.05)
    assert len(issued) >= 2
    assert jti != first["jti"]
    assert jti == jwt.decode(issued[-1], options={"verify_signature": False})["jti"]


def test_token_in_call_options_overrides_the_session_token(provider):
    """A call that brings its own auth-token-bin is judged by that token, not the session's."""
    with connect(provider.server) as client:
        client.authenticate(JWTClientAuthHandler(provider.issuer.issue("alice")))
        own = flight.FlightCallOptions(
            headers=[(b"auth-token-bin", provider.issuer.issue("bob").encode())]
        )
        assert whoami(client)[0] == b"alice"
        assert whoami(client, own)[0] == b"bob"
