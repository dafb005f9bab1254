"""How many Handshakes may be in progress, so that no client can block the logins of others.

A Handshake is *silent* from its start until its credentials arrive: at once when
its headers carry them (``authorization``), else with its first message. A real
client sends them right away; a silent handshake costs the server a thread and
proves nothing. So:

* a handshake still silent after ``idle_after`` seconds is *idle*. At most
  ``max_idle_per_network`` idle handshakes may be in progress per client network
  (:func:`~flight_secure.auth.network.peer_network`: an IPv4 address or an IPv6
  /64): a handshake that turns idle while that many older ones of its network are
  silent is refused, with RESOURCE_EXHAUSTED (the newest go first). Judging only
  at ``idle_after``, rather than at the start, is what lets a burst of real
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

from flight_secure.auth.audit import audit_event
from flight_secure.auth.base import AUTHORIZATION_HEADER, CallCredentials
from flight_secure.auth.network import peer_network
from flight_secure.errors import FlightResourceExhaustedError, FlightTimedOutError

__all__ = ["IDLE_AFTER", "HandshakeAdmission", "HandshakeLimits"]

#: Seconds of silence after which a handshake counts as idle. A real client's first
#: message was read within 0.1 s in a storm of 256 logins on a loaded 2-CPU machine;
#: four such storms at once took a few past 0.5 s.
IDLE_AFTER = 1.0


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
        self._silent: dict[str, list[HandshakeAdmission]] = {}  # per network, oldest first

    def begin(self, call: CallCredentials, deadline: float) -> HandshakeAdmission:
        """Admit the Handshake ``call``, to finish by ``deadline`` (``time.monotonic()``).

        A call whose headers carry credentials is never silent.
        """
        if call.header(AUTHORIZATION_HEADER) is not None:
            return HandshakeAdmission(self, call, deadline, network=None)
        network = peer_network(call.peer)
        admission = HandshakeAdmission(self, call, deadline, network=network)
        with self._lock:
            self._silent.setdefault(network, []).append(admission)
        return admission

    def _older_silent(self, admission: HandshakeAdmission, network: str) -> int:
        """How many silent handshakes of ``network`` began before ``admission``."""
        with self._lock:
            return self._silent[network].index(admission)

    def _spoke(self, admission: HandshakeAdmission, network: str) -> None:
        with self._lock:
            silent = self._silent[network]
            silent.remove(admission)
            if not silent:
                del self._silent[network]


class HandshakeAdmission:
    """One admitted Handshake: silent until :meth:`credentials_arrived`, then holding a
    checking slot until :meth:`close`. Made by :meth:`HandshakeLimits.begin`."""

    def __init__(self, limits: HandshakeLimits, call: CallCredentials, deadline: float, *,
                 network: str | None) -> None:
        self._limits, self._call, self._deadline = limits, call, deadline
        self._lock = threading.Lock()
        self._network = network  # while silent: the network it is counted under
        self._idle = False
        self._arrived = False
        self._holds_slot = False
        self._closed = False

    @property
    def has_credentials(self) -> bool:
        """Whether credentials arrived (the handshake is not silent)."""
        return self._network is None

    def went_idle(self) -> None:
        """Judge this handshake, silent for ``idle_after``: let it stay idle, or refuse it.

        Raises FlightResourceExhaustedError (audited) when ``max_idle_per_network``
        older handshakes of its network are silent. Idempotent; does nothing once
        credentials arrived.
        """
        with self._lock:
            network = self._network
            if network is None or self._idle or self._closed:
                return
            self._idle = self._limits._older_silent(self, network) < \
                self._limits.max_idle_per_network
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
        """Leave the silent state (and its network's count); lock held."""
        if self._network is not None:
            self._limits._spoke(self, self._network)
            self._network = None
