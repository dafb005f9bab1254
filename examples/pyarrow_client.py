# pyarrow_client.py: Apache Arrow's own pyarrow.flight client talking to a flight_secure server.
#
# Shows: wire compatibility. The server is flight_secure (TLS, Basic logins that hand
# out session tokens); the client is plain pyarrow.flight code using the calls it
# always uses: connect(tls_root_certs=...), authenticate_basic_token, do_put,
# list_flights, get_flight_info and do_get.
#
# Run: python examples/pyarrow_client.py   (no arguments; everything stays in a temp folder)

import tempfile
import threading

import pyarrow as pa
import pyarrow.flight as paflight

import flight_secure
from flight_secure.auth import BasicServerAuthHandler, PasswordStore
from flight_secure.certs import generate_dev_certificates


class TableStore(flight_secure.FlightServerBase):
    """Keeps uploaded tables in memory under their one-element path."""

    def __init__(self, **options):
        self.tables = {}
        self.lock = threading.Lock()
        super().__init__(**options)

    def _info(self, name):
        table = self.tables[name]
        endpoint = flight_secure.FlightEndpoint(name.encode(), [])
        return flight_secure.FlightInfo(table.schema, flight_secure.FlightDescriptor.for_path(name),
                                        [endpoint], table.num_rows, table.nbytes)

    def list_flights(self, context, criteria):
        with self.lock:
            return [self._info(name) for name in sorted(self.tables)]

    def get_flight_info(self, context, descriptor):
        with self.lock:
            return self._info(descriptor.path[0].decode())

    def do_put(self, context, descriptor, reader, writer):
        table = reader.read_all()
        with self.lock:
            self.tables[descriptor.path[0].decode()] = table

    def do_get(self, context, ticket):
        with self.lock:
            return flight_secure.RecordBatchStream(self.tables[ticket.ticket.decode()])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        certs = generate_dev_certificates(tmp, hosts=["localhost"])
        users = PasswordStore(rounds=10)
        users.add("alice", "wonderland")
        handler = BasicServerAuthHandler(users)
        server = TableStore(location="grpc+tls://localhost:0", auth_handler=handler,
                            tls_certificates=[flight_secure.CertKeyPair(*certs.server_pems())])
        with server:
            print(f"flight_secure server listening on {server.location}")

            # From here on: ordinary pyarrow.flight code.
            client = paflight.connect(f"grpc+tls://localhost:{server.port}",
                                      tls_root_certs=certs.ca_cert_pem())
            token = client.authenticate_basic_token("alice", "wonderland")
            options = paflight.FlightCallOptions(headers=[token])
            print(f"pyarrow client {pa.__version__} logged in as alice")

            table = pa.table({"station": ["north", "south"], "celsius": [3.5, 17.25]})
            writer, _ = client.do_put(paflight.FlightDescriptor.for_path("weather"),
                                      table.schema, options)
            writer.write_table(table)
            writer.close()
            print(f"uploaded {table.num_rows} rows as 'weather'")

            for info in client.list_flights(options=options):
                print(f"listed {info.descriptor.path[0].decode()}: {info.total_records} rows")
            info = client.get_flight_info(paflight.FlightDescriptor.for_path("weather"), options)
            back = client.do_get(info.endpoints[0].ticket, options).read_all()
            print(f"read back {back.num_rows} rows; identical: {back.equals(table)}")
            client.close()
        handler.close()


if __name__ == "__main__":
    main()
