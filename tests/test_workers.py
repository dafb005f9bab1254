"""DaemonThreadPool: the handlers' thread pool, on threads that never keep a process alive."""

from __future__ import annotations

import threading

import pytest

from flight_secure.workers import DaemonThreadPool

WAIT = 5.0


def test_runs_calls_and_returns_their_results_and_errors() -> None:
    pool = DaemonThreadPool(2, "test")
    try:
        assert pool.submit(lambda a, b: a + b, 2, b=3).result(WAIT) == 5
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(WAIT)
    finally:
        pool.shutdown()


def test_runs_at_most_max_workers_calls_at_once_and_queues_the_rest() -> None:
    pool = DaemonThreadPool(2, "test")
    release = threading.Event()
    running = threading.Semaphore(0)

    def block() -> str:
        running.release()
        release.wait(WAIT)
        return threading.current_thread().name

    futures = [pool.submit(block) for _ in range(5)]
    try:
        assert running.acquire(timeout=WAIT) and running.acquire(timeout=WAIT)
        assert not running.acquire(timeout=0.2)  # the third waits for a thread
        release.set()
        names = {future.result(WAIT) for future in futures}
        assert names <= {"test_0", "test_1"}
    finally:
        release.set()
        pool.shutdown()


def test_its_threads_are_daemon_threads() -> None:
    pool = DaemonThreadPool(1, "test")
    try:
        assert pool.submit(lambda: threading.current_thread().daemon).result(WAIT) is True
    finally:
        pool.shutdown()


def test_shutdown_refuses_new_calls_and_can_cancel_waiting_ones() -> None:
    pool = DaemonThreadPool(1, "test")
    release = threading.Event()
    running = pool.submit(release.wait, WAIT)
    waiting = pool.submit(lambda: "never run")
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert running.result(WAIT) is True
    assert waiting.cancelled()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: None)


def test_max_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_workers"):
        DaemonThreadPool(0, "test")


def test_wait_idle_waits_for_running_and_queued_calls() -> None:
    pool = DaemonThreadPool(1, "test")
    release = threading.Event()
    try:
        pool.submit(release.wait, WAIT)
        pool.submit(lambda: None)
        assert pool.wait_idle(0.1) is False
        release.set()
        assert pool.wait_idle(WAIT) is True
    finally:
        release.set()
        pool.shutdown()
