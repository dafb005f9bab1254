"""``serve``'s options for running as one of several nodes, and the state the nodes share.

Every node is a ``flight-secure serve`` given the same users, permissions and TLS
files (or JWKS, with ``--auth jwt``), and:

* ``--signing-key FILE`` (``--auth basic``): the Ed25519 key that signs and checks
  session tokens, the same on every node, so a token from one node's login works
  on all of them (without it, each node makes a key of its own at start). The
  file must be readable by its owner alone;
* ``--redis URL`` (``--redis-password-file FILE``, ``--redis-prefix NAME``): the
  login counts (:mod:`flight_secure.auth.redis_counters`) and the revocation list
  (:mod:`flight_secure.auth.redis_revocations`) shared in Redis, so guessing spread
  over the nodes gets the budget of one node and a token revoked anywhere is
  refused everywhere. A password in the URL is refused: the command line is
  visible to every account on the machine;
* ``--revocations-url URL``: a revocation list another system publishes (JSON lines,
  as ``flight-secure revoke`` writes them), for deployments without Redis;
* ``--peer NAME=URI`` (repeatable): GetFlightInfo spreads each dataset's rows over
  these nodes (:mod:`flight_secure.cli.spread`).

:func:`build` opens what the options name, checking each first (Redis must
answer at start); the :class:`Shared` it returns is closed when ``serve`` stops.
"""

from __future__ import annotations

import argparse
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from flight_secure.auth.guard import LoginGuard
from flight_secure.auth.redis_connection import REDIS_ERRORS, connect, where
from flight_secure.auth.revocation import Revocations
from flight_secure.auth.revocation_view import RevocationView
from flight_secure.cli._common import CommandError
from flight_secure.cli.spread import Peer, Spread, parse_peer
from flight_secure.cli.tlsfiles import check_not_writable_by_others

KEYGEN = "flight-secure token keygen --out FILE"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the node options to ``serve``'s ``parser``, in a group of their own."""
    group = parser.add_argument_group(
        "several nodes", "run as one of several nodes that share users, tokens and state "
        "(docs/DEPLOY.md)")
    group.add_argument("--signing-key", type=Path, metavar="FILE",
                       help="for --auth basic: the Ed25519 private key (PEM, mode 0600) "
                       "that signs session tokens, the same on every node so each accepts "
                       f"the others' tokens (make one with: {KEYGEN})")
    add_redis_arguments(group, "share login counts and revocations with the other nodes "
                        "in this Redis")
    group.add_argument("--revocations-url", metavar="URL",
                       help="revoked tokens and users published at an https:// URL (JSON "
                       "lines, as `flight-secure revoke` writes them), re-read every 30 s; "
                       "past 300 s without a successful read, every token is refused")
    group.add_argument("--peer", action="append", default=[], metavar="NAME=URI",
                       help="a node that serves reads (repeatable): GetFlightInfo spreads "
                       "each dataset's rows over the peers, in this order; every peer "
                       "must hold the same datasets")


def add_redis_arguments(group: Any, what: str) -> None:
    """Add ``--redis`` (described by ``what``), ``--redis-password-file`` and
    ``--redis-prefix`` to ``group`` (a parser or an argument group)."""
    group.add_argument("--redis", metavar="URL",
                       help=f"{what} (redis://HOST:PORT/DB or rediss://...; no password in "
                       "it: see --redis-password-file)")
    group.add_argument("--redis-password-file", type=Path, metavar="FILE",
                       help="file (mode 0600) holding the Redis password")
    group.add_argument("--redis-prefix", default="flight-secure", metavar="NAME",
                       help="prefix of the Redis keys: nodes sharing state use the same "
                       "(default flight-secure)")


def check_redis(args: argparse.Namespace) -> None:
    """CommandError for a password in ``--redis`` or a password file without it."""
    if args.redis is None and args.redis_password_file is not None:
        raise CommandError("--redis-password-file needs --redis")
    if args.redis is not None and "@" in args.redis.partition("://")[2].partition("/")[0]:
        raise CommandError("--redis: put the password in --redis-password-file, not in the "
                           "URL (every account on this machine can read a command line)")


def check(args: argparse.Namespace) -> list[Peer]:
    """The parsed ``--peer`` list; CommandError for options that do not go together."""
    if args.signing_key is not None and args.auth != "basic":
        raise CommandError("--signing-key needs --auth basic (it signs its session tokens)")
    if args.redis is not None and args.auth not in ("basic", "jwt"):
        raise CommandError("--redis needs --auth basic or --auth jwt (logins and tokens to "
                           "share)")
    check_redis(args)
    sources = [name for name, given in (("--revocations", args.revocations),
                                        ("--revocations-url", args.revocations_url),
                                        ("--redis", args.redis)) if given]
    if len(sources) > 1:
        raise CommandError(f"{' and '.join(sources)}: give one place for revocations "
                           "(with --redis, they are kept in Redis)")
    if args.revocations_url is not None and args.auth not in ("basic", "jwt"):
        raise CommandError("--revocations-url needs --auth basic or --auth jwt")
    try:
        peers = [parse_peer(text) for text in args.peer]
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if peers and args.auth == "basic" and args.signing_key is None:
        raise CommandError("--peer with --auth basic needs --signing-key: every node must "
                           "accept the session tokens of the others")
    return peers


@dataclass
class Shared:
    """What this node shares with the others; :meth:`close` releases it."""

    signing_key: Ed25519PrivateKey | None = None
    guard: LoginGuard | None = None
    revocations: Revocations | None = None
    spread: Spread = field(default_factory=lambda: Spread([]))

    def close(self) -> None:
        if self.guard is not None:
            self.guard.close()
            self.guard.counters.close()
        if self.revocations is not None:
            self.revocations.close()


def build(args: argparse.Namespace) -> Shared:
    """The shared state ``args`` ask for. Raises CommandError naming the option when a
    file is unsafe or unreadable or Redis does not answer (closing what was opened)."""
    shared = Shared(spread=Spread(check(args)))
    try:
        if args.signing_key is not None:
            shared.signing_key = load_signing_key(args.signing_key)
        if args.redis is not None:
            _share_in_redis(args, shared)
        elif args.revocations_url is not None:
            shared.revocations = _revocations_at(args.revocations_url)
    except BaseException:
        shared.close()
        raise
    return shared


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path``; CommandError when other accounts may read
    or write the file, or it holds no unencrypted Ed25519 key."""
    check_private(path, "--signing-key")
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except TypeError:
        raise CommandError(f"--signing-key {path} is encrypted; give it unencrypted "
                           "(mode 0600 protects it)") from None
    except ValueError:
        raise CommandError(f"--signing-key {path} holds no PEM private key (make one "
                           f"with: {KEYGEN})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CommandError(f"--signing-key {path} is not an Ed25519 key (make one with: "
                           f"{KEYGEN})")
    return key


def check_private(path: Path, option: str) -> None:
    """CommandError unless ``path`` is a file that only its owner may read or write."""
    if not path.is_file():
        raise CommandError(f"{option} {path}: no such file")
    check_not_writable_by_others(path, option)
    if stat.S_IMODE(path.stat().st_mode) & 0o044:
        raise CommandError(f"{option} {path} is readable by other accounts; it holds a "
                           f"secret: chmod 600 {path}")


def redis_client(args: argparse.Namespace) -> Any:
    """A client of ``--redis`` with the password of ``--redis-password-file`` (checked:
    its owner's alone); CommandError for an unsafe file or a URL that is not Redis's."""
    password = None
    if args.redis_password_file is not None:
        check_private(args.redis_password_file, "--redis-password-file")
        password = args.redis_password_file.read_text().rstrip("\r\n")
    try:
        return connect(args.redis, password=password)
    except ValueError as exc:
        raise CommandError(f"--redis: {exc}") from None


def _share_in_redis(args: argparse.Namespace, shared: Shared) -> None:
    from flight_secure.auth.redis_counters import RedisLoginCounters
    from flight_secure.auth.redis_revocations import RedisRevocations

    shown = where(args.redis)
    client = redis_client(args)
    try:
        client.ping()
    except REDIS_ERRORS as exc:
        client.close()
        raise CommandError(f"--redis {shown}: Redis does not answer: "
                           f"{type(exc).__name__}: {exc}") from None
    try:
        shared.revocations = RedisRevocations(client, prefix=args.redis_prefix)
    except BaseException:
        client.close()
        raise
    if args.auth == "basic":
        counters = RedisLoginCounters(redis_client(args), prefix=args.redis_prefix)
        shared.guard = LoginGuard(counters=counters)


def _revocations_at(url: str) -> RevocationView:
    try:
        return RevocationView.from_url(url)
    except ValueError as exc:
        raise CommandError(f"--revocations-url: {exc}") from None
    except OSError as exc:
        raise CommandError(f"--revocations-url: the list could not be read: {exc}") from None
