"""Files the project writes and re-reads: atomic writes with an exact mode, version stamps.

:func:`write_atomic` is how keys, certificates, password files and revocation
lists are written: readers see the old file or the new one, never part of one,
and a secret is never readable by others for an instant. :func:`stamp_of` is the
version a re-read compares to tell whether a file changed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["Stamp", "stamp_of", "write_atomic"]

#: A file's version: (modification time in ns, size, inode).
Stamp = tuple[int, int, int]


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` via a same-directory temp file created with ``mode``
    (made exact whatever the umask), flushed to disk before it is renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)  # the umask may have narrowed it; make it exact
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def stamp_of(info: os.stat_result) -> Stamp:
    """The version of the file ``info`` describes."""
    return (info.st_mtime_ns, info.st_size, info.st_ino)
