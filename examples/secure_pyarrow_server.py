# secure_pyarrow_server.py: an existing pyarrow.flight server gains logins, rights and audit.
#
# Shows: a plain pyarrow.flight.FlightServerBase (pyarrow's C++ engine) made secure by
# one argument line, **flight_secure.arrow.server_options(handler, policy, ...): Basic
# logins that hand out session tokens (JWTServerAuthHandler plugs in the same way), an
# AccessPolicy per RPC and per action type, and the audit log. Handlers read the
# caller with flight_secure.arrow.principal(context). The clients are pyarrow's:
# authenticate_basic_token, and flight_secure's BasicClientAuthHandler through
# flight_secure.arrow.connect.
#
# Run: python examples/secure_pyarrow_server.py   (no arguments; all in a temp folder)

import logging
import sys
import tempfile

import pyarrow as pa
import pyarrow.flight as flight

import flight_secure.arrow
from flight_secure.auth import (
    AccessPolicy,
    BasicClientAuthHandler,
    BasicServerAuthHandler,
    PasswordStore,
)
from flight_secure.certs import generate_dev_certificates


class Reports(flight.FlightServerBase):
    """The server as it was before: pyarrow's base class, pyarrow's types."""

    def do_get(self, context, ticket):
        caller = flight_secure.arrow.principal(context)
        return flight.RecordBatchStream(pa.table({
            "report": [ticket.ticket.decode()],
            "for": [caller.name],
            "roles": [",".join(sorted(caller.roles))],
        }))

    def do_action(self, context, action):
        flight_secure.arrow.authorize_action(context, action)  # the rules per action type
        yield f"{action.type} done by {flight_secure.arrow.principal(context).name}".encode()


def shown(error: Exception) -> str:
    """An error's message without the status detail pyarrow appends."""
    return str(error).split(". Detail")[0]


def main() -> None:
    shown_audit = logging.StreamHandler(sys.stdout)
    shown_audit.setFormatter(logging.Formatter("  audit: %(message)s"))
    audit = logging.getLogger("flight_secure.audit")
    audit.addHandler(shown_audit)
    audit.setLevel(logging.WARNING)  # refusals; INFO adds every login
    with tempfile.TemporaryDirectory() as tmp:
        certs = generate_dev_certificates(tmp, hosts=["localhost"])
        users = PasswordStore(rounds=10)  # 12 (the default) or more in production
        users.add("alice", "wonderland")
        users.add("bob", "builder")
        handler = BasicServerAuthHandler(users, roles={"alice": ["analyst", "admin"],
                                                       "bob": ["analyst"]})
        policy = AccessPolicy({"DoGet": ["analyst"]}, actions={"purge": ["admin"]})

        server = Reports("grpc+tls://localhost:0", **flight_secure.arrow.server_options(
            handler, policy, tls_certificates=[certs.server_pems()]))
        with server:
            location = f"grpc+tls://localhost:{server.port}"
            ca = certs.ca_cert_pem()
            print(f"pyarrow server secured by flight_secure at {location}")

            client = flight.connect(location, tls_root_certs=ca)
            options = flight.FlightCallOptions(
                headers=[client.authenticate_basic_token("alice", "wonderland")])
            row = client.do_get(flight.Ticket(b"sales"), options).read_all().to_pylist()[0]
            print(f"authenticate_basic_token: report {row['report']} for {row['for']} "
                  f"({row['roles']})")
            print(next(iter(client.do_action("purge", options))).body.to_pybytes().decode())

            with flight_secure.arrow.connect(location, BasicClientAuthHandler("bob", "builder"),
                                             tls_root_certs=ca) as bob:
                row = bob.do_get(flight.Ticket(b"daily")).read_all().to_pylist()[0]
                print(f"BasicClientAuthHandler:   report {row['report']} for {row['for']}")
                try:
                    list(bob.do_action("purge"))
                except flight.FlightUnauthorizedError as exc:
                    print(f"bob may not purge: {shown(exc)}")
            try:
                client.authenticate_basic_token("alice", "looking-glass")
            except flight.FlightUnauthenticatedError as exc:
                print(f"a wrong password is refused: {shown(exc)}")
        handler.close()


if __name__ == "__main__":
    main()
