"""``flight-secure serve`` as users run it: a subprocess on a free port, real TLS, real clients.

The shared server (module fixture) serves a folder with a Parquet, a Feather and a CSV
file to two users: alice may read and write, bob may only read (and not ``people``).
Other tests start their own server for first-run defaults, mTLS, JWT and signals.
The shared server and the Basic and JWT servers run on both engines (``--engine``).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.feather as feather
import pyarrow.flight as pa_flight
import pyarrow.parquet as pq
import pytest
from conftest import wait_until
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from serving import START_TIMEOUT, Lines, Served

import flight_secure
from flight_secure.auth.passwords import PasswordStore
from flight_secure.auth.tokens import JWTIssuer
from flight_secure.certs import generate_dev_certificates
from flight_secure.cli.dataserver import DatasetServer
from flight_secure.cli.datasets import DatasetFolder
from flight_secure.cli.permissions import default_permissions, load_permissions
from flight_secure.cli.serve import EPILOG

ROOT = Path(__file__).resolve().parents[1]
IMPLS = {"pyarrow": pa_flight, "flight_secure": flight_secure}
ENGINES = ["python", "arrow"]
PASSWORDS = {"alice": "alice-password", "bob": "bob-password"}
TABLE = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["ann", "ben", "cy"]})
PERMISSIONS = """\
[users]
alice = read, write
bob = read

[dataset people]
alice = read
bob = none

[dataset scratch]
alice = read, overwrite
"""


@dataclass
class Site:
    """A served folder and what clients need to reach it, and the engine serving it."""

    server: Served
    data: Path
    ca: bytes
    engine: str

    def refusal(self, error: type) -> type:
        """The error flight_secure's client raises for a handler's ``error`` on this engine:
        pyarrow's sends INVALID_ARGUMENT, NOT_FOUND and ALREADY_EXISTS as UNKNOWN."""
        return error if self.engine == "python" else flight_secure.FlightServerError

    def connect(self, flight: ModuleType, **kwargs: Any) -> Any:
        return flight.connect(f"grpc+tls://127.0.0.1:{self.server.port}", tls_root_certs=self.ca,
                              **kwargs)

    def login(self, flight: ModuleType, user: str) -> tuple[Any, Any]:
        """A client logged in as ``user`` and the call options carrying its token."""
        client = self.connect(flight)
        header = client.authenticate_basic_token(user, PASSWORDS[user])
        return client, flight.FlightCallOptions(headers=[header])


def write_data(data: Path) -> None:
    data.mkdir()
    pq.write_table(TABLE, data / "sales.parquet")
    feather.write_feather(TABLE, data / "items.feather")
    pa_csv.write_csv(TABLE, data / "people.csv")
    pq.write_table(TABLE, data / ".hidden.parquet")
    (data / "notes.txt").write_text("not a dataset")


@pytest.fixture(scope="module", params=ENGINES)
def site(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("serve")
    write_data(base / "data")
    certs = generate_dev_certificates(base / "certs")
    store = PasswordStore(rounds=4)
    for user, password in PASSWORDS.items():
        store.add(user, password)
    store.save(base / "users.htpasswd")
    (base / "rights.ini").write_text(PERMISSIONS)
    server = Served(["--data", "data", "--users", "users.htpasswd", "--permissions",
                     "rights.ini", "--certs-dir", "certs", "--engine", request.param], cwd=base)
    yield Site(server, base / "data", certs.ca_cert_pem(), request.param)
    assert server.stop() == 0


def upload(client: Any, flight: ModuleType, name: str, options: Any,
           table: pa.Table = TABLE) -> bytes:
    writer, reader = client.do_put(flight.FlightDescriptor.for_path(name), table.schema, options)
    writer.write_table(table)
    writer.done_writing()
    reply = reader.read()
    writer.close()
    return reply.to_pybytes() if reply is not None else b""


def leftovers(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir() if p.name.endswith(".upload"))


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize("impl", IMPLS)
def test_list_flights_shows_one_dataset_per_data_file(site: Site, impl: str) -> None:
    client, options = site.login(IMPLS[impl], "alice")
    infos = {i.descriptor.path[0].decode(): i for i in client.list_flights(options=options)}
    assert set(infos) >= {"sales", "items", "people"}
    assert "hidden" not in " ".join(infos) and "notes" not in infos
    assert infos["sales"].total_records == 3


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["sales", "items", "people"])
def test_flight_info_and_schema_describe_the_file(site: Site, impl: str, name: str) -> None:
    flight = IMPLS[impl]
    client, options = site.login(flight, "alice")
    descriptor = flight.FlightDescriptor.for_path(name)
    info = client.get_flight_info(descriptor, options)
    assert info.schema == TABLE.schema
    assert info.total_records == 3
    assert info.total_bytes == next(site.data.glob(f"{name}.*")).stat().st_size
    assert [e.ticket.ticket for e in info.endpoints] == [name.encode()]
    assert client.get_schema(descriptor, options).schema == TABLE.schema


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["sales", "items", "people"])
def test_do_get_streams_each_format(site: Site, impl: str, name: str) -> None:
    flight = IMPLS[impl]
    client, options = site.login(flight, "alice")
    assert client.do_get(flight.Ticket(name.encode()), options).read_all().equals(TABLE)


def test_a_big_file_is_streamed_in_batches(site: Site) -> None:
    big = pa.table({"v": pa.array(range(300_000), pa.int64())})
    pq.write_table(big, site.data / "big.parquet", row_group_size=50_000)
    client, options = site.login(flight_secure, "bob")
    reader = client.do_get(flight_secure.Ticket(b"big"), options)
    sizes = [chunk.data.num_rows for chunk in reader]
    assert sum(sizes) == 300_000 and len(sizes) > 1 and max(sizes) <= 64 * 1024


def test_an_unreadable_file_is_an_error_id_whose_details_are_in_the_server_log(
        site: Site) -> None:
    (site.data / "broken.parquet").write_bytes(b"this is not parquet")
    client, options = site.login(flight_secure, "bob")
    with pytest.raises(flight_secure.FlightInternalError) as refused:
        client.get_flight_info(flight_secure.FlightDescriptor.for_path("broken"), options)
    assert "broken" in str(refused.value) and str(site.data) not in str(refused.value)
    error_id = re.search(r"error id ([0-9a-f]{8})", str(refused.value))
    assert error_id is not None, str(refused.value)
    assert "broken.parquet" in site.server.err.wait_for(f"error id {error_id[1]}")
    listed = {i.descriptor.path[0] for i in client.list_flights(options=options)}
    assert b"broken" not in listed and b"sales" in listed
    (site.data / "broken.parquet").unlink()


def test_every_call_is_logged_with_who_did_what(site: Site) -> None:
    client, options = site.login(flight_secure, "bob")
    client.do_get(flight_secure.Ticket(b"items"), options).read_all()
    site.server.err.wait_for("call allowed: who=bob scheme=basic rpc=DoGet dataset=items")


@pytest.mark.parametrize("separator", ["\n", "\x85", "\u2028", "\u202e"],
                         ids=["newline", "next-line", "line-separator", "right-to-left"])
def test_a_caller_cannot_forge_log_lines(site: Site, separator: str) -> None:
    client, options = site.login(flight_secure, "bob")
    list(client.list_flights(f"x{separator}alice DoPut forged".encode(), options))
    escaped = json.dumps(f"x{separator}alice DoPut forged")
    site.server.err.wait_for(f"who=bob scheme=basic rpc=ListFlights dataset={escaped}")
    assert not any(separator in line for line in site.server.err.lines)
    assert not any(line.startswith("alice DoPut forged") for line in site.server.err.lines)


# ----------------------------------------------------------------------------- writing


@pytest.mark.parametrize("impl", IMPLS)
def test_do_put_creates_a_new_parquet_file(site: Site, impl: str) -> None:
    flight = IMPLS[impl]
    client, options = site.login(flight, "alice")
    reply = json.loads(upload(client, flight, f"upload_{impl}", options))
    assert reply == {"dataset": f"upload_{impl}", "rows": 3}
    site.server.err.wait_for(
        f"upload stored: who=alice scheme=basic rpc=DoPut dataset=upload_{impl} rows=3")
    assert pq.read_table(site.data / f"upload_{impl}.parquet").equals(TABLE)
    assert client.do_get(flight.Ticket(f"upload_{impl}".encode()), options).read_all() == TABLE
    assert leftovers(site.data) == []


def test_an_existing_dataset_is_not_overwritten_without_the_right(site: Site) -> None:
    client, options = site.login(flight_secure, "alice")
    before = (site.data / "sales.parquet").read_bytes()
    with pytest.raises(flight_secure.FlightUnauthorizedError, match="overwrite"):
        upload(client, flight_secure, "sales", options, TABLE.slice(0, 1))
    assert (site.data / "sales.parquet").read_bytes() == before


def test_the_overwrite_right_replaces_a_dataset(site: Site) -> None:
    client, options = site.login(flight_secure, "alice")
    upload(client, flight_secure, "scratch", options)
    upload(client, flight_secure, "scratch", options, TABLE.slice(0, 1))
    assert pq.read_table(site.data / "scratch.parquet").num_rows == 1


def test_a_second_upload_of_the_same_new_name_is_refused_while_the_first_runs(
        site: Site) -> None:
    first_client, options = site.login(flight_secure, "alice")
    descriptor = flight_secure.FlightDescriptor.for_path("contested")
    first, _ = first_client.do_put(descriptor, TABLE.schema, options)
    first.write_table(TABLE)
    wait_until(lambda: any(n.startswith(".contested.") for n in leftovers(site.data)), 30)
    second_client, options = site.login(flight_secure, "alice")
    with pytest.raises(site.refusal(flight_secure.FlightAlreadyExistsError)):
        upload(second_client, flight_secure, "contested", options, TABLE.slice(0, 1))
    first.close()
    assert pq.read_table(site.data / "contested.parquet").equals(TABLE)
    with pytest.raises(flight_secure.FlightUnauthorizedError):  # now it exists: no overwrite
        upload(second_client, flight_secure, "contested", options)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_read_only_user_cannot_do_put(site: Site, impl: str) -> None:
    flight = IMPLS[impl]
    client, options = site.login(flight, "bob")
    with pytest.raises(flight.FlightUnauthorizedError):
        upload(client, flight, f"bob_{impl}", options)
    assert not (site.data / f"bob_{impl}.parquet").exists()


def test_rights_are_per_dataset(site: Site) -> None:
    client, options = site.login(flight_secure, "bob")
    assert "people" not in {i.descriptor.path[0] for i in client.list_flights(options=options)}
    with pytest.raises(flight_secure.FlightUnauthorizedError):
        client.do_get(flight_secure.Ticket(b"people"), options).read_all()


@pytest.mark.parametrize("impl", IMPLS)
def test_unknown_user_and_wrong_password_are_refused(site: Site, impl: str) -> None:
    flight = IMPLS[impl]
    client = site.connect(flight)
    for user, password in (("mallory", "guess"), ("alice", "not-her-password")):
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.authenticate_basic_token(user, password)
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(client.list_flights())


BAD_NAMES = {
    "parent": "../sales", "slash": "a/b", "backslash": "a\\b", "hidden": ".hidden",
    "dots": "..", "empty": "", "nul": "x\x00y", "next-line": "a\x85b",
    "right-to-left-override": "report\u202etxt.exe", "left-to-right-mark": "\u200esales",
    "first-strong-isolate": "a\u2068b", "line-separator": "a\u2028b",
    "paragraph-separator": "a\u2029b", "byte-order-mark": "\ufeffsales",
    "no-break-space": "a\u00a0b", "private-use": "a\ue000b", "two-byte-x200": "\u00e9" * 200,
}


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_bad_dataset_names_are_invalid_arguments(site: Site, name: str) -> None:
    client, options = site.login(flight_secure, "alice")
    descriptor = flight_secure.FlightDescriptor.for_path(name)
    invalid = site.refusal(flight_secure.FlightInvalidArgumentError)
    files = set(site.data.iterdir())
    refusals = []
    with pytest.raises(invalid, match="dataset name") as refused:
        client.get_flight_info(descriptor, options)
    refusals.append(str(refused.value))
    with pytest.raises(invalid, match="dataset name") as refused:
        client.do_get(flight_secure.Ticket(name.encode()), options).read_all()
    refusals.append(str(refused.value))
    with pytest.raises(invalid, match="dataset name") as refused:
        upload(client, flight_secure, name, options)
    refusals.append(str(refused.value))
    assert set(site.data.iterdir()) == files and not (site.data.parent / "sales.parquet").exists()
    assert not [text for text in refusals if str(site.data) in text or "Errno" in text]


def test_the_longest_name_the_file_system_takes_works_and_one_byte_more_is_refused(
        site: Site) -> None:
    client, options = site.login(flight_secure, "alice")
    longest = "\u00e9" * 117  # 234 bytes: the upload's temporary file name is 255 bytes
    assert json.loads(upload(client, flight_secure, longest, options))["rows"] == 3
    assert client.do_get(flight_secure.Ticket(longest.encode()), options).read_all() == TABLE
    with pytest.raises(site.refusal(flight_secure.FlightInvalidArgumentError),
                       match="bytes") as refused:
        upload(client, flight_secure, longest + "a", options)
    assert "Errno" not in str(refused.value) and "data/" not in str(refused.value)


def test_a_refused_upload_does_not_tell_whether_a_hidden_dataset_exists(site: Site) -> None:
    client, options = site.login(flight_secure, "bob")  # bob may not even read "people"
    answers = []
    for name in ("people", "no_such_dataset"):
        with pytest.raises(flight_secure.FlightUnauthorizedError) as refused:
            upload(client, flight_secure, name, options)
        answers.append(str(refused.value).replace(name, "NAME"))
    assert answers[0] == answers[1] and "may not write" in answers[0]


@pytest.mark.parametrize("descriptor", [
    flight_secure.FlightDescriptor.for_path("a", "b"),
    flight_secure.FlightDescriptor.for_command(b"sales"),
], ids=["two-element-path", "command"])
def test_only_one_element_paths_name_datasets(site: Site, descriptor: Any) -> None:
    client, options = site.login(flight_secure, "alice")
    with pytest.raises(site.refusal(flight_secure.FlightInvalidArgumentError),
                       match="one-element path"):
        client.get_flight_info(descriptor, options)


def test_a_file_system_failure_reaches_the_client_as_an_error_id_only(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    write_data(data)
    server = DatasetServer(DatasetFolder(data), default_permissions("anonymous"),
                           location="grpc://127.0.0.1:0")
    try:
        client = flight_secure.connect(f"grpc://127.0.0.1:{server.port}")
        shutil.rmtree(data)
        data.write_text("the data folder is now a file")  # every path under it: ENOTDIR
        refusals = []
        with pytest.raises(flight_secure.FlightInternalError) as refused:
            upload(client, flight_secure, "new", flight_secure.FlightCallOptions())
        refusals.append(str(refused.value))
        with pytest.raises(flight_secure.FlightInternalError) as refused:
            list(client.list_flights())
        refusals.append(str(refused.value))
    finally:
        server.shutdown()
    for text in refusals:
        assert str(tmp_path) not in text and "Errno" not in text and "directory" not in text
        error_id = re.search(r"error id ([0-9a-f]{8})", text)
        assert error_id is not None, text
        logged = [r.getMessage() for r in caplog.records if error_id[1] in r.getMessage()]
        assert [line for line in logged if str(data) in line], caplog.text


CHILD_UPLOADER = """
import sys, pyarrow as pa, flight_secure as flight
location, ca, password = sys.argv[1], open(sys.argv[2], "rb").read(), sys.stdin.readline().strip()
client = flight.connect(location, tls_root_certs=ca)
options = flight.FlightCallOptions(headers=[client.authenticate_basic_token("alice", password)])
batch = pa.record_batch({"v": pa.array(range(50_000), pa.int64())})
writer, _ = client.do_put(flight.FlightDescriptor.for_path("partial"), batch.schema, options)
for i in range(1_000_000):
    writer.write_batch(batch)
    if i == 0:
        print("streaming", flush=True)
"""


def test_a_client_killed_mid_upload_leaves_no_file(site: Site, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(site.ca)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_UPLOADER, f"grpc+tls://127.0.0.1:{site.server.port}",
         str(tmp_path / "ca.pem")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        child.stdin.write(PASSWORDS["alice"] + "\n")
        child.stdin.close()
        Lines(child.stdout).wait_for("streaming")
        wait_until(lambda: any(n.startswith(".partial.") for n in leftovers(site.data)), 30)
    finally:
        child.kill()
        child.wait()
    wait_until(lambda: leftovers(site.data) == [], 30)
    assert not (site.data / "partial.parquet").exists()
    client, options = site.login(flight_secure, "alice")
    assert "partial" not in {i.descriptor.path[0] for i in client.list_flights(options=options)}


# ------------------------------------------------------------------ servers of their own


@pytest.mark.parametrize("engine", ENGINES)
def test_first_run_makes_certificates_and_shows_the_admin_password_once(tmp_path: Path,
                                                                        engine: str) -> None:
    write_data(tmp_path / "data")
    server = Served(["--data", "data", "--engine", engine], cwd=tmp_path)
    try:
        text = server.out.text
        password = text.split("shown only this once:", 1)[1].split()[0]
        assert text.count(password) == 1 and password not in server.err.text
        assert "authenticate_basic_token" in text and "certs/ca.pem" in text
        assert (tmp_path / "users.htpasswd").exists() and (tmp_path / "certs/ca.pem").exists()
        client = pa_flight.connect(server.location.replace("127.0.0.1", "localhost"),
                                   tls_root_certs=(tmp_path / "certs/ca.pem").read_bytes())
        options = pa_flight.FlightCallOptions(
            headers=[client.authenticate_basic_token("admin", password)])
        assert json.loads(upload(client, pa_flight, "by_admin", options))["rows"] == 3
    finally:
        assert server.stop() == 0
    again = Served(["--data", "data"], cwd=tmp_path)
    try:
        assert "shown only this once" not in again.out.text
    finally:
        assert again.stop() == 0


def test_under_umask_0_nothing_made_is_open_to_other_accounts(tmp_path: Path) -> None:
    write_data(tmp_path / "data")
    server = Served(["--data", "data"], cwd=tmp_path, umask=0)
    try:
        password = server.out.text.split("shown only this once:", 1)[1].split()[0]
        client = flight_secure.connect(server.location, tls_root_certs=(
            tmp_path / "certs/ca.pem").read_bytes())
        options = flight_secure.FlightCallOptions(
            headers=[client.authenticate_basic_token("admin", password)])
        upload(client, flight_secure, "by_admin", options)
    finally:
        assert server.stop() == 0
    modes = {path: stat.S_IMODE(path.stat().st_mode) for path in [
        tmp_path / "certs", *(tmp_path / "certs").iterdir(), tmp_path / "users.htpasswd",
        tmp_path / "data" / "by_admin.parquet"]}
    assert modes.pop(tmp_path / "certs") == 0o755
    assert modes.pop(tmp_path / "certs" / "ca.pem") == modes.pop(
        tmp_path / "certs" / "server.pem") == 0o644
    assert set(modes.values()) == {0o600}, modes  # keys, password file, upload


def test_mtls_mode_names_callers_by_certificate(tmp_path: Path) -> None:
    write_data(tmp_path / "data")
    certs = generate_dev_certificates(tmp_path / "certs", clients=["alice"])
    server = Served(["--data", "data", "--auth", "mtls"], cwd=tmp_path)
    try:
        cert, key = certs.client_pems("alice")
        client = pa_flight.connect(server.location, tls_root_certs=certs.ca_cert_pem(),
                                   cert_chain=cert, private_key=key)
        assert client.do_get(pa_flight.Ticket(b"sales")).read_all().equals(TABLE)
        with pytest.raises(pa_flight.FlightUnauthorizedError):
            upload(client, pa_flight, "by_alice", pa_flight.FlightCallOptions())
        server.err.wait_for("who=alice scheme=mtls rpc=DoGet dataset=sales")
        with pytest.raises(flight_secure.FlightError):
            no_cert = flight_secure.connect(server.location, tls_root_certs=certs.ca_cert_pem())
            list(no_cert.list_flights(options=flight_secure.FlightCallOptions(timeout=10)))
    finally:
        assert server.stop() == 0


def test_passwords_plus_client_certificates_with_ca(tmp_path: Path) -> None:
    write_data(tmp_path / "data")
    certs = generate_dev_certificates(tmp_path / "certs", clients=["alice", "bob"])
    store = PasswordStore(rounds=4)
    store.add("alice", PASSWORDS["alice"])
    store.save(tmp_path / "users.htpasswd")
    server = Served(["--data", "data", "--users", "users.htpasswd", "--ca", "certs/ca.pem"],
                    cwd=tmp_path)
    try:
        def client_of(name: str) -> Any:
            cert, key = certs.client_pems(name)
            return flight_secure.connect(server.location, tls_root_certs=certs.ca_cert_pem(),
                                         cert_chain=cert, private_key=key)

        alice = client_of("alice")
        options = flight_secure.FlightCallOptions(
            headers=[alice.authenticate_basic_token("alice", PASSWORDS["alice"])])
        assert alice.do_get(flight_secure.Ticket(b"sales"), options).read_all().equals(TABLE)
        server.err.wait_for("who=alice scheme=basic+mtls rpc=DoGet dataset=sales")
        with pytest.raises(flight_secure.FlightUnauthenticatedError, match="another client"):
            list(client_of("bob").list_flights(options=options))  # alice's token, bob's cert
    finally:
        assert server.stop() == 0


def test_certificate_identity_on_the_arrow_engine_is_refused_clearly(tmp_path: Path) -> None:
    write_data(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "flight_secure", "serve", "--data", "data", "--auth", "mtls",
         "--engine", "arrow", "--port", "0"], cwd=tmp_path, capture_output=True, text=True,
        timeout=START_TIMEOUT, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--auth mtls needs --engine python" in result.stderr
    assert "client certificate" in result.stderr


def test_the_arrow_engine_keeps_the_ca_gate_in_front_of_passwords(tmp_path: Path) -> None:
    write_data(tmp_path / "data")
    certs = generate_dev_certificates(tmp_path / "certs", clients=["alice"])
    store = PasswordStore(rounds=4)
    store.add("alice", PASSWORDS["alice"])
    store.save(tmp_path / "users.htpasswd")
    server = Served(["--data", "data", "--users", "users.htpasswd", "--ca", "certs/ca.pem",
                     "--engine", "arrow"], cwd=tmp_path)
    try:
        cert, key = certs.client_pems("alice")
        alice = pa_flight.connect(server.location, tls_root_certs=certs.ca_cert_pem(),
                                  cert_chain=cert, private_key=key)
        token = alice.authenticate_basic_token("alice", PASSWORDS["alice"])
        options = pa_flight.FlightCallOptions(headers=[token], timeout=10)
        assert alice.do_get(pa_flight.Ticket(b"sales"), options).read_all().equals(TABLE)
        server.err.wait_for("who=alice scheme=basic rpc=DoGet dataset=sales")
        without = pa_flight.connect(server.location, tls_root_certs=certs.ca_cert_pem())
        with pytest.raises(pa_flight.FlightError):  # the TLS handshake fails
            without.authenticate_basic_token("alice", PASSWORDS["alice"])
        with pytest.raises(pa_flight.FlightUnavailableError):  # even with alice's token
            list(without.list_flights(options=options))
    finally:
        assert server.stop() == 0


def test_serve_help_says_which_engine_to_pick() -> None:
    result = subprocess.run([sys.executable, "-m", "flight_secure", "serve", "--help"],
                            capture_output=True, text=True, timeout=START_TIMEOUT, check=True)
    text = " ".join(result.stdout.split())
    assert "--engine {python,arrow}" in text
    assert "the only one that sees client certificates" in text
    assert "pyarrow.flight's C++ engine" in text


@pytest.mark.parametrize("engine", ENGINES)
def test_edits_of_the_users_and_rights_files_apply_without_a_restart(tmp_path: Path,
                                                                     engine: str) -> None:
    write_data(tmp_path / "data")
    generate_dev_certificates(tmp_path / "certs")
    store = PasswordStore(rounds=4)
    store.add("alice", "old-password")
    store.save(tmp_path / "users.htpasswd")
    (tmp_path / "rights.ini").write_text("[users]\nalice = read\n")
    server = Served(["--data", "data", "--users", "users.htpasswd", "--permissions",
                     "rights.ini", "--engine", engine], cwd=tmp_path)
    try:
        client = flight_secure.connect(server.location,
                                       tls_root_certs=(tmp_path / "certs/ca.pem").read_bytes())
        options = flight_secure.FlightCallOptions(
            headers=[client.authenticate_basic_token("alice", "old-password")])
        with pytest.raises(flight_secure.FlightUnauthorizedError):
            upload(client, flight_secure, "by_alice", options)

        store.add("alice", "new-password")
        store.save(tmp_path / "users.htpasswd")
        (tmp_path / "rights.new").write_text("[users]\nalice = read, write\n")
        (tmp_path / "rights.new").replace(tmp_path / "rights.ini")
        server.err.wait_for("reloaded users.htpasswd")
        server.err.wait_for("reloaded rights.ini")

        with pytest.raises(flight_secure.FlightUnauthenticatedError):
            client.authenticate_basic_token("alice", "old-password")
        options = flight_secure.FlightCallOptions(
            headers=[client.authenticate_basic_token("alice", "new-password")])
        assert json.loads(upload(client, flight_secure, "by_alice", options))["rows"] == 3
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_jwt_mode_accepts_tokens_signed_by_the_configured_key(tmp_path: Path,
                                                              engine: str) -> None:
    write_data(tmp_path / "data")
    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "jwt.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    certs = generate_dev_certificates(tmp_path / "certs")
    server = Served(["--data", "data", "--auth", "jwt", "--jwt-key", "jwt.pub",
                     "--jwt-audience", "data", "--engine", engine], cwd=tmp_path)
    try:
        client = pa_flight.connect(server.location, tls_root_certs=certs.ca_cert_pem())
        good = JWTIssuer(key, "EdDSA", audience="data").issue("carol").encode()
        options = pa_flight.FlightCallOptions(headers=[(b"authorization", b"Bearer " + good)])
        assert client.get_flight_info(pa_flight.FlightDescriptor.for_path("items"),
                                      options).total_records == 3
        other = JWTIssuer(ed25519.Ed25519PrivateKey.generate(), "EdDSA", audience="data")
        forged = pa_flight.FlightCallOptions(
            headers=[(b"authorization", b"Bearer " + other.issue("carol").encode())])
        with pytest.raises(pa_flight.FlightUnauthenticatedError):
            list(client.list_flights(options=forged))
        server.err.wait_for("who=carol scheme=jwt rpc=GetFlightInfo dataset=items")
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_server_cleanly(tmp_path: Path, signum: int, engine: str) -> None:
    write_data(tmp_path / "data")
    server = Served(["--data", "data", "--auth", "none", "--engine", engine], cwd=tmp_path)
    assert server.stop(signum) == 0
    assert "stopping" in server.out.text and "Traceback" not in server.err.text


def test_a_port_in_use_is_a_one_line_error(site: Site, tmp_path: Path) -> None:
    write_data(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "flight_secure", "serve", "--data", "data", "--auth", "none",
         "--port", str(site.server.port), "--engine", site.engine], cwd=tmp_path,
        capture_output=True, text=True,
        timeout=START_TIMEOUT, check=False)
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.returncode == 1 and len(errors) == 1 and "Traceback" not in result.stderr
    assert "could not listen" in errors[0]


# ------------------------------------------------------------------- the permissions file


def test_dataset_rules_come_before_user_rules_and_names_keep_case(tmp_path: Path) -> None:
    rules = tmp_path / "rights.ini"
    rules.write_text(PERMISSIONS.replace(
        "bob = read\n", "bob = read\nBob = write\nspiffe://example.org/svc = read # a URI\n"))
    rights = load_permissions(rules)
    assert rights.rights("alice", "people") == {"read"}
    assert rights.rights("bob", "people") == frozenset()
    assert rights.rights("bob", "sales") == {"read"} and rights.rights("Bob", "sales") == {"write"}
    assert rights.rights("spiffe://example.org/svc", "sales") == {"read"}
    assert rights.rights("alice", "scratch") == {"read", "write", "overwrite"}
    assert rights.rights("nobody", "sales") == frozenset()


@pytest.mark.parametrize(("text", "needle"), [
    ("[users]\nalice = read, delete\n", "delete"),
    ("[groups]\nalice = read\n", "[groups]"),
    ("alice = read\n", "section"),
], ids=["unknown-right", "unknown-section", "no-section"])
def test_a_malformed_permissions_file_is_refused_naming_it(tmp_path: Path, text: str,
                                                           needle: str) -> None:
    rules = tmp_path / "rights.ini"
    rules.write_text(text)
    with pytest.raises(ValueError, match=r"rights\.ini") as refused:
        load_permissions(rules)
    assert needle in str(refused.value)


def test_the_example_in_serve_help_is_a_valid_permissions_file(tmp_path: Path) -> None:
    example = "\n".join(line for line in EPILOG.splitlines() if line.startswith("  "))
    (tmp_path / "rights.ini").write_text(example)
    rights = load_permissions(tmp_path / "rights.ini")
    assert rights.rights("alice", "payroll") == {"read", "write", "overwrite"}
    assert rights.rights("bob", "payroll") == frozenset()


def test_without_a_permissions_file_admin_writes_and_everyone_reads() -> None:
    rights = default_permissions("admin")
    assert rights.rights("admin", "x") == {"read", "write"}
    assert rights.rights("anyone", "x") == {"read"}
