"""A server behaviour that answers every RPC with the caller it saw, and its client side.

:class:`IdentityServer` runs on either engine (``conftest.Engine.start``): it
reads the caller with ``flight_secure.arrow.principal(context)`` and builds its
replies with ``self.flight``. :func:`seen_identity` makes one call of any RPC and
returns the identity the handler saw.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pyarrow as pa

import flight_secure as flight
from flight_secure.arrow import authorize_action, principal

RPCS = ("ListFlights", "GetFlightInfo", "DoGet", "DoPut", "DoExchange", "DoAction")


def identity(context: Any) -> bytes:
    """The caller's identity as ``peer_identity()`` gives it on flight_secure's engine."""
    caller = principal(context)
    return caller.identity if caller is not None else b""


class IdentityServer:
    """Every RPC answers with the caller's identity; DoAction ``principal`` with its details."""

    flight: ModuleType

    def list_flights(self, context, criteria):
        descriptor = self.flight.FlightDescriptor.for_command(identity(context))
        yield self.flight.FlightInfo(pa.schema([]), descriptor, [])

    def get_flight_info(self, context, descriptor):
        return self.flight.FlightInfo(
            pa.schema([]), self.flight.FlightDescriptor.for_command(identity(context)), []
        )

    def do_get(self, context, ticket):
        return self.flight.RecordBatchStream(pa.table({"who": [identity(context)]}))

    def do_put(self, context, descriptor, reader, writer):
        reader.read_all()
        writer.write(pa.py_buffer(identity(context)))

    def do_exchange(self, context, descriptor, reader, writer):
        reader.read_all()
        writer.begin(pa.schema([("who", pa.binary())]))
        writer.write_table(pa.table({"who": [identity(context)]}))

    def do_action(self, context, action):
        authorize_action(context, action)
        caller = principal(context)
        if action.type == "principal":
            yield json.dumps({"name": caller.name, "method": caller.method,
                              "roles": sorted(caller.roles),
                              "sub": caller.claims.get("sub")}).encode()
        else:
            yield identity(context)


def seen_identity(client: flight.FlightClient, rpc: str,
                  options: flight.FlightCallOptions | None = None) -> bytes:
    """Call ``rpc`` with a flight_secure client; the identity the server's handler saw."""
    descriptor = flight.FlightDescriptor.for_path("x")
    if rpc == "ListFlights":
        return next(iter(client.list_flights(options=options))).descriptor.command
    if rpc == "GetFlightInfo":
        return client.get_flight_info(descriptor, options).descriptor.command
    if rpc == "DoGet":
        return client.do_get(flight.Ticket(b"t"), options).read_all()["who"][0].as_py()
    if rpc == "DoPut":
        schema = pa.schema([("n", pa.int64())])
        writer, reader = client.do_put(descriptor, schema, options)
        writer.write_table(pa.table({"n": [1]}))
        writer.done_writing()
        answer = reader.read().to_pybytes()
        writer.close()
        return answer
    if rpc == "DoExchange":
        writer, reader = client.do_exchange(descriptor, options)
        writer.begin(pa.schema([("n", pa.int64())]))
        writer.write_table(pa.table({"n": [1]}))
        writer.done_writing()
        answer = reader.read_all()["who"][0].as_py()
        writer.close()
        return answer
    assert rpc == "DoAction"
    return next(iter(client.do_action("whoami", options))).body.to_pybytes()
