"""``flight-secure serve``: a secure Flight data server over a folder of data files.

It runs with no configuration at all: missing development certificates are made in
``--certs-dir`` and, for ``--auth basic``, a missing password file is created with
one ``admin`` user whose random password is printed once (never logged). It then
prints how to connect and ``listening on grpc+tls://HOST:PORT`` (the real port when
``--port 0``), serves until SIGINT or SIGTERM, and exits 0. Edits of the password and
permissions files apply within a few seconds, without a restart.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flight_secure.auth.passwords import PasswordStore
from flight_secure.cli import setup
from flight_secure.cli._common import CommandError, one_line
from flight_secure.cli.dataserver import DatasetServer
from flight_secure.cli.datasets import DatasetFolder
from flight_secure.cli.permissions import default_permissions, load_permissions
from flight_secure.errors import FlightError
from flight_secure.types import CertKeyPair, Location

AUTH_MODES = ("basic", "jwt", "mtls", "none")
ENGINES = ("python", "arrow")
RELOAD_INTERVAL = 2.0
"""Seconds between checks for edits of the password and permissions files."""

log = logging.getLogger("flight_secure.serve")


EPILOG = """\
a permissions file (--permissions), rights per user and per dataset:
  [users]
  alice = read, write     # write: create new datasets
  bob   = read
  *     = read            # everyone else who logged in
  [dataset payroll]       # overrides [users] for this dataset
  alice = read, overwrite # overwrite: also replace it
  *     = none
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``serve``'s options to ``parser``."""
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--data", required=True, type=Path, metavar="DIR",
                        help="folder of .parquet, .arrow/.feather and .csv files to serve")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on "
                        "(default 127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=8815,
                        help="TCP port (default 8815; 0 picks a free one)")
    parser.add_argument("--auth", choices=AUTH_MODES, default="basic",
                        help="basic: passwords, then a session token (default); jwt: "
                        "tokens from an identity provider; mtls: client certificates; "
                        "none: anyone who can connect (still TLS)")
    parser.add_argument("--tls-cert", type=Path, metavar="F",
                        help="server certificate PEM (default: a development certificate)")
    parser.add_argument("--tls-key", type=Path, metavar="F", help="server private key PEM")
    parser.add_argument("--ca", type=Path, metavar="F", help="CA certificate PEM that signs "
                        "client certificates; given, every client must present one")
    parser.add_argument("--users", type=Path, metavar="FILE",
                        help=f"htpasswd file for --auth basic (default ./{setup.USERS_FILE}, "
                        "created with an admin user when missing)")
    parser.add_argument("--permissions", type=Path, metavar="FILE",
                        help="INI file of per-user, per-dataset rights (default: admin "
                        "reads and writes, everyone else reads)")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--jwt-key", type=Path, metavar="FILE", help="for --auth jwt: the "
                      "token signer's public key (PEM) or certificate, or an HS256 secret")
    keys.add_argument("--jwks", type=Path, metavar="FILE",
                      help="for --auth jwt: a JWKS file of public keys (re-read on new kids)")
    parser.add_argument("--jwt-issuer", metavar="I", help="for --auth jwt: required iss claim")
    parser.add_argument("--jwt-audience", metavar="A",
                        help="for --auth jwt: required aud claim")
    parser.add_argument("--certs-dir", type=Path, default=Path("certs"), metavar="DIR",
                        help="where development certificates are kept (default ./certs)")
    parser.add_argument("--engine", choices=ENGINES, default="python",
                        help="python: flight_secure's own engine (default), the only one "
                        "that sees client certificates (--auth mtls; with --ca, tokens "
                        "bound to the client's certificate); arrow: pyarrow.flight's C++ "
                        "engine with the same logins, rights and audit in front, for more "
                        "calls per second and faster transfers (Basic and JWT; with --ca "
                        "a certificate from that CA is still required, but not bound to "
                        "tokens). See README: choosing an engine")
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    parser.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    if not args.data.is_dir():
        raise CommandError(f"--data {args.data}: no such folder")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise CommandError("--tls-cert and --tls-key go together")
    if args.auth == "jwt" and args.jwt_key is None and args.jwks is None:
        raise CommandError("--auth jwt needs --jwt-key FILE or --jwks FILE")
    if args.auth != "jwt" and (args.jwt_key or args.jwks or args.jwt_issuer or args.jwt_audience):
        raise CommandError("--jwt-key, --jwks, --jwt-issuer and --jwt-audience need --auth jwt")
    if args.auth != "basic" and args.users is not None:
        raise CommandError("--users needs --auth basic")
    if args.auth == "mtls" and args.tls_cert is not None and args.ca is None:
        raise CommandError("--auth mtls with your own --tls-cert needs --ca (the client CA)")
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port}: not a TCP port")
    if args.engine == "arrow" and args.auth == "mtls":
        raise CommandError("--auth mtls needs --engine python: pyarrow.flight's engine does "
                           "not show Python the client certificate")


@dataclass
class Running:
    """A started server and what came with it; :meth:`close` stops it.

    ``datasets`` serves the calls; ``server`` is the running engine: ``datasets``
    itself, or pyarrow's ArrowServer calling its handlers.
    """

    server: Any
    datasets: DatasetServer
    connection: setup.Connection
    handler: Any
    store: PasswordStore | None
    permissions_file: Path | None
    _permissions_stamp: tuple[int, int, int] | None = None
    _problems: set[str] = field(default_factory=set)

    def reload_changed_files(self) -> None:
        """Pick up edits of the password and permissions files, so that a changed
        password or a revoked right applies without a restart. A file that cannot be
        read is logged (once per problem) and the rules in force are kept."""
        problems = set()
        if self.store is not None:
            try:
                if self.store.reload():
                    log.info("reloaded %s", self.store.path)
            except (OSError, ValueError) as exc:
                problems.add(f"kept the users in force: {one_line(exc)}")
        if self.permissions_file is not None:
            try:
                stamp = _stamp(self.permissions_file)
                if stamp != self._permissions_stamp:
                    self.datasets.permissions = load_permissions(self.permissions_file)
                    self._permissions_stamp = stamp
                    log.info("reloaded %s", self.permissions_file)
            except (OSError, ValueError) as exc:
                problems.add(f"kept the rights in force: {one_line(exc)}")
        for problem in problems - self._problems:
            log.warning("%s", problem)
        self._problems = problems

    def close(self) -> None:
        self.server.shutdown()
        setup.close_handler(self.handler)


def _stamp(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_mtime_ns, info.st_size, info.st_ino


def build_server(args: argparse.Namespace) -> Running:
    """Prepare certificates, users and rights as ``args`` say, and start the server.

    Every given file is read before anything is created; first-run files come last
    (certificates, then the password file, whose new admin password is printed at
    once, so it is shown even if the server then fails to start). Raises
    CommandError, FlightError, OSError or ValueError.
    """
    _check(args)
    folder = DatasetFolder(args.data)
    permissions = (load_permissions(args.permissions) if args.permissions
                   else default_permissions(setup.ADMIN))
    permissions_stamp = _stamp(args.permissions) if args.permissions else None
    connection = setup.Connection(auth=args.auth, host=args.host,
                                  mtls=args.auth == "mtls" or args.ca is not None)
    verifier = setup.jwt_verifier(args) if args.auth == "jwt" else None
    client_ca = args.ca.read_bytes() if args.ca is not None else None
    if args.tls_cert is not None:
        pair = CertKeyPair(args.tls_cert.read_bytes(), args.tls_key.read_bytes())
        connection.ca = args.ca
    else:
        client = setup.ADMIN if connection.mtls and args.ca is None else None
        dev = setup.ensure_dev_certificates(args.certs_dir, args.host, client)
        pair = CertKeyPair(*dev.server_pems())
        connection.ca = dev.ca_cert
        client_ca = client_ca or dev.ca_cert_pem()
        if client is not None:
            connection.client_cert, connection.client_key = dev.clients[client]
    store = setup.password_store(args) if args.auth == "basic" else None
    if store is not None and setup.ADMIN in store:
        connection.user = setup.ADMIN
    on_arrow = args.engine == "arrow"
    handler = setup.auth_handler(store, verifier, mtls=connection.mtls and not on_arrow)
    location = Location.for_grpc_tls(args.host, args.port)
    options: dict[str, Any] = {"tls_certificates": [pair]}
    if connection.mtls:
        options.update(verify_client=True, root_certificates=client_ca)
    try:
        if on_arrow:
            datasets = DatasetServer(folder, permissions)
            server: Any = _arrow_server(datasets, location, handler, options)
        else:
            server = datasets = DatasetServer(folder, permissions, location=location,
                                              auth_handler=handler, **options)
    except BaseException:
        setup.close_handler(handler)
        raise
    connection.port = server.port
    log.info("serving %s with --auth %s%s on the %s engine; rights from %s", folder.root,
             args.auth, " and client certificates" if connection.mtls else "", args.engine,
             permissions.summary())
    return Running(server, datasets, connection, handler, store, args.permissions,
                   permissions_stamp)


def _arrow_server(datasets: DatasetServer, location: Location, handler: Any,
                  options: dict[str, Any]) -> Any:
    """``datasets`` served by pyarrow.flight's engine behind flight_secure's auth."""
    import pyarrow as pa

    from flight_secure.arrow import ArrowServer, server_options

    try:
        return ArrowServer(datasets, str(location), **server_options(handler, **options))
    except pa.ArrowException as exc:  # pyarrow says only "Server did not start properly"
        raise FlightError(f"could not listen on {location}: {exc} (address in use or "
                          "unavailable)") from None


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 0 after a clean stop."""
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    running = build_server(args)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(running.connection.instructions(), flush=True)
        print(f"listening on {running.connection.location}", flush=True)
        while not stop.wait(RELOAD_INTERVAL):
            running.reload_changed_files()
        print("stopping", flush=True)
    finally:
        running.close()
        for sig, old in previous.items():
            signal.signal(sig, old)
    return 0
