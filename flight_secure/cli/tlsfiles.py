"""Checks of the files ``serve`` trusts, run before the server starts, naming the bad file.

grpcio reports a bad certificate or key only as "Failed to bind to address" once the
server starts. :func:`load_server_pair` and :func:`load_client_ca` read the PEM files
first and raise :class:`~flight_secure.cli._common.CommandError` naming the option, the
file and what is wrong: a key given as a certificate (or the reverse), an encrypted or
unreadable key, a pair whose halves do not match, a certificate expired or not yet
valid. :func:`check_not_writable_by_others` refuses a file or folder that another
account could replace (whoever replaces ``ca.pem`` decides which clients get in), and
:func:`check_live_file` does the same for a file serve re-reads while it runs (the
revocation file) and the folder it may appear in. :func:`server_trust_root` finds the
file a client should trust for the server.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from flight_secure.cli._common import CommandError

#: What each kind of PEM file holds, by the end of its BEGIN line.
_MARKS = {"certificate": b"-----BEGIN CERTIFICATE-----", "private key": b"PRIVATE KEY-----"}


def check_not_writable_by_others(path: Path, option: str) -> None:
    """CommandError when another account may write ``path`` (a file or a folder): its
    group or others, or its owner when that is neither this process's account nor root."""
    info = path.stat()
    if info.st_uid not in (os.geteuid(), 0):
        raise CommandError(f"{option} {path} belongs to another account (uid {info.st_uid}), "
                           "which could replace what the server trusts; make it yours: "
                           f"chown {os.geteuid()} {path}")
    if stat.S_IMODE(info.st_mode) & 0o022:
        raise CommandError(f"{option} {path} is writable by other accounts, who could replace "
                           f"what the server trusts; make it yours alone: chmod go-w {path}")


def check_live_file(path: Path, option: str) -> None:
    """CommandError when other accounts may write ``path`` (if it exists) or the folder
    it is in: serve reads such a file whenever it appears or changes (a missing one is
    empty), and it is rewritten by renaming a new file over it, so whoever may write
    the folder may also put their own file there."""
    check_not_writable_by_others(path.absolute().parent, f"{option} {path}: its folder")
    if path.exists():
        check_not_writable_by_others(path, option)


def _read_pem(path: Path, option: str, kind: str) -> bytes:
    """The bytes of ``path``; CommandError unless they hold a PEM ``kind`` (a key of
    :data:`_MARKS`), saying what they hold instead when that is known."""
    data = path.read_bytes()
    if _MARKS[kind] not in data:
        other = next((name for name, mark in _MARKS.items() if mark in data), None)
        what = f"is a {other}, not a {kind}" if other else f"holds no PEM {kind}"
        raise CommandError(f"{option} {path} {what}")
    return data


def _certificates(path: Path, option: str) -> tuple[bytes, list[x509.Certificate]]:
    """The file's PEM and the certificates in it."""
    data = _read_pem(path, option, "certificate")
    try:
        return data, x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CommandError(f"{option} {path}: the certificate in it cannot be read") from None


def _check_dates(certificate: x509.Certificate, path: Path, option: str) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    if certificate.not_valid_after_utc <= now:
        raise CommandError(f"{option} {path}: the certificate expired on "
                           f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if certificate.not_valid_before_utc > now:
        raise CommandError(f"{option} {path}: the certificate is not valid before "
                           f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")


def _private_key(path: Path, option: str) -> tuple[bytes, object]:
    """The file's PEM and the key in it."""
    data = _read_pem(path, option, "private key")
    try:
        return data, serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's signal for "this key needs a password"
        raise CommandError(f"{option} {path}: the key is encrypted; give serve an unencrypted "
                           "key file (readable by its account only)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CommandError(f"{option} {path}: the private key in it cannot be read") from None


def load_server_pair(cert_path: Path, key_path: Path) -> tuple[bytes, bytes]:
    """The (certificate PEM, key PEM) of ``--tls-cert``/``--tls-key``, checked.

    Raises CommandError when either file is not what it should be, the leaf
    certificate is outside its validity period, or the key is not the certificate's.
    """
    cert_pem, certificates = _certificates(cert_path, "--tls-cert")
    leaf = certificates[0]
    _check_dates(leaf, cert_path, "--tls-cert")
    key_pem, key = _private_key(key_path, "--tls-key")
    if leaf.public_key() != key.public_key():  # type: ignore[attr-defined]
        raise CommandError(f"--tls-key {key_path} is not the key of --tls-cert {cert_path} "
                           "(the two files do not belong together)")
    return cert_pem, key_pem  # the bytes checked, not a second read


def load_client_ca(path: Path) -> bytes:
    """The PEM of ``--ca`` (certificates that sign client certificates), checked.

    Raises CommandError when it holds no certificate or one is outside its validity.
    """
    pem, certificates = _certificates(path, "--ca")
    for certificate in certificates:
        _check_dates(certificate, path, "--ca")
    return pem


def server_trust_root(cert_path: Path, ca_path: Path | None) -> Path | None:
    """The file a client should trust to verify the server certificate in ``cert_path``.

    ``cert_path`` itself when its leaf is self-signed; ``ca_path`` when a certificate
    in it signed the leaf; else None (a public CA, or one only the operator knows).
    """
    leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    candidates = [(cert_path, [leaf])]
    if ca_path is not None:
        candidates.append((ca_path, x509.load_pem_x509_certificates(ca_path.read_bytes())))
    for path, issuers in candidates:
        for issuer in issuers:
            try:
                leaf.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return path
    return None
