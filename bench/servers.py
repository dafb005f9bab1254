"""Harness side of the server and client subprocesses.

A :class:`Side` is one implementation under test in one security variant: its
own server process (``bench.server``) and its own client worker process
(``bench.client``), both spoken to by JSON lines with a timeout on every reply.
Processes are always terminated by :meth:`Side.stop` (call it in ``finally``).
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.certs import CertPaths, make_certificates
from bench.common import HOST

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0
CONTROL_TIMEOUT_S = 120.0


class SideError(RuntimeError):
    """A worker reported a failure; the processes are still usable."""


class ProcessError(RuntimeError):
    """A process died, misspoke or timed out; the side must be restarted."""


class SkipVariant(RuntimeError):
    """The implementation lacks an optional feature this variant needs."""


@dataclass(frozen=True)
class Variant:
    """Security set-up of a server/client pair."""

    name: str
    tls: bool = False
    mtls: bool = False
    auth: str | None = None


VARIANTS = {
    "plain": Variant("plain"),
    "tls": Variant("tls", tls=True),
    "mtls": Variant("mtls", tls=True, mtls=True),
    "basic": Variant("basic", tls=True, auth="basic"),
    "jwt": Variant("jwt", tls=True, auth="jwt"),
    # Auth overhead alone, without TLS's own cost and noise in the comparison.
    "jwt_plain": Variant("jwt_plain", auth="jwt"),
}


class LineProcess:
    """A subprocess answering JSON lines on stdout; stderr is appended to ``log_path``."""

    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        env = dict(os.environ, PYTHONPATH=path)
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            env=env,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def log_tail(self, chars: int = 600) -> str:
        """The end of the process's stderr, flattened to one line."""
        self._log.flush()
        text = self.log_path.read_text(errors="replace")[-chars:]
        return " | ".join(line for line in text.splitlines() if line.strip())

    def readline(self, timeout: float) -> str:
        """The next stdout line; raises ProcessError on timeout or exit."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise ProcessError(f"no reply within {timeout:.0f}s; log: {self.log_tail()}") from None
        if line is None:
            code = self.proc.wait(timeout=5)
            raise ProcessError(f"exited with {code}; log: {self.log_tail()}")
        return line

    def call(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send ``command``, return the reply; SideError if the worker reports failure."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise ProcessError(f"cannot write command: {exc}; log: {self.log_tail()}") from exc
        reply = json.loads(self.readline(timeout))
        if not reply.get("ok"):
            raise SideError(reply.get("error", "unknown error"))
        return reply

    def stop(self) -> None:
        """Close stdin (asks the process to quit), then terminate, then kill."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        for signal_step in (None, self.proc.terminate, self.proc.kill):
            if signal_step is not None:
                signal_step()
            try:
                self.proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        self._log.close()


@dataclass(frozen=True)
class Credentials:
    """What the TLS and auth variants need: certificates, the jwt HMAC key file, bcrypt cost."""

    certs: CertPaths
    secret: str
    bcrypt_cost: int


def make_credentials(out_dir: Path, bcrypt_cost: int) -> tuple[Credentials, str]:
    """Certificates and a random 32-byte jwt key in ``out_dir``; plus how certs were made."""
    certs, note = make_certificates(out_dir)
    secret = out_dir / "jwt-secret.bin"
    secret.write_bytes(secrets.token_bytes(32))
    secret.chmod(0o600)
    return Credentials(certs, str(secret), bcrypt_cost), note


class Side:
    """Server and client processes of ``impl`` for ``variant``; ``slot`` names the logs.

    ``creds`` must be given for every variant but plain.
    """

    def __init__(
        self, impl: str, slot: str, variant: Variant, creds: Credentials | None, log_dir: Path
    ) -> None:
        self.impl, self.slot, self.variant = impl, slot, variant
        self.creds, self.log_dir = creds, log_dir
        self.server: LineProcess | None = None
        self.client: LineProcess | None = None

    def _server_argv(self, creds: Credentials | None) -> list[str]:
        argv = ["-m", "bench.server", "--impl", self.impl, "--port", "0"]
        if creds is None:
            return argv
        if self.variant.tls:
            argv += ["--cert", creds.certs.server_cert, "--key", creds.certs.server_key]
        if self.variant.mtls:
            argv += ["--client-ca", creds.certs.ca]
        if self.variant.auth:
            argv += ["--auth", self.variant.auth, "--bcrypt-cost", str(creds.bcrypt_cost)]
            argv += ["--secret", creds.secret]
        return argv

    def _connect_command(self, port: int, creds: Credentials | None) -> dict[str, Any]:
        scheme = "grpc+tls" if self.variant.tls else "grpc+tcp"
        connect: dict[str, Any] = {"op": "connect", "uri": f"{scheme}://{HOST}:{port}"}
        if creds is None:
            return connect
        if self.variant.tls:
            connect["ca"] = creds.certs.ca
        if self.variant.mtls:
            connect.update(cert=creds.certs.client_cert, key=creds.certs.client_key)
        if self.variant.auth:
            connect.update(auth=self.variant.auth, secret=creds.secret)
        return connect

    def start(self) -> None:
        """Start both processes and connect; raises SkipVariant/ProcessError/SideError."""
        if self.variant.name != "plain" and self.creds is None:
            raise ProcessError(f"variant {self.variant.name} needs credentials")
        stem = f"{self.slot}-{self.impl}-{self.variant.name}"
        argv = self._server_argv(self.creds)
        self.server = LineProcess(argv, self.log_dir / f"{stem}-server.log")
        first = self.server.readline(START_TIMEOUT_S).strip()
        if first.startswith("{"):
            failure = json.loads(first)
            kind = SkipVariant if failure.get("skip") else ProcessError
            raise kind(f"{self.impl} server did not start: {failure['error']}")
        port = int(first)
        self.client = LineProcess(
            ["-m", "bench.client", "--impl", self.impl], self.log_dir / f"{stem}-client.log"
        )
        self.client.call(self._connect_command(port, self.creds), START_TIMEOUT_S)

    def prepare(self, spec: dict[str, Any] | None, holder: str | None) -> None:
        """Build the table of ``spec`` in the ``holder`` process ("server" or "client").

        Both processes then reset their peak memory to the current RSS.
        """
        server, client = self._procs()
        for role, proc in (("server", server), ("client", client)):
            command = {"op": "prepare", "spec": spec} if role == holder else {"op": "reset"}
            proc.call(command, CONTROL_TIMEOUT_S)

    def memory(self) -> dict[str, dict[str, int]]:
        """{"server": {...}, "client": {...}} of rss_kb/peak_kb now."""
        server, client = self._procs()
        return {
            "server": server.call({"op": "memory"}, CONTROL_TIMEOUT_S),
            "client": client.call({"op": "memory"}, CONTROL_TIMEOUT_S),
        }

    def run(self, op: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One measured round on the client worker."""
        _, client = self._procs()
        return client.call({"op": "run", "workload": op, "params": params}, timeout)

    def _procs(self) -> tuple[LineProcess, LineProcess]:
        if self.server is None or self.client is None:
            raise ProcessError("side not started")
        return self.server, self.client

    def stop(self) -> None:
        """Terminate the client then the server (idempotent)."""
        for proc in (self.client, self.server):
            if proc is not None:
                proc.stop()
        self.client = self.server = None
