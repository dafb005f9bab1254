"""Shared pieces of the reliability suite.

* :func:`bounded`: how every wait here loops, bounded in attempts *and* in time.
* :class:`Echo` (a behaviour for either engine), :class:`EchoServer` (it on
  flight_secure's) and :func:`echo_call`: every data RPC answers ``who|scheme|nonce``,
  the caller's identity and auth scheme as the handler saw them plus the call's own
  nonce, so a test sees cross-talk between callers and answers given to the wrong call.
* :class:`TokenOrCertificate`: one server that admits Basic, JWT and mTLS callers.
* :func:`assert_refused_cleanly`: a raw call (``raw_wire``) was refused as hostile input is.
* :class:`Child`: a process to kill mid-call, or a server that may crash or hang
  without taking pytest down; :data:`CHILD_MAINS` names what a child can run.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import jwt
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from raw_wire import Outcome, flight_data, ipc_messages

import flight_secure as flight
from flight_secure.arrow import principal
from flight_secure.auth.base import CallCredentials, HeaderLogin, Principal, ServerAuthHandler
from flight_secure.auth.basic import BasicClientAuthHandler
from flight_secure.certs import DevCertificates, generate_dev_certificates

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
#: Seconds every single call in this suite may take before it counts as a hang.
CALL_TIMEOUT = 20.0
#: The statuses a hostile request may get: a refusal that names the problem.
HOSTILE_OUTCOMES = frozenset({
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
})
#: The data RPCs :class:`EchoServer` answers.
ECHO_RPCS = ("GetFlightInfo", "DoAction", "DoGet", "DoPut", "DoExchange")
#: Client certificate names in the session's PKI: ``client-00`` ... and ``alice``.
LOAD_CLIENTS = 64


def bounded(what: str, *, seconds: float, attempts: int, pause: float = 0.0) -> Iterator[int]:
    """Attempt numbers for a retry loop; fail the test when time or attempts run out.

    The caller ``break`` s when its condition holds; ``pause`` seconds pass between
    attempts (a retry-with-deadline, for states no event announces).
    """
    deadline = time.monotonic() + seconds
    for attempt in range(attempts):
        if attempt and pause:
            time.sleep(pause)
        if time.monotonic() > deadline:
            break
        yield attempt
    pytest.fail(f"{what}: not reached within {seconds:g} s and {attempts} attempts")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Print a measured figure to the terminal even under output capture."""
    with capsys.disabled():
        print(f"\n[reliability] {line}")


# ------------------------------------------------------------------- echo server


class Echo:
    """A behaviour (either engine): each data RPC answers ``who|scheme|nonce``.

    DoPut and DoExchange add ``|rows``. The nonce is the descriptor's command
    (GetFlightInfo, DoPut, DoExchange; empty for a path), the ticket (DoGet) or the action body
    (DoAction ``echo``). ``seen`` counts the calls per (identity, RPC) as the
    handlers saw them. DoAction ``fail`` raises ``RuntimeError`` with the body as
    its message.
    """

    flight: ModuleType

    def __init__(self, *args: Any, **options: Any) -> None:
        self.seen: Counter[tuple[str, str]] = Counter()
        self._seen_lock = threading.Lock()
        super().__init__(*args, **options)

    def _answer(self, context: Any, rpc: str, nonce: bytes) -> bytes:
        caller = principal(context)
        who, scheme = (caller.name, caller.method) if caller else ("", "none")
        with self._seen_lock:
            self.seen[(who, rpc)] += 1
        return f"{who}|{scheme}|".encode() + nonce

    def get_flight_info(self, context: Any, descriptor: Any) -> Any:
        answer = self._answer(context, "GetFlightInfo", descriptor.command or b"")
        return self.flight.FlightInfo(pa.schema([]),
                                      self.flight.FlightDescriptor.for_command(answer), [])

    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        body = action.body.to_pybytes()
        if action.type == "fail":
            raise RuntimeError(body.decode())
        yield self._answer(context, "DoAction", body)

    def do_get(self, context: Any, ticket: Any) -> Any:
        answer = self._answer(context, "DoGet", ticket.ticket)
        table = pa.table({"answer": pa.array([answer], pa.binary())})
        return self.flight.RecordBatchStream(table)

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        rows = reader.read_all().num_rows
        answer = self._answer(context, "DoPut", descriptor.command or b"")
        writer.write(answer + f"|{rows}".encode())

    def do_exchange(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        rows = reader.read_all().num_rows
        answer = self._answer(context, "DoExchange", descriptor.command or b"")
        writer.begin(pa.schema([("answer", pa.binary())]))
        writer.write_table(pa.table({"answer": pa.array([answer + f"|{rows}".encode()])}))


class EchoServer(Echo, flight.FlightServerBase):
    """:class:`Echo` on flight_secure's engine."""

    flight = flight


def upload(rows: int) -> pa.Table:
    return pa.table({"n": pa.array(range(rows), pa.int64())})


def echo_call(client: Any, rpc: str, nonce: bytes, options: Any, rows: int = 3,
              peer: ModuleType = flight) -> bytes:
    """Make one ``rpc`` call to an :class:`EchoServer`; its answer.

    ``client`` and ``options`` are of ``peer``, flight_secure or pyarrow.flight.
    """
    if rpc == "GetFlightInfo":
        info = client.get_flight_info(peer.FlightDescriptor.for_command(nonce), options)
        return info.descriptor.command
    if rpc == "DoAction":
        results = list(client.do_action(peer.Action("echo", nonce), options))
        assert len(results) == 1
        return results[0].body.to_pybytes()
    if rpc == "DoGet":
        return client.do_get(peer.Ticket(nonce), options).read_all()["answer"][0].as_py()
    data = upload(rows)
    descriptor = peer.FlightDescriptor.for_command(nonce)
    if rpc == "DoPut":
        writer, acks = client.do_put(descriptor, data.schema, options)
        writer.write_table(data)
        writer.done_writing()
        answer = acks.read()
        writer.close()
        return answer.to_pybytes()
    assert rpc == "DoExchange"
    writer, reader = client.do_exchange(descriptor, options)
    writer.begin(data.schema)
    writer.write_table(data)
    writer.done_writing()
    answer = reader.read_all()["answer"][0].as_py()
    writer.close()
    return answer


def expected_answer(who: str, scheme: str, rpc: str, nonce: bytes, rows: int = 3) -> bytes:
    answer = f"{who}|{scheme}|".encode() + nonce
    return answer + f"|{rows}".encode() if rpc in ("DoPut", "DoExchange") else answer


# ----------------------------------------------------------------- mixed auth


class TokenOrCertificate(ServerAuthHandler):
    """Admits a caller by its token when it sends one, else by its client certificate.

    A token goes to the handler registered for its (unverified) ``iss`` claim, or to
    ``logins`` when none is; Handshakes go to ``logins`` (Basic passwords). A test
    composition: flight_secure's ``MutualTLSServerAuthHandler(inner=...)`` requires a
    certificate *and* a token, and this suite wants callers of each kind side by side.
    """

    def __init__(self, logins: ServerAuthHandler, by_issuer: Mapping[str, ServerAuthHandler],
                 certificates: ServerAuthHandler) -> None:
        self.logins = logins
        self.by_issuer = dict(by_issuer)
        self.certificates = certificates

    def _for(self, token: str) -> Any:
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return self.logins
        return self.by_issuer.get(issuer, self.logins)

    def authenticate_call(self, call: CallCredentials) -> Principal:
        raw = call.auth_token
        token = raw.decode("latin-1") if raw else call.bearer_token
        if not token:
            return self.certificates.authenticate_call(call)
        return self._for(token).authenticate_call(call)

    def authenticate_headers(self, call: CallCredentials) -> HeaderLogin | None:
        return self.logins.authenticate_headers(call)

    def authenticate_handshake(self, call: CallCredentials, outgoing: Any, incoming: Any) -> None:
        self.logins.authenticate_handshake(call, outgoing, incoming)

    def is_valid(self, token: bytes) -> str:
        return self.logins.is_valid(token)


# ------------------------------------------------------------------ TLS and PKI


def client_cert_name(index: int) -> str:
    return f"client-{index:02d}"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevCertificates:
    """A development CA, a localhost server certificate and 64 client certificates + alice."""
    names = [client_cert_name(i) for i in range(LOAD_CLIENTS)] + ["alice"]
    return generate_dev_certificates(tmp_path_factory.mktemp("pki"),
                                     hosts=("localhost", "127.0.0.1"), clients=names)


def mtls_server_options(pki: DevCertificates) -> dict[str, Any]:
    """Server options for ``grpc+tls://localhost`` demanding a client certificate."""
    return {"location": "grpc+tls://localhost:0",
            "tls_certificates": [flight.CertKeyPair(*pki.server_pems())],
            "verify_client": True, "root_certificates": pki.ca_cert_pem()}


def mtls_client(pki: DevCertificates, port: int, name: str) -> flight.FlightClient:
    """A client presenting certificate ``name`` to the TLS server on ``port``."""
    cert, key = pki.client_pems(name)
    return flight.connect(f"grpc+tls://localhost:{port}", tls_root_certs=pki.ca_cert_pem(),
                          cert_chain=cert, private_key=key)


# ---------------------------------------------------------------------- raw gRPC

def assert_refused_cleanly(outcome: Outcome,
                           allowed: frozenset[grpc.StatusCode] = HOSTILE_OUTCOMES) -> None:
    """A hostile request was refused with an allowed status and no traceback."""
    assert outcome.code in allowed, f"status {outcome.code.name}: {outcome.details!r}"
    assert "Traceback" not in outcome.details


# ------------------------------------------------------------------ fuzzing

#: Hypothesis settings: modest in the default suite, thousands of examples in ``slow``.
QUICK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def quick_and_long(check: Callable[..., None], examples: Sequence[Mapping[str, Any]] = (),
                   **strategies: st.SearchStrategy) -> tuple[Callable[..., None],
                                                             Callable[..., None]]:
    """The property ``check`` as two tests: QUICK for the default suite, LONG marked slow.

    ``examples`` are inputs always tried (known past failures); ``strategies`` draw
    ``check``'s other arguments, its fixtures come from pytest. Assign the pair to two
    ``test_...`` names in the test module.
    """
    for known in examples:
        check = example(**known)(check)
    return (QUICK(given(**strategies)(check)),
            pytest.mark.slow(LONG(given(**strategies)(check))))


#: A valid upload with strings, lists, a struct and a dictionary column.
VALID_TABLE = pa.table({
    "s": ["abc", "de", None, "fghij"],
    "l": pa.array([[1, 2], [3], [], None], pa.list_(pa.int32())),
    "st": pa.array([{"x": 1}, {"x": 2}, None, {"x": 4}], pa.struct([("x", pa.int8())])),
    "d": pa.array(["x", "y", "x", "z"]).dictionary_encode(),
    "i": pa.array([1, 2, 3, 4], pa.int64()),
})
VALID_FRAMES = [flight_data(header, body, "upload" if index == 0 else None)
                for index, (header, body) in enumerate(ipc_messages(VALID_TABLE))]
#: Values that break offsets and lengths when written over an int32 or int64.
NASTY_INTS = [-1, -(2**31), 2**31 - 1, 2**15, 0, 1, 7, 65536, 10**9]


@st.composite
def mutated_streams(draw: st.DrawFn) -> list[bytes]:
    """A valid upload with a few byte flips, truncations, drops, copies or overwrites."""
    frames = [bytearray(frame) for frame in VALID_FRAMES]
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(frames) - 1))
        frame = frames[index]
        operation = draw(st.sampled_from(["flip", "int32", "int64", "truncate", "drop",
                                          "duplicate", "junk"]))
        if operation in ("flip", "int32", "int64", "truncate") and not frame:
            continue
        position = draw(st.integers(0, max(0, len(frame) - 1)))
        if operation == "flip":
            frame[position] = draw(st.integers(0, 255))
        elif operation in ("int32", "int64"):
            size, code = (4, "<i") if operation == "int32" else (8, "<q")
            if len(frame) >= size:
                position = min(position, len(frame) - size)
                value = draw(st.sampled_from(NASTY_INTS) | st.integers(-(2**31), 2**31 - 1))
                struct.pack_into(code, frame, position, value)
        elif operation == "truncate":
            del frame[position:]
        elif operation == "drop" and len(frames) > 1:
            del frames[index]
        elif operation == "duplicate":
            frames.insert(index, bytearray(frame))
        elif operation == "junk":
            frames.insert(index, bytearray(draw(st.binary(max_size=256))))
    return [bytes(frame) for frame in frames]



def crafted_string_offsets(last_offset: int) -> list[bytes]:
    """An upload of ``["abc", "de"]`` whose last string offset is ``last_offset``.

    The IPC structure is intact (buffer sizes, lengths); only the offset lies, so
    the batch passes the cheap checks and fails ``validate(full=True)``.
    """
    messages = ipc_messages(pa.table({"s": ["abc", "de"]}))
    header, body = messages[1]
    honest = struct.pack("<iii", 0, 3, 5)
    assert body.count(honest) == 1
    body = body.replace(honest, struct.pack("<iii", 0, 3, last_offset))
    return [flight_data(messages[0][0], b"", "crafted"), flight_data(header, body)]


def dictionary_id_mismatch() -> list[bytes]:
    """An upload whose dictionary batch names a dictionary id its schema does not declare."""
    values = pa.array(["x", "y"]).dictionary_encode()
    one = ipc_messages(pa.table({"d": values}))
    two = ipc_messages(pa.table({"a": values, "b": values}))  # its second dictionary is id 1
    return [flight_data(*one[0], "mismatch"), flight_data(*two[2]), flight_data(*one[2])]


# ---------------------------------------------------------------- child processes

_BOOT = ("import sys; from reliability.conftest import CHILD_MAINS; "
         "CHILD_MAINS[sys.argv[1]](sys.argv[2:])")


class Child:
    """A process whose stdout lines are read on a thread, so every wait can time out.

    stderr goes to ``log`` (a pipe nobody reads could fill up and stall the child).
    """

    def __init__(self, argv: Sequence[str], log: Path, cwd: Path = ROOT) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
        self.log = log
        with open(log, "wb") as sink:
            self.proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=sink, text=True,
                                         cwd=cwd, env=env)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.printed: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    @classmethod
    def python(cls, main: str, *args: str, log: Path) -> Child:
        """Run ``CHILD_MAINS[main](args)`` in a fresh interpreter."""
        return cls([sys.executable, "-c", _BOOT, main, *args], log)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.printed.append(line.rstrip("\n"))
            self._lines.put(self.printed[-1])
        self._lines.put(None)

    def expect(self, prefix: str, timeout: float = CALL_TIMEOUT) -> str:
        """The next stdout line starting with ``prefix``; fail on exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                pytest.fail(f"child printed no {prefix!r} line within {timeout:g} s")
            if line is None:
                pytest.fail(f"child exited ({self.describe_exit()}) before printing {prefix!r}")
            if line.startswith(prefix):
                return line

    def has_printed(self, prefix: str) -> bool:
        """Whether a stdout line so far starts with ``prefix`` (does not wait)."""
        return any(line.startswith(prefix) for line in list(self.printed))

    def describe_exit(self) -> str:
        code = self.proc.wait(timeout=CALL_TIMEOUT)
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        tail = self.log.read_text(errors="replace")[-2000:]
        return f"{how}; stderr: {tail}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=CALL_TIMEOUT)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


_print_lock = threading.Lock()


def _event(*words: str) -> None:
    """Tell the parent process something happened (one stdout line)."""
    with _print_lock:
        print("event", *words, flush=True)


class WritesUntilCancelled(flight.FlightServerBase):
    """Handlers that write until the call ends, then report how they ended.

    DoPut writes acks, DoExchange batches; both report ``event entered <rpc>`` and
    ``event returned <rpc> <exception type>``. DoExchange on path ``echo`` instead
    echoes what it reads (a call that needs a helper thread, to probe the pool).
    """

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        self._write_until_error("DoPut", lambda: writer.write(b"x" * 1024))

    def do_exchange(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        if descriptor.path == [b"echo"]:
            table = reader.read_all()
            writer.begin(table.schema)
            writer.write_table(table)
            return
        writer.begin(pa.schema([("n", pa.int64())]))
        batch = upload(1024)
        self._write_until_error("DoExchange", lambda: writer.write_table(batch))

    @staticmethod
    def _write_until_error(rpc: str, write: Callable[[], None]) -> None:
        _event("entered", rpc)
        outcome = "wrote-everything"
        try:
            for _ in range(100_000):
                write()
        except Exception as exc:
            outcome = type(exc).__name__
        _event("returned", rpc, outcome)


class ReadsValues(flight.FlightServerBase):
    """A DoPut handler that looks at the values it receives, as real handlers do."""

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        rows = reader.read_all().to_pylist()
        writer.write(str(len(rows)).encode())

    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        yield b"pong"


#: The token :class:`NeedsAToken` admits.
ADMITTED_TOKEN = b"let-me-in"


class NeedsAToken(ServerAuthHandler):
    """Admits calls that carry :data:`ADMITTED_TOKEN`; every handshake is refused."""

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        incoming.read()
        raise flight.FlightUnauthenticatedError("this server takes no logins")

    def is_valid(self, token: bytes) -> bytes:
        if token != ADMITTED_TOKEN:
            raise flight.FlightUnauthenticatedError("no valid token")
        return b"admitted"


class EchoNeedingAToken(EchoServer):
    """An :class:`EchoServer` whose callers need :data:`ADMITTED_TOKEN`."""

    def __init__(self, **options: Any) -> None:
        super().__init__(auth_handler=NeedsAToken(), **options)


class HoldsTheInterpreter(EchoServer):
    """DoAction ``hold`` keeps Python's interpreter lock for seconds: it prints
    ``event holding``, then computes one long integer power (a single bytecode, so no
    other thread of the server runs until it ends). Other calls are EchoServer's."""

    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        if action.type != "hold":
            yield from super().do_action(context, action)
            return
        _event("holding")
        7 ** 5_000_000  # noqa: B018 - the computation is the point
        yield b"held"


CHILD_SERVERS: dict[str, type[flight.FlightServerBase]] = {
    "writes-until-cancelled": WritesUntilCancelled,
    "reads-values": ReadsValues,
    "echo-needing-a-token": EchoNeedingAToken,
    "holds-the-interpreter": HoldsTheInterpreter,
}


def peak_rss(pid: int) -> int:
    """The most memory process ``pid`` has held resident so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def _serve(argv: list[str]) -> None:
    """``<behaviour> <options json>``: serve on localhost until stdin closes.

    Prints ``ready <port>``. Exits with ``os._exit`` so that a handler thread stuck
    forever cannot keep the process alive (the thing some tests look for).
    """
    options = json.loads(argv[1]) if len(argv) > 1 else {}
    server = CHILD_SERVERS[argv[0]](location="grpc://localhost:0", **options)
    print(f"ready {server.port}", flush=True)
    sys.stdin.readline()
    server.shutdown(grace=0)
    os._exit(0)


def _upload_then_hang(argv: list[str]) -> None:
    """``<config json>``: start a DoPut, write batches, print ``written``, then hang.

    Config: ``location``, ``name`` (descriptor path), ``batches``, ``rows`` and
    optionally ``ca`` (PEM path) and ``user``/``password`` (Basic header login).
    """
    config = json.loads(argv[0])
    ca = Path(config["ca"]).read_bytes() if config.get("ca") else None
    client = flight.connect(config["location"], tls_root_certs=ca)
    headers = []
    if config.get("user"):
        headers.append(client.authenticate_basic_token(config["user"], config["password"]))
    options = flight.FlightCallOptions(headers=headers)
    data = upload(config["rows"])
    writer, _ = client.do_put(flight.FlightDescriptor.for_path(config["name"]), data.schema,
                              options)
    for _ in range(config["batches"]):
        writer.write_table(data)
    print("written", flush=True)
    sys.stdin.readline()  # the parent kills the process here


#: What a refused login tells the client, per LoginGuard reason (auth.basic.REFUSALS).
REASON_OF_MESSAGE = {
    "invalid username or password": "bad_credentials",
    "too many failed logins": "throttled",
    "too many logins in progress": "busy",
    "the login took too long": "timeout",
}


def login_refusal(error: flight.FlightUnauthenticatedError) -> str:
    """The LoginGuard reason a refused login's message stands for."""
    text = str(error)
    return next((reason for message, reason in REASON_OF_MESSAGE.items() if message in text),
                f"unexpected: {text}")


def _guess_passwords(argv: list[str]) -> None:
    """``<config json>``: threads guessing passwords until stdin closes or they are done.

    Config: ``location``, ``users``, ``threads``, ``guesses`` (each thread's maximum).
    Guesses alternate between the Handshake message and the ``authorization: Basic``
    header. Prints ``started`` once every thread has guessed, then ``done <json>``:
    the count of each refusal reason. Prints ``throttled`` at the first throttled refusal.
    """
    config = json.loads(argv[0])
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    threads = config["threads"]

    def guess(number: int) -> None:
        options = flight.FlightCallOptions(timeout=CALL_TIMEOUT)
        with flight.connect(config["location"]) as client:
            for attempt in range(config["guesses"]):
                if stop.is_set():
                    return
                user = config["users"][(number + attempt) % len(config["users"])]
                try:
                    if attempt % 2:
                        client.authenticate_basic_token(user, f"guess-{attempt}", options)
                    else:
                        client.authenticate(
                            BasicClientAuthHandler(user, f"guess-{attempt}"), options)
                    reason = "accepted"
                except flight.FlightUnauthenticatedError as exc:
                    reason = login_refusal(exc)
                with lock:
                    outcomes[reason] += 1
                    if outcomes.total() == threads:
                        print("started", flush=True)
                    if reason == "throttled" and outcomes[reason] == 1:
                        print("throttled", flush=True)

    workers = [threading.Thread(target=guess, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    for worker in workers:
        worker.join()
    print("done", json.dumps(outcomes), flush=True)


def _pyarrow_clients(argv: list[str]) -> None:
    """``<config json>``: pyarrow.flight clients calling an :class:`EchoNeedingAToken`.

    Config: ``location``, ``clients`` (each its own connection and thread),
    ``seconds``. Each client cycles through :data:`ECHO_RPCS` with its own nonces
    and checks every answer. Prints ``connected`` once every client is connected,
    then ``done <json>``: ``calls`` per RPC, ``wrong`` answers and ``errors``
    (``"<rpc> <error type>: <message>"`` -> count).
    """
    import pyarrow.flight as pa_flight

    # pyarrow answers a call that ends CANCELLED by simulating Ctrl-C in the main
    # thread; ignoring SIGINT keeps such a call an error counted here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(argv[0])
    options = pa_flight.FlightCallOptions(timeout=CALL_TIMEOUT,
                                          headers=[(b"auth-token-bin", ADMITTED_TOKEN)])
    calls: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    wrong = 0
    lock = threading.Lock()
    connected = threading.Barrier(config["clients"], action=lambda: print("connected",
                                                                           flush=True))

    def run(number: int) -> None:
        nonlocal wrong
        client = pa_flight.connect(config["location"])
        connected.wait(CALL_TIMEOUT)
        deadline = time.monotonic() + config["seconds"]
        count = 0
        while time.monotonic() < deadline:
            rpc = ECHO_RPCS[(number + count) % len(ECHO_RPCS)]
            nonce = f"{number}-{count}".encode()
            count += 1
            try:
                answer = echo_call(client, rpc, nonce, options, peer=pa_flight)
            except Exception as exc:
                with lock:
                    errors[f"{rpc} {type(exc).__name__}: {str(exc)[:160]}"] += 1
                continue
            with lock:
                calls[rpc] += 1
                wrong += answer != expected_answer("admitted", "token", rpc, nonce)
        client.close()

    workers = [threading.Thread(target=run, args=(n,)) for n in range(config["clients"])]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print("done", json.dumps({"calls": calls, "wrong": wrong, "errors": errors}), flush=True)


CHILD_MAINS: dict[str, Callable[[list[str]], None]] = {
    "serve": _serve,
    "upload-then-hang": _upload_then_hang,
    "guess-passwords": _guess_passwords,
    "pyarrow-clients": _pyarrow_clients,
}
