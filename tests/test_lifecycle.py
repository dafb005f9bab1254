"""Server lifecycle: start, serve, signals, shutdown, and port conflicts."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import IMPLEMENTATIONS, PYTHON, ROOT, free_location, location_of

import flight_secure as flight

SEED_SCRIPT = """
import signal

import flight_secure as flight


class MyServer(flight.FlightServerBase):
    def list_actions(self, context):
        return [("ping", "answers pong")]


server = MyServer()
server.init(flight.FlightServerOptions(flight.Location("grpc://localhost:0")))
print(server.port, flush=True)
server.set_shutdown_on_signals([signal.SIGTERM])
server.serve()
print("served", flush=True)
"""

DEADLINE = 15.0


class PingServer(flight.FlightServerBase):
    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        return [("ping", "answers pong")]


def _pings(location: str) -> bool:
    with flight.connect(location) as client:
        return [a.type for a in client.list_actions(flight.FlightCallOptions(timeout=5))] == [
            "ping"
        ]


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not selector.select(timeout):
            raise AssertionError(f"no line from the server within {timeout} s")
    finally:
        selector.close()
    return proc.stdout.readline()


@pytest.fixture
def seed_process() -> Iterator[subprocess.Popen]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [PYTHON, "-c", SEED_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(DEADLINE)
    proc.stdout.close()
    proc.stderr.close()


def test_seed_flow_serves_then_exits_cleanly_on_sigterm(seed_process: subprocess.Popen) -> None:
    port = int(_read_line(seed_process, DEADLINE))
    assert _pings(f"grpc://localhost:{port}")
    seed_process.send_signal(signal.SIGTERM)
    assert seed_process.wait(DEADLINE) == 0, seed_process.stderr.read()
    assert seed_process.stdout.read().strip() == "served"


def test_constructor_keywords_start_serving_at_once() -> None:
    location = free_location()
    server = PingServer(location)
    try:
        assert _pings(location)
    finally:
        server.shutdown()


def test_constructor_accepts_a_location_object() -> None:
    location = free_location()
    server = PingServer(location=flight.Location(location))
    try:
        assert _pings(location)
    finally:
        server.shutdown()


def test_no_argument_constructor_binds_on_port() -> None:
    server = PingServer()
    try:
        assert server.port > 0
        assert _pings(location_of(server))
    finally:
        server.shutdown()


def test_no_argument_constructor_binds_in_with_block() -> None:
    with PingServer() as server:
        assert _pings(location_of(server))


def test_with_block_shuts_the_server_down() -> None:
    with PingServer() as server:
        location = location_of(server)
    with pytest.raises(flight.FlightUnavailableError), flight.connect(location) as client:
        client.list_actions(flight.FlightCallOptions(timeout=5))


def test_init_starts_serving_with_options() -> None:
    location = free_location()
    server = PingServer()
    server.init(flight.FlightServerOptions(flight.Location(location)))
    try:
        assert _pings(location)
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_workers", 0),
        ("max_concurrent_handshakes", -1),
        ("stream_window_bytes", 0),
        ("stream_window_bytes", 1.5),
        ("stream_window_bytes", 2**31),
        ("stream_window_bytes", True),
        ("max_streams_per_connection", 0),
        ("max_message_size", 0),
        ("max_message_size", None),
        ("max_decompressed_size", -2),
        ("handshake_timeout", 0),
        ("handshake_timeout", None),
        ("end_of_stream_grace", -0.1),
    ],
)
def test_options_refuse_limits_that_cannot_work(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        flight.FlightServerOptions(free_location(), **{name: value})


class PeerServer(flight.FlightServerBase):
    def do_action(self, context: Any, action: Any) -> Iterator[Any]:
        yield flight.Result(context.peer().encode())


def test_each_client_has_its_own_connection() -> None:
    # As with Arrow's clients; per-connection limits then apply per client.
    with PeerServer(free_location()) as server:
        location = location_of(server)
        with flight.connect(location) as first, flight.connect(location) as second:
            peers = [
                next(iter(client.do_action(flight.Action("peer", b"")))).body.to_pybytes()
                for client in (first, second, first)
            ]
    assert peers[0] == peers[2]
    assert peers[0] != peers[1]


def test_generic_options_replace_the_clients_own_settings(fs_data_server: Any) -> None:
    small = [("grpc.max_receive_message_length", 1024 * 1024)]
    with flight.connect(location_of(fs_data_server), generic_options=small) as client, \
            pytest.raises(flight.FlightResourceExhaustedError, match="larger than max"):
        client.do_get(flight.Ticket(b"large")).read_all()


class HoldingServer(flight.FlightServerBase):
    """DoAction handlers count themselves in, then wait until released."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inside = 0
        self.changed = threading.Condition()
        self.release = threading.Event()

    def do_action(self, context: Any, action: Any) -> Iterator[Any]:
        with self.changed:
            self.inside += 1
            self.changed.notify_all()
        self.release.wait(DEADLINE)
        yield flight.Result(b"done")

    def wait_inside(self, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.inside >= count, timeout)


@pytest.mark.parametrize("peer", sorted(IMPLEMENTATIONS))
def test_one_connection_holds_at_most_max_streams_calls(peer: str) -> None:
    peer_flight = IMPLEMENTATIONS[peer]
    server = HoldingServer(free_location(), max_streams_per_connection=2)
    location = location_of(server)
    results: list[list[Any]] = []
    greedy = peer_flight.connect(location)
    try:
        options = peer_flight.FlightCallOptions(timeout=DEADLINE)
        calls = [
            threading.Thread(
                target=lambda: results.append(
                    list(greedy.do_action(peer_flight.Action("hold", b""), options))
                ),
                daemon=True,
            )
            for _ in range(3)
        ]
        for call in calls:
            call.start()
        assert server.wait_inside(2, DEADLINE)
        # The third call waits in the client for a free stream: a bounded look for
        # it (it would arrive at once without the limit), then a second connection
        # is still served.
        assert not server.wait_inside(3, 0.5)
        with flight.connect(location) as other:
            other_call = threading.Thread(
                target=lambda: list(
                    other.do_action(flight.Action("hold", b""), flight.FlightCallOptions(
                        timeout=DEADLINE))
                ),
                daemon=True,
            )
            other_call.start()
            assert server.wait_inside(3, DEADLINE)
            server.release.set()
            other_call.join(DEADLINE)
        for call in calls:
            call.join(DEADLINE)
        assert len(results) == 3 and server.inside == 4
    finally:
        server.release.set()
        greedy.close()
        server.shutdown()


def test_wait_returns_after_shutdown() -> None:
    server = PingServer(free_location())
    waited = threading.Event()

    def wait() -> None:
        server.wait()
        waited.set()

    threading.Thread(target=wait, daemon=True).start()
    server.shutdown()
    assert waited.wait(DEADLINE)


def test_serve_returns_after_shutdown_from_another_thread() -> None:
    server = PingServer(free_location())
    served = threading.Event()

    def serve() -> None:
        server.serve()
        served.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert _pings(location_of(server))
    server.shutdown()
    assert served.wait(DEADLINE)


def test_shutdown_stops_accepting_calls() -> None:
    server = PingServer(free_location())
    location = location_of(server)
    server.shutdown()
    with pytest.raises(flight.FlightUnavailableError), flight.connect(location) as client:
        client.list_actions(flight.FlightCallOptions(timeout=5))


def test_second_server_on_a_taken_port_is_an_error() -> None:
    location = free_location()
    first = PingServer(location)
    try:
        with pytest.raises(flight.FlightError, match="listen"):
            PingServer(location)
        assert _pings(location)
    finally:
        first.shutdown()


def test_init_twice_is_an_error() -> None:
    server = PingServer(free_location())
    try:
        with pytest.raises(flight.FlightError):
            server.init(flight.FlightServerOptions(free_location()))
    finally:
        server.shutdown()


def test_port_matches_the_requested_location() -> None:
    location = free_location()
    server = PingServer(location)
    try:
        assert f"grpc://localhost:{server.port}" == location
    finally:
        server.shutdown()


def test_a_server_class_that_is_not_hashable_starts_and_stops() -> None:
    class Unhashable(flight.FlightServerBase):
        def __eq__(self, other: object) -> bool:  # makes instances unhashable
            return self is other

    with Unhashable("grpc://localhost:0") as server:
        assert server.port > 0
