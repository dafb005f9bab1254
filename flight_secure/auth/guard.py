"""Protection of expensive password checks against guessing floods, without lockouts
that a stranger can aim at someone else.

:class:`LoginGuard` sits in front of a slow credential check (bcrypt). It counts
failed checks in a sliding ``failure_window`` under three keys and locks each
for ``lockout`` seconds when it reaches its limit:

* **(user, network)** — ``max_failures_per_user`` wrong passwords for one user
  from one network lock that user out *of that network only*: guessing alice's
  password from one place cannot keep her out from another;
* **network** — ``max_failures_per_network`` failures from one network, whatever
  the user names, lock that network out (a sprayer moving from name to name);
* **user** — ``max_failures_per_user_total`` failures for one user, from every
  network together (a guesser spread over many networks), lock that user out of
  every network *that has not logged in as that user* in the last ``trusted_for``
  seconds: the user's own usual networks keep working.

"Network" is the key :func:`~flight_secure.auth.network.peer_network` gives: an
IPv4 address, or an IPv6 /64 (pass it, not a socket address).

At most ``max_concurrent_checks`` checks run at once, in the guard's own threads,
so a flood cannot take every CPU; more **wait** for their turn (they are not
refused: a burst of real logins is served in the order it came), and so do checks
that would take a key past its limit while others for it are still running, so
no parallel burst gets more guesses than the limits allow. A wait ends at the
caller's ``timeout`` (``"timeout"``); beyond ``max_waiting`` waiting checks, more
are refused at once (``"busy"``). A refusal while locked out says when to retry
(``retry_after``). Memory stays bounded: old failures are pruned and at most
``max_tracked_keys`` keys are tracked (least recently used dropped first).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["LoginDecision", "LoginGuard"]

Reason = Literal["ok", "bad_credentials", "throttled", "busy", "timeout"]


@dataclass(frozen=True)
class LoginDecision:
    """Outcome of :meth:`LoginGuard.check`.

    ``allowed`` is True only for reason ``"ok"``. ``retry_after`` is the number of
    seconds until the lockout that refused the check ends (``"throttled"`` only),
    otherwise None.
    """

    allowed: bool
    reason: Reason
    retry_after: float | None = None

    @property
    def retry_after_seconds(self) -> int | None:
        """``retry_after`` rounded up to whole seconds (as a ``retry-after`` header says it)."""
        return None if self.retry_after is None else max(1, math.ceil(self.retry_after))


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = float("-inf")
    in_flight: int = 0
    trusted_until: float = float("-inf")


_Key = tuple[str, ...]  # ("account", user, network), ("network", network), ("user", user)


class LoginGuard:
    """Bounded, throttled execution of credential checks. Thread-safe.

    ``clock`` is the monotonic time source of failure windows, lockouts and trust
    (injectable for tests); :meth:`check`'s ``timeout`` is always real time. Call
    :meth:`close` when done to stop the worker threads.
    """

    def __init__(self, max_concurrent_checks: int = 2, max_waiting: int = 1024,
                 failure_window: float = 60.0, max_failures_per_user: int = 5,
                 max_failures_per_network: int = 20, max_failures_per_user_total: int = 50,
                 lockout: float = 30.0, trusted_for: float = 7 * 24 * 3600.0,
                 clock: Callable[[], float] = time.monotonic,
                 max_tracked_keys: int = 100_000) -> None:
        if max_concurrent_checks < 1 or max_waiting < 0:
            raise ValueError("max_concurrent_checks must be >= 1 and max_waiting >= 0")
        limits = (max_failures_per_user, max_failures_per_network, max_failures_per_user_total)
        if min(*limits, max_tracked_keys) < 1:
            raise ValueError("failure limits and max_tracked_keys must be >= 1")
        if failure_window <= 0 or lockout < 0 or trusted_for < 0:
            raise ValueError("failure_window must be > 0, lockout and trusted_for >= 0")
        self._capacity = max_concurrent_checks + max_waiting
        self._window, self._lockout, self._clock = failure_window, lockout, clock
        self._trusted_for = trusted_for
        self._limits = dict(zip(("account", "network", "user"), limits))
        self._max_keys = max_tracked_keys
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
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
        """Number of (user, network), network and user keys currently tracked."""
        with self._lock:
            return len(self._records)

    def check(self, user: str, network: str, verify: Callable[[], bool],
              timeout: float | None = 8.0) -> LoginDecision:
        """Run ``verify()`` for ``user`` logging in from ``network``, unless refused first.

        Refused without running ``verify`` when a key is locked out (``throttled``,
        with ``retry_after``) or too many checks wait already (``busy``). Waits,
        up to ``timeout`` seconds in all (None: for ever), while a key's running
        checks already use up its failure budget, and for a free checking thread;
        then for the result: ``ok`` or ``bad_credentials``. On ``timeout`` a
        check not yet started never runs; a running one finishes and its outcome
        counts. A success clears the (user, network) failures and trusts that
        network for the user; failures of the network and of the user stay. An
        exception raised by ``verify`` propagates and is not counted. Raises
        RuntimeError after :meth:`close`.
        """
        keys = (("account", user, network), ("network", network), ("user", user))
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                if self._closed:
                    raise RuntimeError("LoginGuard is closed")
                now = self._clock()
                refusal = self._refusal(keys, now)
                if refusal is not None:
                    return refusal
                if self._pending >= self._capacity:
                    return LoginDecision(False, "busy")
                if not self._over_budget(keys, now):
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return LoginDecision(False, "timeout")
                self._changed.wait(remaining)
            self._pending += 1
            for key in keys:
                (self._lookup(key, now) or self._create(key)).in_flight += 1
            self._evict(now)
            future = self._pool.submit(self._run, keys, verify)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            ok = future.result(remaining)
        except FutureTimeout:
            if future.cancel():  # never started: release its slot ourselves
                self._finish(keys, None)
            return LoginDecision(False, "timeout")
        except CancelledError:  # cancelled by close()
            return LoginDecision(False, "busy")
        return LoginDecision(True, "ok") if ok else LoginDecision(False, "bad_credentials")

    def close(self) -> None:
        """Refuse new checks, cancel queued ones and let running ones finish in the background."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> LoginGuard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _applying(self, keys: tuple[_Key, ...], now: float) -> list[tuple[str, _Record]]:
        """The records that limit a check for ``keys`` now, by kind; lock held.

        The user's own record does not limit a network the user logged in from
        lately. Looks up without creating: refused requests must not grow (or
        churn) the table.
        """
        found = [(key[0], self._lookup(key, now)) for key in keys]
        account = found[0][1]
        trusted = account is not None and account.trusted_until > now
        return [(kind, record) for kind, record in found
                if record is not None and not (kind == "user" and trusted)]

    def _refusal(self, keys: tuple[_Key, ...], now: float) -> LoginDecision | None:
        """The lockout refusing a check for ``keys``, if any; lock held."""
        ends = [record.locked_until for _, record in self._applying(keys, now)]
        wait = max(ends, default=float("-inf")) - now
        return LoginDecision(False, "throttled", wait) if wait > 0 else None

    def _over_budget(self, keys: tuple[_Key, ...], now: float) -> bool:
        """Whether a check now could take a key past its failure limit; lock held."""
        return any(len(record.failures) + record.in_flight >= self._limits[kind]
                   for kind, record in self._applying(keys, now))

    def _run(self, keys: tuple[_Key, ...], verify: Callable[[], bool]) -> bool:
        outcome: bool | None = None
        try:
            outcome = bool(verify())
            return outcome
        finally:
            self._finish(keys, outcome)  # recorded before the caller sees the result

    def _finish(self, keys: tuple[_Key, ...], outcome: bool | None) -> None:
        """Release the slots of one check and record its outcome (None: no outcome)."""
        with self._changed:
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
                if outcome is True and key[0] == "account":
                    record.failures.clear()
                    record.trusted_until = now + self._trusted_for
                elif outcome is False:
                    record.failures.append(now)
                    if len(record.failures) >= self._limits[key[0]]:
                        record.locked_until = now + self._lockout
                        record.failures.clear()
            self._evict(now)
            self._changed.notify_all()

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
            idle = (not record.failures and not record.in_flight
                    and record.locked_until <= now and record.trusted_until <= now)
            if not idle:
                break
            del self._records[key]
        while len(self._records) > self._max_keys:
            self._records.popitem(last=False)
