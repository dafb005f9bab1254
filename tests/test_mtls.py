"""Specification of mutual TLS: the client certificate as identity, alone or with a token.

Servers are ours; clients are pyarrow.flight's and ours. Certificates come from
flight_secure.certs (see ``test_tls.Pki``) or, for the unit tests of identity
extraction, are built here with the exact SANs each test needs.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jwt
import pyarrow.flight as pa_flight
import pytest
from conftest import IMPLEMENTATIONS, running_server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID
from tls_helpers import TIMEOUT, Pki, Who, refusal, tls_location, who_is

import flight_secure
from flight_secure.auth.base import CallCredentials, HeaderLogin
from flight_secure.auth.basic import BasicClientAuthHandler, BasicServerAuthHandler
from flight_secure.auth.jwt_auth import JWTServerAuthHandler
from flight_secure.auth.mtls import (
    MutualTLSServerAuthHandler,
    binding_claims,
    certificate_info,
    certificate_thumbprint,
    principal_from_certificate,
)
from flight_secure.auth.passwords import PasswordStore
from flight_secure.auth.tokens import JWTIssuer, JWTVerifier

CLIENTS = ("alice", "bob", "spiffe://example.org/carol")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki", clients=CLIENTS)


@pytest.fixture
def other_pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "other", clients=("alice",))


class Inspect(Who):
    """DoAction ``principal`` answers with the caller's Principal as JSON."""

    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        p = context.principal
        cert = p.certificate
        yield json.dumps({
            "name": p.name, "method": p.method, "claims": sorted(p.claims),
            "certificate": cert and {"identity": cert.identity, "subject": cert.subject,
                                     "sans": list(cert.sans),
                                     "fingerprint": cert.fingerprint_sha256},
        }).encode()


def principal_of(client: Any) -> dict[str, Any]:
    options = flight_secure.FlightCallOptions(timeout=TIMEOUT)
    (result,) = client.do_action(flight_secure.Action("principal", b""), options)
    return json.loads(result.body.to_pybytes())


def fingerprint(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex()


def certificate(cn: str | None = None, sans: list[x509.GeneralName] | None = None) -> bytes:
    """A self-signed certificate with subject CN ``cn`` and exactly the SANs ``sans``."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, None).public_bytes(serialization.Encoding.PEM)


ALL_KINDS = [x509.DNSName("svc.example"), x509.RFC822Name("svc@example.org"),
             x509.IPAddress(ipaddress.ip_address("10.0.0.7")),
             x509.UniformResourceIdentifier("spiffe://example.org/svc")]


# --------------------------------------------------------------- identity from a PEM


@pytest.mark.parametrize(("sans", "expected"), [
    (ALL_KINDS, "spiffe://example.org/svc"),
    (ALL_KINDS[:3], "svc@example.org"),
    (ALL_KINDS[:1], "svc.example"),
    ([], "the-cn"),
], ids=["uri first", "then email", "then dns", "then cn"])
def test_identity_is_first_uri_then_email_then_dns_then_cn(sans: list, expected: str) -> None:
    principal = principal_from_certificate(certificate("the-cn", sans))
    assert (principal.name, principal.method) == (expected, "mtls")
    assert principal.identity == expected.encode()


def test_identity_from_chooses_the_sources_and_their_order() -> None:
    pem = certificate("the-cn", ALL_KINDS)
    assert principal_from_certificate(pem, identity_from=("cn",)).name == "the-cn"
    assert principal_from_certificate(pem, identity_from=("dns", "uri")).name == "svc.example"


def test_certificate_without_any_chosen_identity_is_refused() -> None:
    with pytest.raises(flight_secure.FlightUnauthenticatedError, match="no identity in uri"):
        principal_from_certificate(certificate(None, ALL_KINDS[:1]), identity_from=("uri",))


@pytest.mark.parametrize("sources", [("uid",), (), "CN"])
def test_unknown_identity_sources_are_refused(sources: Any) -> None:
    with pytest.raises(ValueError, match="identity_from"):
        principal_from_certificate(certificate("x"), identity_from=sources)


def test_a_non_certificate_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not a PEM X\.509 certificate"):
        principal_from_certificate(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----")


def test_certificate_details_are_on_the_principal() -> None:
    pem = certificate("the-cn", ALL_KINDS)
    info = principal_from_certificate(pem).certificate
    assert info.subject == "CN=the-cn"
    assert info.identity == "spiffe://example.org/svc"
    assert set(info.sans) == {"dns:svc.example", "email:svc@example.org", "ip:10.0.0.7",
                              "uri:spiffe://example.org/svc"}
    assert info.fingerprint_sha256 == fingerprint(pem)
    assert info.pem == pem
    assert "BEGIN" not in repr(info)
    assert certificate_info(pem.decode()) == info


def test_thumbprint_is_unpadded_base64url_of_the_der_sha256() -> None:
    pem = certificate("x")
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert certificate_thumbprint(pem) == expected
    assert len(expected) == 43
    assert binding_claims(pem) == {"cnf": {"x5t#S256": expected}}


def test_binding_tokens_needs_an_inner_handler() -> None:
    with pytest.raises(ValueError, match="inner"):
        MutualTLSServerAuthHandler(bind_tokens=True)


# ----------------------------------------------------- identity over a real connection


@pytest.mark.parametrize("handler", ["none", "MutualTLSServerAuthHandler()"])
@pytest.mark.parametrize("implementation", ["flight_secure", "pyarrow"])
def test_peer_identity_is_the_client_certificate_identity(
    pki: Pki, implementation: str, handler: str
) -> None:
    flight = IMPLEMENTATIONS[implementation]
    auth = MutualTLSServerAuthHandler() if handler != "none" else None
    with running_server(flight_secure, Inspect, **pki.mtls_server(auth_handler=auth)) as server:
        for name, identity in [("alice", "alice"), ("bob", "bob"),
                               ("carol", "spiffe://example.org/carol")]:
            with pki.connect(flight, server, name) as client:
                assert who_is(client) == identity


def test_the_principal_carries_the_certificate(pki: Pki) -> None:
    with running_server(flight_secure, Inspect, **pki.mtls_server()) as server, \
            pki.connect(flight_secure, server, "carol") as client:
        principal = principal_of(client)
    assert principal["method"] == "mtls"
    assert principal["certificate"]["sans"] == ["uri:spiffe://example.org/carol"]
    cert = pki.client("carol")["cert_chain"]
    assert principal["certificate"]["fingerprint"] == fingerprint(cert)


@pytest.mark.parametrize("implementation", ["flight_secure", "pyarrow"])
def test_handler_refuses_when_the_server_does_not_ask_for_certificates(
    pki: Pki, implementation: str
) -> None:
    flight = IMPLEMENTATIONS[implementation]
    server_options = pki.tls_server(auth_handler=MutualTLSServerAuthHandler())
    with running_server(flight_secure, Who, **server_options) as server, \
            pki.connect(flight, server, "alice") as client, \
            pytest.raises(flight.FlightUnauthenticatedError, match="client certificate required"):
        who_is(client)


@pytest.mark.parametrize("implementation", ["flight_secure", "pyarrow"])
def test_allow_list_refuses_other_identities_with_permission_denied(
    pki: Pki, implementation: str
) -> None:
    flight = IMPLEMENTATIONS[implementation]
    auth = MutualTLSServerAuthHandler(allowed=["alice"])
    with running_server(flight_secure, Who, **pki.mtls_server(auth_handler=auth)) as server:
        with pki.connect(flight, server, "bob") as bob, \
                pytest.raises(flight.FlightUnauthorizedError, match="'bob' is not allowed"):
            who_is(bob)
        with pki.connect(flight, server, "alice") as alice:
            assert who_is(alice) == "alice"


@pytest.mark.parametrize("presented", ["no certificate", "alice from another CA"])
def test_handler_server_refuses_untrusted_clients_and_keeps_serving(
    pki: Pki, other_pki: Pki, presented: str
) -> None:
    auth = MutualTLSServerAuthHandler()
    with running_server(flight_secure, Who, **pki.mtls_server(auth_handler=auth)) as server:
        location = tls_location(server)
        extra = other_pki.client("alice") if presented != "no certificate" else {}
        error, seconds = refusal(pa_flight, location, tls_root_certs=pki.ca_pem, **extra)
        assert isinstance(error, pa_flight.FlightUnavailableError)
        assert seconds < TIMEOUT
        with pki.connect(pa_flight, server, "alice") as client:
            assert who_is(client) == "alice"


# ------------------------------------------------------------- certificate and token


@pytest.fixture
def basic() -> Iterator[BasicServerAuthHandler]:
    """A Basic login handler knowing alice and bob (passwords ``<name>-pw``)."""
    passwords = PasswordStore(rounds=4)
    passwords.add("alice", "alice-pw")
    passwords.add("bob", "bob-pw")
    handler = BasicServerAuthHandler(passwords)
    yield handler
    handler.close()


def bearer(client: Any, user: str, password: str) -> list[tuple[bytes, bytes]]:
    """Log ``client`` in with ``authorization: Basic``; the header to send on later calls."""
    flight = pa_flight if isinstance(client, pa_flight.FlightClient) else flight_secure
    return [client.authenticate_basic_token(user, password,
                                            flight.FlightCallOptions(timeout=TIMEOUT))]


def token_claims(headers: list[tuple[bytes, bytes]]) -> Mapping[str, Any]:
    token = headers[0][1].decode().removeprefix("Bearer ")
    return jwt.decode(token, options={"verify_signature": False})


@pytest.mark.parametrize("implementation", ["flight_secure", "pyarrow"])
def test_certificate_and_basic_login_both_count(
    pki: Pki, basic: BasicServerAuthHandler, implementation: str
) -> None:
    flight = IMPLEMENTATIONS[implementation]
    auth = MutualTLSServerAuthHandler(basic)
    with running_server(flight_secure, Inspect, **pki.mtls_server(auth_handler=auth)) as server, \
            pki.connect(flight, server, "alice") as client:
        headers = bearer(client, "alice", "alice-pw")
        assert who_is(client, headers) == "alice"
        with pytest.raises(flight.FlightUnauthenticatedError):
            who_is(client)  # the certificate alone is not enough
        with pytest.raises(flight.FlightUnauthenticatedError):
            bearer(client, "alice", "wrong")


def test_certificate_is_attached_to_the_token_principal(
    pki: Pki, basic: BasicServerAuthHandler
) -> None:
    auth = MutualTLSServerAuthHandler(basic)
    with running_server(flight_secure, Inspect, **pki.mtls_server(auth_handler=auth)) as server, \
            pki.connect(flight_secure, server, "bob") as client:
        client.authenticate(BasicClientAuthHandler("bob", "bob-pw"))  # the message handshake
        principal = principal_of(client)
    assert (principal["name"], principal["method"]) == ("bob", "basic")
    assert principal["certificate"]["identity"] == "bob"


def test_a_valid_login_without_a_certificate_is_refused(
    pki: Pki, basic: BasicServerAuthHandler
) -> None:
    auth = MutualTLSServerAuthHandler(basic)
    with running_server(flight_secure, Who, **pki.tls_server(auth_handler=auth)) as server, \
            pki.connect(pa_flight, server) as client, \
            pytest.raises(pa_flight.FlightUnauthenticatedError, match="certificate required"):
        bearer(client, "alice", "alice-pw")




class StaticSession(flight_secure.ServerAuthHandler):
    """A pyarrow-style handler: the handshake trades b"let-me-in" for b"session"."""

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        if incoming.read() != b"let-me-in":
            raise flight_secure.FlightUnauthenticatedError("wrong handshake")
        outgoing.write(b"session")

    def is_valid(self, token: bytes) -> bytes:
        if token != b"session":
            raise flight_secure.FlightUnauthenticatedError("no session")
        return b"svc"


class LetMeIn(pa_flight.ClientAuthHandler):
    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        outgoing.write(b"let-me-in")
        self.token = incoming.read()

    def get_token(self) -> bytes:
        return self.token


def test_a_pyarrow_style_inner_handler_needs_the_certificate_too(pki: Pki) -> None:
    auth = MutualTLSServerAuthHandler(StaticSession())
    with running_server(flight_secure, Inspect, **pki.mtls_server(auth_handler=auth)) as server, \
            pki.connect(pa_flight, server, "alice") as client:
        with pytest.raises(pa_flight.FlightUnauthenticatedError, match="no session"):
            who_is(client)
        client.authenticate(LetMeIn(), pa_flight.FlightCallOptions(timeout=TIMEOUT))
        assert who_is(client) == "svc"
    with running_server(flight_secure, Who, **pki.tls_server(auth_handler=auth)) as server, \
            pki.connect(pa_flight, server) as client, \
            pytest.raises(pa_flight.FlightUnauthenticatedError, match="certificate required"):
        client.authenticate(LetMeIn(), pa_flight.FlightCallOptions(timeout=TIMEOUT))


class PasswordTokens(JWTServerAuthHandler):
    """A minimal token-issuing handler.

    ``authorization: Basic`` logins against fixed passwords get a JWT carrying the
    call's ``token_claims``; later calls are checked as JWT bearer tokens.
    """

    def __init__(self, passwords: Mapping[str, str], issuer: JWTIssuer,
                 verifier: JWTVerifier) -> None:
        super().__init__(verifier)
        self.passwords, self.issuer = passwords, issuer

    def authenticate_headers(self, call: CallCredentials) -> HeaderLogin | None:
        user, password = call.basic_credentials or ("", "")
        if not hmac.compare_digest(self.passwords.get(user, "\0").encode(), password.encode()):
            raise flight_secure.FlightUnauthenticatedError("invalid username or password")
        token = self.issuer.issue(user, **call.token_claims)
        return HeaderLogin(self.login(token, call), {"authorization": f"Bearer {token}"})


class Tenant(flight_secure.ServerAuthHandler):
    """Wraps a handler and asks for a ``tenant`` claim in the tokens it issues."""

    def __init__(self, inner: flight_secure.ServerAuthHandler) -> None:
        self.inner = inner

    def authenticate_headers(self, call: CallCredentials) -> HeaderLogin | None:
        return self.inner.authenticate_headers(call.with_token_claims({"tenant": "t1"}))

    def authenticate_call(self, call: CallCredentials) -> Any:
        return self.inner.authenticate_call(call)


@pytest.fixture
def signing() -> tuple[JWTIssuer, JWTVerifier]:
    key = ed25519.Ed25519PrivateKey.generate()
    return JWTIssuer(key, "EdDSA"), JWTVerifier(key.public_key(), ["EdDSA"])


@pytest.fixture
def bound_server(pki: Pki, signing: tuple[JWTIssuer, JWTVerifier]) -> Iterator[Any]:
    inner = Tenant(PasswordTokens({"alice": "alice-pw", "bob": "bob-pw"}, *signing))
    auth = MutualTLSServerAuthHandler(inner, bind_tokens=True)
    with running_server(flight_secure, Who, **pki.mtls_server(auth_handler=auth)) as server:
        yield server


def test_issued_tokens_are_bound_to_the_presented_certificate(
    pki: Pki, bound_server: Any
) -> None:
    with pki.connect(pa_flight, bound_server, "alice") as client:
        claims = token_claims(bearer(client, "alice", "alice-pw"))
    alice_cert = pki.client("alice")["cert_chain"]
    assert claims["cnf"] == {"x5t#S256": certificate_thumbprint(alice_cert)}
    assert claims["tenant"] == "t1"  # the claims of a wrapper further in are kept


@pytest.mark.parametrize("implementation", ["flight_secure", "pyarrow"])
def test_a_token_issued_to_alice_is_refused_from_bobs_connection(
    pki: Pki, bound_server: Any, implementation: str
) -> None:
    flight = IMPLEMENTATIONS[implementation]
    with pki.connect(flight, bound_server, "alice") as alice, \
            pki.connect(flight, bound_server, "bob") as bob:
        alices_token = bearer(alice, "alice", "alice-pw")
        assert who_is(alice, alices_token) == "alice"
        with pytest.raises(flight.FlightUnauthenticatedError, match="another client certificate"):
            who_is(bob, alices_token)
        assert who_is(bob, bearer(bob, "bob", "bob-pw")) == "bob"


def test_identity_provider_tokens_must_carry_the_binding(
    pki: Pki, signing: tuple[JWTIssuer, JWTVerifier]
) -> None:
    issuer, verifier = signing
    auth = MutualTLSServerAuthHandler(JWTServerAuthHandler(verifier), bind_tokens=True)
    alice_cert = pki.client("alice")["cert_chain"]
    bound = [(b"authorization", f"Bearer {issuer.issue('alice', **binding_claims(alice_cert))}"
              .encode())]
    unbound = [(b"authorization", f"Bearer {issuer.issue('alice')}".encode())]
    with running_server(flight_secure, Who, **pki.mtls_server(auth_handler=auth)) as server:
        with pki.connect(pa_flight, server, "alice") as alice:
            assert who_is(alice, bound) == "alice"
            with pytest.raises(pa_flight.FlightUnauthenticatedError, match="not bound"):
                who_is(alice, unbound)
        with pki.connect(pa_flight, server, "bob") as bob, \
                pytest.raises(pa_flight.FlightUnauthenticatedError, match="another client"):
            who_is(bob, bound)


def test_basic_session_tokens_are_bound_to_the_login_certificate(
    pki: Pki, basic: BasicServerAuthHandler
) -> None:
    auth = MutualTLSServerAuthHandler(basic, bind_tokens=True)
    with running_server(flight_secure, Who, **pki.mtls_server(auth_handler=auth)) as server, \
            pki.connect(pa_flight, server, "alice") as alice, \
            pki.connect(pa_flight, server, "bob") as bob:
        token = bearer(alice, "alice", "alice-pw")
        assert who_is(alice, token) == "alice"
        with pytest.raises(pa_flight.FlightUnauthenticatedError):
            who_is(bob, token)


def test_wrapping_binds_without_changing_the_wrapped_handler(
    pki: Pki, basic: BasicServerAuthHandler
) -> None:
    before = dict(vars(basic))
    twice = MutualTLSServerAuthHandler(MutualTLSServerAuthHandler(basic, bind_tokens=True),
                                       bind_tokens=True)
    assert vars(basic) == before
    with running_server(flight_secure, Who, **pki.mtls_server(auth_handler=twice)) as server, \
            pki.connect(pa_flight, server, "alice") as alice:
        token = bearer(alice, "alice", "alice-pw")
        assert who_is(alice, token) == "alice"
    assert token_claims(token)["cnf"] == binding_claims(pki.client("alice")["cert_chain"])["cnf"]
    assert vars(basic) == before
