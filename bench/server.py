"""Benchmark Flight server process, written once against the pyarrow.flight API.

``python -m bench.server --impl IMPL --port 0 [--cert C --key K]
[--client-ca CA] [--auth basic|jwt --bcrypt-cost N --secret FILE]``

Protocol on stdout: the first line is the bound port (an integer) or, when the
server cannot start, a JSON object ``{"error": str, "skip": bool}`` (``skip``
means an optional feature, e.g. flight_secure's auth API, is unavailable).
Then it answers JSON-line commands read from stdin, one JSON line each:
``prepare`` (build and cache the table of ``spec``; drops the previous one),
``reset`` (reset peak memory), ``memory``; EOF or ``quit`` shuts it down.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from types import ModuleType
from typing import Any

import pyarrow as pa

from bench import auth, common
from bench.data import DataSpec, make_table, schema

INFO_SCHEMA = schema("num")


def make_server(flight: ModuleType, location: str, options: dict[str, Any]) -> Any:
    """A started benchmark server of ``flight`` at ``location`` (port 0 allowed)."""

    class BenchServer(flight.FlightServerBase):
        """DoGet serves the prepared table; DoPut counts and discards; DoExchange echoes."""

        def __init__(self) -> None:
            super().__init__(location, **options)
            self.prepared: tuple[bytes, pa.Table] | None = None
            self.uri = f"{location.rsplit(':', 1)[0]}:{self.port}"

        def do_get(self, context: Any, ticket: Any) -> Any:
            if self.prepared is None or self.prepared[0] != ticket.ticket:
                raise flight.FlightServerError("ticket not prepared")
            return flight.RecordBatchStream(self.prepared[1])

        def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
            rows, nbytes = common.drain(reader)
            writer.write(pa.py_buffer(json.dumps({"rows": rows, "bytes": nbytes}).encode()))

        def do_exchange(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
            writer.begin(reader.schema)
            while True:
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    break
                writer.write_batch(chunk.data)

        def get_flight_info(self, context: Any, descriptor: Any) -> Any:
            endpoint = flight.FlightEndpoint(b"info-ticket", [self.uri])
            return flight.FlightInfo(INFO_SCHEMA, descriptor, [endpoint], -1, -1)

        def do_action(self, context: Any, action: Any) -> Any:
            if action.type != "ping":
                raise flight.FlightServerError(f"unknown action {action.type!r}")
            return iter([flight.Result(b"pong")])

    return BenchServer()


def _options(flight: ModuleType, args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.cert:
        cert, key = common.read_bytes(args.cert), common.read_bytes(args.key)
        pair = flight.CertKeyPair(cert=cert, key=key)
        options["tls_certificates"] = [pair]
    if args.client_ca:
        options["verify_client"] = True
        options["root_certificates"] = common.read_bytes(args.client_ca)
    if args.auth:
        secret = common.read_bytes(args.secret) or b""
        options["auth_handler"] = auth.server_handler(
            args.impl, flight, args.auth, args.bcrypt_cost, secret
        )
    if args.impl == "fs_arrow":
        from flight_secure.arrow import server_options

        return server_options(options.pop("auth_handler", None), **options)
    return options


def _control(server: Any, out: Any) -> None:
    """Answer stdin commands until EOF or quit."""
    for line in sys.stdin:
        command = json.loads(line)
        reply: dict[str, Any] = {"ok": True}
        try:
            op = command["op"]
            if op == "quit":
                break
            if op == "prepare":
                spec = DataSpec(**command["spec"])
                server.prepared = None
                server.prepared = (spec.encode(), make_table(spec))
                reply.update(common.reset_peak_memory())
            elif op == "reset":
                reply.update(common.reset_peak_memory())
            elif op == "memory":
                reply.update(common.memory_kb())
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as exc:  # reported to the harness, the server keeps running
            reply = {"ok": False, "error": common.error_text(exc)}
        out.write(json.dumps(reply) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Start the server, print its port, serve until stdin closes."""
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("--impl", choices=sorted(common.IMPL_MODULES), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert", help="server certificate PEM (enables TLS)")
    parser.add_argument("--key", help="server private key PEM")
    parser.add_argument("--client-ca", help="CA PEM that client certificates must chain to (mTLS)")
    parser.add_argument("--auth", choices=auth.SCHEMES, help="require this auth scheme")
    parser.add_argument("--bcrypt-cost", type=int, default=12, help="cost of the basic password")
    parser.add_argument("--secret", help="file with the jwt identity provider's HMAC key")
    args = parser.parse_args(argv)
    out = common.protocol_stdout()
    scheme = "grpc+tls" if args.cert else "grpc+tcp"
    try:
        flight = common.import_flight(args.impl)
        options = _options(flight, args)
        server = make_server(flight, f"{scheme}://{common.HOST}:{args.port}", options)
    except Exception as exc:  # startup failure is reported on the protocol line
        skip = bool(args.auth) and isinstance(exc, ImportError | AttributeError)
        out.write(json.dumps({"error": common.error_text(exc), "skip": skip}) + "\n")
        return 1
    serving = threading.Thread(target=server.serve, name="serve", daemon=True)
    serving.start()
    out.write(f"{server.port}\n")
    try:
        _control(server, out)
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
