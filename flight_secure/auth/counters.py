"""Where a :class:`~flight_secure.auth.guard.LoginGuard` keeps its counts.

A guard counts, under three keys per login (``("account", user, network)``,
``("network", network)``, ``("user", user)``), the failed checks of a sliding
window, the lockouts, the networks a user is trusted from, and the checks in
flight. :class:`LoginCounters` is that store; the guard asks it two things:

* :meth:`~LoginCounters.admit`: may a check start now? The answer is a lockout
  (with the seconds it has left), "over budget" (the checks in flight would take
  a key past its limit: wait and ask again), or a reservation of one check's
  share of every key's budget;
* :meth:`~LoginCounters.release`: the reserved check has ended with an outcome
  (True: right password, False: wrong, None: no outcome).

Each call is atomic, so guards sharing one store (several servers) never give a
burst more checks than the limits allow. :class:`MemoryLoginCounters` is the
store of one process (the default); :mod:`flight_secure.auth.redis_counters`
holds one that many processes share. A store that cannot be reached raises
:class:`CountersUnavailable`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Admission", "CountersUnavailable", "Limits", "LoginCounters",
           "MemoryLoginCounters", "login_keys"]

Kind = Literal["account", "network", "user"]
Key = tuple[str, ...]  # ("account", user, network), ("network", network), ("user", user)
KINDS: tuple[Kind, ...] = ("account", "network", "user")


def login_keys(user: str, network: str) -> tuple[Key, Key, Key]:
    """The three keys a login of ``user`` from ``network`` is counted under, in
    :data:`KINDS` order."""
    return ("account", user, network), ("network", network), ("user", user)


class CountersUnavailable(Exception):
    """The store of counts cannot be reached; its message says why (never a secret)."""


@dataclass(frozen=True)
class Limits:
    """A guard's rules, as a store applies them.

    ``failures`` is the failure limit per kind of key; ``failure_window`` the
    seconds a failure counts; ``lockout`` the seconds a key that reached its limit
    stays locked; ``trusted_for`` the seconds a network stays trusted for a user
    after a login from it (a trusted network is not limited by the user's own key).
    """

    failures: dict[str, int]
    failure_window: float
    lockout: float
    trusted_for: float


@dataclass(frozen=True)
class Admission:
    """The answer of :meth:`LoginCounters.admit`.

    ``retry_after``: the check is refused, locked out for that many more seconds.
    Otherwise ``ticket`` is the reservation to give back to
    :meth:`LoginCounters.release`, or None when the check may not start yet (over
    budget, or no reservation was asked for).
    """

    retry_after: float | None = None
    ticket: str | None = None


class LoginCounters(ABC):
    """A store of login counts shared by the guards that use it. Thread-safe."""

    #: Seconds between two admissions of a check that waits for budget, or None
    #: when the only checks that can free budget are this process's (then the
    #: guard waits until one of its own checks ends).
    poll_interval: float | None = None

    @abstractmethod
    def admit(self, user: str, network: str, limits: Limits, *, reserve: bool) -> Admission:
        """Whether a check of ``user`` from ``network`` may start now, atomically.

        Refused (``retry_after``) when a key that applies is locked out; the user's
        own key does not apply to a network trusted for the user. Else, with
        ``reserve``, when no applying key's failures plus checks in flight reach its
        limit, one check is reserved on all three keys (``ticket``). Refusals never
        create entries. Raises :class:`CountersUnavailable`.
        """

    @abstractmethod
    def release(self, user: str, network: str, limits: Limits, ticket: str,
                outcome: bool | None) -> None:
        """End the reserved check ``ticket`` with ``outcome``, atomically.

        True clears the (user, network) failures and trusts the network for the
        user for ``trusted_for``; False adds a failure to each key and locks a key
        that reaches its limit for ``lockout`` (clearing its failures); None only
        frees the reservation. Raises :class:`CountersUnavailable`.
        """

    @abstractmethod
    def tracked_keys(self) -> int:
        """How many keys hold counts now."""

    def close(self) -> None:  # noqa: B027 (a hook with a default, not abstract)
        """Release connections or threads the store holds (default: nothing)."""


@dataclass
class _Record:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = float("-inf")
    in_flight: int = 0
    trusted_until: float = float("-inf")


class MemoryLoginCounters(LoginCounters):
    """The counts of one process, in memory.

    ``clock`` is the monotonic time source of windows, lockouts and trust
    (injectable for tests). Memory stays bounded: old failures are pruned, idle
    keys dropped, and at most ``max_tracked_keys`` keys are kept (least recently
    used dropped first). Tickets are not checked: a release must follow an
    admission that reserved.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_tracked_keys: int = 100_000) -> None:
        if max_tracked_keys < 1:
            raise ValueError("max_tracked_keys must be >= 1")
        self._clock = clock
        self._max_keys = max_tracked_keys
        self._lock = threading.Lock()
        self._records: OrderedDict[Key, _Record] = OrderedDict()

    def admit(self, user: str, network: str, limits: Limits, *, reserve: bool) -> Admission:
        keys = login_keys(user, network)
        with self._lock:
            now, window = self._clock(), limits.failure_window
            applying = self._applying(keys, now, window)
            wait = max((r.locked_until for _, r in applying), default=float("-inf")) - now
            if wait > 0:
                return Admission(retry_after=wait)
            if not reserve or any(len(r.failures) + r.in_flight >= limits.failures[kind]
                                  for kind, r in applying):
                return Admission()
            for key in keys:
                (self._lookup(key, now, window) or self._create(key)).in_flight += 1
            self._evict(now, window)
            return Admission(ticket="reserved")

    def release(self, user: str, network: str, limits: Limits, ticket: str,
                outcome: bool | None) -> None:
        with self._lock:
            now, window = self._clock(), limits.failure_window
            for key in login_keys(user, network):
                record = self._lookup(key, now, window)
                if record is None:  # evicted meanwhile; only a failure needs a record
                    if outcome is not False:
                        continue
                    record = self._create(key)
                else:
                    record.in_flight = max(0, record.in_flight - 1)
                if outcome is True and key[0] == "account":
                    record.failures.clear()
                    record.trusted_until = now + limits.trusted_for
                elif outcome is False:
                    record.failures.append(now)
                    if len(record.failures) >= limits.failures[key[0]]:
                        record.locked_until = now + limits.lockout
                        record.failures.clear()
            self._evict(now, window)

    def tracked_keys(self) -> int:
        with self._lock:
            return len(self._records)

    # ---------------------------------------------------------------- internals

    def _applying(self, keys: tuple[Key, ...], now: float,
                  window: float) -> list[tuple[Kind, _Record]]:
        """The records that limit a check for ``keys`` now, by kind; lock held.

        The user's own record does not limit a network the user logged in from
        lately. Looks up without creating: refused requests must not grow (or
        churn) the table.
        """
        found = [(kind, self._lookup(key, now, window)) for kind, key in zip(KINDS, keys)]
        account = found[0][1]
        trusted = account is not None and account.trusted_until > now
        return [(kind, record) for kind, record in found
                if record is not None and not (kind == "user" and trusted)]

    def _lookup(self, key: Key, now: float, window: float) -> _Record | None:
        """The record for ``key``, pruned and marked recently used, if any; lock held."""
        record = self._records.get(key)
        if record is not None:
            self._records.move_to_end(key)
            _prune(record, now, window)
        return record

    def _create(self, key: Key) -> _Record:
        record = self._records[key] = _Record()
        return record

    def _evict(self, now: float, window: float) -> None:
        """Drop idle records from the least recently used end, then enforce the cap."""
        while self._records:
            key, record = next(iter(self._records.items()))
            _prune(record, now, window)
            idle = (not record.failures and not record.in_flight
                    and record.locked_until <= now and record.trusted_until <= now)
            if not idle:
                break
            del self._records[key]
        while len(self._records) > self._max_keys:
            self._records.popitem(last=False)


def _prune(record: _Record, now: float, window: float) -> None:
    """Forget the failures of ``record`` older than ``window`` seconds."""
    while record.failures and record.failures[0] <= now - window:
        record.failures.popleft()
