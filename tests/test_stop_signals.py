"""Specification of StopSignals, the signals ``flight-secure serve`` stops on.

A process-wide signal is delivered to any one of its threads; the servers' own
threads (grpcio's, pyarrow's) often take it. Python then runs the handler in the
main thread only once that thread runs Python code again, so a wait must not
sleep through such a signal.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from flight_secure.cli.stopping import StopSignals

#: Seconds after which the signal is sent: the main thread is waiting by then.
SEND_AFTER = 0.2
#: Seconds a signal may take to end a wait (the machine is shared and slow).
PROMPT = 2.0
#: Seconds after which a wait that missed the signal is ended anyway.
FALLBACK = 10.0


def signal_from_another_thread(sig: signal.Signals) -> None:
    """Deliver ``sig`` to a thread other than the main one, as the OS may."""
    sender = threading.Thread(target=lambda: signal.pthread_kill(threading.get_ident(), sig))
    sender.start()
    sender.join()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda sig: sig.name)
def test_a_signal_another_thread_receives_ends_an_endless_wait_at_once(
        sig: signal.Signals) -> None:
    signals = StopSignals()
    sender = threading.Timer(SEND_AFTER, signal_from_another_thread, [sig])
    fallback = threading.Timer(FALLBACK, signals.wake)
    began = time.monotonic()
    sender.start()
    fallback.start()
    try:
        assert signals.wait()
        assert time.monotonic() - began < SEND_AFTER + PROMPT
    finally:
        sender.cancel()
        fallback.cancel()
        signals.restore()


def test_a_wait_with_a_timeout_and_no_signal_returns_false_after_it() -> None:
    signals = StopSignals()
    try:
        began = time.monotonic()
        assert not signals.wait(0.3)
        assert time.monotonic() - began >= 0.3
    finally:
        signals.restore()


def test_a_signal_is_reported_by_one_wait_only() -> None:
    signals = StopSignals()
    try:
        signal_from_another_thread(signal.SIGTERM)
        assert signals.wait(FALLBACK)
        assert not signals.wait(0.2)
    finally:
        signals.restore()
