"""Specification of the cache of verified tokens: a token costs one signature check,
then a lookup per call, and nothing that changed since is ever missed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import flight_secure as flight
from flight_secure.auth.base import CallCredentials
from flight_secure.auth.basic import BasicServerAuthHandler
from flight_secure.auth.cache import TokenCache
from flight_secure.auth.jwt_auth import JWTServerAuthHandler
from flight_secure.auth.passwords import PasswordStore
from flight_secure.auth.tokens import Claims, JWTIssuer, JWTVerifier, RevocationList
from flight_secure.types import FlightMethod


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingVerifier(JWTVerifier):
    """A real verifier that counts the tokens it was asked to verify."""

    verified = 0

    def verify(self, token: str | bytes) -> Claims:
        self.verified += 1
        return super().verify(token)


def bearer_call(token: str) -> CallCredentials:
    return CallCredentials.from_values(FlightMethod.DO_ACTION,
                                       [("authorization", f"Bearer {token}")],
                                       "ipv4:127.0.0.1:5000")


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


# ----------------------------------------------------------------- TokenCache


def test_an_entry_lives_until_it_expires() -> None:
    clock = Clock()
    cache: TokenCache[str] = TokenCache(8, clock)
    cache.put("a.b.c", "claims", expires_at=1010)
    assert cache.get("a.b.c") == "claims"
    clock.now = 1010
    assert cache.get("a.b.c") is None
    assert len(cache) == 0


def test_the_least_recently_used_entry_goes_first() -> None:
    cache: TokenCache[int] = TokenCache(2, Clock())
    cache.put("one", 1, 2000)
    cache.put("two", 2, 2000)
    assert cache.get("one") == 1
    cache.put("three", 3, 2000)
    assert (cache.get("one"), cache.get("two"), cache.get("three")) == (1, None, 3)


def test_size_zero_keeps_nothing_and_bad_sizes_are_refused() -> None:
    cache: TokenCache[int] = TokenCache(0)
    cache.put("t", 1, time.time() + 60)
    assert cache.get("t") is None
    for size in (-1, 1.5, "8"):
        with pytest.raises(ValueError, match="cache size"):
            TokenCache(size)  # type: ignore[arg-type]


def test_the_cache_never_holds_the_token(key: Ed25519PrivateKey) -> None:
    token = JWTIssuer(key, "EdDSA").issue("alice")
    cache: TokenCache[str] = TokenCache(4)
    cache.put(token, "claims", time.time() + 60)
    assert token.encode() not in repr(vars(cache)).encode()
    assert all(part not in repr(vars(cache)) for part in token.split("."))


# -------------------------------------------------------- the handler's cache


def test_a_token_is_verified_once_then_looked_up(key: Ed25519PrivateKey) -> None:
    verifier = CountingVerifier(key.public_key(), ["EdDSA"])
    handler = JWTServerAuthHandler(verifier)
    token = JWTIssuer(key, "EdDSA").issue("alice", roles=["reader"])
    principals = [handler.authenticate_call(bearer_call(token)) for _ in range(100)]
    assert verifier.verified == 1
    assert {p.name for p in principals} == {"alice"}
    assert principals[0].roles == {"reader"}


def test_a_cached_token_revoked_later_is_refused(key: Ed25519PrivateKey) -> None:
    revoked = RevocationList()
    handler = JWTServerAuthHandler(JWTVerifier(key.public_key(), ["EdDSA"], revoked=revoked))
    token = JWTIssuer(key, "EdDSA").issue("alice")
    claims = handler.authenticate_call(bearer_call(token)).claims
    revoked.revoke(claims["jti"], until=claims["exp"])
    with pytest.raises(flight.FlightUnauthenticatedError, match="invalid token"):
        handler.authenticate_call(bearer_call(token))


def test_a_cached_token_is_refused_once_it_expires(key: Ed25519PrivateKey) -> None:
    handler = JWTServerAuthHandler(JWTVerifier(key.public_key(), ["EdDSA"], leeway=0))
    token = JWTIssuer(key, "EdDSA", ttl=2).issue("alice")
    assert handler.authenticate_call(bearer_call(token)).name == "alice"
    deadline = time.monotonic() + 10
    while True:  # a retry with a deadline: the token's exp is on the wall clock
        try:
            handler.authenticate_call(bearer_call(token))
        except flight.FlightUnauthenticatedError as exc:
            assert "expired" in str(exc)
            break
        assert time.monotonic() < deadline, "an expired token was still admitted"
        time.sleep(0.05)


def test_a_cached_token_whose_key_was_withdrawn_is_refused(
        key: Ed25519PrivateKey, tmp_path: Path) -> None:
    old = JWTIssuer(key, "EdDSA", key_id="old")
    new = JWTIssuer(Ed25519PrivateKey.generate(), "EdDSA", key_id="new")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [old.public_jwk(), new.public_jwk()]}))
    clock = Clock()
    handler = JWTServerAuthHandler(JWTVerifier.from_jwks_file(
        jwks, ["EdDSA"], jwks_refresh_interval=60, min_refresh_interval=0, clock=clock))
    token = old.issue("alice")
    assert handler.authenticate_call(bearer_call(token)).name == "alice"
    jwks.write_text(json.dumps({"keys": [new.public_jwk()]}))
    clock.now += 61
    with pytest.raises(flight.FlightUnauthenticatedError, match="invalid token"):
        handler.authenticate_call(bearer_call(token))


def test_the_handlers_cache_is_bounded(key: Ed25519PrivateKey) -> None:
    verifier = CountingVerifier(key.public_key(), ["EdDSA"], cache_size=0)
    handler = JWTServerAuthHandler(verifier, cache_size=2)
    issuer = JWTIssuer(key, "EdDSA")
    tokens = [issuer.issue(f"user{n}") for n in range(3)]
    for token in tokens + tokens[:1]:
        handler.authenticate_call(bearer_call(token))
    assert verifier.verified == 4  # the first token had been evicted by the third


def test_role_changes_apply_to_cached_session_tokens() -> None:
    store = PasswordStore(rounds=4)
    store.add("alice", "alice's password")
    roles = {"alice": ["reader"]}
    handler = BasicServerAuthHandler(store, roles=roles)
    try:
        login = CallCredentials.from_values(FlightMethod.HANDSHAKE, (), "ipv4:127.0.0.1:1")
        token = handler.issue_token("alice", "alice's password", login)
        assert handler.authenticate_call(bearer_call(token)).roles == {"reader"}
        roles["alice"] = ["reader", "writer"]
        assert handler.authenticate_call(bearer_call(token)).roles == {"reader", "writer"}
        del roles["alice"]
        assert handler.authenticate_call(bearer_call(token)).roles == frozenset()
    finally:
        handler.close()


class Whoami(flight.FlightServerBase):
    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        yield context.peer_identity()


def test_over_grpc_a_revoked_session_ends_at_the_next_call(key: Ed25519PrivateKey) -> None:
    revoked = RevocationList()
    verifier = CountingVerifier(key.public_key(), ["EdDSA"], revoked=revoked)
    handler = JWTServerAuthHandler(verifier)
    token = JWTIssuer(key, "EdDSA").issue("alice")
    options = flight.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {token}".encode())], timeout=10)
    with Whoami(location="grpc://localhost:0", auth_handler=handler) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client:
        for _ in range(20):
            assert next(iter(client.do_action("w", options))).body.to_pybytes() == b"alice"
        assert verifier.verified == 1
        jti = verifier.verify(token)["jti"]
        revoked.revoke(jti)
        with pytest.raises(flight.FlightUnauthenticatedError, match="invalid token"):
            list(client.do_action("w", options))
