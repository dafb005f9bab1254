"""``flight-secure token``: mint a signed JWT for testing, and make signing keys.

``issue``: the key file holds an unencrypted PEM private key (EdDSA: Ed25519, ES256:
P-256, RS256: RSA >= 2048 bits) or, for HS256, the shared secret itself (at least 32
bytes; a trailing newline is ignored). Only the token goes to standard output.

``keygen``: a new Ed25519 private key in a new file of mode 0600 (an existing file is
never overwritten), for ``serve --signing-key`` or ``token issue --alg EdDSA``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from flight_secure.auth.tokens import JWTIssuer
from flight_secure.cli._common import CommandError

ALGORITHMS = ("EdDSA", "ES256", "RS256", "HS256")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``issue`` subcommand to ``parser``."""
    actions = parser.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    issue = actions.add_parser(
        "issue", help="print a signed token for a subject",
        description="Sign a JWT for SUB with KEYFILE and print it. Make a key with e.g. "
        "`openssl genpkey -algorithm ed25519 -out jwt.key` and give the server its public "
        "half (`openssl pkey -in jwt.key -pubout -out jwt.pub`, then serve --jwt-key jwt.pub).")
    issue.add_argument("--key", required=True, type=Path, metavar="KEYFILE",
                       help="PEM private key, or the shared secret for HS256")
    issue.add_argument("--alg", required=True, choices=ALGORITHMS, help="signature algorithm")
    issue.add_argument("--sub", required=True, metavar="NAME", help="the subject (user name)")
    issue.add_argument("--ttl", type=float, default=900.0, metavar="S",
                       help="seconds until the token expires (default 900)")
    issue.add_argument("--aud", metavar="A", help="audience claim")
    issue.add_argument("--iss", metavar="I", help="issuer claim")
    issue.add_argument("--kid", metavar="ID", help="key id for the token header")
    issue.add_argument("--claim", action="append", default=[], metavar="K=V",
                       help="extra claim; V is parsed as JSON when it can be "
                       '(roles=["analyst"], n=3), else kept as text; repeatable')
    issue.set_defaults(run=_issue)
    keygen = actions.add_parser(
        "keygen", help="make an Ed25519 signing key (a new file, mode 0600)",
        description="Write a new Ed25519 private key (PEM) to FILE, readable by you alone, "
        "for serve --signing-key (give every node the same file) or token issue --alg "
        "EdDSA. An existing FILE is never overwritten.")
    keygen.add_argument("--out", required=True, type=Path, metavar="FILE",
                        help="the key file to create")
    keygen.set_defaults(run=_keygen)


def parse_claims(items: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` as a dict; JSON values are decoded, anything else stays a string.

    Raises CommandError for an item without ``=`` or a key given twice.
    """
    claims: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--claim {item!r}: expected KEY=VALUE")
        if key in claims:
            raise CommandError(f"--claim {key!r} is given twice")
        try:
            claims[key] = json.loads(raw)
        except ValueError:
            claims[key] = raw
    return claims


def _issue(args: argparse.Namespace) -> int:
    key: bytes = args.key.read_bytes()
    if args.alg.startswith("HS"):
        key = key.rstrip(b"\r\n")
    issuer = JWTIssuer(key, algorithm=args.alg, issuer=args.iss, audience=args.aud,
                       ttl=args.ttl, key_id=args.kid)
    print(issuer.issue(args.sub, **parse_claims(args.claim)))
    return 0


def _keygen(args: argparse.Namespace) -> int:
    pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                     NoEncryption())
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(f"{args.out} exists; remove it first or choose another file "
                           "(a key in use is never overwritten)") from None
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        args.out.unlink(missing_ok=True)
        raise
    print(f"wrote a new Ed25519 private key to {args.out} (mode 0600)")
    return 0
