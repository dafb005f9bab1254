"""Development certificates for local mutual TLS. Never for production (keys are unencrypted).

``generate_dev_certificates("certs", clients=["alice"])`` or, from a shell,
``python -m flight_secure.certs --out certs --client alice`` writes ``ca.pem``/``ca.key``,
``server.pem``/``server.key`` and ``STEM.pem``/``STEM.key`` per client.  Keys are PKCS#8
PEM, mode 0600 from birth; certificates mode 0644; each file is written atomically.  A
folder it creates is 0755 (never wider, whatever the umask), so no one else can replace
a file in it.

Hosts that parse as IP addresses become IP SANs, others DNS SANs.  A client NAME is the
subject CN and one SAN: a URI SAN if it contains ``://`` (``spiffe://example.org/alice``),
an e-mail (rfc822Name) SAN if it contains ``@``, else a DNS SAN.  Its file STEM is the
last non-empty path segment of a URI (the authority if there is no path), the local part
of an e-mail address, or NAME itself; STEM must match ``[A-Za-z0-9][A-Za-z0-9._-]*``,
contain no ``..``, not be ``ca``/``server`` and differ from other clients' stems (all
case-insensitively), so it can never name a path outside the output directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import ipaddress
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flight_secure.files import write_atomic

__all__ = ["DEFAULT_HOSTS", "KEY_TYPES", "CertificateAuthority", "CertificateExistsError",
           "DevCertificates", "InvalidNameError", "IssuedCertificate", "client_file_stem",
           "generate_dev_certificates"]

KEY_TYPES = ("ec", "rsa", "ed25519")
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CLOCK_SKEW = dt.timedelta(minutes=5)
RSA_KEY_BITS = 3072
FOLDER_MODE = 0o755
"""Mode of folders this module creates: readable by all (clients need ``ca.pem``), writable
by the owner alone (whoever can replace ``ca.pem`` decides which clients are trusted)."""
_KEY_CLASSES = {"ec": ec.EllipticCurvePrivateKey, "rsa": rsa.RSAPrivateKey,
                "ed25519": ed25519.Ed25519PrivateKey}
_LABEL = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
_DNS_NAME = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")
_SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
PathLike = str | os.PathLike[str]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class CertificateExistsError(FileExistsError):
    """A target file exists and ``force`` was not given; ``filename`` names that file."""

    def __init__(self, path: Path, detail: str = "already exists") -> None:
        super().__init__(errno.EEXIST, f"{path} {detail}; use --force (force=True) to "
                         "regenerate the whole set with a new CA", str(path))

    def __str__(self) -> str:
        return str(self.strerror)


class InvalidNameError(ValueError):
    """A host or client name is unusable: bad syntax, unsafe file name, or a clash."""


def _new_key(key_type: str) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"key type must be one of {', '.join(KEY_TYPES)}, not {key_type!r}")


def _check_days(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive integer, not {days!r}")


def _key_usage(**true_flags: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment",
                           "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                           "encipher_only", "decipher_only"), False)
    return x509.KeyUsage(**{**flags, **true_flags})


def _make_folder(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0755 at most (the umask may narrow
    it, never widen it): everyone may read the certificates, only the owner may replace
    them. A folder that exists is left as it is."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by someone else
            folder.mkdir(mode=FOLDER_MODE)


def _write_pair(cert_pem: bytes, key_pem: bytes, cert_path: PathLike, key_path: PathLike) -> None:
    write_atomic(Path(key_path), key_pem, 0o600)
    write_atomic(Path(cert_path), cert_pem, 0o644)


def _host_sans(hosts: Sequence[str]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = []
    for host in dict.fromkeys((hosts,) if isinstance(hosts, str) else hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if len(host) > 253 or not _DNS_NAME.fullmatch(host):
                raise InvalidNameError(f"host {host!r} is not an IP address or DNS name") from None
            sans.append(x509.DNSName(host))
    if not sans:
        raise InvalidNameError("at least one host is required")
    return sans


def _parse_client_name(name: str) -> tuple[x509.GeneralName, str]:
    """Return (SAN, file stem) for client NAME, following the module docstring's rules."""
    if not (0 < len(name) <= 64 and name.isascii() and name.isprintable() and " " not in name):
        raise InvalidNameError(f"client name {name!r} must be 1-64 ASCII characters, no spaces")
    san: x509.GeneralName
    if "://" in name:
        try:
            parts = urlsplit(name)
        except ValueError:  # e.g. an unbalanced "[" in the authority
            parts = urlsplit("")
        if not _URI_SCHEME.fullmatch(parts.scheme) or not parts.netloc:
            raise InvalidNameError(f"client name {name!r} is not a valid URI")
        segments = [s for s in parts.path.split("/") if s]
        stem, san = segments[-1] if segments else parts.netloc, x509.UniformResourceIdentifier(name)
    elif "@" in name:
        stem, _, domain = name.partition("@")
        if not _DNS_NAME.fullmatch(domain):
            raise InvalidNameError(f"client name {name!r} is not a valid e-mail address")
        san = x509.RFC822Name(name)
    elif _DNS_NAME.fullmatch(name):
        stem, san = name, x509.DNSName(name)
    else:
        raise InvalidNameError(f"client name {name!r} is not a valid DNS-style name")
    if not _SAFE_STEM.fullmatch(stem) or ".." in stem or stem.lower() in ("ca", "server"):
        raise InvalidNameError(f"client name {name!r} gives the unsafe or reserved file name "
                               f"{stem!r} (need [A-Za-z0-9][A-Za-z0-9._-]*, no '..', not "
                               "'ca' or 'server')")
    return san, stem


def client_file_stem(name: str) -> str:
    """The STEM of client NAME's files ``STEM.pem``/``STEM.key``; raises InvalidNameError."""
    return _parse_client_name(name)[1]


@dataclass(frozen=True)
class IssuedCertificate:
    """A leaf certificate and its private key as PEM bytes (key: unencrypted PKCS#8)."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate."""
        return x509.load_pem_x509_certificate(self.cert_pem)

    def write(self, cert_path: PathLike, key_path: PathLike) -> None:
        """Atomically write the key (mode 0600), then the certificate (mode 0644)."""
        _write_pair(self.cert_pem, self.key_pem, cert_path, key_path)


def _sign(subject: x509.Name, issuer: x509.Name, key: PrivateKey, signer: PrivateKey,
          not_after: dt.datetime, extensions: list[tuple[x509.ExtensionType, bool]]
          ) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(dt.datetime.now(dt.timezone.utc) - CLOCK_SKEW)
               .not_valid_after(not_after))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    hash_alg = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, hash_alg)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "flight_secure development"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class CertificateAuthority:
    """A CA certificate plus key that issues server and client leaf certificates.

    Leaves get critical BasicConstraints(ca=False) and KeyUsage (digitalSignature, plus
    keyEncipherment for RSA or keyAgreement for EC keys), an ExtendedKeyUsage, SANs, SKI
    and AKI, a random serial, start CLOCK_SKEW in the past and never outlive the CA.
    Signatures use SHA-256 (Ed25519 signs without a separate hash).
    """

    def __init__(self, certificate: x509.Certificate, private_key: PrivateKey) -> None:
        """Wrap an existing CA; ValueError if the key is unsupported or does not match."""
        types = [name for name, cls in _KEY_CLASSES.items() if isinstance(private_key, cls)]
        if not types:
            raise ValueError(f"unsupported CA key type {type(private_key).__name__}")
        if certificate.public_key() != private_key.public_key():
            raise ValueError("the CA certificate and private key do not match")
        self.certificate, self.private_key, self.key_type = certificate, private_key, types[0]

    @classmethod
    def create(cls, *, days: int = 365, key_type: str = "ec",
               common_name: str | None = None) -> CertificateAuthority:
        """A new self-signed CA: BasicConstraints(ca, path_length=0), certSign + cRLSign."""
        _check_days(days)
        key = _new_key(key_type)
        name = _name(common_name or f"flight_secure dev CA {secrets.token_hex(4)}")
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        not_after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=days)
        cert = _sign(name, name, key, key, not_after,
                     [(x509.BasicConstraints(ca=True, path_length=0), True),
                      (_key_usage(key_cert_sign=True, crl_sign=True), True), (ski, False),
                      (x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       False)])
        return cls(cert, key)

    @classmethod
    def load(cls, cert_path: PathLike, key_path: PathLike) -> CertificateAuthority:
        """Load a CA from PEM files (unencrypted key); ValueError if it is unusable."""
        try:
            cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
            key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except (ValueError, x509.ExtensionNotFound) as exc:
            raise ValueError(f"cannot load a CA from {cert_path} and {key_path}: {exc}") from None
        if not is_ca:
            raise ValueError(f"{cert_path} is not a CA certificate")
        return cls(cert, key)  # type: ignore[arg-type]  # __init__ checks the key type

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate as PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The CA private key as unencrypted PKCS#8 PEM."""
        return _key_pem(self.private_key)

    def write(self, cert_path: PathLike, key_path: PathLike) -> None:
        """Atomically write the key (mode 0600), then the certificate (mode 0644)."""
        _write_pair(self.cert_pem, self.key_pem, cert_path, key_path)

    def issue_server(self, hosts: Sequence[str] = DEFAULT_HOSTS, days: int = 365, *,
                     key_type: str | None = None) -> IssuedCertificate:
        """A serverAuth leaf with ``hosts`` as IP/DNS SANs; its CN is the first host."""
        sans = _host_sans(hosts)
        first = str(sans[0].value)
        cn = first if len(first) <= 64 else "flight_secure dev server"
        return self._issue(cn, sans, ExtendedKeyUsageOID.SERVER_AUTH, days, key_type)

    def issue_client(self, name: str, days: int = 365, *,
                     key_type: str | None = None) -> IssuedCertificate:
        """A clientAuth leaf with CN=name and a URI, e-mail or DNS SAN of ``name``."""
        san, _ = _parse_client_name(name)
        return self._issue(name, [san], ExtendedKeyUsageOID.CLIENT_AUTH, days, key_type)

    def _issue(self, common_name: str, sans: list[x509.GeneralName],
               usage: x509.ObjectIdentifier, days: int, key_type: str | None
               ) -> IssuedCertificate:
        _check_days(days)
        key = _new_key(key_type or self.key_type)
        now = dt.datetime.now(dt.timezone.utc)
        not_after = min(now + dt.timedelta(days=days), self.certificate.not_valid_after_utc)
        if not_after <= now:
            raise ValueError("the CA certificate has expired; regenerate the set with --force")
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(self.private_key.public_key())
        with contextlib.suppress(x509.ExtensionNotFound):
            ca_ski = self.certificate.extensions.get_extension_for_class(
                x509.SubjectKeyIdentifier).value
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(digital_signature=True,
                        key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                        key_agreement=isinstance(key, ec.EllipticCurvePrivateKey)), True),
            (x509.ExtendedKeyUsage([usage]), False),
            (x509.SubjectAlternativeName(sans), False),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
            (x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False)]
        cert = _sign(_name(common_name), self.certificate.subject, key, self.private_key,
                     not_after, extensions)
        return IssuedCertificate(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class DevCertificates:
    """Paths of a development set; ``clients`` maps each NAME requested in this call to
    (cert path, key path) and ``written`` lists the files this call wrote (others were kept)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    written: tuple[Path, ...] = ()

    def ca_cert_pem(self) -> bytes:
        """The CA certificate PEM: the trust root for both servers and clients."""
        return self.ca_cert.read_bytes()

    def server_pems(self) -> tuple[bytes, bytes]:
        """The server's (certificate PEM, private key PEM)."""
        return self.server_cert.read_bytes(), self.server_key.read_bytes()

    def client_pems(self, name: str) -> tuple[bytes, bytes]:
        """Client ``name``'s (certificate PEM, private key PEM); KeyError if not in ``clients``."""
        cert_path, key_path = self.clients[name]
        return cert_path.read_bytes(), key_path.read_bytes()


def _server_reusable(ca: CertificateAuthority, path: Path, sans: list[x509.GeneralName]) -> bool:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        cert.verify_directly_issued_by(ca.certificate)
        current = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    fresh = cert.not_valid_after_utc > dt.datetime.now(dt.timezone.utc)
    return fresh and set(current) == set(sans)


def generate_dev_certificates(out_dir: PathLike = "certs", hosts: Sequence[str] = DEFAULT_HOSTS,
                              clients: Sequence[str] = (), days: int = 365, key_type: str = "ec",
                              force: bool = False) -> DevCertificates:
    """Create, or extend, a development CA with a server and client certificates in ``out_dir``.

    Names and conflicts are all checked before anything is written.  ``force`` rewrites the
    CA, server and requested clients with a new CA (other client files are left alone and
    stop verifying).  Without it an existing CA pair is reused, an existing server pair is
    kept when that CA issued it for exactly ``hosts`` and it is unexpired, and only new
    clients are issued.  Raises CertificateExistsError (a FileExistsError naming the file)
    when a requested client exists, a pair is half present, leaves exist without a CA, the
    kept server does not match, or nothing new would be written; InvalidNameError or
    ValueError for bad arguments; OSError when ``out_dir`` cannot be written.
    """
    if key_type not in KEY_TYPES:
        raise ValueError(f"key type must be one of {', '.join(KEY_TYPES)}, not {key_type!r}")
    _check_days(days)
    host_sans = _host_sans(hosts)
    out = Path(out_dir)
    ca_pair = (out / "ca.pem", out / "ca.key")
    server_pair = (out / "server.pem", out / "server.key")
    client_paths: dict[str, tuple[Path, Path]] = {}
    owners: dict[str, str] = {}
    for name in dict.fromkeys((clients,) if isinstance(clients, str) else clients):
        stem = client_file_stem(name)
        if stem.lower() in owners:
            raise InvalidNameError(f"client names {owners[stem.lower()]!r} and {name!r} would "
                                   f"share the file name {stem!r}")
        owners[stem.lower()] = name
        client_paths[name] = (out / f"{stem}.pem", out / f"{stem}.key")

    ca: CertificateAuthority | None = None
    new_server = True
    if not force:
        for cert_path, key_path in [ca_pair, server_pair, *client_paths.values()]:
            if cert_path.exists() != key_path.exists():
                half = cert_path if cert_path.exists() else key_path
                raise CertificateExistsError(half, "exists without its other half")
        if ca_pair[0].exists():
            ca = CertificateAuthority.load(*ca_pair)
            if server_pair[0].exists():
                if not _server_reusable(ca, server_pair[0], host_sans):
                    raise CertificateExistsError(server_pair[0], "exists for other hosts, is "
                                                 "from another CA, or has expired")
                new_server = False
        leaves = [cert for cert, _ in client_paths.values()]
        for cert_path in [server_pair[0], *leaves] if new_server else leaves:
            if cert_path.exists():
                raise CertificateExistsError(cert_path)
        if not new_server and not client_paths:
            raise CertificateExistsError(server_pair[0], "and the CA already exist and no new "
                                         "client was requested")

    _make_folder(out)
    written: list[Path] = []
    if ca is None:
        ca = CertificateAuthority.create(days=days, key_type=key_type)
        ca.write(*ca_pair)
        written += ca_pair
    if new_server:
        ca.issue_server(hosts, days, key_type=key_type).write(*server_pair)
        written += server_pair
    for name, pair in client_paths.items():
        ca.issue_client(name, days, key_type=key_type).write(*pair)
        written += pair
    return DevCertificates(*ca_pair, *server_pair, clients=client_paths, written=tuple(written))


if __name__ == "__main__":  # the command line lives in flight_secure.cli.certs
    from flight_secure.cli.certs import main

    raise SystemExit(main())
