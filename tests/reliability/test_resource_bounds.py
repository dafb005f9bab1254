"""Resource bounds: oversized messages and headers, stuck and silent handshakes.

The bound on silent handshakes is tested on both engines (the ``engine`` fixture).

Each limit of FlightServerOptions refuses what exceeds it with a clear status
(RESOURCE_EXHAUSTED, or DEADLINE_EXCEEDED for a handshake that never finishes) and
leaves the server serving everyone else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from conftest import Engine
from raw_wire import flight_data, ipc_messages, raw_call, raw_channel, rpc_path

import flight_secure as flight
from flight_secure._generated import flight_pb2 as pb
from flight_secure.auth import BasicClientAuthHandler, BasicServerAuthHandler, PasswordStore
from flight_secure.wire import DEFAULT_MAX_MESSAGE_SIZE

from .conftest import (
    ADMITTED_TOKEN,
    CALL_TIMEOUT,
    Child,
    Echo,
    EchoServer,
    echo_call,
    peak_rss,
    report,
    upload,
)

USER, PASSWORD = "dave", "dave's password"
OPTIONS = flight.FlightCallOptions(timeout=CALL_TIMEOUT)
LIMIT = 64 * 1024
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def store() -> PasswordStore:
    made = PasswordStore(rounds=4)
    made.add(USER, PASSWORD)
    return made


def test_oversized_messages_are_refused_with_resource_exhausted() -> None:
    with EchoServer(max_message_size=LIMIT) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client:
        with pytest.raises(flight.FlightResourceExhaustedError, match="larger than max"):
            client.get_flight_info(flight.FlightDescriptor.for_command(b"c" * 4 * LIMIT),
                                   OPTIONS)
        big = upload(4 * LIMIT // 8)  # about four times the limit in one batch
        writer, _ = client.do_put(flight.FlightDescriptor.for_command(b"big"), big.schema,
                                  OPTIONS)
        with pytest.raises(flight.FlightResourceExhaustedError, match="larger than max"):
            writer.write_table(big)
            writer.close()
        small = upload(LIMIT // 16)
        assert echo_call(client, "DoPut", b"ok", OPTIONS, rows=small.num_rows) == \
            f"|none|ok|{small.num_rows}".encode()


def test_unauthenticated_requests_are_refused_before_they_are_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without credentials, 256 MiB requests and requests just under the default message
    limit, all at once, leave the server (in a child process, with its default limits)
    holding less than one message more at its peak."""
    huge = b"x" * (256 * MiB)
    under_limit = b"x" * (DEFAULT_MAX_MESSAGE_SIZE - MiB)
    calls = [("GetFlightInfo", huge), ("DoAction", huge), ("DoPut", [huge]), ("Handshake", [huge]),
             ("GetFlightInfo", under_limit), ("DoGet", under_limit), ("DoPut", [under_limit]),
             ("DoExchange", [under_limit])]
    with Child.python("serve", "echo-needing-a-token", log=tmp_path / "server.log") as server:
        port = int(server.expect("ready").split()[1])
        before = peak_rss(server.proc.pid)
        with raw_channel(port) as channel, ThreadPoolExecutor(len(calls)) as pool:
            outcomes = list(pool.map(lambda call: raw_call(channel, *call), calls))
            admitted = raw_call(channel, "DoAction", pb.Action(type="echo", body=b"n")
                                .SerializeToString(), [("auth-token-bin", ADMITTED_TOKEN)])
        rise = peak_rss(server.proc.pid) - before
    report(capsys, f"8 unauthenticated requests of {len(huge) * 4 + len(under_limit) * 4 >> 20} "
                   f"MiB in all: the server's peak RSS rose {rise / MiB:.1f} MiB")
    for (rpc, _), outcome in zip(calls, outcomes):
        assert outcome.code in (grpc.StatusCode.UNAUTHENTICATED,
                                grpc.StatusCode.RESOURCE_EXHAUSTED), (rpc, outcome)
    handshake = outcomes[3]
    assert handshake.code == grpc.StatusCode.RESOURCE_EXHAUSTED, handshake
    assert "larger than max" in handshake.details
    assert admitted.responses == (pb.Result(body=b"admitted|token|n").SerializeToString(),)
    assert rise < DEFAULT_MAX_MESSAGE_SIZE, f"the server's peak RSS rose {rise / MiB:.0f} MiB"


def test_oversized_handshake_payload_is_refused_with_resource_exhausted(
        store: PasswordStore) -> None:
    handler = BasicServerAuthHandler(store)
    try:
        with EchoServer(auth_handler=handler, max_message_size=LIMIT) as server, \
                raw_channel(server.port) as channel:
            payload = pb.HandshakeRequest(payload=b"p" * 4 * LIMIT).SerializeToString()
            outcome = raw_call(channel, "Handshake", [payload])
            assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
            with flight.connect(f"grpc://localhost:{server.port}") as client:
                client.authenticate(BasicClientAuthHandler(USER, PASSWORD), OPTIONS)
                assert echo_call(client, "DoAction", b"n", OPTIONS) == b"dave|basic|n"
    finally:
        handler.close()


@pytest.mark.parametrize(("limit", "header"), [
    (4096, "x-padding"), (4096, "authorization"), (4096, "auth-token-bin"),
    (None, "authorization"),
])
def test_oversized_headers_are_refused_with_resource_exhausted(limit: int | None,
                                                               header: str) -> None:
    options = {"max_metadata_size": limit} if limit else {"location": "grpc://localhost:0"}
    value: Any = b"v" * (4 * (limit or 16384)) if header.endswith("-bin") \
        else "v" * (4 * (limit or 16384))
    with EchoServer(**options) as server, raw_channel(server.port) as channel:
        for rpc, request in (("GetFlightInfo", b""), ("DoAction", b""), ("Handshake", [])):
            outcome = raw_call(channel, rpc, request, [(header, value)])
            assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, (rpc, outcome)
            assert "metadata size exceeds" in outcome.details
        with flight.connect(f"grpc://localhost:{server.port}") as client:
            fits = flight.FlightCallOptions(timeout=CALL_TIMEOUT, headers=[("x-padding",
                                                                            "v" * 1024)])
            assert echo_call(client, "DoAction", b"n", fits) == b"|none|n"


class StuckRequests:
    """A request stream that sends nothing until released, then ends."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        self.release.wait(CALL_TIMEOUT)
        yield from ()


@pytest.mark.parametrize(("limit", "message", "seconds"), [
    ({"handshake_timeout": 1.0, "max_concurrent_handshakes": 1},
     "handshake did not finish within 1 s", 1.0),
    ({"handshake_silence_timeout": 0.5}, "no credentials arrived within 0.5 s", 0.5),
], ids=["handshake_timeout", "handshake_silence_timeout"])
def test_a_stuck_handshake_is_ended_then_a_real_login_goes_through(
        store: PasswordStore, limit: dict[str, Any], message: str, seconds: float) -> None:
    handler = BasicServerAuthHandler(store)
    stuck = StuckRequests()
    try:
        with EchoServer(auth_handler=handler, **limit) as server, \
                raw_channel(server.port) as channel:
            began = time.monotonic()
            call = channel.stream_stream(rpc_path("Handshake"))(iter(stuck),
                                                                timeout=CALL_TIMEOUT)
            with pytest.raises(grpc.RpcError) as ended:
                list(call)
            elapsed = time.monotonic() - began
            assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert message in ended.value.details()
            assert 0.8 * seconds < elapsed < 5, elapsed
            with flight.connect(f"grpc://localhost:{server.port}") as client:
                client.authenticate(BasicClientAuthHandler(USER, PASSWORD), OPTIONS)
                assert echo_call(client, "DoAction", b"n", OPTIONS) == b"dave|basic|n"
    finally:
        stuck.release.set()
        handler.close()


class CountingLogins(BasicServerAuthHandler):
    """Basic logins that count the message handshakes in progress."""

    def __init__(self, store: PasswordStore) -> None:
        super().__init__(store)
        self.entered = threading.Semaphore(0)

    def authenticate_handshake(self, call: Any, outgoing: Any, incoming: Any) -> None:
        self.entered.release()
        super().authenticate_handshake(call, outgoing, incoming)


def test_silent_handshakes_are_bounded(engine: Engine, store: PasswordStore) -> None:
    """Handshakes that send no credentials: at most 4 of one network stay open past
    ``idle_after``, the fifth is refused then; a login that sends its credentials in
    its headers still goes through from the same network, and so does one by message.

    pyarrow's engine cannot end a silent handshake: it judges each one as it starts,
    every caller is of one network there, and its refusal is UNAVAILABLE (it has no
    RESOURCE_EXHAUSTED). So a login by message waits until the silent ones end."""
    limit = 4
    handler = CountingLogins(store)
    stuck = [StuckRequests() for _ in range(limit + 1)]
    on_python = engine.name == "python"
    if on_python:
        limits = {"handshake_timeout": CALL_TIMEOUT, "handshake_silence_timeout": CALL_TIMEOUT,
                  "max_idle_handshakes_per_peer": limit}
    else:
        limits = {"max_silent_handshakes": limit}
    refusal = grpc.StatusCode.RESOURCE_EXHAUSTED if on_python else grpc.StatusCode.UNAVAILABLE
    options = flight.FlightCallOptions(timeout=CALL_TIMEOUT)
    try:
        with engine.running(Echo, auth_handler=handler, **limits) as server, \
                raw_channel(server.port) as channel, \
                flight.connect(f"grpc://localhost:{server.port}") as client:
            handshake = channel.stream_stream(rpc_path("Handshake"))
            holding = [handshake(iter(s), timeout=CALL_TIMEOUT) for s in stuck[:limit]]
            for _ in range(limit):
                assert handler.entered.acquire(timeout=CALL_TIMEOUT), "handshakes not started"
            began = time.monotonic()
            with pytest.raises(grpc.RpcError) as extra:
                list(handshake(iter(stuck[limit]), timeout=CALL_TIMEOUT))
            assert extra.value.code() == refusal
            assert "too many handshakes without credentials" in extra.value.details()
            assert time.monotonic() - began < 5
            client.authenticate_basic_token(USER, PASSWORD, options)
            if on_python:
                client.authenticate(BasicClientAuthHandler(USER, PASSWORD), options)
            else:
                with pytest.raises(flight.FlightUnavailableError, match="without credentials"):
                    client.authenticate(BasicClientAuthHandler(USER, PASSWORD), options)
            for requests in stuck:
                requests.release.set()
            for call in holding:
                assert call.code() == grpc.StatusCode.UNAUTHENTICATED
            client.authenticate(BasicClientAuthHandler(USER, PASSWORD), options)
            assert echo_call(client, "DoAction", b"n", options) == b"dave|basic|n"
    finally:
        for requests in stuck:
            requests.release.set()
        handler.close()


# ----------------------------------------------------------- compressed batches


def zeros(megabytes: int) -> pa.Table:
    """A table of zeros: ``megabytes`` MiB that compress to a few kilobytes."""
    return pa.table({"z": np.zeros(megabytes * MiB // 8, np.int64)})


def compressed_upload(table: pa.Table, codec: str) -> list[bytes]:
    """The raw FlightData frames of a DoPut of ``table``, compressed with ``codec``."""
    messages = ipc_messages(table, pa.ipc.IpcWriteOptions(compression=codec))
    return [flight_data(header, body, "bomb" if index == 0 else None)
            for index, (header, body) in enumerate(messages)]


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_compressed_upload_is_measured_before_it_is_decompressed(
        codec: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """256 MiB of zeros in at most a megabyte or so, to a server (in a child process) with its
    default limits: refused with RESOURCE_EXHAUSTED, and never decompressed."""
    frames = compressed_upload(zeros(256), codec)
    assert sum(map(len, frames)) < 2 * MiB  # LZ4 frames compress at most ~250:1
    with Child.python("serve", "reads-values", log=tmp_path / "server.log") as server:
        port = int(server.expect("ready").split()[1])
        before = peak_rss(server.proc.pid)
        with raw_channel(port) as channel:
            outcome = raw_call(channel, "DoPut", frames)
            pong = raw_call(channel, "DoAction", b"").responses
        assert pong == (pb.Result(body=b"pong").SerializeToString(),)
        rise = peak_rss(server.proc.pid) - before
    report(capsys, f"{codec} upload of {sum(map(len, frames)) >> 10} KiB declaring 256 MiB: "
                   f"the server's peak RSS rose {rise / MiB:.1f} MiB")
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
    assert f"{256 * MiB} bytes once decompressed" in outcome.details
    assert rise < DEFAULT_MAX_MESSAGE_SIZE, f"the server's peak RSS rose {rise / MiB:.0f} MiB"


@pytest.mark.parametrize("rpc", ["DoPut", "DoExchange"])
def test_compressed_batches_are_bounded_by_the_message_limit(rpc: str) -> None:
    zstd = flight.FlightCallOptions(timeout=CALL_TIMEOUT,
                                    write_options=pa.ipc.IpcWriteOptions(compression="zstd"))
    with EchoServer(max_message_size=4 * MiB) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client:
        data = zeros(16)
        with pytest.raises(flight.FlightResourceExhaustedError,
                           match=f"{16 * MiB} bytes once decompressed, more than the limit of "
                                 f"{4 * MiB} bytes"):
            writer, _ = (client.do_put if rpc == "DoPut" else client.do_exchange)(
                flight.FlightDescriptor.for_command(b"bomb"),
                *((data.schema,) if rpc == "DoPut" else ()), zstd)
            if rpc == "DoExchange":
                writer.begin(data.schema, zstd.write_options)
            writer.write_table(data)
            writer.close()
        small = upload(1000)
        assert echo_call(client, rpc, b"ok", zstd, rows=small.num_rows) == b"|none|ok|1000"


class CompressedZeros:
    """DoGet answers with 16 MiB of zeros, ZSTD-compressed to a few kilobytes."""

    flight: Any

    def do_get(self, context: Any, ticket: Any) -> Any:
        options = pa.ipc.IpcWriteOptions(compression="zstd")
        return self.flight.RecordBatchStream(zeros(16), options=options)


def test_the_client_measures_compressed_batches_before_decompressing() -> None:
    server_class = type("Server", (CompressedZeros, pa_flight.FlightServerBase),
                        {"flight": pa_flight})
    with server_class("grpc://localhost:0") as server:
        location = f"grpc://localhost:{server.port}"
        with flight.connect(location, max_decompressed_size=4 * MiB) as client, \
                pytest.raises(flight.FlightResourceExhaustedError, match="once decompressed"):
            client.do_get(flight.Ticket(b"zeros"), OPTIONS).read_all()
        with flight.connect(location, max_decompressed_size=-1) as client:
            assert client.do_get(flight.Ticket(b"zeros"), OPTIONS).read_all().equals(zeros(16))
