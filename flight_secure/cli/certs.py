"""``flight-secure certs`` and ``python -m flight_secure.certs``: make development certificates.

A thin command line over :func:`flight_secure.certs.generate_dev_certificates`: it
prints each file written (and the CA and server certificates it kept) and reminds
that the keys are unencrypted. An expected failure (a file exists, a bad name, an
unwritable folder) is one ``error:`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from flight_secure.certs import DEFAULT_HOSTS, KEY_TYPES, generate_dev_certificates

PROG = "python -m flight_secure.certs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options to ``parser`` and set :func:`run` as what it runs."""
    parser.add_argument("--out", default="certs", metavar="DIR",
                        help="output directory (default: certs/)")
    parser.add_argument("--host", action="append", metavar="NAME", help="server DNS name or "
                        f"IP; repeatable; replaces the default {', '.join(DEFAULT_HOSTS)}")
    parser.add_argument("--client", action="append", default=[], metavar="NAME",
                        help="client name, user@domain or URI (spiffe://...); repeatable")
    parser.add_argument("--days", type=int, default=365, metavar="N",
                        help="validity in days (default: 365)")
    parser.add_argument("--key-type", choices=KEY_TYPES, default="ec",
                        help="key algorithm (default: ec, i.e. P-256)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite existing files, making a new CA")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Generate certificates as the :func:`add_arguments` options say; print what was written.

    Returns 0, or 2 after one ``error:`` line on stderr for an expected failure.
    """
    try:
        result = generate_dev_certificates(args.out, args.host or DEFAULT_HOSTS, args.client,
                                           args.days, args.key_type, args.force)
    except (OSError, ValueError) as exc:
        print(f"error: {' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr)
        return 2
    for path in result.written:
        print(f"wrote {path}")
    for path in (result.ca_cert, result.server_cert):
        if path not in result.written:
            print(f"kept  {path} (existing)")
    print("the keys are unencrypted: for development only, never for production")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m flight_secure.certs``: parse ``argv`` (default sys.argv) and run."""
    parser = argparse.ArgumentParser(prog=PROG, description="Make a development CA plus "
                                     "server and client certificates.")
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error argparse has already reported
        return exc.code if isinstance(exc.code, int) else 2
    return run(args)
