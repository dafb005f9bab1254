"""Specification of login counts shared in Redis: LoginGuards on several servers that
share one RedisLoginCounters give a guesser the budget of one server, atomically,
with keys that expire, and refuse logins (without running bcrypt) while Redis is down.

Each guard here stands for one server; all talk to one real ``redis-server``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.flight as pa_flight
import pytest
from conftest import wait_until
from redis_server import RedisServer, redis_or_skip

import flight_secure
from flight_secure.auth.basic import BasicServerAuthHandler
from flight_secure.auth.counters import Limits
from flight_secure.auth.guard import LoginDecision, LoginGuard
from flight_secure.auth.passwords import PasswordStore
from flight_secure.auth.redis_connection import connect
from flight_secure.auth.redis_counters import RedisLoginCounters

LIMITS = {"max_failures_per_user": 3, "max_failures_per_network": 20,
          "max_failures_per_user_total": 8, "failure_window": 60, "lockout": 30}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = redis_or_skip(tmp_path)
    yield server
    server.stop()


class Counting:
    """A verify() that counts its runs (each one a bcrypt check on a real server)."""

    def __init__(self, result: bool) -> None:
        self.result = result
        self.runs = 0
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            self.runs += 1
        return self.result


@pytest.fixture
def nodes(redis_server: RedisServer) -> Iterator[list[LoginGuard]]:
    """Three guards ("servers"), each with its own client of the one Redis, each able
    to run a whole (user, network) budget of checks at once."""
    guards = [LoginGuard(counters=RedisLoginCounters(connect(redis_server.url)),
                         max_concurrent_checks=3, **LIMITS) for _ in range(3)]
    yield guards
    for guard in guards:
        guard.close()
        guard.counters.close()


def test_failures_on_one_server_lock_the_user_out_of_the_others(
        nodes: list[LoginGuard]) -> None:
    for _ in range(3):
        assert nodes[0].check("alice", "10.0.0.1", Counting(False)).reason == "bad_credentials"
    verify = Counting(True)
    for guard in nodes[1:]:
        decision = guard.check("alice", "10.0.0.1", verify)
        assert decision.reason == "throttled"
        assert 29 < decision.retry_after <= 30
    assert verify.runs == 0
    assert nodes[2].check("alice", "10.0.0.2", verify) == LoginDecision(True, "ok")


def test_a_flood_spread_over_three_servers_runs_no_more_checks_than_against_one(
        nodes: list[LoginGuard]) -> None:
    """60 wrong guesses for alice from one network: against one in-memory guard, and
    round-robin over three guards sharing Redis. Each reaches bcrypt equally often."""
    alone, spread = Counting(False), Counting(False)
    with LoginGuard(**LIMITS) as single:
        for _ in range(60):
            single.check("alice", "10.0.0.1", alone)
    for n in range(60):
        nodes[n % 3].check("alice", "10.0.0.1", spread)
    assert alone.runs == 3
    assert spread.runs == alone.runs


def test_a_sprayer_over_many_names_and_three_servers_gets_one_networks_budget(
        nodes: list[LoginGuard]) -> None:
    verify = Counting(False)
    for n in range(100):
        nodes[n % 3].check(f"user{n}", "10.0.0.1", verify)
    assert verify.runs == 20


def test_a_parallel_burst_over_three_servers_waits_rather_than_exceed_the_budget(
        nodes: list[LoginGuard]) -> None:
    """30 checks at once, 10 per server, for one (user, network) whose limit is 3:
    three run while the rest wait; once those three fail, the rest are locked out."""
    release = threading.Event()
    lock = threading.Lock()
    running = [0]

    def slow_failure() -> bool:
        with lock:
            running[0] += 1
        release.wait(10)
        return False

    results: list[LoginDecision] = []
    threads = [threading.Thread(target=lambda g=nodes[n % 3]: results.append(
        g.check("alice", "10.0.0.1", slow_failure, timeout=10))) for n in range(30)]
    for thread in threads:
        thread.start()
    wait_until(lambda: running[0] == 3)
    time.sleep(0.3)  # the other 27 have polled Redis several times meanwhile
    assert running[0] == 3
    release.set()
    for thread in threads:
        thread.join(15)
    reasons = sorted(decision.reason for decision in results)
    assert reasons == ["bad_credentials"] * 3 + ["throttled"] * 27


def test_a_network_the_user_logged_in_from_stays_open_on_every_server(
        nodes: list[LoginGuard]) -> None:
    assert nodes[0].check("alice", "192.0.2.1", Counting(True)).reason == "ok"
    for n in range(8):
        nodes[n % 3].check("alice", f"198.51.100.{n}", Counting(False))
    assert nodes[1].check("alice", "203.0.113.9", Counting(True)).reason == "throttled"
    assert nodes[2].check("alice", "192.0.2.1", Counting(True)).reason == "ok"


def test_a_lockout_ends_and_old_failures_are_forgotten(redis_server: RedisServer) -> None:
    counters = RedisLoginCounters(connect(redis_server.url))
    with LoginGuard(counters=counters, max_failures_per_user=2, failure_window=0.5,
                    lockout=0.5) as guard:
        guard.check("alice", "10.0.0.1", Counting(False))
        time.sleep(0.6)  # the window passes: that failure no longer counts
        guard.check("alice", "10.0.0.1", Counting(False))
        assert guard.check("alice", "10.0.0.1", Counting(True)).reason == "ok"
        for _ in range(2):
            guard.check("bob", "10.0.0.1", Counting(False))
        assert guard.check("bob", "10.0.0.1", Counting(True)).reason == "throttled"
        wait_until(lambda: guard.check("bob", "10.0.0.1", Counting(True)).reason == "ok", 3)
    counters.close()


def test_every_key_expires_and_none_names_a_user_or_network(
        nodes: list[LoginGuard], redis_server: RedisServer) -> None:
    nodes[0].check("alice", "10.0.0.1", Counting(True))
    for n in range(25):
        nodes[n % 3].check(f"user{n}", "10.0.0.1", Counting(False))
    client = redis_server.client()
    names = list(client.scan_iter("*"))
    assert names
    assert all(client.pttl(name) > 0 for name in names)
    secrets = [b"alice", b"10.0.0.1", *(f"user{n}".encode() for n in range(25))]
    assert not any(secret in name for name in names for secret in secrets)
    assert nodes[0].tracked_keys >= 3
    client.close()


def test_a_reservation_of_a_server_that_died_lapses(redis_server: RedisServer) -> None:
    counters = RedisLoginCounters(connect(redis_server.url), reservation_ttl=0.5)
    limits = Limits({"account": 1, "network": 10, "user": 10}, 60.0, 30.0, 0.0)
    assert counters.admit("alice", "10.0.0.1", limits, reserve=True).ticket is not None
    assert counters.admit("alice", "10.0.0.1", limits, reserve=True).ticket is None
    wait_until(lambda: counters.admit("alice", "10.0.0.1", limits,
                                      reserve=True).ticket is not None, 3)
    counters.close()


def test_while_redis_is_down_logins_are_refused_without_a_check(
        nodes: list[LoginGuard], redis_server: RedisServer) -> None:
    verify = Counting(True)
    redis_server.stop()
    started = time.monotonic()
    for guard in nodes:
        assert guard.check("alice", "10.0.0.1", verify) == LoginDecision(False, "unavailable")
    assert time.monotonic() - started < 10
    assert verify.runs == 0 and all(guard.pending_checks == 0 for guard in nodes)
    redis_server.start()
    assert nodes[0].check("alice", "10.0.0.1", verify) == LoginDecision(True, "ok")


def test_the_in_memory_options_do_not_apply_to_a_given_store(redis_server: RedisServer) -> None:
    counters = RedisLoginCounters(connect(redis_server.url))
    with pytest.raises(ValueError, match="in-memory"):
        LoginGuard(counters=counters, clock=time.monotonic)
    with pytest.raises(ValueError, match="in-memory"):
        LoginGuard(counters=counters, max_tracked_keys=10)
    counters.close()


# ------------------------------------------------------------ on real Flight servers


class Empty(flight_secure.FlightServerBase):
    """A server with only its auth handler: logins and token checks."""

    def list_actions(self, context: flight_secure.ServerCallContext) -> list[tuple[str, str]]:
        return [("who", context.peer_identity().decode())]


def basic_handler(url: str, store: PasswordStore) -> BasicServerAuthHandler:
    guard = LoginGuard(counters=RedisLoginCounters(connect(url)), **LIMITS)
    return BasicServerAuthHandler(store, guard=guard)


def test_a_server_whose_redis_is_down_refuses_logins_as_unavailable_and_keeps_sessions(
        redis_server: RedisServer) -> None:
    store = PasswordStore(rounds=4)
    store.add("alice", "wonderland")
    handler = basic_handler(redis_server.url, store)
    with Empty(location="grpc://localhost:0", auth_handler=handler) as server:
        client = pa_flight.connect(f"grpc://localhost:{server.port}")
        options = pa_flight.FlightCallOptions(
            headers=[client.authenticate_basic_token("alice", "wonderland")], timeout=10)
        redis_server.stop()
        with pytest.raises(pa_flight.FlightUnavailableError,
                           match="logins are unavailable right now"):
            client.authenticate_basic_token("alice", "wonderland")
        assert [a.type for a in client.list_actions(options)] == ["who"]
        redis_server.start()
        client.authenticate_basic_token("alice", "wonderland")
        client.close()
    handler.guard.close()
    handler.guard.counters.close()


def guesses_reaching_bcrypt(servers: list[Empty], ca: Callable[[], None] | None = None,
                            attempts: int = 30) -> int:
    """Wrong passwords for alice, round-robin over ``servers``: how many were checked
    (refused as "invalid username or password", not as locked out)."""
    checked = 0
    clients = [pa_flight.connect(f"grpc://localhost:{server.port}") for server in servers]
    for n in range(attempts):
        try:
            clients[n % len(clients)].authenticate_basic_token("alice", f"guess-{n}")
        except pa_flight.FlightUnauthenticatedError as exc:
            checked += "invalid username or password" in str(exc)
    for client in clients:
        client.close()
    return checked


def test_guesses_spread_over_three_servers_reach_bcrypt_as_often_as_against_one(
        redis_server: RedisServer) -> None:
    store = PasswordStore(rounds=4)
    store.add("alice", "wonderland")
    alone = BasicServerAuthHandler(store, guard=LoginGuard(**LIMITS))
    with Empty(location="grpc://localhost:0", auth_handler=alone) as server:
        one = guesses_reaching_bcrypt([server])
    alone.close()
    handlers = [basic_handler(redis_server.url, store) for _ in range(3)]
    servers = [Empty(location="grpc://localhost:0", auth_handler=h) for h in handlers]
    try:
        three = guesses_reaching_bcrypt(servers)
    finally:
        for server, handler in zip(servers, handlers):
            server.shutdown()
            handler.guard.close()
            handler.guard.counters.close()
    assert one == 3
    assert three == one
