"""Many clients with distinct identities at once: every call sees exactly its own caller.

The server runs on both engines (the ``engine`` fixture).
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from identity_server import RPCS, IdentityServer, seen_identity

import flight_secure as flight
from flight_secure.auth import (
    BasicClientAuthHandler,
    BasicServerAuthHandler,
    JWTIssuer,
    JWTVerifier,
    PasswordStore,
)

CLIENTS_PER_KIND = 8
CALLS_PER_CLIENT = 50


def test_concurrent_clients_each_see_only_their_own_identity(engine):
    key = Ed25519PrivateKey.generate()
    issuer = JWTIssuer(key, issuer="https://idp.test")
    verifier = JWTVerifier(key.public_key(), ["EdDSA"], issuer="https://idp.test")
    store = PasswordStore(rounds=4)
    names = {kind: [f"{kind}-{i}" for i in range(CLIENTS_PER_KIND)]
             for kind in ("basic-handshake", "basic-header", "jwt-token-bin", "jwt-bearer")}
    for user in (u for users in names.values() for u in users):
        store.add(user, f"pw of {user}")
    handler = BasicServerAuthHandler(store, issuer, verifier)

    def log_in(kind: str, user: str, client: flight.FlightClient) -> flight.FlightCallOptions:
        """Authenticate ``client`` as ``user`` the ``kind`` way; the options for its calls."""
        if kind == "basic-handshake":
            client.authenticate(BasicClientAuthHandler(user, f"pw of {user}"))
            return flight.FlightCallOptions()
        if kind == "basic-header":
            pair = client.authenticate_basic_token(user, f"pw of {user}")
            return flight.FlightCallOptions(headers=[pair])
        # A session token of the handler's own, presented without a handshake.
        token = issuer.issue(user, credential=store.fingerprint(user)).encode()
        header = (b"auth-token-bin", token) if kind == "jwt-token-bin" \
            else (b"authorization", b"Bearer " + token)
        return flight.FlightCallOptions(headers=[header])

    start = threading.Barrier(CLIENTS_PER_KIND * len(names))  # all 32 call at once

    def session(kind: str, user: str, seed: int) -> list[tuple[str, str, bytes]]:
        """Log in, wait for everyone, make the calls; returns every mismatch seen."""
        order = random.Random(seed)
        wrong = []
        with flight.connect(f"grpc://localhost:{server.port}") as client:
            options = log_in(kind, user, client)
            start.wait(timeout=30)
            for _ in range(CALLS_PER_CLIENT):
                rpc = order.choice(RPCS)
                seen = seen_identity(client, rpc, options)
                if seen != user.encode():
                    wrong.append((user, rpc, seen))
        return wrong

    people = [(kind, user) for kind, users in names.items() for user in users]
    try:
        with engine.running(IdentityServer, auth_handler=handler) as server, \
                ThreadPoolExecutor(max_workers=len(people)) as pool:
            futures = [pool.submit(session, kind, user, seed)
                       for seed, (kind, user) in enumerate(people)]
            mismatches = [m for future in futures for m in future.result(timeout=60)]
    finally:
        handler.close()
    assert mismatches == []
    assert len(people) == 32
