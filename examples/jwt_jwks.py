# jwt_jwks.py: a Flight server that trusts tokens from an identity provider's JWKS.
#
# Shows: JWTServerAuthHandler with a JWTVerifier reading public keys from a JWKS
# file; a client presenting a token from JWTIssuer (as "authorization: Bearer" on
# each call, and through the Handshake with JWTClientAuthHandler); key rotation by
# adding a key to the JWKS file, with no restart; a token signed by an unknown key
# refused.
#
# Run: python examples/jwt_jwks.py   (no arguments; everything stays in a temp folder)

import json
import tempfile
from pathlib import Path

import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import flight_secure as flight
from flight_secure.auth import JWTClientAuthHandler, JWTIssuer, JWTServerAuthHandler, JWTVerifier
from flight_secure.certs import generate_dev_certificates

IDP = "https://idp.example"
AUDIENCE = "flight-demo"


class WhoAmIServer(flight.FlightServerBase):
    """DoGet answers with one row: the caller's name and roles as the server sees them."""

    def do_get(self, context, ticket):
        return flight.RecordBatchStream(pa.table({
            "name": [context.peer_identity().decode()],
            "roles": [sorted(context.principal.roles)],
        }))


def identity_provider(key_id: str) -> JWTIssuer:
    """Stands in for the identity provider: it signs tokens with a key of its own."""
    return JWTIssuer(Ed25519PrivateKey.generate(), "EdDSA", issuer=IDP, audience=AUDIENCE,
                     ttl=300, key_id=key_id)


def publish(jwks: Path, *issuers: JWTIssuer) -> None:
    """Write the providers' public keys as a JWKS document (what an IdP serves)."""
    jwks.write_text(json.dumps({"keys": [issuer.public_jwk() for issuer in issuers]}))


def whoami(client, options=None) -> str:
    row = client.do_get(flight.Ticket(b"whoami"), options).read_all().to_pylist()[0]
    return f"{row['name']} with roles {row['roles']}"


def bearer(token: str) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {token}".encode())])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        certs = generate_dev_certificates(tmp, hosts=["localhost"])
        jwks = Path(tmp) / "jwks.json"
        current = identity_provider("key-1")
        publish(jwks, current)
        verifier = JWTVerifier.from_jwks_file(jwks, ["EdDSA"], issuer=IDP, audience=AUDIENCE)
        server = WhoAmIServer(
            location="grpc+tls://localhost:0", auth_handler=JWTServerAuthHandler(verifier),
            tls_certificates=[flight.CertKeyPair(*certs.server_pems())])
        with server:
            print(f"server listening on {server.location}, trusting the keys in {jwks.name}")
            client = flight.connect(server.location, tls_root_certs=certs.ca_cert_pem())
            token = current.issue("alice", roles=["analyst"])
            print(f"Bearer header:       the server saw {whoami(client, bearer(token))}")

            rotated = identity_provider("key-2")
            publish(jwks, current, rotated)
            token = rotated.issue("bob", roles=["admin"])
            print(f"after key rotation:  the server saw {whoami(client, bearer(token))}")

            stranger = JWTIssuer(Ed25519PrivateKey.generate(), "EdDSA", issuer=IDP,
                                 audience=AUDIENCE, key_id="key-1")
            try:
                whoami(client, bearer(stranger.issue("mallory", roles=["admin"])))
            except flight.FlightUnauthenticatedError as exc:
                print(f"a token signed by an unknown key is refused: {exc}")

            # The Handshake way: the client keeps the token and sends it on every call.
            client = flight.connect(server.location, tls_root_certs=certs.ca_cert_pem())
            client.authenticate(JWTClientAuthHandler(current.issue("carol", roles=["viewer"])))
            print(f"Handshake with JWT:  the server saw {whoami(client)}")


if __name__ == "__main__":
    main()
