"""The threads a server runs its handlers on, which never keep the process alive.

grpcio runs each call on the server's thread pool, and DoPut, DoExchange and
Handshake handlers run on helper pools. ``concurrent.futures.ThreadPoolExecutor``
joins its threads when the interpreter exits, so a single handler that never
returns (blocked on a lock, a socket, a client that sends nothing) would keep
the process from exiting even after the server shut down and cancelled its
call. :class:`DaemonThreadPool` is the same kind of pool on daemon threads: a
process whose server has shut down exits, whatever its handlers still wait for.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

__all__ = ["DaemonThreadPool"]


class DaemonThreadPool(Executor):
    """Runs submitted calls on up to ``max_workers`` daemon threads.

    A thread is started for a call when no started thread is idle, up to
    ``max_workers``; calls beyond wait in order. Threads are named
    ``<thread_name_prefix>_<n>``. ``shutdown`` refuses later submissions
    (RuntimeError), optionally cancels the calls still waiting, and lets idle
    threads end; with ``wait`` it joins them, which waits for running calls.
    """

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shut_down = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        with self._lock:
            if self._shut_down:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: Future = Future()
            self._work.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                thread = threading.Thread(target=self._run, daemon=True,
                                          name=f"{self._prefix}_{len(self._threads)}")
                thread.start()
                self._threads.append(thread)
        return future

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs  # hold nothing of the call while idle
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shut_down = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._work.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._work.put(None)
        if wait:
            for thread in threads:
                thread.join()
