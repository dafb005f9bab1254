"""``flight-secure serve``: a secure Flight data server over a folder of data files.

It runs with no configuration at all: missing development certificates are made in
``--certs-dir`` and, for ``--auth basic``, a missing password file is created with
one ``admin`` user whose random password is printed once (never logged). Given TLS
files are checked first, and a bad one is named (:mod:`flight_secure.cli.tlsfiles`).
It then prints the datasets found, how to connect, how to stop, and ``listening on
grpc+tls://HOST:PORT`` (the real port when ``--port 0``). Edits of the password,
permissions and revocation files apply within a few seconds, without a restart, and
so (on ``--engine python``) does a replaced ``--tls-cert``/``--tls-key``/``--ca``, for
new connections.
``--engine`` picks flight_secure's engine or pyarrow.flight's
(:mod:`flight_secure.cli.engines`). Several ``serve`` processes run as nodes of one
service with the options of :mod:`flight_secure.cli.nodes` (a shared signing key,
Redis, peers that reads are spread over).

SIGINT or SIGTERM starts a drain: new calls are refused at once, calls in flight get
up to ``--drain`` seconds to finish, then the rest are cancelled (an upload cut off
this way leaves no file and is logged as aborted); a second signal ends the drain
at once. The exit status is then 0. On pyarrow's engine, calls it runs without
Python cannot be cancelled: the process exits without them.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flight_secure.auth.passwords import PasswordStore
from flight_secure.auth.revocation import RevocationFile
from flight_secure.cli import engines, nodes, setup, tlsfiles
from flight_secure.cli._common import CommandError, one_line
from flight_secure.cli.dataserver import DatasetServer
from flight_secure.cli.datasets import DatasetFolder
from flight_secure.cli.permissions import Permissions, default_permissions, load_permissions
from flight_secure.cli.stopping import StopSignals, drain, exit_leaving_calls
from flight_secure.errors import FlightError
from flight_secure.files import Stamp, stamp_of
from flight_secure.tls import ReloadingServerCredentials
from flight_secure.types import CertKeyPair, Location

AUTH_MODES = ("basic", "jwt", "mtls", "none")
RELOAD_INTERVAL = 2.0
"""Seconds between checks for edits of the password, permissions and revocation files."""
MIB = 1024 * 1024
MAX_MESSAGE_MIB = 64
"""Default bound of one incoming message, in MiB. gRPC holds a whole message before the
server sees it (and before the caller is authenticated), so this bounds what one
request of anyone who can connect costs; 64 MiB still takes a 64K-row batch of 1 KiB
rows. A larger upload must come in batches (``write_table(t, max_chunksize=...)``)."""
DRAIN_SECONDS = 20.0
"""Default time calls in flight get to finish after SIGTERM/SIGINT: below the 30 s that
Kubernetes and the 90 s that systemd wait before they kill."""
LISTED_DATASETS = 20
"""How many dataset names the startup banner shows."""
SESSION_TTL = 900.0
"""Seconds a session token of ``--auth basic`` lasts unless ``--session-ttl`` says."""

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
                        help="server certificate PEM (default: a development certificate); "
                        "on --engine python, re-read with --tls-key and --ca when replaced")
    parser.add_argument("--tls-key", type=Path, metavar="F", help="server private key PEM")
    parser.add_argument("--ca", type=Path, metavar="F", help="CA certificate PEM that signs "
                        "client certificates; given, every client must present one")
    parser.add_argument("--users", type=Path, metavar="FILE",
                        help=f"htpasswd file for --auth basic (default ./{setup.USERS_FILE}, "
                        "created with an admin user when missing)")
    parser.add_argument("--permissions", type=Path, metavar="FILE",
                        help="INI file of per-user, per-dataset rights (default: admin "
                        "reads and writes, everyone else reads)")
    parser.add_argument("--session-ttl", type=float, metavar="S",
                        help="for --auth basic: seconds a login's session token lasts "
                        f"(default {SESSION_TTL:g})")
    parser.add_argument("--revocations", type=Path, metavar="FILE",
                        help="revoked tokens and users (JSON lines, written by "
                        "`flight-secure revoke`), re-read on change; missing is empty")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--jwt-key", type=Path, metavar="FILE", help="for --auth jwt: the "
                      "token signer's public key (PEM) or certificate, or an HS256 secret")
    keys.add_argument("--jwks", type=Path, metavar="FILE",
                      help="for --auth jwt: a JWKS file of public keys (re-read on new kids)")
    keys.add_argument("--jwks-url", metavar="URL",
                      help="for --auth jwt: your identity provider's JWKS (https://...), "
                      "re-fetched every 5 minutes and on a new kid")
    parser.add_argument("--jwt-issuer", metavar="I", help="for --auth jwt: required iss claim")
    parser.add_argument("--jwt-audience", metavar="A",
                        help="for --auth jwt: required aud claim")
    parser.add_argument("--certs-dir", type=Path, default=Path("certs"), metavar="DIR",
                        help="where development certificates are kept (default ./certs)")
    parser.add_argument("--engine", choices=engines.ENGINES, default="python",
                        help="python: flight_secure's own engine (default), the only one "
                        "that sees client certificates (--auth mtls; with --ca, tokens "
                        "bound to the client's certificate) and bounds message sizes; "
                        "arrow: pyarrow.flight's C++ engine with the same logins, rights "
                        "and audit in front, for more calls per second and faster "
                        "transfers (Basic and JWT; with --ca a certificate from that CA "
                        "is still required, but not bound to tokens; messages of any "
                        "size are read, and --max-message-size cannot apply; callers "
                        "are not told apart by address, so failed logins lock a user "
                        "out for every caller). See README: choosing an engine")
    parser.add_argument("--max-message-size", type=int, metavar="MIB",
                        help="largest message a client may send, in MiB (default "
                        f"{MAX_MESSAGE_MIB}); larger uploads must be sent in batches. "
                        "--engine python only: pyarrow's engine has no such bound")
    parser.add_argument("--drain", type=float, default=DRAIN_SECONDS, metavar="S",
                        help="on SIGTERM/Ctrl-C, seconds calls in flight get to finish "
                        f"while new ones are refused (default {DRAIN_SECONDS:g}). On "
                        "--engine arrow, calls pyarrow runs without Python (a download "
                        "under way, an upload whose client went silent) cannot be "
                        "cancelled then: the server exits and cuts them off")
    parser.add_argument("--sql", choices=("auto", "on", "off"), default="auto",
                        help="Flight SQL over the datasets (needs flight-secure[sql]); "
                        "auto: on when DuckDB is installed (default)")
    parser.add_argument("--sql-memory", default="1GB", metavar="SIZE",
                        help="memory limit of one SQL query (default 1GB)")
    parser.add_argument("--sql-timeout", type=float, default=600.0, metavar="S",
                        help="seconds one SQL query may run (default 600)")
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    nodes.add_arguments(parser)
    parser.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    if not args.data.is_dir():
        raise CommandError(f"--data {args.data}: no such folder")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise CommandError("--tls-cert and --tls-key go together")
    if args.auth == "jwt" and args.jwt_key is None and args.jwks is None \
            and args.jwks_url is None:
        raise CommandError("--auth jwt needs --jwt-key FILE, --jwks FILE or --jwks-url URL")
    if args.auth != "jwt" and (args.jwt_key or args.jwks or args.jwks_url or args.jwt_issuer
                               or args.jwt_audience):
        raise CommandError("--jwt-key, --jwks, --jwks-url, --jwt-issuer and --jwt-audience "
                           "need --auth jwt")
    if args.auth != "basic" and args.users is not None:
        raise CommandError("--users needs --auth basic")
    if args.session_ttl is not None and (args.auth != "basic" or not args.session_ttl > 0):
        raise CommandError("--session-ttl needs --auth basic and a number of seconds above 0")
    if args.revocations is not None and args.auth not in ("basic", "jwt"):
        raise CommandError("--revocations needs --auth basic or --auth jwt (tokens to revoke)")
    if args.auth == "mtls" and args.tls_cert is not None and args.ca is None:
        raise CommandError("--auth mtls with your own --tls-cert needs --ca (the client CA)")
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port}: not a TCP port")
    if args.engine == "arrow" and args.auth == "mtls":
        raise CommandError("--auth mtls needs --engine python: pyarrow.flight's engine does "
                           "not show Python the client certificate")
    if args.max_message_size is not None:
        if args.engine == "arrow":
            raise CommandError("--max-message-size needs --engine python: pyarrow.flight's "
                               "engine reads messages of any size")
        if not 1 <= args.max_message_size <= 2047:
            raise CommandError(f"--max-message-size {args.max_message_size}: give 1 to "
                               "2047 MiB")
    if not 0 <= args.drain <= 3600:
        raise CommandError(f"--drain {args.drain:g}: give 0 to 3600 seconds")
    if not args.sql_timeout > 0:
        raise CommandError(f"--sql-timeout {args.sql_timeout:g}: give seconds above 0")


def _sql_service(args: argparse.Namespace, folder: DatasetFolder) -> Any:
    """The Flight SQL service ``--sql`` asks for, or None."""
    if args.sql == "off":
        return None
    try:
        from flight_secure.sql import FlightSqlService, SqlLimits
    except ImportError:
        if args.sql == "on":
            raise CommandError("--sql on needs DuckDB: pip install 'flight-secure[sql]'") \
                from None
        log.info("Flight SQL is off: DuckDB is not installed (pip install 'flight-secure[sql]')")
        return None
    from importlib.metadata import version

    limits = SqlLimits(memory_limit=args.sql_memory, time_limit=args.sql_timeout)
    return FlightSqlService(folder, limits, server_version=version("flight-secure"))


@dataclass
class Running:
    """A started server and what came with it; :meth:`close` stops it.

    ``datasets`` serves the calls; ``server`` is the running ``engine``: ``datasets``
    itself, or pyarrow's ArrowServer calling its handlers.
    """

    server: Any
    datasets: DatasetServer
    engine: str
    connection: setup.Connection
    handler: Any
    store: PasswordStore | None
    permissions_file: Path | None
    _permissions_stamp: tuple[int, int, int] | None = None
    revocations: RevocationFile | None = None
    shared: nodes.Shared = field(default_factory=nodes.Shared)
    _problems: set[str] = field(default_factory=set)

    def reload_changed_files(self) -> None:
        """Pick up edits of the password, permissions and revocation files, so that a
        changed password, a revoked right or a revoked session applies without a
        restart. A file that cannot be read is logged (once per problem) and the rules
        in force are kept."""
        problems = set()
        for source, what in ((self.store, "users"), (self.revocations, "revocations")):
            if source is None:
                continue
            try:
                if source.reload():
                    log.info("reloaded %s", source.path)
            except (OSError, ValueError) as exc:
                problems.add(f"kept the {what} in force: {one_line(exc)}")
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

    def close(self, grace: float = 0.0) -> None:
        """Refuse new calls, give those in flight ``grace`` seconds, then cancel them
        (on pyarrow's engine, those it can: see :attr:`calls_left`)."""
        self.server.shutdown(grace)
        setup.close_handler(self.handler)
        self.shared.close()

    @property
    def calls_left(self) -> bool:
        """Whether calls still run after :meth:`close`: calls pyarrow's engine runs
        without Python, which it cannot cancel."""
        return self.engine == "arrow" and not self.server.stopped


def _stamp(path: Path) -> Stamp:
    return stamp_of(path.stat())


def build_server(args: argparse.Namespace) -> Running:
    """Prepare certificates, users and rights as ``args`` say, and start the server.

    Every given file is read before anything is created; first-run files come last
    (certificates, then the password file, whose new admin password is printed at
    once, so it is shown even if the server then fails to start). Raises
    CommandError, FlightError, OSError or ValueError.
    """
    _check(args)
    folder = DatasetFolder(args.data)
    users = (args.users or Path(setup.USERS_FILE)) if args.auth == "basic" else None
    for option, path in (("--users", users), ("--permissions", args.permissions)):
        if path is not None and path.exists():
            tlsfiles.check_not_writable_by_others(path, option)
    permissions = (load_permissions(args.permissions) if args.permissions
                   else default_permissions(setup.ADMIN))
    permissions_stamp = _stamp(args.permissions) if args.permissions else None
    if args.revocations is not None:
        tlsfiles.check_live_file(args.revocations, "--revocations")
    revocation_file = RevocationFile(args.revocations) if args.revocations else None
    shared = nodes.build(args)
    try:
        return _start(args, folder, permissions, permissions_stamp, revocation_file, shared)
    except BaseException:
        shared.close()
        raise


def _start(args: argparse.Namespace, folder: DatasetFolder, permissions: Permissions,
           permissions_stamp: tuple[int, int, int] | None,
           revocation_file: RevocationFile | None, shared: nodes.Shared) -> Running:
    """The rest of :func:`build_server`, once the given files are read and the state
    shared with other nodes is open."""
    connection = setup.Connection(auth=args.auth, host=args.host,
                                  mtls=args.auth == "mtls" or args.ca is not None)
    revocations = shared.revocations if revocation_file is None else revocation_file
    verifier = setup.jwt_verifier(args, revocations) if args.auth == "jwt" else None
    pair, client_ca = _tls(args, connection)
    store = setup.password_store(args) if args.auth == "basic" else None
    if store is not None and setup.ADMIN in store:
        connection.user = setup.ADMIN
    # pyarrow's engine checks client certificates against --ca, but cannot show them
    handler = setup.auth_handler(store, verifier,
                                 mtls=connection.mtls and args.engine == "python",
                                 session_ttl=args.session_ttl or SESSION_TTL,
                                 revoked=revocations, signing_key=shared.signing_key,
                                 guard=shared.guard)
    sql = _sql_service(args, folder)
    datasets = DatasetServer(folder, permissions, sql=sql, spread=shared.spread)
    try:
        server = engines.start(args.engine, datasets, Location.for_grpc_tls(args.host, args.port),
                               handler, tls=_tls_options(args, connection, pair, client_ca),
                               max_message_size=(args.max_message_size or MAX_MESSAGE_MIB) * MIB)
    except FlightError:
        setup.close_handler(handler)
        reason = _why_not_listening(args.host, args.port)
        if reason is None:
            raise
        raise CommandError(f"could not listen on {connection.location}: {reason}") from None
    except BaseException:
        setup.close_handler(handler)
        raise
    connection.port = server.port
    log.info("serving %s on the %s engine with --auth %s%s%s; rights from %s", folder.root,
             args.engine, args.auth, " and client certificates" if connection.mtls else "",
             ", Flight SQL on" if sql is not None else "", permissions.summary())
    if shared.spread.peers:
        log.info("reads spread over %s", ", ".join(
            f"{peer.name} ({peer.location})" for peer in shared.spread.peers))
    return Running(server, datasets, args.engine, connection, handler, store,
                   args.permissions, permissions_stamp, revocation_file, shared)


def _tls(args: argparse.Namespace, connection: setup.Connection
         ) -> tuple[CertKeyPair, bytes | None]:
    """The server's certificate pair and the CA of client certificates (PEM, or None
    without mTLS), from checked files or the development set; records in ``connection``
    what a client needs. Raises CommandError naming a bad or unprotected file."""
    client_ca = None
    if args.ca is not None:
        tlsfiles.check_not_writable_by_others(args.ca, "--ca")
        client_ca = tlsfiles.load_client_ca(args.ca)
    if args.tls_cert is not None:
        for option, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
            tlsfiles.check_not_writable_by_others(path, option)
        pair = CertKeyPair(*tlsfiles.load_server_pair(args.tls_cert, args.tls_key))
        connection.ca = tlsfiles.server_trust_root(args.tls_cert, args.ca)
        connection.own_certificate = True
        return pair, client_ca
    client = setup.ADMIN if connection.mtls and args.ca is None else None
    dev = setup.ensure_dev_certificates(args.certs_dir, args.host, client)
    connection.ca = dev.ca_cert
    if client is not None:
        connection.client_cert, connection.client_key = dev.clients[client]
    return CertKeyPair(*dev.server_pems()), client_ca or dev.ca_cert_pem()


def _tls_options(args: argparse.Namespace, connection: setup.Connection, pair: CertKeyPair,
                 client_ca: bytes | None) -> dict[str, Any]:
    """The engine's TLS keywords: the server's pair and, with mTLS, the client CA. On
    flight_secure's engine, a given ``--tls-cert``/``--tls-key`` (and ``--ca``) are
    re-read when replaced (a certificate issuer's rotation), for new connections."""
    tls: dict[str, Any] = {"tls_certificates": [pair]}
    if connection.mtls:
        tls.update(verify_client=True, root_certificates=client_ca)
    if args.engine == "python" and args.tls_cert is not None:
        tls["tls_credentials"] = ReloadingServerCredentials(
            args.tls_cert, args.tls_key, args.ca if connection.mtls else None,
            require_client_auth=connection.mtls)
    return tls


def _why_not_listening(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound (port in use, not an address here, no
    privilege), found by trying it; None when it can be bound after all."""
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except OSError:
        return f"{host!r} is not a host name or address this machine can resolve"
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return f"port {port} is in use (another server?); choose another --port"
                if exc.errno == errno.EADDRNOTAVAIL:
                    return f"{host} is not an address of this machine; check --host"
                if exc.errno == errno.EACCES:
                    return f"port {port} needs privileges; use a port above 1023"
                return exc.strerror or str(exc)
    return None


def banner(running: Running, args: argparse.Namespace) -> str:
    """What the operator reads at start: the datasets found, how to connect and stop."""
    names = running.datasets.folder.names()
    shown = ", ".join(names[:LISTED_DATASETS])
    if len(names) > LISTED_DATASETS:
        shown += f", ... ({len(names) - LISTED_DATASETS} more)"
    found = (f"found {len(names)} dataset(s) in {args.data}: {shown}" if names else
             f"found no dataset in {args.data} yet (.parquet, .arrow/.feather, .csv files)")
    stop = (f"stop with Ctrl-C or kill -TERM {os.getpid()}: new calls are then refused and "
            f"calls in flight get up to {args.drain:g} s to finish (--drain)")
    return "\n".join([found, "", running.connection.instructions(), stop])


def _warn_open_door(args: argparse.Namespace, connection: setup.Connection) -> None:
    if args.auth == "none" and not connection.mtls:
        message = (f"WARNING: --auth none: anyone who can connect to {connection.location} "
                   "gets in without credentials, as 'anonymous', with the rights the "
                   "permissions give to '*'. Use it only for tests or on a trusted network.")
        print(message, file=sys.stderr, flush=True)
        log.warning("--auth none: every client is let in without credentials")


def _warn_unbounded_messages(args: argparse.Namespace) -> None:
    if args.engine == "arrow":
        log.warning("--engine arrow: pyarrow.flight's engine reads a message of any size "
                    "whole, before its caller is authenticated (--max-message-size applies "
                    "to --engine python only); keep untrusted clients away from the port")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM, then drain; 0 after the stop."""
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    running = build_server(args)
    signals = StopSignals()
    try:
        _warn_open_door(args, running.connection)
        _warn_unbounded_messages(args)
        print(banner(running, args), flush=True)
        print(f"listening on {running.connection.location}", flush=True)
        while not signals.wait(RELOAD_INTERVAL):
            running.reload_changed_files()
        drain(running.server, args.drain, signals)
    finally:
        running.close()
        signals.restore()
    print("stopped", flush=True)
    if running.calls_left:
        exit_leaving_calls()
    return 0
