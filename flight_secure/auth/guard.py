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

The counts live in a :class:`~flight_secure.auth.counters.LoginCounters` store:
by default this process's memory (:class:`~flight_secure.auth.counters.MemoryLoginCounters`);
given one that several servers share (:mod:`flight_secure.auth.redis_counters`),
the limits hold for all of them together: a guesser spreading guesses over N
servers gets no more checks than against one. When the store cannot be reached,
a check is refused at once (``"unavailable"``) and never runs: the limits are
never silently relaxed to those of one server.

At most ``max_concurrent_checks`` checks run at once, in the guard's own threads,
so a flood cannot take every CPU; more **wait** for their turn (they are not
refused: a burst of real logins is served in the order it came), and so do checks
that would take a key past its limit while others for it are still running, so
no parallel burst gets more guesses than the limits allow. A wait ends at the
caller's ``timeout`` (``"timeout"``); beyond ``max_waiting`` waiting checks, more
are refused at once (``"busy"``). A refusal while locked out says when to retry
(``retry_after``). In memory, old failures are pruned and at most
``max_tracked_keys`` keys are tracked (least recently used dropped first).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Literal

from flight_secure.auth.counters import (
    KINDS,
    CountersUnavailable,
    Limits,
    LoginCounters,
    MemoryLoginCounters,
)

__all__ = ["LoginDecision", "LoginGuard"]

log = logging.getLogger("flight_secure.auth.guard")

Reason = Literal["ok", "bad_credentials", "throttled", "busy", "timeout", "unavailable"]


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


class LoginGuard:
    """Bounded, throttled execution of credential checks. Thread-safe.

    ``counters`` is the store of failures, lockouts and trust (default: a new
    :class:`~flight_secure.auth.counters.MemoryLoginCounters` of this guard's own,
    whose monotonic time source is ``clock``, injectable for tests, and whose size
    is capped at ``max_tracked_keys``; both are the store's business when
    ``counters`` is given, and giving them too is a ValueError). :meth:`check`'s
    ``timeout`` is always real time. Call :meth:`close` when done to stop the
    worker threads; a given store is left open for its owner to close.
    """

    def __init__(self, max_concurrent_checks: int = 2, max_waiting: int = 1024,
                 failure_window: float = 60.0, max_failures_per_user: int = 5,
                 max_failures_per_network: int = 20, max_failures_per_user_total: int = 50,
                 lockout: float = 30.0, trusted_for: float = 7 * 24 * 3600.0,
                 clock: Callable[[], float] | None = None,
                 max_tracked_keys: int | None = None,
                 counters: LoginCounters | None = None) -> None:
        if max_concurrent_checks < 1 or max_waiting < 0:
            raise ValueError("max_concurrent_checks must be >= 1 and max_waiting >= 0")
        limits = (max_failures_per_user, max_failures_per_network, max_failures_per_user_total)
        if min(*limits, 1 if max_tracked_keys is None else max_tracked_keys) < 1:
            raise ValueError("failure limits and max_tracked_keys must be >= 1")
        if failure_window <= 0 or lockout < 0 or trusted_for < 0:
            raise ValueError("failure_window must be > 0, lockout and trusted_for >= 0")
        if counters is not None and (clock is not None or max_tracked_keys is not None):
            raise ValueError("clock and max_tracked_keys configure the in-memory counters; "
                             "a given counters store has its own")
        if counters is None:
            counters = MemoryLoginCounters(clock or time.monotonic,
                                           100_000 if max_tracked_keys is None
                                           else max_tracked_keys)
        self._counters = counters
        self._limits = Limits(dict(zip(KINDS, limits)), failure_window, lockout, trusted_for)
        self._capacity = max_concurrent_checks + max_waiting
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._pending = 0
        self._finished = 0  # checks ended so far: a waiter wakes when it moves
        self._closed = False
        self._unavailable = False
        self._pool = ThreadPoolExecutor(max_concurrent_checks, thread_name_prefix="login-check")

    @property
    def counters(self) -> LoginCounters:
        """The store of failures, lockouts and trust this guard counts in."""
        return self._counters

    @property
    def pending_checks(self) -> int:
        """Checks accepted and not yet finished (running plus queued)."""
        with self._lock:
            return self._pending

    @property
    def tracked_keys(self) -> int:
        """Number of (user, network), network and user keys currently tracked."""
        return self._counters.tracked_keys()

    def check(self, user: str, network: str, verify: Callable[[], bool],
              timeout: float | None = 8.0) -> LoginDecision:
        """Run ``verify()`` for ``user`` logging in from ``network``, unless refused first.

        Refused without running ``verify`` when a key is locked out (``throttled``,
        with ``retry_after``), too many checks wait already (``busy``), or the
        counters cannot be reached (``unavailable``). Waits, up to ``timeout``
        seconds in all (None: for ever), while a key's running checks (on every
        server sharing the counters) already use up its failure budget, and for a
        free checking thread; then for the result: ``ok`` or ``bad_credentials``.
        On ``timeout`` a check not yet started never runs; a running one finishes
        and its outcome counts. A success clears the (user, network) failures and
        trusts that network for the user; failures of the network and of the user
        stay. An exception raised by ``verify`` propagates and is not counted.
        Raises RuntimeError after :meth:`close`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("LoginGuard is closed")
                room = self._pending < self._capacity
                if room:  # taken now, given back below if the check does not start
                    self._pending += 1
                seen = self._finished
            try:
                admission = self._counters.admit(user, network, self._limits, reserve=room)
            except CountersUnavailable as exc:
                self._give_back(room)
                self._note_unavailable(exc)
                return LoginDecision(False, "unavailable")
            self._note_available()
            if admission.ticket is not None:
                ticket = admission.ticket
                break
            self._give_back(room)
            if admission.retry_after is not None:
                return LoginDecision(False, "throttled", admission.retry_after)
            if not room:
                return LoginDecision(False, "busy")
            if not self._wait_for_budget(seen, deadline):
                return LoginDecision(False, "timeout")
        try:
            future = self._pool.submit(self._run, user, network, ticket, verify)
        except RuntimeError:  # closed meanwhile
            self._finish(user, network, ticket, None)
            raise RuntimeError("LoginGuard is closed") from None
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            ok = future.result(remaining)
        except FutureTimeout:
            if future.cancel():  # never started: release its slot ourselves
                self._finish(user, network, ticket, None)
            return LoginDecision(False, "timeout")
        except CancelledError:  # cancelled by close()
            self._finish(user, network, ticket, None)
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

    def _give_back(self, slot: bool) -> None:
        """Return a slot taken for a check that does not start."""
        if slot:
            with self._lock:
                self._pending -= 1

    def _wait_for_budget(self, seen: int, deadline: float | None) -> bool:
        """Wait until a check ends here (or, with shared counters, until it is time to
        ask again); False when the deadline has passed first."""
        poll = self._counters.poll_interval
        with self._changed:
            while self._finished == seen and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                bounds = [bound for bound in (remaining, poll) if bound is not None]
                if not self._changed.wait(min(bounds, default=None)) and poll is not None:
                    break
        return True

    def _run(self, user: str, network: str, ticket: str, verify: Callable[[], bool]) -> bool:
        outcome: bool | None = None
        try:
            outcome = bool(verify())
            return outcome
        finally:
            self._finish(user, network, ticket, outcome)  # recorded before the caller sees it

    def _finish(self, user: str, network: str, ticket: str, outcome: bool | None) -> None:
        """Record the outcome of one check (None: no outcome) and release its slots."""
        try:
            self._counters.release(user, network, self._limits, ticket, outcome)
        except CountersUnavailable as exc:
            self._note_unavailable(exc)
        finally:
            with self._changed:
                self._pending -= 1
                self._finished += 1
                self._changed.notify_all()

    def _note_unavailable(self, exc: CountersUnavailable) -> None:
        with self._lock:
            first, self._unavailable = not self._unavailable, True
        if first:
            log.warning("login counters unavailable, refusing password checks: %s", exc)

    def _note_available(self) -> None:
        if self._unavailable:
            with self._lock:
                recovered, self._unavailable = self._unavailable, False
            if recovered:
                log.warning("login counters reachable again; password checks resume")
