"""TLS credentials for clients and servers."""

from __future__ import annotations

import ssl
import warnings
from typing import Any

import grpc

from flight_secure.types import Location


def _pem(value: bytes | str | None) -> bytes | None:
    if value is None:
        return None
    return value.encode() if isinstance(value, str) else bytes(value)


def channel_credentials(
    location: Location,
    tls_root_certs: bytes | str | None,
    cert_chain: bytes | str | None,
    private_key: bytes | str | None,
    override_hostname: str | None,
    disable_server_verification: bool,
) -> tuple[grpc.ChannelCredentials, list[tuple[str, Any]]]:
    """gRPC channel credentials and channel options for a ``grpc+tls`` client."""
    if (cert_chain is None) != (private_key is None):
        raise ValueError("cert_chain and private_key must be given together for mutual TLS")
    options: list[tuple[str, Any]] = []
    roots = _pem(tls_root_certs)
    if disable_server_verification:
        warnings.warn(
            "disable_server_verification=True: the server's identity is NOT verified; "
            "anyone on the network path can impersonate it. Use only for development.",
            stacklevel=3,
        )
        roots, name = _unverified_server_certificate(location)
        override_hostname = override_hostname or name
    if override_hostname:
        options.append(("grpc.ssl_target_name_override", override_hostname))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=_pem(private_key),
        certificate_chain=_pem(cert_chain),
    )
    return credentials, options


def _unverified_server_certificate(location: Location) -> tuple[bytes, str]:
    """Fetch the server's certificate without verifying it, to trust it as presented."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    host, port = location.host or "localhost", location.port or 443
    pem = ssl.get_server_certificate((host, port)).encode()
    certificate = x509.load_pem_x509_certificate(pem)
    name = host
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = sans.get_values_for_type(x509.DNSName)
        if dns:
            name = dns[0]
    except x509.ExtensionNotFound:
        cns = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if cns:
            name = str(cns[0].value)
    return pem, name
