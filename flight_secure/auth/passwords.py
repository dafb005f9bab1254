"""Bcrypt password store kept in an Apache ``htpasswd`` compatible file.

The on-disk format is the one written by ``htpasswd -B`` (Debian package
``apache2-utils``): one ``user:hash`` line per user, where the hash is a bcrypt
hash (``$2y$``, ``$2b$`` or ``$2a$`` prefix).  Blank lines and lines starting
with ``#`` are ignored.  Any other hash scheme (``$apr1$`` MD5, ``{SHA}``,
DES ``crypt`` or plaintext) is refused, because those are cheap to brute-force.

Security contract:

* passwords and hashes never appear in exception messages or reprs;
* :meth:`PasswordStore.verify` runs one bcrypt computation whether or not the
  user exists (unknown users are checked against a dummy hash of the same cost),
  so response time does not reveal which user names exist;
* :meth:`PasswordStore.save` writes a new file readable by the owner only
  (mode 0600 from the moment it is created) and atomically replaces the old one;
* :meth:`PasswordStore.fingerprint` names a user's current password without
  revealing anything about it (a digest of the salted hash), so a session token
  can carry it and every call can check, without bcrypt, that the password has
  not changed and the user still exists.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import threading
from pathlib import Path

import bcrypt

from flight_secure.files import Stamp, stamp_of, write_atomic

__all__ = ["MAX_PASSWORD_BYTES", "MAX_USER_LENGTH", "PasswordFileError", "PasswordStore"]

MAX_PASSWORD_BYTES = 72
"""bcrypt only looks at the first 72 bytes; longer passwords are refused, not truncated."""

MAX_USER_LENGTH = 255

_BCRYPT_HASH = re.compile(r"^\$2[aby]\$(?P<cost>\d\d)\$[./A-Za-z0-9]{53}$")

_dummy_lock = threading.Lock()
_dummy_hashes: dict[int, bytes] = {}


class PasswordFileError(ValueError):
    """An htpasswd file could not be used; the message names file and line, never a hash."""


def _dummy_hash(cost: int) -> bytes:
    """Return a process-wide bcrypt hash of a random secret at ``cost``."""
    with _dummy_lock:
        found = _dummy_hashes.get(cost)
        if found is None:
            found = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))
            _dummy_hashes[cost] = found
        return found


def _check_user(user: str) -> None:
    """Raise ValueError unless ``user`` can be stored in an htpasswd line unchanged."""
    if not isinstance(user, str):
        raise TypeError("user name must be a str")
    if not user:
        raise ValueError("user name must not be empty")
    if len(user) > MAX_USER_LENGTH:
        raise ValueError(f"user name must be at most {MAX_USER_LENGTH} characters")
    if ":" in user:
        raise ValueError("user name must not contain ':'")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in user):
        raise ValueError("user name must not contain newlines or control characters")
    if user != user.strip():
        raise ValueError("user name must not start or end with whitespace")
    if user.startswith("#"):
        raise ValueError("user name must not start with '#' (htpasswd comment marker)")


def _password_bytes(password: str | bytes) -> bytes:
    if isinstance(password, str):
        return password.encode("utf-8")
    if isinstance(password, bytes):
        return password
    raise TypeError("password must be str or bytes")


def _for_bcrypt(stored: str) -> bytes:
    """Translate htpasswd's ``$2y$`` prefix to the equivalent ``$2b$`` the bcrypt library uses."""
    if stored.startswith("$2y$"):
        stored = "$2b$" + stored[4:]
    return stored.encode("ascii")


def _describe_scheme(hashed: str) -> str:
    if hashed.startswith("$apr1$"):
        return "an Apache MD5 ($apr1$)"
    if hashed.startswith("{SHA}"):
        return "a SHA-1 ({SHA})"
    if re.match(r"^\$[0-9a-z]+\$", hashed):
        return "a crypt(3)"
    return "a DES crypt or plaintext"


def _cost(hashed: str) -> int:
    return int(hashed[4:6])


def _fingerprint(user: str, hashed: str) -> str:
    """128 bits of SHA-256 over the user and their salted hash, base64url."""
    digest = hashlib.sha256(b"flight-secure credential v1\0" + user.encode("utf-8")
                            + b"\0" + hashed.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


class PasswordStore:
    """In-memory map of user name to bcrypt hash, loadable from and savable to htpasswd files.

    ``rounds`` is the bcrypt cost (log2 of iterations) for hashes created by :meth:`add`.
    All methods are thread-safe; bcrypt work happens outside the internal lock, so
    concurrent :meth:`verify` calls do not serialise on each other.
    """

    def __init__(self, rounds: int = 12) -> None:
        if not isinstance(rounds, int) or not 4 <= rounds <= 31:
            raise ValueError("rounds must be an integer between 4 and 31")
        self._rounds = rounds
        self._lock = threading.Lock()
        self._hashes: dict[str, str] = {}
        self._fingerprints: dict[str, str] = {}
        self._path: Path | None = None
        self._stamp: Stamp | None = None

    @property
    def rounds(self) -> int:
        """bcrypt cost used for new hashes."""
        return self._rounds

    @property
    def path(self) -> Path | None:
        """The file this store was loaded from, if any (used by :meth:`reload`)."""
        return self._path

    def add(self, user: str, password: str | bytes) -> None:
        """Set ``user``'s password, replacing any existing one.

        Raises ValueError if the user name cannot be represented in htpasswd
        (empty, longer than 255 characters, containing ':' or control characters)
        or if the password is empty or longer than 72 UTF-8 bytes.
        """
        _check_user(user)
        secret = _password_bytes(password)
        if not secret:
            raise ValueError("password must not be empty")
        if len(secret) > MAX_PASSWORD_BYTES:
            raise ValueError(
                f"password is {len(secret)} bytes; bcrypt supports at most "
                f"{MAX_PASSWORD_BYTES} bytes (UTF-8)"
            )
        hashed = bcrypt.hashpw(secret, bcrypt.gensalt(self._rounds)).decode("ascii")
        stored = "$2y$" + hashed[4:]  # the prefix htpasswd writes; the same algorithm
        with self._lock:
            self._hashes[user] = stored
            self._fingerprints[user] = _fingerprint(user, stored)

    def verify(self, user: str, password: str | bytes) -> bool:
        """Return True iff ``user`` exists and ``password`` matches its hash.

        Exactly one bcrypt computation runs for every call, including unknown
        users, empty passwords and passwords over 72 bytes (which never match),
        so timing reveals neither whether a user exists nor why a check failed.
        """
        secret = _password_bytes(password)
        with self._lock:
            stored = self._hashes.get(user) if isinstance(user, str) else None
            dummy_cost = self._dummy_cost_locked()
        usable = 0 < len(secret) <= MAX_PASSWORD_BYTES
        if stored is None or not usable:
            bcrypt.checkpw(secret[:MAX_PASSWORD_BYTES], _dummy_hash(dummy_cost))
            return False
        return bcrypt.checkpw(secret, _for_bcrypt(stored))

    def remove(self, user: str) -> None:
        """Delete ``user``; raises KeyError if there is no such user."""
        with self._lock:
            if user not in self._hashes:
                raise KeyError(f"no such user in password store: {user!r}")
            del self._hashes[user]
            del self._fingerprints[user]

    def fingerprint(self, user: str) -> str | None:
        """A short name for ``user``'s current password hash; None for an unknown user.

        It changes whenever the password is set again (a new salt), and reveals
        nothing usable about the password: it is a digest of the salted bcrypt
        hash, whose salt it does not show. One dictionary lookup, no bcrypt.
        """
        with self._lock:
            return self._fingerprints.get(user)

    def users(self) -> list[str]:
        """Return the user names, sorted."""
        with self._lock:
            return sorted(self._hashes)

    def __contains__(self, user: object) -> bool:
        with self._lock:
            return user in self._hashes

    def __len__(self) -> int:
        with self._lock:
            return len(self._hashes)

    def __repr__(self) -> str:
        with self._lock:
            count = len(self._hashes)
        source = f", path={str(self._path)!r}" if self._path is not None else ""
        return f"PasswordStore(users={count}, rounds={self._rounds}{source})"

    def _dummy_cost_locked(self) -> int:
        # Unknown users must cost what known users cost: use the strongest stored cost.
        if not self._hashes:
            return self._rounds
        return max(_cost(h) for h in self._hashes.values())

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write all users to ``path`` in htpasswd format, atomically, with mode 0600.

        The data goes to a new temporary file in the same directory (created with
        mode 0600 via ``os.open``), is flushed to disk and then renamed over
        ``path`` with ``os.replace``; readers see the old or the new file, never
        a partial one.
        """
        target = Path(path)
        with self._lock:
            text = "".join(f"{user}:{hashed}\n" for user, hashed in sorted(self._hashes.items()))
        write_atomic(target, text.encode("utf-8"), 0o600)
        with self._lock:
            if self._path is not None and self._path == target:
                self._stamp = _stamp(target)

    @classmethod
    def load(cls, path: str | os.PathLike[str], rounds: int = 12) -> PasswordStore:
        """Read an htpasswd file containing only bcrypt hashes.

        Raises PasswordFileError (a ValueError) for a malformed or non-bcrypt line,
        naming the file, line number and user, and OSError if the file cannot be
        read.  The store remembers ``path`` so :meth:`reload` can pick up changes.
        """
        store = cls(rounds=rounds)
        source = Path(path)
        stamp, hashes = _read(source)
        store._set(hashes)
        store._path, store._stamp = source, stamp
        return store

    def reload(self) -> bool:
        """Re-read the file this store was loaded from if it changed on disk.

        Returns True if new contents were loaded, False if the file is unchanged
        or the store was not loaded from a file.  If the new file is invalid,
        PasswordFileError is raised and the current users are kept.
        """
        with self._lock:
            source, old = self._path, self._stamp
        if source is None or _stamp(source) == old:
            return False
        stamp, hashes = _read(source)
        self._set(hashes)
        with self._lock:
            self._stamp = stamp
        return True

    def _set(self, hashes: dict[str, str]) -> None:
        fingerprints = {user: _fingerprint(user, hashed) for user, hashed in hashes.items()}
        with self._lock:
            self._hashes, self._fingerprints = hashes, fingerprints


def _stamp(path: Path) -> Stamp:
    return stamp_of(os.stat(path))


def _read(path: Path) -> tuple[Stamp, dict[str, str]]:
    with open(path, "rb") as handle:
        info = os.fstat(handle.fileno())
        raw = handle.read()
    stamp = stamp_of(info)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PasswordFileError(f"{path}: file is not valid UTF-8") from exc
    hashes: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep:
            raise PasswordFileError(f"{path}: line {number}: expected 'user:hash'")
        try:
            _check_user(user)
        except ValueError as exc:
            raise PasswordFileError(f"{path}: line {number}: invalid user name: {exc}") from None
        found = _BCRYPT_HASH.match(hashed)
        if found and not 4 <= int(found["cost"]) <= 31:
            raise PasswordFileError(
                f"{path}: line {number}: user {user!r} has a bcrypt hash with an "
                "invalid cost (must be 04-31)"
            )
        if not found:
            raise PasswordFileError(
                f"{path}: line {number}: user {user!r} has {_describe_scheme(hashed)} "
                "password hash; only bcrypt hashes are supported (create them with "
                "`htpasswd -B`)"
            )
        if user in hashes:
            raise PasswordFileError(
                f"{path}: line {number}: user {user!r} already defined on line "
                f"{first_seen[user]}"
            )
        hashes[user], first_seen[user] = hashed, number
    return stamp, hashes
