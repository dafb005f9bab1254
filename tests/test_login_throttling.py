"""Login throttling as a client meets it: nobody can lock a user out from elsewhere,
limits count networks rather than addresses, and a refusal says when to retry."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import grpc
import pytest

import flight_secure as flight
from flight_secure.auth import (
    BasicClientAuthHandler,
    BasicServerAuthHandler,
    LoginGuard,
    LoginThrottledError,
    PasswordStore,
)
from flight_secure.auth.base import CallCredentials
from flight_secure.auth.network import peer_host, peer_network
from flight_secure.types import FlightMethod

ALICE = ("alice", "alice's password")
OPTIONS = flight.FlightCallOptions(timeout=10)


@pytest.fixture
def handler() -> Iterator[BasicServerAuthHandler]:
    """Basic logins behind a LoginGuard with its default limits."""
    store = PasswordStore(rounds=4)
    store.add(*ALICE)
    made = BasicServerAuthHandler(store, guard=LoginGuard())
    yield made
    made.guard.close()


class Server(flight.FlightServerBase):
    pass


def login_from(handler: BasicServerAuthHandler, peer: str, password: str) -> str:
    """A login as alice from ``peer`` (a gRPC peer string); the outcome in a word."""
    call = CallCredentials.from_values(FlightMethod.HANDSHAKE, (), peer)
    try:
        handler.issue_token(ALICE[0], password, call)
    except LoginThrottledError:
        return "throttled"
    except flight.FlightUnauthenticatedError:
        return "refused"
    return "ok"


# ----------------------------------------------------------- over real gRPC


def test_guessing_from_one_network_does_not_lock_the_user_out_from_another(
        handler: BasicServerAuthHandler) -> None:
    """5 wrong passwords from [::1] used to lock alice out from 127.0.0.1 as well."""
    with Server(location="grpc://localhost:0", auth_handler=handler) as server:
        with flight.connect(f"grpc://[::1]:{server.port}") as attacker:
            for _ in range(5):
                with pytest.raises(flight.FlightUnauthenticatedError, match="invalid username"):
                    attacker.authenticate(BasicClientAuthHandler(ALICE[0], "guess"), OPTIONS)
            with pytest.raises(flight.FlightUnauthenticatedError,
                               match=r"too many failed logins; try again in \d+ s"):
                attacker.authenticate(BasicClientAuthHandler(*ALICE), OPTIONS)
        with flight.connect(f"grpc://127.0.0.1:{server.port}") as alice:
            alice.authenticate(BasicClientAuthHandler(*ALICE), OPTIONS)
            alice.authenticate_basic_token(*ALICE, OPTIONS)


def test_a_throttled_login_says_when_to_retry_in_a_trailer(
        handler: BasicServerAuthHandler) -> None:
    basic = "Basic " + base64.b64encode(b"alice:guess").decode()
    with Server(location="grpc://localhost:0", auth_handler=handler) as server, \
            grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        handshake = channel.stream_stream("/arrow.flight.protocol.FlightService/Handshake")
        for _ in range(5):
            with pytest.raises(grpc.RpcError) as refused:
                list(handshake(iter(()), metadata=[("authorization", basic)], timeout=10))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "retry-after" not in dict(refused.value.trailing_metadata())
        with pytest.raises(grpc.RpcError) as throttled:
            list(handshake(iter(()), metadata=[("authorization", basic)], timeout=10))
    wait = dict(throttled.value.trailing_metadata())["retry-after"]
    assert 1 <= int(wait) <= 30
    assert re.search(rf"try again in {wait} s", throttled.value.details())


# ------------------------------------------------------- networks, not sockets


def test_addresses_of_one_ipv6_64_share_one_budget(handler: BasicServerAuthHandler) -> None:
    for n in range(1, 6):
        assert login_from(handler, f"ipv6:[2001:db8:0:1::{n}]:4000", "guess") == "refused"
    assert login_from(handler, "ipv6:[2001:db8:0:1:ffff::99]:4000", ALICE[1]) == "throttled"
    assert login_from(handler, "ipv6:[2001:db8:0:2::1]:4000", ALICE[1]) == "ok"


def test_an_ipv4_mapped_address_counts_as_its_ipv4_address(
        handler: BasicServerAuthHandler) -> None:
    for _ in range(5):
        assert login_from(handler, "ipv6:[::ffff:192.0.2.7]:4000", "guess") == "refused"
    assert login_from(handler, "ipv4:192.0.2.7:4001", ALICE[1]) == "throttled"
    assert login_from(handler, "ipv6:%5B::ffff:192.0.2.7%5D:4002", ALICE[1]) == "throttled"
    assert login_from(handler, "ipv4:192.0.2.8:4001", ALICE[1]) == "ok"


@pytest.mark.parametrize(("peer", "host", "network"), [
    ("ipv4:10.1.2.3:50051", "10.1.2.3", "10.1.2.3"),
    ("ipv6:[::1]:443", "::1", "::/64"),
    ("ipv6:%5B::1%5D:443", "::1", "::/64"),
    ("ipv6:[2001:db8:1:2:aaaa::5]:1", "2001:db8:1:2:aaaa::5", "2001:db8:1:2::/64"),
    ("ipv6:[::ffff:10.1.2.3]:4", "::ffff:10.1.2.3", "10.1.2.3"),
    ("ipv6:[fe80::1%25eth0]:5", "fe80::1%eth0", "fe80::/64"),
    ("unix:/tmp/sock", "unix:/tmp/sock", "unix:/tmp/sock"),
    ("10.1.2.3", "10.1.2.3", "10.1.2.3"),
    ("-", "-", "-"),
])
def test_peers_are_reduced_to_their_host_and_network(peer: str, host: str,
                                                     network: str) -> None:
    assert (peer_host(peer), peer_network(peer)) == (host, network)
