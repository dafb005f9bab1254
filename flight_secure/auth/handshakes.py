"""How many Handshakes may be in progress, so that no client can block the logins of others.

A Handshake is *silent* from its start until its credentials arrive: at once when
its headers carry them (``authorization``), else with its first message. A real
client sends them right away; a silent handshake costs the server a thread and
proves nothing. So:

* a handshake still silent after ``idle_after`` seconds is *idle*. At most
  ``max_idle_per_network`` idle handshakes may be in progress per client network
  (:func:`~flight_secure.auth.network.peer_network`: an IPv4 address or an IPv6
  /64); one more is refused then, with RESOURCE_EXHAUSTED. Counting only from
  ``idle_after`` on, rather than from the start, is what lets a burst of real
  logins from one network through: under load their first message can take tens
  of milliseconds to be read. The engine ends an idle handshake that stays silent
  until its silence timeout;
* a handshake takes one of ``max_checking`` slots only once its credentials
  arrived, for the check itself. When every slot is taken it *waits* for one (a
  burst of real logins is served, not refused), until its deadline.

So idle handshakes from one network can neither take the slots nor keep more than
``max_idle_per_network`` threads past ``idle_after``, and the logins of every
other network go through.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from flight_secure.auth.audit import audit_event
from flight_secure.auth.base import AUTHORIZATION_HEADER, CallCredentials
from flight_secure.auth.network import peer_network
from flight_secure.errors import FlightResourceExhaustedError, FlightTimedOutError

__all__ = ["IDLE_AFTER", "HandshakeAdmission", "HandshakeLimits"]

#: Seconds of silence after which a handshake counts as idle. A real client's first
#: message was read within 0.1 s in a storm of 256 logins on a loaded 2-CPU machine.
IDLE_AFTER = 0.5


class HandshakeLimits:
    """The limits of one server's Handshakes; :meth:`begin` admits one. Thread-safe."""

    def __init__(self, max_checking: int, max_idle_per_network: int,
                 idle_after: float = IDLE_AFTER) -> None:
        if max_checking < 1 or max_idle_per_network < 1 or idle_after <= 0:
            raise ValueError("max_checking and max_idle_per_network must be 1 or more, "
                             "idle_after above 0")
        self.max_idle_per_network = max_idle_per_network
        self.idle_after = idle_after
        self._slots = threading.BoundedSemaphore(max_checking)
        self._lock = threading.Lock()
        self._idle: Counter[str] = Counter()

    def begin(self, call: CallCredentials, deadline: float) -> HandshakeAdmission:
        """Admit the Handshake ``call``, to finish by ``deadline`` (``time.monotonic()``).

        A call whose headers carry credentials is never silent.
        """
        silent = call.header(AUTHORIZATION_HEADER) is None
        return HandshakeAdmission(self, call, deadline, silent=silent)

    def _enter_idle(self, network: str) -> bool:
        with self._lock:
            if self._idle[network] >= self.max_idle_per_network:
                return False
            self._idle[network] += 1
            return True

    def _leave_idle(self, network: str) -> None:
        with self._lock:
            self._idle[network] -= 1
            if not self._idle[network]:
                del self._idle[network]


class HandshakeAdmission:
    """One admitted Handshake: silent until :meth:`credentials_arrived`, then holding a
    checking slot until :meth:`close`. Made by :meth:`HandshakeLimits.begin`."""

    def __init__(self, limits: HandshakeLimits, call: CallCredentials, deadline: float, *,
                 silent: bool) -> None:
        self._limits, self._call, self._deadline = limits, call, deadline
        self._lock = threading.Lock()
        self._silent = silent
        self._idle = False  # counted among its network's idle handshakes
        self._arrived = False
        self._holds_slot = False
        self._closed = False

    @property
    def has_credentials(self) -> bool:
        """Whether credentials arrived (the handshake is not silent)."""
        return not self._silent

    @property
    def idle(self) -> bool:
        """Whether the handshake is silent and counted as idle (see :meth:`went_idle`)."""
        return self._idle

    def went_idle(self) -> None:
        """Count this still-silent handshake among its network's idle ones.

        Raises FlightResourceExhaustedError (audited) when the network has
        ``max_idle_per_network`` idle handshakes already. Idempotent; does nothing
        once credentials arrived.
        """
        with self._lock:
            if not self._silent or self._idle or self._closed:
                return
            network = peer_network(self._call.peer)
            self._idle = self._limits._enter_idle(network)
            if self._idle:
                return
        audit_event(logging.WARNING, "handshake refused", call=self._call,
                    reason="too many idle handshakes from this network")
        raise FlightResourceExhaustedError(
            "too many handshakes without credentials from your network (at most "
            f"{self._limits.max_idle_per_network} may wait); send credentials when you "
            "open one"
        )

    def credentials_arrived(self) -> None:
        """Stop being silent and wait for a checking slot, until the deadline.

        Idempotent. Raises FlightTimedOutError when no slot came free in time.
        """
        with self._lock:
            if self._arrived or self._closed:
                return
            self._arrived = True
            self._stop_silence()
        if not self._limits._slots.acquire(timeout=max(0.0, self._deadline - time.monotonic())):
            raise FlightTimedOutError(
                "the server is busy checking other logins and none finished before this "
                "handshake's deadline; retry in a moment"
            )
        with self._lock:
            if self._closed:
                self._limits._slots.release()
            else:
                self._holds_slot = True

    def close(self) -> None:
        """Release what this handshake holds (its idle count or its slot). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop_silence()
            if self._holds_slot:
                self._limits._slots.release()

    def _stop_silence(self) -> None:
        """Leave the silent state (and the idle count); lock held."""
        self._silent = False
        if self._idle:
            self._idle = False
            self._limits._leave_idle(peer_network(self._call.peer))
