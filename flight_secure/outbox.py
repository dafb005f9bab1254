"""Outbox: the bounded hand-off of encoded messages between a writer's thread and gRPC."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator

from flight_secure.errors import FlightError

_END = object()


class Outbox:
    """A bounded queue of encoded messages from one writer to one reader.

    ``put`` blocks while messages are waiting and adding this one would pass
    ``max_bytes`` (or ``max_frames``): many small messages flow without a thread
    switch each, while big batches are held at most one at a time, which gives the
    writer backpressure. ``close`` ends the stream; ``fail`` makes further ``put``
    calls raise the error given. Iterating yields the messages until the end.
    """

    def __init__(self, max_bytes: int = 8 << 20, max_frames: int = 256) -> None:
        self._items: deque = deque()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._max_frames = max_frames
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None

    def put(self, frame: bytes) -> None:
        """Queue ``frame``, waiting for room; raises the ``fail`` error, or
        FlightError once the outbox is closed."""
        size = len(frame)
        with self._cond:
            while (
                self._items
                and self._error is None
                and (
                    self._bytes + size > self._max_bytes
                    or len(self._items) >= self._max_frames
                )
            ):
                self._cond.wait()
            if self._error is not None:
                raise self._error
            if self._closed:
                raise FlightError("cannot write: the stream was already closed")
            self._items.append(frame)
            self._bytes += size
            self._cond.notify_all()

    def close(self) -> None:
        """End the stream after the messages already queued."""
        with self._cond:
            if not self._closed:
                self._closed = True
                self._items.append(_END)
                self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """End the stream; every later ``put`` (and a waiting one) raises ``error``."""
        with self._cond:
            self._error = error
            self._closed = True
            self._items.append(_END)
            self._cond.notify_all()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until a message (or the end) can be taken; False after ``timeout`` s."""
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._items), timeout)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            with self._cond:
                while not self._items:
                    self._cond.wait()
                item = self._items.popleft()
                if item is not _END:
                    self._bytes -= len(item)
                self._cond.notify_all()
            if item is _END:
                return
            yield item
