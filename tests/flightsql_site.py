"""A Flight SQL test site: a data folder, users, rights, certificates and a running server.

``alice`` reads and writes everything; ``bob`` reads everything but ``people`` and
``payroll``; ``carol`` (mTLS only) reads ``sales``. The folder holds ``people``
(Parquet), ``sales`` (CSV), ``payroll`` (Feather, with a secret marker value) and a
file outside every dataset, ``secret.txt`` beside the folder, to try to read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.feather as feather
import pyarrow.parquet as pq

from flight_secure.auth.basic import BasicServerAuthHandler
from flight_secure.auth.mtls import MutualTLSServerAuthHandler
from flight_secure.auth.passwords import PasswordStore
from flight_secure.certs import generate_dev_certificates
from flight_secure.cli.dataserver import DatasetServer
from flight_secure.cli.datasets import DatasetFolder
from flight_secure.cli.permissions import load_permissions
from flight_secure.cli.setup import close_handler
from flight_secure.sql import FlightSqlService, SqlLimits
from flight_secure.types import CertKeyPair, Location

PASSWORDS = {"alice": "alice-pw-1", "bob": "bob-pw-22"}
SECRET = "TOP-SECRET-7f3a"
PERMISSIONS = """\
[users]
alice = read, overwrite
bob = read
carol = none

[dataset people]
bob = none

[dataset payroll]
alice = read
bob = none

[dataset sales]
carol = read
"""
PEOPLE = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["ann", "ben", "cy"]})
SALES = pa.table({"id": [1, 1, 2, 3], "amount": [10.0, 5.0, 7.5, 1.25]})
PAYROLL = pa.table({"id": [1, 2], "salary": [SECRET, SECRET]})


@dataclass
class Site:
    """A running server and how to reach it."""

    server: DatasetServer
    root: Path
    data: Path
    certs: Any

    @property
    def uri(self) -> str:
        return f"grpc+tls://localhost:{self.server.port}"

    def connect(self, user: str | None = None, password: str | None = None,
                client: str | None = None) -> Any:
        """An ADBC Flight SQL DB-API connection (the Go driver)."""
        import adbc_driver_flightsql.dbapi as flightsql
        from adbc_driver_flightsql import DatabaseOptions

        options = {DatabaseOptions.TLS_ROOT_CERTS.value: self.certs.ca_cert_pem().decode()}
        if user is not None:
            options.update(username=user, password=password)
        if client is not None:
            cert, key = self.certs.client_pems(client)
            options[DatabaseOptions.MTLS_CERT_CHAIN.value] = cert.decode()
            options[DatabaseOptions.MTLS_PRIVATE_KEY.value] = key.decode()
        return flightsql.connect(self.uri, db_kwargs=options, autocommit=True)


def write_folder(root: Path) -> Path:
    data = root / "data"
    data.mkdir()
    pq.write_table(PEOPLE, data / "people.parquet")
    pa_csv.write_csv(SALES, data / "sales.csv")
    feather.write_feather(PAYROLL, data / "payroll.feather")
    (root / "secret.txt").write_text(SECRET)
    (root / "rights.ini").write_text(PERMISSIONS)
    return data


@contextlib.contextmanager
def running_site(root: Path, *, mtls: bool = False,
                 limits: SqlLimits | None = None) -> Iterator[Site]:
    """A TLS server with Basic auth (or, with ``mtls``, client-certificate identity)."""
    data = write_folder(root)
    certs = generate_dev_certificates(root / "certs", ["localhost", "127.0.0.1"],
                                      clients=["carol", "mallory"] if mtls else [])
    folder = DatasetFolder(data)
    options: dict[str, Any] = {
        "location": Location.for_grpc_tls("localhost", 0),
        "tls_certificates": [CertKeyPair(*certs.server_pems())],
    }
    if mtls:
        handler: Any = MutualTLSServerAuthHandler()
        options.update(verify_client=True, root_certificates=certs.ca_cert_pem())
    else:
        store = PasswordStore()
        for user, password in PASSWORDS.items():
            store.add(user, password)
        handler = BasicServerAuthHandler(store)
    server = DatasetServer(folder, load_permissions(root / "rights.ini"),
                           sql=FlightSqlService(folder, limits, server_version="test"),
                           auth_handler=handler, **options)
    try:
        yield Site(server, root, data, certs)
    finally:
        server.shutdown()
        server.sql.close()
        close_handler(handler)
