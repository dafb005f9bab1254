"""Small helpers shared by the benchmark's server and client processes."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

HOST = "127.0.0.1"
IMPL_MODULES = {
    "flight_secure": "flight_secure",
    "pyarrow": "pyarrow.flight",
    "floor": "bench.floor",  # bare grpcio replaying prebuilt replies: the stack's floor
    # pyarrow's engine behind flight_secure.arrow.server_options; clients are pyarrow's
    # with flight_secure's client handlers (flight_secure.arrow.ClientAuth)
    "fs_arrow": "pyarrow.flight",
    # pyarrow with an auth hook that only returns a fixed identity: the floor of any
    # Python auth on pyarrow's engine
    "pa_hook": "pyarrow.flight",
}


def import_flight(impl: str) -> ModuleType:
    """Import the Flight module of ``impl`` ("flight_secure" or "pyarrow").

    Raises KeyError for an unknown impl and ImportError/AttributeError when the
    module lacks the pyarrow.flight basics the benchmark needs.
    """
    module = importlib.import_module(IMPL_MODULES[impl])
    for name in ("FlightServerBase", "FlightClient", "Location"):
        getattr(module, name)
    return module


def drain(reader: Any) -> tuple[int, int]:
    """Read every chunk of a Flight stream reader; returns (rows, batch bytes)."""
    rows = nbytes = 0
    while True:
        try:
            batch = reader.read_chunk().data
        except StopIteration:
            return rows, nbytes
        rows += batch.num_rows
        nbytes += batch.nbytes


def memory_kb() -> dict[str, int]:
    """This process's resident memory from /proc: {"rss_kb", "peak_kb"} (VmRSS, VmHWM)."""
    out = {"rss_kb": 0, "peak_kb": 0}
    keys = {"VmRSS:": "rss_kb", "VmHWM:": "peak_kb"}
    for line in Path("/proc/self/status").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] in keys:
            out[keys[parts[0]]] = int(parts[1])
    return out


def reset_peak_memory() -> dict[str, int]:
    """Reset VmHWM to the current RSS (Linux clear_refs "5"); returns memory_kb() after.

    The reset is best effort: where the kernel refuses, the peak stays process-wide.
    """
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return memory_kb()


def protocol_stdout() -> TextIO:
    """Claim the real stdout for line protocol use and point fd 1 at stderr.

    Anything a library prints afterwards lands in stderr (the process log)
    instead of corrupting the protocol stream.
    """
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


def read_bytes(path: str | None) -> bytes | None:
    """Contents of ``path``, or None when no path is given."""
    return Path(path).read_bytes() if path else None


def error_text(exc: BaseException) -> str:
    """One-line description of an exception for result rows."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text[:300]
