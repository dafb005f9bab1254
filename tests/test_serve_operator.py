"""``flight-secure serve`` as an operator meets it: checks at start, limits, messages, stopping.

Each test starts its own ``python -m flight_secure serve`` (or runs the command in
this process when it must fail before serving) in a temporary folder. Stopping is
tested on both engines (``--engine``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import wait_until
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from raw_wire import rpc_path
from serving import START_TIMEOUT, Served

import flight_secure
from flight_secure._generated import flight_pb2 as pb
from flight_secure.auth.base import ServerAuthHandler
from flight_secure.auth.mtls import MutualTLSServerAuthHandler
from flight_secure.certs import CertificateAuthority, DevCertificates, generate_dev_certificates
from flight_secure.cli import main, setup
from flight_secure.cli.serve import MAX_MESSAGE_MIB

TABLE = pa.table({"id": pa.array([1, 2, 3], pa.int64())})
BIG_ROWS = 2_000_000  # streamed in batches of 64K rows
MIB = 1024 * 1024
CALL_TIMEOUT = 30.0
ENGINES = ["python", "arrow"]
NOBODY = 65534


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, DevCertificates]:
    """A folder with ``data/`` (sales, items, big) and a development set in ``certs/``."""
    (tmp_path / "data").mkdir()
    for name in ("sales", "items"):
        pq.write_table(TABLE, tmp_path / "data" / f"{name}.parquet")
    big = pa.table({"v": pa.array(range(BIG_ROWS), pa.int64())})
    pq.write_table(big, tmp_path / "data" / "big.parquet", row_group_size=100_000)
    return tmp_path, generate_dev_certificates(tmp_path / "certs", clients=["alice"])


def serve_fails(folder: Path, *args: str, capsys: pytest.CaptureFixture[str],
                monkeypatch: pytest.MonkeyPatch) -> str:
    """Run ``serve ARGS`` in this process in ``folder``; it must fail with exit status 1
    and one ``error:`` line, which is returned."""
    monkeypatch.chdir(folder)
    status = main(["serve", "--data", "data", "--port", "0", *args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert status == 1 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------- TLS files


def write_certificate(folder: Path, stem: str, issuer: x509.Name, signer: Any, *,
                      days: tuple[int, int], ca: bool = False) -> tuple[Path, Path]:
    """A certificate for localhost/127.0.0.1 valid from ``days[0]`` to ``days[1]`` days
    from now, signed by ``signer`` (its own new key when None), written with its key
    as ``STEM.pem``/``STEM.key``; returns the two paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days[0])).not_valid_after(now + dt.timedelta(days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(signer or key, hashes.SHA256()))
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


BAD_TLS_FILES = {
    "key-as-certificate": (["--tls-cert", "certs/server.key", "--tls-key", "certs/server.key"],
                           ["--tls-cert certs/server.key is a private key, not a certificate"]),
    "certificate-as-key": (["--tls-cert", "certs/server.pem", "--tls-key", "certs/server.pem"],
                           ["--tls-key certs/server.pem is a certificate, not a private key"]),
    "mismatched-pair": (["--tls-cert", "certs/server.pem", "--tls-key", "certs/alice.key"],
                        ["certs/alice.key", "certs/server.pem", "do not belong together"]),
    "key-as-ca": (["--ca", "certs/ca.key"], ["--ca", "certs/ca.key", "is a private key"]),
    "junk-certificate": (["--tls-cert", "junk.pem", "--tls-key", "certs/server.key"],
                         ["--tls-cert", "junk.pem", "holds no PEM certificate"]),
    "expired": (["--tls-cert", "expired.pem", "--tls-key", "expired.key"],
                ["--tls-cert", "expired.pem", "expired on"]),
}


@pytest.mark.parametrize("case", BAD_TLS_FILES)
def test_a_bad_tls_file_is_named_at_start(site: tuple[Path, DevCertificates], case: str,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    folder, certs = site
    (folder / "junk.pem").write_text("hello\n")
    ca = CertificateAuthority.load(certs.ca_cert, certs.ca_key)
    write_certificate(folder, "expired", ca.certificate.subject, ca.private_key, days=(-30, -1))
    args, needles = BAD_TLS_FILES[case]
    line = serve_fails(folder, "--auth", "none", *args, capsys=capsys, monkeypatch=monkeypatch)
    assert "could not listen" not in line and "bind" not in line
    for needle in needles:
        assert needle in line, line


def test_a_certs_folder_others_may_write_is_refused(site: tuple[Path, DevCertificates],
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = site
    (folder / "certs").chmod(0o777)
    line = serve_fails(folder, "--auth", "none", capsys=capsys, monkeypatch=monkeypatch)
    assert "certs" in line and "writable by other accounts" in line and "chmod go-w" in line


def test_a_client_ca_others_may_write_is_refused(site: tuple[Path, DevCertificates],
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = site
    (folder / "certs" / "ca.pem").chmod(0o666)
    line = serve_fails(folder, "--auth", "mtls", "--ca", "certs/ca.pem", capsys=capsys,
                       monkeypatch=monkeypatch)
    assert "--ca certs/ca.pem is writable by other accounts" in line


#: How another account may write a file: (how to make it so, what serve then says).
OTHER_WRITERS = {
    "group-and-others": (lambda path: path.chmod(0o662), "is writable by other accounts"),
    "owner": (lambda path: os.chown(path, NOBODY, -1),
              f"belongs to another account (uid {NOBODY})"),
}


@pytest.mark.parametrize("writer", OTHER_WRITERS)
def test_a_default_password_file_another_account_may_write_is_refused(
        site: tuple[Path, DevCertificates], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, writer: str) -> None:
    if writer == "owner" and os.geteuid() != 0:
        pytest.skip("giving a file away takes root")
    folder, _ = site
    (folder / "users.htpasswd").write_text("")
    (folder / "users.htpasswd").chmod(0o600)
    give, said = OTHER_WRITERS[writer]
    give(folder / "users.htpasswd")
    line = serve_fails(folder, capsys=capsys, monkeypatch=monkeypatch)
    assert f"--users users.htpasswd {said}" in line


def test_a_revocation_file_others_may_write_is_refused(
        site: tuple[Path, DevCertificates], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = site
    (folder / "revoked.jsonl").write_text("")
    (folder / "revoked.jsonl").chmod(0o646)  # another account could remove an entry
    line = serve_fails(folder, "--revocations", "revoked.jsonl", capsys=capsys,
                       monkeypatch=monkeypatch)
    assert "--revocations revoked.jsonl is writable by other accounts" in line


@pytest.mark.parametrize("mode", [0o777, 0o1777], ids=["open", "sticky"])
def test_a_revocation_file_in_a_folder_others_may_write_is_refused(
        site: tuple[Path, DevCertificates], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, mode: int) -> None:
    folder, _ = site
    (folder / "shared").mkdir()
    (folder / "shared").chmod(mode)  # another account could put its own file there
    line = serve_fails(folder, "--revocations", "shared/revoked.jsonl", capsys=capsys,
                       monkeypatch=monkeypatch)
    assert "--revocations shared/revoked.jsonl: its folder" in line
    assert "writable by other accounts" in line
    assert not (folder / "users.htpasswd").exists()  # refused before first-run files


@pytest.mark.parametrize("engine", ENGINES)
def test_a_port_in_use_is_called_so(site: tuple[Path, DevCertificates], engine: str,
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = site
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.chdir(folder)
        status = main(["serve", "--data", "data", "--auth", "none", "--port", str(port),
                       "--engine", engine])
    err = capsys.readouterr().err
    assert status == 1 and f"port {port} is in use" in err and "Traceback" not in err, err


# ---------------------------------------------------------------- what is printed


def test_the_start_lists_the_datasets_and_how_to_stop(site: tuple[Path, DevCertificates]
                                                      ) -> None:
    folder, _ = site
    server = Served(["--data", "data", "--auth", "none"], cwd=folder)
    try:
        assert "found 3 dataset(s) in data: big, items, sales" in server.out.text
        assert f"kill -TERM {server.process.pid}" in server.out.text
        assert "Ctrl-C" in server.out.text
    finally:
        assert server.stop() == 0


def test_auth_none_warns_loudly(site: tuple[Path, DevCertificates]) -> None:
    folder, _ = site
    server = Served(["--data", "data", "--auth", "none"], cwd=folder)
    try:
        warning = server.err.wait_for("WARNING: --auth none")
        assert "without credentials" in warning and server.location in warning
    finally:
        assert server.stop() == 0


def snippet(text: str) -> str:
    """The Python lines of the "connect from Python" text, dedented."""
    lines = text.split("connect from Python:", 1)[1].split("stop with", 1)[0].splitlines()
    return "\n".join(line[4:] for line in lines if line.startswith("    "))


def test_the_snippet_with_a_self_signed_certificate_connects_as_printed(
        site: tuple[Path, DevCertificates]) -> None:
    folder, _ = site
    localhost = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert, key = write_certificate(folder, "own", localhost, None, days=(0, 1), ca=True)
    server = Served(["--data", "data", "--auth", "none", "--tls-cert", cert.name,
                     "--tls-key", key.name], cwd=folder)
    try:
        code = snippet(server.out.text)
        assert f'tls_root_certs=open("{cert.name}", "rb").read()' in code
        ran = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                             text=True, timeout=START_TIMEOUT, check=False)
        assert ran.returncode == 0, ran.stderr
        assert "[b'sales'] 3" in ran.stdout
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(("extra", "expected"), [
    ([], ['tls_root_certs=open("CA.pem", "rb").read()',
          "# CA.pem: the CA that signed the server certificate"]),
    (["--ca", "certs/ca.pem"], ['tls_root_certs=open("certs/ca.pem", "rb").read()']),
], ids=["unnamed-ca", "ca-signed-it"])
def test_the_snippet_names_what_verifies_the_operators_certificate(
        site: tuple[Path, DevCertificates], extra: list[str], expected: list[str]) -> None:
    folder, certs = site
    server = Served(["--data", "data", "--auth", "none", "--tls-cert", str(certs.server_cert),
                     "--tls-key", str(certs.server_key), *extra], cwd=folder)
    try:
        code = snippet(server.out.text)
        assert all(line in code for line in expected), code
    finally:
        assert server.stop() == 0


# ---------------------------------------------------------------- message size


def unauthenticated_request(port: int, ca: bytes, size: int,
                            rpc: str = "GetFlightInfo") -> grpc.StatusCode:
    """Send ``rpc`` a message of ``size`` bytes without credentials; the status it ends with.

    A Handshake's message is read before the caller is known, so it meets the message
    limit; other calls are refused by the auth gate before their message is read.
    """
    channel = grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(ca),
                                  options=[("grpc.max_send_message_length", -1)])
    with channel:
        try:
            if rpc == "Handshake":
                request = pb.HandshakeRequest(payload=b"\x00" * size).SerializeToString()
                list(channel.stream_stream(rpc_path(rpc))(iter([request]),
                                                          timeout=CALL_TIMEOUT))
            else:
                channel.unary_unary(rpc_path(rpc))(b"\x00" * size, timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(("limit", "sizes"), [
    (None, {MAX_MESSAGE_MIB * MIB + 1024: grpc.StatusCode.RESOURCE_EXHAUSTED,
            MIB: grpc.StatusCode.UNAUTHENTICATED}),
    (1, {MIB + 1024: grpc.StatusCode.RESOURCE_EXHAUSTED,
         MIB - 1024: grpc.StatusCode.UNAUTHENTICATED}),
], ids=["default", "one-mib"])
def test_serve_bounds_the_size_of_a_message(site: tuple[Path, DevCertificates],
                                            limit: int | None,
                                            sizes: dict[int, grpc.StatusCode]) -> None:
    folder, certs = site
    (folder / "users.htpasswd").write_text("")
    extra = [] if limit is None else ["--max-message-size", str(limit)]
    server = Served(["--data", "data", "--users", "users.htpasswd", *extra], cwd=folder)
    try:
        for size, status in sizes.items():
            assert unauthenticated_request(server.port, certs.ca_cert_pem(), size,
                                           "Handshake") == status
    finally:
        assert server.stop() == 0


def test_the_arrow_engine_says_it_cannot_bound_message_sizes(
        site: tuple[Path, DevCertificates], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, certs = site
    line = serve_fails(folder, "--engine", "arrow", "--max-message-size", "1", capsys=capsys,
                       monkeypatch=monkeypatch)
    assert "--max-message-size needs --engine python" in line
    (folder / "users.htpasswd").write_text("")
    server = Served(["--data", "data", "--users", "users.htpasswd", "--engine", "arrow"],
                    cwd=folder)
    try:
        warning = server.err.wait_for("--engine arrow: pyarrow.flight's engine reads a message "
                                      "of any size")
        assert "--max-message-size applies to --engine python only" in warning
        descriptor = pb.FlightDescriptor(type=pb.FlightDescriptor.CMD,
                                         cmd=b"c" * (MAX_MESSAGE_MIB * MIB + 1024))
        channel = grpc.secure_channel(f"localhost:{server.port}",
                                      grpc.ssl_channel_credentials(certs.ca_cert_pem()),
                                      options=[("grpc.max_send_message_length", -1)])
        with channel, pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary(rpc_path("GetFlightInfo"))(descriptor.SerializeToString(),
                                                           timeout=CALL_TIMEOUT)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # read whole first
    finally:
        assert server.stop() == 0


def peak_rss_mib(pid: int) -> int:
    """The peak resident set size of process ``pid`` so far (VmHWM), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:"))
               .split()[1]) // 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_unauthenticated_huge_requests_cost_serve_less_than_its_limit(
        site: tuple[Path, DevCertificates]) -> None:
    folder, certs = site
    (folder / "users.htpasswd").write_text("")
    server = Served(["--data", "data", "--users", "users.htpasswd"], cwd=folder)
    try:
        before = peak_rss_mib(server.process.pid)
        codes: list[grpc.StatusCode] = []
        senders = [threading.Thread(target=lambda: codes.append(unauthenticated_request(
            server.port, certs.ca_cert_pem(), 256 * MIB))) for _ in range(4)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(START_TIMEOUT * 4)
        rise = peak_rss_mib(server.process.pid) - before
    finally:
        assert server.stop() == 0
    print(f"[serve] 4 unauthenticated 256 MiB requests: peak RSS rose {rise} MiB")
    assert set(codes) <= {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert len(codes) == 4
    assert rise < MAX_MESSAGE_MIB


# -------------------------------------------------------------------------- stopping


def connect(port: int, certs: DevCertificates) -> flight_secure.FlightClient:
    return flight_secure.connect(f"grpc+tls://localhost:{port}",
                                 tls_root_certs=certs.ca_cert_pem())


def new_call_refused(port: int, certs: DevCertificates) -> bool:
    """Whether a new client's call is refused as UNAVAILABLE (nothing serves it)."""
    try:
        list(connect(port, certs).list_flights(options=flight_secure.FlightCallOptions(
            timeout=CALL_TIMEOUT)))
    except flight_secure.FlightUnavailableError:
        return True
    return False


@pytest.mark.parametrize("engine", ENGINES)
def test_a_signal_refuses_new_calls_and_lets_calls_in_flight_finish(
        site: tuple[Path, DevCertificates], engine: str) -> None:
    folder, certs = site
    server = Served(["--data", "data", "--auth", "none", "--drain", "60", "--engine", engine],
                    cwd=folder)
    options = flight_secure.FlightCallOptions(timeout=CALL_TIMEOUT)
    try:
        reader = connect(server.port, certs).do_get(flight_secure.Ticket(b"big"), options)
        rows = reader.read_chunk().data.num_rows
        server.process.send_signal(signal.SIGTERM)
        server.out.wait_for("stopping: new calls are refused")
        wait_until(lambda: new_call_refused(server.port, certs), START_TIMEOUT)
        time.sleep(3)  # the scenario: a slow reader, past the 2 s calls in flight used to get
        rows += sum(chunk.data.num_rows for chunk in reader)
        assert rows == BIG_ROWS
        assert server.process.wait(timeout=START_TIMEOUT) == 0  # the drain ends with the call
    finally:
        server.stop()
    assert "stopped" in server.out.text and "Traceback" not in server.err.text


@pytest.mark.parametrize("engine", ENGINES)
def test_a_second_signal_ends_the_drain_at_once(site: tuple[Path, DevCertificates],
                                                engine: str) -> None:
    folder, certs = site
    server = Served(["--data", "data", "--auth", "none", "--drain", "600", "--engine", engine],
                    cwd=folder)
    options = flight_secure.FlightCallOptions(timeout=CALL_TIMEOUT)
    try:
        reader = connect(server.port, certs).do_get(flight_secure.Ticket(b"big"), options)
        reader.read_chunk()
        server.process.send_signal(signal.SIGTERM)
        server.out.wait_for("stopping: new calls are refused")
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(timeout=START_TIMEOUT) == 0
        assert "stopping at once" in server.out.text
    finally:
        server.stop()


@pytest.fixture(params=ENGINES)
def endless_upload(site: tuple[Path, DevCertificates],
                   request: pytest.FixtureRequest) -> Iterator[tuple[Served, threading.Thread]]:
    """A server (each engine) with ``--drain 1`` and a thread uploading "partial" to it
    until it fails."""
    folder, certs = site
    server = Served(["--data", "data", "--auth", "none", "--permissions", "rights.ini",
                     "--drain", "1", "--engine", request.param], cwd=_with_rights(folder))
    started = threading.Event()

    def upload() -> None:
        batch = pa.record_batch({"v": pa.array(range(50_000), pa.int64())})
        client = connect(server.port, certs)
        descriptor = flight_secure.FlightDescriptor.for_path("partial")
        writer, _ = client.do_put(descriptor, batch.schema)
        try:
            for _ in range(1_000_000):
                writer.write_batch(batch)
                started.set()
        except flight_secure.FlightError:
            pass

    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    assert started.wait(START_TIMEOUT)
    yield server, uploader
    server.stop()


def _with_rights(folder: Path) -> Path:
    (folder / "rights.ini").write_text("[users]\n* = read, write\n")
    return folder


def test_an_upload_running_when_the_drain_ends_is_aborted_logged_and_leaves_nothing(
        site: tuple[Path, DevCertificates],
        endless_upload: tuple[Served, threading.Thread]) -> None:
    folder, _ = site
    server, uploader = endless_upload
    server.err.wait_for("who=anonymous scheme=none rpc=DoPut dataset=partial")
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=START_TIMEOUT) == 0
    uploader.join(START_TIMEOUT)
    server.err.wait_closed()
    assert "upload aborted: who=anonymous scheme=none rpc=DoPut dataset=partial" \
        in server.err.text
    assert sorted(p.name for p in (folder / "data").iterdir()) == [
        "big.parquet", "items.parquet", "sales.parquet"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_signal_with_nothing_in_flight_stops_at_once(site: tuple[Path, DevCertificates],
                                                       engine: str) -> None:
    folder, _ = site
    server = Served(["--data", "data", "--auth", "none", "--drain", "600", "--engine", engine],
                    cwd=folder)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=START_TIMEOUT) == 0
    assert "stopped" in server.out.text


def test_on_the_arrow_engine_a_call_it_cannot_cancel_does_not_keep_the_server_alive(
        site: tuple[Path, DevCertificates]) -> None:
    """An upload whose client went silent stays blocked in pyarrow's engine, where no
    cancellation reaches it: after ``--drain`` the server exits anyway, says so, and
    stores nothing (its hidden temporary file may stay behind)."""
    folder, certs = site
    server = Served(["--data", "data", "--auth", "none", "--permissions", "rights.ini",
                     "--drain", "1", "--engine", "arrow"], cwd=_with_rights(folder))
    client = connect(server.port, certs)
    try:
        batch = pa.record_batch({"v": pa.array(range(10), pa.int64())})
        writer, _ = client.do_put(flight_secure.FlightDescriptor.for_path("silent"),
                                  batch.schema)
        writer.write_batch(batch)  # then nothing more
        server.err.wait_for("who=anonymous scheme=none rpc=DoPut dataset=silent")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=START_TIMEOUT) == 0
        server.err.wait_closed()
        assert "could not cancel were still running" in server.err.text
        assert "stopped" in server.out.text and "Traceback" not in server.err.text
        visible = sorted(p.name for p in (folder / "data").iterdir()
                         if not p.name.startswith("."))
        assert visible == ["big.parquet", "items.parquet", "sales.parquet"]
    finally:
        client.close()
        server.stop()


class ClosingCounted(ServerAuthHandler):
    """A handler that counts how often it is closed."""

    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_stopping_closes_a_wrapped_handler_once() -> None:
    inner = ClosingCounted()
    setup.close_handler(MutualTLSServerAuthHandler(inner))
    assert inner.closed == 1
    setup.close_handler(None)
