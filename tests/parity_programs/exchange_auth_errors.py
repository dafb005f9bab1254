"""A pyarrow.flight program: token handshake, DoExchange, and error classes.

Written for pyarrow.flight; FLIGHT_IMPL=flight_secure runs it on flight_secure.
"""

import os

import pyarrow as pa

if os.environ.get("FLIGHT_IMPL") == "flight_secure":
    import flight_secure as flight
else:
    import pyarrow.flight as flight


class TokenServerAuth(flight.ServerAuthHandler):
    def authenticate(self, outgoing, incoming):
        if incoming.read() != b"let me in":
            raise flight.FlightUnauthenticatedError("bad secret")
        outgoing.write(b"token-123")

    def is_valid(self, token):
        if token != b"token-123":
            raise flight.FlightUnauthenticatedError("bad token")
        return b"carol"


class TokenClientAuth(flight.ClientAuthHandler):
    def __init__(self, secret):
        super().__init__()
        self.secret = secret
        self.token = b""

    def authenticate(self, outgoing, incoming):
        outgoing.write(self.secret)
        self.token = incoming.read()

    def get_token(self):
        return self.token


ERRORS = {
    "unauthorized": flight.FlightUnauthorizedError,
    "unavailable": flight.FlightUnavailableError,
    "timed-out": flight.FlightTimedOutError,
    "cancelled": flight.FlightCancelledError,
    "internal": flight.FlightInternalError,
    "server": flight.FlightServerError,
}


class ExchangeServer(flight.FlightServerBase):
    def do_exchange(self, context, descriptor, reader, writer):
        if descriptor.command == b"sum":
            total = 0
            for chunk in reader:
                if chunk.data is not None:
                    total += sum(chunk.data.column(0).to_pylist())
                if chunk.app_metadata is not None:
                    writer.write_metadata(b"seen " + chunk.app_metadata.to_pybytes())
            writer.begin(pa.schema([("total", pa.int64())]))
            writer.write_batch(pa.record_batch([pa.array([total])], names=["total"]))
        else:
            writer.begin(reader.schema)
            for chunk in reader:
                doubled = pa.compute.multiply(chunk.data.column(0), 2)
                out = pa.record_batch([doubled], names=chunk.data.schema.names)
                if chunk.app_metadata is None:
                    writer.write_batch(out)
                else:
                    writer.write_with_metadata(out, chunk.app_metadata)

    def do_action(self, context, action):
        if action.type == "whoami":
            return [context.peer_identity()]
        raise ERRORS[action.type](f"raised {action.type}", action.type.encode())


def main():
    server = ExchangeServer("grpc://localhost:0", auth_handler=TokenServerAuth())
    location = f"grpc://localhost:{server.port}"

    stranger = flight.connect(location)
    try:
        list(stranger.do_action(("whoami", b"")))
    except flight.FlightUnauthenticatedError:
        print("no handshake: unauthenticated")
    try:
        stranger.authenticate(TokenClientAuth(b"wrong"))
    except flight.FlightUnauthenticatedError:
        print("wrong secret: unauthenticated")
    stranger.close()

    client = flight.connect(location)
    client.authenticate(TokenClientAuth(b"let me in"))
    print("whoami", [r.body.to_pybytes() for r in client.do_action(("whoami", b""))])

    schema = pa.schema([("v", pa.int64())])
    writer, reader = client.do_exchange(flight.FlightDescriptor.for_command(b"double"))
    writer.begin(schema)
    writer.write_batch(pa.record_batch([pa.array([1, 2, 3])], schema=schema))
    chunk = reader.read_chunk()
    print("doubled", chunk.data.to_pydict(), chunk.app_metadata)
    writer.write_with_metadata(pa.record_batch([pa.array([10])], schema=schema), b"tagged")
    chunk = reader.read_chunk()
    print("doubled", chunk.data.to_pydict(), chunk.app_metadata.to_pybytes())
    writer.done_writing()
    print("rest", reader.read_all().num_rows)
    writer.close()

    writer, reader = client.do_exchange(flight.FlightDescriptor.for_command(b"sum"))
    writer.begin(schema)
    for values in ([1, 2], [3], [4, 5, 6]):
        writer.write_batch(pa.record_batch([pa.array(values)], schema=schema))
    writer.write_metadata(b"the end")
    writer.done_writing()
    for chunk in reader:
        data = chunk.data.to_pydict() if chunk.data is not None else None
        meta = chunk.app_metadata.to_pybytes() if chunk.app_metadata is not None else None
        print("sum chunk", data, meta)
    writer.close()

    for name, error_class in ERRORS.items():
        try:
            list(client.do_action((name, b"")))
        except error_class as exc:
            print("error", name, error_class.__name__, exc.extra_info)

    client.close()
    server.shutdown()


if __name__ == "__main__":
    main()
