"""A folder of data files seen as named datasets: describe, stream, and write atomically.

One dataset per file directly in the folder: Parquet (``.parquet``), Arrow IPC file /
Feather v2 (``.arrow``, ``.feather``, ``.ipc``) and CSV (``.csv``); its name is the
file stem. When two files share a stem, the first suffix in :data:`FORMATS` wins.
Hidden files (a leading ``.``) are never datasets, so uploads in progress, which are
written to hidden temporary files, are invisible until they are complete.

Reads go through ``pyarrow.dataset`` scanners, so a large file is streamed batch by
batch, never loaded whole. :meth:`DatasetFolder.write` writes a new Parquet file to a
temporary file in the folder, fsyncs it and moves it into place in one step; when the
upload fails or the client goes away, the temporary file is removed and nothing appears.
Uploads are written mode 0600 (:data:`UPLOAD_MODE`), whatever the umask.

A failure of the file system or of pyarrow reaches the client as FlightInternalError
naming the dataset and an error id, never the OS or Arrow message (they name server
paths); the log has the details under that id (:func:`internal_error`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flight_secure.errors import (
    FlightAlreadyExistsError,
    FlightCancelledError,
    FlightError,
    FlightInternalError,
    FlightInvalidArgumentError,
    FlightNotFoundError,
)
from flight_secure.files import stamp_of

log = logging.getLogger("flight_secure.serve")

#: suffix -> pyarrow.dataset format, in precedence order.
FORMATS: dict[str, str] = {
    ".parquet": "parquet",
    ".arrow": "ipc",
    ".feather": "ipc",
    ".ipc": "ipc",
    ".csv": "csv",
}
NAME_MAX = 255
"""The longest file name, in bytes, on the usual Linux file systems (ext4, XFS, Btrfs, tmpfs)."""
UPLOAD_SUFFIX = ".upload"
_TOKEN_HEX = 12
UPLOAD_MODE = 0o600
"""Mode of uploaded datasets, whatever the umask: the server's per-dataset rights decide who
reads them, so no other account on the host may (chmod them to share them outside serve)."""


def upload_file_name(name: str, token: str) -> str:
    """The hidden temporary file an upload of dataset ``name`` is written to."""
    return f".{name}.{token}{UPLOAD_SUFFIX}"


MAX_NAME_BYTES = NAME_MAX - len(upload_file_name("", "0" * _TOKEN_HEX))
"""234: the longest name whose upload file fits in NAME_MAX (``<name>.parquet`` is shorter)."""

#: Unicode categories never allowed in a name: controls (Cc), format characters such as
#: the bidirectional overrides and isolates (Cf), surrogates (Cs), private use (Co),
#: unassigned code points (Cn), line and paragraph separators (Zl, Zp) and spaces other
#: than U+0020 (Zs). They could hide what a name says in a listing or forge a log line.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})


def _refused(char: str) -> bool:
    return char != " " and unicodedata.category(char) in REFUSED_CATEGORIES


def check_name(name: str | bytes) -> str:
    """``name`` as a safe dataset name, or FlightInvalidArgumentError.

    A name is 1 to :data:`MAX_NAME_BYTES` bytes of UTF-8 with no path separator, no
    character of :data:`REFUSED_CATEGORIES` (U+0020 space is allowed inside), no ``..``,
    no surrounding spaces, and does not start with ``.`` (hidden files are not datasets).
    """
    if isinstance(name, bytes):
        try:
            name = name.decode("utf-8")
        except UnicodeDecodeError:
            raise FlightInvalidArgumentError("a dataset name must be UTF-8 text") from None
    if not name or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise FlightInvalidArgumentError(
            f"a dataset name must have 1 to {MAX_NAME_BYTES} bytes of UTF-8")
    if ("/" in name or "\\" in name or ".." in name or name.startswith(".")
            or name != name.strip() or any(_refused(char) for char in name)):
        raise FlightInvalidArgumentError(
            f"invalid dataset name {name[:60]!r}: no path separators, control, format or "
            "separator characters, '..', leading dot or surrounding spaces")
    return name


def for_log(text: str) -> str:
    """``text`` for a log line: as is when printable, else its repr (no forged lines)."""
    return text if text.isprintable() else repr(text)


def internal_error(what: str, exc: BaseException) -> FlightInternalError:
    """The error a client gets when ``what`` (e.g. "dataset 'x' could not be read") failed
    with ``exc``: a new error id, and no OS or Arrow text (they name server paths). The
    details are logged under that id."""
    error_id = secrets.token_hex(4)
    log.warning("error id %s: %s: %s", error_id, for_log(what), for_log(str(exc)))
    return FlightInternalError(f"{what} (error id {error_id}; details in the server's log)")


@dataclass(frozen=True)
class Description:
    """What a client learns about a dataset before reading it."""

    schema: pa.Schema
    rows: int
    bytes: int


class DatasetFolder:
    """The datasets in ``root`` (a directory that must exist). Thread-safe."""

    def __init__(self, root: str | os.PathLike[str], batch_size: int = 64 * 1024) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(2, "not a directory", str(self.root))
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._uploading: set[str] = set()
        self._described: dict[Path, tuple[tuple[int, int, int], Description]] = {}

    # ----------------------------------------------------------------- reading

    def names(self) -> list[str]:
        """The dataset names, sorted."""
        found: set[str] = set()
        try:
            with os.scandir(self.root) as entries:
                for entry in entries:
                    stem, suffix = os.path.splitext(entry.name)
                    if suffix in FORMATS and _valid(stem) and entry.is_file():
                        found.add(stem)
        except OSError as exc:
            raise internal_error("the datasets could not be listed", exc) from None
        return sorted(found)

    def path_of(self, name: str) -> Path | None:
        """The file behind dataset ``name`` (a checked name), or None."""
        with _failing_as_internal(f"dataset {name!r} could not be found"):
            return next(_files_of(self.root, name), None)

    def _find(self, name: str) -> Path:
        path = self.path_of(name)
        if path is None:
            raise FlightNotFoundError(f"no dataset named {name!r}")
        return path

    def describe(self, name: str) -> Description:
        """Schema, row count and size of dataset ``name`` (cached until the file changes).

        Raises FlightNotFoundError when there is no such dataset and
        FlightInternalError when its file cannot be read (details go to the log only).
        """
        path = self._find(name)
        with _failing_as_internal(f"dataset {name!r} could not be read"):
            info = path.stat()
            stamp = stamp_of(info)
            with self._lock:
                cached = self._described.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            dataset = open_dataset(path)
            description = Description(dataset.schema, dataset.count_rows(), info.st_size)
        with self._lock:
            self._described[path] = (stamp, description)
        return description

    def reader(self, name: str) -> pa.RecordBatchReader:
        """A reader that streams dataset ``name`` in batches of at most ``batch_size`` rows.

        Raises as :meth:`describe` does, also while the batches are being read.
        """
        path = self._find(name)
        failure = f"dataset {name!r} could not be read"
        with _failing_as_internal(failure):
            scanned = open_dataset(path).scanner(batch_size=self.batch_size).to_reader()

        def batches() -> Iterator[pa.RecordBatch]:
            with _failing_as_internal(failure):
                yield from scanned

        return pa.RecordBatchReader.from_batches(scanned.schema, batches())

    # ----------------------------------------------------------------- writing

    def exists(self, name: str) -> bool:
        return self.path_of(name) is not None

    def write(
        self,
        name: str,
        schema: pa.Schema,
        batches: Iterable[pa.RecordBatch],
        *,
        overwrite: bool = False,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> int:
        """Store ``batches`` as ``<name>.parquet``, atomically; returns the rows written.

        Without ``overwrite`` an existing dataset is never replaced
        (FlightAlreadyExistsError, checked before and again at the final, no-clobber
        link); with it, the new file replaces the dataset and the dataset's files in
        other formats are removed. A second upload of the same name while one runs is
        refused (FlightAlreadyExistsError). When ``batches`` raises or ``cancelled()``
        is true at the end, the temporary file is removed and nothing changes.
        """
        with self._lock:
            if name in self._uploading:
                raise FlightAlreadyExistsError(f"dataset {name!r} is being uploaded right now")
            self._uploading.add(name)
        try:
            if not overwrite and self.exists(name):
                raise FlightAlreadyExistsError(f"dataset {name!r} exists already")
            tmp = self.root / upload_file_name(name, secrets.token_hex(_TOKEN_HEX // 2))
            try:
                with _failing_as_internal(f"dataset {name!r} could not be stored"):
                    rows = _write_parquet(tmp, schema, batches)
                    if cancelled():
                        raise FlightCancelledError("the upload was cancelled before it finished")
                    self._commit(tmp, name, overwrite)
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
            return rows
        finally:
            with self._lock:
                self._uploading.discard(name)

    def _commit(self, tmp: Path, name: str, overwrite: bool) -> None:
        target = self.root / f"{name}.parquet"
        others = [p for p in _files_of(self.root, name) if p != target]
        if overwrite:
            os.replace(tmp, target)
            for other in others:
                other.unlink(missing_ok=True)
        else:
            if others:
                raise FlightAlreadyExistsError(f"dataset {name!r} exists already")
            try:
                os.link(tmp, target)  # fails instead of replacing a file that appeared
            except FileExistsError:
                raise FlightAlreadyExistsError(f"dataset {name!r} exists already") from None
        _fsync_directory(self.root)


@contextmanager
def _failing_as_internal(what: str) -> Iterator[None]:
    """Turn an OS or Arrow failure inside the block into :func:`internal_error` (``what``).

    Flight errors pass through unchanged: they are meant for the client.
    """
    try:
        yield
    except FlightError:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise internal_error(what, exc) from None


def open_dataset(path: Path) -> Any:
    """A ``pyarrow.dataset.Dataset`` over one file."""
    import pyarrow.dataset as ds  # on first use: it imports pandas, slowing every command

    return ds.dataset(path, format=FORMATS[path.suffix])


def _valid(name: str) -> bool:
    try:
        check_name(name)
    except FlightInvalidArgumentError:
        return False
    return True


def _files_of(root: Path, name: str) -> Iterator[Path]:
    """The files of dataset ``name`` in precedence order."""
    for suffix in FORMATS:
        path = root / (name + suffix)
        if path.is_file():
            yield path


def _write_parquet(path: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
    rows = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, UPLOAD_MODE)
    with os.fdopen(fd, "wb") as handle:
        with pq.ParquetWriter(handle, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
        handle.flush()
        os.fsync(handle.fileno())
    return rows


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
