"""The ``flight-secure`` command (also ``python -m flight_secure``).

Subcommands: ``demo`` (a secure client and server end to end), ``serve`` (a secure
Flight data server over a folder of files), ``users`` (the password file), ``revoke``
(end sessions), ``token`` (mint a JWT for testing, make a signing key) and ``certs`` (development
certificates). Each lives in its
own module whose ``add_arguments(parser)`` adds its options and sets ``run(args) -> int``
as the parser default.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from flight_secure import __version__
from flight_secure.cli import certs, demo, revoke, serve, tokens, users
from flight_secure.cli._common import CommandError, Parser, one_line

__all__ = ["CommandError", "build_parser", "main"]

PROG = "flight-secure"

#: name -> (module with add_arguments, one-line help).
COMMANDS: dict[str, tuple[ModuleType, str]] = {
    "demo": (demo, "watch a secure client and server at work on localhost (a few seconds)"),
    "serve": (serve, "serve a folder of Parquet, Arrow and CSV files over secure Flight"),
    "users": (users, "add, remove or list users of a password file"),
    "revoke": (revoke, "end sessions: add a user or a token to a revocation file"),
    "token": (tokens, "mint a signed JWT for testing, or make a signing key"),
    "certs": (certs, "make development TLS certificates (CA, server, clients)"),
}


def build_parser() -> argparse.ArgumentParser:
    """The full parser; every command and action has ``--help``."""
    parser = Parser(prog=PROG, description="Secure Apache Arrow Flight services: a demo, a "
                    "data server, and tools for passwords, tokens and certificates.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, summary) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary[0].upper()
                                  + summary[1:] + ".")
        module.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``flight-secure`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    0 on success, 2 for a usage error, 1 for any other failure, 130 on Ctrl-C; a failure
    is reported as one ``error:`` line on stderr, never a traceback.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help / --version (0) or a usage error already printed (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"{PROG} {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 1
