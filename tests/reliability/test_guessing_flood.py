"""Password guessing flood: a logged-in caller keeps working; guesses are throttled and audited.

The server uses the default LoginGuard (2 bcrypt checks at once, 5 failures per user
and 20 per client host before a 30 s lockout) and bcrypt cost 10. While another
process guesses passwords from many threads over both login paths (Handshake message
and ``authorization: Basic`` header), a caller that logged in before the flood keeps
calling; its p95 latency is compared with the quiet baseline and reported (the
attackers run in their own process so that they compete with the server for CPU,
not for this process's GIL).

The server runs on both engines. pyarrow's does not show the peer's address, so
there every caller counts as one host: the per-host budget is the server's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Engine

import flight_secure as flight
from flight_secure.auth import (
    BasicClientAuthHandler,
    BasicServerAuthHandler,
    LoginGuard,
    PasswordStore,
)

from .conftest import (
    CALL_TIMEOUT,
    Child,
    Echo,
    bounded,
    echo_call,
    login_refusal,
    percentile,
    report,
)

VICTIM = ("victim", "victim's long passphrase")
TARGETS = ("alice", "bob", "carol", "dave")
#: A sanity bound only: the measured factor is reported, not judged, here.
SANE_SLOWDOWN = 100.0
#: The default LoginGuard's failure budget per client host.
PEER_BUDGET = 20


@contextlib.contextmanager
def guarded_server(engine: Engine, rounds: int) -> Iterator[Echo]:
    """An Echo server on ``engine`` with Basic logins (bcrypt cost ``rounds``) behind a
    default LoginGuard."""
    store = PasswordStore(rounds=rounds)
    store.add(*VICTIM)
    for user in TARGETS:
        store.add(user, f"{user}'s real password")
    guard = LoginGuard()
    running = engine.start(Echo, auth_handler=BasicServerAuthHandler(store, guard=guard))
    try:
        yield running
    finally:
        running.shutdown()
        guard.close()


def timed_calls(client: flight.FlightClient, count: int) -> list[float]:
    """``count`` DoAction calls as the victim; their latencies in seconds."""
    options = flight.FlightCallOptions(timeout=CALL_TIMEOUT)
    latencies = []
    for number in range(count):
        nonce = f"{number}".encode()
        began = time.perf_counter()
        answer = echo_call(client, "DoAction", nonce, options)
        latencies.append(time.perf_counter() - began)
        assert answer == b"victim|basic|" + nonce
    return latencies


def check_flood(engine: Engine, attackers: int, calls: int, log: Path,
                caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """Time ``calls`` victim calls quiet, then through the flood until it is throttled and
    ``calls`` more in the throttled steady state."""
    with guarded_server(engine, rounds=10) as server:
        flood_against(engine, server, attackers, calls, log, caplog, capsys)


def flood_against(engine: Engine, server: Echo, attackers: int, calls: int, log: Path,
                  caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.INFO, logger="flight_secure.audit")
    location = f"grpc://127.0.0.1:{server.port}"
    config = {"location": location, "users": TARGETS, "threads": attackers, "guesses": 10_000}
    with flight.connect(location) as victim:
        victim.authenticate(BasicClientAuthHandler(*VICTIM))
        timed_calls(victim, 20)  # warm up the connection and the token cache
        quiet = timed_calls(victim, calls)
        with Child.python("guess-passwords", json.dumps(config), log=log) as flood:
            flood.expect("started")
            flooded = []
            for _ in bounded("the flood got throttled", seconds=120, attempts=100_000):
                flooded += timed_calls(victim, 1)
                if len(flooded) >= calls and flood.has_printed("throttled"):
                    break
            flooded += timed_calls(victim, calls)
            assert flood.proc.stdin is not None
            flood.proc.stdin.close()
            outcomes = Counter(json.loads(flood.expect("done").split(" ", 1)[1]))

    factor = percentile(flooded, 0.95) / percentile(quiet, 0.95)
    median_factor = statistics.median(flooded) / statistics.median(quiet)
    report(capsys, f"guessing flood ({attackers} attacker threads, {engine.name} engine): "
                   f"victim p95 "
                   f"{percentile(quiet, 0.95) * 1e3:.2f} ms quiet, "
                   f"{percentile(flooded, 0.95) * 1e3:.2f} ms under flood (x{factor:.2f}; "
                   f"median x{median_factor:.2f}) over {len(flooded)} calls; "
                   f"{outcomes.total()} guesses: {dict(outcomes)}")
    assert factor < SANE_SLOWDOWN
    assert set(outcomes) <= {"bad_credentials", "throttled", "busy", "timeout"}, outcomes
    # The host gets PEER_BUDGET failures before its lockout; a parallel burst gets no more.
    assert 0 < outcomes["bad_credentials"] <= PEER_BUDGET
    assert outcomes["throttled"] > 0

    refused = [r for r in caplog.records if r.getMessage().startswith("login refused")]
    assert Counter(r.audit["reason"] for r in refused) == outcomes
    hosts = {r.audit["peer"].rpartition(":")[0] if engine.knows_peers else r.audit["peer"]
             for r in refused}
    assert hosts == ({"ipv4:127.0.0.1"} if engine.knows_peers else {"-"})
    assert not any("guess-" in r.getMessage() for r in caplog.records)


def test_guessing_flood_is_throttled_audited_and_spares_a_logged_in_caller(
        engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    check_flood(engine, attackers=4, calls=60, log=tmp_path / "flood.log", caplog=caplog,
                capsys=capsys)


@pytest.mark.slow
def test_heavy_guessing_flood_is_throttled_audited_and_spares_a_logged_in_caller(
        engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    check_flood(engine, attackers=32, calls=400, log=tmp_path / "flood.log", caplog=caplog,
                capsys=capsys)


def test_a_locked_out_host_keeps_its_sessions_but_not_new_logins(engine: Engine) -> None:
    """After 20 failures from 127.0.0.1 that host is locked out, even for a right password;
    a session opened before keeps working. The same user logs in from ::1 on the engine
    that tells hosts apart; on pyarrow's, every host shares the lockout."""
    with guarded_server(engine, rounds=4) as server:
        here, elsewhere = f"grpc://127.0.0.1:{server.port}", f"grpc://[::1]:{server.port}"
        with flight.connect(here) as session:
            session.authenticate(BasicClientAuthHandler(*VICTIM))
            for attempt in bounded("127.0.0.1 locked out", seconds=CALL_TIMEOUT, attempts=40):
                with flight.connect(here) as attacker, \
                        pytest.raises(flight.FlightUnauthenticatedError) as refused:
                    attacker.authenticate(BasicClientAuthHandler(f"nobody-{attempt}", "wrong"))
                if login_refusal(refused.value) == "throttled":
                    break
            with flight.connect(here) as again, pytest.raises(
                    flight.FlightUnauthenticatedError, match="too many failed logins"):
                again.authenticate(BasicClientAuthHandler(*VICTIM))
            assert timed_calls(session, 3)
        with flight.connect(elsewhere) as other_host:
            if engine.knows_peers:
                other_host.authenticate(BasicClientAuthHandler(*VICTIM))
                assert timed_calls(other_host, 1)
            else:
                with pytest.raises(flight.FlightUnauthenticatedError,
                                   match="too many failed logins"):
                    other_host.authenticate(BasicClientAuthHandler(*VICTIM))
