"""The statements running now, and the one thread that stops them when they must stop.

A statement is stopped (``connection.interrupt()``, DuckDB's own cancellation) when
its call ends early (the client cancelled, disconnected or hit its deadline: the
call's ``is_cancelled()`` turns true), when it has run longer than ``time_limit``
seconds, or when its owner sends CancelFlightInfo for it. A watcher thread checks
every ``poll`` seconds while anything runs, so a stop takes effect within about that
long; it keeps interrupting until the statement is gone, as DuckDB only notices an
interrupt while it is executing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

CANCELLED = "cancelled"
TIMED_OUT = "timed out"


@dataclass(eq=False)
class Running:
    """One running statement; ``stop_reason`` is set once it has been told to stop."""

    query_id: str
    owner: str
    connection: Any
    is_cancelled: Callable[[], bool]
    deadline: float
    stop_reason: str | None = None
    cancel_requested: bool = field(default=False)


class RunningStatements:
    """Tracks running statements and interrupts those that must stop. Thread-safe."""

    def __init__(self, time_limit: float, poll: float = 0.05) -> None:
        self.time_limit = time_limit
        self.poll = poll
        self._lock = threading.Lock()
        self._running: set[Running] = set()
        self._wake = threading.Condition(self._lock)
        self._watcher: threading.Thread | None = None

    @contextmanager
    def track(self, query_id: str, owner: str, connection: Any,
              is_cancelled: Callable[[], bool]) -> Iterator[Running]:
        """Watch ``connection`` for the duration of the block."""
        entry = Running(query_id, owner, connection, is_cancelled,
                        time.monotonic() + self.time_limit)
        with self._lock:
            self._running.add(entry)
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="flight-sql-watch",
                                                 daemon=True)
                self._watcher.start()
            self._wake.notify()
        try:
            yield entry
        finally:
            with self._lock:
                self._running.discard(entry)

    def cancel(self, query_id: str, owner: str) -> bool:
        """Ask ``owner``'s statement ``query_id`` to stop; False when none such runs."""
        with self._lock:
            found = [e for e in self._running if e.query_id == query_id and e.owner == owner]
            for entry in found:
                entry.cancel_requested = True
            self._wake.notify()
        return bool(found)

    def count(self) -> int:
        with self._lock:
            return len(self._running)

    def _watch(self) -> None:
        while True:
            with self._lock:
                while not self._running:
                    self._wake.wait()
                entries = list(self._running)
            now = time.monotonic()
            for entry in entries:
                reason = entry.stop_reason or _reason(entry, now)
                if reason is not None:
                    entry.stop_reason = reason
                    with contextlib.suppress(Exception):  # closed meanwhile: it has stopped
                        entry.connection.interrupt()
            with self._lock:
                self._wake.wait(self.poll)


def _reason(entry: Running, now: float) -> str | None:
    if entry.cancel_requested:
        return CANCELLED
    if now > entry.deadline:
        return TIMED_OUT
    try:
        return CANCELLED if entry.is_cancelled() else None
    except Exception:  # a call whose context is gone has ended
        return CANCELLED
