# basic_auth.py: user name and password logins on a TLS Flight server.
#
# Shows: a server with BasicServerAuthHandler (bcrypt password file, then a signed
# session token for every later call), and the two ways a client logs in:
# pyarrow's authenticate_basic_token (the token comes back as a header) and the
# BasicAuth message handshake (client.authenticate). A wrong password is refused.
#
# Run: python examples/basic_auth.py   (no arguments; everything stays in a temp folder)

import tempfile

import pyarrow as pa

import flight_secure as flight
from flight_secure.auth import BasicClientAuthHandler, BasicServerAuthHandler, PasswordStore
from flight_secure.certs import generate_dev_certificates


class WhoAmIServer(flight.FlightServerBase):
    """DoGet answers with one row: who the server says is calling, and how they logged in."""

    def do_get(self, context, ticket):
        principal = context.principal
        return flight.RecordBatchStream(pa.table({
            "name": [context.peer_identity().decode()],
            "method": [principal.method if principal else "none"],
        }))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        certs = generate_dev_certificates(tmp, hosts=["localhost"])
        users = PasswordStore(rounds=10)  # 12 (the default) or more in production
        users.add("alice", "wonderland")
        handler = BasicServerAuthHandler(users)
        server = WhoAmIServer(
            location="grpc+tls://localhost:0", auth_handler=handler,
            tls_certificates=[flight.CertKeyPair(*certs.server_pems())])
        with server:
            print(f"server listening on {server.location}")
            ca = certs.ca_cert_pem()

            client = flight.connect(server.location, tls_root_certs=ca)
            header = client.authenticate_basic_token("alice", "wonderland")
            options = flight.FlightCallOptions(headers=[header])
            row = client.do_get(flight.Ticket(b"whoami"), options).read_all().to_pylist()[0]
            print(f"authenticate_basic_token: the server saw {row['name']} ({row['method']})")

            client = flight.connect(server.location, tls_root_certs=ca)
            client.authenticate(BasicClientAuthHandler("alice", "wonderland"))
            row = client.do_get(flight.Ticket(b"whoami")).read_all().to_pylist()[0]
            print(f"BasicAuth handshake:      the server saw {row['name']} ({row['method']})")

            try:
                client.authenticate_basic_token("alice", "looking-glass")
            except flight.FlightUnauthenticatedError as exc:
                print(f"a wrong password is refused: {exc}")
        handler.close()


if __name__ == "__main__":
    main()
