# multi_node.py: one login service, two data nodes, one token that works on both.
#
# Shows: an auth node that checks passwords (BasicServerAuthHandler) and issues JWTs
# signed with its private key; two data nodes that accept those JWTs with
# JWTServerAuthHandler, knowing only the public key; GetFlightInfo on node 1
# returning endpoints on both nodes; and a client that logs in once, then follows
# each endpoint's location to read the parts of the dataset from the node holding it.
#
# Run: python examples/multi_node.py   (no arguments; everything stays in a temp folder)

import tempfile

import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import flight_secure as flight
from flight_secure.auth import (
    BasicServerAuthHandler,
    JWTIssuer,
    JWTServerAuthHandler,
    JWTVerifier,
    PasswordStore,
)
from flight_secure.certs import generate_dev_certificates

ISSUER, AUDIENCE = "auth-node", "data-nodes"


class LoginNode(flight.FlightServerBase):
    """Serves only the Handshake (its auth handler); it holds no data."""


class DataNode(flight.FlightServerBase):
    """Holds one part of the 'trips' dataset; node 1 also describes the whole dataset."""

    def __init__(self, name, part, peers=(), **options):
        self.name, self.part, self.peers = name, part, list(peers)
        super().__init__(**options)

    def get_flight_info(self, context, descriptor):
        nodes = [self, *self.peers]
        endpoints = [flight.FlightEndpoint(f"trips/{node.name}".encode(), [node.location])
                     for node in nodes]
        rows = sum(node.part.num_rows for node in nodes)
        return flight.FlightInfo(self.part.schema, descriptor, endpoints, rows, -1)

    def do_get(self, context, ticket):
        print(f"  {self.name} serves its part to {context.peer_identity().decode()}")
        return flight.RecordBatchStream(self.part)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        certs = generate_dev_certificates(tmp, hosts=["localhost"])
        tls = {"tls_certificates": [flight.CertKeyPair(*certs.server_pems())]}
        signing_key = Ed25519PrivateKey.generate()

        def verifier():  # what every node knows: the public key, the issuer, the audience
            return JWTVerifier(signing_key.public_key(), ["EdDSA"], issuer=ISSUER,
                               audience=AUDIENCE)

        users = PasswordStore(rounds=10)
        users.add("alice", "wonderland")
        login = BasicServerAuthHandler(
            users, JWTIssuer(signing_key, "EdDSA", issuer=ISSUER, audience=AUDIENCE, ttl=300),
            verifier())
        parts = [pa.table({"trip": [1, 2], "km": [5.0, 7.5]}),
                 pa.table({"trip": [3, 4, 5], "km": [1.0, 2.5, 9.0]})]
        with LoginNode(location="grpc+tls://localhost:0", auth_handler=login, **tls) as auth, \
                DataNode("node-2", parts[1], location="grpc+tls://localhost:0",
                         auth_handler=JWTServerAuthHandler(verifier()), **tls) as node2, \
                DataNode("node-1", parts[0], [node2], location="grpc+tls://localhost:0",
                         auth_handler=JWTServerAuthHandler(verifier()), **tls) as node1:
            print(f"auth node {auth.location}, data nodes {node1.location} and {node2.location}")
            ca = certs.ca_cert_pem()

            with flight.connect(auth.location, tls_root_certs=ca) as client:
                token = client.authenticate_basic_token("alice", "wonderland")
            options = flight.FlightCallOptions(headers=[token])
            print("alice logged in at the auth node and got a token for the data nodes")

            with flight.connect(node1.location, tls_root_certs=ca) as client:
                info = client.get_flight_info(flight.FlightDescriptor.for_path("trips"), options)
            print(f"node-1 describes 'trips': {info.total_records} rows in "
                  f"{len(info.endpoints)} parts")
            pieces = []
            for endpoint in info.endpoints:
                location = endpoint.locations[0]
                with flight.connect(location, tls_root_certs=ca) as node:
                    pieces.append(node.do_get(endpoint.ticket, options).read_all())
                print(f"read {pieces[-1].num_rows} rows from {location}")
            trips = pa.concat_tables(pieces)
            print(f"alice has all {trips.num_rows} rows, {sum(trips['km'].to_pylist())} km")
        login.close()


if __name__ == "__main__":
    main()
