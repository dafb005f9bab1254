"""flight_secure is a drop-in for pyarrow.flight.

Programs written for pyarrow.flight (tests/parity_programs/) print the same
transcript when their import is swapped to flight_secure, and the public names,
constructors and method signatures match pyarrow.flight's.
"""

from __future__ import annotations

import inspect
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as pa_flight
import pytest
from conftest import PYTHON, ROOT, free_location

import flight_secure

PROGRAMS = sorted((Path(__file__).parent / "parity_programs").glob("*.py"))


def run_program(program: Path, implementation: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLIGHT_IMPL=implementation, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [PYTHON, str(program)], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT
    )


@pytest.fixture(scope="module", params=PROGRAMS, ids=[p.stem for p in PROGRAMS])
def transcripts(request: pytest.FixtureRequest) -> dict[str, subprocess.CompletedProcess]:
    return {impl: run_program(request.param, impl) for impl in ("pyarrow", "flight_secure")}


def test_there_are_parity_programs() -> None:
    assert len(PROGRAMS) >= 2


def test_program_runs_on_pyarrow(transcripts: dict) -> None:
    result = transcripts["pyarrow"]
    assert result.returncode == 0, result.stderr
    assert result.stdout


def test_program_runs_on_flight_secure(transcripts: dict) -> None:
    result = transcripts["flight_secure"]
    assert result.returncode == 0, result.stderr


def test_program_prints_the_same_on_both(transcripts: dict) -> None:
    assert transcripts["flight_secure"].stdout == transcripts["pyarrow"].stdout


def test_program_writes_no_stray_stderr_on_flight_secure(transcripts: dict) -> None:
    """A library that logs without a configured handler must not print (Python's lastResort)."""
    assert transcripts["flight_secure"].stderr == transcripts["pyarrow"].stderr


# ------------------------------------------------------------------ public names

#: pyarrow.flight's public names that flight_secure mirrors.
NAMES = [
    "Action", "ActionType", "BasicAuth", "CallInfo", "CertKeyPair", "ClientAuthHandler",
    "ClientMiddleware", "ClientMiddlewareFactory", "DescriptorType", "FlightCallOptions",
    "FlightCancelledError", "FlightClient", "FlightDataStream", "FlightDescriptor",
    "FlightEndpoint", "FlightError", "FlightInfo", "FlightInternalError",
    "FlightMetadataReader", "FlightMetadataWriter", "FlightMethod", "FlightServerBase",
    "FlightServerError", "FlightStreamChunk", "FlightStreamReader", "FlightStreamWriter",
    "FlightTimedOutError", "FlightUnauthenticatedError", "FlightUnauthorizedError",
    "FlightUnavailableError", "FlightWriteSizeExceededError", "GeneratorStream", "Location",
    "MetadataRecordBatchReader", "MetadataRecordBatchWriter", "RecordBatchStream", "Result",
    "SchemaResult", "ServerAuthHandler", "ServerCallContext", "ServerMiddleware",
    "ServerMiddlewareFactory", "Ticket", "TracingServerMiddlewareFactory", "connect",
]


def test_listed_names_are_pyarrow_names() -> None:
    assert set(NAMES) <= set(dir(pa_flight))


@pytest.mark.parametrize("name", NAMES)
def test_name_exists_in_flight_secure(name: str) -> None:
    assert hasattr(flight_secure, name)
    assert name in flight_secure.__all__


ERROR_NAMES = [n for n in NAMES if n.endswith("Error")]


@pytest.mark.parametrize("name", ERROR_NAMES)
def test_error_class_is_a_flight_error(name: str) -> None:
    assert issubclass(getattr(flight_secure, name), flight_secure.FlightError)


def test_flight_error_is_an_arrow_exception() -> None:
    assert issubclass(flight_secure.FlightError, pa.ArrowException)


def test_cancelled_error_is_arrow_cancelled_like_pyarrows() -> None:
    assert issubclass(pa_flight.FlightCancelledError, pa.ArrowCancelled)
    assert issubclass(flight_secure.FlightCancelledError, pa.ArrowCancelled)


@pytest.mark.parametrize("name", ["DescriptorType", "FlightMethod"])
def test_enum_has_pyarrows_members_and_values(name: str) -> None:
    ours = {m.name: m.value for m in getattr(flight_secure, name)}
    theirs = {m.name: m.value for m in getattr(pa_flight, name)}
    assert {k: ours.get(k) for k in theirs} == theirs


# ------------------------------------------------------------- method signatures

METHODS: dict[str, list[str]] = {
    "FlightClient": [
        "authenticate", "authenticate_basic_token", "close", "do_action", "do_exchange",
        "do_get", "do_put", "get_flight_info", "get_schema", "list_actions", "list_flights",
        "wait_for_available",
    ],
    "FlightServerBase": [
        "do_action", "do_exchange", "do_get", "do_put", "get_flight_info", "get_schema",
        "list_actions", "list_flights", "serve", "run", "shutdown", "wait",
    ],
    "FlightStreamReader": ["read_all", "read_chunk", "read_pandas", "to_reader", "cancel"],
    "MetadataRecordBatchReader": ["read_all", "read_chunk", "read_pandas", "to_reader"],
    "FlightStreamWriter": [
        "begin", "close", "done_writing", "write", "write_batch", "write_metadata",
        "write_table", "write_with_metadata",
    ],
    "MetadataRecordBatchWriter": [
        "begin", "close", "write", "write_batch", "write_metadata", "write_table",
        "write_with_metadata",
    ],
    "FlightMetadataReader": ["read"],
    "FlightMetadataWriter": ["write"],
    "ServerCallContext": [
        "add_header", "add_trailer", "get_middleware", "is_cancelled", "peer", "peer_identity",
    ],
    "FlightDescriptor": ["for_path", "for_command", "serialize", "deserialize"],
    "FlightInfo": ["serialize", "deserialize"],
    "FlightEndpoint": ["serialize", "deserialize"],
    "Ticket": ["serialize", "deserialize"],
    "Action": ["serialize", "deserialize"],
    "Result": ["serialize", "deserialize"],
    "SchemaResult": ["serialize", "deserialize"],
    "BasicAuth": ["serialize", "deserialize"],
    "Location": ["for_grpc_tcp", "for_grpc_tls", "for_grpc_unix", "equals"],
    "ActionType": ["make_action"],
    "ServerMiddlewareFactory": ["start_call"],
    "ServerMiddleware": ["sending_headers", "call_completed"],
    "ClientMiddlewareFactory": ["start_call"],
    "ClientMiddleware": ["sending_headers", "received_headers", "call_completed"],
    "ServerAuthHandler": ["authenticate", "is_valid"],
    "ClientAuthHandler": ["authenticate", "get_token"],
}

METHOD_CASES = [(cls, method) for cls, methods in METHODS.items() for method in methods]


def _compatible(theirs: inspect.Signature, ours: inspect.Signature) -> list[str]:
    """What stops code calling ``theirs`` from calling ``ours`` the same way."""
    problems = []
    ours_params = list(ours.parameters.values())
    position = 0
    for param in theirs.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            continue
        if param.kind is param.VAR_POSITIONAL:
            if not any(p.kind is p.VAR_POSITIONAL for p in ours_params):
                problems.append(f"*{param.name} missing")
            continue
        if position >= len(ours_params) or ours_params[position].name != param.name:
            problems.append(f"parameter {position} should be {param.name!r}")
            break
        mine = ours_params[position]
        if param.default is not param.empty and mine.default is mine.empty:
            problems.append(f"{param.name!r} should be optional")
        if param.kind is not param.KEYWORD_ONLY and mine.kind is mine.KEYWORD_ONLY:
            problems.append(f"{param.name!r} should be positional")
        position += 1
    problems += [
        f"extra parameter {p.name!r} has no default"
        for p in ours_params[position:]
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    return problems


@pytest.mark.parametrize(("cls", "method"), METHOD_CASES, ids=[".".join(c) for c in METHOD_CASES])
def test_method_signature_matches_pyarrow(cls: str, method: str) -> None:
    theirs = inspect.signature(getattr(getattr(pa_flight, cls), method))
    ours = inspect.signature(getattr(getattr(flight_secure, cls), method))
    assert _compatible(theirs, ours) == [], f"pyarrow: {theirs}  flight_secure: {ours}"


def test_connect_signature_matches_pyarrow() -> None:
    ours = inspect.signature(flight_secure.connect)
    assert _compatible(inspect.signature(pa_flight.connect), ours) == []


def test_stream_readers_have_a_schema_property() -> None:
    for cls in ("FlightStreamReader", "MetadataRecordBatchReader"):
        assert isinstance(getattr(flight_secure, cls).schema, property)


# ------------------------------------------------------------------ constructors
# pyarrow's constructors are compiled and expose no signature, so each case calls
# both implementations with the same keywords: the names pyarrow documents.

SCHEMA = pa.schema([("x", pa.int64())])

CONSTRUCTORS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "FlightCallOptions": lambda f: dict(
        timeout=1.5, write_options=None, headers=[(b"k", b"v")], read_options=None
    ),
    "FlightDescriptor.for_path": lambda f: {},
    "Ticket": lambda f: dict(ticket=b"t"),
    "Location": lambda f: dict(uri="grpc://localhost:1"),
    "FlightEndpoint": lambda f: dict(
        ticket=b"t", locations=["grpc://h:1"], expiration_time=None, app_metadata=b"m"
    ),
    "FlightInfo": lambda f: dict(
        schema=SCHEMA,
        descriptor=f.FlightDescriptor.for_path("p"),
        endpoints=[],
        total_records=1,
        total_bytes=2,
        ordered=True,
        app_metadata=b"m",
    ),
    "Action": lambda f: dict(action_type="a", buf=b"b"),
    "Result": lambda f: dict(buf=b"b"),
    "SchemaResult": lambda f: dict(schema=SCHEMA),
    "BasicAuth": lambda f: dict(username="u", password="p"),
    "ActionType": lambda f: dict(type="t", description="d"),
    "CertKeyPair": lambda f: dict(cert="c", key="k"),
    "RecordBatchStream": lambda f: dict(data_source=pa.table({"x": [1]}), options=None),
    "GeneratorStream": lambda f: dict(schema=SCHEMA, generator=iter(()), options=None),
    "FlightClient": lambda f: dict(
        location="grpc://localhost:1",
        tls_root_certs=None,
        cert_chain=None,
        private_key=None,
        override_hostname=None,
        middleware=None,
        write_size_limit_bytes=None,
        disable_server_verification=False,
        generic_options=None,
    ),
}


def _construct(flight: Any, name: str) -> Any:
    factory = flight
    for part in name.split("."):
        factory = getattr(factory, part)
    obj = factory(**CONSTRUCTORS[name](flight))
    if name == "FlightClient":
        obj.close()
    return obj


@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
def test_pyarrow_accepts_the_documented_keywords(name: str) -> None:
    _construct(pa_flight, name)


@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
def test_flight_secure_accepts_the_same_keywords(name: str) -> None:
    _construct(flight_secure, name)


def test_server_constructor_accepts_pyarrows_keywords() -> None:
    class Server(flight_secure.FlightServerBase):
        pass

    server = Server(
        location="grpc://localhost:0",
        auth_handler=None,
        tls_certificates=None,
        verify_client=False,
        root_certificates=None,
        middleware=None,
    )
    try:
        assert server.port > 0
    finally:
        server.shutdown()


def test_server_constructor_parameter_order_matches_pyarrow() -> None:
    names = list(inspect.signature(flight_secure.FlightServerBase).parameters)
    assert names[:6] == [
        "location", "auth_handler", "tls_certificates", "verify_client", "root_certificates",
        "middleware",
    ]


ATTRIBUTES: dict[str, tuple[Callable[[Any], Any], list[str]]] = {
    "FlightInfo": (
        lambda f: f.FlightInfo(SCHEMA, f.FlightDescriptor.for_path("p"), []),
        ["schema", "descriptor", "endpoints", "total_records", "total_bytes", "ordered",
         "app_metadata"],
    ),
    "FlightEndpoint": (
        lambda f: f.FlightEndpoint(b"t", []),
        ["ticket", "locations", "expiration_time", "app_metadata"],
    ),
    "FlightDescriptor": (
        lambda f: f.FlightDescriptor.for_command(b"c"), ["descriptor_type", "path", "command"]
    ),
    "Ticket": (lambda f: f.Ticket(b"t"), ["ticket"]),
    "Location": (lambda f: f.Location("grpc://h:1"), ["uri"]),
    "Action": (lambda f: f.Action("a", b""), ["type", "body"]),
    "Result": (lambda f: f.Result(b""), ["body"]),
    "SchemaResult": (lambda f: f.SchemaResult(SCHEMA), ["schema"]),
    "BasicAuth": (lambda f: f.BasicAuth("u", "p"), ["username", "password"]),
}


@pytest.mark.parametrize("name", sorted(ATTRIBUTES))
def test_value_attributes_match_pyarrow(name: str) -> None:
    make, attributes = ATTRIBUTES[name]
    theirs, ours = make(pa_flight), make(flight_secure)
    for attribute in attributes:
        assert hasattr(theirs, attribute)
        assert hasattr(ours, attribute), attribute


@pytest.mark.parametrize("flight", [pa_flight, flight_secure], ids=["pyarrow", "flight_secure"])
def test_wait_for_available_without_server_raises_unavailable(flight: Any) -> None:
    client = flight.connect(free_location())
    try:
        with pytest.raises(flight.FlightUnavailableError):
            client.wait_for_available(timeout=1)
    finally:
        client.close()
