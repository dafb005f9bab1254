"""Identity isolation under load: many callers of every auth kind, zero cross-talk.

Callers log in five ways on one mTLS server: Basic over the Handshake message and
over the ``authorization: Basic`` header, an identity provider's JWT as ``Bearer``
and as ``auth-token-bin``, and a client certificate alone. Every call carries its
own nonce; the handler answers with the identity and scheme it saw, so a call
that saw another caller, the wrong scheme, or another call's answer is caught.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import flight_secure as flight
from flight_secure.auth import (
    BasicClientAuthHandler,
    BasicServerAuthHandler,
    JWTIssuer,
    JWTServerAuthHandler,
    JWTVerifier,
    LoginGuard,
    PasswordStore,
)
from flight_secure.auth.mtls import MutualTLSServerAuthHandler
from flight_secure.certs import DevCertificates

from .conftest import (
    CALL_TIMEOUT,
    ECHO_RPCS,
    LOAD_CLIENTS,
    EchoServer,
    TokenOrCertificate,
    bounded,
    client_cert_name,
    echo_call,
    expected_answer,
    mtls_client,
    mtls_server_options,
    report,
)

IDP = "https://idp.reliability.test"
#: How a caller logs in, and the scheme its calls must then carry.
KINDS = {
    "basic-handshake": "basic",
    "basic-header": "basic",
    "jwt-bearer": "jwt",
    "jwt-token-bin": "jwt",
    "mtls": "mtls",
}


@dataclass(frozen=True)
class Caller:
    index: int
    kind: str

    @property
    def cert(self) -> str:
        return client_cert_name(self.index)

    @property
    def name(self) -> str:
        """The identity calls must see: the certificate's for mTLS, else the user's."""
        return self.cert if self.kind == "mtls" else f"{self.kind}-{self.index:02d}"

    @property
    def password(self) -> str:
        return f"pw-{self.index}-{self.kind}"


@dataclass
class Tally:
    calls: Counter[str] = field(default_factory=Counter)
    wrong: list[tuple[str, str, bytes, bytes]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    login_retries: int = 0


@dataclass
class Deployment:
    server: EchoServer
    issuer: JWTIssuer
    pki: DevCertificates


@pytest.fixture(scope="module")
def deployment(pki: DevCertificates) -> Iterator[Deployment]:
    """One mTLS server admitting Basic, IdP-JWT and certificate-only callers."""
    store = PasswordStore(rounds=4)
    for index in range(LOAD_CLIENTS):
        caller = Caller(index, list(KINDS)[index % len(KINDS)])
        if caller.kind.startswith("basic"):
            store.add(caller.name, caller.password)
    idp_key = ec.generate_private_key(ec.SECP256R1())
    issuer = JWTIssuer(idp_key, "ES256", issuer=IDP)
    # Many legitimate logins at once from one host: the default per-peer budget (20
    # in flight) would refuse some as "busy", by design; this deployment allows more.
    guard = LoginGuard(max_waiting=256, max_failures_per_network=1000)
    logins = BasicServerAuthHandler(store, guard=guard)
    idp_tokens = JWTServerAuthHandler(JWTVerifier(idp_key.public_key(), ["ES256"], issuer=IDP))
    handler = TokenOrCertificate(logins, {IDP: idp_tokens}, MutualTLSServerAuthHandler())
    server = EchoServer(auth_handler=handler, **mtls_server_options(pki))
    try:
        yield Deployment(server, issuer, pki)
    finally:
        server.shutdown()
        guard.close()


def log_in_once(caller: Caller, client: flight.FlightClient, issuer: JWTIssuer) -> list:
    """Authenticate ``client`` the way ``caller`` does; the headers its calls carry."""
    options = flight.FlightCallOptions(timeout=CALL_TIMEOUT)
    if caller.kind == "basic-handshake":
        client.authenticate(BasicClientAuthHandler(caller.name, caller.password), options)
        return []
    if caller.kind == "basic-header":
        return [client.authenticate_basic_token(caller.name, caller.password, options)]
    if caller.kind == "jwt-bearer":
        return [(b"authorization", f"Bearer {issuer.issue(caller.name)}".encode())]
    if caller.kind == "jwt-token-bin":
        return [(b"auth-token-bin", issuer.issue(caller.name).encode())]
    return []


def log_in(caller: Caller, client: flight.FlightClient, issuer: JWTIssuer,
           tally: Tally) -> list:
    """:func:`log_in_once`, retried while the server has no handshake slot free (it
    allows ``max_concurrent_handshakes`` at once and asks the others to retry)."""
    for _ in bounded(f"a handshake slot for {caller.name}", seconds=CALL_TIMEOUT,
                     attempts=1000, pause=0.01):
        try:
            return log_in_once(caller, client, issuer)
        except flight.FlightResourceExhaustedError:
            tally.login_retries += 1
    return []


def session(deployment: Deployment, caller: Caller, calls: int, start: threading.Barrier,
            tally: Tally) -> None:
    """Log in, wait for every caller, then make ``calls`` calls of random RPCs."""
    order = random.Random(caller.index)
    scheme = KINDS[caller.kind]
    with mtls_client(deployment.pki, deployment.server.port, caller.cert) as client:
        try:
            headers = log_in(caller, client, deployment.issuer, tally)
        except BaseException:
            start.abort()  # the others stop waiting; this error is the one to see
            raise
        options = flight.FlightCallOptions(timeout=CALL_TIMEOUT, headers=headers)
        start.wait(timeout=CALL_TIMEOUT)
        for number in range(calls):
            rpc = order.choice(ECHO_RPCS)
            nonce = f"{caller.name}#{number}#{order.getrandbits(48):x}".encode()
            rows = order.randint(1, 50)
            try:
                answer = echo_call(client, rpc, nonce, options, rows)
            except flight.FlightError as exc:
                tally.errors.append(f"{caller.name} {rpc}: {type(exc).__name__}: {exc}")
                continue
            tally.calls[rpc] += 1
            expected = expected_answer(caller.name, scheme, rpc, nonce, rows)
            if answer != expected:
                tally.wrong.append((caller.name, rpc, expected, answer))


def run_load(deployment: Deployment, clients: int, calls: int) -> tuple[dict, float]:
    """``clients`` callers at once, ``calls`` each; returns their tallies and the time."""
    callers = [Caller(i, list(KINDS)[i % len(KINDS)]) for i in range(clients)]
    tallies = {caller: Tally() for caller in callers}
    start = threading.Barrier(clients)
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(session, deployment, c, calls, start, tallies[c])
                   for c in callers]
        wait(futures, timeout=calls * CALL_TIMEOUT)
    failed = [f.exception() for f in futures if f.exception() is not None]
    first = next((e for e in failed if not isinstance(e, threading.BrokenBarrierError)),
                 failed[0] if failed else None)
    if first is not None:
        raise first
    return tallies, time.monotonic() - began


def check_isolation(deployment: Deployment, clients: int, calls: int,
                    capsys: pytest.CaptureFixture[str]) -> None:
    before = Counter(deployment.server.seen)
    tallies, elapsed = run_load(deployment, clients, calls)
    errors = [e for t in tallies.values() for e in t.errors]
    wrong = [w for t in tallies.values() for w in t.wrong]
    made = sum(sum(t.calls.values()) for t in tallies.values())
    retries = sum(t.login_retries for t in tallies.values())
    report(capsys, f"identity isolation: {clients} clients, {made} calls in {elapsed:.1f} s "
                   f"({made / elapsed:.0f} calls/s), {len(wrong)} cross-talk, "
                   f"{len(errors)} failed; {retries} logins retried for a handshake slot")
    assert errors == []
    assert wrong == []
    assert made == clients * calls
    seen = deployment.server.seen - before
    for caller, tally in tallies.items():
        for rpc, count in tally.calls.items():
            assert seen[(caller.name, rpc)] == count, (caller.name, rpc)
    assert set(KINDS) == {c.kind for c in tallies}


def test_every_call_sees_its_own_caller_small(deployment: Deployment,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """8 callers (all five kinds) x 30 calls over the five data RPCs."""
    check_isolation(deployment, 8, 30, capsys)


@pytest.mark.slow
def test_every_call_sees_its_own_caller_under_full_load(
        deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    """64 callers x 160 calls: 10,240 calls, every one seeing exactly its own caller."""
    check_isolation(deployment, LOAD_CLIENTS, 160, capsys)
