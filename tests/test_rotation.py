"""Specification of certificate rotation without a restart (ReloadingServerCredentials).

The server reads its certificate, key and client CA bundle from files; tests
replace those files the way cert-manager does (write aside, rename over) and
check with pyarrow.flight clients that open connections keep working while new
connections see the new certificate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.flight as pa_flight
import pytest
from conftest import running_server
from tls_helpers import TIMEOUT, Who, refusal, tls_location, who_is

import flight_secure
from flight_secure.certs import CertificateAuthority, IssuedCertificate
from flight_secure.tls import ReloadingServerCredentials, reloading_server_credentials

#: How many calls the background client must complete after a rotation.
CALLS_AFTER_ROTATION = 20


class Files:
    """The server's certificate files in one directory, replaced atomically."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        self.cert, self.key, self.roots = (directory / n for n in ("tls.crt", "tls.key", "ca.crt"))

    def install(self, issued: IssuedCertificate) -> None:
        """Replace key, then certificate, each by an atomic rename."""
        issued.write(self.cert, self.key)

    def install_roots(self, *cas: CertificateAuthority) -> None:
        tmp = self.roots.with_suffix(".tmp")
        tmp.write_bytes(b"".join(ca.cert_pem for ca in cas))
        tmp.replace(self.roots)


@pytest.fixture
def old_ca() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture
def new_ca() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture
def files(tmp_path: Path, old_ca: CertificateAuthority) -> Files:
    installed = Files(tmp_path / "tls")
    installed.install(old_ca.issue_server())
    return installed


def serve(credentials: ReloadingServerCredentials, **kwargs: Any) -> Any:
    return running_server(flight_secure, Who, location="grpc+tls://localhost:0",
                          tls_credentials=credentials, **kwargs)


def trusting(server: Any, ca: CertificateAuthority, **kwargs: Any) -> Any:
    """A new pyarrow client of ``server`` that trusts only ``ca``."""
    return pa_flight.connect(tls_location(server), tls_root_certs=ca.cert_pem, **kwargs)


def refused(server: Any, ca: CertificateAuthority, **kwargs: Any) -> bool:
    error, _ = refusal(pa_flight, tls_location(server), tls_root_certs=ca.cert_pem, **kwargs)
    return isinstance(error, pa_flight.FlightUnavailableError)


class CallLoop:
    """Calls ``who_is(client)`` in a thread until stopped; counts calls and failures."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls = 0
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                who_is(self.client)
            except Exception as exc:
                self.failures.append(exc)
            with self._progress:
                self.calls += 1
                self._progress.notify_all()

    def wait_for(self, calls: int) -> None:
        """Block until ``calls`` calls have completed in total (at most TIMEOUT seconds)."""
        with self._progress:
            assert self._progress.wait_for(lambda: self.calls >= calls, TIMEOUT)

    def __enter__(self) -> CallLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)


@pytest.fixture
def watching(files: Files) -> Iterator[ReloadingServerCredentials]:
    """Credentials that check the files on every new connection."""
    yield reloading_server_credentials(files.cert, files.key, check_interval=0)


def test_rotation_under_a_running_client(
    files: Files, watching: ReloadingServerCredentials,
    old_ca: CertificateAuthority, new_ca: CertificateAuthority,
) -> None:
    with serve(watching) as server, trusting(server, old_ca) as before:
        with CallLoop(before) as loop:
            loop.wait_for(5)
            files.install(new_ca.issue_server())
            with trusting(server, new_ca) as after:
                assert who_is(after) == ""  # a new connection gets the new certificate
            rotated_at = loop.calls
            loop.wait_for(rotated_at + CALLS_AFTER_ROTATION)
        assert loop.failures == []
        assert who_is(before) == ""  # the connection opened before the rotation still works
        assert refused(server, old_ca)  # new connections no longer see the old certificate


def test_unchanged_files_keep_the_certificate(
    files: Files, watching: ReloadingServerCredentials, old_ca: CertificateAuthority
) -> None:
    with serve(watching) as server:
        for _ in range(3):
            with trusting(server, old_ca) as client:
                assert who_is(client) == ""
        assert watching.reload() is False


def test_half_replaced_pair_keeps_the_old_certificate_and_warns_once(
    files: Files, watching: ReloadingServerCredentials, old_ca: CertificateAuthority,
    new_ca: CertificateAuthority, caplog: pytest.LogCaptureFixture,
) -> None:
    issued = new_ca.issue_server()
    caplog.set_level(logging.WARNING, logger="flight_secure.tls")
    with serve(watching) as server:
        files.cert.write_bytes(issued.cert_pem)  # the key has not arrived yet
        for _ in range(2):
            with trusting(server, old_ca) as client:
                assert who_is(client) == ""
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1
        assert "does not match the key" in warnings[0]
        assert "PRIVATE KEY" not in warnings[0]
        files.key.write_bytes(issued.key_pem)
        with trusting(server, new_ca) as client:
            assert who_is(client) == ""


def test_missing_files_keep_the_old_certificate(
    files: Files, watching: ReloadingServerCredentials, old_ca: CertificateAuthority,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="flight_secure.tls")
    with serve(watching) as server:
        files.key.unlink()
        with trusting(server, old_ca) as client:
            assert who_is(client) == ""
    assert "not readable" in caplog.text


def test_explicit_reload_applies_at_once(
    files: Files, old_ca: CertificateAuthority, new_ca: CertificateAuthority
) -> None:
    credentials = ReloadingServerCredentials(files.cert, files.key, check_interval=3600)
    with serve(credentials) as server:
        with trusting(server, old_ca) as client:
            assert who_is(client) == ""
        files.install(new_ca.issue_server())
        assert refused(server, new_ca)  # not checked again within the hour
        assert credentials.reload() is True
        with trusting(server, new_ca) as client:
            assert who_is(client) == ""


def test_explicit_reload_of_a_broken_pair_raises_and_keeps_serving(
    files: Files, old_ca: CertificateAuthority, new_ca: CertificateAuthority
) -> None:
    credentials = ReloadingServerCredentials(files.cert, files.key, check_interval=3600)
    with serve(credentials) as server:
        files.key.write_bytes(new_ca.issue_server().key_pem)
        with pytest.raises(ValueError, match="does not match the key") as caught:
            credentials.reload()
        assert "PRIVATE KEY" not in str(caught.value)
        with trusting(server, old_ca) as client:
            assert who_is(client) == ""


def test_client_ca_bundle_is_reloaded(
    tmp_path: Path, files: Files, old_ca: CertificateAuthority, new_ca: CertificateAuthority
) -> None:
    def alice(ca: CertificateAuthority) -> dict[str, bytes]:
        issued = ca.issue_client("alice")
        return {"cert_chain": issued.cert_pem, "private_key": issued.key_pem}

    files.install_roots(old_ca)
    credentials = reloading_server_credentials(files.cert, files.key, files.roots,
                                               require_client_auth=True, check_interval=0)
    with serve(credentials, verify_client=True) as server:
        with trusting(server, old_ca, **alice(old_ca)) as client:
            assert who_is(client) == "alice"
        files.install_roots(new_ca)
        with trusting(server, old_ca, **alice(new_ca)) as client:
            assert who_is(client) == "alice"
        assert refused(server, old_ca, **alice(old_ca))


def test_unusable_files_are_refused_at_construction(
    files: Files, new_ca: CertificateAuthority
) -> None:
    files.key.write_bytes(new_ca.issue_server().key_pem)
    with pytest.raises(ValueError, match="does not match"):
        ReloadingServerCredentials(files.cert, files.key)
    files.key.write_bytes(b"not a key")
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        ReloadingServerCredentials(files.cert, files.key)


def test_client_authentication_needs_a_ca_bundle(files: Files) -> None:
    with pytest.raises(ValueError, match="root_path"):
        ReloadingServerCredentials(files.cert, files.key, require_client_auth=True)


def test_repr_names_the_files_and_never_the_key(watching: ReloadingServerCredentials) -> None:
    text = repr(watching)
    assert "tls.crt" in text and "valid until" in text
    assert "PRIVATE" not in text
