"""Protection of expensive password checks against guessing floods.

:class:`LoginGuard` sits in front of a slow credential check (bcrypt) and

* runs at most ``max_concurrent_checks`` checks at once in its own thread pool,
  so a flood of logins cannot take every CPU; at most ``max_waiting`` further
  checks may queue, beyond that callers are refused at once (``busy``);
* counts failures per user and per peer in a sliding ``failure_window``; a user
  with ``max_failures_per_user`` failures, or a peer with ``max_failures_per_peer``,
  is locked out for ``lockout`` seconds (``throttled``) and their checks are not run;
* limits in-flight checks per user and per peer to their remaining failure budget,
  so a parallel burst cannot run more guesses than the lockout allows;
* keeps memory bounded: old failures are pruned and at most ``max_tracked_keys``
  users/peers are tracked (least recently used dropped first).

``peer`` should identify the client host, not the connection: pass an address
without the port (see :func:`peer_host` for gRPC peer strings).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["LoginDecision", "LoginGuard", "peer_host"]

Reason = Literal["ok", "bad_credentials", "throttled", "busy", "timeout"]


@dataclass(frozen=True)
class LoginDecision:
    """Outcome of :meth:`LoginGuard.check`.

    ``allowed`` is True only for reason ``"ok"``.  ``retry_after`` is the number of
    seconds until a lockout ends (``"throttled"`` only), otherwise None.
    """

    allowed: bool
    reason: Reason
    retry_after: float | None = None


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = float("-inf")
    in_flight: int = 0


_Key = tuple[str, str]  # ("user", name) or ("peer", address)


def peer_host(peer: str) -> str:
    """Reduce a gRPC peer string (``ipv4:1.2.3.4:5678``, ``ipv6:[::1]:5678``) to its host."""
    kind, sep, rest = peer.partition(":")
    if not sep or kind not in ("ipv4", "ipv6"):
        return peer
    if rest.startswith("["):
        return rest[1:rest.find("]")] if "]" in rest else rest
    return rest.rpartition(":")[0] or rest


class LoginGuard:
    """Bounded, throttled execution of credential checks.  Thread-safe.

    ``clock`` is a monotonic time source in seconds (injectable for tests).
    Call :meth:`close` when done to stop the worker threads.
    """

    def __init__(self, max_concurrent_checks: int = 2, max_waiting: int = 64,
                 failure_window: float = 60.0, max_failures_per_user: int = 5,
                 max_failures_per_peer: int = 20, lockout: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 max_tracked_keys: int = 100_000) -> None:
        if max_concurrent_checks < 1 or max_waiting < 0:
            raise ValueError("max_concurrent_checks must be >= 1 and max_waiting >= 0")
        if min(max_failures_per_user, max_failures_per_peer, max_tracked_keys) < 1:
            raise ValueError("failure limits and max_tracked_keys must be >= 1")
        if failure_window <= 0 or lockout < 0:
            raise ValueError("failure_window must be > 0 and lockout >= 0")
        self._capacity = max_concurrent_checks + max_waiting
        self._window, self._lockout, self._clock = failure_window, lockout, clock
        self._limits = {"user": max_failures_per_user, "peer": max_failures_per_peer}
        self._max_keys = max_tracked_keys
        self._lock = threading.Lock()
        self._records: OrderedDict[_Key, _Record] = OrderedDict()
        self._pending = 0
        self._closed = False
        self._pool = ThreadPoolExecutor(max_concurrent_checks, thread_name_prefix="login-check")

    @property
    def pending_checks(self) -> int:
        """Checks accepted and not yet finished (running plus queued)."""
        with self._lock:
            return self._pending

    @property
    def tracked_keys(self) -> int:
        """Number of users and peers currently tracked."""
        with self._lock:
            return len(self._records)

    def check(self, user: str, peer: str, verify: Callable[[], bool],
              timeout: float | None = 5.0) -> LoginDecision:
        """Run ``verify()`` for ``user`` connecting from ``peer``, unless refused first.

        Refuses without running ``verify`` when the user or peer is locked out
        (``throttled``, with ``retry_after``) or when the queue is full or the
        user's/peer's in-flight checks already use up their failure budget
        (``busy``).  Otherwise waits up to ``timeout`` seconds (None: forever) for
        the result: ``ok`` or ``bad_credentials``; on ``timeout`` a still-queued
        check is cancelled, a running one finishes and its outcome is recorded.
        A failure counts against user and peer; a success clears the user's
        failures (not the peer's).  An exception raised by ``verify`` propagates
        and is not counted.  Raises RuntimeError after :meth:`close`.
        """
        keys: tuple[_Key, _Key] = (("user", user), ("peer", peer))
        with self._lock:
            if self._closed:
                raise RuntimeError("LoginGuard is closed")
            now = self._clock()
            # Look up without creating: refused requests must not grow (or churn) the table.
            known = [self._lookup(key, now) for key in keys]
            wait = max((r.locked_until for r in known if r), default=float("-inf")) - now
            if wait > 0:
                return LoginDecision(False, "throttled", wait)
            for (kind, _), record in zip(keys, known):
                if record and len(record.failures) + record.in_flight >= self._limits[kind]:
                    return LoginDecision(False, "busy")
            if self._pending >= self._capacity:
                return LoginDecision(False, "busy")
            self._pending += 1
            for key, record in zip(keys, known):
                (record or self._create(key)).in_flight += 1
            self._evict(now)
            future = self._pool.submit(self._run, keys, verify)
        try:
            ok = future.result(timeout)
        except FutureTimeout:
            if future.cancel():  # never started: release its slot ourselves
                self._finish(keys, None)
            return LoginDecision(False, "timeout")
        except CancelledError:  # cancelled by close()
            return LoginDecision(False, "busy")
        return LoginDecision(True, "ok") if ok else LoginDecision(False, "bad_credentials")

    def close(self) -> None:
        """Refuse new checks, cancel queued ones and let running ones finish in the background."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> LoginGuard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _run(self, keys: tuple[_Key, _Key], verify: Callable[[], bool]) -> bool:
        outcome: bool | None = None
        try:
            outcome = bool(verify())
            return outcome
        finally:
            self._finish(keys, outcome)  # recorded before the caller sees the result

    def _finish(self, keys: tuple[_Key, _Key], outcome: bool | None) -> None:
        """Release the slots of one check and record its outcome (None: no outcome)."""
        with self._lock:
            self._pending -= 1
            now = self._clock()
            for key in keys:
                record = self._lookup(key, now)
                if record is None:  # evicted meanwhile; only a failure needs a record
                    if outcome is not False:
                        continue
                    record = self._create(key)
                else:
                    record.in_flight = max(0, record.in_flight - 1)
                if outcome is True and key[0] == "user":
                    record.failures.clear()
                elif outcome is False:
                    record.failures.append(now)
                    if len(record.failures) >= self._limits[key[0]]:
                        record.locked_until = now + self._lockout
                        record.failures.clear()
            self._evict(now)

    def _lookup(self, key: _Key, now: float) -> _Record | None:
        """The record for ``key``, pruned and marked recently used, if any; lock held."""
        record = self._records.get(key)
        if record is not None:
            self._records.move_to_end(key)
            self._prune(record, now)
        return record

    def _create(self, key: _Key) -> _Record:
        record = self._records[key] = _Record()
        return record

    def _prune(self, record: _Record, now: float) -> None:
        while record.failures and record.failures[0] <= now - self._window:
            record.failures.popleft()

    def _evict(self, now: float) -> None:
        """Drop idle records from the least recently used end, then enforce the cap."""
        while self._records:
            key, record = next(iter(self._records.items()))
            self._prune(record, now)
            idle = not record.failures and not record.in_flight and record.locked_until <= now
            if not idle:
                break
            del self._records[key]
        while len(self._records) > self._max_keys:
            self._records.popitem(last=False)
