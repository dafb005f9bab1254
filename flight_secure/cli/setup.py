"""First-run defaults of ``flight-secure serve`` and what a client needs to connect.

* :func:`ensure_dev_certificates` makes the development CA, server (and, for mTLS,
  an ``admin`` client) certificate in a folder when they are missing;
* :func:`password_store` loads the password file, or on first run creates it with an
  ``admin`` user whose random password it prints once;
* :func:`jwt_verifier` and :func:`auth_handler` build the server's handler for ``--auth``;
* :class:`Connection` renders the "how to connect" text.
"""

from __future__ import annotations

import argparse
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flight_secure.auth.base import ServerAuthHandler
from flight_secure.auth.basic import BasicServerAuthHandler
from flight_secure.auth.guard import LoginGuard
from flight_secure.auth.jwt_auth import JWTServerAuthHandler
from flight_secure.auth.keys import SUPPORTED_ALGORITHMS
from flight_secure.auth.mtls import MutualTLSServerAuthHandler
from flight_secure.auth.passwords import PasswordStore
from flight_secure.auth.revocation import RevocationList, Revocations
from flight_secure.auth.tokens import JWTIssuer, JWTVerifier
from flight_secure.certs import DEFAULT_HOSTS, DevCertificates, generate_dev_certificates
from flight_secure.cli._common import CommandError
from flight_secure.cli.tlsfiles import check_not_writable_by_others

ADMIN = "admin"
USERS_FILE = "users.htpasswd"
SESSION_ISSUER = "flight-secure-serve"
"""The ``iss`` of session tokens signed with ``--signing-key``."""
NODE_CLOCK_SKEW = 5.0
"""Seconds by which the clocks of nodes sharing a signing key may differ: a token
issued by another node is accepted this long before its ``iat`` and after its ``exp``."""
_WILDCARDS = ("0.0.0.0", "::", "[::]", "")  # noqa: S104 (recognised, not bound)


def ensure_dev_certificates(directory: Path, host: str, client: str | None) -> DevCertificates:
    """The development set in ``directory``, made or completed as needed.

    The server certificate covers localhost, 127.0.0.1, ::1 and ``host`` (unless it
    is a wildcard address). ``client`` names a client certificate to have too.
    Raises CommandError when the folder or a file of the set is writable by other
    accounts (they could swap the CA that decides which client certificates pass).
    """
    hosts = list(DEFAULT_HOSTS)
    if host not in _WILDCARDS and host not in hosts:
        hosts.append(host)
    paths = {name: (directory / f"{name}.pem", directory / f"{name}.key")
             for name in ("ca", "server", *([client] if client else []))}
    missing = [name for name, pair in paths.items() if not all(p.exists() for p in pair)]
    if missing:
        new_clients = [client] if client in missing else []
        generate_dev_certificates(directory, hosts, clients=new_clients)
        print(f"made development certificates in {directory}/ (not for production)")
    for path in (directory, *(p for pair in paths.values() for p in pair)):
        check_not_writable_by_others(path, "--certs-dir")
    clients = {client: paths[client]} if client else {}
    return DevCertificates(*paths["ca"], *paths["server"], clients=clients)


def password_store(args: argparse.Namespace) -> PasswordStore:
    """The ``--users`` store; on first run (default path, no file) a new one with admin.

    A new file holds ``admin`` with a random password, which is printed right here,
    this once, to the terminal (never logged). A missing file given with ``--users``
    is a CommandError.
    """
    path = args.users or Path(USERS_FILE)
    if path.exists():
        return PasswordStore.load(path)
    if args.users is not None:
        raise CommandError(f"{path}: no such password file (make one with: flight-secure "
                           f"users add --file {path} --user NAME)")
    password = secrets.token_urlsafe(15)
    store = PasswordStore()
    store.add(ADMIN, password)
    store.save(path)
    store = PasswordStore.load(path)  # a loaded store can pick up later edits (reload)
    print(f"created {path} with the user {ADMIN!r}; its password, shown only this once:\n\n"
          f"    {password}\n\nchange it with: flight-secure users add --file {path} "
          f"--user {ADMIN}\n", flush=True)
    return store


def jwt_verifier(args: argparse.Namespace, revoked: Revocations | None = None) -> JWTVerifier:
    """The verifier of ``--jwt-key`` (public key, certificate or HS secret), ``--jwks`` or
    ``--jwks-url``, refusing the tokens ``revoked`` lists."""
    # Every key is bound to its own algorithm family by JWTVerifier, so the allow-list
    # can name them all without opening the door to HS/RS key confusion.
    options: dict[str, Any] = {"issuer": args.jwt_issuer, "audience": args.jwt_audience,
                               "revoked": revoked}
    algorithms = sorted(SUPPORTED_ALGORITHMS)
    if args.jwks_url is not None:
        return JWTVerifier.from_jwks_url(args.jwks_url, algorithms, **options)
    if args.jwks is not None:
        if not args.jwks.is_file():
            raise FileNotFoundError(2, "No such file or directory", str(args.jwks))
        return JWTVerifier.from_jwks_file(args.jwks, algorithms, **options)
    key = args.jwt_key.read_bytes()
    if b"PRIVATE KEY" in key:
        raise CommandError(f"--jwt-key {args.jwt_key} is a private key; give the server "
                           "only the public half (openssl pkey -in KEY -pubout)")
    if key.lstrip().startswith(b"-----BEGIN"):
        return JWTVerifier.from_public_key(key, algorithms, **options)
    return JWTVerifier.from_secret(key.rstrip(b"\r\n"), algorithms, **options)  # HS256


def auth_handler(store: PasswordStore | None, verifier: JWTVerifier | None, *,
                 mtls: bool, session_ttl: float = 900.0,
                 revoked: Revocations | None = None,
                 signing_key: Ed25519PrivateKey | None = None,
                 guard: LoginGuard | None = None) -> Any:
    """The server's handler: passwords (``store``), tokens (``verifier``), or neither.

    With ``mtls`` (client certificates verified) it is a MutualTLSServerAuthHandler
    requiring the certificate and wrapping the password or token handler, if any: the
    caller is then the password/token user, with the certificate attached. The session
    tokens of password logins are then bound to the certificate they were issued over
    (RFC 8705), so a stolen token is useless without the client's key. Without mTLS
    and with neither, there is no handler (None). Password logins get session tokens
    of ``session_ttl`` seconds and ``revoked`` lists the revoked ones; they are signed
    with ``signing_key`` (the key every node shares; None: a key made for this process
    alone), and ``guard`` throttles the password checks (None: a LoginGuard of the
    handler's own).
    """
    if store is not None:
        handler: Any = _basic_handler(store, session_ttl, revoked, signing_key, guard)
        return MutualTLSServerAuthHandler(inner=handler, bind_tokens=True) if mtls else handler
    handler = JWTServerAuthHandler(verifier) if verifier is not None else None
    return MutualTLSServerAuthHandler(inner=handler) if mtls else handler


def _basic_handler(store: PasswordStore, session_ttl: float, revoked: Revocations | None,
                   signing_key: Ed25519PrivateKey | None,
                   guard: LoginGuard | None) -> BasicServerAuthHandler:
    if signing_key is None:
        return BasicServerAuthHandler(store, token_ttl=session_ttl, revoked=revoked,
                                      guard=guard)
    issuer = JWTIssuer(signing_key, "EdDSA", issuer=SESSION_ISSUER, ttl=session_ttl)
    verifier = JWTVerifier(signing_key.public_key(), ["EdDSA"], issuer=SESSION_ISSUER,
                           leeway=NODE_CLOCK_SKEW,
                           revoked=RevocationList() if revoked is None else revoked)
    return BasicServerAuthHandler(store, issuer, verifier, guard=guard)


def close_handler(handler: ServerAuthHandler | None) -> None:
    """Release what ``handler`` holds, e.g. a LoginGuard's threads; a wrapping handler
    closes the one it wraps. None holds nothing."""
    if handler is not None:
        handler.close()


@dataclass
class Connection:
    """Where the server listens and what a client presents to it."""

    auth: str = "basic"
    host: str = "127.0.0.1"
    port: int = 0
    ca: Path | None = None  # what a client trusts to verify the server, when known
    own_certificate: bool = False  # the operator's --tls-cert, not a development one
    mtls: bool = False
    client_cert: Path | None = None
    client_key: Path | None = None
    user: str | None = None  # a user known to exist, for the example

    @property
    def location(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"grpc+tls://{host}:{self.port}"

    def instructions(self) -> str:
        """Text for the terminal: a pyarrow snippet that connects and lists the datasets."""
        host = "localhost" if self.host in _WILDCARDS else self.host
        host = f"[{host}]" if ":" in host else host
        args = [f'"grpc+tls://{host}:{self.port}"']
        notes = []
        if self.ca is not None:
            args.append(f'tls_root_certs=open("{self.ca}", "rb").read()')
        elif self.own_certificate:
            args.append('tls_root_certs=open("CA.pem", "rb").read()')
            notes.append("    # CA.pem: the CA that signed the server certificate (leave "
                         "tls_root_certs out if it is publicly trusted)")
        if self.mtls:
            args.append(f'cert_chain=open("{self.client_cert or "CLIENT.pem"}", "rb").read()')
            args.append(f'private_key=open("{self.client_key or "CLIENT.key"}", "rb").read()')
        lines = ["connect from Python:", "", "    import pyarrow.flight as flight", *notes,
                 f"    client = flight.connect({', '.join(args)})"]
        if self.auth == "basic":
            lines += [f'    token = client.authenticate_basic_token("{self.user or "USER"}", '
                      'PASSWORD)',
                      "    options = flight.FlightCallOptions(headers=[token])"]
        elif self.auth == "jwt":
            lines += ['    options = flight.FlightCallOptions(headers=[(b"authorization", '
                      'b"Bearer " + TOKEN)])']
        else:
            lines += ["    options = flight.FlightCallOptions()"]
        lines += ["    for info in client.list_flights(options=options):",
                  "        print(info.descriptor.path, info.total_records)", ""]
        return "\n".join(lines)
