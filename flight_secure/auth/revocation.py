"""Revoked tokens: one token by its id, or every token a subject was issued until now.

:class:`Revocations` is the interface the verifier consults on every call (after
the first, from its cache of verified tokens), so each check is one lookup:

* :meth:`~Revocations.revoke` ``(jti, until)`` ends one token (its ``jti``);
* :meth:`~Revocations.revoke_subject` ``(subject, until)`` ends every token whose
  ``sub`` is ``subject`` and whose ``iat`` is before now: "log this user out
  everywhere". ``iat`` counts whole seconds, so a token issued in the same
  second as the revocation is refused too (the user logs in again a second later);
* :meth:`~Revocations.rejects` ``(claims)`` says whether a verified token is revoked.

An entry is kept until wall-clock time ``until`` (epoch seconds: the token's
``exp``, or for a subject the moment every token issued before now has expired)
and for ever when ``until`` is None. Implementations:

* :class:`RevocationList` keeps the entries in memory (one process);
* :class:`RevocationFile` keeps them in a JSON-lines file that other processes
  (``flight-secure revoke``, other servers) may write; :meth:`RevocationFile.reload`
  picks up their changes;
* :class:`~flight_secure.auth.revocation_view.RevocationView` keeps a local copy of
  a list kept elsewhere (a URL; :mod:`~flight_secure.auth.redis_revocations` for
  Redis), refreshed in the background. Past a staleness bound its lookups raise
  :class:`RevocationsUnavailable` (a Flight UNAVAILABLE error): a token that cannot
  be checked is refused, never admitted.
"""

from __future__ import annotations

import json
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flight_secure.errors import FlightUnavailableError
from flight_secure.files import Stamp, stamp_of, write_atomic

__all__ = ["RevocationFile", "RevocationList", "Revocations", "RevocationsUnavailable",
           "parse_entries"]


class RevocationsUnavailable(FlightUnavailableError):
    """The revocation list cannot be consulted now (its copy is too old to trust), so
    a token cannot be checked; the message tells the caller to try again later."""


class Revocations(ABC):
    """Where revoked tokens are recorded and looked up. Implementations are thread-safe.

    :meth:`is_revoked` and :meth:`rejects` raise :class:`RevocationsUnavailable`
    when the list cannot be consulted; the implementations here that keep the list
    in this process never do.
    """

    @abstractmethod
    def revoke(self, jti: str, until: float | None = None) -> None:
        """Refuse the token whose ``jti`` this is, until ``until`` (None: for ever)."""

    @abstractmethod
    def revoke_subject(self, subject: str, until: float | None = None) -> None:
        """Refuse every token of ``subject`` issued before now, until ``until``."""

    @abstractmethod
    def is_revoked(self, jti: str) -> bool:
        """Whether the token id ``jti`` is revoked."""

    @abstractmethod
    def rejects(self, claims: Mapping[str, Any]) -> bool:
        """Whether the token with these verified claims is revoked: by its ``jti``, or
        as a token of a revoked ``sub`` whose ``iat`` is before the revocation (or
        missing)."""

    def close(self) -> None:  # noqa: B027 (a hook with a default, not abstract)
        """Release the threads or connections the list holds (default: nothing)."""


class RevocationList(Revocations):
    """Revocations kept in memory. ``clock`` is the wall clock (epoch seconds)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, float | None] = {}
        self._subjects: dict[str, tuple[float, float | None]] = {}  # revoked at, until
        self._prune_at = 1024

    def revoke(self, jti: str, until: float | None = None) -> None:
        with self._lock:
            self._tokens[jti] = until
            self._prune_if_due()

    def revoke_subject(self, subject: str, until: float | None = None) -> None:
        self.add_subject(subject, self._clock(), until)

    def add_subject(self, subject: str, revoked_at: float, until: float | None) -> None:
        """Record that ``subject``'s tokens issued before ``revoked_at`` are revoked
        (a later revocation of the same subject wins)."""
        with self._lock:
            earlier = self._subjects.get(subject)
            if earlier is None or earlier[0] <= revoked_at:
                self._subjects[subject] = (revoked_at, until)
            self._prune_if_due()

    def is_revoked(self, jti: str) -> bool:
        with self._lock:
            return jti in self._tokens and self._live(self._tokens[jti])

    def rejects(self, claims: Mapping[str, Any]) -> bool:
        jti, subject, issued = claims.get("jti"), claims.get("sub"), claims.get("iat")
        with self._lock:
            if isinstance(jti, str) and jti in self._tokens and self._live(self._tokens[jti]):
                return True
            entry = self._subjects.get(subject) if isinstance(subject, str) else None
            if entry is None or not self._live(entry[1]):
                return False
            return not isinstance(issued, int | float) or issued < entry[0]

    def entries(self) -> list[dict[str, Any]]:
        """The live entries as JSON-ready dicts: ``{"jti", "until"}`` and
        ``{"sub", "revoked_at", "until"}``."""
        with self._lock:
            tokens = [{"jti": jti, "until": until} for jti, until in self._tokens.items()
                      if self._live(until)]
            subjects = [{"sub": sub, "revoked_at": at, "until": until}
                        for sub, (at, until) in self._subjects.items() if self._live(until)]
        return tokens + subjects

    def __len__(self) -> int:
        return len(self.entries())

    def _live(self, until: float | None) -> bool:
        return until is None or until > self._clock()

    def _prune_if_due(self) -> None:
        """Drop lapsed entries once the table has doubled (amortised O(1)); lock held."""
        if len(self._tokens) + len(self._subjects) < self._prune_at:
            return
        self._tokens = {j: u for j, u in self._tokens.items() if self._live(u)}
        self._subjects = {s: e for s, e in self._subjects.items() if self._live(e[1])}
        self._prune_at = max(1024, 2 * (len(self._tokens) + len(self._subjects)))


class RevocationFile(Revocations):
    """Revocations kept in a JSON-lines file, one entry per line, as
    :meth:`RevocationList.entries` writes them.

    The file is read at construction (a missing file is an empty list) and again by
    :meth:`reload` when it changed on disk. :meth:`revoke` and
    :meth:`revoke_subject` add to the file, rewriting it atomically with mode 0600;
    run one writer at a time. Lookups never touch the disk. A malformed file raises
    ValueError naming the file and line; :meth:`reload` then keeps the entries in
    force.
    """

    def __init__(self, path: str | os.PathLike[str],
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp, self._list = self._read()

    def revoke(self, jti: str, until: float | None = None) -> None:
        with self._lock:
            self._list.revoke(jti, until)
            self._write()

    def revoke_subject(self, subject: str, until: float | None = None) -> None:
        with self._lock:
            self._list.revoke_subject(subject, until)
            self._write()

    def is_revoked(self, jti: str) -> bool:
        return self._list.is_revoked(jti)

    def rejects(self, claims: Mapping[str, Any]) -> bool:
        return self._list.rejects(claims)

    def reload(self) -> bool:
        """Re-read the file if it changed on disk; True when new entries were loaded."""
        with self._lock:
            if _stamp(self.path) == self._stamp:
                return False
            self._stamp, self._list = self._read()
            return True

    def __len__(self) -> int:
        return len(self._list)

    def __repr__(self) -> str:
        return f"RevocationFile({str(self.path)!r}, entries={len(self)})"

    def _read(self) -> tuple[Stamp | None, RevocationList]:
        try:
            with open(self.path, "rb") as handle:
                stamp = stamp_of(os.fstat(handle.fileno()))
                text = handle.read().decode("utf-8")
        except FileNotFoundError:
            return None, RevocationList(self._clock)
        except UnicodeDecodeError:
            raise ValueError(f"{self.path}: not UTF-8 text") from None
        return stamp, parse_entries(text, str(self.path), self._clock)

    def _write(self) -> None:
        """Replace the file with the entries in force; lock held."""
        text = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in self._list.entries())
        write_atomic(self.path, text.encode("utf-8"), 0o600)
        self._stamp = _stamp(self.path)


def parse_entries(text: str, source: str,
                  clock: Callable[[], float] = time.time) -> RevocationList:
    """The entries of JSON-lines ``text`` (as :meth:`RevocationList.entries` writes
    them) in a new list on ``clock``; ValueError naming ``source`` and the line of
    the first entry that is not one."""
    found = RevocationList(clock)
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            _add_entry(found, line, f"{source}: line {number}")
    return found


def _add_entry(into: RevocationList, line: str, where: str) -> None:
    """Add the entry one JSON line describes; ValueError naming ``where`` if it is none."""
    try:
        entry = json.loads(line)
    except ValueError:
        raise ValueError(f"{where}: not a JSON object") from None
    until = entry.get("until") if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or not (until is None or _number(until)):
        raise ValueError(f"{where}: expected an object with a numeric or null 'until'")
    if isinstance(entry.get("jti"), str):
        into.revoke(entry["jti"], until)
    elif isinstance(entry.get("sub"), str) and _number(entry.get("revoked_at")):
        into.add_subject(entry["sub"], entry["revoked_at"], until)
    else:
        raise ValueError(f"{where}: expected a 'jti', or a 'sub' with a numeric 'revoked_at'")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _stamp(path: Path) -> Stamp | None:
    try:
        return stamp_of(os.stat(path))
    except FileNotFoundError:
        return None
