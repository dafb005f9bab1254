"""TLS credentials: the client's channel credentials and reloadable server credentials.

* :func:`channel_credentials` builds what :class:`~flight_secure.client.FlightClient`
  uses for a ``grpc+tls`` location: trusted roots, an optional client certificate
  for mutual TLS, a host-name override, or (``disable_server_verification``) the
  server's own certificate pinned as it is presented.
* :class:`ReloadingServerCredentials` (or :func:`reloading_server_credentials`)
  reads the server's certificate, key and client CA bundle from files and picks
  up replacements (cert-manager, certbot, a rename) without a restart: pass it as
  ``FlightServerOptions(tls_credentials=...)``. Connections already open keep the
  certificate they were set up with; new connections get the new one.

Key material never appears in log messages, errors or reprs.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from flight_secure.errors import FlightUnavailableError
from flight_secure.grpc_internals import core_credentials
from flight_secure.location import GRPC_DEFAULT_PORT, Location

__all__ = [
    "ReloadingServerCredentials",
    "channel_credentials",
    "check_client_options",
    "pem_bytes",
    "reloading_server_credentials",
]

log = logging.getLogger("flight_secure.tls")

#: Seconds allowed for fetching the server certificate when verification is disabled.
FETCH_TIMEOUT = 10.0

PathLike = str | os.PathLike[str]


def pem_bytes(value: bytes | str | None) -> bytes | None:
    """PEM given as text or bytes, as bytes (None stays None)."""
    if value is None:
        return None
    return value.encode() if isinstance(value, str) else bytes(value)


# ---------------------------------------------------------------------- clients


def check_client_options(
    cert_chain: bytes | str | None,
    private_key: bytes | str | None,
    disable_server_verification: bool,
) -> None:
    """Check a ``grpc+tls`` client's options when the client is made, without I/O.

    ``cert_chain`` and ``private_key`` come both or neither (ValueError otherwise);
    ``disable_server_verification=True`` warns that the server is not verified.
    """
    if (cert_chain is None) != (private_key is None):
        raise ValueError("cert_chain and private_key must be given together for mutual TLS")
    if disable_server_verification:
        warnings.warn(
            "disable_server_verification=True: the server's identity is NOT verified; "
            "anyone on the network path can impersonate it. Use only for development.",
            stacklevel=3,
        )


def channel_credentials(
    location: Location,
    tls_root_certs: bytes | str | None,
    cert_chain: bytes | str | None,
    private_key: bytes | str | None,
    override_hostname: str | None,
    disable_server_verification: bool,
) -> tuple[grpc.ChannelCredentials, list[tuple[str, Any]]]:
    """gRPC channel credentials and channel options for a ``grpc+tls`` client
    whose options :func:`check_client_options` accepted.

    ``tls_root_certs`` (PEM; system roots when None) are the CAs the server's
    certificate must chain to; ``cert_chain`` and ``private_key`` (PEM) present a
    client certificate; ``override_hostname`` is the name the server's certificate
    is checked against instead of the host.

    ``disable_server_verification=True`` connects once without verification to
    fetch the certificate the server presents and trusts exactly that certificate,
    checking it against a name it holds: so a client calls this when it first
    needs its connection, not when it is made. The connection stays encrypted but
    anyone on the path could have answered instead of the server, and a server
    that rotates its certificate must be reconnected with a new client. grpcio
    offers no way to skip verification, hence the fetch; it raises
    FlightUnavailableError when the server cannot be reached within FETCH_TIMEOUT
    seconds, and when the certificate is expired or not yet valid (gRPC checks the
    validity period even of a pinned certificate).
    """
    options: list[tuple[str, Any]] = []
    roots = pem_bytes(tls_root_certs)
    if disable_server_verification:
        roots, name = _unverified_server_certificate(location)
        override_hostname = override_hostname or name
    if override_hostname:
        options.append(("grpc.ssl_target_name_override", override_hostname))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=pem_bytes(private_key),
        certificate_chain=pem_bytes(cert_chain),
    )
    return credentials, options


def _unverified_server_certificate(
    location: Location, timeout: float = FETCH_TIMEOUT
) -> tuple[bytes, str]:
    """The server's leaf certificate (PEM), fetched unverified, and a name it is valid for.

    The name is the dialled host when the certificate lists it, else its first
    DNS SAN, else its first IP SAN, else its subject CN.
    """
    host, port = location.host or "localhost", location.port or GRPC_DEFAULT_PORT
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock, \
                context.wrap_socket(sock, server_hostname=host) as connection:
            der = connection.getpeercert(binary_form=True)
    except OSError as exc:  # refused, timed out, or a TLS failure (ssl.SSLError)
        raise FlightUnavailableError(
            f"disable_server_verification: could not fetch the TLS certificate of "
            f"{host}:{port}: {exc}"
        ) from None
    if not der:
        raise FlightUnavailableError(f"{host}:{port} presented no TLS certificate")
    certificate = x509.load_der_x509_certificate(der)
    now = datetime.now(timezone.utc)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise FlightUnavailableError(
            f"the TLS certificate of {host}:{port} is valid only from "
            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
            "disable_server_verification cannot accept it (gRPC checks the validity "
            "period even of a pinned certificate)"
        )
    return certificate.public_bytes(serialization.Encoding.PEM), _name_in(certificate, host)


def _name_in(certificate: x509.Certificate, host: str) -> str:
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    names = [*sans.get_values_for_type(x509.DNSName),
             *(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))]
    if host in names:
        return host
    if names:
        return names[0]
    cns = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else host


# ---------------------------------------------------------------------- servers


def _check_material(cert: bytes, key: bytes, roots: bytes | None, paths: list[Path]) -> str:
    """Validate a certificate chain, its key and a CA bundle; a summary of the leaf.

    Raises ValueError naming the file and the problem (never the key's content).
    """
    cert_path, key_path = paths[0], paths[1]
    try:
        chain = x509.load_pem_x509_certificates(cert)
    except ValueError:
        raise ValueError(f"{cert_path} holds no PEM certificate") from None
    try:
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{key_path} is not an unencrypted PEM private key") from None
    if chain[0].public_key() != private_key.public_key():
        raise ValueError(f"the certificate in {cert_path} does not match the key in {key_path}")
    if roots is not None:
        try:
            x509.load_pem_x509_certificates(roots)
        except ValueError:
            raise ValueError(f"{paths[2]} holds no PEM CA certificate") from None
    leaf = chain[0]
    expiry = leaf.not_valid_after_utc.isoformat()
    return f"subject {leaf.subject.rfc4514_string()}, valid until {expiry}"


class ReloadingServerCredentials(grpc.ServerCredentials):
    """Server TLS credentials read from PEM files and re-read when the files change.

    ``cert_path`` holds the server certificate (optionally followed by its chain),
    ``key_path`` its unencrypted private key, ``root_path`` the CA bundle client
    certificates must chain to (required when ``require_client_auth`` is true, which
    makes the server demand and verify a client certificate: also pass
    ``verify_client=True`` to the server so the certificate becomes the caller's
    identity). The files are read at construction: ValueError if they are
    unusable, OSError if unreadable.

    gRPC asks for the current certificate whenever a client connects; at most
    every ``check_interval`` seconds that re-reads the files (a few kilobytes)
    and compares their content with what is in use, so replacement by rename,
    by symlink swap or by rewriting in place are all seen. New content is used
    only if it is valid (the certificate parses and matches the key, the CA
    bundle parses); otherwise the current certificate stays in use and the
    problem is logged once (``flight_secure.tls``), so a half-replaced pair is
    harmless until its other half arrives. :meth:`reload` re-reads at once.
    """

    def __init__(
        self,
        cert_path: PathLike,
        key_path: PathLike,
        root_path: PathLike | None = None,
        *,
        require_client_auth: bool = False,
        check_interval: float = 1.0,
    ) -> None:
        if require_client_auth and root_path is None:
            raise ValueError("require_client_auth=True needs root_path (the client CA bundle)")
        self._paths = [Path(p) for p in (cert_path, key_path, root_path) if p is not None]
        self.require_client_auth = require_client_auth
        self.check_interval = check_interval
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._problem: str | None = None  # the last reload problem logged
        self._material = self._read()
        self._summary = _check_material(*self._material, self._paths)
        self._next_check = time.monotonic() + check_interval
        dynamic = grpc.dynamic_ssl_server_credentials(
            self._configuration(), self._fetch, require_client_authentication=require_client_auth
        )
        super().__init__(core_credentials(dynamic))

    def reload(self) -> bool:
        """Re-read the files now; True if new material will serve new connections.

        Returns False when the content is unchanged. Raises ValueError (keeping
        the current certificate) when the new content is invalid, OSError when a
        file cannot be read.
        """
        with self._lock:
            return self._take(self._read())

    def __repr__(self) -> str:
        files = ", ".join(str(p) for p in self._paths)
        return f"ReloadingServerCredentials({files}; {self._summary})"

    # ---------------------------------------------------------------- helpers

    def _read(self) -> tuple[bytes, bytes, bytes | None]:
        cert, key, *roots = (p.read_bytes() for p in self._paths)
        return cert, key, roots[0] if roots else None

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key, roots = self._material
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=roots)

    def _take(self, material: tuple[bytes, bytes, bytes | None]) -> bool:
        """Switch to ``material`` if it differs and is valid (ValueError if invalid)."""
        if material == self._material:
            return False
        summary = _check_material(*material, self._paths)
        self._material, self._summary = material, summary
        self._pending = self._configuration()
        log.info("TLS certificate reloaded from %s: %s", self._paths[0], summary)
        return True

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's per-connection question: a new configuration, or None to keep the current."""
        try:
            with self._lock:
                now = time.monotonic()
                if self._pending is None and now >= self._next_check:
                    self._next_check = now + self.check_interval
                    self._check_files()
                pending, self._pending = self._pending, None
                return pending
        except Exception:  # never let a reload problem break the server's handshakes
            log.exception("checking the TLS certificate files failed; keeping the current one")
            return None

    def _check_files(self) -> None:
        """Take changed, valid files; log each new problem once and keep the current ones."""
        try:
            self._take(self._read())
        except OSError as exc:
            self._report(f"TLS certificate files not readable, keeping the current ones: {exc}")
        except ValueError as exc:
            self._report(f"new TLS certificate files rejected, keeping the current ones: {exc}")
        else:
            self._problem = None

    def _report(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            log.warning("%s", problem)


def reloading_server_credentials(
    cert_path: PathLike,
    key_path: PathLike,
    root_path: PathLike | None = None,
    require_client_auth: bool = False,
    check_interval: float = 1.0,
) -> ReloadingServerCredentials:
    """Server credentials that follow certificate files; see :class:`ReloadingServerCredentials`.

    Use as ``FlightServerOptions(tls_credentials=reloading_server_credentials(...))``
    (or the server constructor's ``tls_credentials=``), with a ``grpc+tls`` location.
    """
    return ReloadingServerCredentials(
        cert_path, key_path, root_path,
        require_client_auth=require_client_auth, check_interval=check_interval,
    )
