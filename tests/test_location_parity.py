"""A Location is any URI, as in pyarrow.flight; only dialling or serving needs gRPC.

Endpoints from servers in other languages may name ``https://`` data or the Flight
spec's ``arrow-flight-reuse-connection://?``; reading them must work, connecting to
them must fail clearly, and a string that is not a URI is refused in Arrow's words.
"""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from conftest import IMPLEMENTATIONS, connected, running_server

import flight_secure

IMPLS = list(IMPLEMENTATIONS.values())
IMPL_IDS = list(IMPLEMENTATIONS)

ANY_SCHEME = [
    "https://data.example.com/part.arrows?sig=abc",
    "arrow-flight-reuse-connection://?",
    "s3://bucket/key",
    "mailto:alice@example.com",
    "GRPC+TLS://Host:1",
    "http://[::1]:8080",
    "grpc://h:1/?x=1#frag",
    "grpc://[v1.future]:1",
    "grpc+unix:///tmp/flight.sock",
]


@pytest.mark.parametrize("uri", ANY_SCHEME)
@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_location_accepts_any_uri(flight: ModuleType, uri: str) -> None:
    location = flight.Location(uri)
    assert location.uri == uri.encode()
    assert location == flight.Location(uri.encode())


#: text -> how Arrow's message for it starts
NOT_URIS = {
    "a b://x": "Cannot parse URI: 'a b://x' due to syntax error at",
    "grpc://h h:1": "Cannot parse URI: 'grpc://h h:1' due to syntax error at",
    "grpc://[::1": "Cannot parse URI: 'grpc://[::1' due to syntax error at",
    "grpc://[zz]:1": "Cannot parse URI: 'grpc://[zz]:1' due to syntax error at",
    "grpc://h:1#a#b": "Cannot parse URI: 'grpc://h:1#a#b' due to syntax error at",
    "grpc://h:1%zz": "Cannot parse URI: 'grpc://h:1%zz' due to syntax error at",
    "grpc://a@b@c:1": "Cannot parse URI: 'grpc://a@b@c:1' due to syntax error at",
    "grpc://h:port": "Cannot parse URI: 'grpc://h:port' due to syntax error at",
    "grpc://é:1": "Cannot parse URI: 'grpc://é:1' due to syntax error at",
    "1a://x": "Cannot parse URI: '1a://x' due to syntax error at",
    "localhost": "URI has empty scheme: 'localhost'",
    "//h:1": "URI has empty scheme: '//h:1'",
    "": "URI has empty scheme: ''",
    "grpc://h:65536": "Invalid port number '65536' in URI 'grpc://h:65536'",
}


@pytest.mark.parametrize("text", sorted(NOT_URIS))
@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_a_string_that_is_not_a_uri_is_refused_in_arrows_words(
    flight: ModuleType, text: str
) -> None:
    with pytest.raises(pa.ArrowInvalid) as refused:
        flight.Location(text)
    assert str(refused.value).startswith(NOT_URIS[text])


#: Pieces whose combinations reach every branch of a URI's grammar.
PIECES = ["grpc", "://", "h", ":1", "[::1]", "[", "]", "%41", "%", "@", "/", "?", "#", ":",
          "x", "1", " ", "v1.a", "é", "+", ".", "-", "_"]


def _verdict(flight: ModuleType, text: str) -> str:
    try:
        flight.Location(text)
    except pa.ArrowInvalid as exc:
        return str(exc).split(" '")[0]
    return "accepted"


def test_generated_strings_are_accepted_or_refused_as_pyarrow_does() -> None:
    rng = random.Random(20261125)
    texts = ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 7))) for _ in range(5000)]
    differ = [t for t in texts if _verdict(flight_secure, t) != _verdict(pa_flight, t)]
    assert differ == []


@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_a_host_that_is_not_a_uri_host_is_refused_by_for_grpc_tcp(flight: ModuleType) -> None:
    with pytest.raises(pa.ArrowInvalid, match="Cannot parse URI: 'grpc\\+tcp://a b:1'"):
        flight.Location.for_grpc_tcp("a b", 1)


NOT_GRPC = ["https://localhost:1/x", "s3://bucket/key", "arrow-flight-reuse-connection://?"]


@pytest.mark.parametrize("uri", NOT_GRPC)
@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_a_client_refuses_a_location_gRPC_cannot_dial(flight: ModuleType, uri: str) -> None:
    with pytest.raises(pa.ArrowKeyError):
        flight.connect(uri)


@pytest.mark.parametrize("flight", IMPLS, ids=IMPL_IDS)
def test_a_server_refuses_a_location_gRPC_cannot_serve(flight: ModuleType) -> None:
    with pytest.raises(pa.ArrowKeyError):
        flight.FlightServerBase("https://localhost:0")


def test_the_refusal_names_the_scheme_and_what_reuse_connection_means() -> None:
    with pytest.raises(flight_secure.FlightNotFoundError, match="https") as https:
        flight_secure.connect("https://localhost:1/x")
    assert "grpc+tls://" in str(https.value)
    with pytest.raises(flight_secure.FlightNotFoundError, match="names no server"):
        flight_secure.connect("arrow-flight-reuse-connection://?")


def test_reuse_connection_is_the_spec_uri() -> None:
    reuse = flight_secure.Location.reuse_connection()
    assert reuse == flight_secure.Location("arrow-flight-reuse-connection://?")
    assert reuse.uri == b"arrow-flight-reuse-connection://?"


class ElsewhereServer:
    """GetFlightInfo lists endpoints at non-gRPC locations, as servers in other languages do."""

    flight: ModuleType

    def get_flight_info(self, context: Any, descriptor: Any) -> Any:
        f = self.flight
        endpoints = [
            f.FlightEndpoint(b"a", ["arrow-flight-reuse-connection://?"]),
            f.FlightEndpoint(b"b", ["https://data.example.com/b.arrows", "grpc+tls://r:1"]),
        ]
        return f.FlightInfo(pa.schema([("n", pa.int64())]), descriptor, endpoints)


@pytest.mark.parametrize("client_flight", IMPLS, ids=[f"client={i}" for i in IMPL_IDS])
@pytest.mark.parametrize("server_flight", IMPLS, ids=[f"server={i}" for i in IMPL_IDS])
def test_a_flight_info_naming_any_scheme_is_read_over_the_wire(
    server_flight: ModuleType, client_flight: ModuleType
) -> None:
    with (
        running_server(server_flight, ElsewhereServer) as server,
        connected(client_flight, server) as client,
    ):
        info = client.get_flight_info(client_flight.FlightDescriptor.for_path("t"))
    assert [[loc.uri for loc in e.locations] for e in info.endpoints] == [
        [b"arrow-flight-reuse-connection://?"],
        [b"https://data.example.com/b.arrows", b"grpc+tls://r:1"],
    ]
