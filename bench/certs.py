"""Throw-away certificates for the TLS and mTLS benchmark variants.

Uses ``flight_secure.certs.generate_dev_certificates`` when it is importable and
produces the files we need; otherwise a minimal generator built on
``cryptography`` (one CA, one server cert for 127.0.0.1/localhost, one client cert).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_NAME = "bench-client"


@dataclass(frozen=True)
class CertPaths:
    """PEM files for one benchmark run, and who made them."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    source: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    usage: ExtendedKeyUsageOID | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        key_path = path.with_name(path.stem + "-key.pem")
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)


def own_certificates(out_dir: Path) -> CertPaths:
    """Write ca.pem, server.pem, server-key.pem, client.pem, client-key.pem into ``out_dir``."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("flight-bench-ca", ca_key, None)
    server_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    server = _issue(
        "localhost",
        server_key,
        (ca.subject, ca_key),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        sans=sans,
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _issue(
        CLIENT_NAME, client_key, (ca.subject, ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    _write(out_dir / "ca.pem", ca, None)
    _write(out_dir / "server.pem", server, server_key)
    _write(out_dir / "client.pem", client, client_key)
    return _paths(out_dir, "bench.certs")


def _paths(out_dir: Path, source: str) -> CertPaths:
    return CertPaths(
        ca=str(out_dir / "ca.pem"),
        server_cert=str(out_dir / "server.pem"),
        server_key=str(out_dir / "server-key.pem"),
        client_cert=str(out_dir / "client.pem"),
        client_key=str(out_dir / "client-key.pem"),
        source=source,
    )


def _project_certificates(out_dir: Path) -> CertPaths:
    """Run flight_secure's generator and copy its files to our names; raises if any is missing."""
    from flight_secure.certs import generate_dev_certificates

    made = out_dir / "flight_secure"
    made.mkdir()
    generate_dev_certificates(made, hosts=["127.0.0.1", "localhost"], clients=[CLIENT_NAME])
    wanted = {
        "ca.pem": ["ca.pem", "ca.crt"],
        "server.pem": ["server.pem", "server.crt"],
        "server-key.pem": ["server-key.pem", "server.key"],
        "client.pem": [f"{CLIENT_NAME}.pem", f"{CLIENT_NAME}.crt", "client.pem"],
        "client-key.pem": [f"{CLIENT_NAME}-key.pem", f"{CLIENT_NAME}.key", "client-key.pem"],
    }
    for target, candidates in wanted.items():
        found = next((made / c for c in candidates if (made / c).is_file()), None)
        if found is None:
            raise FileNotFoundError(f"flight_secure.certs made no {candidates}")
        shutil.copyfile(found, out_dir / target)
    return _paths(out_dir, "flight_secure.certs")


def make_certificates(out_dir: Path) -> tuple[CertPaths, str]:
    """Certificates in ``out_dir`` (which must exist), plus a note on how they were made."""
    try:
        return _project_certificates(out_dir), "made by flight_secure.certs"
    except Exception as exc:  # any failure of the optional project helper -> our own
        note = f"flight_secure.certs unusable ({type(exc).__name__}: {exc}); used bench.certs"
        return own_certificates(out_dir), note[:300]
