"""``flight-secure demo``: a secure server and client end to end, narrated, in a few seconds.

In a temporary folder it makes a throw-away CA with a server certificate and client
certificates for ``alice`` and ``mallory``, and a password store holding alice (random
password, kept in memory, never shown). It starts a data server on localhost that
demands both: mutual TLS, then a password login that hands out a session token
(Basic -> JWT) bound to the client's certificate. Then, as alice, it uploads a table,
lists and reads it back, and shows the identity the server saw on every call; finally
it shows a wrong password refused, and alice's token refused when mallory presents it
with her own (valid) certificate. Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from flight_secure.auth.passwords import PasswordStore
from flight_secure.certs import DevCertificates, generate_dev_certificates
from flight_secure.cli import setup
from flight_secure.cli.dataserver import DatasetServer
from flight_secure.cli.datasets import DatasetFolder
from flight_secure.cli.permissions import Permissions
from flight_secure.client import FlightCallOptions, FlightClient
from flight_secure.errors import FlightUnauthenticatedError
from flight_secure.types import CertKeyPair, FlightDescriptor, Location

USER = "alice"
OTHER = "mallory"
DATASET = "trips"
CALL_TIMEOUT = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``demo`` takes no options of its own."""
    parser.set_defaults(run=run)


class _Narrator(logging.Handler):
    """Prints what the server audited, as sentences: identities seen, logins checked."""

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "audit", None)
        if event is None:
            return
        if event["event"] in ("call allowed", "call refused") and "dataset" in event:
            target = f" for {event['dataset']!r}" if event["dataset"] != "*" else ""
            refused = " (refused)" if event["event"] == "call refused" else ""
            print(f"    server saw {event['who']} ({event['scheme']}) on {event['rpc']}"
                  f"{target}{refused}")
        elif event["event"] == "upload stored":
            print(f"    server stored {event['rows']} rows as {event['dataset']!r}")
        elif event["event"].startswith("login"):
            print(f"    server: {event['event']} for {event['who']} ({event['reason']})")


@contextmanager
def _narrated() -> Iterator[None]:
    """Route the server's logs to the narrator while the demo runs (it tells the audit
    records; the rest is not shown)."""
    loggers = [logging.getLogger(n) for n in ("flight_secure.serve", "flight_secure.audit")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    narrator = _Narrator()
    for lg in loggers:
        lg.addHandler(narrator)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, (level, propagate) in zip(loggers, saved):
            lg.removeHandler(narrator)
            lg.setLevel(level)
            lg.propagate = propagate


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when every step behaved as described."""
    print("flight-secure demo: a Flight data server on localhost that wants a client "
          "certificate AND a password.")
    with tempfile.TemporaryDirectory(prefix="flight-secure-demo-") as tmp, _narrated():
        folder = Path(tmp)
        (folder / "data").mkdir()
        certs = generate_dev_certificates(folder / "certs", hosts=["localhost"],
                                          clients=[USER, OTHER])
        print(f"made a throw-away CA, a server certificate and client certificates for "
              f"{USER} and {OTHER} in {folder}")
        password = secrets.token_urlsafe(16)
        store = PasswordStore(rounds=10)
        store.add(USER, password)
        handler = setup.auth_handler(store, None, mtls=True)
        server = DatasetServer(
            DatasetFolder(folder / "data"),
            Permissions({USER: frozenset({"read", "write"})}, source="demo"),
            location=Location.for_grpc_tls("localhost", 0),
            tls_certificates=[CertKeyPair(*certs.server_pems())],
            verify_client=True, root_certificates=certs.ca_cert_pem(), auth_handler=handler)
        try:
            print(f"server listening on {server.location}")
            ok = _client_steps(server.location, certs, password)
        finally:
            server.shutdown()
            setup.close_handler(handler)
    print("server stopped and the temporary folder removed.")
    print("done." if ok else "something did not go as described (see above).")
    return 0 if ok else 1


def _client_steps(location: Location, certs: DevCertificates, password: str) -> bool:
    """Alice's session, then two refusals; True when every step went as described."""
    ca = certs.ca_cert_pem()
    cert, key = certs.client_pems(USER)
    print(f"client: connecting as {USER} with her certificate, logging in with her password")
    with FlightClient(location, tls_root_certs=ca, cert_chain=cert, private_key=key) as client:
        header = client.authenticate_basic_token(USER, password,
                                                 FlightCallOptions(timeout=CALL_TIMEOUT))
        print("client: logged in; the server answered with a session token for later calls")
        options = FlightCallOptions(headers=[header], timeout=CALL_TIMEOUT)
        intact = _round_trip(client, options)
        print("client: now logging in with a wrong password ...")
        wrong_password = _refused(lambda: client.authenticate_basic_token(
            USER, password + "-wrong", FlightCallOptions(timeout=CALL_TIMEOUT)))
    print(f"client: now {OTHER}, with a valid certificate of her own, tries {USER}'s token ...")
    cert, key = certs.client_pems(OTHER)
    with FlightClient(location, tls_root_certs=ca, cert_chain=cert, private_key=key) as thief:
        stolen_token = _refused(lambda: list(thief.list_flights(options=options)))
    return intact and wrong_password and stolen_token


def _round_trip(client: FlightClient, options: FlightCallOptions) -> bool:
    """Upload a table, list it, read it back; True when it came back unchanged."""
    table = pa.table({"city": ["Oslo", "Lima", "Pune"], "km": [12.5, 3.0, 7.25]})
    writer, _ = client.do_put(FlightDescriptor.for_path(DATASET), table.schema, options)
    writer.write_table(table)
    writer.close()
    print(f"client: uploaded {table.num_rows} rows as dataset {DATASET!r}")
    listed = [(i.descriptor.path[0].decode(), i.total_records)
              for i in client.list_flights(options=options)]
    print(f"client: the server lists {', '.join(f'{n} ({r} rows)' for n, r in listed)}")
    info = client.get_flight_info(FlightDescriptor.for_path(DATASET), options)
    back = client.do_get(info.endpoints[0].ticket, options).read_all()
    same = back.equals(table)
    print(f"client: read {back.num_rows} rows back, "
          f"{'identical to' if same else 'DIFFERENT from'} what was uploaded")
    return same


def _refused(attempt: Callable[[], object]) -> bool:
    """Run ``attempt``; say whether the server refused it as unauthenticated."""
    try:
        attempt()
    except FlightUnauthenticatedError as exc:
        print(f"client: refused, as it should be: {str(exc).split(' (gRPC')[0]}")
        return True
    print("client: it was NOT refused")
    return False
