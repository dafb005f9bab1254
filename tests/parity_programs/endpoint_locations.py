"""A pyarrow.flight program: endpoints that name other places, and the values around them.

The server's FlightInfo lists an endpoint to redeem on the same connection
(arrow-flight-reuse-connection://?, as the Flight spec defines it), one with no
location (also this service), one served over HTTPS and one on a replica. The client
fetches the first two on its own connection and reports the others, then prints the
values' reprs, equality and nanosecond expiration times.

Written for pyarrow.flight; FLIGHT_IMPL=flight_secure runs it on flight_secure
unchanged (only the import differs). Prints a deterministic transcript.
"""

import os

import pyarrow as pa

if os.environ.get("FLIGHT_IMPL") == "flight_secure":
    import flight_secure as flight
else:
    import pyarrow.flight as flight

REUSE = "arrow-flight-reuse-connection://?"
EXPIRES = pa.scalar(1_700_000_000_123_456_789, pa.timestamp("ns", tz="UTC"))


def shown(value):
    """repr(value) with the module name left out, so both implementations print alike."""
    return repr(value).replace("pyarrow.flight.", "").replace("flight_secure.", "")


class PartsServer(flight.FlightServerBase):
    tables = {
        b"part-0": pa.table({"n": [1, 2]}),
        b"part-1": pa.table({"n": [3]}),
    }

    def get_flight_info(self, context, descriptor):
        endpoints = [
            flight.FlightEndpoint(b"part-0", [REUSE], expiration_time=EXPIRES),
            flight.FlightEndpoint(b"part-1", []),
            flight.FlightEndpoint(b"part-2", ["https://data.example.com/part-2.arrows"],
                                  app_metadata=b"over http"),
            flight.FlightEndpoint(b"part-3", [flight.Location("grpc+tls://replica:8815")]),
        ]
        return flight.FlightInfo(None, descriptor, endpoints, -1, -1, ordered=True)

    def do_get(self, context, ticket):
        return flight.RecordBatchStream(self.tables[ticket.ticket])


def here(endpoint):
    """True when the ticket is redeemed on the connection that returned the info."""
    reuse = flight.Location(REUSE)
    return not endpoint.locations or any(loc == reuse for loc in endpoint.locations)


def main():
    server = PartsServer("grpc://localhost:0")
    client = flight.connect(f"grpc://localhost:{server.port}")

    info = client.get_flight_info(flight.FlightDescriptor.for_command(b"parts"))
    print("schema", info.schema, "ordered", info.ordered)
    for endpoint in info.endpoints:
        uris = [loc.uri for loc in endpoint.locations]
        if here(endpoint):
            rows = client.do_get(endpoint.ticket).read_all().column("n").to_pylist()
            print("fetched", endpoint.ticket.ticket, "here", uris, rows)
        else:
            print("elsewhere", endpoint.ticket.ticket, uris, endpoint.app_metadata)

    first = info.endpoints[0]
    print("expires", first.expiration_time.value, first.expiration_time.type)
    print("endpoint", shown(first))
    print("info equal to itself read back", flight.FlightInfo.deserialize(info.serialize()) == info)
    print("endpoint equal without expiry",
          first == flight.FlightEndpoint(first.ticket, first.locations))
    print("action", shown(flight.Action("refresh", b"now")),
          flight.Action("refresh", b"now") == flight.Action(b"refresh", b"now"))
    print("result", shown(flight.Result(b"ok")), flight.Result(b"ok") == flight.Result(b"ok"))
    print("auth", shown(flight.BasicAuth("alice", "secret")))
    print("schema result", shown(flight.SchemaResult(pa.schema([("n", pa.int64())]))))
    print("location", shown(flight.Location("https://data.example.com/x")))
    print("descriptor", shown(info.descriptor))

    for text in ("data example", "grpc://h:99999", "/relative"):
        try:
            flight.Location(text)
        except pa.ArrowInvalid as exc:
            print("refused", str(exc).split(" due to")[0])
    try:
        flight.connect("https://data.example.com/part-2.arrows")
    except pa.ArrowKeyError:
        print("https is not a Flight transport")
    try:
        flight.Ticket(7)
    except TypeError:
        print("a ticket is str or bytes")

    client.close()
    server.shutdown()
    print("done")


if __name__ == "__main__":
    main()
