"""What a verified client certificate says: identity, subject, SANs, thumbprint.

The TLS layer has verified the chain before any of this runs; these functions
only read the leaf certificate (PEM). Parsed certificates are cached (the same
client certificate arrives with every call of a connection).

* :func:`certificate_info` — a :class:`~flight_secure.auth.base.CertificateInfo`:
  RFC 4514 subject, the identity (first URI SAN, else e-mail SAN, else DNS SAN,
  else subject CN; order and sources chosen by ``identity_from``), SANs, SHA-256
  fingerprint;
* :func:`certificate_thumbprint` — RFC 8705's ``x5t#S256``;
* :func:`certificate_subject` — the subject alone, for audit lines.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from flight_secure.auth.base import CertificateInfo
from flight_secure.errors import FlightUnauthenticatedError

__all__ = [
    "IDENTITY_SOURCES",
    "certificate_info",
    "certificate_subject",
    "certificate_thumbprint",
    "identity_sources",
    "thumbprint",
]

#: Where an identity may come from, in the default order of preference.
IDENTITY_SOURCES = ("uri", "email", "dns", "cn")
#: SAN kinds kept in :attr:`CertificateInfo.sans`, labelled ``"<kind>:<value>"``.
_SAN_KINDS: dict[str, type[x509.GeneralName]] = {
    "uri": x509.UniformResourceIdentifier,
    "email": x509.RFC822Name,
    "dns": x509.DNSName,
    "ip": x509.IPAddress,
}


def _certificate(pem: bytes | str) -> x509.Certificate:
    data = pem.encode() if isinstance(pem, str) else bytes(pem)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ValueError("not a PEM X.509 certificate") from None


@lru_cache(maxsize=256)
def certificate_thumbprint(pem: bytes | str) -> str:
    """The RFC 8705 ``x5t#S256`` of a certificate: unpadded base64url of SHA-256(DER).

    Raises ValueError when ``pem`` is not a PEM certificate.
    """
    return _thumbprint(hashlib.sha256(_certificate(pem).public_bytes(Encoding.DER)).digest())


def _thumbprint(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def thumbprint(info: CertificateInfo) -> str:
    """The ``x5t#S256`` of the certificate ``info`` describes."""
    return _thumbprint(bytes.fromhex(info.fingerprint_sha256))


def _sans(certificate: x509.Certificate) -> dict[str, list[str]]:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return {}
    return {
        kind: [str(value) for value in extension.value.get_values_for_type(general_name)]
        for kind, general_name in _SAN_KINDS.items()
    }


@lru_cache(maxsize=256)
def _info(pem: bytes, identity_from: tuple[str, ...]) -> CertificateInfo:
    certificate = _certificate(pem)
    sans = _sans(certificate)
    candidates = dict(sans)
    candidates["cn"] = [
        str(attribute.value)
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]
    identity = next((candidates[s][0] for s in identity_from if candidates.get(s)), None)
    if not identity:
        raise FlightUnauthenticatedError(
            f"the client certificate names no identity in {', '.join(identity_from)}"
        )
    return CertificateInfo(
        subject=certificate.subject.rfc4514_string(),
        identity=identity,
        sans=tuple(f"{kind}:{value}" for kind, values in sans.items() for value in values),
        fingerprint_sha256=hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest(),
        pem=pem,
    )


def identity_sources(identity_from: Sequence[str]) -> tuple[str, ...]:
    """``identity_from`` checked: a non-empty tuple of :data:`IDENTITY_SOURCES` names.

    Raises ValueError otherwise.
    """
    sources = (identity_from,) if isinstance(identity_from, str) else tuple(identity_from)
    unknown = [s for s in sources if s not in IDENTITY_SOURCES]
    if unknown or not sources:
        raise ValueError(
            f"identity_from must name some of {', '.join(IDENTITY_SOURCES)}, not {sources!r}"
        )
    return sources


def certificate_info(
    pem: bytes | str, *, identity_from: Sequence[str] = IDENTITY_SOURCES
) -> CertificateInfo:
    """The details of certificate ``pem``, its identity taken from ``identity_from``.

    Raises ValueError for a malformed PEM or unknown source names, and
    FlightUnauthenticatedError when the certificate holds none of the sources.
    """
    data = pem.encode() if isinstance(pem, str) else bytes(pem)
    return _info(data, identity_sources(identity_from))


@lru_cache(maxsize=256)
def certificate_subject(pem: bytes) -> str:
    """The RFC 4514 subject of ``pem``; ``"(not a certificate)"`` when it cannot be read."""
    try:
        return _certificate(pem).subject.rfc4514_string()
    except ValueError:
        return "(not a certificate)"
