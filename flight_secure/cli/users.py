"""``flight-secure users add|remove|list``: manage an htpasswd (bcrypt) password file.

The file is the one :class:`~flight_secure.auth.passwords.PasswordStore` reads and
``htpasswd -B`` writes. Passwords are read without echo (twice, to confirm) or, for
scripts, as one line from standard input with ``--password-stdin``; they are never
printed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from flight_secure.auth.passwords import PasswordStore
from flight_secure.cli._common import CommandError

DEFAULT_FILE = "users.htpasswd"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``add``, ``remove`` and ``list`` subcommands to ``parser``."""
    actions = parser.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a user or change a password",
                             description="Add USER to the file (created if missing), or "
                             "replace USER's password.")
    _file_option(add)
    add.add_argument("--user", required=True, metavar="NAME", help="the user name")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password as one line from standard input (for scripts)")
    add.add_argument("--rounds", type=int, default=12, metavar="N",
                     help="bcrypt cost (default 12)")
    add.set_defaults(run=_add)
    remove = actions.add_parser("remove", help="delete a user",
                                description="Delete USER from the file.")
    _file_option(remove)
    remove.add_argument("--user", required=True, metavar="NAME", help="the user name")
    remove.set_defaults(run=_remove)
    listing = actions.add_parser("list", help="print the user names, one a line",
                                 description="Print the user names in the file, one a line.")
    _file_option(listing)
    listing.set_defaults(run=_list)


def _file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--file", type=Path, default=Path(DEFAULT_FILE), metavar="FILE",
                        help=f"the htpasswd file (default: {DEFAULT_FILE})")


def read_password(from_stdin: bool) -> str:
    """The new password: one stdin line, or typed twice at a no-echo prompt.

    Raises CommandError when it is empty, the two entries differ, or there is no
    terminal to prompt on (the message then points to ``--password-stdin``).
    """
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not _has_terminal():
            raise CommandError("no terminal to ask for the password on; pass it on standard "
                               "input with --password-stdin, e.g. printf '%s\\n' \"$PW\" | "
                               "flight-secure users add --user NAME --password-stdin")
        try:
            password = getpass.getpass("New password: ")
            if getpass.getpass("Repeat the password: ") != password:
                raise CommandError("the two passwords differ; nothing was changed")
        except EOFError:  # Ctrl-D at a prompt
            raise CommandError("no password was typed; nothing was changed") from None
    if not password:
        raise CommandError("the password is empty; nothing was changed")
    return password


def _has_terminal() -> bool:
    """Whether getpass can prompt without echo: a controlling terminal, or a tty stdin."""
    if os.name == "posix":
        try:
            with open("/dev/tty", "rb"):
                return True
        except OSError:
            pass
    return sys.stdin.isatty()


def _load(path: Path, *, create: bool = False, rounds: int = 12) -> PasswordStore:
    if create and not path.exists():
        return PasswordStore(rounds=rounds)
    return PasswordStore.load(path, rounds=rounds)


def _add(args: argparse.Namespace) -> int:
    store = _load(args.file, create=True, rounds=args.rounds)
    existed = args.user in store
    store.add(args.user, read_password(args.password_stdin))
    store.save(args.file)
    print(f"{'changed the password of' if existed else 'added'} {args.user} in {args.file}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    store = _load(args.file)
    if args.user not in store:
        raise CommandError(f"{args.file}: there is no user {args.user!r}")
    store.remove(args.user)
    store.save(args.file)
    print(f"removed {args.user} from {args.file}")
    return 0


def _list(args: argparse.Namespace) -> int:
    for user in _load(args.file).users():
        print(user)
    return 0
