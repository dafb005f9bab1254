"""Specification of the handler contract (auth/base.py) and the gate that applies it.

Every hook is declared on ServerAuthHandler; the gate calls those and nothing else;
no path admits a caller without a principal; CallCredentials reads the same from a
grpcio call and from the plain values pyarrow's engine gives a middleware, so one
handler admits the same caller on both engines (pyarrow's through
:mod:`flight_secure.arrow`).
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pyarrow.flight as pa_flight
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import flight_secure as flight
import flight_secure.arrow
from flight_secure.auth import base
from flight_secure.auth.base import CallCredentials, ServerAuthHandler
from flight_secure.auth.gate import AuthGate
from flight_secure.auth.jwt_auth import JWTServerAuthHandler
from flight_secure.auth.mtls import MutualTLSServerAuthHandler
from flight_secure.auth.tokens import JWTIssuer, JWTVerifier
from flight_secure.certs import DevCertificates, generate_dev_certificates
from flight_secure.types import FlightMethod

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = flight.FlightCallOptions(timeout=10)


class WhoAmI(flight.FlightServerBase):
    """DoAction answers with the caller's identity and scheme."""

    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        scheme = context.principal.method if context.principal else "-"
        yield context.peer_identity() + b"|" + scheme.encode()


def whoami(server: flight.FlightServerBase, location: str | None = None,
           **client: Any) -> bytes:
    with flight.connect(location or f"grpc://localhost:{server.port}", **client) as c:
        return next(iter(c.do_action("whoami", TIMEOUT))).body.to_pybytes()


# ----------------------------------------------------------- the declared hooks


def _gate_handler_calls() -> set[str]:
    """Names the gate reads from ``handler`` (``handler.x`` / ``self.handler.x``)."""
    tree = ast.parse((ROOT / "flight_secure/auth/gate.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name | ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
            if owner == "handler":
                names.add(node.attr)
    return names


def test_the_gate_calls_only_hooks_the_base_class_declares() -> None:
    calls = _gate_handler_calls()
    assert calls >= {"authenticate_call", "authenticate_headers", "authenticate_handshake",
                     "needs_certificate"}
    assert calls <= set(dir(ServerAuthHandler))
    source = (ROOT / "flight_secure/auth/gate.py").read_text()
    assert "getattr(" not in source and "import inspect" not in source


def test_the_gate_imports_no_scheme() -> None:
    tree = ast.parse((ROOT / "flight_secure/auth/gate.py").read_text())
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    ours = {m for m in modules if m and m.startswith("flight_secure")}
    assert ours == {"flight_secure.auth.audit", "flight_secure.auth.base",
                    "flight_secure.auth.handshakes", "flight_secure.errors",
                    "flight_secure.types"}


def test_every_hook_has_a_documented_default() -> None:
    for name in ("authenticate_headers", "authenticate_handshake", "authenticate_call",
                 "close"):
        hook = getattr(ServerAuthHandler, name)
        assert inspect.getdoc(hook), name
    assert ServerAuthHandler.needs_certificate is False
    assert ServerAuthHandler().authenticate_headers(CallCredentials.from_values(
        FlightMethod.HANDSHAKE)) is None


# ---------------------------------------------------------- no identity, no entry


class NoPrincipal(ServerAuthHandler):
    """A handler whose per-call hook forgets to return the principal."""

    def authenticate_call(self, call: CallCredentials) -> Any:
        return None


class NoIdentity(ServerAuthHandler):
    """A pyarrow-style handler whose is_valid returns None."""

    def is_valid(self, token: bytes) -> Any:
        return None


class Anonymous(ServerAuthHandler):
    """A pyarrow-style handler that lets everyone in with an empty identity."""

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        outgoing.write(b"")

    def is_valid(self, token: bytes) -> str:
        return ""


@pytest.mark.parametrize("handler", [NoPrincipal, NoIdentity])
def test_a_handler_that_returns_no_principal_refuses_the_call(handler: type) -> None:
    with WhoAmI(location="grpc://localhost:0", auth_handler=handler()) as server, \
            pytest.raises(flight.FlightUnauthenticatedError,
                          match=r"authentication required|no identity"):
        whoami(server)


def test_an_empty_identity_is_admitted_as_pyarrow_admits_it() -> None:
    with WhoAmI(location="grpc://localhost:0", auth_handler=Anonymous()) as server:
        assert whoami(server) == b"|token"


# -------------------------------------------------------------- certificates


def test_a_handler_that_needs_the_certificate_is_refused_where_none_can_be_seen() -> None:
    with pytest.raises(ValueError, match="cannot see client certificates"):
        AuthGate(MutualTLSServerAuthHandler(), certificates_visible=False)
    with pytest.raises(ValueError, match="cannot see client certificates"):
        AuthGate(None, require_certificate=True, certificates_visible=False)
    assert AuthGate(Anonymous(), certificates_visible=False).handler is not None


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevCertificates:
    return generate_dev_certificates(tmp_path_factory.mktemp("pki"), clients=["alice"])


def test_verify_client_never_admits_a_caller_without_a_certificate(
        pki: DevCertificates) -> None:
    """TLS credentials that do not ask for a certificate, ``verify_client=True`` and no
    handler: every call is refused, none admitted anonymously."""
    credentials = grpc.ssl_server_credentials([pki.server_pems()[::-1]],
                                              root_certificates=pki.ca_cert_pem(),
                                              require_client_auth=False)
    with WhoAmI(location="grpc+tls://localhost:0", tls_credentials=credentials,
                verify_client=True, root_certificates=pki.ca_cert_pem()) as server:
        location = f"grpc+tls://localhost:{server.port}"
        for _ in range(2):
            with pytest.raises(flight.FlightUnauthenticatedError, match="certificate required"):
                whoami(server, location, tls_root_certs=pki.ca_cert_pem())


# ------------------------------------------------------------- CallCredentials


def test_plain_values_read_like_a_grpc_call() -> None:
    call = CallCredentials.from_values(
        FlightMethod.DO_GET,
        {"authorization": ["Basic YWxpY2U6cHc="], "auth-token-bin": [b"tok"]},
        "ipv4:10.0.0.1:5000")
    assert call.basic_credentials == ("alice", "pw")
    assert call.auth_token == b"tok"
    assert call.peer == "ipv4:10.0.0.1:5000"
    assert call.peer_certificate_pem is None and not call.certificates_visible
    assert CallCredentials.from_values(FlightMethod.DO_GET).peer == base.UNKNOWN_PEER
    with_cert = CallCredentials.from_values(FlightMethod.DO_GET, certificate=b"PEM")
    assert with_cert.certificates_visible and with_cert.peer_certificate_pem == b"PEM"


def test_token_claims_are_added_on_a_new_call_and_never_in_place() -> None:
    call = CallCredentials.from_values(FlightMethod.HANDSHAKE, [("authorization", "Bearer x")])
    first = call.with_token_claims({"tenant": "t1"})
    second = first.with_token_claims({"cnf": {"x5t#S256": "abc"}})
    assert dict(call.token_claims) == {}
    assert dict(first.token_claims) == {"tenant": "t1"}
    assert dict(second.token_claims) == {"tenant": "t1", "cnf": {"x5t#S256": "abc"}}
    assert second.bearer_token == "x" and second.method is FlightMethod.HANDSHAKE


class PaWhoAmI(pa_flight.FlightServerBase):
    """pyarrow's engine: DoAction answers with the caller the security layer admitted."""

    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        caller = flight_secure.arrow.principal(context)
        yield f"{caller.name}|{caller.method}".encode()


def test_the_same_handler_admits_the_same_caller_on_pyarrows_engine() -> None:
    key = Ed25519PrivateKey.generate()
    handler = JWTServerAuthHandler(JWTVerifier(key.public_key(), ["EdDSA"]))
    token = JWTIssuer(key, "EdDSA").issue("carol")
    bearer = [(b"authorization", f"Bearer {token}".encode())]
    server = PaWhoAmI("grpc://localhost:0", **flight_secure.arrow.server_options(handler))
    try:
        with pa_flight.connect(f"grpc://localhost:{server.port}") as client:
            options = pa_flight.FlightCallOptions(headers=bearer, timeout=10)
            assert next(iter(client.do_action("x", options))).body.to_pybytes() == b"carol|jwt"
            forged = JWTIssuer(Ed25519PrivateKey.generate(), "EdDSA").issue("carol")
            refused = pa_flight.FlightCallOptions(
                headers=[(b"authorization", f"Bearer {forged}".encode())], timeout=10)
            with pytest.raises(pa_flight.FlightUnauthenticatedError, match="invalid token"):
                list(client.do_action("x", refused))
    finally:
        server.shutdown()
    with WhoAmI(location="grpc://localhost:0", auth_handler=handler) as ours, \
            flight.connect(f"grpc://localhost:{ours.port}") as client:
        options = flight.FlightCallOptions(headers=bearer, timeout=10)
        assert next(iter(client.do_action("x", options))).body.to_pybytes() == b"carol|jwt"


def test_a_pyarrow_style_handler_runs_unchanged() -> None:
    """authenticate(outgoing, incoming) and is_valid(token), nothing else."""

    class Tickets(ServerAuthHandler):
        def authenticate(self, outgoing: Any, incoming: Any) -> None:
            if incoming.read() != b"open sesame":
                raise flight.FlightUnauthenticatedError("no")
            outgoing.write(b"ticket-1")

        def is_valid(self, token: bytes) -> bytes:
            if token != b"ticket-1":
                raise flight.FlightUnauthenticatedError("no ticket")
            return b"svc"

    class Login(pa_flight.ClientAuthHandler):
        def authenticate(self, outgoing: Any, incoming: Any) -> None:
            outgoing.write(b"open sesame")
            self.token = incoming.read()

        def get_token(self) -> bytes:
            return self.token

    with WhoAmI(location="grpc://localhost:0", auth_handler=Tickets()) as server, \
            pa_flight.connect(f"grpc://localhost:{server.port}") as client:
        with pytest.raises(pa_flight.FlightUnauthenticatedError, match="no ticket"):
            list(client.do_action("x"))
        client.authenticate(Login())
        assert next(iter(client.do_action("x"))).body.to_pybytes() == b"svc|token"


@pytest.mark.parametrize("location", ["grpc://localhost:0", "grpc+tcp://localhost:0"])
def test_verify_client_without_tls_refuses_to_start(pki: DevCertificates, location: str) -> None:
    with pytest.raises(flight.FlightInvalidArgumentError, match="needs a grpc\\+tls:// location"):
        WhoAmI(location=location, verify_client=True, root_certificates=pki.ca_cert_pem())
