"""Atheris harness: what the server makes of a call's auth headers.

The input becomes the headers of one call, as gRPC would deliver them (printable
ASCII text for ``authorization``, raw bytes for ``auth-token-bin``), and goes
through the parsing and the handlers that read them. Properties:

* ``CallCredentials.basic_credentials`` returns None or a (user, password) pair, or
  raises ValueError; ``bearer_token`` and ``auth_token`` never raise;
* ``JWTVerifier.verify`` raises nothing but a ``TokenError``;
* ``JWTServerAuthHandler.authenticate_call`` and ``is_valid`` and
  ``BasicServerAuthHandler.authenticate_headers`` admit no one (there is no valid
  credential to guess) and raise nothing but ``FlightUnauthenticatedError``.

Run (see README.md)::

    python tests/fuzz/fuzz_auth.py -runs=100000
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["flight_secure"]):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from flight_secure.auth.base import CallCredentials
    from flight_secure.auth.basic import BasicServerAuthHandler
    from flight_secure.auth.guard import LoginGuard
    from flight_secure.auth.jwt_auth import JWTServerAuthHandler
    from flight_secure.auth.passwords import PasswordStore
    from flight_secure.auth.tokens import JWTIssuer, JWTVerifier, TokenError
    from flight_secure.errors import FlightUnauthenticatedError
    from flight_secure.types import FlightMethod

KEY = Ed25519PrivateKey.generate()
VERIFIER = JWTVerifier(KEY.public_key(), ["EdDSA"], issuer="fuzz")
TOKENS = JWTServerAuthHandler(VERIFIER)
STORE = PasswordStore(rounds=4)
STORE.add("alice", "alice's password, never guessed")
LOGINS = BasicServerAuthHandler(
    STORE, JWTIssuer(KEY, "EdDSA", issuer="fuzz"), VERIFIER,
    guard=LoginGuard(max_failures_per_user=10**9, max_failures_per_network=10**9))
#: Prefixes that steer the fuzzer towards each parser.
PREFIXES = ("Basic ", "Bearer ", "bearer ", "", "Basic YWxpY2U6", "Bearer eyJhbGciOiJFZERTQSJ9.")


def printable(text: str) -> str:
    """``text`` reduced to what gRPC accepts in a text header (0x20-0x7E)."""
    return "".join(ch for ch in text if " " <= ch <= "~")


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    prefix = PREFIXES[provider.ConsumeIntInRange(0, len(PREFIXES) - 1)]
    authorization = prefix + printable(provider.ConsumeUnicodeNoSurrogates(200))
    token_bin = provider.ConsumeBytes(provider.ConsumeIntInRange(0, 400))
    metadata: list[tuple[str, str | bytes]] = []
    if provider.ConsumeBool():
        metadata.append(("authorization", authorization))
    if provider.ConsumeBool():
        metadata.append(("auth-token-bin", token_bin))
    call = CallCredentials.from_values(FlightMethod.DO_GET, metadata, "ipv4:127.0.0.1:4242")

    try:
        pair = call.basic_credentials
        assert pair is None or all(isinstance(part, str) for part in pair)
    except ValueError:
        pass
    assert call.bearer_token is None or isinstance(call.bearer_token, str)
    assert call.auth_token is None or isinstance(call.auth_token, bytes)
    try:
        VERIFIER.verify(authorization.partition(" ")[2])
        raise AssertionError("a guessed token was accepted")
    except TokenError:
        pass
    for attempt in (lambda: TOKENS.authenticate_call(call),
                    lambda: TOKENS.is_valid(token_bin),
                    lambda: LOGINS.authenticate_headers(call)):
        try:
            result = attempt()
        except FlightUnauthenticatedError:
            continue
        assert result is None, f"admitted {result!r}"


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
