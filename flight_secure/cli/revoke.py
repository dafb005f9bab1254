"""``flight-secure revoke``: end sessions, by adding to a revocation file that servers
read, or to the revocation list that nodes share in Redis.

``flight-secure serve --revocations FILE`` re-reads FILE within a few seconds of a
change (``serve --redis URL`` reloads its copy of the list in Redis every second),
and refuses from then on:

* ``--user NAME``: every token of NAME issued until now (a new login works again);
* ``--token-stdin``: the one token given on standard input (never on the command
  line, where other users of the machine could read it);
* ``--jti ID``: the one token with that id (the ``jti`` claim).

The file is JSON lines, written atomically with mode 0600 (see
:class:`~flight_secure.auth.revocation.RevocationFile`); in Redis, the entry is
written by one atomic script (:mod:`~flight_secure.auth.redis_revocations`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jwt

from flight_secure.auth.redis_connection import where
from flight_secure.auth.revocation import RevocationFile, Revocations
from flight_secure.cli import nodes
from flight_secure.cli._common import CommandError

DEFAULT_FILE = "revoked.jsonl"
KEEP = 86400.0
"""Seconds a user's entry is kept by default: longer than any session token lives."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``revoke``'s options to ``parser``."""
    parser.add_argument("--file", type=Path, default=Path(DEFAULT_FILE), metavar="FILE",
                        help=f"the revocation file (default: {DEFAULT_FILE}; created if "
                        "missing)")
    nodes.add_redis_arguments(parser, "revoke in the list that serve --redis nodes share "
                              "in this Redis, instead of a file")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--user", metavar="NAME",
                      help="end every session NAME has now (tokens whose sub is NAME)")
    what.add_argument("--token-stdin", action="store_true",
                      help="end the session of the token read from standard input")
    what.add_argument("--jti", metavar="ID", help="end the session of the token with this id")
    parser.add_argument("--keep", type=float, default=KEEP, metavar="S",
                        help=f"seconds to keep a --user or --jti entry (default {KEEP:g}; "
                        "must exceed the lifetime of the tokens it ends)")
    parser.set_defaults(run=run)


def _token_claims(text: str) -> tuple[str, float | None]:
    """(jti, exp) of a token, read without checking its signature: revoking a token
    id needs no proof that the token is genuine."""
    try:
        claims = jwt.decode(text.strip(), options={"verify_signature": False})
    except jwt.PyJWTError:
        raise CommandError("standard input holds no JWT") from None
    jti, exp = claims.get("jti"), claims.get("exp")
    if not isinstance(jti, str) or not jti:
        raise CommandError("the token has no jti claim to revoke it by")
    return jti, float(exp) if isinstance(exp, int | float) else None


def run(args: argparse.Namespace) -> int:
    """Add the entry to the file; 0 on success."""
    if not args.keep > 0:
        raise CommandError("--keep must be a number of seconds above 0")
    nodes.check_redis(args)
    revocations, place = _open(args)
    try:
        until = time.time() + args.keep
        if args.user is not None:
            revocations.revoke_subject(args.user, until=until)
            print(f"revoked every session {args.user} has now, in {place}")
        elif args.token_stdin:
            jti, exp = _token_claims(sys.stdin.read())
            revocations.revoke(jti, until=exp + 60 if exp is not None else until)
            print(f"revoked token {jti} in {place}")
        else:
            revocations.revoke(args.jti, until=until)
            print(f"revoked token {args.jti} in {place}")
    finally:
        revocations.close()
    return 0


def _open(args: argparse.Namespace) -> tuple[Revocations, str]:
    """The list to add to (``--redis``, else ``--file``) and how to name it."""
    if args.redis is None:
        return RevocationFile(args.file), str(args.file)
    from flight_secure.auth.redis_revocations import RedisRevocations

    return (RedisRevocations(nodes.redis_client(args), prefix=args.redis_prefix),
            f"Redis {where(args.redis)}")
