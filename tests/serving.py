"""``flight-secure serve`` run as users run it: a subprocess on a free port, output collected.

:class:`Served` starts ``python -m flight_secure serve --port 0 ARGS`` and waits for its
``listening on`` line; :class:`Lines` collects a stream's lines so a test can wait for
one with a deadline instead of sleeping.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from flight_secure.auth.passwords import PasswordStore
from flight_secure.certs import generate_dev_certificates
from flight_secure.cli import main

START_TIMEOUT = 30.0


class Lines:
    """The lines of a text stream, collected by a thread; wait for one with a deadline."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait_for(self, needle: str, timeout: float = START_TIMEOUT) -> str:
        """The first line containing ``needle``; AssertionError if none comes in time."""
        def found() -> str | None:
            return next((line for line in self.lines if needle in line), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None or self.closed, timeout)
            line = found()
        assert line is not None, f"no line with {needle!r} in:\n" + "\n".join(self.lines)
        return line

    def wait_closed(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the stream has ended; AssertionError if it has not in time."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.closed, timeout), "the stream is still open"

    @property
    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)


class Served:
    """A ``python -m flight_secure serve`` subprocess that has printed its listening line."""

    def __init__(self, args: list[str], cwd: Path, *, umask: int | None = None) -> None:
        command = [sys.executable, "-m", "flight_secure", "serve", "--port", "0", *args]
        if umask is not None:  # the shell sets the umask, then becomes the server
            command = ["/bin/sh", "-c", f'umask {umask:03o} && exec "$@"', "sh", *command]
        self.process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.out, self.err = Lines(self.process.stdout), Lines(self.process.stderr)
        try:
            listening = self.out.wait_for("listening on ")
        except AssertionError:
            self.stop()
            raise AssertionError(f"server did not start: {self.err.text}") from None
        self.location = listening.split("listening on ", 1)[1].strip()
        self.port = int(self.location.rsplit(":", 1)[1])

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum`` and return the exit status (SIGKILL after the deadline)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def write_site(folder: Path, passwords: dict[str, str], table: Any,
               row_group_size: int) -> Path:
    """A folder for ``serve`` nodes: ``users.htpasswd`` (bcrypt cost 4), ``data/trips.parquet``
    (``table``), development certificates in ``certs/`` and a signing key ``session.key``."""
    store = PasswordStore(rounds=4)
    for user, password in passwords.items():
        store.add(user, password)
    store.save(folder / "users.htpasswd")
    (folder / "data").mkdir()
    pq.write_table(table, folder / "data" / "trips.parquet", row_group_size=row_group_size)
    generate_dev_certificates(folder / "certs")
    assert main(["token", "keygen", "--out", str(folder / "session.key")]) == 0
    return folder
