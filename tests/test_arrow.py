"""Specification of flight_secure.arrow where pyarrow's engine differs from flight_secure's.

The auth scenarios common to both engines run in the test_auth_* modules (the
``engine`` fixture), the bound on message handshakes in the reliability suite.
Here: what pyarrow's engine cannot see and is refused at configuration, the CA
gate it keeps, where the caller may be read, the adapter's composition with user
middleware, and that no refusal carries a Python traceback.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pyarrow.flight as pa_flight
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from raw_wire import rpc_path

import flight_secure as flight
import flight_secure.arrow
from flight_secure.arrow import authorize_action, principal, server_options
from flight_secure.arrow.server import AuthMiddlewareFactory
from flight_secure.auth import (
    AccessPolicy,
    JWTIssuer,
    JWTServerAuthHandler,
    JWTVerifier,
    MutualTLSServerAuthHandler,
)
from flight_secure.auth.gate import AuthGate
from flight_secure.auth.handshakes import HandshakeLimits
from flight_secure.certs import DevCertificates, generate_dev_certificates

TIMEOUT = 10.0


class WhoServer(pa_flight.FlightServerBase):
    """A plain pyarrow server: DoAction answers ``name|scheme`` of the caller."""

    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        caller = principal(context)
        yield f"{caller.name}|{caller.method}".encode() if caller else b"-"


def whoami(port: int, headers: list | None = None, **client: Any) -> bytes:
    scheme = "grpc+tls" if client else "grpc"
    with pa_flight.connect(f"{scheme}://localhost:{port}", **client) as connection:
        options = pa_flight.FlightCallOptions(headers=headers or [], timeout=TIMEOUT)
        return next(iter(connection.do_action("whoami", options))).body.to_pybytes()


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def jwt_handler(key) -> JWTServerAuthHandler:
    return JWTServerAuthHandler(JWTVerifier(key.public_key(), ["EdDSA"]))


def bearer(key: Ed25519PrivateKey, name: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {JWTIssuer(key).issue(name)}".encode())]


# ------------------------------------------------------- what the engine cannot see


@pytest.mark.parametrize("handler", [
    lambda: MutualTLSServerAuthHandler(),
    lambda: MutualTLSServerAuthHandler(inner=JWTServerAuthHandler(
        JWTVerifier(Ed25519PrivateKey.generate().public_key(), ["EdDSA"])), bind_tokens=True),
], ids=["certificate identity", "certificate-bound tokens"])
def test_handlers_that_need_the_client_certificate_are_refused_at_configuration(handler):
    with pytest.raises(ValueError, match="does not show Python the client certificate") as caught:
        server_options(handler())
    assert "MutualTLSServerAuthHandler" in str(caught.value)
    assert "flight_secure.FlightServerBase" in str(caught.value)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> DevCertificates:
    return generate_dev_certificates(tmp_path_factory.mktemp("pki"),
                                     hosts=("localhost",), clients=["carol"])


def test_verify_client_still_admits_only_clients_with_a_certificate_from_the_ca(
        pki, key, jwt_handler):
    stranger = generate_dev_certificates(pki.ca_cert.parent / "other", hosts=("localhost",),
                                         clients=["mallory"])
    options = server_options(jwt_handler, tls_certificates=[pki.server_pems()],
                             verify_client=True, root_certificates=pki.ca_cert_pem())
    with WhoServer("grpc+tls://localhost:0", **options) as server:
        carol = dict(zip(("cert_chain", "private_key"), pki.client_pems("carol")))
        assert whoami(server.port, bearer(key, "carol"), tls_root_certs=pki.ca_cert_pem(),
                      **carol) == b"carol|jwt"
        mallory = dict(zip(("cert_chain", "private_key"), stranger.client_pems("mallory")))
        for client in ({}, mallory):
            with pytest.raises(pa_flight.FlightUnavailableError):
                whoami(server.port, bearer(key, "carol"), tls_root_certs=pki.ca_cert_pem(),
                       **client)


# ------------------------------------------------------------- reading the caller


def test_principal_is_refused_outside_the_thread_serving_the_call(key, jwt_handler):
    seen: list[BaseException | None] = []

    class HandsOff(pa_flight.FlightServerBase):
        def do_action(self, context, action):
            def elsewhere():
                try:
                    principal(context)
                    seen.append(None)
                except RuntimeError as exc:
                    seen.append(exc)

            worker = threading.Thread(target=elsewhere)
            worker.start()
            worker.join(TIMEOUT)
            yield principal(context).identity

    with HandsOff("grpc://localhost:0", **server_options(jwt_handler)) as server:
        assert whoami(server.port, bearer(key, "dora")) == b"dora"
    assert len(seen) == 1 and "no call is known on this thread" in str(seen[0])


def test_a_thread_that_reuses_a_served_threads_ident_sees_no_caller(key, jwt_handler):
    """The record of a finished thread is never read by a later thread with its ident."""
    factory = AuthMiddlewareFactory(AuthGate(jwt_handler, certificates_visible=False),
                                    HandshakeLimits(16, 16), TIMEOUT)
    headers = {"authorization": [bearer(key, "erin")[0][1].decode()]}
    info = pa_flight.CallInfo(method=pa_flight.FlightMethod.DO_ACTION)
    context = pa_flight.ServerCallContext.__new__(pa_flight.ServerCallContext)
    served: list[int] = []

    def serve() -> None:
        factory.start_call(info, headers)
        assert principal(context).name == "erin"
        served.append(threading.get_ident())

    first = threading.Thread(target=serve)
    first.start()
    first.join(TIMEOUT)
    outcomes: dict[int, str] = {}

    def later() -> None:
        try:
            found = principal(context)
            outcomes[threading.get_ident()] = f"saw {found.name}"
        except RuntimeError:
            outcomes[threading.get_ident()] = "refused"

    for _ in range(200):
        thread = threading.Thread(target=later)
        thread.start()
        thread.join(TIMEOUT)
        if served[0] in outcomes:
            break
    else:
        pytest.skip("the operating system never reused the thread's ident")
    assert outcomes[served[0]] == "refused"
    assert set(outcomes.values()) == {"refused"}


def test_principal_needs_a_server_configured_by_server_options():
    class Plain(pa_flight.FlightServerBase):
        def do_action(self, context, action):
            try:
                principal(context)
            except RuntimeError as exc:
                yield str(exc).encode()

    with Plain("grpc://localhost:0") as server:
        assert b"server_options" in whoami(server.port)
    with pytest.raises(TypeError, match="ServerCallContext"):
        principal(object())


def test_principal_and_authorize_action_work_on_flight_secures_engine_too(key, jwt_handler):
    policy = AccessPolicy(actions={"whoami": ["staff"]})

    class Both(flight.FlightServerBase):
        def do_action(self, context, action):
            authorize_action(context, action)  # applied already by the server: a no-op
            yield principal(context).identity

    with Both(auth_handler=jwt_handler, authorizer=policy) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client:
        staff = [(b"authorization",
                  f"Bearer {JWTIssuer(key).issue('fay', roles=['staff'])}".encode())]
        options = flight.FlightCallOptions(headers=staff, timeout=TIMEOUT)
        assert next(iter(client.do_action("whoami", options))).body.to_pybytes() == b"fay"
        with pytest.raises(flight.FlightUnauthorizedError):
            list(client.do_action("whoami", flight.FlightCallOptions(
                headers=bearer(key, "gus"), timeout=TIMEOUT)))


def test_the_doaction_rule_applies_before_the_handler_sees_the_action_type(key, jwt_handler):
    """pyarrow's engine shows the action only to do_action: the DoAction rule is applied
    to every DoAction first, authorize_action adds the action's own rule."""
    policy = AccessPolicy({"DoAction": ["staff"]}, actions={"ping": [], "drop": ["admin"]})

    class Actions(pa_flight.FlightServerBase):
        def do_action(self, context, action):
            authorize_action(context, action)
            yield principal(context).identity

    def act(kind: str, *roles: str) -> bytes:
        token = JWTIssuer(key).issue("hal", roles=list(roles))
        with pa_flight.connect(f"grpc://localhost:{server.port}") as client:
            options = pa_flight.FlightCallOptions(
                headers=[(b"authorization", f"Bearer {token}".encode())], timeout=TIMEOUT)
            return next(iter(client.do_action(kind, options))).body.to_pybytes()

    with Actions("grpc://localhost:0", **server_options(jwt_handler, policy)) as server:
        assert act("ping", "staff") == b"hal"
        with pytest.raises(pa_flight.FlightUnauthorizedError, match="DoAction requires"):
            act("ping")  # open on flight_secure's engine; DoAction's rule comes first here
        with pytest.raises(pa_flight.FlightUnauthorizedError, match="'drop' requires role"):
            act("drop", "staff")
        assert act("drop", "staff", "admin") == b"hal"


# --------------------------------------------------------------- composition


class Tagging(pa_flight.ServerMiddlewareFactory):
    """A user middleware: records the calls it sees and tags responses."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def start_call(self, info, headers):
        self.seen.append(info.method.name)
        return TagHeader()


class TagHeader(pa_flight.ServerMiddleware):
    def sending_headers(self):
        return {"x-tag": "mine"}


def test_user_middleware_is_kept_and_sees_only_admitted_calls(key, jwt_handler):
    tagging = Tagging()
    options = server_options(jwt_handler, middleware={"tag": tagging})
    assert list(options["middleware"]) == [flight_secure.arrow.MIDDLEWARE_KEY, "tag"]

    class Tagged(WhoServer):
        def do_action(self, context, action):
            assert context.get_middleware("tag") is not None
            yield from super().do_action(context, action)

    with Tagged("grpc://localhost:0", **options) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client:
        good = flight.FlightCallOptions(headers=bearer(key, "ida"), timeout=TIMEOUT)
        call = client.do_action("whoami", good)
        assert next(iter(call)).body.to_pybytes() == b"ida|jwt"
        with pytest.raises(flight.FlightUnauthenticatedError):
            list(client.do_action("whoami", flight.FlightCallOptions(timeout=TIMEOUT)))
    assert tagging.seen == ["DO_ACTION"]


def test_the_adapters_middleware_key_cannot_be_taken():
    with pytest.raises(ValueError, match="flight_secure's own"):
        server_options(middleware={flight_secure.arrow.MIDDLEWARE_KEY: Tagging()})


# ---------------------------------------------------------- handshakes and errors


@pytest.mark.parametrize("limit, bad_values", [
    ("max_concurrent_handshakes", (0, -1, 1.5, None, True)),
    ("max_silent_handshakes", (0, -1, 1.5, None, True)),
    ("handshake_timeout", (0, -1.0, float("nan"), None, "10")),
])
def test_handshake_limits_must_be_positive_numbers(limit, bad_values):
    handler = JWTServerAuthHandler(JWTVerifier(Ed25519PrivateKey.generate().public_key(),
                                               ["EdDSA"]))
    for bad in bad_values:
        with pytest.raises(ValueError, match=limit):
            server_options(handler, **{limit: bad})


class Broken(flight.ServerAuthHandler):
    """A handler and an authorizer that fail with plain Python errors."""

    def is_valid(self, token):
        raise RuntimeError("secret detail of a broken handler")


def refuse_with_type_error(principal, method, action_type):
    raise TypeError("the authorizer broke")


@pytest.mark.parametrize("handler, authorizer, code, shown", [
    (Broken(), None, grpc.StatusCode.UNAUTHENTICATED, "no valid credentials"),
    (None, refuse_with_type_error, grpc.StatusCode.UNKNOWN, "TypeError: the authorizer broke"),
])
def test_failures_inside_the_adapter_reach_the_client_without_a_traceback(
        handler, authorizer, code, shown):
    with WhoServer("grpc://localhost:0", **server_options(handler, authorizer)) as server, \
            grpc.insecure_channel(f"localhost:{server.port}") as channel:
        call = channel.unary_stream(rpc_path("DoAction"))
        with pytest.raises(grpc.RpcError) as refused:
            list(call(b"", timeout=TIMEOUT))
    assert refused.value.code() == code
    assert shown in refused.value.details()
    assert "Traceback" not in refused.value.details()
    assert "secret detail" not in refused.value.details()


def test_a_pyarrow_handlers_refusals_keep_their_status():
    class Denying(pa_flight.ServerAuthHandler):
        def authenticate(self, outgoing, incoming):
            raise pa_flight.FlightUnauthorizedError("not you")

        def is_valid(self, token):
            if token == b"banned":
                raise pa_flight.FlightUnauthorizedError("banned caller")
            return b"someone"

    with WhoServer("grpc://localhost:0", **server_options(Denying())) as server:
        assert whoami(server.port) == b"someone|token"
        with pytest.raises(pa_flight.FlightUnauthorizedError, match="banned caller"):
            whoami(server.port, [(b"auth-token-bin", b"banned")])
