"""Tests for flight_secure.certs: real openssl verification and real TLS handshakes."""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flight_secure.certs import (
    CLOCK_SKEW,
    KEY_TYPES,
    CertificateAuthority,
    CertificateExistsError,
    DevCertificates,
    InvalidNameError,
    IssuedCertificate,
    client_file_stem,
    generate_dev_certificates,
)
from flight_secure.cli.certs import add_arguments, main

OPENSSL = "/usr/bin/openssl"
REPO = Path(__file__).resolve().parents[1]
CLIENTS = ("alice", "spiffe://example.org/ns/prod/bob", "carol@example.org")
TIMEOUT = 10.0


def openssl_verify(ca: Path, cert: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OPENSSL, "verify", "-CAfile", str(ca), *options, str(cert)],
                          capture_output=True, text=True, check=False, timeout=60)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def ext(cert: x509.Certificate, cls: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(cls)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module", params=KEY_TYPES)
def dev_set(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> tuple[str, DevCertificates]:
    """One complete set per key type, shared by read-only tests."""
    out = tmp_path_factory.mktemp(f"certs-{request.param}")
    return request.param, generate_dev_certificates(out, clients=CLIENTS, key_type=request.param)


# --- what is on disk -------------------------------------------------------------


def test_openssl_verifies_chain_purpose_and_hosts(dev_set: tuple[str, DevCertificates]) -> None:
    _, certs = dev_set
    ok = openssl_verify(certs.ca_cert, certs.server_cert, "-purpose", "sslserver",
                        "-verify_hostname", "localhost")
    assert ok.returncode == 0 and ": OK" in ok.stdout, ok.stderr
    for ip in ("127.0.0.1", "::1"):
        assert openssl_verify(certs.ca_cert, certs.server_cert, "-verify_ip", ip).returncode == 0
    assert openssl_verify(certs.ca_cert, certs.server_cert,
                          "-verify_hostname", "elsewhere.example").returncode != 0
    # serverAuth only: the server certificate is not a client certificate
    assert openssl_verify(certs.ca_cert, certs.server_cert, "-purpose", "sslclient").returncode != 0
    for name in CLIENTS:
        cert_path, _ = certs.clients[name]
        ok = openssl_verify(certs.ca_cert, cert_path, "-purpose", "sslclient")
        assert ok.returncode == 0, ok.stderr
        assert openssl_verify(certs.ca_cert, cert_path, "-purpose", "sslserver").returncode != 0


def test_file_names_and_modes(dev_set: tuple[str, DevCertificates]) -> None:
    _, certs = dev_set
    out = certs.ca_cert.parent
    expected = {"ca.pem", "ca.key", "server.pem", "server.key", "alice.pem", "alice.key",
                "bob.pem", "bob.key", "carol.pem", "carol.key"}
    assert {p.name for p in out.iterdir()} == expected  # no stray temp files
    assert certs.clients["spiffe://example.org/ns/prod/bob"] == (out / "bob.pem", out / "bob.key")
    assert set(certs.written) == {out / name for name in expected}
    for path in out.iterdir():
        assert mode(path) == (0o600 if path.suffix == ".key" else 0o644), path
    assert b"BEGIN PRIVATE KEY" in certs.server_pems()[1]  # PKCS#8, unencrypted
    assert certs.client_pems("alice")[0] == (out / "alice.pem").read_bytes()
    assert certs.ca_cert_pem().startswith(b"-----BEGIN CERTIFICATE-----")


def test_ca_and_server_extensions(dev_set: tuple[str, DevCertificates]) -> None:
    key_type, certs = dev_set
    ca, server = load(certs.ca_cert), load(certs.server_cert)
    bc = ext(ca, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(ca, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    ca_ski = ext(ca, x509.SubjectKeyIdentifier).value.digest
    assert ext(ca, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski

    leaf_bc = ext(server, x509.BasicConstraints)
    assert leaf_bc.critical and not leaf_bc.value.ca
    assert ext(server, x509.KeyUsage).critical
    assert list(ext(server, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = ext(server, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                        ipaddress.ip_address("::1")]
    assert ext(server, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
    assert ext(server, x509.SubjectKeyIdentifier).value.digest != ca_ski
    assert server.issuer == ca.subject

    now = dt.datetime.now(dt.timezone.utc)
    skew = now - server.not_valid_before_utc
    assert CLOCK_SKEW - dt.timedelta(minutes=1) < skew <= CLOCK_SKEW + dt.timedelta(minutes=1)
    lifetime = server.not_valid_after_utc - now
    assert dt.timedelta(days=364) < lifetime <= dt.timedelta(days=365)
    for cert in (ca, server):
        if key_type == "ed25519":
            assert cert.signature_hash_algorithm is None
        else:
            assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)


def test_key_type_and_leaf_key_usage(dev_set: tuple[str, DevCertificates]) -> None:
    key_type, certs = dev_set
    expected_cls = {"ec": ec.EllipticCurvePublicKey, "rsa": rsa.RSAPublicKey,
                    "ed25519": ed25519.Ed25519PublicKey}[key_type]
    for path in (certs.ca_cert, certs.server_cert, certs.clients["alice"][0]):
        key = load(path).public_key()
        assert isinstance(key, expected_cls)
        if key_type == "ec":
            assert isinstance(key.curve, ec.SECP256R1)
        if key_type == "rsa":
            assert key.key_size == 3072
    for path in (certs.server_cert, certs.clients["alice"][0]):
        ku = ext(load(path), x509.KeyUsage).value
        assert ku.digital_signature and not ku.key_cert_sign
        assert ku.key_encipherment == (key_type == "rsa")
        assert ku.key_agreement == (key_type == "ec")


def test_client_names_become_cn_and_matching_san(dev_set: tuple[str, DevCertificates]) -> None:
    _, certs = dev_set
    expected = {"alice": x509.DNSName, "spiffe://example.org/ns/prod/bob":
                x509.UniformResourceIdentifier, "carol@example.org": x509.RFC822Name}
    for name, kind in expected.items():
        cert = load(certs.clients[name][0])
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        san = ext(cert, x509.SubjectAlternativeName).value
        assert list(san) == [kind(name)]
        assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]


# --- names -----------------------------------------------------------------------


def test_client_file_stem_rules() -> None:
    assert client_file_stem("alice") == "alice"
    assert client_file_stem("svc.internal") == "svc.internal"
    assert client_file_stem("spiffe://example.org/ns/prod/sa/alice") == "alice"
    assert client_file_stem("spiffe://example.org/alice/") == "alice"
    assert client_file_stem("spiffe://workload.example") == "workload.example"
    assert client_file_stem("dave@example.org") == "dave"


@pytest.mark.parametrize("name", [
    "", "../evil", "a/b", "..", "ca", "Server", "bob smith", "x" * 65, "nöel", "tab\tname",
    "spiffe://example.org/..", "spiffe://example.org/a\\b", "spiffe:///alice", "1http://x/a",
    "evil/x@example.org", "two@@example.org", "ca@example.org", "@example.org", "a..b",
])
def test_bad_client_names_rejected_before_anything_is_written(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(InvalidNameError):
        generate_dev_certificates(out, clients=[name])
    assert not out.exists()


def test_clients_sharing_a_file_name_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidNameError, match="share the file name"):
        generate_dev_certificates(tmp_path, clients=["alice", "spiffe://example.org/Alice"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("hosts", [(), ("bad host",), ("",), ("a..b",)])
def test_bad_hosts_rejected(tmp_path: Path, hosts: tuple[str, ...]) -> None:
    with pytest.raises(InvalidNameError):
        generate_dev_certificates(tmp_path, hosts=hosts)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"key_type": "dsa"}, "key type"), ({"days": 0}, "days"), ({"days": "30"}, "days"),
])
def test_bad_arguments_rejected(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_dev_certificates(tmp_path, **kwargs)


# --- existing files, reuse and force ---------------------------------------------


def test_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    generate_dev_certificates(tmp_path, clients=["alice"])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    with pytest.raises(CertificateExistsError) as caught:
        generate_dev_certificates(tmp_path, clients=["alice"])
    assert isinstance(caught.value, FileExistsError)
    assert caught.value.filename == str(tmp_path / "alice.pem")
    assert str(tmp_path / "alice.pem") in str(caught.value) and "--force" in str(caught.value)

    with pytest.raises(CertificateExistsError, match="no new client"):
        generate_dev_certificates(tmp_path)
    with pytest.raises(CertificateExistsError, match=r"server\.pem exists for other hosts"):
        generate_dev_certificates(tmp_path, hosts=["flight.example.test"], clients=["bob"])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_half_pairs_and_orphan_leaves_are_refused(tmp_path: Path) -> None:
    generate_dev_certificates(tmp_path, clients=["alice"])
    (tmp_path / "ca.key").unlink()
    with pytest.raises(CertificateExistsError, match="without its other half") as caught:
        generate_dev_certificates(tmp_path, clients=["bob"])
    assert caught.value.filename == str(tmp_path / "ca.pem")
    (tmp_path / "ca.pem").unlink()
    with pytest.raises(CertificateExistsError) as caught:
        generate_dev_certificates(tmp_path, clients=["bob"])
    assert caught.value.filename == str(tmp_path / "server.pem")
    assert not (tmp_path / "bob.pem").exists()


def test_existing_ca_is_reused_to_add_a_client(tmp_path: Path) -> None:
    first = generate_dev_certificates(tmp_path, clients=["alice"])
    kept = {p: p.read_bytes() for p in (first.ca_cert, first.ca_key, first.server_cert,
                                        first.server_key, *first.clients["alice"])}
    second = generate_dev_certificates(tmp_path, clients=["bob"], key_type="ed25519")
    assert second.written == (tmp_path / "bob.pem", tmp_path / "bob.key")
    assert {p: p.read_bytes() for p in kept} == kept
    assert openssl_verify(first.ca_cert, tmp_path / "bob.pem", "-purpose", "sslclient"
                          ).returncode == 0
    assert isinstance(load(tmp_path / "bob.pem").public_key(), ed25519.Ed25519PublicKey)


def test_server_is_issued_from_existing_ca_when_missing(tmp_path: Path) -> None:
    first = generate_dev_certificates(tmp_path)
    ca_before = first.ca_cert.read_bytes()
    first.server_cert.unlink()
    first.server_key.unlink()
    second = generate_dev_certificates(tmp_path, hosts=["flight.example.test"])
    assert second.written == (second.server_cert, second.server_key)
    assert first.ca_cert.read_bytes() == ca_before
    assert openssl_verify(first.ca_cert, second.server_cert, "-verify_hostname",
                          "flight.example.test").returncode == 0


def test_force_regenerates_everything_with_a_new_ca(tmp_path: Path) -> None:
    generate_dev_certificates(tmp_path, clients=["alice", "bob"])
    old_ca = (tmp_path / "ca.pem").read_bytes()
    old_alice = (tmp_path / "alice.pem").read_bytes()
    result = generate_dev_certificates(tmp_path, clients=["alice"], force=True)
    assert (tmp_path / "ca.pem").read_bytes() != old_ca
    assert (tmp_path / "alice.pem").read_bytes() != old_alice
    assert len(result.written) == 6
    for cert in (result.server_cert, tmp_path / "alice.pem"):
        assert openssl_verify(result.ca_cert, cert).returncode == 0
    # bob was not requested: left alone, and it no longer chains to the new CA
    assert openssl_verify(result.ca_cert, tmp_path / "bob.pem").returncode != 0


def test_file_modes_do_not_depend_on_umask(tmp_path: Path) -> None:
    for umask in (0o000, 0o077):
        old = os.umask(umask)
        try:
            result = generate_dev_certificates(tmp_path / oct(umask), clients=["alice"])
        finally:
            os.umask(old)
        assert mode(result.server_key) == mode(result.clients["alice"][1]) == 0o600
        assert mode(result.server_cert) == mode(result.ca_cert) == 0o644


def test_new_folders_are_never_writable_by_others_even_under_umask_0(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        result = generate_dev_certificates(tmp_path / "new" / "deeper" / "certs")
    finally:
        os.umask(old)
    for folder in (tmp_path / "new", tmp_path / "new" / "deeper", result.ca_cert.parent):
        assert mode(folder) == 0o755, folder


def test_python_dash_m_under_umask_0_makes_no_world_writable_folder(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    script = f'umask 000 && exec "{sys.executable}" -m flight_secure.certs --out dev/certs'
    done = subprocess.run(["/bin/sh", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert mode(tmp_path / "dev") == mode(tmp_path / "dev" / "certs") == 0o755
    assert mode(tmp_path / "dev" / "certs" / "ca.key") == 0o600


# --- lower-level API -------------------------------------------------------------


def test_certificate_authority_create_write_load_issue(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(days=30, key_type="rsa", common_name="Test CA")
    ca.write(tmp_path / "ca.pem", tmp_path / "ca.key")
    assert mode(tmp_path / "ca.key") == 0o600
    loaded = CertificateAuthority.load(tmp_path / "ca.pem", tmp_path / "ca.key")
    assert loaded.key_type == "rsa" and loaded.cert_pem == ca.cert_pem

    leaf = loaded.issue_client("spiffe://example.org/alice", days=3650, key_type="ec")
    assert isinstance(leaf, IssuedCertificate)
    assert leaf.certificate.issuer == ca.certificate.subject
    # a leaf never outlives its CA
    assert leaf.certificate.not_valid_after_utc == ca.certificate.not_valid_after_utc
    leaf.write(tmp_path / "alice.pem", tmp_path / "alice.key")
    assert openssl_verify(tmp_path / "ca.pem", tmp_path / "alice.pem", "-purpose", "sslclient"
                          ).returncode == 0
    again = loaded.issue_client("spiffe://example.org/alice")
    assert again.certificate.serial_number != leaf.certificate.serial_number

    with pytest.raises(ValueError, match="days"):
        loaded.issue_client("alice", days=0)
    server = loaded.issue_server(["10.1.2.3", "flight.example.test"], days=7)
    san = ext(server.certificate, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    assert san.get_values_for_type(x509.DNSName) == ["flight.example.test"]


def test_certificate_authority_load_rejects_mismatch_and_non_ca(tmp_path: Path) -> None:
    certs = generate_dev_certificates(tmp_path)
    with pytest.raises(ValueError, match="do not match"):
        CertificateAuthority.load(certs.ca_cert, certs.server_key)
    with pytest.raises(ValueError, match="not a CA"):
        CertificateAuthority.load(certs.server_cert, certs.server_key)
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ValueError, match=r"junk\.pem"):
        CertificateAuthority.load(tmp_path / "junk.pem", certs.ca_key)


# --- command line ----------------------------------------------------------------


def test_cli_writes_files_and_hosts_replace_defaults(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--out", str(tmp_path), "--host", "flight.example.test", "--host", "10.0.0.7",
                 "--client", "alice", "--days", "10", "--key-type", "ed25519"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"wrote {tmp_path / 'alice.key'}" in out
    server = load(tmp_path / "server.pem")
    san = ext(server, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["flight.example.test"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    assert isinstance(server.public_key(), ed25519.Ed25519PublicKey)
    assert server.not_valid_after_utc - server.not_valid_before_utc <= dt.timedelta(days=10,
                                                                                      minutes=5)
    assert main(["--out", str(tmp_path), "--host", "flight.example.test", "--host", "10.0.0.7",
                 "--client", "bob"]) == 0
    assert "(existing)" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["exists", "bad-name", "unwritable"])
def test_cli_errors_are_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    out = tmp_path / "certs"
    if case == "exists":
        assert main(["--out", str(out), "--client", "alice"]) == 0
        argv, expect = ["--out", str(out), "--client", "alice"], "alice.pem already exists"
    elif case == "bad-name":
        argv, expect = ["--out", str(out), "--client", "../evil"], "'../evil'"
    else:
        (tmp_path / "a-file").write_text("")
        argv, expect = ["--out", str(tmp_path / "a-file" / "certs")], "a-file"
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expect in err, err


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--key-type", "dsa"]) == 2
    assert main(["--days", "0"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_add_arguments_sets_run_so_it_works_as_a_subcommand(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="flight-secure")
    sub = parser.add_subparsers(dest="command", required=True)
    add_arguments(sub.add_parser("certs"))
    args = parser.parse_args(["certs", "--out", str(tmp_path), "--client", "alice"])
    assert args.run(args) == 0
    assert openssl_verify(tmp_path / "ca.pem", tmp_path / "alice.pem").returncode == 0


def test_the_library_module_holds_no_command_line() -> None:
    import flight_secure.certs as library

    assert not {"add_arguments", "main", "run"} & set(vars(library))
    assert "argparse" not in vars(library)


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, "-m", "flight_secure.certs", "--out", "dev", "--client", "alice"]
    first = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "dev" / "alice.key").exists() and "wrote" in first.stdout
    second = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert second.returncode == 2
    assert "Traceback" not in second.stderr
    assert second.stderr.count("\n") == 1 and "alice.pem already exists" in second.stderr


# --- real TLS handshakes ---------------------------------------------------------


class OneShotTLSServer:
    """Serve one mutual-TLS connection on 127.0.0.1: handshake, then echo one message."""

    def __init__(self, certs: DevCertificates) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certs.server_cert, certs.server_key)
        self.context.load_verify_locations(certs.ca_cert)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.peer_cert: dict | None = None
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(TIMEOUT)
            with self.context.wrap_socket(conn, server_side=True) as tls:
                self.peer_cert = tls.getpeercert()
                tls.sendall(b"echo:" + tls.recv(64))
        except (OSError, ssl.SSLError) as exc:
            self.error = exc

    def finish(self) -> None:
        self.thread.join(TIMEOUT * 2)
        self.listener.close()
        assert not self.thread.is_alive()


def client_context(certs: DevCertificates, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and hostname
    context.load_verify_locations(certs.ca_cert)
    context.load_cert_chain(cert, key)
    return context


def exchange(context: ssl.SSLContext, port: int, server_hostname: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw, \
            context.wrap_socket(raw, server_hostname=server_hostname) as tls:
        tls.sendall(b"ping")
        return tls.recv(64)


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
def test_mutual_tls_handshake(dev_set: tuple[str, DevCertificates], server_hostname: str) -> None:
    _, certs = dev_set
    server = OneShotTLSServer(certs)
    context = client_context(certs, *certs.clients["spiffe://example.org/ns/prod/bob"])
    assert exchange(context, server.port, server_hostname) == b"echo:ping"
    server.finish()
    assert server.error is None
    assert server.peer_cert is not None
    assert server.peer_cert["subjectAltName"] == (("URI", "spiffe://example.org/ns/prod/bob"),)


def test_wrong_hostname_is_refused_by_the_client(dev_set: tuple[str, DevCertificates]) -> None:
    _, certs = dev_set
    server = OneShotTLSServer(certs)
    context = client_context(certs, *certs.clients["alice"])
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        exchange(context, server.port, "elsewhere.example")
    server.finish()
    assert server.peer_cert is None and server.error is not None


def test_client_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    certs = generate_dev_certificates(tmp_path / "ours", clients=["alice"])
    theirs = generate_dev_certificates(tmp_path / "theirs", clients=["alice"])
    server = OneShotTLSServer(certs)
    # trusts our CA for the server, but presents a client certificate from another CA
    context = client_context(certs, *theirs.clients["alice"])
    try:
        reply: bytes | None = exchange(context, server.port, "localhost")
    except (ssl.SSLError, OSError):
        reply = None
    server.finish()
    assert reply != b"echo:ping"
    assert server.peer_cert is None
    assert isinstance(server.error, ssl.SSLError)
    assert "certificate verify failed" in str(server.error)
