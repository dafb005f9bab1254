"""TLS test helpers: a development PKI, a server that names its caller, and refusals.

Shared by the TLS, mutual-TLS and certificate-rotation tests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import flight_secure
from flight_secure.certs import CertificateAuthority, IssuedCertificate, generate_dev_certificates

#: Every call in these tests gives up after this long, so a refusal can never hang.
TIMEOUT = 5.0


@dataclass
class Pki:
    """A development CA with a server certificate (localhost) and client certificates."""

    dir: Path
    ca: CertificateAuthority

    @classmethod
    def create(cls, directory: Path, clients: tuple[str, ...] = ("alice", "bob")) -> Pki:
        generate_dev_certificates(directory, clients=clients)
        return cls(directory, CertificateAuthority.load(directory / "ca.pem",
                                                        directory / "ca.key"))

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem

    def server_pair(self, flight: ModuleType = flight_secure) -> Any:
        cert = (self.dir / "server.pem").read_bytes()
        return flight.CertKeyPair(cert=cert, key=(self.dir / "server.key").read_bytes())

    def client(self, name: str) -> dict[str, bytes]:
        """``cert_chain=``/``private_key=`` keyword arguments presenting client ``name``."""
        return {"cert_chain": (self.dir / f"{name}.pem").read_bytes(),
                "private_key": (self.dir / f"{name}.key").read_bytes()}

    def connect(self, flight: ModuleType, server: Any, name: str | None = None) -> Any:
        """A new ``flight`` client of TLS ``server`` trusting this CA, presenting ``name``."""
        extra = self.client(name) if name else {}
        return flight.connect(tls_location(server), tls_root_certs=self.ca_pem, **extra)

    def tls_server(self, flight: ModuleType = flight_secure, **kwargs: Any) -> Any:
        """Keyword arguments for a TLS server of ``flight`` (plus ``kwargs``)."""
        return {"location": "grpc+tls://localhost:0",
                "tls_certificates": [self.server_pair(flight)], **kwargs}

    def mtls_server(self, flight: ModuleType = flight_secure, **kwargs: Any) -> Any:
        """Keyword arguments for a server that requires client certificates from this CA."""
        return self.tls_server(flight, verify_client=True, root_certificates=self.ca_pem,
                               **kwargs)


def as_client(issued: IssuedCertificate) -> dict[str, bytes]:
    return {"cert_chain": issued.cert_pem, "private_key": issued.key_pem}


class Who:
    """DoGet answers with one row: the caller's identity as the server saw it."""

    flight: ModuleType

    def do_get(self, context: Any, ticket: Any) -> Any:
        who = context.peer_identity().decode()
        return self.flight.RecordBatchStream(pa.table({"who": [who]}))


def tls_location(server: Any) -> str:
    return f"grpc+tls://localhost:{server.port}"


def who_is(client: Any, headers: list[tuple[bytes, bytes]] | None = None) -> str:
    """The identity the server saw for ``client`` (either implementation), sending ``headers``."""
    flight = pa_flight if isinstance(client, pa_flight.FlightClient) else flight_secure
    options = flight.FlightCallOptions(timeout=TIMEOUT, headers=headers)
    return client.do_get(flight.Ticket(b"who"), options).read_all().column("who")[0].as_py()


def refusal(flight: ModuleType, location: str, **kwargs: Any) -> tuple[BaseException, float]:
    """The error a DoGet from a new ``flight`` client raises, and how long it took."""
    started = time.monotonic()
    with pytest.raises(flight.FlightError) as caught:
        client = flight.connect(location, **kwargs)
        try:
            who_is(client)
        finally:
            client.close()
    return caught.value, time.monotonic() - started


def expired_server_certificate(ca: CertificateAuthority) -> IssuedCertificate:
    """A localhost server certificate from ``ca`` that expired yesterday."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=30))
            .not_valid_after(now - dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca.private_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return IssuedCertificate(cert.public_bytes(serialization.Encoding.PEM), key_pem)
