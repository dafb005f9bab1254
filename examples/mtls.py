# mtls.py: mutual TLS, where the client certificate is the caller's identity.
#
# Shows: a server that verifies client certificates against its CA and uses
# MutualTLSServerAuthHandler with an allow-list; alice and bob connect with their
# own certificates and the server names each of them from the certificate alone
# (no password, no token); carol holds a valid certificate from the same CA but is
# not on the list, so she is refused.
#
# Run: python examples/mtls.py   (no arguments; everything stays in a temp folder)

import tempfile

import pyarrow as pa

import flight_secure as flight
from flight_secure.auth import MutualTLSServerAuthHandler
from flight_secure.certs import generate_dev_certificates


class WhoAmIServer(flight.FlightServerBase):
    """DoGet answers with one row describing the caller's certificate."""

    def do_get(self, context, ticket):
        certificate = context.principal.certificate
        return flight.RecordBatchStream(pa.table({
            "name": [context.peer_identity().decode()],
            "subject": [certificate.subject],
            "fingerprint": [certificate.fingerprint_sha256[:16]],
        }))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        certs = generate_dev_certificates(tmp, hosts=["localhost"],
                                          clients=["alice", "bob", "carol"])
        server = WhoAmIServer(
            location="grpc+tls://localhost:0",
            tls_certificates=[flight.CertKeyPair(*certs.server_pems())],
            verify_client=True, root_certificates=certs.ca_cert_pem(),
            auth_handler=MutualTLSServerAuthHandler(allowed=["alice", "bob"]))
        with server:
            print(f"server listening on {server.location}; it lets in alice and bob")
            for name in ("alice", "bob", "carol"):
                cert, key = certs.client_pems(name)
                client = flight.connect(server.location, tls_root_certs=certs.ca_cert_pem(),
                                        cert_chain=cert, private_key=key)
                try:
                    row = client.do_get(flight.Ticket(b"whoami")).read_all().to_pylist()[0]
                except flight.FlightUnauthorizedError as exc:
                    print(f"{name}: refused: {exc}")
                else:
                    print(f"{name}: the server saw {row['name']} (certificate {row['subject']}, "
                          f"sha256 {row['fingerprint']}...)")
                finally:
                    client.close()


if __name__ == "__main__":
    main()
