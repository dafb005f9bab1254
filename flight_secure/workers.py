"""The threads a server runs its handlers on, which never keep the process alive.

grpcio runs each call on the server's thread pool, and DoPut, DoExchange and
Handshake handlers run on helper pools. ``concurrent.futures.ThreadPoolExecutor``
joins its threads when the interpreter exits, so a single handler that never
returns (blocked on a lock, a socket, a client that sends nothing) would keep
the process from exiting even after the server shut down and cancelled its
call. :class:`DaemonThreadPool` is the same kind of pool on daemon threads: a
process whose server has shut down exits, whatever its handlers still wait for.
A server that shuts down first gives its handlers a bounded time to return
(:meth:`DaemonThreadPool.wait_idle`), so the ones that do can clean up.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

__all__ = ["DaemonThreadPool"]


class _Load:
    """How many submitted calls have not finished yet, and how many threads are idle."""

    def __init__(self) -> None:
        self.idle = threading.Semaphore(0)
        self.changed = threading.Condition()
        self.unfinished = 0

    def add(self) -> None:
        with self.changed:
            self.unfinished += 1

    def finish(self) -> None:
        with self.changed:
            self.unfinished -= 1
            if not self.unfinished:
                self.changed.notify_all()


class DaemonThreadPool(Executor):
    """Runs submitted calls on up to ``max_workers`` daemon threads.

    A thread is started for a call when no started thread is idle, up to
    ``max_workers``; calls beyond wait in order. Threads are named
    ``<thread_name_prefix>_<n>``. ``shutdown`` refuses later submissions
    (RuntimeError), optionally cancels the calls still waiting, and lets the
    threads end once idle; with ``wait`` it joins them, which waits for running
    calls. Threads also end when the pool is dropped.
    """

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._load = _Load()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shut_down = False
        weakref.finalize(self, self._work.put, None)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        with self._lock:
            if self._shut_down:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: Future = Future()
            self._load.add()
            self._work.put((future, fn, args, kwargs))
            idle = self._load.idle.acquire(blocking=False)
            if not idle and len(self._threads) < self._max_workers:
                thread = threading.Thread(target=_serve, args=(self._work, self._load),
                                          daemon=True,
                                          name=f"{self._prefix}_{len(self._threads)}")
                thread.start()
                self._threads.append(thread)
        return future

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until every submitted call has finished; False after ``timeout`` s."""
        with self._load.changed:
            return self._load.changed.wait_for(lambda: not self._load.unfinished, timeout)

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
                    self._load.finish()
        self._work.put(None)
        if wait:
            for thread in threads:
                thread.join()


def _serve(work: queue.SimpleQueue, load: _Load) -> None:
    """A pool thread: run calls from ``work`` until its end mark (None), which it
    passes on to the next thread. It holds no reference to the pool itself."""
    while True:
        item = work.get()
        if item is None:
            work.put(None)
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
        load.finish()
        load.idle.release()
