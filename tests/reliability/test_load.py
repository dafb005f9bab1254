"""Many calls at once: each one is served, or refused with a reason; none is dropped.

grpcio takes arriving calls from gRPC's core one at a time, on one Python thread.
Calls that arrive faster wait in the core's pending queue, which by default
cancels calls at random (bare CANCELLED, nothing logged) once more than 1,000 wait
there. That is what 1024 clients met: about 0.5% of their calls failed within
milliseconds. The server lifts the core's limits, so a waiting call waits.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from raw_wire import raw_channel, rpc_path

from flight_secure._generated import flight_pb2 as pb

from .conftest import CALL_TIMEOUT, Child, report

#: More calls than gRPC's default pending-queue limit (1,000) lets wait.
WAITING_CALLS = 2000
#: Client processes x clients each (each client its own connection), and seconds of calls.
PROCESSES, CLIENTS_EACH, SECONDS = 8, 128, 30


def test_calls_arriving_while_the_server_is_busy_wait_their_turn(tmp_path: Path) -> None:
    with Child.python("serve", "holds-the-interpreter", log=tmp_path / "server.log") as server:
        port = int(server.expect("ready").split()[1])
        with raw_channel(port) as channel:
            hold = channel.unary_stream(rpc_path("DoAction"))(
                pb.Action(type="hold").SerializeToString(), timeout=CALL_TIMEOUT)
            server.expect("event holding")
            info = channel.unary_unary(rpc_path("GetFlightInfo"))
            calls = [
                info.future(pb.FlightDescriptor(type=pb.FlightDescriptor.CMD,
                                                cmd=b"%d" % number).SerializeToString(),
                            timeout=CALL_TIMEOUT)
                for number in range(WAITING_CALLS)
            ]
            assert [pb.Result.FromString(r).body for r in hold] == [b"held"]
            outcomes = Counter(_outcome(call) for call in calls)
    assert outcomes == Counter({"OK": WAITING_CALLS})


def _outcome(call: grpc.Future) -> str:
    try:
        call.result()
    except grpc.RpcError as error:
        return f"{error.code().name}: {error.details()}"
    return "OK"


@pytest.mark.slow
def test_1024_pyarrow_clients_make_mixed_calls_without_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1024 pyarrow.flight clients (8 processes x 128, each its own connection) cycle
    through GetFlightInfo, DoAction, DoGet, DoPut and DoExchange with a token for 30 s."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(
            Child.python("serve", "echo-needing-a-token", log=tmp_path / "server.log"))
        location = f"grpc://localhost:{int(server.expect('ready').split()[1])}"
        config = json.dumps({"location": location, "clients": CLIENTS_EACH, "seconds": SECONDS})
        clients = [stack.enter_context(Child.python("pyarrow-clients", config,
                                                    log=tmp_path / f"clients-{n}.log"))
                   for n in range(PROCESSES)]
        for child in clients:
            child.expect("connected", timeout=120)
        began = time.monotonic()
        results = [json.loads(child.expect("done", timeout=SECONDS + 120).split(" ", 1)[1])
                   for child in clients]
        elapsed = time.monotonic() - began
    calls = sum((Counter(r["calls"]) for r in results), Counter())
    errors = sum((Counter(r["errors"]) for r in results), Counter())
    report(capsys, f"{PROCESSES * CLIENTS_EACH} pyarrow clients: {calls.total()} calls in "
                   f"{elapsed:.0f} s ({dict(calls)}), {errors.total()} errors, "
                   f"{sum(r['wrong'] for r in results)} wrong answers")
    assert errors == Counter()
    assert sum(r["wrong"] for r in results) == 0
    assert set(calls) == {"GetFlightInfo", "DoAction", "DoGet", "DoPut", "DoExchange"}
