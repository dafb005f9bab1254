"""How ``serve`` stops: SIGINT or SIGTERM starts a drain, a further one ends it at once.

:class:`StopSignals` turns SIGINT and SIGTERM into an event the serving loop waits on.
:func:`drain` has the engine refuse new calls at once, gives the calls in flight up to
``seconds`` to finish, and then cancels what is left (a cancelled upload removes its
temporary file and is logged by the server as aborted); a further signal cancels them
at once. pyarrow.flight's engine cancels only the calls whose handlers check for it;
:func:`exit_leaving_calls` ends the process without the others.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import NoReturn, Protocol

log = logging.getLogger("flight_secure.serve")


class Stoppable(Protocol):
    """A running server of either engine."""

    def shutdown(self, grace: float | None) -> None:
        """Refuse new calls; cancel those in flight after ``grace`` seconds."""


class StopSignals:
    """SIGINT and SIGTERM, caught from construction until :meth:`restore`.

    Construct it in the main thread. The OS delivers a signal to any thread of the
    process, often one of the server's; Python then runs the handler in the main
    thread only when that thread next runs Python code, so :meth:`wait` waits in
    slices of :data:`POLL` seconds and a signal ends it within one slice.
    """

    #: Seconds a wait may miss a signal that another thread received.
    POLL = 0.1

    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous = {sig: signal.signal(sig, self._received)
                          for sig in (signal.SIGINT, signal.SIGTERM)}

    def _received(self, *_: object) -> None:
        self._event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True when a signal (or :meth:`wake`) came since the last wait that returned
        True; False after ``timeout`` seconds without one (None: no time limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = self.POLL if deadline is None else deadline - time.monotonic()
            if self._event.wait(max(0.0, min(self.POLL, left))):
                self._event.clear()
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def wake(self) -> None:
        """End a :meth:`wait` as a signal would."""
        self._event.set()

    def restore(self) -> None:
        """Put back the handlers that were there before."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


#: Seconds a stop at once waits for the drain's own shutdown call to return.
SETTLE_WAIT = 10.0


def drain(server: Stoppable, seconds: float, signals: StopSignals) -> None:
    """Stop ``server``: new calls refused now, calls in flight cancelled after ``seconds``
    or at the next signal, whichever comes first. Returns once it has stopped."""
    drained = threading.Event()

    def shut_down() -> None:
        server.shutdown(seconds)
        drained.set()
        signals.wake()

    threading.Thread(target=shut_down, name="serve-drain", daemon=True).start()
    print(f"stopping: new calls are refused; calls in flight have up to {seconds:g} s to "
          "finish (Ctrl-C again to stop at once)", flush=True)
    log.info("draining for up to %g s", seconds)
    signals.wait()
    if not drained.is_set():
        print("stopping at once: calls in flight are cancelled", flush=True)
        server.shutdown(0)
        # The drain's own shutdown returns with this one (and wakes ``signals``); the
        # process must not exit while it still runs (grpcio's threads torn down
        # mid-call can crash it). A further signal ends the wait.
        if not drained.is_set():
            signals.wait(SETTLE_WAIT)


def exit_leaving_calls() -> NoReturn:
    """End the process now, with status 0, cutting off the calls still in flight.

    For the calls pyarrow.flight's engine runs without Python (a download under way,
    an upload whose client went silent): nothing can cancel them, and pyarrow's
    shutdown, which runs again at interpreter exit, would wait for them for ever.
    Logs and output are flushed first.
    """
    log.warning("calls that pyarrow's engine could not cancel were still running; they "
                "are cut off as the server exits")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no atexit: pyarrow's exit-time shutdown would wait for ever
