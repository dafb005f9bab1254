"""Specification of TLS between Flight peers: pyarrow.flight on one side, ours on the other.

Certificates are made by :mod:`flight_secure.certs` in temporary directories; every
refusal must reach the client as a Flight error that says what failed, quickly, and
leave the server serving good clients (helpers in ``tls_helpers``).
"""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.flight as pa_flight
import pytest
from conftest import IMPLEMENTATIONS, running_server
from tls_helpers import (
    TIMEOUT,
    Pki,
    Who,
    expired_server_certificate,
    refusal,
    tls_location,
    who_is,
)

import flight_secure


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path / "pki")


@pytest.fixture
def other_pki(tmp_path: Path) -> Pki:
    """An unrelated CA issuing the same names (localhost, alice, bob)."""
    return Pki.create(tmp_path / "other")


# ------------------------------------------------------------------- data over TLS


def test_pyarrow_client_reads_from_our_tls_server(pki: Pki) -> None:
    with running_server(flight_secure, Who, **pki.tls_server()) as server, \
            pki.connect(pa_flight, server) as client:
        assert who_is(client) == ""


def test_our_client_reads_from_pyarrow_tls_server(pki: Pki) -> None:
    with running_server(pa_flight, Who, **pki.tls_server(pa_flight)) as server, \
            pki.connect(flight_secure, server) as client:
        assert who_is(client) == ""


def test_our_client_presents_its_certificate_to_a_pyarrow_mtls_server(pki: Pki) -> None:
    with running_server(pa_flight, Who, **pki.mtls_server(pa_flight)) as server:
        with pki.connect(flight_secure, server, "alice") as client:
            assert who_is(client) == "alice"  # pyarrow names the caller by its certificate
        error, _ = refusal(flight_secure, tls_location(server), tls_root_certs=pki.ca_pem)
        assert isinstance(error, flight_secure.FlightUnavailableError)


def test_cert_chain_without_private_key_is_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match="together"):
        flight_secure.connect("grpc+tls://localhost:1",
                              cert_chain=pki.client("alice")["cert_chain"])


def test_override_hostname_checks_the_certificate_against_that_name(pki: Pki) -> None:
    issued = pki.ca.issue_server(["flight.internal"])
    pair = flight_secure.CertKeyPair(cert=issued.cert_pem, key=issued.key_pem)
    with running_server(flight_secure, Who, location="grpc+tls://localhost:0",
                        tls_certificates=[pair]) as server:
        location = tls_location(server)
        with flight_secure.connect(location, tls_root_certs=pki.ca_pem,
                                   override_hostname="flight.internal") as client:
            assert who_is(client) == ""
        error, _ = refusal(flight_secure, location, tls_root_certs=pki.ca_pem)
        assert "not valid for the host name" in str(error)


# ------------------------------------------- TLS options never fall back to plaintext


@pytest.mark.parametrize("implementation", ["flight_secure", "pyarrow"])
def test_a_host_port_pair_with_tls_roots_is_dialled_over_tls(
    pki: Pki, implementation: str
) -> None:
    flight = IMPLEMENTATIONS[implementation]
    with running_server(flight_secure, Who, **pki.tls_server()) as server, \
            flight.FlightClient(("localhost", server.port), tls_root_certs=pki.ca_pem) as client:
        assert who_is(client) == ""


def test_a_host_port_pair_with_a_client_certificate_is_dialled_over_mutual_tls(pki: Pki) -> None:
    with running_server(flight_secure, Who, **pki.mtls_server()) as server, \
            flight_secure.FlightClient(("localhost", server.port), tls_root_certs=pki.ca_pem,
                                       **pki.client("alice")) as client:
        assert who_is(client) == "alice"


def test_a_host_port_pair_without_tls_options_is_dialled_in_plaintext() -> None:
    with running_server(flight_secure, Who, location="grpc://localhost:0") as server, \
            flight_secure.FlightClient(("localhost", server.port)) as client:
        assert client.location.scheme == "grpc+tcp"
        assert who_is(client) == ""


#: TLS options a client may be given, by name.
TLS_OPTIONS: dict[str, Callable[[Pki], dict[str, Any]]] = {
    "tls_root_certs": lambda pki: {"tls_root_certs": pki.ca_pem},
    "client certificate": lambda pki: pki.client("alice"),
    "override_hostname": lambda pki: {"override_hostname": "flight.internal"},
    "disable_server_verification": lambda pki: {"disable_server_verification": True},
}


@pytest.mark.parametrize("location", [
    "grpc://localhost:1", "grpc+tcp://localhost:1", "grpc+unix:///tmp/flight.sock",
])
@pytest.mark.parametrize("option", sorted(TLS_OPTIONS))
def test_tls_options_with_a_plaintext_location_are_refused(
    pki: Pki, location: str, option: str
) -> None:
    with pytest.raises(flight_secure.FlightInvalidArgumentError, match=r"use a grpc\+tls://"):
        flight_secure.connect(location, **TLS_OPTIONS[option](pki))


# ------------------------------------------------------ disable_server_verification


@pytest.mark.parametrize("implementation", ["flight_secure", "pyarrow"])
def test_disabled_verification_trusts_a_ca_issued_server_and_warns(
    pki: Pki, implementation: str
) -> None:
    server_flight = IMPLEMENTATIONS[implementation]
    with running_server(server_flight, Who, **pki.tls_server(server_flight)) as server:
        with pytest.warns(UserWarning, match="NOT verified"):
            client = flight_secure.connect(tls_location(server), disable_server_verification=True)
        with client:
            assert who_is(client) == ""


def test_disabled_verification_still_presents_the_client_certificate(pki: Pki) -> None:
    with running_server(flight_secure, Who, **pki.mtls_server()) as server:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            client = flight_secure.connect(tls_location(server), disable_server_verification=True,
                                           **pki.client("alice"))
        with client:
            assert who_is(client) == "alice"


def test_disabled_verification_refuses_an_expired_server_certificate_at_the_first_call(
    pki: Pki,
) -> None:
    issued = expired_server_certificate(pki.ca)
    pair = flight_secure.CertKeyPair(cert=issued.cert_pem, key=issued.key_pem)
    with running_server(flight_secure, Who, location="grpc+tls://localhost:0",
                        tls_certificates=[pair]) as server:
        with pytest.warns(UserWarning):
            client = flight_secure.connect(tls_location(server), disable_server_verification=True)
        with client, pytest.raises(flight_secure.FlightUnavailableError,
                                   match="cannot accept it"):
            who_is(client)


def test_disabled_verification_against_nothing_listening_is_unavailable_at_the_first_call(
) -> None:
    with running_server(flight_secure, Who) as server:
        port = server.port  # a port that is closed once the server is gone
    with pytest.warns(UserWarning):
        client = flight_secure.connect(f"grpc+tls://localhost:{port}",
                                       disable_server_verification=True)
    with client, pytest.raises(flight_secure.FlightUnavailableError,
                               match="could not fetch the TLS certificate"):
        who_is(client)


def test_close_does_not_wait_for_a_certificate_fetch_under_way() -> None:
    """A first call is fetching the certificate from a peer that accepts the connection
    and never answers; close() from another thread returns at once, and the call fails
    as a call on a closed client."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        with pytest.warns(UserWarning):
            client = flight_secure.connect(f"grpc+tls://127.0.0.1:{silent.getsockname()[1]}",
                                           disable_server_verification=True)
        failures: list[BaseException] = []

        def first_call() -> None:
            try:
                who_is(client)
            except BaseException as exc:
                failures.append(exc)

        calling = threading.Thread(target=first_call)
        calling.start()
        connection, _ = silent.accept()  # the fetch has begun
        with connection:
            started = time.monotonic()
            client.close()
            closing = time.monotonic() - started
        calling.join(30)
    assert closing < 5.0  # the fetch alone may take FETCH_TIMEOUT (10 s)
    assert len(failures) == 1 and isinstance(failures[0], flight_secure.FlightError)


# --------------------------------------------------------- refusals, clearly stated

#: case -> (server kind, what the client says about it).
REFUSALS = {
    "plaintext client, TLS server": ("tls", "closed the connection while it was being set up"),
    "TLS client, plaintext server": ("plain", "does not speak TLS"),
    "server certificate from an unknown CA": ("tls", "not issued by a CA this client trusts"),
    "server certificate for another host": ("tls", "not valid for the host name"),
    "expired server certificate": ("expired", "has expired"),
    "no client certificate": ("mtls", "no client certificate"),
    "same-named client certificate from another CA": (
        "mtls", "one from a CA the server does not trust"),
}


def _server_options(kind: str, pki: Pki) -> dict[str, Any]:
    if kind == "plain":
        return {"location": "grpc://localhost:0"}
    if kind == "expired":
        issued = expired_server_certificate(pki.ca)
        pair = flight_secure.CertKeyPair(cert=issued.cert_pem, key=issued.key_pem)
        return {"location": "grpc+tls://localhost:0", "tls_certificates": [pair]}
    return pki.mtls_server() if kind == "mtls" else pki.tls_server()


def _bad_client(case: str, server: Any, pki: Pki, other: Pki) -> tuple[str, dict[str, Any]]:
    tls = tls_location(server)
    trusted = {"tls_root_certs": pki.ca_pem}
    return {
        "plaintext client, TLS server": (f"grpc://localhost:{server.port}", {}),
        "TLS client, plaintext server": (tls, trusted),
        "server certificate from an unknown CA": (tls, {"tls_root_certs": other.ca_pem}),
        "server certificate for another host": (
            tls, {**trusted, "override_hostname": "elsewhere.example"}),
        "expired server certificate": (tls, trusted),
        "no client certificate": (tls, trusted),
        "same-named client certificate from another CA": (
            tls, {**trusted, **other.client("alice")}),
    }[case]


def _good_client(kind: str, server: Any, pki: Pki) -> tuple[str, dict[str, Any]]:
    if kind == "plain":
        return f"grpc://localhost:{server.port}", {}
    extra = pki.client("alice") if kind == "mtls" else {}
    return tls_location(server), {"tls_root_certs": pki.ca_pem, **extra}


@pytest.mark.parametrize("implementation", ["flight_secure", "pyarrow"])
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusal_is_quick_and_clear_and_the_server_keeps_serving(
    pki: Pki, other_pki: Pki, case: str, implementation: str
) -> None:
    flight = IMPLEMENTATIONS[implementation]
    kind, explanation = REFUSALS[case]
    with running_server(flight_secure, Who, **_server_options(kind, pki)) as server:
        location, options = _bad_client(case, server, pki, other_pki)
        error, seconds = refusal(flight, location, **options)
        assert isinstance(error, flight.FlightUnavailableError)
        assert seconds < TIMEOUT
        if flight is flight_secure:  # pyarrow's wording is its own
            assert explanation in str(error)
        if kind == "expired":  # no client of ours can trust it; pyarrow's can skip the check
            client = pa_flight.connect(tls_location(server), disable_server_verification=True)
        else:
            location, options = _good_client(kind, server, pki)
            client = flight_secure.connect(location, **options)
        with client:
            assert who_is(client) == ("alice" if kind == "mtls" else "")


@pytest.mark.parametrize("implementation", ["flight_secure", "pyarrow"])
def test_client_refuses_a_pyarrow_server_from_another_ca(
    pki: Pki, other_pki: Pki, implementation: str
) -> None:
    flight = IMPLEMENTATIONS[implementation]
    with running_server(pa_flight, Who, **other_pki.tls_server(pa_flight)) as server:
        error, seconds = refusal(flight, tls_location(server), tls_root_certs=pki.ca_pem)
        assert isinstance(error, flight.FlightUnavailableError)
        assert seconds < TIMEOUT
        with flight.connect(tls_location(server), tls_root_certs=other_pki.ca_pem) as client:
            assert who_is(client) == ""
