"""A real ``redis-server`` for the shared-state tests: on a free loopback port, in a
folder of its own, persisting nothing unless asked; it can be stopped mid-test and started again
on the same port.

:func:`redis_or_skip` starts one, or skips the test saying what is missing (the
``redis-server`` binary, which ``.ci/run`` installs with apt-get, or the ``redis``
package of ``flight-secure[redis]``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port

NO_SERVER = ("redis-server is not installed (apt-get install redis-server; .ci/run does "
             "so where apt-get is available): these tests need a real Redis")
NO_CLIENT = "the redis package is missing: pip install 'flight-secure[redis]'"
START_TIMEOUT = 10.0


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port``; ``url`` reaches it."""

    def __init__(self, directory: Path, password: str | None = None, *,
                 appendonly: bool = False) -> None:
        self.binary = shutil.which("redis-server")
        assert self.binary is not None, NO_SERVER
        self.directory = directory
        self.password = password
        self.appendonly = appendonly
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        """A plain client of this server (for the test's own checks)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           socket_timeout=2.0, socket_connect_timeout=2.0)

    def start(self) -> None:
        """Start the server (again) on the same port, from a configuration file as
        docs/DEPLOY.md shows (the password stays off the command line); return once
        it answers PING."""
        settings = [f"port {self.port}", "bind 127.0.0.1", 'save ""',
                    f"appendonly {'yes' if self.appendonly else 'no'}",
                    f'dir "{self.directory}"']
        if self.password is not None:
            settings.append(f"requirepass {self.password}")
        config = self.directory / "redis.conf"
        config.write_text("\n".join(settings) + "\n")
        config.chmod(0o600)
        self.process = subprocess.Popen([self.binary, str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        client = self.client()
        while True:
            try:
                client.ping()
                break
            except Exception:
                assert self.process.poll() is None, "redis-server exited at start"
                assert time.monotonic() < deadline, "redis-server did not answer in time"
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL past the deadline) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def redis_or_skip(directory: Path, password: str | None = None, *,
                  appendonly: bool = False) -> RedisServer:
    """A started :class:`RedisServer` (persisting to an append-only file with
    ``appendonly``), or skip the test saying what is missing."""
    pytest.importorskip("redis", reason=NO_CLIENT)
    if shutil.which("redis-server") is None:
        pytest.skip(NO_SERVER)
    return RedisServer(directory, password, appendonly=appendonly)
