"""Specification of the audit log: one record, one line, whatever a caller sends.

An attacker controls many logged values: action types, user names, JWT ``sub``,
certificate names. Each is written so that it can neither end the line nor pose
as another field or another record, and the line can be parsed back to exactly
the values that were logged.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

import flight_secure as flight
from flight_secure.auth import (
    AccessPolicy,
    BasicServerAuthHandler,
    JWTIssuer,
    JWTServerAuthHandler,
    JWTVerifier,
    MutualTLSServerAuthHandler,
    PasswordStore,
)
from flight_secure.auth.audit import FIELDS, MAX_VALUE, audit_event, format_event
from flight_secure.certs import CertificateAuthority, DevCertificates, generate_dev_certificates

FORGED = "login ok: who=admin scheme=basic peer=ipv4:10.0.0.1:1 reason=\"password verified\""
#: Characters that end a line somewhere: in a file, a terminal, a log viewer.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
HOSTILE = [f"x\n{FORGED}", f"x\r{FORGED}", f"x\x85{FORGED}", f"x\u2028{FORGED}",
           "mallory\u202etxt.exe", 'a" who="admin', "a who=admin", "", "x" * 1000]


class AuditLines:
    """The audit log as a file would hold it: one formatted record per write."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def lines(self) -> list[str]:
        return self.stream.getvalue().split("\n")[:-1]


@pytest.fixture
def audit_log() -> Iterator[AuditLines]:
    lines = AuditLines()
    logger = logging.getLogger("flight_secure.audit")
    keeper = logging.Handler()
    keeper.emit = lines.emit  # type: ignore[method-assign]
    previous = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(lines.handler)
    logger.addHandler(keeper)
    yield lines
    logger.removeHandler(lines.handler)
    logger.removeHandler(keeper)
    logger.setLevel(previous)


def parse(line: str) -> tuple[str, dict[str, str]]:
    """An audit line back into (event, fields): the reading a log tool would make."""
    event, _, rest = line.partition(": ")
    fields = {}
    for match in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|[^ "]+)', rest):
        raw = match.group(2)
        fields[match.group(1)] = json.loads(raw) if raw.startswith('"') else raw
    return event, fields


# ------------------------------------------------------------------- the format


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=MAX_VALUE), min_size=1))
def test_any_values_make_one_line_that_parses_back_to_them(fields: dict[str, str]) -> None:
    line = format_event("call refused", fields)
    assert line.isascii() and line.isprintable()
    assert parse(line) == ("call refused", fields)


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_value_stays_inside_its_field(audit_log: AuditLines, value: str) -> None:
    audit_event(logging.WARNING, "login refused", who=value, scheme="basic",
                reason="bad_credentials")
    (line,) = audit_log.lines
    assert not any(ch in line for ch in LINE_BREAKS)
    event, fields = parse(line.removeprefix("WARNING "))
    assert event == "login refused"
    assert set(fields) == {"who", "scheme", "reason"}
    assert fields["who"] == (value if len(value) <= MAX_VALUE else value[:MAX_VALUE - 3] + "...")
    assert audit_log.records[0].audit == {"event": "login refused", **fields}


def test_bidirectional_overrides_are_shown_escaped(audit_log: AuditLines) -> None:
    audit_event(logging.WARNING, "call refused", who="mallory\u202etxt.exe")
    assert "\\u202e" in audit_log.lines[0]


def test_unknown_fields_and_free_text_events_are_refused() -> None:
    with pytest.raises(ValueError, match="audit event"):
        audit_event(logging.INFO, "login ok", password="x")
    with pytest.raises(ValueError, match="audit event"):
        audit_event(logging.INFO, "login ok\nforged")


# --------------------------------------------------------- over a real server


class Actions(flight.FlightServerBase):
    def do_action(self, context: Any, action: Any) -> Iterator[bytes]:
        yield b"done"


def test_an_action_type_cannot_forge_an_audit_line(audit_log: AuditLines) -> None:
    """A reader sends a DoAction whose type carries a newline and a fake login line."""
    key = Ed25519PrivateKey.generate()
    handler = JWTServerAuthHandler(JWTVerifier(key.public_key(), ["EdDSA"]))
    policy = AccessPolicy(actions={"*": ["admin"]})
    reader = JWTIssuer(key, "EdDSA").issue("reader", roles=["reader"])
    options = flight.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {reader}".encode())], timeout=10)
    with Actions(location="grpc://localhost:0", auth_handler=handler,
                 authorizer=policy) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client, \
            pytest.raises(flight.FlightUnauthorizedError):
        list(client.do_action(flight.Action(f"x\n{FORGED}", b""), options))
    assert len(audit_log.lines) == 1
    assert not any(line.split(" ", 1)[1].startswith("login ok") for line in audit_log.lines)
    assert parse(audit_log.lines[0].split(" ", 1)[1])[1]["action"] == f"x\n{FORGED}"


def test_a_jwt_subject_cannot_forge_an_audit_line(audit_log: AuditLines) -> None:
    key = Ed25519PrivateKey.generate()
    handler = JWTServerAuthHandler(JWTVerifier(key.public_key(), ["EdDSA"]))
    subject = f"eve\u202e\n{FORGED}"
    token = JWTIssuer(key, "EdDSA").issue(subject)
    options = flight.FlightCallOptions(
        headers=[(b"authorization", f"Bearer {token}".encode())], timeout=10)
    with Actions(location="grpc://localhost:0", auth_handler=handler,
                 authorizer=AccessPolicy(default=["admin"])) as server, \
            flight.connect(f"grpc://localhost:{server.port}") as client, \
            pytest.raises(flight.FlightUnauthorizedError):
        list(client.do_action(flight.Action("ping", b""), options))
    (line,) = audit_log.lines
    assert parse(line.split(" ", 1)[1])[1]["who"] == subject


# ------------------------------------------------------------------ mTLS lines


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevCertificates:
    return generate_dev_certificates(tmp_path_factory.mktemp("pki"), clients=["alice"])


def hostile_client_certificate(pki: DevCertificates, common_name: str) -> tuple[bytes, bytes]:
    """A client certificate from the test CA whose CN is ``common_name``, as given."""
    ca = CertificateAuthority.load(pki.ca_cert, pki.ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(ca.private_key, None if isinstance(ca.private_key, Ed25519PrivateKey)
                  else hashes.SHA256()))
    return (cert.public_bytes(Encoding.PEM),
            key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))


def mtls_options(pki: DevCertificates, handler: Any) -> dict[str, Any]:
    return {"location": "grpc+tls://localhost:0",
            "tls_certificates": [flight.CertKeyPair(*pki.server_pems())],
            "verify_client": True, "root_certificates": pki.ca_cert_pem(),
            "auth_handler": handler}


def test_a_certificate_name_cannot_forge_an_audit_line(audit_log: AuditLines,
                                                       pki: DevCertificates) -> None:
    name = "eve\x85login ok: who=admin scheme=basic"
    cert, key = hostile_client_certificate(pki, name)
    handler = MutualTLSServerAuthHandler(allowed=["alice"], identity_from=["cn"])
    with Actions(**mtls_options(pki, handler)) as server, \
            flight.connect(f"grpc+tls://localhost:{server.port}", tls_root_certs=pki.ca_cert_pem(),
                           cert_chain=cert, private_key=key) as client, \
            pytest.raises(flight.FlightUnauthorizedError):
        list(client.do_action(flight.Action("ping", b""), flight.FlightCallOptions(timeout=10)))
    (line,) = audit_log.lines
    fields = parse(line.split(" ", 1)[1])[1]
    assert fields["who"] == name
    assert fields["certificate"] == x509.load_pem_x509_certificate(cert).subject.rfc4514_string()


def test_audit_lines_of_mtls_connections_name_the_certificate(audit_log: AuditLines,
                                                              pki: DevCertificates) -> None:
    store = PasswordStore(rounds=4)
    store.add("alice", "alice's password")
    handler = MutualTLSServerAuthHandler(BasicServerAuthHandler(store), bind_tokens=True)
    cert, key = pki.client_pems("alice")
    subject = x509.load_pem_x509_certificate(cert).subject.rfc4514_string()
    try:
        with Actions(**mtls_options(pki, handler)) as server, \
                flight.connect(f"grpc+tls://localhost:{server.port}",
                               tls_root_certs=pki.ca_cert_pem(), cert_chain=cert,
                               private_key=key) as client:
            with pytest.raises(flight.FlightUnauthenticatedError):
                client.authenticate_basic_token("alice", "wrong")
            client.authenticate_basic_token("alice", "alice's password")
            with pytest.raises(flight.FlightUnauthenticatedError):
                list(client.do_action(flight.Action("ping", b""),
                                      flight.FlightCallOptions(timeout=10)))
    finally:
        handler.close()
    events = [(r.audit["event"], r.audit.get("certificate")) for r in audit_log.records]
    assert ("login refused", subject) in events and ("login ok", subject) in events
    assert ("call refused", subject) in events
    assert all(certificate == subject for _, certificate in events)
