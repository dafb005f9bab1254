"""Specification of LoginGuard: bounded concurrency, waiting, lockouts that cannot be
aimed at someone else, timeouts, bounded memory."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from flight_secure.auth.guard import LoginDecision, LoginGuard


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a state no event announces (a check sitting in the queue)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def fail() -> bool:
    return False


def succeed() -> bool:
    return True


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def guard(clock: FakeClock) -> Iterator[LoginGuard]:
    g = LoginGuard(max_failures_per_user=3, max_failures_per_network=5,
                   max_failures_per_user_total=8, failure_window=60, lockout=30, clock=clock)
    yield g
    g.close()


class Gate:
    """verify() callables that block until released, counting how many run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.lock = threading.Lock()
        self.running = self.peak = self.calls = 0

    def verify(self) -> bool:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        self.started.release()
        try:
            assert self.release.wait(10)
            return True
        finally:
            with self.lock:
                self.running -= 1


def in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(target()))
    thread.start()
    return thread, results


def test_correct_credentials_are_allowed(guard: LoginGuard) -> None:
    assert guard.check("alice", "10.0.0.1", succeed) == LoginDecision(True, "ok", None)


def test_wrong_credentials_are_refused(guard: LoginGuard) -> None:
    assert guard.check("alice", "10.0.0.1", fail) == LoginDecision(False, "bad_credentials")


def test_checks_run_at_most_max_concurrent_at_once() -> None:
    gate = Gate()
    with LoginGuard(max_concurrent_checks=2, max_waiting=10) as g:
        threads = [in_thread(lambda n=n: g.check(f"u{n}", f"p{n}", gate.verify))
                   for n in range(6)]
        assert gate.started.acquire(timeout=5) and gate.started.acquire(timeout=5)
        eventually(lambda: g.pending_checks == 6)
        assert gate.running == 2
        gate.release.set()
        for thread, _ in threads:
            thread.join(5)
    assert gate.peak == 2
    assert [r for _, results in threads for r in results] == [LoginDecision(True, "ok")] * 6


def test_check_is_refused_at_once_as_busy_when_queue_is_full() -> None:
    gate = Gate()
    with LoginGuard(max_concurrent_checks=1, max_waiting=1) as g:
        running, _ = in_thread(lambda: g.check("a", "p1", gate.verify))
        assert gate.started.acquire(timeout=5)
        queued, _ = in_thread(lambda: g.check("b", "p2", gate.verify))
        eventually(lambda: g.pending_checks == 2)
        assert g.check("c", "p3", gate.verify) == LoginDecision(False, "busy")
        gate.release.set()
        running.join(5)
        queued.join(5)
    assert gate.calls == 2


def test_a_user_is_locked_out_of_the_network_that_guessed(guard: LoginGuard) -> None:
    for _ in range(3):
        guard.check("alice", "10.0.0.1", fail)
    ran = []
    decision = guard.check("alice", "10.0.0.1", lambda: ran.append(1) or True)
    assert decision == LoginDecision(False, "throttled", 30.0)
    assert ran == []


def test_guessing_from_one_network_never_locks_the_user_out_of_another(
    guard: LoginGuard, clock: FakeClock
) -> None:
    """5 guesses every 30 s from one network (the lockout's length): the user logs in
    from another network every time."""
    for _ in range(6):
        for _ in range(5):
            guard.check("alice", "::/64", fail)
        assert guard.check("alice", "127.0.0.1", succeed) == LoginDecision(True, "ok")
        clock.now += 30


def test_guessing_from_many_networks_locks_the_user_out_of_new_networks_only(
    guard: LoginGuard
) -> None:
    assert guard.check("alice", "192.0.2.1", succeed).reason == "ok"  # her own network
    for n in range(8):
        guard.check("alice", f"198.51.100.{n}", fail)
    assert guard.check("alice", "203.0.113.9", succeed) == LoginDecision(False, "throttled",
                                                                          30.0)
    assert guard.check("alice", "192.0.2.1", succeed).reason == "ok"
    assert guard.check("bob", "203.0.113.9", succeed).reason == "ok"


def test_throttled_refusals_say_when_to_retry(guard: LoginGuard, clock: FakeClock) -> None:
    for _ in range(3):
        guard.check("alice", "10.0.0.1", fail)
    clock.now += 12.5
    decision = guard.check("alice", "10.0.0.1", succeed)
    assert (decision.retry_after, decision.retry_after_seconds) == (17.5, 18)


def test_a_network_is_locked_out_after_max_failures(guard: LoginGuard) -> None:
    for n in range(5):
        guard.check(f"user{n}", "10.0.0.1", fail)
    assert guard.check("someone-else", "10.0.0.1", succeed).reason == "throttled"
    assert guard.check("someone-else", "10.0.0.2", succeed).reason == "ok"


def test_lockout_is_released_after_lockout_time(guard: LoginGuard, clock: FakeClock) -> None:
    for _ in range(3):
        guard.check("alice", "10.0.0.1", fail)
    clock.now += 20
    assert guard.check("alice", "10.0.0.1", succeed) == LoginDecision(False, "throttled", 10.0)
    clock.now += 10
    assert guard.check("alice", "10.0.0.1", succeed).reason == "ok"


def test_success_clears_the_users_failures_from_that_network(guard: LoginGuard) -> None:
    for _ in range(2):
        guard.check("alice", "10.0.0.1", fail)
    guard.check("alice", "10.0.0.1", succeed)
    for _ in range(2):
        guard.check("alice", "10.0.0.1", fail)
    assert guard.check("alice", "10.0.0.1", succeed).reason == "ok"


def test_success_does_not_clear_the_networks_failures(guard: LoginGuard) -> None:
    for n in range(4):
        guard.check(f"guess{n}", "10.0.0.1", fail)
    guard.check("own-account", "10.0.0.1", succeed)
    guard.check("guess9", "10.0.0.1", fail)
    assert guard.check("own-account", "10.0.0.1", succeed).reason == "throttled"


def test_failures_older_than_the_window_are_forgotten(
    guard: LoginGuard, clock: FakeClock
) -> None:
    for _ in range(2):
        guard.check("alice", "10.0.0.1", fail)
    clock.now += 61
    for _ in range(2):
        guard.check("alice", "10.0.0.1", fail)
    assert guard.check("alice", "10.0.0.1", succeed).reason == "ok"


def test_a_parallel_burst_waits_rather_than_exceed_a_failure_budget(guard: LoginGuard) -> None:
    gate = Gate()
    threads = [in_thread(lambda: guard.check("alice", "10.0.1.1", gate.verify))
               for _ in range(3)]
    eventually(lambda: guard.pending_checks == 3)
    assert guard.check("alice", "10.0.1.1", gate.verify, timeout=0.05) == LoginDecision(
        False, "timeout")
    late, results = in_thread(lambda: guard.check("alice", "10.0.1.1", gate.verify))
    gate.release.set()
    for thread, _ in [*threads, (late, results)]:
        thread.join(5)
    assert gate.calls == 4 and results == [LoginDecision(True, "ok")]


def test_logins_beyond_the_checking_threads_wait_and_all_succeed() -> None:
    """A burst of real logins: more than run at once, from one network, as one user."""
    gate = Gate()
    with LoginGuard(max_concurrent_checks=2) as g:
        threads = [in_thread(lambda: g.check("alice", "10.0.0.1", gate.verify))
                   for _ in range(40)]
        assert gate.started.acquire(timeout=5)
        gate.release.set()
        for thread, _ in threads:
            thread.join(10)
    assert gate.peak <= 2 and gate.calls == 40
    assert [r for _, results in threads for r in results] == [LoginDecision(True, "ok")] * 40


def test_slow_check_times_out_and_its_outcome_still_counts(guard: LoginGuard) -> None:
    release = threading.Event()
    finished = threading.Event()

    def slow_failure() -> bool:
        release.wait(10)
        finished.set()
        return False

    for _ in range(2):
        guard.check("alice", "10.0.0.1", fail)
    assert guard.check("alice", "10.0.0.1", slow_failure, timeout=0.05) == LoginDecision(
        False, "timeout"
    )
    release.set()
    assert finished.wait(5)
    eventually(lambda: guard.pending_checks == 0)
    assert guard.check("alice", "10.0.0.1", succeed).reason == "throttled"


def test_queued_check_that_times_out_never_runs() -> None:
    gate = Gate()
    ran = threading.Event()
    with LoginGuard(max_concurrent_checks=1) as g:
        blocker, _ = in_thread(lambda: g.check("a", "p1", gate.verify))
        assert gate.started.acquire(timeout=5)
        decision = g.check("b", "p2", lambda: ran.set() or True, timeout=0.05)
        assert decision == LoginDecision(False, "timeout")
        assert g.pending_checks == 1
        gate.release.set()
        blocker.join(5)
        assert g.check("c", "p3", succeed).reason == "ok"
    assert not ran.is_set()


def test_exception_from_verify_propagates_and_is_not_counted(guard: LoginGuard) -> None:
    def broken() -> bool:
        raise OSError("user database unreachable")

    for _ in range(3):
        with pytest.raises(OSError, match="unreachable"):
            guard.check("alice", "10.0.0.1", broken)
    assert guard.check("alice", "10.0.0.1", succeed).reason == "ok"


def test_refused_requests_do_not_grow_the_tracking_table(guard: LoginGuard) -> None:
    for n in range(5):
        guard.check(f"user{n}", "10.0.0.1", fail)
    size = guard.tracked_keys
    for n in range(50):
        assert guard.check(f"spray{n}", "10.0.0.1", succeed).reason == "throttled"
    assert guard.tracked_keys == size


def test_tracked_users_and_peers_are_capped(clock: FakeClock) -> None:
    with LoginGuard(max_tracked_keys=10, clock=clock) as g:
        for n in range(50):
            g.check(f"user{n}", f"10.0.0.{n}", fail)
        assert g.tracked_keys == 10


def test_idle_records_are_dropped_once_their_failures_expire(
    guard: LoginGuard, clock: FakeClock
) -> None:
    for n in range(20):
        guard.check(f"user{n}", f"10.0.0.{n}", fail)
    clock.now += 61
    guard.check("fresh", "10.0.9.9", succeed)
    assert guard.tracked_keys == 3  # only the keys of the login just made


def test_check_after_close_raises(clock: FakeClock) -> None:
    g = LoginGuard(clock=clock)
    g.close()
    with pytest.raises(RuntimeError, match="closed"):
        g.check("alice", "10.0.0.1", succeed)


def test_decision_is_immutable() -> None:
    decision = LoginDecision(True, "ok")
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.allowed = False  # type: ignore[misc]
