"""Logins stay available: idle handshakes from one network never block another's logins,
and a storm of real logins waits for the password checks instead of being refused.

The storm runs on both engines (the ``engine`` fixture); idle handshakes on
flight_secure's, the only one that tells networks apart.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from conftest import ENGINES, Engine
from raw_wire import rpc_path

import flight_secure as flight
from flight_secure.auth import BasicClientAuthHandler, BasicServerAuthHandler, PasswordStore
from flight_secure.types import BasicAuth

from .conftest import CALL_TIMEOUT, Echo, bounded, echo_call, report

USER, PASSWORD = "dave", "dave's password"


@contextlib.contextmanager
def login_server(engine: Engine, rounds: int) -> Iterator[Echo]:
    """An Echo server on ``engine`` with Basic logins of ``USER`` (bcrypt cost ``rounds``),
    default limits."""
    store = PasswordStore(rounds=rounds)
    store.add(USER, PASSWORD)
    handler = BasicServerAuthHandler(store)
    server = engine.start(Echo, auth_handler=handler)
    try:
        yield server
    finally:
        server.shutdown()
        handler.close()


class IdleHandshakes:
    """From one network, keep ``want`` Handshakes open that never send a thing; open a new
    one whenever one ends. Counts how each ended."""

    def __init__(self, target: str, want: int) -> None:
        self.channel = grpc.insecure_channel(target)
        self.want = want
        self.ended: Counter[str] = Counter()
        self.open = 0
        self.most_open = 0
        self.stop = threading.Event()
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _silence(self) -> Iterator[bytes]:
        self.stop.wait(CALL_TIMEOUT * 3)
        yield from ()

    def _ended(self, call: Any) -> None:
        with self.changed:
            self.open -= 1
            self.ended[call.code().name] += 1
            self.changed.notify_all()

    def _run(self) -> None:
        handshake = self.channel.stream_stream(rpc_path("Handshake"))
        while not self.stop.is_set():
            with self.changed:
                while self.open >= self.want and not self.stop.is_set():
                    self.changed.wait(0.5)
                self.open += 1
            call = handshake(self._silence(), timeout=CALL_TIMEOUT * 3)
            call.add_done_callback(self._ended)
            time.sleep(0.01)  # a refused one ends at once: do not spin the shared CPUs
            with self.changed:
                self.most_open = max(self.most_open, self.open)

    def __enter__(self) -> IdleHandshakes:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        with self.changed:
            self.changed.notify_all()
        self.thread.join(CALL_TIMEOUT)
        self.channel.close()


def test_idle_handshakes_from_one_network_never_block_another_networks_logins(
        capsys: pytest.CaptureFixture[str]) -> None:
    """One network (127.0.0.1) holds as many idle handshakes as the server lets it, and
    reopens them as they end; the other (::1) logs in 20 times, both ways, every time."""
    options = flight.FlightCallOptions(timeout=CALL_TIMEOUT)
    with login_server(ENGINES["python"], rounds=4) as server, \
            IdleHandshakes(f"127.0.0.1:{server.port}", want=32) as attacker:
        for _ in bounded("the attacker holds idle handshakes", seconds=CALL_TIMEOUT,
                         attempts=10_000, pause=0.01):
            if attacker.ended["RESOURCE_EXHAUSTED"] > 0:
                break
        durations = []
        for attempt in range(20):
            began = time.monotonic()
            with flight.connect(f"grpc://[::1]:{server.port}") as client:
                if attempt % 2:
                    client.authenticate(BasicClientAuthHandler(USER, PASSWORD), options)
                    assert echo_call(client, "DoAction", b"n", options) == b"dave|basic|n"
                else:
                    header = client.authenticate_basic_token(USER, PASSWORD, options)
                    with_token = flight.FlightCallOptions(timeout=CALL_TIMEOUT,
                                                          headers=[header])
                    assert echo_call(client, "DoAction", b"n", with_token) == b"dave|basic|n"
            durations.append(time.monotonic() - began)
        held = attacker.most_open
    report(capsys, f"idle handshakes: one network held up to {held} open (refused: "
                   f"{attacker.ended['RESOURCE_EXHAUSTED']}, timed out: "
                   f"{attacker.ended['DEADLINE_EXCEEDED']}); 20 of 20 logins from another "
                   f"network, median {statistics.median(durations) * 1e3:.1f} ms, "
                   f"max {max(durations) * 1e3:.0f} ms")


def storm(server: Echo, clients: int, kind: str) -> Counter[str]:
    """``clients`` pyarrow clients, each on its own connection, log in at the same moment."""
    location = f"grpc://localhost:{server.port}"
    connections = [pa_flight.connect(location) for _ in range(clients)]
    start = threading.Barrier(clients)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    class Basic(pa_flight.ClientAuthHandler):
        def authenticate(self, outgoing: Any, incoming: Any) -> None:
            outgoing.write(BasicAuth(USER, PASSWORD).serialize())
            self.token = incoming.read()

        def get_token(self) -> bytes:
            return self.token

    def login(client: pa_flight.FlightClient) -> None:
        options = pa_flight.FlightCallOptions(timeout=60)
        start.wait()
        try:
            if kind == "header":
                client.authenticate_basic_token(USER, PASSWORD, options)
            else:
                client.authenticate(Basic(), options)
            outcome = "ok"
        except pa.ArrowException as exc:
            outcome = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=login, args=(c,)) for c in connections]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        for client in connections:
            client.close()
    return outcomes


@pytest.mark.parametrize("kind", ["header", "message"])
def test_a_storm_of_real_logins_is_served_without_refusals(
        engine: Engine, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    """256 pyarrow clients log in at once (pyarrow clients do not retry by themselves)."""
    with login_server(engine, rounds=4) as server:
        began = time.monotonic()
        outcomes = storm(server, 256, kind)
        elapsed = time.monotonic() - began
    report(capsys, f"login storm ({kind}, {engine.name} engine): 256 pyarrow clients at "
                   f"once, bcrypt cost 4: {dict(outcomes)} in {elapsed:.1f} s")
    assert outcomes == Counter({"ok": 256})


@pytest.mark.slow
def test_a_storm_of_1024_real_logins_is_served_without_refusals(
        engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    with login_server(engine, rounds=4) as server:
        began = time.monotonic()
        outcomes = storm(server, 1024, "header")
        elapsed = time.monotonic() - began
    report(capsys, f"login storm (header, {engine.name} engine): 1024 pyarrow clients at "
                   f"once, bcrypt cost 4: {dict(outcomes)} in {elapsed:.1f} s")
    assert outcomes == Counter({"ok": 1024})
