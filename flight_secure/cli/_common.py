"""What every ``flight-secure`` command shares: the parser class and the error contract.

A command reports an expected failure by raising :class:`CommandError` (or letting a
FlightError, OSError or ValueError escape); :func:`flight_secure.cli.main` turns it
into one ``error:`` line on stderr and exit status 1. A usage error is one line and
status 2. Anything else is also one line, prefixed by its exception type.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from flight_secure.errors import FlightError


class CommandError(Exception):
    """An expected failure of a command; its message is shown to the user as one line."""


#: Failures a command may end with, shown as their message alone (no exception type).
EXPECTED = (CommandError, FlightError, OSError, ValueError)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def one_line(exc: BaseException) -> str:
    """A readable single-line description of ``exc`` (no traceback, no newlines)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    elif isinstance(exc, EXPECTED):
        text = str(exc) or type(exc).__name__
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())
