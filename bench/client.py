"""Benchmark client worker process: ``python -m bench.client --impl NAME``.

Reads JSON commands from stdin, one a line, and answers each with one JSON line
on stdout: ``{"ok": true, ...}`` or ``{"ok": false, "error": str}``.

Commands: ``connect`` (uri, ca, cert, key, auth scheme, secret), ``prepare`` (spec: build the
upload table), ``run`` (op and its parameters, see bench.workloads.OPS),
``reset`` / ``memory`` (peak RSS), ``quit``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any

from bench import auth, common, workloads
from bench.data import DataSpec


def connect(impl: str, command: dict[str, Any]) -> workloads.Session:
    """Open a client per ``command``; runs the ``auth`` scheme's handshake when one is set."""
    flight = common.import_flight(impl)
    kwargs: dict[str, Any] = {}
    if command.get("ca"):
        kwargs["tls_root_certs"] = common.read_bytes(command["ca"])
    if command.get("cert"):
        kwargs["cert_chain"] = common.read_bytes(command["cert"])
        kwargs["private_key"] = common.read_bytes(command["key"])
    client = flight.FlightClient(command["uri"], **kwargs)
    session = workloads.Session(impl=impl, flight=flight, client=client)
    if command.get("auth"):
        secret = common.read_bytes(command.get("secret")) or b""
        session.new_auth_handler = functools.partial(
            auth.client_handler, impl, flight, command["auth"], secret
        )
        client.authenticate(session.new_auth_handler())
    return session


def handle(
    impl: str, session: workloads.Session | None, command: dict[str, Any]
) -> tuple[workloads.Session | None, dict[str, Any]]:
    """Execute one command; returns the (possibly new) session and the reply."""
    op = command["op"]
    if op == "connect":
        if session is not None:
            session.client.close()
        return connect(impl, command), {"ok": True}
    if op == "reset":
        return session, {"ok": True, **common.reset_peak_memory()}
    if op == "memory":
        return session, {"ok": True, **common.memory_kb()}
    if session is None:
        raise RuntimeError("not connected")
    if op == "prepare":
        session.prepare(DataSpec(**command["spec"]))
        return session, {"ok": True, **common.reset_peak_memory()}
    if op == "run":
        params = dict(command["params"])
        if "spec" in params:
            params["spec"] = DataSpec(**params["spec"])
        result = workloads.OPS[command["workload"]](session, **params)
        return session, {"ok": True, **result}
    raise ValueError(f"unknown op {op!r}")


def main(argv: list[str] | None = None) -> int:
    """Serve commands until EOF or quit."""
    parser = argparse.ArgumentParser(prog="python -m bench.client")
    parser.add_argument("--impl", choices=sorted(common.IMPL_MODULES), required=True)
    args = parser.parse_args(argv)
    out = common.protocol_stdout()
    session: workloads.Session | None = None
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if command.get("op") == "quit":
                break
            try:
                session, reply = handle(args.impl, session, command)
            except Exception as exc:  # reported to the harness, the worker keeps running
                reply = {"ok": False, "error": common.error_text(exc)}
            out.write(json.dumps(reply, default=str) + "\n")
    finally:
        if session is not None:
            session.client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
