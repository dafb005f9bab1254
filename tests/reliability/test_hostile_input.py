"""Hostile input, fuzzed with hypothesis, sent with raw gRPC to a server with Basic logins.

The auth properties run against both engines (the ``engine`` fixture); FlightData
frames against flight_secure's, whose data path is its own (pyarrow's engine reads
frames in C++, outside flight_secure).

Whatever arrives (auth headers, handshake payloads, BasicAuth messages, JWT-shaped
strings, FlightData frames), the call ends within its timeout with a refusal that
names the problem (UNAUTHENTICATED, INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED,
never UNKNOWN or INTERNAL, never a traceback) and the server keeps serving: after
every example a logged-in client's call must still get its own answer.

Each property runs with a modest example count by default and with thousands in
the ``slow`` run. A DoPut handler that reads the received *values* is exercised in
a child process (test_crafted_offsets_cannot_crash_a_server_that_reads_values),
since a crash there would take pytest down.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from conftest import ENGINES, Engine
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import strategies as st
from raw_wire import raw_call, raw_channel

import flight_secure as flight
from flight_secure._generated import flight_pb2 as pb
from flight_secure.auth import (
    BasicClientAuthHandler,
    BasicServerAuthHandler,
    JWTIssuer,
    JWTVerifier,
    LoginGuard,
    PasswordStore,
)
from flight_secure.auth.tokens import TokenError

from .conftest import (
    CALL_TIMEOUT,
    HOSTILE_OUTCOMES,
    Child,
    Echo,
    assert_refused_cleanly,
    crafted_string_offsets,
    echo_call,
    mutated_streams,
    quick_and_long,
)

ISS = "https://login.reliability.test"
USERS = {"alice": "alice's password", "bob": "bob's password"}
#: Data frames may also be accepted: random bytes can form a valid stream.
FRAME_OUTCOMES = HOSTILE_OUTCOMES | {grpc.StatusCode.OK}


@dataclass
class Target:
    server: Echo
    channel: grpc.Channel
    client: flight.FlightClient
    token: bytes = field(repr=False)
    issuer: JWTIssuer = field(repr=False)
    handler: BasicServerAuthHandler = field(repr=False)

    def assert_serving(self) -> None:
        """A logged-in client's call still gets its own answer."""
        options = flight.FlightCallOptions(timeout=CALL_TIMEOUT)
        assert echo_call(self.client, "DoAction", b"alive?", options) == b"alice|basic|alive?"


@contextlib.contextmanager
def running_target(engine: Engine) -> Iterator[Target]:
    """An Echo server on ``engine`` with Basic logins, a raw channel and a logged-in client."""
    store = PasswordStore(rounds=4)
    for user, password in USERS.items():
        store.add(user, password)
    key = Ed25519PrivateKey.generate()
    issuer = JWTIssuer(key, "EdDSA", issuer=ISS)
    verifier = JWTVerifier(key.public_key(), ["EdDSA"], issuer=ISS)
    # Limits so high that fuzzed logins reach the password check instead of a lockout.
    guard = LoginGuard(max_failures_per_user=10**9, max_failures_per_network=10**9)
    handler = BasicServerAuthHandler(store, issuer, verifier, guard=guard)
    server = engine.start(Echo, auth_handler=handler)
    client = flight.connect(f"grpc://localhost:{server.port}")
    login = BasicClientAuthHandler("alice", USERS["alice"])
    client.authenticate(login)
    try:
        with raw_channel(server.port) as channel:
            yield Target(server, channel, client, login.get_token(), issuer, handler)
    finally:
        client.close()
        server.shutdown()
        guard.close()


@pytest.fixture(scope="module")
def target(engine: Engine) -> Iterator[Target]:
    """The auth properties' server, on each engine."""
    with running_target(engine) as running:
        yield running


@pytest.fixture(scope="module")
def python_target() -> Iterator[Target]:
    """The server of the FlightData and direct-parser properties: flight_secure's engine."""
    with running_target(ENGINES["python"]) as running:
        yield running


# -------------------------------------------------------------------- strategies


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


#: Header values gRPC lets a client send (printable ASCII).
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8,
)
jwt_headers = st.fixed_dictionaries(
    {"alg": st.sampled_from(["none", "None", "NONE", "EdDSA", "HS256", "RS256", "ES256"])
     | json_values},
    optional={"typ": st.just("JWT") | json_values, "kid": json_values, "crit": json_values,
              "jku": st.text(max_size=30)},
)
jwt_claims = st.fixed_dictionaries(
    {},
    optional={"sub": st.sampled_from(sorted(USERS)) | json_values,
              "iss": st.just(ISS) | json_values, "exp": st.integers() | json_values,
              "nbf": st.integers() | json_values, "iat": st.integers() | json_values,
              "roles": json_values, "jti": json_values},
)


def json_segment(values: st.SearchStrategy) -> st.SearchStrategy[str]:
    return st.builds(lambda value: b64url(json.dumps(value).encode()), values)


#: Three dot-separated segments: JSON header and claims (or junk), and a signature.
jwt_shaped = st.builds(
    lambda header, claims, signature: f"{header}.{claims}.{signature}",
    json_segment(jwt_headers) | st.binary(max_size=48).map(b64url),
    json_segment(jwt_claims) | st.binary(max_size=48).map(b64url),
    st.binary(max_size=96).map(b64url) | header_text,
)


def basic_value(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


authorization_values = st.one_of(
    header_text,
    header_text.map(lambda text: "Basic " + text),
    st.binary(max_size=200).map(lambda data: "Basic " + base64.b64encode(data).decode()),
    st.builds(basic_value, st.sampled_from(sorted(USERS)) | st.text(max_size=40),
              st.text(max_size=100)),
    header_text.map(lambda text: "Bearer " + text),
    jwt_shaped.map(lambda token: "Bearer " + token),
    jwt_shaped.map(lambda token: "bearer  " + token + " "),
)
token_bin_values = st.binary(max_size=2048) | jwt_shaped.map(str.encode)


def handshake_request(payload: bytes) -> bytes:
    return pb.HandshakeRequest(payload=payload).SerializeToString()


basic_auth_payloads = st.builds(
    lambda user, password: pb.BasicAuth(username=user, password=password).SerializeToString(),
    st.sampled_from(sorted(USERS)) | st.text(max_size=300), st.text(max_size=300))
handshake_messages = st.lists(
    st.one_of(
        st.binary(max_size=512),
        st.binary(max_size=512).map(handshake_request),
        basic_auth_payloads.map(handshake_request),
        jwt_shaped.map(lambda token: handshake_request(token.encode())),
    ),
    max_size=3,
)


frame_streams = mutated_streams() | st.lists(st.binary(max_size=512), min_size=1, max_size=4)


# --------------------------------------------------------------------- properties


def check_authorization(target: Target, rpc: str, value: str) -> None:
    """Any ``authorization`` header on a call or a Handshake is refused cleanly."""
    request = (pb.Action(type="echo", body=b"x").SerializeToString() if rpc == "DoAction"
               else pb.FlightDescriptor(type=pb.FlightDescriptor.CMD, cmd=b"x")
               .SerializeToString())
    messages = [] if rpc == "Handshake" else request
    outcome = raw_call(target.channel, rpc, messages, [("authorization", value)])
    assert_refused_cleanly(outcome)
    target.assert_serving()


def check_token_bin(target: Target, rpc: str, value: bytes) -> None:
    """Any ``auth-token-bin`` header is refused cleanly."""
    request = (pb.Ticket(ticket=b"x").SerializeToString() if rpc == "DoGet"
               else pb.FlightDescriptor(type=pb.FlightDescriptor.CMD, cmd=b"x")
               .SerializeToString())
    outcome = raw_call(target.channel, rpc, request, [("auth-token-bin", value)])
    assert_refused_cleanly(outcome)
    target.assert_serving()


def check_handshake(target: Target, messages: list[bytes]) -> None:
    """Any Handshake messages (junk, payloads, BasicAuth, JWTs) are refused cleanly."""
    assert_refused_cleanly(raw_call(target.channel, "Handshake", messages))
    target.assert_serving()


def check_frames(python_target: Target, rpc: str, frames: list[bytes]) -> None:
    """Any FlightData frames from a logged-in caller are refused cleanly (or accepted)."""
    outcome = raw_call(python_target.channel, rpc, frames,
                       [("auth-token-bin", python_target.token)])
    assert_refused_cleanly(outcome, FRAME_OUTCOMES)
    python_target.assert_serving()


AUTH_RPCS = st.sampled_from(["GetFlightInfo", "DoAction", "Handshake"])
TOKEN_RPCS = st.sampled_from(["GetFlightInfo", "DoGet"])
FRAME_RPCS = st.sampled_from(["DoPut", "DoExchange"])


test_hostile_authorization_header_is_refused_cleanly, \
    test_hostile_authorization_header_is_refused_cleanly_long = quick_and_long(
        check_authorization, rpc=AUTH_RPCS, value=authorization_values)
test_hostile_auth_token_bin_is_refused_cleanly, \
    test_hostile_auth_token_bin_is_refused_cleanly_long = quick_and_long(
        check_token_bin, rpc=TOKEN_RPCS, value=token_bin_values)
test_hostile_handshake_is_refused_cleanly, \
    test_hostile_handshake_is_refused_cleanly_long = quick_and_long(
        check_handshake, messages=handshake_messages)
test_hostile_flight_data_is_refused_cleanly, \
    test_hostile_flight_data_is_refused_cleanly_long = quick_and_long(
        check_frames, rpc=FRAME_RPCS, frames=frame_streams)


def test_forged_tokens_of_a_real_user_are_unauthenticated(target: Target) -> None:
    """alg none, a wrong key, and a real token with its claims swapped: all refused."""
    real = target.token.decode()
    header, _, signature = real.split(".")
    other = JWTIssuer(Ed25519PrivateKey.generate(), "EdDSA", issuer=ISS).issue("bob")
    forged_claims = b64url(json.dumps({"sub": "bob", "iss": ISS, "exp": 2**40}).encode())
    unsigned = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    for token in (f"{unsigned}.{forged_claims}.", f"{header}.{forged_claims}.{signature}",
                  other):
        outcome = raw_call(target.channel, "DoAction",
                           pb.Action(type="echo", body=b"x").SerializeToString(),
                           [("authorization", f"Bearer {token}")])
        assert outcome.code == grpc.StatusCode.UNAUTHENTICATED, outcome
    target.assert_serving()


# ------------------------------------------------------- values that are not valid


@pytest.mark.parametrize("last_offset", [100_000_000, -5])
def test_crafted_offsets_cannot_crash_a_server_that_reads_values(last_offset: int,
                                                                 tmp_path: Path) -> None:
    """A batch whose string offsets point outside its data buffer must be refused
    (INVALID_ARGUMENT) before a handler sees it: a handler that reads the values of
    such a batch (``to_pylist``, ``to_pandas``, writing Parquet) reads out of bounds."""
    with Child.python("serve", "reads-values", log=tmp_path / "server.log") as server:
        port = int(server.expect("ready").split()[1])
        with raw_channel(port) as channel:
            outcome = raw_call(channel, "DoPut", crafted_string_offsets(last_offset))
            if outcome.code == grpc.StatusCode.UNAVAILABLE:  # the connection dropped: why?
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.proc.wait(timeout=CALL_TIMEOUT)
            assert server.alive(), f"the server died: {server.describe_exit()}"
            assert_refused_cleanly(outcome)
            assert raw_call(channel, "DoAction", b"").responses == (b"\n\x04pong",)


# ------------------------------------------------------------ parsers, directly

token_strings = st.text(max_size=80) | jwt_shaped | st.builds(
    lambda a, b, c: f"{a}.{b}.{c}", st.text(max_size=20), st.text(max_size=20),
    st.text(max_size=20))


def check_verifier(python_target: Target, token: str) -> None:
    """JWTVerifier.verify raises only TokenError; the handler's pyarrow-style is_valid only
    FlightUnauthenticatedError (what a pyarrow server maps to UNAUTHENTICATED)."""
    with pytest.raises(TokenError):
        python_target.handler.verifier.verify(token)
    with pytest.raises(flight.FlightUnauthenticatedError):
        python_target.handler.is_valid(token.encode("utf-8"))


test_token_checks_refuse_any_string_with_their_own_errors, \
    test_token_checks_refuse_any_string_with_their_own_errors_long = quick_and_long(
        check_verifier, examples=[{"token": "é.a.b"}], token=token_strings)
