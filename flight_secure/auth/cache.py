"""A bounded cache of what verifying a token established, kept until the token expires.

A token's signature is checked once; every later call presenting the same token
costs one lookup here. The cache never holds the token itself, only the SHA-256
digest of it, so a memory dump of the server shows no usable credential. What
may change after verification (revocation, a removed user) is not the cache's
business: its users check that on every hit.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["TokenCache"]

V = TypeVar("V")


class TokenCache(Generic[V]):
    """At most ``size`` entries ``token -> value``, each until its ``expires_at``.

    ``expires_at`` is in seconds on ``clock`` (by default the epoch clock of a
    token's ``exp``). The least recently used entry goes first when the cache is
    full; ``size=0`` keeps nothing. Thread-safe.
    """

    def __init__(self, size: int, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"cache size must be an integer of 0 or more, not {size!r}")
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[V, float]] = OrderedDict()

    def get(self, token: str) -> V | None:
        """The value stored for ``token``, or None (never stored, evicted or expired)."""
        key = _digest(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[1] <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, token: str, value: V, expires_at: float) -> None:
        """Keep ``value`` for ``token`` until ``expires_at``."""
        if self._size == 0:
            return
        key = _digest(token)
        with self._lock:
            self._entries[key] = (value, expires_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry (e.g. when a verification key was withdrawn)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
